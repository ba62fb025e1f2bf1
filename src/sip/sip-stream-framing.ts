/**
 * The framing the SIP layer hands to stream transports (TCP, TLS): SipStreamFramer, plus the
 * answer to a framing error when the broken message is a request that can still be answered.
 * The transport writes that answer, then closes the connection: after a bad Content-Length or
 * an oversize message the stream cannot be resynchronised (RFC 4475 §3.1.2.3).
 *
 * | framing error        | answer                                                        |
 * | -------------------- | ------------------------------------------------------------- |
 * | BAD_CONTENT_LENGTH   | 400 Invalid Content-Length (RFC 4475 §3.1.2.3 ncl)             |
 * | MESSAGE_TOO_LARGE    | 513 Message Too Large (RFC 3261 §21.5.11, §18.1.1)            |
 * | HEADERS_TOO_LARGE    | 513 Message Too Large: no end of headers within the limit     |
 *
 * As for datagrams, the answer needs the request's Via and CSeq (buildResponseFromPartial); a
 * response, an ACK or bytes that are not SIP get none, and the connection just closes.
 */
import type { StreamFramerFactory } from '../transport/stream-transport.js';
import { DEFAULT_LIMITS, type ParseFailure } from './sip-message.js';
import { parseMessage } from './sip-parser.js';
import { buildResponseFromPartial, serializeMessage } from './sip-serializer.js';
import { SipStreamFramer, type FramingError } from './sip-stream-framer.js';

const ANSWERS: Readonly<Record<FramingError['code'], { status: 400 | 513; reason: string }>> = {
  BAD_CONTENT_LENGTH: { status: 400, reason: 'Invalid Content-Length' },
  MESSAGE_TOO_LARGE: { status: 513, reason: 'Message Too Large' },
  HEADERS_TOO_LARGE: { status: 513, reason: 'Message Too Large' },
};

/** The serialized answer to the request whose framing failed, or null when it cannot be answered. */
export function framingErrorReply(error: FramingError): Buffer | null {
  const { status, reason } = ANSWERS[error.code];
  // The head alone: its Content-Length promises a body that is not there, so the parse fails,
  // but the headers read (partial) are what the answer is built from.
  const parsed = parseMessage(error.head, { ...DEFAULT_LIMITS, maxMessageBytes: Math.max(DEFAULT_LIMITS.maxMessageBytes, error.head.length) });
  let partial: ParseFailure['partial'];
  if (parsed.ok) {
    const m = parsed.message;
    partial = m.kind === 'request' ? { isRequest: true, method: m.method, headers: m.headers } : null;
  } else {
    partial = parsed.partial;
  }
  const res = buildResponseFromPartial(partial, status, reason);
  return res ? serializeMessage(res) : null;
}

/** SIP framing for TCP and TLS connections (RFC 3261 §18.3), answering framing errors. */
export const sipStreamFraming: StreamFramerFactory = (handlers, maxMessageBytes) =>
  new SipStreamFramer(
    {
      onMessage: (m) => handlers.onMessage(m),
      onPing: () => handlers.onPing?.(),
      onError: (e) => handlers.onError({ code: e.code, message: e.message, reply: framingErrorReply(e) }),
    },
    { maxMessageBytes },
  );
