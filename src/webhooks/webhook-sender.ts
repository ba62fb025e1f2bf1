import { EgressError, type EgressGuard, type EgressTrust } from '../net/index.js';

/** One POST of a delivery. */
export interface WebhookRequest {
  readonly url: string;
  /** Whose URL it is: account-wide endpoints are the operator's, a key's endpoints are not. */
  readonly trust: EgressTrust;
  readonly headers: Readonly<Record<string, string>>;
  /** Sent as is: the exact bytes the signature covers. */
  readonly body: string;
  readonly timeoutMs: number;
  /** Aborts the attempt (the service stopping). */
  readonly signal?: AbortSignal | undefined;
}

/**
 * What an attempt came to. A decision, not an error: senders never throw. `refused`: the egress
 * guard would not send it there (no later attempt will either).
 */
export type WebhookOutcome =
  | { readonly ok: true; readonly status: number }
  | { readonly ok: false; readonly status: number | null; readonly error: string; readonly aborted?: boolean; readonly refused?: boolean };

export type WebhookSender = (req: WebhookRequest) => Promise<WebhookOutcome>;

/**
 * POSTs through the egress guard: the endpoint's host checked and pinned for its trust, no
 * redirects followed (a 3xx counts as a failure, so a receiver cannot bounce tollgate to another
 * host), the whole attempt bounded by timeoutMs, the response body not read. Error texts are
 * generic (destination not allowed, connection failed, timeout, HTTP 500): the delivery log is
 * readable by the endpoint's key, and must not tell it how the gateway's network answered; the
 * guard's debug log keeps the detail.
 */
export function guardedSender(egress: EgressGuard): WebhookSender {
  return async (req) => {
    try {
      const res = await egress.request(req.url, req.trust, { method: 'POST', headers: req.headers, body: req.body, timeoutMs: req.timeoutMs, signal: req.signal, maxBytes: 0 });
      if (res.status >= 200 && res.status < 300) return { ok: true, status: res.status };
      if (res.status >= 300 && res.status < 400) return { ok: false, status: res.status, error: `HTTP ${res.status} (redirects are not followed)` };
      return { ok: false, status: res.status, error: `HTTP ${res.status}` };
    } catch (err) {
      const kind = err instanceof EgressError ? err.kind : 'network';
      switch (kind) {
        case 'aborted':
          return { ok: false, status: null, error: 'aborted', aborted: true };
        case 'timeout':
          return { ok: false, status: null, error: `timeout after ${req.timeoutMs} ms` };
        case 'refused':
          return { ok: false, status: null, error: 'destination not allowed', refused: true };
        case 'network':
        case 'oversize':
          return { ok: false, status: null, error: 'connection failed' };
        default: {
          const never: never = kind;
          throw new Error(`unknown egress failure ${String(never)}`);
        }
      }
    }
  };
}
