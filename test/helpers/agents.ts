import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { pcm16le, toPcm16le, ulawDecode, ulawEncode } from './audio.js';

/**
 * Test-side AI agents for the gateway's two agent WebSocket protocols:
 * - Twilio Media Streams compatible: `PipecatLikeAgent` (paced 40 ms media, like Pipecat's
 *   FastAPIWebsocketTransport + TwilioFrameSerializer) and `BurstAgent` (a whole utterance at
 *   once, like the OpenAI realtime Twilio samples);
 * - native `audio.tollgate.v1`: `NativeAgent`;
 * - `EchoAgent`: a minimal server that sends every media payload straight back (benchmarks).
 *
 * Each agent is one call's WebSocket. It is either accepted by an `AgentServer` the gateway dials
 * (`PipecatLikeAgent.listen()` etc.: 127.0.0.1, port 0, one new agent per connection, the upgrade
 * request recorded), or dials the gateway itself (`agent.dial(url, { headers, protocols })`).
 * Every wait is bounded and rejects with what the agent had seen; `close()` ends everything.
 */

export const NATIVE_SUBPROTOCOL = 'audio.tollgate.v1';
export const DEFAULT_WAIT_MS = 5000;
/** How long close() waits for the closing handshake before terminating the socket. */
const CLOSE_GRACE_MS = 1000;

/** The WebSocket opening handshake as this side saw it. */
export interface Handshake {
  /** 'server': the gateway dialled us, `headers` are its request's; 'client': we dialled, they are the response's. */
  side: 'server' | 'client';
  /** Request target: path and query as sent (server side), or the full URL dialled (client side). */
  url: string;
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  /** The negotiated subprotocol, '' for none. */
  protocol: string;
  /** Shortcuts for the signature headers the gateway sends when it dials an agent. */
  tollgateSignature: string | undefined;
  twilioSignature: string | undefined;
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

function handshakeOf(side: Handshake['side'], url: string, headers: IncomingHttpHeaders, protocol: string): Handshake {
  const u = new URL(url, 'http://127.0.0.1');
  return {
    side,
    url,
    path: u.pathname,
    query: Object.fromEntries(u.searchParams),
    headers,
    protocol,
    tollgateSignature: header(headers, 'tollgate-signature'),
    twilioSignature: header(headers, 'x-twilio-signature'),
  };
}

/** A dial the gateway refused, or that failed before the upgrade. */
export class DialError extends Error {
  constructor(
    message: string,
    /** HTTP status of a refused upgrade; 0 when there was no HTTP answer. */
    readonly status: number,
    readonly headers: IncomingHttpHeaders = {},
    readonly body = '',
  ) {
    super(message);
    this.name = 'DialError';
  }
}

export interface DialOptions {
  /** Extra request headers (e.g. authorization). */
  headers?: Record<string, string>;
  /** Subprotocols to offer, e.g. NATIVE_SUBPROTOCOL. */
  protocols?: string | string[];
  /** Until the upgrade completes. Default 5 s. */
  timeoutMs?: number;
}

export interface SpeakResult {
  chunks: number;
  bytes: number;
  /** True when bargeIn()/stopSpeaking()/close() cut it short. */
  aborted: boolean;
  /** performance.now() of the first and last send. */
  startedAt: number;
  endedAt: number;
}

interface Waiter {
  check: () => boolean;
  reject: (err: Error) => void;
  what: string;
}

/** Splits `buf` into chunks of `size` bytes (the last may be shorter). */
function chunksOf(buf: Uint8Array, size: number): Buffer[] {
  if (size <= 0) throw new RangeError('chunk size must be positive');
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Buffer[] = [];
  for (let off = 0; off < b.length; off += size) out.push(b.subarray(off, Math.min(b.length, off + size)));
  return out;
}

/** Common to all agents: the socket, its handshake, bounded waits, pacing and close. */
export abstract class AgentPeer {
  ws: WebSocket | null = null;
  handshake: Handshake | null = null;
  /** Set once the socket closed: the close code and reason we received (1006 if none). */
  closed: { code: number; reason: string; atMs: number } | null = null;
  /** Frames that broke the protocol as this agent understands it (bad JSON, unknown event, …). */
  readonly protocolErrors: string[] = [];
  /** performance.now() when the socket opened. */
  openedAt = 0;
  private readonly waiters = new Set<Waiter>();
  private readonly speaking = new Set<AbortController>();

  protected abstract onText(text: string, atMs: number): void;
  protected abstract onBinary(data: Buffer, atMs: number): void;
  /** A one-line summary of what was received, for timeout messages. */
  protected abstract summary(): string;

  get label(): string {
    return this.constructor.name;
  }

  /** Takes over a socket an AgentServer accepted. */
  adopt(ws: WebSocket, req: IncomingMessage): void {
    this.handshake = handshakeOf('server', req.url ?? '/', req.headers, ws.protocol);
    this.bind(ws);
  }

  /** Dials `url` (e.g. ws://127.0.0.1:PORT/v1/stream). Rejects with a DialError if refused. */
  dial(url: string, opts: DialOptions = {}): Promise<this> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_WAIT_MS;
    return new Promise<this>((resolve, reject) => {
      const ws = new WebSocket(url, opts.protocols ?? [], { headers: opts.headers ?? {}, handshakeTimeout: timeoutMs });
      let responseHeaders: IncomingHttpHeaders = {};
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        ws.terminate();
        reject(err);
      };
      const timer = setTimeout(() => fail(new DialError(`${this.label}: dialling ${url} timed out after ${timeoutMs} ms`, 0)), timeoutMs);
      ws.once('upgrade', (res: IncomingMessage) => (responseHeaders = res.headers));
      ws.once('unexpected-response', (_req, res: IncomingMessage) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          if (body.length < 65_536) body += d;
        });
        const done = () => fail(new DialError(`${this.label}: ${url} refused the upgrade with HTTP ${res.statusCode ?? 0}: ${body.slice(0, 500)}`, res.statusCode ?? 0, res.headers, body));
        res.once('end', done);
        res.once('error', done);
        res.once('close', done);
      });
      ws.on('error', (err) => fail(new DialError(`${this.label}: dialling ${url} failed: ${err.message}`, 0)));
      ws.once('open', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.handshake = handshakeOf('client', url, responseHeaders, ws.protocol);
        this.bind(ws);
        resolve(this);
      });
    });
  }

  private bind(ws: WebSocket): void {
    this.ws = ws;
    this.openedAt = performance.now();
    ws.on('message', (data: RawData, isBinary: boolean) => {
      const at = performance.now();
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      try {
        if (isBinary) this.onBinary(buf, at);
        else this.onText(buf.toString('utf8'), at);
      } catch (err) {
        this.protocolErrors.push(`handler threw: ${(err as Error).message}`);
      }
      this.changed();
    });
    // A socket error is followed by 'close'; the code tells the test what happened.
    ws.on('error', (err) => this.protocolErrors.push(`socket error: ${err.message}`));
    ws.once('close', (code: number, reason: Buffer) => {
      this.closed = { code, reason: reason.toString('utf8'), atMs: performance.now() };
      for (const c of this.speaking) c.abort();
      this.changed();
      for (const w of [...this.waiters]) {
        this.waiters.delete(w);
        w.reject(new Error(`${this.label}: socket closed (${code} ${this.closed.reason}) while waiting for ${w.what}; ${this.summary()}`));
      }
    });
  }

  /** Re-checks every pending wait: call after any state change. */
  protected changed(): void {
    for (const w of [...this.waiters]) w.check();
  }

  /**
   * Resolves with the first truthy value of `predicate`, re-checked on every frame and on close.
   * Rejects after `timeoutMs`, or when the socket closes first, saying what it waited for and
   * what it had received.
   */
  waitFor<T>(predicate: () => T | null | undefined | false, timeoutMs = DEFAULT_WAIT_MS, what = predicate.toString().slice(0, 120)): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const first = predicate();
      if (first) return resolve(first);
      if (this.closed) {
        return reject(new Error(`${this.label}: socket already closed (${this.closed.code} ${this.closed.reason}) while waiting for ${what}; ${this.summary()}`));
      }
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`${this.label}: timed out after ${timeoutMs} ms waiting for ${what}; ${this.summary()}`));
      }, timeoutMs);
      const waiter: Waiter = {
        what,
        check: () => {
          const v = predicate();
          if (!v) return false;
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(v);
          return true;
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      this.waiters.add(waiter);
    });
  }

  /** Waits for the socket to close; resolves with the code and reason received. */
  async waitForClose(timeoutMs = DEFAULT_WAIT_MS): Promise<{ code: number; reason: string }> {
    const c = await this.waitFor(() => this.closed, timeoutMs, 'the socket to close');
    return { code: c.code, reason: c.reason };
  }

  /** Sends a text frame (objects are JSON-encoded) or a binary frame. Throws when not open. */
  send(data: string | Uint8Array | Record<string, unknown>): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) throw new Error(`${this.label}: cannot send, the socket is ${ws ? ['connecting', 'open', 'closing', 'closed'][ws.readyState] : 'not connected'}`);
    if (data instanceof Uint8Array) ws.send(data, { binary: true });
    else ws.send(typeof data === 'string' ? data : JSON.stringify(data));
  }

  /**
   * Sends `chunks` through `sendOne`, the first at once and chunk i at start + i × intervalMs
   * (absolute schedule, so timer lateness does not add up); intervalMs 0 sends all at once.
   */
  protected async pace(chunks: readonly Buffer[], intervalMs: number, sendOne: (chunk: Buffer) => void): Promise<SpeakResult> {
    const ctl = new AbortController();
    this.speaking.add(ctl);
    const startedAt = performance.now();
    let sent = 0;
    let bytes = 0;
    let endedAt = startedAt;
    try {
      for (const c of chunks) {
        if (intervalMs > 0) {
          const due = startedAt + sent * intervalMs - performance.now();
          if (due > 1) {
            await new Promise<void>((res) => {
              const onAbort = () => {
                clearTimeout(t);
                res();
              };
              const t = setTimeout(() => {
                ctl.signal.removeEventListener('abort', onAbort);
                res();
              }, due);
              ctl.signal.addEventListener('abort', onAbort, { once: true });
            });
          }
        }
        if (ctl.signal.aborted || !this.ws || this.ws.readyState !== WebSocket.OPEN) break;
        sendOne(c);
        endedAt = performance.now();
        sent++;
        bytes += c.length;
      }
    } finally {
      this.speaking.delete(ctl);
    }
    return { chunks: sent, bytes, aborted: sent < chunks.length, startedAt, endedAt };
  }

  /** Cuts short any speak() in progress (it resolves with aborted: true). */
  stopSpeaking(): void {
    for (const c of this.speaking) c.abort();
  }

  /** True while a speak() is sending. */
  get isSpeaking(): boolean {
    return this.speaking.size > 0;
  }

  /** Closes the socket (terminating it if the close handshake takes over 1 s). Idempotent. */
  async close(code = 1000, reason = ''): Promise<void> {
    this.stopSpeaking();
    const ws = this.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((res) => {
      const t = setTimeout(() => {
        ws.terminate();
        res();
      }, CLOSE_GRACE_MS);
      ws.once('close', () => {
        clearTimeout(t);
        res();
      });
      if (ws.readyState === WebSocket.OPEN) ws.close(code, reason);
      else if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Server side: the gateway dials the agent

export interface AgentServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /**
   * Which offered subprotocol to accept: a name (accepted only if offered), false for none, or a
   * function of the offered list. Default: the first offered (the ws library's default).
   */
  protocol?: string | false | ((offered: string[]) => string | false);
  /** Refuse every upgrade with this HTTP status (e.g. 401, 503), to test the gateway's handling. */
  rejectStatus?: number;
  /**
   * Hold each upgrade request this long before answering it (an agent slow to pick up). An
   * upgrade whose client gave up meanwhile is never accepted and counts in `abandoned`.
   */
  holdUpgradeMs?: number;
}

/** A WebSocket server on 127.0.0.1:0 that hands each accepted connection to a new agent. */
export class AgentServer<A extends AgentPeer> {
  /** Agents in the order their connections were accepted. */
  readonly agents: A[] = [];
  /** Every upgrade request seen, accepted or refused. */
  readonly requests: Handshake[] = [];
  /** Held upgrades (holdUpgradeMs) whose client closed the connection before the answer. */
  abandoned = 0;
  private readonly waiters = new Set<() => void>();
  private taken = 0;
  /** Timers of upgrades being held (holdUpgradeMs). */
  private readonly held = new Set<ReturnType<typeof setTimeout>>();

  private constructor(
    private readonly http: Server,
    private readonly wss: WebSocketServer,
    private readonly sockets: Set<Socket>,
    /** ws://host:port, without a path: the gateway may dial any path, recorded in handshake.path. */
    readonly url: string,
    readonly port: number,
  ) {}

  static async listen<A extends AgentPeer>(create: () => A, opts: AgentServerOptions = {}): Promise<AgentServer<A>> {
    const host = opts.host ?? '127.0.0.1';
    const sockets = new Set<Socket>();
    const http = createServer((_req, res) => res.writeHead(426, { connection: 'close' }).end('WebSocket only\n'));
    http.on('connection', (s: Socket) => {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
    });
    const p = opts.protocol;
    const wss = new WebSocketServer({
      server: http,
      handleProtocols:
        p === undefined
          ? undefined
          : (offered: Set<string>) => {
              const list = [...offered];
              if (typeof p === 'function') return p(list);
              return p !== false && offered.has(p) ? p : false;
            },
      verifyClient: (info: { req: IncomingMessage }, cb: (ok: boolean, code?: number, message?: string) => void) => {
        server.requests.push(handshakeOf('server', info.req.url ?? '/', info.req.headers, ''));
        const answer = (): void => {
          if (opts.rejectStatus !== undefined) return cb(false, opts.rejectStatus, 'refused by test agent');
          cb(true);
        };
        if (opts.holdUpgradeMs) {
          const socket = info.req.socket;
          const t = setTimeout(() => {
            server.held.delete(t);
            answer();
          }, opts.holdUpgradeMs);
          server.held.add(t);
          // The HTTP server keeps a half-open socket: the client's FIN shows as 'end'. ws itself
          // never completes an upgrade whose socket is no longer readable.
          const gaveUp = (): void => {
            if (server.held.delete(t)) {
              clearTimeout(t);
              server.abandoned++;
              socket.destroy();
            }
          };
          socket.once('end', gaveUp);
          socket.once('close', gaveUp);
          return;
        }
        answer();
      },
    });
    await new Promise<void>((res, rej) => {
      http.once('error', rej);
      http.listen(0, host, () => res());
    });
    const addr = http.address();
    if (!addr || typeof addr === 'string') throw new Error('AgentServer: no port');
    const server: AgentServer<A> = new AgentServer<A>(http, wss, sockets, `ws://${host}:${addr.port}`, addr.port);
    wss.on('connection', (ws: WebSocket, req: IncomingMessage) => {
      const agent = create();
      agent.adopt(ws, req);
      server.agents.push(agent);
      for (const w of [...server.waiters]) w();
    });
    return server;
  }

  /** The agent of the `index`-th accepted connection, waiting (bounded) for it. */
  agent(index = 0, timeoutMs = DEFAULT_WAIT_MS): Promise<A> {
    return new Promise<A>((resolve, reject) => {
      const have = this.agents[index];
      if (have) return resolve(have);
      const check = () => {
        const a = this.agents[index];
        if (!a) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(a);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`AgentServer ${this.url}: timed out after ${timeoutMs} ms waiting for connection #${index + 1} (${this.agents.length} accepted, ${this.requests.length} upgrade requests)`));
      }, timeoutMs);
      this.waiters.add(check);
    });
  }

  /** The next agent not yet returned by nextAgent(): first call gives connection #1, and so on. */
  nextAgent(timeoutMs = DEFAULT_WAIT_MS): Promise<A> {
    return this.agent(this.taken++, timeoutMs);
  }

  /** Closes every agent's socket, then the server. */
  async close(): Promise<void> {
    for (const t of this.held) clearTimeout(t);
    this.held.clear();
    await Promise.all(this.agents.map((a) => a.close(1001, 'test server closing')));
    await new Promise<void>((res) => this.wss.close(() => res()));
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((res) => this.http.close(() => res()));
  }
}

// ---------------------------------------------------------------------------------------------
// Twilio Media Streams

export interface TwilioStart {
  accountSid: string;
  streamSid: string;
  callSid: string;
  tracks: string[];
  customParameters: Record<string, string>;
  mediaFormat: { encoding: string; sampleRate: number; channels: number };
}

/** Any Twilio Media Streams message, as received. */
export interface TwilioMessage {
  event: string;
  sequenceNumber?: unknown;
  streamSid?: unknown;
  [key: string]: unknown;
}

/** One received `media` event, without its payload (that goes to `inboundAudio()`). */
export interface TwilioMediaRecord {
  /** Raw fields as received: Twilio sends them as decimal strings. */
  sequenceNumber: unknown;
  chunk: unknown;
  timestamp: unknown;
  track: unknown;
  streamSid: unknown;
  /** Decoded payload length. */
  payloadBytes: number;
  /** performance.now() at arrival. */
  arrivalMs: number;
}

export interface MediaCheckOptions {
  /**
   * Largest gap allowed between a media event's wall-clock arrival and its timestamp, both taken
   * from the first event; arrival ahead (media faster than real time) or behind. Default 300 ms.
   * null skips the check.
   */
  toleranceMs?: number | null;
  /** Expected payload length. Default 160 (20 ms of 8 kHz µ-law). */
  payloadBytes?: number;
}

const isDecimal = (v: unknown): v is string => typeof v === 'string' && /^(0|[1-9][0-9]*)$/.test(v);

/** A Twilio Media Streams agent: records everything received, sends media/mark/clear/dtmf. */
export class TwilioAgent extends AgentPeer {
  /** Every message received, in order (media included). */
  readonly events: TwilioMessage[] = [];
  connected: TwilioMessage | null = null;
  /** The `start` message, and the fields Pipecat's example servers take from it. */
  startMessage: TwilioMessage | null = null;
  start: TwilioStart | null = null;
  readonly media: TwilioMediaRecord[] = [];
  readonly marks: { name: string; sequenceNumber: unknown; arrivalMs: number }[] = [];
  readonly dtmfReceived: { digit: string; track: unknown; sequenceNumber: unknown; arrivalMs: number }[] = [];
  readonly warnings: { reason: string; remainingMs: unknown; arrivalMs: number }[] = [];
  stop: TwilioMessage | null = null;
  private readonly payloads: Buffer[] = [];
  private inboundBytes = 0;

  get streamSid(): string | undefined {
    return this.start?.streamSid;
  }
  get callSid(): string | undefined {
    return this.start?.callSid;
  }
  get accountSid(): string | undefined {
    return this.start?.accountSid;
  }
  get customParameters(): Record<string, string> {
    return this.start?.customParameters ?? {};
  }

  protected onBinary(data: Buffer): void {
    this.protocolErrors.push(`binary frame of ${data.length} bytes on a Twilio stream`);
  }

  protected onText(text: string, atMs: number): void {
    let msg: TwilioMessage;
    try {
      const v: unknown = JSON.parse(text);
      if (!v || typeof v !== 'object' || typeof (v as { event?: unknown }).event !== 'string') throw new Error('no "event"');
      msg = v as TwilioMessage;
    } catch (err) {
      this.protocolErrors.push(`unparseable frame (${(err as Error).message}): ${text.slice(0, 200)}`);
      return;
    }
    const index = this.events.length;
    this.events.push(msg);
    // Pipecat reads the first two frames blindly as connected and start: anything else breaks it.
    if (index === 0 && !(msg.event === 'connected' && msg.protocol === 'Call' && msg.version === '1.0.0')) {
      this.protocolErrors.push(`first frame is not {"event":"connected","protocol":"Call","version":"1.0.0"}: ${text.slice(0, 200)}`);
    }
    if (index === 1 && msg.event !== 'start') this.protocolErrors.push(`second frame is not "start": ${text.slice(0, 200)}`);
    const sid = this.start?.streamSid;
    if (sid !== undefined && msg.event !== 'connected' && msg.streamSid !== sid) {
      this.protocolErrors.push(`${msg.event} with streamSid ${JSON.stringify(msg.streamSid)}, expected ${sid}`);
    }
    const field = (name: string): Record<string, unknown> => {
      const f = msg[name];
      return f && typeof f === 'object' ? (f as Record<string, unknown>) : {};
    };
    switch (msg.event) {
      case 'connected':
        this.connected = msg;
        break;
      case 'start': {
        const s = field('start');
        this.startMessage = msg;
        this.start = {
          accountSid: typeof s.accountSid === 'string' ? s.accountSid : '',
          streamSid: typeof s.streamSid === 'string' ? s.streamSid : '',
          callSid: typeof s.callSid === 'string' ? s.callSid : '',
          tracks: Array.isArray(s.tracks) ? s.tracks.map(String) : [],
          customParameters: (s.customParameters && typeof s.customParameters === 'object' ? s.customParameters : {}) as Record<string, string>,
          mediaFormat: (s.mediaFormat ?? {}) as TwilioStart['mediaFormat'],
        };
        if (msg.streamSid !== s.streamSid) this.protocolErrors.push(`start: top-level streamSid ${JSON.stringify(msg.streamSid)} differs from start.streamSid ${JSON.stringify(s.streamSid)}`);
        this.onStart();
        break;
      }
      case 'media': {
        const m = field('media');
        const payload = typeof m.payload === 'string' ? Buffer.from(m.payload, 'base64') : Buffer.alloc(0);
        if (typeof m.payload !== 'string') this.protocolErrors.push('media without a string payload');
        this.payloads.push(payload);
        this.inboundBytes += payload.length;
        this.media.push({ sequenceNumber: msg.sequenceNumber, chunk: m.chunk, timestamp: m.timestamp, track: m.track, streamSid: msg.streamSid, payloadBytes: payload.length, arrivalMs: atMs });
        break;
      }
      case 'mark':
        this.marks.push({ name: String(field('mark').name), sequenceNumber: msg.sequenceNumber, arrivalMs: atMs });
        break;
      case 'dtmf':
        this.dtmfReceived.push({ digit: String(field('dtmf').digit), track: field('dtmf').track, sequenceNumber: msg.sequenceNumber, arrivalMs: atMs });
        break;
      case 'warning':
        this.warnings.push({ reason: String(field('warning').reason), remainingMs: field('warning').remainingMs, arrivalMs: atMs });
        break;
      case 'stop':
        this.stop = msg;
        break;
      default:
        this.protocolErrors.push(`unknown event ${JSON.stringify(msg.event)}`);
    }
  }

  /** Called once the start message is in (BurstAgent starts talking here). */
  protected onStart(): void {}

  protected summary(): string {
    const counts: Record<string, number> = {};
    for (const e of this.events) counts[e.event] = (counts[e.event] ?? 0) + 1;
    return `received ${JSON.stringify(counts)}, ${this.inboundBytes} µ-law bytes, closed: ${this.closed ? `${this.closed.code} ${this.closed.reason}` : 'no'}, protocol errors: ${JSON.stringify(this.protocolErrors.slice(0, 3))}`;
  }

  /** All inbound media payloads so far, concatenated (8 kHz µ-law). */
  inboundAudio(): Buffer {
    return Buffer.concat(this.payloads);
  }

  /** All inbound media so far as 8 kHz 16-bit samples. */
  inboundPcm(): Int16Array {
    return ulawDecode(this.inboundAudio());
  }

  /** Inbound µ-law bytes received so far. */
  get inboundBytesCount(): number {
    return this.inboundBytes;
  }

  /**
   * What is wrong with the media events received so far, as readable lines (empty = all good):
   * sequence numbers are decimal strings counting up by one over every message from start ("1");
   * chunks count up by one from "1"; timestamps are decimal strings 20 ms apart; the track is
   * "inbound"; each payload is 160 bytes; and the timestamps follow arrival time.
   */
  mediaProblems(opts: MediaCheckOptions = {}): string[] {
    const problems: string[] = [];
    const max = 20; // enough to see the pattern
    const add = (p: string) => {
      if (problems.length < max) problems.push(p);
    };
    const tolerance = opts.toleranceMs === undefined ? 300 : opts.toleranceMs;
    const size = opts.payloadBytes ?? 160;
    let expectSeq = 1;
    for (const e of this.events) {
      if (e.event === 'connected') continue;
      if (e.sequenceNumber === undefined) continue; // outside the gateway → agent counters only
      if (!isDecimal(e.sequenceNumber)) add(`${e.event}: sequenceNumber ${JSON.stringify(e.sequenceNumber)} is not a decimal string`);
      else if (Number(e.sequenceNumber) !== expectSeq) add(`${e.event}: sequenceNumber "${e.sequenceNumber}", expected "${expectSeq}"`);
      expectSeq = (isDecimal(e.sequenceNumber) ? Number(e.sequenceNumber) : expectSeq) + 1;
    }
    if (this.startMessage && this.startMessage.sequenceNumber !== '1') add(`start: sequenceNumber ${JSON.stringify(this.startMessage.sequenceNumber)}, expected "1"`);
    let prevChunk = 0;
    let prevTs: number | null = null;
    let firstTs = 0;
    let firstArrival = 0;
    this.media.forEach((m, i) => {
      if (!isDecimal(m.chunk)) add(`media #${i + 1}: chunk ${JSON.stringify(m.chunk)} is not a decimal string`);
      else {
        if (Number(m.chunk) !== prevChunk + 1) add(`media #${i + 1}: chunk "${m.chunk}", expected "${prevChunk + 1}"`);
        prevChunk = Number(m.chunk);
      }
      if (m.track !== 'inbound') add(`media #${i + 1}: track ${JSON.stringify(m.track)}, expected "inbound"`);
      if (m.payloadBytes !== size) add(`media #${i + 1}: payload of ${m.payloadBytes} bytes, expected ${size}`);
      if (!isDecimal(m.timestamp)) {
        add(`media #${i + 1}: timestamp ${JSON.stringify(m.timestamp)} is not a decimal string`);
        return;
      }
      const ts = Number(m.timestamp);
      if (prevTs === null) {
        firstTs = ts;
        firstArrival = m.arrivalMs;
      } else if (ts - prevTs !== 20) add(`media #${i + 1}: timestamp "${m.timestamp}" is ${ts - prevTs} ms after the previous, expected 20`);
      prevTs = ts;
      if (tolerance !== null) {
        const drift = m.arrivalMs - firstArrival - (ts - firstTs);
        if (Math.abs(drift) > tolerance) add(`media #${i + 1}: arrived ${drift.toFixed(0)} ms ${drift > 0 ? 'behind' : 'ahead of'} its timestamp (tolerance ${tolerance} ms)`);
      }
    });
    return problems;
  }

  /**
   * Media pacing: how far arrivals ran ahead of (negative) or behind (positive) the timestamps,
   * both counted from the first media event, and the mean gap between arrivals.
   */
  mediaTiming(): { count: number; minDriftMs: number; maxDriftMs: number; meanIntervalMs: number } {
    const m = this.media.filter((r) => isDecimal(r.timestamp));
    if (m.length === 0) return { count: 0, minDriftMs: 0, maxDriftMs: 0, meanIntervalMs: 0 };
    const t0 = Number(m[0]!.timestamp);
    const a0 = m[0]!.arrivalMs;
    let min = 0;
    let max = 0;
    for (const r of m) {
      const d = r.arrivalMs - a0 - (Number(r.timestamp) - t0);
      min = Math.min(min, d);
      max = Math.max(max, d);
    }
    const mean = m.length > 1 ? (m[m.length - 1]!.arrivalMs - a0) / (m.length - 1) : 0;
    return { count: m.length, minDriftMs: min, maxDriftMs: max, meanIntervalMs: mean };
  }

  /** Waits for the start message (after connected). */
  waitForStart(timeoutMs = DEFAULT_WAIT_MS): Promise<TwilioStart> {
    return this.waitFor(() => this.start, timeoutMs, 'the start event');
  }

  /** Waits until `count` messages of `event` have arrived (in all); resolves with the last. */
  waitForEvent(event: string, timeoutMs = DEFAULT_WAIT_MS, count = 1): Promise<TwilioMessage> {
    return this.waitFor(() => this.events.filter((e) => e.event === event)[count - 1], timeoutMs, `${count} "${event}" event(s)`);
  }

  /** Waits for a mark event named `name` (the gateway's echo of ours). */
  waitForMark(name: string, timeoutMs = DEFAULT_WAIT_MS): Promise<{ name: string; sequenceNumber: unknown; arrivalMs: number }> {
    return this.waitFor(() => this.marks.find((m) => m.name === name), timeoutMs, `mark "${name}"`);
  }

  /** Waits until at least `ms` of inbound audio (8 bytes per ms) has arrived. */
  waitForAudio(ms: number, timeoutMs = DEFAULT_WAIT_MS + ms): Promise<number> {
    return this.waitFor(() => (this.inboundBytes >= ms * 8 ? this.inboundBytes : 0), timeoutMs, `${ms} ms of inbound audio`);
  }

  private requireSid(): string {
    const sid = this.start?.streamSid;
    if (!sid) throw new Error(`${this.label}: no start event yet, so no streamSid to send with`);
    return sid;
  }

  /** Sends one media message with these µ-law bytes. */
  sendMedia(ulaw: Uint8Array): void {
    this.send({ event: 'media', streamSid: this.requireSid(), media: { payload: Buffer.from(ulaw.buffer, ulaw.byteOffset, ulaw.byteLength).toString('base64') } });
  }

  /** Sends a mark; the gateway echoes it once the audio before it has played (or on clear). */
  mark(name: string): void {
    this.send({ event: 'mark', streamSid: this.requireSid(), mark: { name } });
  }

  /** Sends clear: the gateway drops the audio it has not played yet. */
  clear(): void {
    this.send({ event: 'clear', streamSid: this.requireSid() });
  }

  /** tollgate extension: the gateway sends this digit to the caller as RFC 4733. */
  sendDtmf(digit: string): void {
    this.send({ event: 'dtmf', streamSid: this.requireSid(), dtmf: { digit } });
  }

  /** Interruption as Pipecat handles it: stop sending, then clear. */
  bargeIn(): void {
    this.stopSpeaking();
    this.clear();
  }

  /** 8 kHz samples are µ-law encoded; bytes are taken as µ-law already. */
  protected toUlaw(audio: Int16Array | Uint8Array): Buffer {
    return audio instanceof Int16Array ? ulawEncode(audio) : Buffer.from(audio.buffer, audio.byteOffset, audio.byteLength);
  }

  /**
   * Hangs the call up through the REST API as Pipecat's Twilio serializer does:
   * POST {baseUrl}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json, body Status=completed,
   * HTTP Basic auth (AccountSid, API key secret). `accountSid` and `callSid` default to start's.
   */
  async hangupViaRest(baseUrl: string, accountSid: string | undefined, apiKey: string, callSid = this.callSid, timeoutMs = DEFAULT_WAIT_MS): Promise<{ status: number; body: unknown; text: string }> {
    const account = accountSid ?? this.accountSid;
    if (!account || !callSid) throw new Error(`${this.label}: hangupViaRest needs an AccountSid and a CallSid (start received: ${this.start ? 'yes' : 'no'})`);
    const url = `${baseUrl.replace(/\/+$/, '')}/2010-04-01/Accounts/${encodeURIComponent(account)}/Calls/${encodeURIComponent(callSid)}.json`;
    const r = await fetch(url, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${account}:${apiKey}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ Status: 'completed' }).toString(),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await r.text();
    let body: unknown = null;
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
    return { status: r.status, body, text };
  }
}

export interface SpeakOptions {
  /** Audio per message. Default 40 ms (Pipecat's 4 × 10 ms chunks). */
  chunkMs?: number;
  /** Real-time pacing (default) or everything at once. */
  paced?: boolean;
  /** Send this mark after the last chunk (unless aborted). */
  mark?: string;
}

/**
 * An agent as Pipecat's FastAPIWebsocketTransport + TwilioFrameSerializer behave: it reads
 * connected and start, sends 8 kHz µ-law media paced at real time in 40 ms messages, clears on
 * interruption, and hangs up through the Calls REST API.
 */
export class PipecatLikeAgent extends TwilioAgent {
  static listen(opts: AgentServerOptions = {}): Promise<AgentServer<PipecatLikeAgent>> {
    return AgentServer.listen(() => new PipecatLikeAgent(), opts);
  }

  /**
   * Sends `audio` (8 kHz samples, or µ-law bytes) as media messages of `chunkMs`, paced at real
   * time, then the mark if given. Resolves when done or cut short by bargeIn()/close().
   */
  async speak(audio: Int16Array | Uint8Array, opts: SpeakOptions = {}): Promise<SpeakResult> {
    const chunkMs = opts.chunkMs ?? 40;
    const r = await this.pace(chunksOf(this.toUlaw(audio), chunkMs * 8), opts.paced === false ? 0 : chunkMs, (c) => this.sendMedia(c));
    if (!r.aborted && opts.mark !== undefined) this.mark(opts.mark);
    return r;
  }
}

export interface BurstAgentOptions {
  /** What to say at start: 8 kHz samples or µ-law bytes. */
  utterance: Int16Array | Uint8Array;
  /**
   * µ-law bytes per media message, or a list cycled through (odd sizes welcome). Default 3000
   * (4000 characters of base64, as the OpenAI realtime deltas often are).
   */
  chunkBytes?: number | number[];
  /** Mark sent after the utterance; null for none. Default 'utterance-end'. */
  mark?: string | null;
  /** Send a mark after every chunk too (the OpenAI sample's "responsePart"). */
  markEach?: string;
  /** Wait this long after start before the burst. Default 0. */
  delayMs?: number;
}

/**
 * An agent like the OpenAI realtime Twilio samples: on start it sends a whole utterance as fast
 * as it can, in arbitrary-sized media messages, then a mark.
 */
export class BurstAgent extends TwilioAgent {
  /** performance.now() when the burst went out, and how much. */
  burstAt: number | null = null;
  burstBytes = 0;
  burstMessages = 0;
  private delayTimer: NodeJS.Timeout | null = null;

  constructor(readonly opts: BurstAgentOptions) {
    super();
  }

  static listen(opts: BurstAgentOptions, server: AgentServerOptions = {}): Promise<AgentServer<BurstAgent>> {
    return AgentServer.listen(() => new BurstAgent(opts), server);
  }

  protected override onStart(): void {
    const go = () => {
      this.delayTimer = null;
      try {
        this.burst();
      } catch (err) {
        this.protocolErrors.push(`burst failed: ${(err as Error).message}`);
      }
    };
    if (this.opts.delayMs) this.delayTimer = setTimeout(go, this.opts.delayMs);
    else go();
  }

  /** Sends the utterance now, all at once (also usable again by hand). */
  burst(audio: Int16Array | Uint8Array = this.opts.utterance): void {
    const bytes = this.toUlaw(audio);
    const sizes = Array.isArray(this.opts.chunkBytes) ? this.opts.chunkBytes : [this.opts.chunkBytes ?? 3000];
    if (sizes.length === 0 || sizes.some((s) => s <= 0)) throw new RangeError('BurstAgent: chunk sizes must be positive');
    this.burstAt = performance.now();
    let off = 0;
    for (let i = 0; off < bytes.length; i++) {
      const n = sizes[i % sizes.length]!;
      this.sendMedia(bytes.subarray(off, Math.min(bytes.length, off + n)));
      off += n;
      this.burstMessages++;
      if (this.opts.markEach !== undefined) this.mark(this.opts.markEach);
    }
    this.burstBytes += bytes.length;
    const mark = this.opts.mark === undefined ? 'utterance-end' : this.opts.mark;
    if (mark !== null) this.mark(mark);
  }

  override async close(code?: number, reason?: string): Promise<void> {
    if (this.delayTimer) clearTimeout(this.delayTimer);
    this.delayTimer = null;
    await super.close(code, reason);
  }
}

// ---------------------------------------------------------------------------------------------
// Native protocol (audio.tollgate.v1)

export interface NativeAudioFormat {
  encoding: 'L16' | 'PCMU';
  sampleRate: number;
}

export interface NativeStart {
  type: 'start';
  callId: string;
  streamId: string;
  from: string;
  to: string;
  direction: string;
  parameters: Record<string, string>;
  identity: Record<string, unknown>;
  audio: { toAgent: NativeAudioFormat; fromAgent: NativeAudioFormat };
}

export interface NativeEvent {
  type: string;
  [key: string]: unknown;
}

/**
 * A native-protocol agent. Inbound binary frames must each be exactly 20 ms at the toAgent
 * format (L16: rate/50 samples × 2 bytes; PCMU: rate/50 bytes); others are counted in
 * `badFrameSizes`. Outbound audio is L16 little-endian (or µ-law) at the fromAgent format.
 */
export class NativeAgent extends AgentPeer {
  start: NativeStart | null = null;
  /** Every text event received, in order. */
  readonly events: NativeEvent[] = [];
  readonly marks: { name: string; status: string; arrivalMs: number }[] = [];
  readonly cleared: { playedMs: number; discardedMs: number; arrivalMs: number }[] = [];
  readonly dtmfReceived: { digit: string; durationMs: number; arrivalMs: number }[] = [];
  readonly warnings: { reason: string; remainingMs: number; arrivalMs: number }[] = [];
  readonly errors: { code: string; message: string }[] = [];
  stop: { reason: string } | null = null;
  /** Binary frames received, their arrival times, and the sizes that were not 20 ms. */
  frames = 0;
  readonly frameArrivals: number[] = [];
  badFrameSizes = 0;
  readonly badFrames: number[] = [];
  /** The format announced by attach(), used before start arrives. */
  attachAudio: NativeAudioFormat | null = null;
  private readonly chunks: Buffer[] = [];

  static listen(opts: AgentServerOptions = {}): Promise<AgentServer<NativeAgent>> {
    return AgentServer.listen(() => new NativeAgent(), opts);
  }

  /** Dials the gateway's /v1/stream offering audio.tollgate.v1 (plus any given protocols). */
  override dial(url: string, opts: DialOptions = {}): Promise<this> {
    return super.dial(url, { ...opts, protocols: opts.protocols ?? NATIVE_SUBPROTOCOL });
  }

  /** Expected bytes per inbound frame, once start is known. */
  get frameBytes(): number | null {
    const f = this.start?.audio?.toAgent;
    if (!f) return null;
    return (f.sampleRate / 50) * (f.encoding === 'PCMU' ? 1 : 2);
  }

  protected onBinary(data: Buffer, atMs: number): void {
    const expect = this.frameBytes;
    if (expect === null) this.protocolErrors.push(`binary frame of ${data.length} bytes before start`);
    else if (data.length !== expect) {
      this.badFrameSizes++;
      if (this.badFrames.length < 100) this.badFrames.push(data.length);
    }
    this.frames++;
    this.frameArrivals.push(atMs);
    this.chunks.push(data);
  }

  protected onText(text: string, atMs: number): void {
    let ev: NativeEvent;
    try {
      const v: unknown = JSON.parse(text);
      if (!v || typeof v !== 'object' || typeof (v as { type?: unknown }).type !== 'string') throw new Error('no "type"');
      ev = v as NativeEvent;
    } catch (err) {
      this.protocolErrors.push(`unparseable frame (${(err as Error).message}): ${text.slice(0, 200)}`);
      return;
    }
    if (this.events.length === 0 && ev.type !== 'start' && ev.type !== 'error') this.protocolErrors.push(`first event is ${ev.type}, not start`);
    this.events.push(ev);
    switch (ev.type) {
      case 'start':
        this.start = ev as unknown as NativeStart;
        break;
      case 'mark':
        this.marks.push({ name: String(ev.name), status: String(ev.status), arrivalMs: atMs });
        break;
      case 'cleared':
        this.cleared.push({ playedMs: Number(ev.playedMs), discardedMs: Number(ev.discardedMs), arrivalMs: atMs });
        break;
      case 'dtmf':
        this.dtmfReceived.push({ digit: String(ev.digit), durationMs: Number(ev.durationMs), arrivalMs: atMs });
        break;
      case 'warning':
        this.warnings.push({ reason: String(ev.reason), remainingMs: Number(ev.remainingMs), arrivalMs: atMs });
        break;
      case 'stop':
        this.stop = { reason: String(ev.reason) };
        break;
      case 'error':
        this.errors.push({ code: String(ev.code), message: String(ev.message) });
        break;
      default:
        this.protocolErrors.push(`unknown event type ${JSON.stringify(ev.type)}`);
    }
  }

  protected summary(): string {
    const counts: Record<string, number> = {};
    for (const e of this.events) counts[e.type] = (counts[e.type] ?? 0) + 1;
    return `received ${JSON.stringify(counts)}, ${this.frames} binary frames (${this.badFrameSizes} of a wrong size), closed: ${this.closed ? `${this.closed.code} ${this.closed.reason}` : 'no'}, errors: ${JSON.stringify(this.errors.slice(0, 3))}, protocol errors: ${JSON.stringify(this.protocolErrors.slice(0, 3))}`;
  }

  /** Inbound audio so far as 16-bit samples at the toAgent rate (µ-law decoded if PCMU). */
  inboundPcm(): Int16Array {
    const all = Buffer.concat(this.chunks);
    if (this.start?.audio?.toAgent?.encoding === 'PCMU') return ulawDecode(all);
    return pcm16le(all.subarray(0, all.length & ~1));
  }

  /** The toAgent sample rate (from start). */
  get inboundRate(): number | null {
    return this.start?.audio?.toAgent?.sampleRate ?? null;
  }

  waitForStart(timeoutMs = DEFAULT_WAIT_MS): Promise<NativeStart> {
    return this.waitFor(() => this.start, timeoutMs, 'the start event');
  }

  /** Waits until `count` events of `type` have arrived; resolves with the last. */
  waitForEvent(type: string, timeoutMs = DEFAULT_WAIT_MS, count = 1): Promise<NativeEvent> {
    return this.waitFor(() => this.events.filter((e) => e.type === type)[count - 1], timeoutMs, `${count} "${type}" event(s)`);
  }

  /** Waits for a mark event named `name` (status played or cleared). */
  waitForMark(name: string, timeoutMs = DEFAULT_WAIT_MS): Promise<{ name: string; status: string; arrivalMs: number }> {
    return this.waitFor(() => this.marks.find((m) => m.name === name), timeoutMs, `mark "${name}"`);
  }

  /** Waits until `count` binary frames (20 ms each) have arrived. */
  waitForFrames(count: number, timeoutMs = DEFAULT_WAIT_MS + count * 20): Promise<number> {
    return this.waitFor(() => (this.frames >= count ? this.frames : 0), timeoutMs, `${count} binary frames`);
  }

  private outFormat(): NativeAudioFormat {
    const f = this.start?.audio?.fromAgent ?? this.attachAudio;
    if (!f) throw new Error(`${this.label}: no start (or attach) yet, so no fromAgent format to speak in`);
    return f;
  }

  /** Encodes samples at the fromAgent rate for the wire (L16 LE, or µ-law for PCMU). */
  encode(pcm: Int16Array): Buffer {
    return this.outFormat().encoding === 'PCMU' ? ulawEncode(pcm) : toPcm16le(pcm);
  }

  /**
   * Sends `pcm` (samples at the fromAgent rate) as binary frames of `chunkMs` (default 20),
   * paced at real time or, with paced: false, all at once; then the mark if given.
   */
  async speak(pcm: Int16Array, opts: SpeakOptions = {}): Promise<SpeakResult> {
    const f = this.outFormat();
    const chunkMs = opts.chunkMs ?? 20;
    const sampleBytes = f.encoding === 'PCMU' ? 1 : 2;
    const size = Math.max(1, Math.round((chunkMs * f.sampleRate) / 1000)) * sampleBytes;
    const r = await this.pace(chunksOf(this.encode(pcm), size), opts.paced === false ? 0 : chunkMs, (c) => this.send(c));
    if (!r.aborted && opts.mark !== undefined) this.mark(opts.mark);
    return r;
  }

  clear(): void {
    this.send({ type: 'clear' });
  }

  mark(name: string): void {
    this.send({ type: 'mark', name });
  }

  /** Asks the gateway to send `digits` to the caller as RFC 4733. */
  dtmf(digits: string, durationMs?: number): void {
    this.send(durationMs === undefined ? { type: 'dtmf', digits } : { type: 'dtmf', digits, durationMs });
  }

  hangup(): void {
    this.send({ type: 'hangup' });
  }

  /** Interruption: stop sending, then clear. */
  bargeIn(): void {
    this.stopSpeaking();
    this.clear();
  }

  /** First message when dialling /v1/stream: which call, and the audio format wanted. */
  attach(callId: string, audio: NativeAudioFormat = { encoding: 'L16', sampleRate: 16000 }): void {
    this.attachAudio = audio;
    this.send({ type: 'attach', callId, audio });
  }
}

// ---------------------------------------------------------------------------------------------
// Echo

/**
 * A minimal, fast echo server for benchmarks: every Twilio media payload goes straight back as
 * an agent media message with the same streamSid, and native binary frames go back as they are
 * (so give both directions the same format). Everything else is ignored.
 */
export class EchoAgent {
  connections = 0;
  open = 0;
  echoedFrames = 0;
  echoedBytes = 0;

  private constructor(
    private readonly wss: WebSocketServer,
    private readonly http: Server,
    private readonly sockets: Set<Socket>,
    readonly url: string,
    readonly port: number,
  ) {}

  static async listen(host = '127.0.0.1'): Promise<EchoAgent> {
    const sockets = new Set<Socket>();
    const http = createServer((_req, res) => res.writeHead(426).end());
    http.on('connection', (s: Socket) => {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
    });
    const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
    await new Promise<void>((res, rej) => {
      http.once('error', rej);
      http.listen(0, host, () => res());
    });
    const addr = http.address();
    if (!addr || typeof addr === 'string') throw new Error('EchoAgent: no port');
    const echo = new EchoAgent(wss, http, sockets, `ws://${host}:${addr.port}`, addr.port);
    wss.on('connection', (ws: WebSocket) => {
      echo.connections++;
      echo.open++;
      ws.on('error', () => {});
      ws.once('close', () => echo.open--);
      ws.on('message', (data: RawData, isBinary: boolean) => {
        const buf = data as Buffer;
        if (isBinary) {
          ws.send(buf, { binary: true });
          echo.echoedFrames++;
          echo.echoedBytes += buf.length;
          return;
        }
        let msg: { event?: string; streamSid?: string; media?: { payload?: string }; mark?: unknown };
        try {
          msg = JSON.parse(buf.toString('utf8')) as typeof msg;
        } catch {
          return;
        }
        if (msg.event === 'media' && typeof msg.media?.payload === 'string') {
          ws.send(`{"event":"media","streamSid":${JSON.stringify(msg.streamSid)},"media":{"payload":"${msg.media.payload}"}}`);
          echo.echoedFrames++;
          echo.echoedBytes += (msg.media.payload.length * 3) >> 2;
        }
      });
    });
    return echo;
  }

  /** Waits (bounded) until `n` connections have been accepted in all. */
  async waitForConnections(n: number, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (this.connections < n) {
      if (performance.now() > deadline) throw new Error(`EchoAgent: timed out after ${timeoutMs} ms waiting for ${n} connections (${this.connections} accepted)`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async close(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    await new Promise<void>((res) => this.wss.close(() => res()));
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((res) => this.http.close(() => res()));
  }
}

