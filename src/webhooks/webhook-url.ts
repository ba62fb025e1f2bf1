/** Longest endpoint URL accepted. */
export const MAX_URL_LENGTH = 2048;

export type UrlCheck = { readonly ok: true; readonly url: URL } | { readonly ok: false; readonly reason: string };

/**
 * Whether tollgate may POST to `url`: https (http only with webhooks.allowHttp, for tests and
 * labs), a host, and no user:password (credentials in a URL end up in proxy logs; receivers
 * authenticate tollgate by its signature instead).
 */
export function checkWebhookUrl(url: string, opts: { allowHttp: boolean }): UrlCheck {
  if (url.length > MAX_URL_LENGTH) return { ok: false, reason: `is longer than ${MAX_URL_LENGTH} characters` };
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { ok: false, reason: 'is not a URL' };
  }
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && opts.allowHttp)) {
    return { ok: false, reason: opts.allowHttp ? 'must be an http:// or https:// URL' : 'must be an https:// URL (http:// only with webhooks.allowHttp)' };
  }
  if (u.username || u.password) return { ok: false, reason: 'must not carry user:password (receivers check the Tollgate-Signature instead)' };
  if (!u.hostname) return { ok: false, reason: 'has no host' };
  return { ok: true, url: u };
}

/** How logs name an endpoint: scheme and host only (paths and queries may carry the receiver's tokens). */
export function urlForLog(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  } catch {
    return '(invalid url)';
  }
}

/** How the audit log names an endpoint: without its query string. */
export function urlForAudit(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}${u.search ? '?…' : ''}`;
  } catch {
    return '(invalid url)';
  }
}
