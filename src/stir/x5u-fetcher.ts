/**
 * Fetching the certificate an x5u URL names (RFC 8224 §6.2.3, ATIS-1000074 §5.3.1). The
 * verifier calls a CertFetcher; tests inject one that maps URLs to files, production uses
 * fetchX5u (undici's fetch). The verifier also enforces the timeout and size cap itself, so an
 * injected fetcher that ignores them is still bounded.
 */

export interface CertFetchOptions {
  /** Aborted when the verifier's fetch timeout passes. */
  signal: AbortSignal;
  /** Refuse bodies larger than this. */
  maxBytes: number;
}

/** Returns the response body (PEM or DER). Throws X5uFetchError (or any error) on failure. */
export type CertFetcher = (url: string, opts: CertFetchOptions) => Promise<Uint8Array>;

export type X5uFetchFailure = 'timeout' | 'oversize' | 'http-status' | 'network';

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

/**
 * GET over http(s) with a byte cap. Redirects are refused rather than followed: a redirect
 * could move an https x5u to http or to an internal address, and ATIS-1000074 has the x5u name
 * the certificate itself.
 */
export const fetchX5u: CertFetcher = async (url, { signal, maxBytes }) => {
  let res: Response;
  try {
    res = await fetch(url, {
      signal,
      redirect: 'error',
      headers: { accept: 'application/pem-certificate-chain, application/x-pem-file, application/pkix-cert;q=0.9, */*;q=0.1' },
    });
  } catch (err) {
    if (signal.aborted) throw new X5uFetchError('timeout', 'x5u fetch timed out', { cause: err });
    // undici reports 'fetch failed' and keeps the reason (DNS, TLS, refused, redirect) in cause.
    const cause = (err as { cause?: { message?: unknown } }).cause?.message;
    throw new X5uFetchError('network', `x5u fetch failed: ${typeof cause === 'string' ? cause : (err as Error).message}`, { cause: err });
  }
  if (res.status !== 200) {
    await res.body?.cancel().catch(() => undefined);
    throw new X5uFetchError('http-status', `x5u answered HTTP ${res.status}`);
  }
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > maxBytes) {
    await res.body?.cancel().catch(() => undefined);
    throw new X5uFetchError('oversize', `x5u body larger than ${maxBytes} bytes`);
  }
  if (!res.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = res.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => undefined);
        throw new X5uFetchError('oversize', `x5u body larger than ${maxBytes} bytes`);
      }
      chunks.push(value);
    }
  } catch (err) {
    if (err instanceof X5uFetchError) throw err;
    if (signal.aborted) throw new X5uFetchError('timeout', 'x5u fetch timed out', { cause: err });
    throw new X5uFetchError('network', `x5u read failed: ${(err as Error).message}`, { cause: err });
  }
  return Buffer.concat(chunks, total);
};
