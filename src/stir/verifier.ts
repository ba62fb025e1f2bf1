import { verify as verifySignature, type KeyObject, type X509Certificate } from 'node:crypto';
import type { Config } from '../config/index.js';
import { LruCache } from '../util/lru-cache.js';
import { parseCertificates, verifyChain } from './certificate-chain.js';
import { loadTrustAnchors } from './cert-store.js';
import { parseIdentityHeader } from './identity-header.js';
import { canonicalTn, type Attestation } from './passport.js';
import { guardedX5uFetcher, X5uFetchError, type CertFetcher } from './x5u-fetcher.js';
import { EgressGuard } from '../net/index.js';

/**
 * Verification of SHAKEN Identity headers (RFC 8224 §6.2, RFC 8588, ATIS-1000074 §5.3.2),
 * producing the verstat of 3GPP TS 24.229 / ATIS-1000074 §5.3.2.
 *
 * Checks, cheapest first so garbage costs no fetch: header syntax; alg=ES256 and ppt=shaken in
 * both the header parameters and the PASSporT header, typ=passport; x5u equals info; attest is
 * A/B/C; origid present; iat within maxAgeSec of now *either way* (secsipidx only checks the
 * past); orig.tn equals the canonical From/PAI number and dest.tn holds the canonical To/R-URI
 * number; then the certificate (fetched once per TTL through a bounded LRU) chains to a
 * configured STI-CA root and is within its validity dates; then the ES256 signature.
 */

export type Verstat = 'TN-Validation-Passed' | 'TN-Validation-Failed' | 'No-TN-Validation';

/** Why verification failed, by the SIP response RFC 8224 gives each class (sipResponseFor). */
export const STIR_FAILURES = ['malformed', 'unsupported', 'stale', 'tn-mismatch', 'x5u-unavailable', 'untrusted-certificate', 'bad-signature'] as const;
export type StirFailure = (typeof STIR_FAILURES)[number];

/**
 * At most this many Identity header fields of one INVITE are examined (RFC 8224 §6.2 asks for
 * each to be inspected; each may cost an x5u fetch, so a request cannot make us fetch dozens).
 * Real requests carry one to three (SHAKEN, plus e.g. div or rcd PASSporTs).
 */
export const MAX_IDENTITY_HEADERS = 5;

export interface StirVerdict {
  verstat: Verstat;
  /** Human-readable cause; null when passed. Never contains key material. */
  reason: string | null;
  /** Set when verstat is TN-Validation-Failed. */
  failure?: StirFailure;
  /** Set when passed. */
  attest?: Attestation;
  origid?: string;
  /** Set once the header parsed (also on failures, for diagnosis). */
  x5u?: string;
  /** Set when the header is a PASSporT of another type (ppt other than shaken): not ours to judge alone. */
  notShaken?: true;
  /** verifyAll: which Identity header (1 = the first) decided, and how many were examined. */
  header?: number;
  examined?: number;
}

/** What verifyAll takes: every Identity header of the request, in order. */
export interface VerifyAllInput {
  identities: readonly string[];
  from: string;
  to: string;
  now?: number;
}

export interface VerifyInput {
  /** The Identity header value, or null when the request had none. */
  identity: string | null;
  /** Calling number: the user part of P-Asserted-Identity, else From. */
  from: string;
  /** Called number: the user part of the Request-URI, else To. */
  to: string;
  /** Milliseconds since the epoch (default Date.now()). */
  now?: number;
}

/**
 * The SIP response for refusing a call that failed verification (RFC 8224 §6.2.2, codes
 * registered in §13.2), for when stir.verify.rejectFailed is on.
 */
export function sipResponseFor(failure: StirFailure): { status: 403 | 436 | 437 | 438; reason: string } {
  switch (failure) {
    case 'stale':
      return { status: 403, reason: 'Stale Date' };
    case 'x5u-unavailable':
      return { status: 436, reason: 'Bad Identity Info' };
    case 'unsupported':
    case 'untrusted-certificate':
      return { status: 437, reason: 'Unsupported Credential' };
    case 'malformed':
    case 'tn-mismatch':
    case 'bad-signature':
      return { status: 438, reason: 'Invalid Identity Header' };
    default: {
      const never: never = failure;
      throw new Error(`unknown STIR failure ${String(never)}`);
    }
  }
}

export interface StirVerifierOptions {
  /** Trusted STI-CA roots. With none, every signed call is No-TN-Validation. */
  trustAnchors: readonly X509Certificate[];
  /** iat must be within this many seconds of now, either way. */
  maxAgeSec: number;
  fetchTimeoutMs: number;
  cacheTtlSec: number;
  cacheMaxEntries: number;
  allowHttpX5u: boolean;
  /** Largest certificate body accepted from an x5u (default 64 KiB). */
  maxCertBytes?: number;
  /** Fail certificates without a TNAuthList extension (default false; SPCs are never matched). */
  requireTnAuthList?: boolean;
  /** Answer No-TN-Validation to everything (stir.verify.enabled false). */
  disabled?: boolean;
  /** Default: guardedX5uFetcher through an egress guard with an empty egress.allow. */
  fetcher?: CertFetcher;
  /** Clock for the cache TTL (default Date.now). */
  clock?: () => number;
}

type CertEntry =
  | { ok: true; publicKey: KeyObject; notBefore: number; notAfter: number; tnAuthList: boolean }
  | { ok: false; failure: StirFailure; reason: string };

const DEFAULT_MAX_CERT_BYTES = 64 * 1024;
/** The only reasons a failed x5u fetch gives (docs/security.md, "Server-side requests"). */
export const X5U_UNAVAILABLE = 'x5u certificate could not be fetched';
export const X5U_REFUSED = 'x5u destination not allowed';

const failed = (failure: StirFailure, reason: string, x5u?: string): StirVerdict =>
  x5u === undefined ? { verstat: 'TN-Validation-Failed', reason, failure } : { verstat: 'TN-Validation-Failed', reason, failure, x5u };

function decodeJsonSegment(seg: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(Buffer.from(seg, 'base64url').toString('utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

export class StirVerifier {
  private readonly cache: LruCache<string, CertEntry>;
  private readonly inflight = new Map<string, Promise<CertEntry>>();
  private readonly fetcher: CertFetcher;
  private readonly maxCertBytes: number;
  /** Counts fetches started (tests and metrics: a cache hit starts none). */
  fetches = 0;

  constructor(private readonly opts: StirVerifierOptions) {
    this.cache = new LruCache(opts.cacheMaxEntries, opts.cacheTtlSec * 1000, opts.clock ?? Date.now);
    this.fetcher = opts.fetcher ?? guardedX5uFetcher(new EgressGuard({ allow: [] }), { allowHttp: opts.allowHttpX5u });
    this.maxCertBytes = opts.maxCertBytes ?? DEFAULT_MAX_CERT_BYTES;
  }

  /** Cached certificates (bounded by cacheMaxEntries). */
  get cacheSize(): number {
    return this.cache.size;
  }

  /**
   * Verifies every Identity header of a request (RFC 8224 §6.2: each is inspected, in order, up
   * to MAX_IDENTITY_HEADERS) and keeps the best SHAKEN result (RFC 8588): a passing header with
   * the highest attestation (A, then B, then C; the first A ends the search). With none passing,
   * the failure of the first SHAKEN header decides (it is the one a carrier is told about); a
   * header of another PASSporT type (ppt=div, rcd, …) fails the request only when no SHAKEN
   * header is there at all, so a foreign or broken header in front of a valid one no longer
   * fails the call. Never throws.
   */
  async verifyAll({ identities, from, to, now }: VerifyAllInput): Promise<StirVerdict> {
    const present = identities.filter((h) => h.trim() !== '');
    if (present.length === 0) return this.verify({ identity: null, from, to, ...(now !== undefined ? { now } : {}) });
    const examined = present.slice(0, MAX_IDENTITY_HEADERS);
    const rank = { A: 0, B: 1, C: 2 } as const;
    let best: StirVerdict | null = null;
    let shakenFailure: StirVerdict | null = null;
    let otherFailure: StirVerdict | null = null;
    for (const [i, identity] of examined.entries()) {
      const v: StirVerdict = { ...(await this.verify({ identity, from, to, ...(now !== undefined ? { now } : {}) })), header: i + 1, examined: examined.length };
      // Disabled, or no trust anchors: the same for every header.
      if (v.verstat === 'No-TN-Validation') return v;
      if (v.verstat === 'TN-Validation-Passed') {
        if (!best || rank[v.attest!] < rank[best.attest!]) best = v;
        if (v.attest === 'A') break;
      } else if (v.notShaken) otherFailure ??= v;
      else shakenFailure ??= v;
    }
    return best ?? shakenFailure ?? otherFailure!;
  }

  /** Verifies one Identity header against the call's numbers. Never throws. */
  async verify(input: VerifyInput): Promise<StirVerdict> {
    try {
      return await this.verifyUnsafe(input);
    } catch (err) {
      // A bug or an unexpected object shape must not break call setup: report, don't throw.
      return failed('malformed', `verification error: ${(err as Error)?.message ?? String(err)}`);
    }
  }

  private async verifyUnsafe({ identity, from, to, now = Date.now() }: VerifyInput): Promise<StirVerdict> {
    if (identity === null || identity === undefined || identity.trim() === '') return { verstat: 'No-TN-Validation', reason: 'no Identity header' };
    if (this.opts.disabled) return { verstat: 'No-TN-Validation', reason: 'verification disabled (stir.verify.enabled is false)' };
    if (this.opts.trustAnchors.length === 0) return { verstat: 'No-TN-Validation', reason: 'no trusted STI-CA roots configured (stir.verify.trustFile)' };

    const parsed = parseIdentityHeader(identity);
    if (!parsed.ok) return failed('malformed', parsed.reason);
    const x5uParam = parsed.info;
    // RFC 8224 §4.1: alg defaults to ES256 when absent; SHAKEN needs ES256 either way.
    if (parsed.alg !== null && parsed.alg !== 'ES256') return failed('unsupported', 'alg parameter is not ES256', x5uParam);
    // RFC 8225 §8.1: a PASSporT with an extension must name it in ppt; SHAKEN is ppt=shaken.
    if (parsed.ppt === null) return failed('malformed', 'ppt parameter missing (SHAKEN requires ppt=shaken, RFC 8588 §6)', x5uParam);
    if (parsed.ppt !== 'shaken') return { ...failed('unsupported', 'ppt parameter is not shaken', x5uParam), notShaken: true };

    const [h64, c64, s64] = parsed.jws.split('.') as [string, string, string];
    const header = decodeJsonSegment(h64);
    if (!header) return failed('malformed', 'PASSporT header is not a JSON object', x5uParam);
    if (header.alg !== 'ES256') return failed('unsupported', 'PASSporT header alg is not ES256', x5uParam);
    if (header.ppt !== 'shaken') return failed('unsupported', 'PASSporT header ppt is not shaken', x5uParam);
    if (header.typ !== 'passport') return failed('malformed', 'PASSporT header typ is not passport', x5uParam);
    if (typeof header.x5u !== 'string' || header.x5u.length === 0) return failed('malformed', 'PASSporT header has no x5u', x5uParam);
    if (header.x5u !== x5uParam) return failed('malformed', 'PASSporT x5u differs from the Identity info parameter', x5uParam);
    const x5u = header.x5u;

    const claims = decodeJsonSegment(c64);
    if (!claims) return failed('malformed', 'PASSporT claims are not a JSON object', x5u);
    const attest = claims.attest;
    if (attest !== 'A' && attest !== 'B' && attest !== 'C') return failed('malformed', 'attest is not A, B or C (RFC 8588 §4)', x5u);
    if (typeof claims.origid !== 'string' || claims.origid.length === 0) return failed('malformed', 'origid missing (RFC 8588 §5)', x5u);
    const iat = claims.iat;
    if (typeof iat !== 'number' || !Number.isSafeInteger(iat)) return failed('malformed', 'iat is not an integer', x5u);
    const nowSec = Math.floor(now / 1000);
    if (nowSec - iat > this.opts.maxAgeSec) return failed('stale', `iat is ${nowSec - iat} s old (limit ${this.opts.maxAgeSec} s)`, x5u);
    if (iat - nowSec > this.opts.maxAgeSec) return failed('stale', `iat is ${iat - nowSec} s in the future (limit ${this.opts.maxAgeSec} s)`, x5u);

    const orig = isObject(claims.orig) && typeof claims.orig.tn === 'string' ? canonicalTn(claims.orig.tn) : null;
    if (orig === null) return failed('malformed', 'orig.tn missing or not a telephone number', x5u);
    const dest = isObject(claims.dest) && Array.isArray(claims.dest.tn) ? claims.dest.tn : null;
    if (dest === null || dest.length === 0) return failed('malformed', 'dest.tn missing or empty', x5u);
    const fromTn = canonicalTn(from);
    if (fromTn === null) return failed('tn-mismatch', 'calling party is not a telephone number', x5u);
    if (fromTn !== orig) return failed('tn-mismatch', 'orig.tn does not match the calling number', x5u);
    const toTn = canonicalTn(to);
    if (toTn === null) return failed('tn-mismatch', 'called party is not a telephone number', x5u);
    if (!dest.some((d) => typeof d === 'string' && canonicalTn(d) === toTn)) return failed('tn-mismatch', 'dest.tn does not contain the called number', x5u);

    const scheme = x5u.slice(0, x5u.indexOf(':') + 1).toLowerCase();
    if (scheme !== 'https:' && !(scheme === 'http:' && this.opts.allowHttpX5u)) {
      return failed('x5u-unavailable', scheme === 'http:' ? 'x5u uses http; only https is allowed (stir.verify.allowHttpX5u)' : 'x5u is not an https URL', x5u);
    }

    const cert = await this.certificate(x5u);
    if (!cert.ok) return failed(cert.failure, cert.reason, x5u);
    if (now < cert.notBefore) return failed('untrusted-certificate', 'certificate is not yet valid', x5u);
    if (now > cert.notAfter) return failed('untrusted-certificate', 'certificate has expired', x5u);
    if (this.opts.requireTnAuthList && !cert.tnAuthList) return failed('untrusted-certificate', 'certificate has no TNAuthList extension (RFC 8226 §9)', x5u);

    const sig = Buffer.from(s64, 'base64url');
    if (sig.length !== 64) return failed('bad-signature', 'signature is not a 64-byte ES256 r||s value', x5u);
    const ok = verifySignature('sha256', Buffer.from(h64 + '.' + c64, 'latin1'), { key: cert.publicKey, dsaEncoding: 'ieee-p1363' }, sig);
    if (!ok) return failed('bad-signature', 'signature does not verify with the x5u certificate', x5u);
    return { verstat: 'TN-Validation-Passed', reason: null, attest, origid: claims.origid, x5u };
  }

  /** The certificate verdict for an x5u: from the cache, a fetch already under way, or a new fetch. */
  private certificate(x5u: string): Promise<CertEntry> {
    const hit = this.cache.get(x5u);
    if (hit) return Promise.resolve(hit);
    const pending = this.inflight.get(x5u);
    if (pending) return pending;
    const p = this.load(x5u).finally(() => this.inflight.delete(x5u));
    this.inflight.set(x5u, p);
    return p;
  }

  private async load(x5u: string): Promise<CertEntry> {
    this.fetches++;
    let body: Uint8Array;
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        ac.abort();
        reject(new X5uFetchError('timeout', `x5u fetch took longer than ${this.opts.fetchTimeoutMs} ms`));
      }, this.opts.fetchTimeoutMs);
    });
    try {
      body = await Promise.race([this.fetcher(x5u, { signal: ac.signal, timeoutMs: this.opts.fetchTimeoutMs, maxBytes: this.maxCertBytes }), timeout]);
    } catch (err) {
      // Fetch failures are not cached: the next call tries again. The reason lands in the call
      // record and the identity.failed webhook, which the calling side may read: it says that
      // the fetch failed, never how (a socket error, a status or a timeout would make the
      // gateway a probe of whatever answers at the x5u).
      const refused = err instanceof X5uFetchError && err.kind === 'refused';
      return { ok: false, failure: 'x5u-unavailable', reason: refused ? X5U_REFUSED : X5U_UNAVAILABLE };
    } finally {
      clearTimeout(timer);
    }
    if (body.byteLength > this.maxCertBytes) return { ok: false, failure: 'x5u-unavailable', reason: X5U_UNAVAILABLE };

    let entry: CertEntry;
    let certs: X509Certificate[];
    try {
      certs = parseCertificates(body);
    } catch {
      entry = { ok: false, failure: 'untrusted-certificate', reason: 'x5u did not serve a readable certificate' };
      this.cache.set(x5u, entry);
      return entry;
    }
    const chain = verifyChain(certs, this.opts.trustAnchors);
    entry = chain.ok
      ? { ok: true, publicKey: chain.publicKey, notBefore: chain.notBefore, notAfter: chain.notAfter, tnAuthList: chain.tnAuthList }
      : { ok: false, failure: 'untrusted-certificate', reason: chain.reason };
    this.cache.set(x5u, entry);
    return entry;
  }
}

/**
 * The verifier the gateway uses, from config.stir.verify: trust anchors from trustFile
 * (relative to the working directory) or, when that is empty, the development CA at
 * <dataDir>/stir/ca.pem. Throws ConfigError when a configured trustFile is unreadable.
 */
export function createStirVerifier(config: Config, opts: { fetcher?: CertFetcher; egress?: EgressGuard; cwd?: string; requireTnAuthList?: boolean } = {}): StirVerifier {
  const v = config.stir.verify;
  const fetcher = opts.fetcher ?? guardedX5uFetcher(opts.egress ?? new EgressGuard({ allow: config.egress.allow }), { allowHttp: v.allowHttpX5u });
  const anchors = v.enabled ? loadTrustAnchors(config, opts.cwd) : { anchors: [], file: null };
  return new StirVerifier({
    trustAnchors: anchors.anchors,
    maxAgeSec: v.maxAgeSec,
    fetchTimeoutMs: v.fetchTimeoutMs,
    cacheTtlSec: v.cacheTtlSec,
    cacheMaxEntries: v.cacheMaxEntries,
    allowHttpX5u: v.allowHttpX5u,
    disabled: !v.enabled,
    fetcher,
    ...(opts.requireTnAuthList !== undefined ? { requireTnAuthList: opts.requireTnAuthList } : {}),
  });
}
