/**
 * Parsers and serializers for structured SIP header values (RFC 3261 §25.1 ABNF): URIs,
 * name-addr / addr-spec, Via, CSeq, generic parameters, quoted strings and the
 * challenge/credentials syntax of WWW-Authenticate / Authorization (RFC 3261 §25, RFC 7616).
 *
 * Every parser returns null on malformed input and never throws: input comes off the wire.
 * They walk the string with a character-class table instead of regular expressions, because
 * they run on every message (see bench/sip-parser.ts).
 *
 * Input is a header value as produced by sip-parser.ts: folded lines already joined with a
 * single SP. CR and LF are still accepted as white space so the functions also work on raw text.
 */
import { isIPv6 } from 'node:net';
import type { CSeq, HeaderParams, NameAddr, SipUri, Via } from './sip-message.js';

// ---------------------------------------------------------------------------------------------
// Character classes (RFC 3261 §25.1)
// ---------------------------------------------------------------------------------------------

const C_TOKEN = 1; // token: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"
const C_UNRESERVED = 2; // unreserved: alphanum / mark ("-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")")
const C_USER = 4; // user-unreserved: "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
const C_PASSWORD = 8; // password extras: "&" / "=" / "+" / "$" / ","
const C_PARAM = 16; // param-unreserved: "[" / "]" / "/" / ":" / "&" / "+" / "$"
const C_HNV = 32; // hnv-unreserved: "[" / "]" / "/" / "?" / ":" / "+" / "$"
const C_HEX = 64;
const C_ALPHA = 128;

const CLASS = new Uint8Array(128);
function mark(chars: string, flag: number): void {
  for (let i = 0; i < chars.length; i++) CLASS[chars.charCodeAt(i)]! |= flag;
}
const DIGITS = '0123456789';
const ALPHAS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
mark(DIGITS + ALPHAS, C_TOKEN | C_UNRESERVED);
mark(ALPHAS, C_ALPHA);
mark(DIGITS + 'abcdefABCDEF', C_HEX);
mark("-.!%*_+`'~", C_TOKEN);
mark("-_.!~*'()", C_UNRESERVED);
mark('&=+$,;?/', C_USER);
mark('&=+$,', C_PASSWORD);
mark('[]/:&+$', C_PARAM);
mark('[]/?:+$', C_HNV);

const USER_CHARS = C_UNRESERVED | C_USER;
const PASSWORD_CHARS = C_UNRESERVED | C_PASSWORD;
const PARAM_CHARS = C_UNRESERVED | C_PARAM;
const HEADER_CHARS = C_UNRESERVED | C_HNV;

function has(c: number, flag: number): boolean {
  return c < 128 && (CLASS[c]! & flag) !== 0;
}

function isWs(c: number): boolean {
  return c === 32 || c === 9 || c === 13 || c === 10;
}

function skipWs(s: string, i: number, end: number): number {
  while (i < end && isWs(s.charCodeAt(i))) i++;
  return i;
}

function trimEndIndex(s: string, start: number, end: number): number {
  while (end > start && isWs(s.charCodeAt(end - 1))) end--;
  return end;
}

function scanToken(s: string, i: number, end: number): number {
  while (i < end && has(s.charCodeAt(i), C_TOKEN)) i++;
  return i;
}

/** True when `s` is a non-empty RFC 3261 token (methods, header names, parameter names). */
export function isToken(s: string): boolean {
  return s.length > 0 && scanToken(s, 0, s.length) === s.length;
}

/**
 * True when s[start, end) is made of `flag` characters and well-formed %HEX HEX escapes
 * ("escaped", RFC 3261 §25.1). Escapes are validated, never decoded: values keep the text as written.
 */
function isEscapedText(s: string, start: number, end: number, flag: number): boolean {
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 37) {
      if (i + 2 >= end || !has(s.charCodeAt(i + 1), C_HEX) || !has(s.charCodeAt(i + 2), C_HEX)) return false;
      i += 2;
    } else if (!has(c, flag)) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Hosts
// ---------------------------------------------------------------------------------------------

function isIPv4Range(s: string, start: number, end: number): boolean {
  let parts = 0;
  let digits = 0;
  let value = 0;
  for (let i = start; i <= end; i++) {
    const c = i < end ? s.charCodeAt(i) : 46;
    if (c === 46) {
      if (digits === 0 || value > 255) return false;
      parts++;
      digits = 0;
      value = 0;
    } else if (c >= 48 && c <= 57) {
      if (++digits > 3) return false;
      value = value * 10 + (c - 48);
    } else return false;
  }
  return parts === 4;
}

/** hostname = *( domainlabel "." ) toplabel [ "." ] (RFC 3261 §25.1); the toplabel starts with a letter. */
function isHostnameRange(s: string, start: number, end: number): boolean {
  if (start >= end) return false;
  let labelLen = 0;
  let first = 0;
  let prev = 0;
  let topFirst = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (labelLen === 0 || prev === 45) return false;
      topFirst = first;
      labelLen = 0;
    } else if (has(c, C_ALPHA) || (c >= 48 && c <= 57)) {
      if (labelLen === 0) first = c;
      labelLen++;
    } else if (c === 45) {
      if (labelLen === 0) return false;
      labelLen++;
    } else return false;
    prev = c;
  }
  if (labelLen > 0) {
    if (prev === 45) return false;
    topFirst = first;
  }
  return has(topFirst, C_ALPHA);
}

/**
 * Scans a host (hostname, IPv4address or "[" IPv6address "]") starting at i; returns the index
 * after it, or -1 when what is there is not a valid host.
 */
function scanHost(s: string, i: number, end: number): number {
  if (i >= end) return -1;
  if (s.charCodeAt(i) === 91) {
    const close = s.indexOf(']', i + 1);
    if (close < 0 || close >= end) return -1;
    return isIPv6(s.slice(i + 1, close)) ? close + 1 : -1;
  }
  let j = i;
  let numeric = true;
  for (; j < end; j++) {
    const c = s.charCodeAt(j);
    if (c >= 48 && c <= 57) continue;
    if (c === 46) continue;
    if (c === 45 || has(c, C_ALPHA)) {
      numeric = false;
      continue;
    }
    break;
  }
  if (j === i) return -1;
  if (numeric) return isIPv4Range(s, i, j) ? j : -1;
  return isHostnameRange(s, i, j) ? j : -1;
}

/** Scans 1*DIGIT as a port (1–65535); returns [value, next index] or null. */
function scanPort(s: string, i: number, end: number): [number, number] | null {
  let value = 0;
  const start = i;
  while (i < end) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) break;
    value = value * 10 + (c - 48);
    if (value > 65_535) return null;
    i++;
  }
  if (i === start || value === 0) return null;
  return [value, i];
}

// ---------------------------------------------------------------------------------------------
// URIs (RFC 3261 §19.1, RFC 3966 for tel:)
// ---------------------------------------------------------------------------------------------

/**
 * Parses uri-parameters (";name[=value]") and headers ("?h=v&h2=v2") from i to end. Names are
 * lower-cased; values and escapes are kept as written.
 */
function parseUriTail(s: string, i: number, end: number, params: HeaderParams, headers: Map<string, string> | null): boolean {
  while (i < end && s.charCodeAt(i) === 59) {
    const nameStart = i + 1;
    let j = nameStart;
    while (j < end) {
      const c = s.charCodeAt(j);
      if (c === 59 || c === 61 || c === 63) break;
      j++;
    }
    if (j === nameStart || !isEscapedText(s, nameStart, j, PARAM_CHARS)) return false;
    const name = s.slice(nameStart, j).toLowerCase();
    if (j < end && s.charCodeAt(j) === 61) {
      const valueStart = j + 1;
      let k = valueStart;
      while (k < end) {
        const c = s.charCodeAt(k);
        if (c === 59 || c === 63) break;
        k++;
      }
      if (k === valueStart || !isEscapedText(s, valueStart, k, PARAM_CHARS)) return false;
      params.set(name, s.slice(valueStart, k));
      i = k;
    } else {
      params.set(name, null);
      i = j;
    }
  }
  if (i < end && s.charCodeAt(i) === 63) {
    if (headers === null) return false;
    i++;
    for (;;) {
      let j = i;
      while (j < end && s.charCodeAt(j) !== 38) j++;
      const eq = s.indexOf('=', i);
      if (eq < 0 || eq >= j || eq === i) return false;
      if (!isEscapedText(s, i, eq, HEADER_CHARS) || !isEscapedText(s, eq + 1, j, HEADER_CHARS)) return false;
      headers.set(s.slice(i, eq), s.slice(eq + 1, j));
      if (j >= end) return true;
      i = j + 1;
    }
  }
  return i === end;
}

/** global-number or local-number (RFC 3966 §3): visual separators allowed, at least one digit. */
function isTelNumber(s: string, start: number, end: number): boolean {
  if (start >= end) return false;
  const global = s.charCodeAt(start) === 43;
  let digits = 0;
  for (let i = global ? start + 1 : start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) digits++;
    else if (c === 45 || c === 46 || c === 40 || c === 41) continue;
    else if (!global && (has(c, C_HEX) || c === 42 || c === 35)) digits++;
    else return false;
  }
  return digits > 0;
}

/**
 * Parses a sip:, sips: or tel: URI. The text must be exactly the URI: no surrounding white
 * space, no angle brackets. User, password, parameter values and headers keep their %HEX
 * escapes as written (RFC 3261 §19.1.4 compares them unescaped; that is the caller's job).
 * For tel: URIs the number goes in `user` and `host` is "" (a tel URI names no host).
 */
export function parseUri(text: string): SipUri | null {
  const end = text.length;
  const colon = text.indexOf(':');
  if (colon < 3 || colon > 4) return null;
  const scheme = text.startsWith('sip:') ? 'sip' : text.slice(0, colon).toLowerCase();
  if (scheme === 'tel') {
    let j = colon + 1;
    while (j < end && text.charCodeAt(j) !== 59) j++;
    if (!isTelNumber(text, colon + 1, j)) return null;
    const params: HeaderParams = new Map();
    if (!parseUriTail(text, j, end, params, null)) return null;
    return { scheme: 'tel', user: text.slice(colon + 1, j), password: null, host: '', port: null, params, headers: new Map() };
  }
  if (scheme !== 'sip' && scheme !== 'sips') return null;

  let i = colon + 1;
  let user: string | null = null;
  let password: string | null = null;
  // "@" may not appear unescaped anywhere but as the userinfo terminator, while the user part
  // may contain ";", "?" and "," (RFC 4475 §3.1.1.2 and §3.1.1.9): the first "@" ends userinfo.
  const at = text.indexOf('@', i);
  if (at >= 0) {
    let userEnd = text.indexOf(':', i);
    if (userEnd < 0 || userEnd > at) userEnd = at;
    if (userEnd === i || !isEscapedText(text, i, userEnd, USER_CHARS)) return null;
    user = text.slice(i, userEnd);
    if (userEnd < at) {
      if (!isEscapedText(text, userEnd + 1, at, PASSWORD_CHARS)) return null;
      password = text.slice(userEnd + 1, at);
    }
    i = at + 1;
  }
  const hostEnd = scanHost(text, i, end);
  if (hostEnd < 0) return null;
  const host = text.slice(i, hostEnd);
  i = hostEnd;
  let port: number | null = null;
  if (i < end && text.charCodeAt(i) === 58) {
    const p = scanPort(text, i + 1, end);
    if (!p) return null;
    port = p[0];
    i = p[1];
  }
  const params: HeaderParams = new Map();
  const headers = new Map<string, string>();
  if (!parseUriTail(text, i, end, params, headers)) return null;
  return { scheme, user, password, host, port, params, headers };
}

export function formatUri(u: SipUri): string {
  if (u.scheme === 'tel') return `tel:${u.user ?? ''}${formatParams(u.params)}`;
  let s = `${u.scheme}:`;
  if (u.user !== null) {
    s += u.user;
    if (u.password !== null) s += `:${u.password}`;
    s += '@';
  }
  s += u.host;
  if (u.port !== null) s += `:${u.port}`;
  s += formatParams(u.params);
  if (u.headers.size > 0) {
    let sep = '?';
    for (const [k, v] of u.headers) {
      s += `${sep}${k}=${v}`;
      sep = '&';
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Quoted strings and generic parameters
// ---------------------------------------------------------------------------------------------

/**
 * Given s[i] === '"', returns the index just after the closing quote, or -1 when the string is
 * unterminated or contains a bare CR/LF. quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F).
 */
function scanQuoted(s: string, i: number, end: number): number {
  for (let j = i + 1; j < end; j++) {
    const c = s.charCodeAt(j);
    if (c === 92) {
      const n = s.charCodeAt(j + 1);
      if (j + 1 >= end || n === 10 || n === 13) return -1;
      j++;
    } else if (c === 34) return j + 1;
    else if (c === 10 || c === 13) return -1;
  }
  return -1;
}

/** Content of the quoted string s[start, end) (quotes included in the range) with quoted-pairs resolved. */
function unquoteRange(s: string, start: number, end: number): string {
  const inner = s.slice(start + 1, end - 1);
  if (inner.indexOf('\\') < 0) return inner;
  let out = '';
  for (let i = 0; i < inner.length; i++) {
    const c = inner[i]!;
    if (c === '\\' && i + 1 < inner.length) {
      out += inner[i + 1]!;
      i++;
    } else out += c;
  }
  return out;
}

/**
 * Resolves a quoted-string (RFC 3261 §25.1): `"a \"b\""` → `a "b"`. Text that does not start
 * with a quote is returned unchanged (trimmed); a malformed quoted string gives null.
 */
export function unquote(text: string): string | null {
  const start = skipWs(text, 0, text.length);
  const end = trimEndIndex(text, start, text.length);
  if (start >= end || text.charCodeAt(start) !== 34) return text.slice(start, end);
  const close = scanQuoted(text, start, end);
  if (close !== end) return null;
  return unquoteRange(text, start, end);
}

/** Wraps a value in a quoted-string, escaping `"` and `\`. CR and LF cannot be quoted and become SP. */
export function quote(value: string): string {
  return `"${value.replace(/[\r\n]/g, ' ').replace(/["\\]/g, '\\$&')}"`;
}

/**
 * Reads `*( SEMI generic-param )` from i to end into `params` (RFC 3261 §25.1):
 * generic-param = token [ EQUAL gen-value ], gen-value = token / host / quoted-string,
 * SEMI and EQUAL allowing white space on both sides. Names are lower-cased; quoted values keep
 * their quotes (use unquote()). Returns false on malformed input.
 */
function readGenericParams(s: string, i: number, end: number, params: HeaderParams): boolean {
  i = skipWs(s, i, end);
  while (i < end) {
    if (s.charCodeAt(i) !== 59) return false;
    i = skipWs(s, i + 1, end);
    const nameEnd = scanToken(s, i, end);
    if (nameEnd === i) return false;
    const name = s.slice(i, nameEnd).toLowerCase();
    i = skipWs(s, nameEnd, end);
    if (i < end && s.charCodeAt(i) === 61) {
      i = skipWs(s, i + 1, end);
      let valueEnd: number;
      if (i < end && s.charCodeAt(i) === 34) {
        valueEnd = scanQuoted(s, i, end);
        if (valueEnd < 0) return false;
      } else {
        valueEnd = i;
        for (; valueEnd < end; valueEnd++) {
          const c = s.charCodeAt(valueEnd);
          // token, or host (which adds "[", "]" and ":" for IPv6 references).
          if (!(has(c, C_TOKEN) || c === 91 || c === 93 || c === 58)) break;
        }
        if (valueEnd === i) return false;
      }
      params.set(name, s.slice(i, valueEnd));
      i = skipWs(s, valueEnd, end);
    } else {
      params.set(name, null);
    }
  }
  return true;
}

/**
 * Parses header parameters: ";tag=abc ; lr ; q=0.5" (the leading ";" is optional).
 * Names are lower-cased, a parameter without "=" has the value null, quoted values keep their quotes.
 */
export function parseParams(text: string): HeaderParams | null {
  const params: HeaderParams = new Map();
  const i = skipWs(text, 0, text.length);
  if (i >= text.length) return params;
  if (text.charCodeAt(i) === 59) return readGenericParams(text, i, text.length, params) ? params : null;
  return readGenericParams(`;${text.slice(i)}`, 0, text.length - i + 1, params) ? params : null;
}

export function formatParams(params: HeaderParams): string {
  let s = '';
  for (const [k, v] of params) s += v === null ? `;${k}` : `;${k}=${v}`;
  return s;
}

// ---------------------------------------------------------------------------------------------
// name-addr / addr-spec (From, To, Contact, Route, Record-Route, Refer-To, P-Asserted-Identity…)
// ---------------------------------------------------------------------------------------------

/**
 * Parses one name-addr or addr-spec with its header parameters:
 *   `"Quoted \"Name\"" <sip:a@b>;tag=x`, `Token Name <sip:a@b>`, `<sip:a@b>`, `sip:a@b;tag=x`.
 * The display name is returned unquoted (quoted-pairs resolved); a token display name is kept
 * as written. Per RFC 3261 §20.10, parameters after an addr-spec written without <> belong to
 * the header, and such an addr-spec may not contain "," or "?" (RFC 4475 §3.1.2.13). No LWS is
 * allowed inside <> (RFC 4475 §3.1.2.14). The URI must be sip:, sips: or tel:.
 */
export function parseNameAddr(text: string): NameAddr | null {
  const len = text.length;
  let i = skipWs(text, 0, len);
  const end = trimEndIndex(text, i, len);
  if (i >= end) return null;
  let displayName: string | null = null;
  let uriStart: number;
  let uriEnd: number;
  let rest: number;
  const c0 = text.charCodeAt(i);
  let lt = -1;
  if (c0 === 34) {
    const close = scanQuoted(text, i, end);
    if (close < 0) return null;
    displayName = unquoteRange(text, i, close);
    i = skipWs(text, close, end);
    if (i >= end || text.charCodeAt(i) !== 60) return null;
    lt = i;
  } else {
    lt = text.indexOf('<', i);
    if (lt >= end) lt = -1;
    if (lt >= 0) {
      // display-name = *(token LWS); RFC 4475 §3.1.1.6 also allows no LWS before "<".
      for (let j = i; j < lt; j++) {
        const c = text.charCodeAt(j);
        if (!has(c, C_TOKEN) && !isWs(c)) return null;
      }
      const dnEnd = trimEndIndex(text, i, lt);
      if (dnEnd > i) displayName = text.slice(i, dnEnd);
    }
  }
  if (lt >= 0) {
    const gt = text.indexOf('>', lt + 1);
    if (gt < 0 || gt >= end) return null;
    uriStart = lt + 1;
    uriEnd = gt;
    rest = gt + 1;
  } else {
    uriStart = i;
    let j = i;
    for (; j < end; j++) {
      const c = text.charCodeAt(j);
      if (c === 59 || isWs(c)) break;
      if (c === 44 || c === 63) return null;
    }
    uriEnd = j;
    rest = j;
  }
  const uri = parseUri(text.slice(uriStart, uriEnd));
  if (!uri) return null;
  const params: HeaderParams = new Map();
  if (!readGenericParams(text, rest, end, params)) return null;
  return { displayName, uri, params };
}

/** Always writes the name-addr form (<>), which is valid for every URI and parameter mix. */
export function formatNameAddr(n: NameAddr): string {
  const dn = n.displayName !== null && n.displayName !== '' ? `${quote(n.displayName)} ` : '';
  return `${dn}<${formatUri(n.uri)}>${formatParams(n.params)}`;
}

// ---------------------------------------------------------------------------------------------
// Via (RFC 3261 §20.42)
// ---------------------------------------------------------------------------------------------

/**
 * Parses one via-parm: `SIP/2.0/UDP host:port;branch=z9hG4bK…;rport;received=192.0.2.1`.
 * SLASH, COLON and SEMI may carry white space on both sides (RFC 3261 §25.1, RFC 4475 §3.1.1.1).
 * Only SIP/2.0 is accepted; the transport is upper-cased. Split a multi-valued Via header
 * with splitHeaderList() first.
 */
export function parseVia(text: string): Via | null {
  const len = text.length;
  let i = skipWs(text, 0, len);
  const end = trimEndIndex(text, i, len);
  let j = scanToken(text, i, end);
  if (j - i !== 3 || text.slice(i, j).toUpperCase() !== 'SIP') return null;
  i = skipWs(text, j, end);
  if (text.charCodeAt(i) !== 47) return null;
  i = skipWs(text, i + 1, end);
  j = scanToken(text, i, end);
  if (text.slice(i, j) !== '2.0') return null;
  i = skipWs(text, j, end);
  if (text.charCodeAt(i) !== 47) return null;
  i = skipWs(text, i + 1, end);
  j = scanToken(text, i, end);
  if (j === i) return null;
  const transport = text.slice(i, j).toUpperCase();
  i = skipWs(text, j, end);
  if (i === j) return null; // sent-protocol LWS sent-by
  const hostEnd = scanHost(text, i, end);
  if (hostEnd < 0) return null;
  const host = text.slice(i, hostEnd);
  i = skipWs(text, hostEnd, end);
  let port: number | null = null;
  if (i < end && text.charCodeAt(i) === 58) {
    const p = scanPort(text, skipWs(text, i + 1, end), end);
    if (!p) return null;
    port = p[0];
    i = p[1];
  }
  const params: HeaderParams = new Map();
  if (!readGenericParams(text, i, end, params)) return null;
  return { transport, host, port, params };
}

export function formatVia(v: Via): string {
  return `SIP/2.0/${v.transport} ${v.host}${v.port !== null ? `:${v.port}` : ''}${formatParams(v.params)}`;
}

// ---------------------------------------------------------------------------------------------
// CSeq (RFC 3261 §20.16)
// ---------------------------------------------------------------------------------------------

const CSEQ_MAX = 2 ** 31; // "The sequence number MUST be expressible as a 32-bit unsigned integer and MUST be less than 2**31" (§8.1.1.5)

/** Parses `1*DIGIT LWS Method`; leading zeros are allowed (RFC 4475 §3.1.1.1). */
export function parseCSeq(text: string): CSeq | null {
  const len = text.length;
  let i = skipWs(text, 0, len);
  const end = trimEndIndex(text, i, len);
  let seq = 0;
  const start = i;
  while (i < end) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) break;
    seq = seq * 10 + (c - 48);
    if (seq >= CSEQ_MAX) return null;
    i++;
  }
  if (i === start) return null;
  const m = skipWs(text, i, end);
  if (m === i) return null;
  const mEnd = scanToken(text, m, end);
  if (mEnd === m || mEnd !== end) return null;
  return { seq, method: text.slice(m, mEnd) };
}

// ---------------------------------------------------------------------------------------------
// Challenges and credentials (WWW-Authenticate, Proxy-Authenticate, Authorization…)
// ---------------------------------------------------------------------------------------------

/**
 * Parses `Digest realm="x", nonce="y", qop="auth", algorithm=SHA-256` (RFC 3261 §25.1,
 * RFC 7616 §3.3–3.4): an auth-scheme token, then comma-separated auth-params. Names are
 * lower-cased, quoted values unquoted; commas inside quotes do not split. A repeated
 * parameter makes the value invalid (RFC 7235 §2.1).
 */
export function parseAuthParams(text: string): { scheme: string; params: Map<string, string> } | null {
  const len = text.length;
  let i = skipWs(text, 0, len);
  const end = trimEndIndex(text, i, len);
  const schemeEnd = scanToken(text, i, end);
  if (schemeEnd === i) return null;
  const scheme = text.slice(i, schemeEnd);
  const params = new Map<string, string>();
  i = skipWs(text, schemeEnd, end);
  if (i >= end) return { scheme, params };
  if (i === schemeEnd) return null;
  while (i < end) {
    if (text.charCodeAt(i) === 44) {
      i = skipWs(text, i + 1, end); // empty list elements are allowed (RFC 7230 §7)
      continue;
    }
    const nameEnd = scanToken(text, i, end);
    if (nameEnd === i) return null;
    const name = text.slice(i, nameEnd).toLowerCase();
    i = skipWs(text, nameEnd, end);
    if (text.charCodeAt(i) !== 61) return null;
    i = skipWs(text, i + 1, end);
    let value: string;
    if (text.charCodeAt(i) === 34) {
      const close = scanQuoted(text, i, end);
      if (close < 0) return null;
      value = unquoteRange(text, i, close);
      i = close;
    } else {
      let j = i;
      for (; j < end; j++) {
        const c = text.charCodeAt(j);
        // token, plus the characters seen unquoted in the wild (uri=sip:a@b, token68 padding).
        if (!(has(c, C_TOKEN) || c === 47 || c === 58 || c === 64 || c === 61 || c === 91 || c === 93)) break;
      }
      if (j === i) return null;
      value = text.slice(i, j);
      i = j;
    }
    if (params.has(name)) return null;
    params.set(name, value);
    i = skipWs(text, i, end);
    if (i < end && text.charCodeAt(i) !== 44) return null;
  }
  return { scheme, params };
}
