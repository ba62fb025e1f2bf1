import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { parseAuthParams } from './sip-grammar.js';
import type { NonceCountStore } from './call-policy.js';

export type DigestAlgorithm = 'SHA-256' | 'MD5';

/** Looks up the HA1 values for a username (several during a key rotation's overlap); null = unknown user. */
export type Ha1Lookup = (username: string, algorithm: DigestAlgorithm) => Promise<string[] | null>;

export interface DigestOptions {
  realm: string;
  /** Secret for stateless nonces (derived from the master key). */
  nonceKey: Buffer;
  /** How long a nonce is accepted; then the right password gets a fresh challenge with stale=true. */
  nonceTtlMs: number;
  /**
   * Algorithms offered, one challenge each, in this order (default SHA-256 then MD5). Clients
   * that read only the first challenge and know only MD5 (SIPp 3.6) need MD5 first.
   */
  algorithms?: readonly DigestAlgorithm[];
  /**
   * Accept answers without qop (RFC 2069 digest, which RFC 3261 §22.4 keeps for old clients).
   * Such an answer carries no nonce count, so it is accepted once per nonce. Default false:
   * the challenge offers qop="auth" and an answer without it is refused.
   */
  allowNoQop?: boolean;
  /** Which (nonce, nc) pairs were used already: shared by the nodes of a cluster. */
  nonceCounts: NonceCountStore;
}

/** Why credentials were refused (logged and counted; only 'uri-mismatch' changes the answer: 400). */
export type DigestFailure =
  /** A parameter missing or malformed (username, nonce, uri, response; qop, nc, cnonce). */
  | 'malformed'
  /** An algorithm not offered. */
  | 'algorithm'
  /** No qop although the challenge offered qop="auth" (sip.digest.allowNoQop is off). */
  | 'qop-required'
  /** The digest uri is not the Request-URI (RFC 7616 §3.4.6). */
  | 'uri-mismatch'
  /** A nonce we did not issue (forged, another deployment's, or from the future). */
  | 'nonce'
  | 'unknown-user'
  /** The response does not match: a wrong password, or a field changed. */
  | 'response'
  /** This nonce count was used already with this nonce (on any node sharing the counters). */
  | 'replay';

export type DigestResult =
  | { readonly ok: true; readonly username: string; readonly algorithm: DigestAlgorithm }
  /** No credentials for this realm: challenge. */
  | { readonly ok: false; readonly reason: 'missing' }
  /** Right password on an expired nonce: challenge again with stale=true (RFC 7616 §3.3). */
  | { readonly ok: false; readonly reason: 'stale'; readonly username: string }
  /** Refused credentials: a failure, counted towards brute-force blocking. */
  | { readonly ok: false; readonly reason: 'invalid'; readonly username: string | null; readonly failure: DigestFailure };

const H = (alg: DigestAlgorithm, s: string): string => createHash(alg === 'MD5' ? 'md5' : 'sha256').update(s, 'utf8').digest('hex');

/** Allowance for clocks of cluster nodes that disagree: a nonce may come from up to 5 s ahead. */
const CLOCK_SKEW_MS = 5_000;

/**
 * SIP digest authentication (RFC 3261 §22, RFC 7616 algorithms as RFC 8760 brings them to SIP).
 * Challenges offer SHA-256 first, then MD5 (clients use the first they support; SIP.js and
 * older phones only do MD5), each with qop="auth".
 *
 * - Nonces are stateless: a timestamp, a salt and an HMAC of both, so any node of a cluster can
 *   check them without shared state, and an unauthenticated request costs no memory. They live
 *   `nonceTtlMs`; an older nonce with the right password is answered stale=true, which clients
 *   retry silently (RFC 7616 §3.3).
 * - qop=auth is required (unless allowNoQop): with it every answer carries a nonce count, and a
 *   (nonce, nc) pair is accepted once in the whole cluster (`nonceCounts`, on the counters
 *   backend), so a captured header cannot be replayed, not even to another node.
 * - The digest uri must be the Request-URI, compared as the exact string of the request line
 *   (RFC 7616 §3.4.6; RFC 3261 §22.4 has the client copy it from the Request-URI): an answer
 *   computed for one number cannot place a call to another. No normalisation (RFC 3261 §19.1.4)
 *   is done: every client measured (SIPp, baresip, SIP.js) copies the Request-URI verbatim, and
 *   an equivalence test would be one more parser an attacker could aim at.
 */
export class DigestAuthenticator {
  /**
   * The salt of each nonce: 4 random bytes of this process and a counter, so no two nonces of a
   * cluster are alike (their nonce counts are kept per nonce) without asking the CSPRNG for
   * every challenge (it was a tenth of a challenge's cost). The HMAC makes nonces unforgeable.
   */
  private readonly saltPrefix = randomBytes(4);
  private saltCounter = 0;

  constructor(private readonly opts: DigestOptions, private readonly now: () => number = Date.now) {}

  newNonce(): string {
    const ts = Buffer.alloc(8);
    ts.writeBigUInt64BE(BigInt(this.now()));
    const salt = Buffer.alloc(8);
    this.saltPrefix.copy(salt, 0);
    this.saltCounter = (this.saltCounter + 1) >>> 0;
    salt.writeUInt32BE(this.saltCounter, 4);
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
    if (age < -CLOCK_SKEW_MS) return 'bad';
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
   * The digest parameters of the first Authorization (or Proxy-Authorization) value for our
   * realm, or null when the request has none (it is then challenged).
   */
  credentialsFor(headerValues: readonly string[]): Map<string, string> | null {
    for (const v of headerValues) {
      const p = parseAuthParams(v);
      if (p && p.scheme.toLowerCase() === 'digest' && p.params.get('realm') === this.opts.realm) return p.params;
    }
    return null;
  }

  /**
   * Checks the credentials of a request. `requestUri` is the Request-URI as it stands on the
   * request line; `headerValues` are the Authorization (or Proxy-Authorization) header values.
   */
  async verify(method: string, requestUri: string, headerValues: readonly string[], lookup: Ha1Lookup): Promise<DigestResult> {
    const creds = this.credentialsFor(headerValues);
    if (!creds) return { ok: false, reason: 'missing' };
    const username = creds.get('username') ?? null;
    const nonce = creds.get('nonce');
    const uri = creds.get('uri');
    const response = creds.get('response');
    const algRaw = (creds.get('algorithm') ?? 'MD5').toUpperCase();
    const qop = creds.get('qop');
    const nc = creds.get('nc');
    const cnonce = creds.get('cnonce');
    const fail = (failure: DigestFailure): DigestResult => ({ ok: false, reason: 'invalid', username, failure });
    if (!username || !nonce || !uri || !response) return fail('malformed');
    if (algRaw !== 'MD5' && algRaw !== 'SHA-256') return fail('algorithm');
    const algorithm: DigestAlgorithm = algRaw;
    if (!(this.opts.algorithms ?? ['SHA-256', 'MD5']).includes(algorithm)) return fail('algorithm');
    if (qop === undefined) {
      if (!this.opts.allowNoQop) return fail('qop-required');
    } else if (qop !== 'auth' || !nc || !cnonce || !/^[0-9a-fA-F]{8}$/.test(nc)) {
      return fail('malformed');
    }
    if (uri !== requestUri) return fail('uri-mismatch');
    const nonceState = this.checkNonce(nonce);
    if (nonceState === 'bad') return fail('nonce');
    const ha1s = await lookup(username, algorithm);
    if (!ha1s || ha1s.length === 0) return fail('unknown-user');
    const ha2 = H(algorithm, `${method}:${uri}`);
    const expectedFor = (ha1: string): string =>
      qop ? H(algorithm, `${ha1}:${nonce}:${nc}:${cnonce}:${qop}:${ha2}`) : H(algorithm, `${ha1}:${nonce}:${ha2}`);
    const given = Buffer.from(response.toLowerCase(), 'utf8');
    let match = false;
    for (const ha1 of ha1s) {
      const exp = Buffer.from(expectedFor(ha1), 'utf8');
      if (exp.length === given.length && timingSafeEqual(exp, given)) match = true;
    }
    if (!match) return fail('response');
    if (nonceState === 'stale') return { ok: false, reason: 'stale', username };
    // RFC 7616 §3.4.5: a nonce count is used once per nonce. Claimed only after the response
    // matched, so nobody without the password can use up a client's counts. Without qop there
    // is no count: the nonce itself is used once (nc 0, which qop answers never carry).
    // Remembered a little longer than the nonce lives, for nodes whose clocks disagree.
    const count = qop ? parseInt(nc!, 16) : 0;
    if (!(await this.opts.nonceCounts.claim(nonce, count, this.opts.nonceTtlMs + 2 * CLOCK_SKEW_MS))) return fail('replay');
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
