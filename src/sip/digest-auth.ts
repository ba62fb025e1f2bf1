import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { parseAuthParams } from './sip-grammar.js';

export type DigestAlgorithm = 'SHA-256' | 'MD5';

/** Looks up the HA1 values for a username (several during a key rotation's overlap); null = unknown user. */
export type Ha1Lookup = (username: string, algorithm: DigestAlgorithm) => Promise<string[] | null>;

export interface DigestOptions {
  realm: string;
  /** Secret for stateless nonces (derived from the master key). */
  nonceKey: Buffer;
  /** How long a nonce is accepted. Default 300 s. */
  nonceTtlMs: number;
  /**
   * Algorithms offered, one challenge each, in this order (default SHA-256 then MD5). Clients
   * that read only the first challenge and know only MD5 (SIPp 3.6) need MD5 first.
   */
  algorithms?: readonly DigestAlgorithm[];
}

export type DigestResult =
  | { readonly ok: true; readonly username: string; readonly algorithm: DigestAlgorithm }
  /** No credentials for this realm: challenge. */
  | { readonly ok: false; readonly reason: 'missing' }
  /** Right password on an expired nonce: challenge again with stale=true (RFC 7616 §3.3). */
  | { readonly ok: false; readonly reason: 'stale'; readonly username: string }
  /** Malformed, unknown user, wrong password, replayed nonce count, wrong realm or URI: a failure. */
  | { readonly ok: false; readonly reason: 'invalid'; readonly username: string | null };

const H = (alg: DigestAlgorithm, s: string): string => createHash(alg === 'MD5' ? 'md5' : 'sha256').update(s, 'utf8').digest('hex');

/**
 * SIP digest authentication (RFC 3261 §22, RFC 7616 algorithms as RFC 8760 brings them to SIP).
 * Challenges offer SHA-256 first, then MD5 (clients use the first they support; SIP.js and
 * older phones only do MD5). Nonces are stateless: a timestamp and an HMAC of it, so any node of
 * a cluster can check them without shared state. Nonce-count replays are refused within one
 * node with a bounded memory of (nonce, nc) pairs.
 */
export class DigestAuthenticator {
  private readonly seen = new Map<string, number>();

  constructor(private readonly opts: DigestOptions, private readonly now: () => number = Date.now) {}

  newNonce(): string {
    const ts = Buffer.alloc(8);
    ts.writeBigUInt64BE(BigInt(this.now()));
    const salt = randomBytes(8);
    const mac = createHmac('sha256', this.opts.nonceKey).update(ts).update(salt).digest().subarray(0, 16);
    return Buffer.concat([ts, salt, mac]).toString('base64url');
  }

  /** 'fresh' | 'stale' (authentic but older than the TTL) | 'bad'. */
  checkNonce(nonce: string): 'fresh' | 'stale' | 'bad' {
    const raw = Buffer.from(nonce, 'base64url');
    if (raw.length !== 32 || raw.toString('base64url') !== nonce) return 'bad';
    const mac = createHmac('sha256', this.opts.nonceKey).update(raw.subarray(0, 8)).update(raw.subarray(8, 16)).digest().subarray(0, 16);
    if (!timingSafeEqual(mac, raw.subarray(16))) return 'bad';
    const issued = Number(raw.readBigUInt64BE(0));
    const age = this.now() - issued;
    if (age < -5_000) return 'bad';
    return age > this.opts.nonceTtlMs ? 'stale' : 'fresh';
  }

  /** The challenge header values: one per algorithm, SHA-256 first. */
  challenges(stale = false): string[] {
    const nonce = this.newNonce();
    return (this.opts.algorithms ?? (['SHA-256', 'MD5'] as const)).map(
      (alg) => `Digest realm="${this.opts.realm}", nonce="${nonce}", algorithm=${alg}, qop="auth"${stale ? ', stale=TRUE' : ''}`,
    );
  }

  /**
   * Checks the credentials of a request. `headerValues` are the Authorization (or
   * Proxy-Authorization) header values; the one for our realm is used.
   */
  async verify(method: string, headerValues: readonly string[], lookup: Ha1Lookup): Promise<DigestResult> {
    let creds: Map<string, string> | null = null;
    for (const v of headerValues) {
      const p = parseAuthParams(v);
      if (p && p.scheme.toLowerCase() === 'digest' && p.params.get('realm') === this.opts.realm) {
        creds = p.params;
        break;
      }
    }
    if (!creds) return { ok: false, reason: 'missing' };
    const username = creds.get('username') ?? null;
    const nonce = creds.get('nonce');
    const uri = creds.get('uri');
    const response = creds.get('response');
    const algRaw = (creds.get('algorithm') ?? 'MD5').toUpperCase();
    const qop = creds.get('qop');
    const nc = creds.get('nc');
    const cnonce = creds.get('cnonce');
    const invalid = { ok: false, reason: 'invalid', username } as const;
    if (!username || !nonce || !uri || !response) return invalid;
    if (algRaw !== 'MD5' && algRaw !== 'SHA-256') return invalid;
    const algorithm: DigestAlgorithm = algRaw;
    if (!(this.opts.algorithms ?? ['SHA-256', 'MD5']).includes(algorithm)) return invalid;
    if (qop !== undefined && (qop !== 'auth' || !nc || !cnonce || !/^[0-9a-fA-F]{8}$/.test(nc))) return invalid;
    const nonceState = this.checkNonce(nonce);
    if (nonceState === 'bad') return invalid;
    const ha1s = await lookup(username, algorithm);
    if (!ha1s || ha1s.length === 0) return invalid;
    const ha2 = H(algorithm, `${method}:${uri}`);
    const expectedFor = (ha1: string): string =>
      qop ? H(algorithm, `${ha1}:${nonce}:${nc}:${cnonce}:${qop}:${ha2}`) : H(algorithm, `${ha1}:${nonce}:${ha2}`);
    const given = Buffer.from(response.toLowerCase(), 'utf8');
    let match = false;
    for (const ha1 of ha1s) {
      const exp = Buffer.from(expectedFor(ha1), 'utf8');
      if (exp.length === given.length && timingSafeEqual(exp, given)) match = true;
    }
    if (!match) return invalid;
    if (nonceState === 'stale') return { ok: false, reason: 'stale', username };
    if (qop) {
      // RFC 7616 §3.4.5: each nonce count may be used once per nonce.
      const n = parseInt(nc!, 16);
      const key = `${nonce}:${cnonce}`;
      const last = this.seen.get(key) ?? 0;
      if (n <= last) return invalid;
      this.seen.set(key, n);
      if (this.seen.size > 50_000) this.seen.delete(this.seen.keys().next().value!);
    }
    return { ok: true, username, algorithm };
  }
}

/** Computes a client's digest response (for tests and for tollgate's own outbound auth). */
export function digestResponse(p: {
  algorithm: DigestAlgorithm; username: string; realm: string; password: string; method: string; uri: string;
  nonce: string; nc?: string; cnonce?: string; qop?: 'auth';
}): string {
  const ha1 = H(p.algorithm, `${p.username}:${p.realm}:${p.password}`);
  const ha2 = H(p.algorithm, `${p.method}:${p.uri}`);
  return p.qop ? H(p.algorithm, `${ha1}:${p.nonce}:${p.nc}:${p.cnonce}:${p.qop}:${ha2}`) : H(p.algorithm, `${ha1}:${p.nonce}:${ha2}`);
}
