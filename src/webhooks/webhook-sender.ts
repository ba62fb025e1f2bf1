/** One POST of a delivery. */
export interface WebhookRequest {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  /** Sent as is: the exact bytes the signature covers. */
  readonly body: string;
  readonly timeoutMs: number;
  /** Aborts the attempt (the service stopping). */
  readonly signal?: AbortSignal | undefined;
}

/** What an attempt came to. A decision, not an error: senders never throw. */
export type WebhookOutcome =
  | { readonly ok: true; readonly status: number }
  | { readonly ok: false; readonly status: number | null; readonly error: string; readonly aborted?: boolean };

export type WebhookSender = (req: WebhookRequest) => Promise<WebhookOutcome>;

/**
 * POSTs with fetch: no redirects followed (a 3xx counts as a failure, so a receiver cannot
 * bounce tollgate to another host), the whole attempt bounded by timeoutMs, the response body
 * discarded. Error texts name the cause (timeout, ECONNRESET, HTTP 500), never the URL.
 */
export const fetchSender: WebhookSender = async (req) => {
  const timeout = AbortSignal.timeout(req.timeoutMs);
  const signal = req.signal ? AbortSignal.any([timeout, req.signal]) : timeout;
  try {
    const res = await fetch(req.url, { method: 'POST', headers: req.headers, body: req.body, redirect: 'manual', signal });
    await res.body?.cancel().catch(() => undefined);
    if (res.status >= 200 && res.status < 300) return { ok: true, status: res.status };
    if (res.status >= 300 && res.status < 400) return { ok: false, status: res.status, error: `HTTP ${res.status} (redirects are not followed)` };
    return { ok: false, status: res.status, error: `HTTP ${res.status}` };
  } catch (err) {
    if (req.signal?.aborted) return { ok: false, status: null, error: 'aborted', aborted: true };
    if (timeout.aborted) return { ok: false, status: null, error: `timeout after ${req.timeoutMs} ms` };
    return { ok: false, status: null, error: networkError(err) };
  }
};

/** The innermost cause's code (ECONNRESET, ECONNREFUSED, UND_ERR_SOCKET…) or message, kept short. */
function networkError(err: unknown): string {
  let e: unknown = err;
  for (let i = 0; i < 5 && e instanceof Error && e.cause !== undefined; i++) e = e.cause;
  const code = (e as { code?: unknown } | null)?.code;
  const message = e instanceof Error ? e.message : String(e);
  const text = typeof code === 'string' ? `${code}${message && !message.includes(code) ? `: ${message}` : ''}` : message;
  return text.slice(0, 200) || 'network error';
}
