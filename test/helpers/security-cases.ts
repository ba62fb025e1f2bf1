import { it, expect } from 'vitest';

/**
 * Shared security cases (STYLE.md §16): every authenticated surface (REST now; SIP trunk and
 * agent WebSocket as they land) must refuse the same bad credentials in the same way. A
 * surface adapter says how to try a credential and how a refusal looks on its wire.
 */
export interface Attempt {
  /** True when the surface admitted the request. */
  readonly admitted: boolean;
  /** The refusal code the surface reported (HTTP error code, SIP Reason, close reason...). */
  readonly code: string | null;
  /** Wire-level status: HTTP status, SIP status or WebSocket close code. */
  readonly status: number;
  /** Everything the client received, to check that nothing hints at which part was wrong. */
  readonly raw: string;
}

export interface SecuritySurface {
  readonly name: string;
  /** Tries the surface with a credential (null = none). */
  attempt(credential: string | null): Promise<Attempt>;
  /** A fresh key allowed to use the surface, with optional policy changes. */
  freshKey(policy?: Record<string, unknown>): Promise<{ id: string; secret: string }>;
  revoke(keyId: string): Promise<void>;
  expire(keyId: string): Promise<void>;
  /** Expected wire status for each kind of refusal on this surface. */
  readonly expect: { unauthenticated: number; revoked: number; expired: number; forbiddenSource: number; overLimit: number };
  /** Makes the next attempt of this key cross a limit (CPS, concurrency) and returns that attempt. */
  overLimit(key: { id: string; secret: string }): Promise<Attempt>;
}

export function securityCases(s: SecuritySurface): void {
  const tamper = (secret: string): string => {
    const i = secret.length - 10;
    const c = secret[i] === 'A' ? 'B' : 'A';
    return secret.slice(0, i) + c + secret.slice(i + 1);
  };

  it(`${s.name}: no credential is refused as unauthenticated`, async () => {
    const a = await s.attempt(null);
    expect(a.admitted).toBe(false);
    expect(a.status).toBe(s.expect.unauthenticated);
  });

  it(`${s.name}: a well-formed key that does not exist, a bad checksum and garbage are refused alike`, async () => {
    const { secret } = await s.freshKey();
    const unknown = secret.slice(0, 8) + 'Z'.repeat(43);
    const results = await Promise.all([s.attempt(tamper(secret)), s.attempt('tg_live_' + 'x'.repeat(49)), s.attempt('not-a-key')]);
    for (const r of results) {
      expect(r.admitted).toBe(false);
      expect(r.status).toBe(s.expect.unauthenticated);
      expect(r.code).toBe('UNAUTHENTICATED');
    }
    // The same answer for every wrong credential: nothing tells which part was wrong.
    expect(new Set(results.map((r) => r.raw.replace(/"requestId":"[^"]*"/, ''))).size).toBe(1);
    expect((await s.attempt(unknown)).admitted).toBe(false);
  });

  it(`${s.name}: the right key is admitted`, async () => {
    const k = await s.freshKey();
    const a = await s.attempt(k.secret);
    expect(a.admitted).toBe(true);
  });

  it(`${s.name}: a revoked key is refused at the next attempt`, async () => {
    const k = await s.freshKey();
    expect((await s.attempt(k.secret)).admitted).toBe(true);
    await s.revoke(k.id);
    const a = await s.attempt(k.secret);
    expect(a.admitted).toBe(false);
    expect(a.status).toBe(s.expect.revoked);
    expect(a.code).toBe('KEY_REVOKED');
  });

  it(`${s.name}: an expired key is refused`, async () => {
    const k = await s.freshKey();
    await s.expire(k.id);
    const a = await s.attempt(k.secret);
    expect(a.admitted).toBe(false);
    expect(a.status).toBe(s.expect.expired);
    expect(a.code).toBe('KEY_EXPIRED');
  });

  it(`${s.name}: a key used from outside its CIDR allowlist is refused`, async () => {
    const k = await s.freshKey({ allowedCidrs: ['10.0.0.0/8', '2001:db8::/32'] });
    const a = await s.attempt(k.secret);
    expect(a.admitted).toBe(false);
    expect(a.status).toBe(s.expect.forbiddenSource);
    expect(a.code).toBe('SOURCE_IP_NOT_ALLOWED');
    const inside = await s.freshKey({ allowedCidrs: ['127.0.0.0/8', '::1/128'] });
    expect((await s.attempt(inside.secret)).admitted).toBe(true);
  });

  it(`${s.name}: crossing a limit is refused with a retry hint`, async () => {
    const k = await s.freshKey();
    const a = await s.overLimit(k);
    expect(a.admitted).toBe(false);
    expect(a.status).toBe(s.expect.overLimit);
    expect(['RATE_LIMITED', 'CONCURRENCY_LIMITED']).toContain(a.code);
  });
}
