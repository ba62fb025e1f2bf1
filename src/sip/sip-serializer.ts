/**
 * Writes SipMessage values to the wire (RFC 3261 §7) and builds responses to requests
 * (RFC 3261 §8.2.6). Content-Length is always recomputed from the body, so a message can be
 * edited freely before it is sent.
 */
import { TollgateError } from '../errors/index.js';
import { isToken, parseNameAddr } from './sip-grammar.js';
import { SipHeaders, type ParseFailure, type SipMessage, type SipRequest, type SipResponse } from './sip-message.js';

/** Default reason phrases (RFC 3261 §21 and the extensions a gateway sends). */
export const REASON_PHRASES: Readonly<Record<number, string>> = Object.freeze({
  100: 'Trying',
  180: 'Ringing',
  181: 'Call Is Being Forwarded',
  182: 'Queued',
  183: 'Session Progress',
  199: 'Early Dialog Terminated',
  200: 'OK',
  202: 'Accepted',
  204: 'No Notification',
  300: 'Multiple Choices',
  301: 'Moved Permanently',
  302: 'Moved Temporarily',
  305: 'Use Proxy',
  380: 'Alternative Service',
  400: 'Bad Request',
  401: 'Unauthorized',
  402: 'Payment Required',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  410: 'Gone',
  412: 'Conditional Request Failed',
  413: 'Request Entity Too Large',
  414: 'Request-URI Too Long',
  415: 'Unsupported Media Type',
  416: 'Unsupported URI Scheme',
  420: 'Bad Extension',
  421: 'Extension Required',
  422: 'Session Interval Too Small',
  423: 'Interval Too Brief',
  428: 'Use Identity Header',
  429: 'Provide Referrer Identity',
  436: 'Bad Identity Info',
  437: 'Unsupported Credential',
  438: 'Invalid Identity Header',
  480: 'Temporarily Unavailable',
  481: 'Call/Transaction Does Not Exist',
  482: 'Loop Detected',
  483: 'Too Many Hops',
  484: 'Address Incomplete',
  485: 'Ambiguous',
  486: 'Busy Here',
  487: 'Request Terminated',
  488: 'Not Acceptable Here',
  489: 'Bad Event',
  491: 'Request Pending',
  493: 'Undecipherable',
  494: 'Security Agreement Required',
  500: 'Server Internal Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Server Time-out',
  505: 'Version Not Supported',
  513: 'Message Too Large',
  580: 'Precondition Failure',
  600: 'Busy Everywhere',
  603: 'Decline',
  604: 'Does Not Exist Anywhere',
  606: 'Not Acceptable',
  607: 'Unwanted',
  608: 'Rejected',
});

const CLASS_PHRASES = ['', 'Provisional', 'Success', 'Redirection', 'Client Error', 'Server Error', 'Global Failure'];

/** The default reason phrase for a status code; codes not in the table get their class's name. */
export function reasonPhrase(status: number): string {
  return REASON_PHRASES[status] ?? CLASS_PHRASES[Math.floor(status / 100)] ?? 'Unknown';
}

const CRLF_RE = /[\r\n]/;
const CRLF_RUN_RE = /[ \t]*[\r\n]+[ \t]*/g;

/** A bare CR or LF in a value would end the header early (header injection); it becomes one SP. */
function oneLine(v: string): string {
  return CRLF_RE.test(v) ? v.replace(CRLF_RUN_RE, ' ') : v;
}

function isContentLength(name: string): boolean {
  return name.length === 1 ? name === 'l' || name === 'L' : name.length === 14 && name.toLowerCase() === 'content-length';
}

/**
 * Serializes a message: start line, headers in order as `Name: value`, Content-Length set to
 * the body's byte length (at the place of the first existing Content-Length, else last), an
 * empty line and the body. Header values are written as UTF-8.
 * Throws TollgateError('INTERNAL') for a header name that is not a token: that is a bug in
 * the caller, never a property of received input (the parser only produces token names).
 */
export function serializeMessage(msg: SipMessage): Buffer {
  let head =
    msg.kind === 'request'
      ? `${oneLine(msg.method)} ${oneLine(msg.uri)} SIP/2.0\r\n`
      : `SIP/2.0 ${msg.status} ${oneLine(msg.reason)}\r\n`;
  const length = `Content-Length: ${msg.body.length}\r\n`;
  let wroteLength = false;
  for (const h of msg.headers.entries()) {
    if (isContentLength(h.name)) {
      if (!wroteLength) head += length;
      wroteLength = true;
      continue;
    }
    if (!isToken(h.name)) throw new TollgateError('INTERNAL', `Invalid SIP header name ${JSON.stringify(h.name)}`);
    head += `${h.name}: ${oneLine(h.value)}\r\n`;
  }
  if (!wroteLength) head += length;
  head += '\r\n';
  const headLength = Buffer.byteLength(head, 'utf8');
  const out = Buffer.allocUnsafe(headLength + msg.body.length);
  out.write(head, 0, 'utf8');
  msg.body.copy(out, headLength);
  return out;
}

export interface ResponseExtras {
  /** Appended after the copied headers, in order. */
  readonly headers?: readonly (readonly [string, string])[];
  readonly body?: Buffer;
  /** To tag for this UAS (RFC 3261 §8.2.6.2); added only when the request's To has none. */
  readonly toTag?: string;
}

const EMPTY = Buffer.alloc(0);

function hasToTag(to: string): boolean {
  const parsed = parseNameAddr(to);
  if (parsed) return parsed.params.has('tag');
  return /;\s*tag\s*=/i.test(to);
}

/** Copies Via (every value, in order), From, To (+tag), Call-ID and CSeq (RFC 3261 §8.2.6.2). */
function responseHeaders(source: SipHeaders, toTag: string | undefined): SipHeaders {
  const headers = new SipHeaders();
  for (const h of source.entries()) if (h.name.toLowerCase() === 'via') headers.append('Via', h.value);
  const from = source.get('From');
  if (from !== undefined) headers.append('From', from);
  const to = source.get('To');
  if (to !== undefined) headers.append('To', toTag !== undefined && toTag !== '' && !hasToTag(to) ? `${to};tag=${toTag}` : to);
  const callId = source.get('Call-ID');
  if (callId !== undefined) headers.append('Call-ID', callId);
  const cseq = source.get('CSeq');
  if (cseq !== undefined) headers.append('CSeq', cseq);
  return headers;
}

/**
 * Builds a response to `req` per RFC 3261 §8.2.6.2: Via (all values, in order), From, To
 * (with `toTag` added when To has no tag), Call-ID and CSeq copied; then `extra.headers`.
 * The reason defaults to REASON_PHRASES (or the status class name).
 */
export function buildResponse(req: SipRequest, status: number, reason?: string, extra?: ResponseExtras): SipResponse {
  const headers = responseHeaders(req.headers, extra?.toTag);
  for (const [name, value] of extra?.headers ?? []) headers.append(name, value);
  return { kind: 'response', status, reason: reason ?? reasonPhrase(status), headers, body: extra?.body ?? EMPTY };
}

/**
 * Builds the response to a request that failed to parse (ParseFailure.partial), e.g. a 400, 414
 * or 513, when the headers read before the fault include Via and CSeq: the Via routes the
 * response back (RFC 3261 §18.2.2) and Via branch + CSeq method let the client match it to its
 * transaction (§17.1.3). From, To and Call-ID are copied when present; a request missing them
 * (RFC 4475 §3.3.1 insuf) still gets the 400 the RFC hopes for, without them.
 * Returns null otherwise, and for ACK, which is never answered (RFC 3261 §17.2.3).
 */
export function buildResponseFromPartial(partial: ParseFailure['partial'], status: number, reason?: string): SipResponse | null {
  if (!partial?.isRequest) return null;
  const h = partial.headers;
  if (!h.has('Via') || !h.has('CSeq')) return null;
  if (partial.method === 'ACK' || /^\s*\d+\s+ACK\s*$/.test(h.get('CSeq') ?? '')) return null;
  return { kind: 'response', status, reason: reason ?? reasonPhrase(status), headers: responseHeaders(h, undefined), body: EMPTY };
}
