import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { inMemoryServices } from '../testing/fixtures.js';
import type { KeyCreateInput } from '../keys/key-input.js';
import { keyPrincipal, tokenPrincipal } from './principal.js';
import { PolicyEngine, type AuthorizeRequest } from './policy-engine.js';
import { parseRateTable } from './rate-table.js';

type Services = Awaited<ReturnType<typeof inMemoryServices>>;

describe('PolicyEngine.authorize', () => {
  let s: Services;
  beforeEach(async () => {
    s = await inMemoryServices();
  });
  afterEach(async () => {
    await s.close();
  });

  /** The engine of a gateway whose price for every call is `perMinute` per second (no table, no fee). */
  const pricedAt = (perMinute: number) => new PolicyEngine(s.counters, s.store, s.ledger, s.audit, { leaseTtlSec: 60, defaultRatePerMinute: perMinute, blockedPrefixes: [] }, s.log);
  const keyWith = async (policy: Partial<KeyCreateInput> = {}) => (await s.keys.create({ name: 'k', callsPerSecond: 100, cpsBurst: 100, maxConcurrentCalls: 100, ...policy }, 'test')).key;
  const outbound = (key: Awaited<ReturnType<typeof keyWith>>, over: Partial<AuthorizeRequest> = {}): AuthorizeRequest => ({
    principal: keyPrincipal(key),
    action: 'call.outbound',
    scope: 'calls:outbound',
    sourceIp: '127.0.0.1',
    destination: '+14155550199',
    ...over,
  });

  it('admits a call that passes every check and returns its grant', async () => {
    const key = await keyWith();
    const v = await s.policy.authorize(outbound(key, { requestedMaxDurationSec: 90 }));
    expect(v.ok).toBe(true);
    if (v.ok) expect(v.grant).toMatchObject({ keyId: key.id, direction: 'outbound', maxDurationSec: 90, budget: null });
  });

  it.each([
    ['revoked', { status: 'revoked' as const }, 'KEY_REVOKED'],
    ['quarantined', { status: 'quarantined' as const }, 'KEY_QUARANTINED'],
    ['expired', { expiresAt: '2020-01-01T00:00:00.000Z' }, 'KEY_EXPIRED'],
  ])('refuses a %s key', async (_label, patch, code) => {
    const key = await keyWith();
    const v = await s.policy.authorize(outbound({ ...key, ...patch }));
    expect(v).toMatchObject({ ok: false, code });
  });

  it('refuses an action whose scope the key lacks, and accepts it through the role', async () => {
    const noScope = await keyWith({ scopes: ['calls:inbound'] });
    expect(await s.policy.authorize(outbound(noScope))).toMatchObject({ ok: false, code: 'SCOPE_NOT_GRANTED' });
    const dev = await keyWith({ scopes: [], role: 'developer' });
    expect((await s.policy.authorize(outbound(dev))).ok).toBe(true);
  });

  it('checks the source address against IPv4 and IPv6 CIDRs', async () => {
    const key = await keyWith({ allowedCidrs: ['192.0.2.0/24', '2001:db8::/32'] });
    expect((await s.policy.authorize(outbound(key, { sourceIp: '192.0.2.77' }))).ok).toBe(true);
    expect((await s.policy.authorize(outbound(key, { sourceIp: '::ffff:192.0.2.77' }))).ok).toBe(true);
    expect((await s.policy.authorize(outbound(key, { sourceIp: '2001:db8:1::5' }))).ok).toBe(true);
    expect(await s.policy.authorize(outbound(key, { sourceIp: '198.51.100.1' }))).toMatchObject({ ok: false, code: 'SOURCE_IP_NOT_ALLOWED' });
    expect(await s.policy.authorize(outbound(key, { sourceIp: '2001:db9::1' }))).toMatchObject({ ok: false, code: 'SOURCE_IP_NOT_ALLOWED' });
  });

  it('refuses a TLS-only key over a clear transport', async () => {
    const key = await keyWith({ requireTls: true });
    expect(await s.policy.authorize(outbound(key, { transport: 'udp' }))).toMatchObject({ ok: false, code: 'TLS_REQUIRED' });
    expect((await s.policy.authorize(outbound(key, { transport: 'tls' }))).ok).toBe(true);
  });

  it('keeps test keys away from live destinations and live keys away from the test sink', async () => {
    const test = await keyWith({ mode: 'test' });
    expect(await s.policy.authorize(outbound(test, { targetMode: 'live' }))).toMatchObject({ ok: false, code: 'MODE_MISMATCH' });
    expect((await s.policy.authorize(outbound(test, { targetMode: 'test' }))).ok).toBe(true);
    const live = await keyWith();
    expect(await s.policy.authorize(outbound(live, { targetMode: 'test' }))).toMatchObject({ ok: false, code: 'MODE_MISMATCH' });
  });

  it('gives every grant its key\'s mode: a test key that names no mode gets a test grant, never a live one', async () => {
    const test = await keyWith({ mode: 'test' });
    expect(await s.policy.authorize(outbound(test))).toMatchObject({ ok: true, grant: { mode: 'test' } });
    expect(await s.policy.authorize({ ...outbound(test), action: 'call.inbound', scope: 'calls:inbound' })).toMatchObject({ ok: true, grant: { mode: 'test' } });
    const live = await keyWith();
    expect(await s.policy.authorize(outbound(live))).toMatchObject({ ok: true, grant: { mode: 'live' } });
  });

  it('prices a call from the gateway\'s rate table; a price in the request is not read', async () => {
    const rates = parseRateTable('currency: USD\nrates:\n  - { prefix: "+1", description: NANP, outbound: 12 }\n');
    const engine = new PolicyEngine(s.counters, s.store, s.ledger, s.audit, { leaseTtlSec: 60, defaultRatePerMinute: 2, blockedPrefixes: [], rates }, s.log);
    const key = await keyWith({ budget: { amount: 10, period: 'month' } });
    // 10 units at 12/min cover 50 s, whatever price the request claims.
    const claimsFree = { ...outbound(key, { requestedMaxDurationSec: 600 }), ratePerMinute: 0 } as AuthorizeRequest;
    const v = await engine.authorize(claimsFree);
    expect(v).toMatchObject({ ok: true, grant: { maxDurationSec: 50, limitedBy: 'budget', ratePerMinute: 12, budget: { reserved: 10 } } });
    // The budget is now fully reserved: a second call claiming a price of 0 is still refused.
    expect(await engine.authorize(claimsFree)).toMatchObject({ ok: false, code: 'BUDGET_EXHAUSTED' });
  });

  it('geofences by the country of the E.164 destination', async () => {
    const key = await keyWith({ allowedCountries: ['GB'] });
    expect((await s.policy.authorize(outbound(key, { destination: '+442079460123' }))).ok).toBe(true);
    expect(await s.policy.authorize(outbound(key, { destination: '+14155550199' }))).toMatchObject({ ok: false, code: 'DESTINATION_NOT_ALLOWED' });
    expect(await s.policy.authorize(outbound(key, { destination: '442079460123' }))).toMatchObject({ ok: false, code: 'DESTINATION_INVALID' });
    expect(await s.policy.authorize(outbound(key, { destination: '+44' }))).toMatchObject({ ok: false, code: 'DESTINATION_INVALID' });
  });

  it('blocks global and per-key prefixes even in allowed countries', async () => {
    const key = await keyWith({ allowedCountries: ['US', 'GB'], blockedPrefixes: ['+4420794'] });
    expect(await s.policy.authorize(outbound(key, { destination: '+19005550123' }))).toMatchObject({ ok: false, code: 'DESTINATION_BLOCKED' });
    expect(await s.policy.authorize(outbound(key, { destination: '+442079460123' }))).toMatchObject({ ok: false, code: 'DESTINATION_BLOCKED' });
  });

  it('allows only caller IDs the key owns', async () => {
    const key = await keyWith({ callerIds: ['+14155550100'] });
    expect((await s.policy.authorize(outbound(key, { callerId: '+14155550100' }))).ok).toBe(true);
    expect(await s.policy.authorize(outbound(key, { callerId: '+14155550101' }))).toMatchObject({ ok: false, code: 'CALLER_ID_NOT_OWNED' });
  });

  it('holds a token to the destination it was minted for', async () => {
    const key = await keyWith({ scopes: ['calls:outbound', 'tokens:mint'] });
    const { claims } = await s.tokens.mint(key, { destination: '+14155550100', scopes: ['calls:outbound'] });
    const p = tokenPrincipal(key, claims);
    expect((await s.policy.authorize(outbound(key, { principal: p, destination: '+14155550100' }))).ok).toBe(true);
    expect(await s.policy.authorize(outbound(key, { principal: p, destination: '+14155550101' }))).toMatchObject({ ok: false, code: 'DESTINATION_NOT_ALLOWED' });
  });

  it('limits calls per second with a retry hint', async () => {
    const key = await keyWith({ callsPerSecond: 2, cpsBurst: 1 });
    expect((await s.policy.authorize(outbound(key))).ok).toBe(true);
    const v = await s.policy.authorize(outbound(key));
    expect(v).toMatchObject({ ok: false, code: 'RATE_LIMITED' });
    if (!v.ok) {
      expect(v.retryAfterMs).toBeGreaterThan(0);
      expect(v.retryAfterMs).toBeLessThanOrEqual(500);
    }
  });

  it('limits concurrent calls and frees the slot when a call completes', async () => {
    const key = await keyWith({ maxConcurrentCalls: 1 });
    const a = await s.policy.authorize(outbound(key));
    expect(await s.policy.authorize(outbound(key))).toMatchObject({ ok: false, code: 'CONCURRENCY_LIMITED' });
    if (!a.ok || !a.grant) throw new Error('expected a grant');
    await s.policy.complete(a.grant, 10);
    expect((await s.policy.authorize(outbound(key))).ok).toBe(true);
  });

  it('reserves max duration × rate; a budget that covers less admits the call for what it covers; below 10 s it refuses and frees the slot', async () => {
    const key = await keyWith({ maxConcurrentCalls: 1, budget: { amount: 100, period: 'month' } });
    const capped = await pricedAt(2).authorize(outbound(key, { requestedMaxDurationSec: 3001 }));
    if (!capped.ok || !capped.grant) throw new Error('expected a grant');
    expect(capped.grant).toMatchObject({ maxDurationSec: 3000, limitedBy: 'budget', budget: { reserved: 100 } });
    await s.policy.release(capped.grant);
    const full = await pricedAt(2).authorize(outbound(key, { requestedMaxDurationSec: 3000 }));
    if (!full.ok || !full.grant) throw new Error('expected a grant');
    expect(full.grant).toMatchObject({ maxDurationSec: 3000, limitedBy: 'max-duration', budget: { reserved: 100 } });
    await s.policy.release(full.grant);
    // 1 unit at 12/min covers 5 s: refused, and the concurrency slot taken before the budget check is free again.
    const poor = await keyWith({ maxConcurrentCalls: 1, budget: { amount: 1, period: 'month' } });
    expect(await pricedAt(12).authorize(outbound(poor, { requestedMaxDurationSec: 60 }))).toMatchObject({ ok: false, code: 'BUDGET_EXHAUSTED' });
    expect((await pricedAt(12).authorize(outbound(poor, { requestedMaxDurationSec: 5 }))).ok).toBe(true);
  });

  it('settles the real seconds, writes usage, and counts usage already in the store', async () => {
    const key = await keyWith({ budget: { amount: 10, period: 'day' } });
    const v = await pricedAt(6).authorize(outbound(key, { requestedMaxDurationSec: 60 }));
    if (!v.ok || !v.grant) throw new Error('expected a grant');
    expect(await s.policy.complete(v.grant, 20.2)).toEqual({ cost: 3, seconds: 21, status: 'landed' });
    // A repeat is harmless: one usage record (its id is the call's), the budget settled once.
    await s.policy.complete(v.grant, 20.2);
    const day = new Date().toISOString().slice(0, 10);
    expect(await s.store.sumUsage(key.id, `${day}T00:00:00.000Z`, `${day}T23:59:59.999Z`)).toEqual({ seconds: 21, amount: 3, calls: 1 });
    expect(await s.counters.budgetState(v.grant.budget!.account)).toEqual({ spent: 3, reserved: 0 });
    // 7 left: 71 s at 6/min would cost 8, so the call gets the 70 s that 7 covers.
    expect(await pricedAt(6).authorize(outbound(key, { requestedMaxDurationSec: 71 }))).toMatchObject({ ok: true, grant: { maxDurationSec: 70, limitedBy: 'budget' } });
  });

  it('completes the call record with the usage, and release() gives a grant back without usage', async () => {
    const key = await keyWith({ maxConcurrentCalls: 1, budget: { amount: 100, period: 'day' } });
    const v = await pricedAt(6).authorize(outbound(key, { requestedMaxDurationSec: 60 }));
    if (!v.ok || !v.grant) throw new Error('expected a grant');
    const now = new Date().toISOString();
    await s.store.insertCall({
      id: 'CA' + '1'.repeat(32), keyId: key.id, direction: 'outbound', from: '+14155550100', to: '+14155550199', target: 'echo', sipCallId: null,
      status: 'answered', startedAt: now, answeredAt: now, endedAt: null, endReason: null, endedBy: null, billableSeconds: 0, details: {},
    });
    await s.policy.complete(v.grant, 10, { id: 'CA' + '1'.repeat(32), patch: { status: 'ended', endedAt: now, endReason: 'remote-bye', endedBy: 'caller', billableSeconds: 10 } });
    expect(await s.store.getCall('CA' + '1'.repeat(32))).toMatchObject({ status: 'ended', endReason: 'remote-bye', billableSeconds: 10 });
    expect(await s.counters.countLeases(v.grant.leasePool)).toBe(0);

    const unused = await pricedAt(6).authorize(outbound(key, { requestedMaxDurationSec: 60 }));
    if (!unused.ok || !unused.grant) throw new Error('expected a grant');
    await s.policy.release(unused.grant);
    await s.policy.release(unused.grant); // idempotent
    expect(await s.counters.countLeases(unused.grant.leasePool)).toBe(0);
    expect(await s.counters.budgetState(unused.grant.budget!.account)).toEqual({ spent: 1, reserved: 0 });
    const day = new Date().toISOString().slice(0, 10);
    expect((await s.store.sumUsage(key.id, `${day}T00:00:00.000Z`, `${day}T23:59:59.999Z`)).calls).toBe(1);
  });

  it('seeds a budget from usage recorded before this process started', async () => {
    const key = await keyWith({ budget: { amount: 10, period: 'total' } });
    await s.store.insertUsage({ id: 'use_old', keyId: key.id, callId: 'old', direction: 'outbound', seconds: 300, amount: 9, createdAt: new Date().toISOString() });
    // 1 left of 10 after the old usage: 30 s at 2/min, not the 60 asked.
    expect(await pricedAt(2).authorize(outbound(key, { requestedMaxDurationSec: 60 }))).toMatchObject({ ok: true, grant: { maxDurationSec: 30, limitedBy: 'budget' } });
  });

  it('caps the duration at the key maximum and refuses a nonsensical one', async () => {
    const key = await keyWith({ maxCallDurationSec: 60 });
    const v = await s.policy.authorize(outbound(key, { requestedMaxDurationSec: 600 }));
    expect(v.ok && v.grant?.maxDurationSec).toBe(60);
    expect(await s.policy.authorize(outbound(key, { requestedMaxDurationSec: 0 }))).toMatchObject({ ok: false, code: 'DURATION_INVALID' });
    expect(await s.policy.authorize(outbound(key, { requestedMaxDurationSec: 1.5 }))).toMatchObject({ ok: false, code: 'DURATION_INVALID' });
  });

  it('audits every refusal with its code but no secret', async () => {
    const key = await keyWith({ allowedCountries: ['US'] });
    await s.policy.authorize(outbound(key, { destination: '+33142685300' }));
    const [entry] = await s.audit.list({ limit: 1, descending: true });
    expect(entry).toMatchObject({ action: 'policy.denied', target: key.id, details: { code: 'DESTINATION_NOT_ALLOWED', destination: '+33142685300' } });
  });
});
