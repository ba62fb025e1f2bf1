/**
 * Cuts a TCP/TLS byte stream into SIP messages (RFC 3261 §18.3): find the end of the headers
 * (an empty line), read Content-Length (long or compact form; absent means 0 on a stream),
 * then take that many body bytes. Messages are handed out as their own Buffers, ready for
 * parseMessage().
 *
 * Between messages it recognises the RFC 5626 §3.5.1 keep-alives: CRLFCRLF is a ping (answer
 * with a single CRLF), a single CRLF is a pong. A lone CRLF at the end of the buffered data is
 * reported as a pong at once, so a waiting client sees it without delay; if the next bytes are
 * another CRLF, the pair is then reported as a ping too (a ping split across TCP segments after
 * its first CRLF therefore shows up as pong + ping; the pong is harmless to ignore).
 *
 * Framing errors are reported once through onError and stop the framer: after a bad or
 * oversize Content-Length the stream cannot be resynchronised (RFC 4475 §3.1.2.3), so the
 * caller closes the connection.
 *
 *   boundary ──CRLFCRLF──▶ ping ──▶ boundary
 *   boundary ──CRLF──────▶ pong ──▶ boundary
 *   boundary ──other────▶ headers ──empty line──▶ body ──Content-Length bytes──▶ message ──▶ boundary
 *   headers/body ──limit or bad Content-Length──▶ stopped
 */
import { DEFAULT_LIMITS } from './sip-message.js';

export type FramingErrorCode = 'HEADERS_TOO_LARGE' | 'MESSAGE_TOO_LARGE' | 'BAD_CONTENT_LENGTH';

export interface FramingError {
  readonly code: FramingErrorCode;
  readonly message: string;
  /**
   * The failed message's header block as read (start line and headers; at most maxMessageBytes
   * when no end of headers was found), so the request can still be answered (400, 513).
   */
  readonly head: Buffer;
}

export interface SipStreamFramerHandlers {
  /** One complete message (start line, headers, body) in a Buffer of its own. */
  onMessage(message: Buffer): void;
  /** CRLFCRLF keep-alive ping (RFC 5626 §3.5.1): the caller answers with a single CRLF. */
  onPing?(): void;
  /** Single-CRLF pong (RFC 5626 §4.4.1). */
  onPong?(): void;
  /** The stream cannot be framed any more; the framer has stopped and the connection should close. */
  onError(error: FramingError): void;
}

export interface SipStreamFramerOptions {
  /** Largest message (headers + body), bytes. Default 65535, as DEFAULT_LIMITS. */
  readonly maxMessageBytes?: number;
}

const EMPTY = Buffer.alloc(0);
const CONTENT_LENGTH_RE = /^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$/gim;
const FOLD_RE = /\r?\n[ \t]+/g;

export class SipStreamFramer {
  private buf: Buffer = EMPTY;
  /** End of the current message's header block (just after the empty line), or -1 while unknown. */
  private headerEnd = -1;
  private bodyLength = 0;
  /** Where to resume the search for the empty line. */
  private scanFrom = 0;
  private lastWasLoneCrlf = false;
  private stopped = false;
  private readonly maxMessageBytes: number;

  constructor(
    private readonly handlers: SipStreamFramerHandlers,
    options: SipStreamFramerOptions = {},
  ) {
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_LIMITS.maxMessageBytes;
  }

  /** True once a framing error has been reported; later pushes are ignored. */
  get isStopped(): boolean {
    return this.stopped;
  }

  /** Bytes held while waiting for the rest of a message. */
  get bufferedBytes(): number {
    return this.buf.length;
  }

  /**
   * Feeds bytes from the stream. Every complete message and keep-alive in the buffered data
   * is reported before push returns. A handler that throws does not corrupt the framer: the
   * remaining data is still framed, and the first such error is rethrown at the end.
   */
  push(chunk: Buffer): void {
    if (this.stopped || chunk.length === 0) return;
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let handlerError: unknown = undefined;
    let failed = false;
    const call = (f: () => void): void => {
      try {
        f();
      } catch (err) {
        if (!failed) handlerError = err;
        failed = true;
      }
    };
    this.drain(call);
    if (failed) throw handlerError;
  }

  private drain(call: (f: () => void) => void): void {
    for (;;) {
      if (this.headerEnd < 0) {
        if (this.scanFrom === 0 && !this.keepAlives(call)) return;
        if (this.buf.length === 0) return;
        const end = this.findHeaderEnd();
        if (end < 0) {
          if (this.buf.length > this.maxMessageBytes) {
            this.fail(call, 'HEADERS_TOO_LARGE', `No end of headers within ${this.maxMessageBytes} bytes`, this.maxMessageBytes);
          }
          return;
        }
        const cl = this.contentLength(end);
        if (cl < 0) {
          this.fail(call, 'BAD_CONTENT_LENGTH', 'Missing, negative, non-numeric or conflicting Content-Length', end);
          return;
        }
        if (end + cl > this.maxMessageBytes) {
          this.fail(call, 'MESSAGE_TOO_LARGE', `Message of ${end + cl} bytes exceeds ${this.maxMessageBytes}`, end);
          return;
        }
        this.headerEnd = end;
        this.bodyLength = cl;
      }
      const total = this.headerEnd + this.bodyLength;
      if (this.buf.length < total) return;
      const message = Buffer.from(this.buf.subarray(0, total));
      this.buf = this.buf.length === total ? EMPTY : this.buf.subarray(total);
      this.headerEnd = -1;
      this.scanFrom = 0;
      call(() => this.handlers.onMessage(message));
    }
  }

  /**
   * Consumes CRLF keep-alives at a message boundary. Returns false when more bytes are needed
   * to decide what the buffer starts with.
   */
  private keepAlives(call: (f: () => void) => void): boolean {
    for (;;) {
      const b = this.buf;
      if (b.length === 0) return true;
      const c0 = b[0];
      if (c0 === 0x0a) {
        // A bare LF between messages is noise (RFC 3261 §7.5 lets CRLFs precede a start line).
        this.buf = b.subarray(1);
        continue;
      }
      if (c0 !== 0x0d) {
        this.lastWasLoneCrlf = false;
        return true;
      }
      if (b.length < 2) return false;
      if (b[1] !== 0x0a) {
        this.lastWasLoneCrlf = false;
        return true; // a stray CR: framed as (garbage) message text, the parser drops it
      }
      if (b.length >= 4 && b[2] === 0x0d && b[3] === 0x0a) {
        this.buf = b.subarray(4);
        this.lastWasLoneCrlf = false;
        call(() => this.handlers.onPing?.());
        continue;
      }
      if (this.lastWasLoneCrlf) {
        // The second half of a ping whose first CRLF arrived on its own.
        this.buf = b.subarray(2);
        this.lastWasLoneCrlf = false;
        call(() => this.handlers.onPing?.());
        continue;
      }
      // A single CRLF: a pong. Remember it in case it turns out to be the first half of a ping.
      this.buf = b.subarray(2);
      this.lastWasLoneCrlf = this.buf.length === 0 || (this.buf.length === 1 && this.buf[0] === 0x0d);
      call(() => this.handlers.onPong?.());
    }
  }

  /** Index just after the empty line ending the headers (CRLFCRLF, or LF LF for robustness), or -1. */
  private findHeaderEnd(): number {
    const b = this.buf;
    let i = this.scanFrom;
    for (;;) {
      const nl = b.indexOf(0x0a, i);
      if (nl < 0) {
        this.scanFrom = b.length;
        return -1;
      }
      const a = b[nl + 1];
      if (a === undefined) {
        this.scanFrom = nl;
        return -1;
      }
      if (a === 0x0a) return nl + 2;
      if (a === 0x0d) {
        const c = b[nl + 2];
        if (c === undefined) {
          this.scanFrom = nl;
          return -1;
        }
        if (c === 0x0a) return nl + 3;
      }
      i = nl + 1;
    }
  }

  /** Content-Length from the header block [0, end): 0 when absent, -1 when invalid or conflicting. */
  private contentLength(end: number): number {
    let head = this.buf.toString('latin1', 0, end);
    if (head.indexOf('\n ') >= 0 || head.indexOf('\n\t') >= 0) head = head.replace(FOLD_RE, ' ');
    let value = -2;
    CONTENT_LENGTH_RE.lastIndex = 0;
    for (let m = CONTENT_LENGTH_RE.exec(head); m; m = CONTENT_LENGTH_RE.exec(head)) {
      const v = m[1] ?? '';
      if (!/^\d{1,9}$/.test(v)) return -1;
      const n = Number(v);
      if (value !== -2 && value !== n) return -1; // RFC 4475 §3.3.9: conflicting values cannot be framed
      value = n;
    }
    return value === -2 ? 0 : value;
  }

  private fail(call: (f: () => void) => void, code: FramingErrorCode, message: string, headEnd: number): void {
    const head = Buffer.from(this.buf.subarray(0, headEnd));
    this.stopped = true;
    this.buf = EMPTY;
    call(() => this.handlers.onError({ code, message, head }));
  }
}
