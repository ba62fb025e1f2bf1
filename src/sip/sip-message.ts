/**
 * The SIP message model (RFC 3261 §7). Headers keep their order and raw values; structured
 * views (Via, name-addr, URI, CSeq) are parsed on demand by the functions in sip-grammar.ts.
 * Header names are stored in their canonical long form (compact forms like "v", "f", "i" are
 * expanded at parse time, RFC 3261 §7.3.3).
 */
export type HeaderParams = Map<string, string | null>;

export interface SipUri {
  readonly scheme: 'sip' | 'sips' | 'tel';
  readonly user: string | null;
  readonly password: string | null;
  /** Host as written; IPv6 references keep their brackets: "[2001:db8::1]". */
  readonly host: string;
  readonly port: number | null;
  /** URI parameters (";transport=tcp;lr"), names lower-cased. */
  readonly params: HeaderParams;
  /** URI headers ("?Subject=x"), undecoded. */
  readonly headers: Map<string, string>;
}

export interface NameAddr {
  readonly displayName: string | null;
  readonly uri: SipUri;
  /** Header parameters after the URI (";tag=abc"), names lower-cased. */
  readonly params: HeaderParams;
}

export interface Via {
  /** "UDP", "TCP", "TLS", "WS", "WSS", "SCTP" (upper-cased). */
  readonly transport: string;
  readonly host: string;
  readonly port: number | null;
  /** branch, received, rport (null value when present without a value), maddr, ttl… */
  readonly params: HeaderParams;
}

export interface CSeq {
  readonly seq: number;
  readonly method: string;
}

/** Ordered header list; lookups are case-insensitive on the canonical name. */
export class SipHeaders {
  private readonly list: { name: string; value: string }[] = [];

  /** Header entries in order, each as received (a comma-separated line stays one entry). */
  entries(): readonly { name: string; value: string }[] {
    return this.list;
  }

  get(name: string): string | undefined {
    const key = name.toLowerCase();
    return this.list.find((h) => h.name.toLowerCase() === key)?.value;
  }

  /** Every value of a header, splitting comma-separated lists outside quotes and <>. */
  getAll(name: string): string[] {
    const key = name.toLowerCase();
    const out: string[] = [];
    for (const h of this.list) if (h.name.toLowerCase() === key) out.push(...splitHeaderList(h.value));
    return out;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  append(name: string, value: string): this {
    this.list.push({ name, value });
    return this;
  }

  /** Replaces every entry of `name` with one entry (appended at the first entry's place). */
  set(name: string, value: string): this {
    const key = name.toLowerCase();
    const i = this.list.findIndex((h) => h.name.toLowerCase() === key);
    this.delete(name);
    if (i < 0) this.list.push({ name, value });
    else this.list.splice(i, 0, { name, value });
    return this;
  }

  /** Puts an entry before all others of the same name (a new top Via). */
  prepend(name: string, value: string): this {
    const key = name.toLowerCase();
    const i = this.list.findIndex((h) => h.name.toLowerCase() === key);
    if (i < 0) this.list.push({ name, value });
    else this.list.splice(i, 0, { name, value });
    return this;
  }

  delete(name: string): this {
    const key = name.toLowerCase();
    for (let i = this.list.length - 1; i >= 0; i--) if (this.list[i]!.name.toLowerCase() === key) this.list.splice(i, 1);
    return this;
  }

  /** Removes the first value of a (possibly comma-listed) header: the top Via. */
  removeFirstValue(name: string): this {
    const key = name.toLowerCase();
    const i = this.list.findIndex((h) => h.name.toLowerCase() === key);
    if (i < 0) return this;
    const values = splitHeaderList(this.list[i]!.value);
    if (values.length <= 1) this.list.splice(i, 1);
    else this.list[i] = { name: this.list[i]!.name, value: values.slice(1).join(', ') };
    return this;
  }

  clone(): SipHeaders {
    const h = new SipHeaders();
    for (const e of this.list) h.append(e.name, e.value);
    return h;
  }
}

/**
 * Splits a header value on top-level commas (RFC 3261 §7.3.1), leaving commas inside quoted
 * strings and <...> alone. WWW-Authenticate-style headers are not lists and must not be split.
 */
export function splitHeaderList(value: string): string[] {
  const out: string[] = [];
  let depthAngle = 0;
  let inQuote = false;
  let start = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (inQuote) {
      if (c === '\\') i++;
      else if (c === '"') inQuote = false;
    } else if (c === '"') inQuote = true;
    else if (c === '<') depthAngle++;
    else if (c === '>') depthAngle = Math.max(0, depthAngle - 1);
    else if (c === ',' && depthAngle === 0) {
      const part = value.slice(start, i).trim();
      if (part) out.push(part);
      start = i + 1;
    }
  }
  const last = value.slice(start).trim();
  if (last) out.push(last);
  return out;
}

export interface SipRequest {
  readonly kind: 'request';
  readonly method: string;
  /** Request-URI as written. */
  readonly uri: string;
  readonly headers: SipHeaders;
  readonly body: Buffer;
}

export interface SipResponse {
  readonly kind: 'response';
  readonly status: number;
  readonly reason: string;
  readonly headers: SipHeaders;
  readonly body: Buffer;
}

export type SipMessage = SipRequest | SipResponse;

export interface ParseLimits {
  /** Largest message accepted, bytes (start line + headers + body). Default 65535. */
  readonly maxMessageBytes: number;
  /** Most header lines (after unfolding). Default 100. */
  readonly maxHeaders: number;
  /** Longest single (unfolded) header line, bytes. Default 8192. */
  readonly maxLineBytes: number;
}

export const DEFAULT_LIMITS: ParseLimits = Object.freeze({ maxMessageBytes: 65_535, maxHeaders: 100, maxLineBytes: 8192 });

/**
 * A message that could not be parsed. `status` is the response a server sends when the
 * message was a request it can answer (400 malformed, 413 too large, 414 Request-URI too long,
 * 505 version not supported, 513 message too large for the transport / header limits), or null
 * when the datagram should just be dropped
 * (e.g. not SIP at all, or a malformed response). `partial` holds the headers read before the
 * fault, for building that response (Via, From, To, Call-ID, CSeq).
 */
export interface ParseFailure {
  readonly ok: false;
  readonly status: 400 | 413 | 414 | 505 | 513 | null;
  readonly reason: string;
  readonly partial: { readonly isRequest: boolean; readonly method: string | null; readonly headers: SipHeaders } | null;
}

export type ParseResult = { readonly ok: true; readonly message: SipMessage } | ParseFailure;
