/**
 * RFC 3261 §7 message parser for datagrams and for messages already framed off a stream
 * (sip-stream-framer.ts). One pass over a latin1 view of the buffer (one char per byte, so
 * string offsets are byte offsets and Content-Length counts bytes); header values that carry
 * non-ASCII bytes are re-decoded as UTF-8 (RFC 3261 §7.3.1: TEXT-UTF8).
 *
 * What the parser checks, and what it leaves to the layers above:
 * - start line: `Method SP Request-URI SP SIP/2.0` or `SIP/2.0 SP 3DIGIT SP Reason-Phrase`,
 *   single SP separators (RFC 4475 §3.1.2.9 lwsstart and §3.1.2.10 trws are rejected);
 * - header syntax, folding, compact forms, limits;
 * - the headers every transaction needs: top Via, From, To, Call-ID and CSeq must be present,
 *   well formed and (except Via) single (RFC 4475 §3.3.8); CSeq method must equal the request
 *   method (RFC 4475 §3.1.2.17);
 * - scalar fields of requests: CSeq below 2^31 (RFC 3261 §8.1.1.5), Max-Forwards 0..255
 *   (RFC 3261 §20.22; it may be missing, it is a SHOULD), a numeric Expires at most 2^32-1
 *   (§20.19). RFC 4475 §3.1.2.4 lets an element treat a bad Max-Forwards as absent; a gateway
 *   that answers 400 tells the sender about its bug instead of guessing a hop count;
 * - Content-Length (bytes), including duplicates that disagree (RFC 4475 §3.3.9).
 * Other headers stay raw text; sip-grammar.ts parses them on demand, so an element that does
 * not need, say, Contact or Date does not reject a message for them (RFC 4475 §3.1.2.12, §3.1.2.13).
 *
 * Failures are data (ParseFailure): 400 for a malformed request, 414 for a Request-URI longer
 * than maxLineBytes, 505 for another SIP version, 513 for one over maxMessageBytes, null (drop
 * silently) for malformed responses and for input that is not SIP.
 */
import { DEFAULT_LIMITS, SipHeaders, splitHeaderList, type ParseFailure, type ParseLimits, type ParseResult } from './sip-message.js';
import { parseCSeq, parseNameAddr, parseUri, parseVia } from './sip-grammar.js';

/** Compact header forms (RFC 3261 §7.3.3 and the registry of compact forms, RFC 3261 §27.3). */
const COMPACT_FORMS: Readonly<Record<string, string>> = {
  a: 'Accept-Contact',
  b: 'Referred-By',
  c: 'Content-Type',
  d: 'Request-Disposition',
  e: 'Content-Encoding',
  f: 'From',
  i: 'Call-ID',
  j: 'Reject-Contact',
  k: 'Supported',
  l: 'Content-Length',
  m: 'Contact',
  o: 'Event',
  r: 'Refer-To',
  s: 'Subject',
  t: 'To',
  u: 'Allow-Events',
  v: 'Via',
  x: 'Session-Expires',
  y: 'Identity',
};

/** Standard capitalisation of the headers a gateway meets; others keep the case they arrived in. */
const KNOWN_HEADERS = [
  'Accept', 'Accept-Contact', 'Accept-Encoding', 'Accept-Language', 'Alert-Info', 'Allow', 'Allow-Events',
  'Authentication-Info', 'Authorization', 'Call-ID', 'Call-Info', 'Contact', 'Content-Disposition',
  'Content-Encoding', 'Content-Language', 'Content-Length', 'Content-Transfer-Encoding', 'Content-Type', 'CSeq',
  'Date', 'Diversion', 'Error-Info', 'Event', 'Expires', 'From', 'Geolocation', 'History-Info', 'Identity',
  'Identity-Info', 'In-Reply-To', 'Join', 'Max-Forwards', 'MIME-Version', 'Min-Expires', 'Min-SE', 'Organization',
  'P-Access-Network-Info', 'P-Asserted-Identity', 'P-Called-Party-ID', 'P-Charging-Vector', 'P-Early-Media',
  'P-Preferred-Identity', 'Path', 'Priority', 'Privacy', 'Proxy-Authenticate', 'Proxy-Authorization',
  'Proxy-Require', 'RAck', 'Reason', 'Record-Route', 'Refer-Sub', 'Refer-To', 'Referred-By', 'Reject-Contact',
  'Replaces', 'Reply-To', 'Request-Disposition', 'Require', 'Resource-Priority', 'Retry-After', 'Route', 'RSeq',
  'Security-Client', 'Security-Server', 'Security-Verify', 'Server', 'Service-Route', 'Session-Expires',
  'SIP-ETag', 'SIP-If-Match', 'Subject', 'Subscription-State', 'Supported', 'Target-Dialog', 'Timestamp', 'To',
  'Unsupported', 'User-Agent', 'User-to-User', 'Via', 'Warning', 'WWW-Authenticate',
];

/** Exact spelling → canonical, lower-case → canonical, compact (either case) → canonical. */
const CANONICAL = new Map<string, string>();
for (const h of KNOWN_HEADERS) {
  CANONICAL.set(h, h);
  CANONICAL.set(h.toLowerCase(), h);
}
for (const [k, v] of Object.entries(COMPACT_FORMS)) {
  CANONICAL.set(k, v);
  CANONICAL.set(k.toUpperCase(), v);
}

/** The canonical long form of a header name (compact forms expanded, known names recapitalised). */
export function canonicalHeaderName(name: string): string {
  return CANONICAL.get(name) ?? CANONICAL.get(name.toLowerCase()) ?? name;
}

const EMPTY_BODY = Buffer.alloc(0);
const NON_ASCII = /[\x80-\xff]/;
const TOKEN_CHAR = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~") TOKEN_CHAR[c.charCodeAt(0)] = 1;

function isTokenRange(s: string, start: number, end: number): boolean {
  if (start >= end) return false;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || TOKEN_CHAR[c] === 0) return false;
  }
  return true;
}

/** Latin1 text of bytes ≥ 0x80 → the UTF-8 string those bytes spell (invalid sequences become U+FFFD). */
function utf8(latin1: string): string {
  return NON_ASCII.test(latin1) ? Buffer.from(latin1, 'latin1').toString('utf8') : latin1;
}

type Failure = { status: 400 | 414 | 505 | 513 | null; reason: string };

function failure(f: Failure, isRequest: boolean, method: string | null, headers: SipHeaders | null): ParseFailure {
  return {
    ok: false,
    status: f.status,
    reason: f.reason,
    partial: isRequest && headers ? { isRequest: true, method, headers } : null,
  };
}

const NOT_SIP: Failure = { status: null, reason: 'Not a SIP message' };

/**
 * A request-line that failed to parse still earns a 400 when it is recognisably SIP: it ends in
 * a SIP-Version. Anything else is noise to drop.
 */
function looksLikeRequestLine(line: string): boolean {
  return /\sSIP\/\d+\.\d+[ \t]*$/i.test(line);
}

/** Request-URI = SIP-URI / SIPS-URI / absoluteURI (RFC 3261 §25.1). Returns a failure reason or null. */
function checkRequestUri(uri: string): string | null {
  const colon = uri.indexOf(':');
  if (colon <= 0) return 'Malformed Request-URI';
  const c0 = uri.charCodeAt(0) | 0x20;
  if (c0 < 97 || c0 > 122) return 'Malformed Request-URI';
  for (let i = 1; i < colon; i++) {
    const c = uri.charCodeAt(i);
    const lc = c | 0x20;
    if (!((lc >= 97 && lc <= 122) || (c >= 48 && c <= 57) || c === 43 || c === 45 || c === 46)) return 'Malformed Request-URI';
  }
  const scheme = uri.slice(0, colon).toLowerCase();
  if (scheme === 'sip' || scheme === 'sips' || scheme === 'tel') {
    const u = parseUri(uri);
    if (!u) return 'Malformed Request-URI';
    // Headers are not allowed in a Request-URI (RFC 3261 §19.1.1 table; RFC 4475 §3.1.2.11).
    if (u.headers.size > 0) return 'Request-URI must not contain headers';
    return null;
  }
  // Another scheme (RFC 4475 §3.3.2, §3.3.3): accept any printable, unbracketed text; an
  // element that cannot route it answers 416 after parsing.
  if (colon === uri.length - 1) return 'Malformed Request-URI';
  for (let i = colon + 1; i < uri.length; i++) {
    const c = uri.charCodeAt(i);
    if (c <= 32 || c >= 127 || c === 60 || c === 62 || c === 34) return 'Malformed Request-URI';
  }
  return null;
}

/** Parses Content-Length (1*DIGIT, surrounding white space already trimmed); -1 when invalid. */
function parseContentLength(v: string): number {
  if (v.length === 0 || v.length > 9) return -1;
  let n = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 48 || c > 57) return -1;
    n = n * 10 + (c - 48);
  }
  return n;
}

/** Max-Forwards = 1*DIGIT, "an integer in the range 0-255" (RFC 3261 §20.22, §25.1); leading zeros allowed (RFC 4475 §3.1.1.1). */
function isMaxForwards(v: string): boolean {
  if (v.length === 0) return false;
  let n = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 48 || c > 57) return false;
    n = n * 10 + (c - 48);
    if (n > 255) return false;
  }
  return true;
}

/**
 * Expires = delta-seconds, "between 0 and (2**32)-1" (RFC 3261 §20.19). Only an all-digit value
 * beyond that range is refused (the scalar overflow of RFC 4475 §3.1.2.4); other malformed
 * values "SHOULD be treated as equivalent to 3600" (§20.19), which is what the registrar does.
 */
function isExpiresOverflow(v: string): boolean {
  if (!/^\d+$/.test(v)) return false;
  const digits = v.replace(/^0+(?=\d)/, '');
  return digits.length > 10 || Number(digits) > 0xffffffff;
}

/**
 * Parses one SIP message. Never throws: every input yields a message or a ParseFailure.
 * For datagrams (RFC 3261 §18.3) bytes after Content-Length are discarded and a body shorter
 * than Content-Length is an error; a missing Content-Length means "the rest of the datagram".
 */
export function parseMessage(buf: Buffer, limits: ParseLimits = DEFAULT_LIMITS): ParseResult {
  try {
    return parse(buf, limits);
  } catch {
    // Unreachable by design (every path is explicit); kept so a bug drops one message, not the process.
    return { ok: false, status: null, reason: 'Internal parser error', partial: null };
  }
}

function parse(buf: Buffer, limits: ParseLimits): ParseResult {
  const total = buf.length;
  const oversize = total > limits.maxMessageBytes;
  // An oversize message is only scanned far enough to read its headers for the 513 response.
  const len = oversize ? Math.min(total, limits.maxMessageBytes) : total;
  const s = buf.toString('latin1', 0, len);

  // RFC 3261 §7.5: ignore CRLFs before the start line.
  let pos = 0;
  while (pos < len) {
    const c = s.charCodeAt(pos);
    if (c === 13 || c === 10) pos++;
    else break;
  }
  if (pos >= len) return failure(NOT_SIP, false, null, null);

  // ---- start line ------------------------------------------------------------------------
  let nl = s.indexOf('\n', pos);
  const lineEnd = nl < 0 ? len : nl;
  let ce = lineEnd;
  if (ce > pos && s.charCodeAt(ce - 1) === 13) ce--;

  let isRequest: boolean;
  let method: string | null = null;
  let requestUri = '';
  let status = 0;
  let reason = '';
  let startError: Failure | null = null;

  if (ce - pos > limits.maxLineBytes) {
    if (s.startsWith('SIP/', pos) || !looksLikeRequestLine(s.slice(pos, ce))) return failure(NOT_SIP, false, null, null);
    // Only the Request-URI is unbounded on a request line. When it is the long part, RFC 3261
    // §21.4.12 has the exact answer, 414 Request-URI Too Long; the headers are still read so
    // the answer can be built (a message over maxMessageBytes gets 513 instead, below). A long
    // method token is just a malformed line: 400.
    isRequest = true;
    const sp1 = s.indexOf(' ', pos);
    const spLast = s.lastIndexOf(' ', ce - 1);
    if (sp1 > pos && isTokenRange(s, pos, sp1) && sp1 - pos < spLast - sp1) {
      method = s.slice(pos, sp1);
      startError = { status: 414, reason: `Request-URI longer than ${limits.maxLineBytes} bytes` };
    } else {
      startError = { status: 400, reason: `Request-Line longer than ${limits.maxLineBytes} bytes` };
    }
  } else if (s.startsWith('SIP/', pos)) {
    // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase. A response that does not parse is dropped.
    isRequest = false;
    if (!s.startsWith('SIP/2.0 ', pos)) return failure({ status: null, reason: 'Unsupported SIP version' }, false, null, null);
    const c = pos + 8;
    if (ce - c < 3) return failure({ status: null, reason: 'Malformed status line' }, false, null, null);
    for (let i = c; i < c + 3; i++) {
      const d = s.charCodeAt(i);
      if (d < 48 || d > 57) return failure({ status: null, reason: 'Malformed status line' }, false, null, null);
      status = status * 10 + (d - 48);
    }
    if (status < 100 || status > 699) return failure({ status: null, reason: 'Status code out of range' }, false, null, null);
    if (ce > c + 3) {
      // The SP before an empty Reason-Phrase is required, but a liberal receiver accepts its absence (RFC 4475 §3.1.1.13).
      if (s.charCodeAt(c + 3) !== 32) return failure({ status: null, reason: 'Malformed status line' }, false, null, null);
      reason = utf8(s.slice(c + 4, ce));
    }
  } else {
    isRequest = true;
    // Exactly two single SPs on the line: Method SP Request-URI SP SIP-Version.
    const sp1 = s.indexOf(' ', pos);
    let sp2 = -1;
    let wellFormed = false;
    if (sp1 > pos && sp1 < ce) {
      sp2 = s.indexOf(' ', sp1 + 1);
      if (sp2 > sp1 + 1 && sp2 + 1 < ce) {
        const sp3 = s.indexOf(' ', sp2 + 1);
        wellFormed = sp3 < 0 || sp3 >= ce;
      }
    }
    if (!wellFormed) {
      if (!looksLikeRequestLine(s.slice(pos, ce))) return failure(NOT_SIP, false, null, null);
      startError = { status: 400, reason: 'Malformed Request-Line' };
    } else {
      const version = s.slice(sp2 + 1, ce);
      if (version !== 'SIP/2.0' && version.toUpperCase() !== 'SIP/2.0') {
        if (!/^SIP\/\d+\.\d+$/i.test(version)) {
          if (!looksLikeRequestLine(s.slice(pos, ce))) return failure(NOT_SIP, false, null, null);
          startError = { status: 400, reason: 'Malformed Request-Line' };
        } else {
          // RFC 4475 §3.1.2.16 (badvers): 505 Version Not Supported.
          startError = { status: 505, reason: 'Version Not Supported' };
        }
      } else if (!isTokenRange(s, pos, sp1)) {
        startError = { status: 400, reason: 'Malformed method' };
      } else {
        method = s.slice(pos, sp1);
        requestUri = s.slice(sp1 + 1, sp2);
        const uriError = checkRequestUri(requestUri);
        if (uriError) startError = { status: 400, reason: uriError };
      }
    }
  }

  // ---- headers ---------------------------------------------------------------------------
  const names: string[] = [];
  const values: string[] = [];
  let headerError: Failure | null = null;
  let bodyStart = -1;
  let p = nl < 0 ? len : nl + 1;
  const maxLine = limits.maxLineBytes;
  while (p < len) {
    nl = s.indexOf('\n', p);
    const e = nl < 0 ? len : nl;
    let le = e;
    if (le > p && s.charCodeAt(le - 1) === 13) le--;
    if (le - p > maxLine) {
      headerError = { status: 400, reason: `Header line longer than ${maxLine} bytes` };
      break;
    }
    if (le === p) {
      bodyStart = nl < 0 ? len : nl + 1;
      break;
    }
    const c0 = s.charCodeAt(p);
    if (c0 === 32 || c0 === 9) {
      // Folded continuation (RFC 3261 §7.3.1): joined to the previous value with one SP.
      const last = values.length - 1;
      if (last < 0) {
        headerError = { status: 400, reason: 'Continuation line before the first header' };
        break;
      }
      let a = p;
      while (a < le && (s.charCodeAt(a) === 32 || s.charCodeAt(a) === 9)) a++;
      let b = le;
      while (b > a && (s.charCodeAt(b - 1) === 32 || s.charCodeAt(b - 1) === 9)) b--;
      if (b > a) {
        const prev = values[last]!;
        const joined = prev === '' ? s.slice(a, b) : `${prev} ${s.slice(a, b)}`;
        values[last] = joined;
        if (names[last]!.length + 2 + joined.length > maxLine) {
          headerError = { status: 400, reason: `Header line longer than ${maxLine} bytes` };
          break;
        }
      }
    } else {
      if (names.length >= limits.maxHeaders) {
        headerError = { status: 400, reason: `More than ${limits.maxHeaders} header fields` };
        break;
      }
      const colon = s.indexOf(':', p);
      if (colon < 0 || colon >= le) {
        headerError = { status: 400, reason: 'Malformed header line' };
        break;
      }
      let ne = colon;
      while (ne > p && (s.charCodeAt(ne - 1) === 32 || s.charCodeAt(ne - 1) === 9)) ne--;
      if (!isTokenRange(s, p, ne)) {
        headerError = { status: 400, reason: 'Malformed header name' };
        break;
      }
      let a = colon + 1;
      while (a < le && (s.charCodeAt(a) === 32 || s.charCodeAt(a) === 9)) a++;
      let b = le;
      while (b > a && (s.charCodeAt(b - 1) === 32 || s.charCodeAt(b - 1) === 9)) b--;
      const raw = s.slice(p, ne);
      names.push(CANONICAL.get(raw) ?? CANONICAL.get(raw.toLowerCase()) ?? raw);
      values.push(s.slice(a, b));
    }
    p = nl < 0 ? len : nl + 1;
  }
  // No empty line: the headers ran to the end of the datagram and there is no body.
  if (bodyStart < 0) bodyStart = len;

  // One scan of the whole text (usually all ASCII, SDP included) spares a test per value.
  if (NON_ASCII.test(s)) {
    for (let k = 0; k < values.length; k++) values[k] = utf8(values[k]!);
  }

  // ---- structure -------------------------------------------------------------------------
  const headers = new SipHeaders();
  let via = -1;
  let from = -1;
  let to = -1;
  let callId = -1;
  let cseq = -1;
  let contentLength = -1;
  let maxForwards = -1;
  let expires = -1;
  let duplicate: string | null = null;
  for (let k = 0; k < names.length; k++) {
    const n = names[k]!;
    headers.append(n, values[k]!);
    switch (n) {
      case 'Via':
        if (via < 0) via = k;
        break;
      case 'From':
        if (from < 0) from = k;
        else duplicate ??= n;
        break;
      case 'To':
        if (to < 0) to = k;
        else duplicate ??= n;
        break;
      case 'Call-ID':
        if (callId < 0) callId = k;
        else duplicate ??= n;
        break;
      case 'CSeq':
        if (cseq < 0) cseq = k;
        else duplicate ??= n;
        break;
      case 'Content-Length':
        if (contentLength < 0) contentLength = k;
        else if (values[k] !== values[contentLength]) duplicate ??= n;
        break;
      case 'Max-Forwards':
        if (maxForwards < 0) maxForwards = k;
        else if (values[k] !== values[maxForwards]) duplicate ??= n;
        break;
      case 'Expires':
        if (expires < 0) expires = k;
        else if (values[k] !== values[expires]) duplicate ??= n;
        break;
    }
  }

  if (oversize) return failure({ status: isRequest ? 513 : null, reason: 'Message Too Large' }, isRequest, method, headers);
  const fail = (f: Failure): ParseFailure => failure(isRequest ? f : { status: null, reason: f.reason }, isRequest, method, headers);
  if (startError) return fail(startError);
  if (headerError) return fail(headerError);

  if (duplicate) return fail({ status: 400, reason: `Multiple ${duplicate} header fields` });

  // Body (RFC 3261 §18.3, §20.14).
  const available = len - bodyStart;
  let bodyLength = available;
  if (contentLength >= 0) {
    bodyLength = parseContentLength(values[contentLength]!);
    if (bodyLength < 0) return fail({ status: 400, reason: 'Invalid Content-Length' });
    if (bodyLength > available) return fail({ status: 400, reason: 'Content-Length larger than the message body' });
  }

  // Mandatory headers (RFC 3261 §8.1.1, §8.2.6.2) and their syntax.
  if (via < 0) return fail({ status: 400, reason: 'Missing Via header' });
  if (from < 0) return fail({ status: 400, reason: 'Missing From header' });
  if (to < 0) return fail({ status: 400, reason: 'Missing To header' });
  if (callId < 0) return fail({ status: 400, reason: 'Missing Call-ID header' });
  if (cseq < 0) return fail({ status: 400, reason: 'Missing CSeq header' });
  const viaValue = values[via]!;
  const topVia = viaValue.indexOf(',') < 0 ? viaValue : splitHeaderList(viaValue)[0];
  if (topVia === undefined || parseVia(topVia) === null) return fail({ status: 400, reason: 'Malformed Via header' });
  if (parseNameAddr(values[from]!) === null) return fail({ status: 400, reason: 'Malformed From header' });
  if (parseNameAddr(values[to]!) === null) return fail({ status: 400, reason: 'Malformed To header' });
  const cid = values[callId]!;
  if (cid.length === 0 || /[ \t]/.test(cid)) return fail({ status: 400, reason: 'Malformed Call-ID header' });
  const cs = parseCSeq(values[cseq]!);
  if (!cs) return fail({ status: 400, reason: 'Malformed CSeq header' });

  const body = bodyLength === 0 ? EMPTY_BODY : Buffer.from(buf.subarray(bodyStart, bodyStart + bodyLength));
  if (isRequest) {
    if (cs.method !== method) return fail({ status: 400, reason: 'CSeq method does not match the request method' });
    if (maxForwards >= 0 && !isMaxForwards(values[maxForwards]!)) return fail({ status: 400, reason: 'Max-Forwards must be 0 to 255' });
    if (expires >= 0 && isExpiresOverflow(values[expires]!)) return fail({ status: 400, reason: 'Expires larger than 2^32-1' });
    return { ok: true, message: { kind: 'request', method: cs.method, uri: requestUri, headers, body } };
  }
  return { ok: true, message: { kind: 'response', status, reason, headers, body } };
}

