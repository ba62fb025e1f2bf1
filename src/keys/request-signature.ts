import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * `Tollgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + payload)>`, the
 * scheme of tollgate's signed requests. The payload is the full URL for a WebSocket upgrade and
 * the raw body for a webhook. Receivers check it with verifyTollgateSignature.
 */
export function tollgateSignature(secret: string, payload: string, nowSec: number = Math.floor(Date.now() / 1000)): string {
  const mac = createHmac('sha256', secret).update(`${nowSec}.${payload}`).digest('hex');
  return `t=${nowSec},v1=${mac}`;
}

/**
 * True when `header` is a valid signature of `payload` with `secret`, made within
 * `toleranceSec` of now (a replayed old request fails). Compares in constant time.
 */
export function verifyTollgateSignature(secret: string, header: string, payload: string, toleranceSec = 300, nowSec: number = Math.floor(Date.now() / 1000)): boolean {
  const parts = new Map<string, string[]>();
  for (const item of header.split(',')) {
    const i = item.indexOf('=');
    if (i <= 0) continue;
    const k = item.slice(0, i).trim();
    parts.set(k, [...(parts.get(k) ?? []), item.slice(i + 1).trim()]);
  }
  const t = Number(parts.get('t')?.[0]);
  if (!Number.isInteger(t) || Math.abs(nowSec - t) > toleranceSec) return false;
  const expected = Buffer.from(createHmac('sha256', secret).update(`${t}.${payload}`).digest('hex'));
  return (parts.get('v1') ?? []).some((v) => {
    const got = Buffer.from(v);
    return got.length === expected.length && timingSafeEqual(got, expected);
  });
}

/**
 * Twilio's request signature (X-Twilio-Signature): base64 HMAC-SHA1 with the auth token over
 * the full URL followed by each POST parameter's name and value, sorted by name. A WebSocket
 * upgrade has no parameters, so it signs the URL alone.
 */
export function twilioSignature(authToken: string, url: string, params: Readonly<Record<string, string>> = {}): string {
  let data = url;
  for (const k of Object.keys(params).sort()) data += k + params[k];
  return createHmac('sha1', authToken).update(data).digest('base64');
}
