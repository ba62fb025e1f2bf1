import { EgressError, type EgressGuard, type EgressFailure } from '../net/index.js';

/**
 * Fetching the certificate an x5u URL names (RFC 8224 §6.2.3, ATIS-1000074 §5.3.1). The
 * verifier calls a CertFetcher; tests inject one that maps URLs to files, production uses
 * guardedX5uFetcher. The verifier also enforces the timeout and size cap itself, so an
 * injected fetcher that ignores them is still bounded.
 */

export interface CertFetchOptions {
  /** Aborted when the verifier's fetch timeout passes. */
  signal: AbortSignal;
  /** The verifier's fetch timeout (stir.verify.fetchTimeoutMs). */
  timeoutMs: number;
  /** Refuse bodies larger than this. */
  maxBytes: number;
}

/** Returns the response body (PEM or DER). Throws X5uFetchError (or any error) on failure. */
export type CertFetcher = (url: string, opts: CertFetchOptions) => Promise<Uint8Array>;

export type X5uFetchFailure = 'refused' | 'timeout' | 'oversize' | 'http-status' | 'network';

export class X5uFetchError extends Error {
  constructor(
    readonly kind: X5uFetchFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'X5uFetchError';
  }
}

const KIND: Readonly<Record<EgressFailure, X5uFetchFailure>> = { refused: 'refused', network: 'network', timeout: 'timeout', aborted: 'timeout', oversize: 'oversize' };

/**
 * GET through the egress guard, always as an untrusted URL: whoever sends the INVITE chooses
 * the x5u, so it may not reach loopback, private, link-local or metadata addresses (unless
 * egress.allow lists them), and the connection goes to the address that was checked. https only
 * unless allowHttp (stir.verify.allowHttpX5u). Redirects are refused rather than followed: a
 * redirect could move an https x5u to http or to an internal address, and ATIS-1000074 has the
 * x5u name the certificate itself.
 */
export function guardedX5uFetcher(egress: EgressGuard, opts: { allowHttp: boolean }): CertFetcher {
  return async (url, { signal, timeoutMs, maxBytes }) => {
    let res;
    try {
      res = await egress.request(url, 'untrusted', {
        method: 'GET',
        headers: { accept: 'application/pem-certificate-chain, application/x-pem-file, application/pkix-cert;q=0.9, */*;q=0.1' },
        signal,
        timeoutMs,
        maxBytes,
        schemes: opts.allowHttp ? ['https:', 'http:'] : ['https:'],
      });
    } catch (err) {
      const kind = err instanceof EgressError ? KIND[err.kind] : 'network';
      throw new X5uFetchError(kind, `x5u fetch failed: ${err instanceof EgressError ? err.message : 'connection failed'}`, { cause: err });
    }
    if (res.status !== 200) throw new X5uFetchError('http-status', `x5u answered HTTP ${res.status}`);
    return res.body;
  };
}
