import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupAddress, LookupOptions } from 'node:dns';
import * as http from 'node:http';
import * as https from 'node:https';
import type { Logger } from 'pino';
import { formatIp, inCidr, parseCidr, parseIp, parseIpv4Loose, unmapIpv4, type Cidr, type IpAddress } from './ip-address.js';

/**
 * The one gate for every request tollgate makes on its own (docs/security.md, "Server-side
 * requests"): webhook deliveries, the agent WebSocket it dials, the attach webhook and x5u
 * certificate fetches.
 *
 * check() parses the URL (http, https, ws, wss), normalises the host (WHATWG URL already turns
 * 127.1, 2130706433, 0x7f000001 and 0177.0.0.1 into 127.0.0.1 and ::ffff:127.0.0.1 into
 * ::ffff:7f00:1; IPv4-mapped and IPv4-compatible IPv6 are checked as the IPv4 they carry;
 * `localhost` and `*.localhost` are loopback without asking DNS, RFC 6761 §6.3), resolves a
 * name once (every A/AAAA answer; one refused answer refuses the destination) and checks each
 * address against the refused ranges below unless `egress.allow` holds it. The verdict carries
 * the checked addresses: connections go to them through pinnedLookup(), so a second resolution
 * (DNS rebinding) cannot move the request elsewhere, while the URL's host stays the TLS server
 * name and the Host header.
 *
 * Trust says whose URL it is. `untrusted` (a key or a caller chose it: key-owned webhook
 * endpoints, agent.url on POST /v1/calls, every x5u) refuses loopback, private, link-local,
 * CGNAT, multicast, reserved, documentation, NAT64 and cloud-metadata destinations. `operator`
 * (keys:admin configured it: number agent routes and attach webhooks, account-wide webhook
 * endpoints) may reach the operator's own private network, but link-local and cloud-metadata
 * destinations stay refused: no legitimate receiver lives there, and credentials do.
 */

/** Whose URL it is (see above). */
export type EgressTrust = 'untrusted' | 'operator';

export interface ResolvedAddress {
  readonly address: string;
  readonly family: 4 | 6;
}

/** Every address a name resolves to. Rejects when it does not resolve. */
export type Resolver = (hostname: string) => Promise<readonly ResolvedAddress[]>;

/** getaddrinfo through libuv (the resolver Node's own connect would use: /etc/hosts, then DNS). */
export const systemResolver: Resolver = async (hostname) =>
  (await dnsLookup(hostname, { all: true, verbatim: true })).map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));

export type EgressRefusal = 'invalid-url' | 'scheme-not-allowed' | 'destination-not-allowed' | 'unresolvable';

export type EgressVerdict =
  | {
    readonly ok: true;
    readonly url: URL;
    /** The URL's host name (TLS server name, Host header). */
    readonly host: string;
    /** Every checked address, in the resolver's order: the only ones connections may use. */
    readonly addresses: readonly ResolvedAddress[];
  }
  | {
    readonly ok: false;
    readonly refusal: EgressRefusal;
    /** Safe to show to whoever supplied the URL: never an address or a resolver error. */
    readonly reason: string;
    /** For the gateway's own debug log only: the address and the range, or the resolver's error. */
    readonly detail: string;
  };

/** What a request through the guard came to, when it did not come to a response. */
export type EgressFailure = 'refused' | 'network' | 'timeout' | 'aborted' | 'oversize';

/** The generic text every caller shows for a failure kind (no addresses, no socket errors). */
export const EGRESS_FAILURE_TEXT: Readonly<Record<EgressFailure, string>> = {
  refused: 'destination not allowed',
  network: 'connection failed',
  timeout: 'timeout',
  aborted: 'aborted',
  oversize: 'response too large',
};

/** A request through the guard failed. The message is generic; `detail` is for debug logs. */
export class EgressError extends Error {
  constructor(
    readonly kind: EgressFailure,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(EGRESS_FAILURE_TEXT[kind], options);
    this.name = 'EgressError';
  }
}

export interface EgressRequestInit {
  readonly method: 'GET' | 'POST';
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Uint8Array;
  /** Bounds the whole request: resolution, connect, response and body. */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal | undefined;
  /** Largest response body read; larger is an `oversize` failure. 0: the body is not read. */
  readonly maxBytes: number;
  /** Schemes accepted (default http: and https:). */
  readonly schemes?: readonly string[];
}

export interface EgressResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface EgressGuardOptions {
  /** CIDRs reachable whatever the trust (config egress.allow, default empty). */
  readonly allow: readonly string[];
  /** Default systemResolver; tests inject one. */
  readonly resolver?: Resolver;
  /** Bound on one resolution (default 5000 ms). */
  readonly resolveTimeoutMs?: number;
  /** Refusals and failures are logged here at debug, with their detail. */
  readonly log?: Logger;
}

interface Range {
  readonly cidr: Cidr;
  readonly label: string;
}

const range = (text: string, label: string): Range => ({ cidr: parseCidr(text)!, label });

/**
 * Refused for everyone unless in egress.allow: link-local (where cloud metadata services
 * answer, 169.254.169.254) and the metadata addresses that live elsewhere.
 */
const ALWAYS_REFUSED: readonly Range[] = [
  range('169.254.0.0/16', 'link-local (cloud metadata)'),
  range('fe80::/10', 'link-local'),
  range('100.100.100.200/32', 'cloud metadata (Alibaba)'),
  range('fd00:ec2::254/128', 'cloud metadata (AWS IPv6)'),
  range('168.63.129.16/32', 'cloud platform endpoint (Azure)'),
];

/** Also refused for untrusted URLs (RFC 6890 special-purpose registries, IANA). */
const UNTRUSTED_REFUSED: readonly Range[] = [
  range('0.0.0.0/8', 'this network'),
  range('10.0.0.0/8', 'private'),
  range('100.64.0.0/10', 'shared address space (CGNAT)'),
  range('127.0.0.0/8', 'loopback'),
  range('172.16.0.0/12', 'private'),
  range('192.0.0.0/24', 'IETF protocol assignments'),
  range('192.0.2.0/24', 'documentation'),
  range('192.88.99.0/24', '6to4 relay anycast'),
  range('192.168.0.0/16', 'private'),
  range('198.18.0.0/15', 'benchmarking'),
  range('198.51.100.0/24', 'documentation'),
  range('203.0.113.0/24', 'documentation'),
  range('224.0.0.0/4', 'multicast'),
  range('240.0.0.0/4', 'reserved'),
  range('255.255.255.255/32', 'broadcast'),
  range('::/128', 'unspecified'),
  range('::1/128', 'loopback'),
  range('::ffff:0:0:0/96', 'IPv4-translated'),
  range('64:ff9b::/96', 'NAT64'),
  range('64:ff9b:1::/48', 'local NAT64'),
  range('100::/64', 'discard-only'),
  range('2001::/32', 'Teredo'),
  range('2001:db8::/32', 'documentation'),
  range('fc00::/7', 'unique local'),
  range('fec0::/10', 'site-local'),
  range('ff00::/8', 'multicast'),
];

/** Names of cloud metadata services: refused unless every address they resolve to is in egress.allow. */
const METADATA_NAMES: ReadonlySet<string> = new Set(['metadata', 'metadata.google.internal', 'metadata.goog', 'instance-data', 'instance-data.ec2.internal']);

const SIX_TO_FOUR = parseCidr('2002::/16')!;
const NAT64 = parseCidr('64:ff9b::/96')!;
const LOOPBACK: readonly ResolvedAddress[] = [{ address: '127.0.0.1', family: 4 }];
const ALL_SCHEMES: readonly string[] = ['http:', 'https:', 'ws:', 'wss:'];
const HTTP_SCHEMES: readonly string[] = ['http:', 'https:'];

const refused = (refusal: EgressRefusal, detail: string): EgressVerdict => ({
  ok: false,
  refusal,
  reason: refusal === 'unresolvable' ? EGRESS_FAILURE_TEXT.network : refusal === 'invalid-url' ? 'invalid URL' : EGRESS_FAILURE_TEXT.refused,
  detail,
});

/**
 * A `lookup` for net/tls/http/ws connect options that answers with the checked addresses only,
 * whatever name is asked (Node calls it with all: true when it races families, RFC 8305).
 */
export function pinnedLookup(addresses: readonly ResolvedAddress[]): (hostname: string, options: LookupOptions, callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void) => void {
  const list = addresses.map((a) => ({ address: a.address, family: a.family }));
  return (_hostname, options, callback) => {
    const wanted = options.family === 4 || options.family === 6 ? list.filter((a) => a.family === options.family) : list;
    const usable = wanted.length > 0 ? wanted : list;
    if (options.all) callback(null, usable);
    else callback(null, usable[0]!.address, usable[0]!.family);
  };
}

export class EgressGuard {
  private readonly allow: readonly Cidr[];
  private readonly resolver: Resolver;
  private readonly resolveTimeoutMs: number;
  private readonly log: Logger | undefined;

  /** Throws on an allow entry that is not a CIDR (config validation catches it first). */
  constructor(opts: EgressGuardOptions) {
    this.allow = opts.allow.map((text) => {
      const c = parseCidr(text);
      if (!c) throw new Error(`egress.allow: ${text} is not a CIDR`);
      return c;
    });
    this.resolver = opts.resolver ?? systemResolver;
    this.resolveTimeoutMs = opts.resolveTimeoutMs ?? 5000;
    this.log = opts.log;
  }

  /**
   * Why `ip` may not be reached with `trust` (the refused range's name), or null when it may.
   * IPv4-mapped/compatible IPv6 is judged as its IPv4; 6to4 (2002::/16, RFC 3056) and NAT64
   * (64:ff9b::/96, RFC 6052) also by the IPv4 they lead to.
   */
  refusedRange(ip: IpAddress, trust: EgressTrust): string | null {
    const a = unmapIpv4(ip);
    if (this.allow.some((c) => inCidr(a, c))) return null;
    for (const r of ALWAYS_REFUSED) if (inCidr(a, r.cidr)) return r.label;
    const inner = inCidr(a, SIX_TO_FOUR) ? a.bytes.slice(2, 6) : inCidr(a, NAT64) ? a.bytes.slice(12, 16) : null;
    if (inner) {
      const why = this.refusedRange({ family: 4, bytes: inner }, trust);
      if (why) return `${inCidr(a, NAT64) ? 'NAT64' : '6to4'} of ${why}`;
    }
    if (trust === 'operator') return null;
    for (const r of UNTRUSTED_REFUSED) if (inCidr(a, r.cidr)) return r.label;
    return null;
  }

  /**
   * Whether tollgate may send a request to `url` for whoever supplied it (`trust`), and the
   * addresses to connect to. Never throws; a resolution is bounded by resolveTimeoutMs and
   * `signal`.
   */
  async check(url: string | URL, trust: EgressTrust, opts: { schemes?: readonly string[]; signal?: AbortSignal } = {}): Promise<EgressVerdict> {
    const v = await this.judge(url, trust, opts);
    if (!v.ok) this.log?.debug({ trust, refusal: v.refusal, detail: v.detail }, 'egress refused');
    return v;
  }

  private async judge(url: string | URL, trust: EgressTrust, opts: { schemes?: readonly string[]; signal?: AbortSignal }): Promise<EgressVerdict> {
    let u: URL;
    try {
      u = typeof url === 'string' ? new URL(url) : url;
    } catch {
      return refused('invalid-url', 'not a URL');
    }
    if (!(opts.schemes ?? ALL_SCHEMES).includes(u.protocol)) return refused('scheme-not-allowed', `scheme ${u.protocol}`);
    const host = u.hostname;
    if (!host) return refused('invalid-url', 'no host');

    const literal = parseIp(host);
    if (literal) {
      const why = this.refusedRange(literal, trust);
      return why ? refused('destination-not-allowed', `${host}: ${why}`) : { ok: true, url: u, host, addresses: [{ address: formatIp(literal), family: literal.family }] };
    }
    const name = host.toLowerCase().replace(/\.$/, '');
    // WHATWG URL has already turned numeric hosts into IPv4; anything still numeric is refused
    // rather than left to a resolver's own reading of it.
    const loose = parseIpv4Loose(name);
    if (loose) {
      const why = this.refusedRange(loose, trust);
      return why ? refused('destination-not-allowed', `${host}: ${why}`) : { ok: true, url: u, host, addresses: [{ address: formatIp(loose), family: 4 }] };
    }
    if (/(^|\.)(\d+|0x[0-9a-f]*)$/.test(name)) return refused('invalid-url', `numeric host ${host}`);
    if (name === 'localhost' || name.endsWith('.localhost')) {
      const why = this.refusedRange(parseIp('127.0.0.1')!, trust);
      return why ? refused('destination-not-allowed', `${host}: ${why}`) : { ok: true, url: u, host, addresses: LOOPBACK };
    }

    // A metadata name is refused whether or not it resolves here, unless egress.allow lists every address it has.
    const metadata = METADATA_NAMES.has(name);
    if (metadata && this.allow.length === 0) return refused('destination-not-allowed', `${host}: cloud metadata name`);
    let answers: readonly ResolvedAddress[];
    try {
      answers = await this.resolve(name, opts.signal);
    } catch (err) {
      return refused(metadata ? 'destination-not-allowed' : 'unresolvable', `${host}: ${(err as { code?: string }).code ?? (err as Error).message}`);
    }
    if (answers.length === 0) return refused(metadata ? 'destination-not-allowed' : 'unresolvable', `${host}: no addresses`);
    const addresses: ResolvedAddress[] = [];
    for (const a of answers) {
      const ip = parseIp(a.address);
      if (!ip) return refused('destination-not-allowed', `${host}: resolver answered ${a.address}`);
      const why = metadata && !this.allow.some((c) => inCidr(unmapIpv4(ip), c)) ? 'cloud metadata name' : this.refusedRange(ip, trust);
      if (why) return refused('destination-not-allowed', `${host} resolves to ${a.address}: ${why}`);
      addresses.push({ address: formatIp(ip), family: ip.family });
    }
    return { ok: true, url: u, host, addresses };
  }

  private resolve(name: string, signal: AbortSignal | undefined): Promise<readonly ResolvedAddress[]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`resolution took longer than ${this.resolveTimeoutMs} ms`)), this.resolveTimeoutMs);
      const onAbort = (): void => done(new Error('aborted'));
      const done = (err: Error | null, r?: readonly ResolvedAddress[]): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(r!);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.resolver(name).then((r) => done(null, r), (err: unknown) => done(err instanceof Error ? err : new Error(String(err))));
    });
  }

  /**
   * An HTTP(S) request through the guard: checked, connected to the checked addresses only, no
   * redirect followed (a 3xx is returned as it is), no connection reuse, the whole exchange
   * bounded by timeoutMs and the body by maxBytes. Rejects with EgressError.
   */
  async request(url: string, trust: EgressTrust, init: EgressRequestInit): Promise<EgressResponse> {
    const timeout = AbortSignal.timeout(init.timeoutMs);
    const signal = init.signal ? AbortSignal.any([timeout, init.signal]) : timeout;
    const stopped = (): EgressFailure => (init.signal?.aborted ? 'aborted' : 'timeout');
    const v = await this.check(url, trust, { schemes: init.schemes ?? HTTP_SCHEMES, signal });
    if (!v.ok) throw new EgressError(signal.aborted ? stopped() : v.refusal === 'unresolvable' ? 'network' : 'refused', v.detail);
    const fail = (kind: EgressFailure, detail: string, cause?: unknown): EgressError => {
      const e = new EgressError(kind, detail, { cause });
      this.log?.debug({ trust, kind, detail, host: v.host }, 'egress request failed');
      return e;
    };
    const mod = v.url.protocol === 'https:' ? https : http;
    return new Promise<EgressResponse>((resolve, reject) => {
      const req = mod.request(v.url, {
        method: init.method,
        headers: { ...init.headers },
        agent: false,
        lookup: pinnedLookup(v.addresses),
        signal,
      }, (res) => {
        const status = res.statusCode ?? 0;
        const declared = Number(res.headers['content-length'] ?? NaN);
        if (init.maxBytes === 0 || declared > init.maxBytes) {
          res.destroy();
          if (declared > init.maxBytes && init.maxBytes > 0) reject(fail('oversize', `declared ${declared} bytes`));
          else resolve({ status, headers: res.headers, body: Buffer.alloc(0) });
          return;
        }
        const chunks: Buffer[] = [];
        let total = 0;
        res.on('data', (chunk: Buffer) => {
          total += chunk.byteLength;
          if (total > init.maxBytes) {
            res.destroy();
            reject(fail('oversize', `more than ${init.maxBytes} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => resolve({ status, headers: res.headers, body: Buffer.concat(chunks, total) }));
        res.on('error', (err) => reject(fail(signal.aborted ? stopped() : 'network', (err as NodeJS.ErrnoException).code ?? err.message, err)));
        res.on('close', () => {
          if (!res.complete) reject(fail(signal.aborted ? stopped() : 'network', 'response cut short'));
        });
      });
      req.on('error', (err) => reject(fail(signal.aborted ? stopped() : 'network', (err as NodeJS.ErrnoException).code ?? err.message, err)));
      req.end(init.body);
    });
  }
}
