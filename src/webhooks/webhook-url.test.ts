import { describe, expect, it } from 'vitest';
import { checkWebhookUrl, urlForAudit, urlForLog } from './webhook-url.js';

describe('webhook endpoint URLs', () => {
  const strict = { allowHttp: false };
  const lab = { allowHttp: true };

  it('accepts https URLs with paths, ports and queries', () => {
    for (const u of ['https://hooks.example.com/tollgate', 'https://10.0.0.5:8443/h?token=abc', 'https://[2001:db8::1]/x']) expect(checkWebhookUrl(u, strict).ok).toBe(true);
  });

  it('accepts http only when webhooks.allowHttp is on', () => {
    expect(checkWebhookUrl('http://127.0.0.1:9000/h', strict)).toMatchObject({ ok: false, reason: expect.stringContaining('https://') });
    expect(checkWebhookUrl('http://127.0.0.1:9000/h', lab).ok).toBe(true);
  });

  it('refuses other schemes, user:password and text that is not a URL', () => {
    for (const u of ['ftp://example.com/x', 'ws://example.com/x', 'file:///etc/passwd', 'javascript:alert(1)', 'hooks.example.com/x', '', 'https://']) {
      expect(checkWebhookUrl(u, lab).ok, u).toBe(false);
    }
    expect(checkWebhookUrl('https://user:pw@hooks.example.com/x', lab)).toMatchObject({ ok: false, reason: expect.stringContaining('user:password') });
    expect(checkWebhookUrl('https://user@hooks.example.com/x', lab).ok).toBe(false);
    expect(checkWebhookUrl(`https://example.com/${'a'.repeat(2100)}`, lab)).toMatchObject({ ok: false, reason: expect.stringContaining('2048') });
  });

  it('logs name only scheme and host; the audit log drops the query', () => {
    expect(urlForLog('https://hooks.example.com:8443/services/T0/B0/secretpath?token=s3cr3t')).toBe('https://hooks.example.com:8443');
    expect(urlForAudit('https://hooks.example.com/h?token=s3cr3t')).toBe('https://hooks.example.com/h?…');
    expect(urlForAudit('https://hooks.example.com/h')).toBe('https://hooks.example.com/h');
    expect(urlForLog('not a url')).toBe('(invalid url)');
  });
});
