import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { api, rememberSecret, runCli, startGateway, type RunningGateway } from '../helpers/gateway-process.js';
import { clusterBackend, embeddedBackend, type Backend } from '../helpers/backends.js';
import { securityCases } from '../helpers/security-cases.js';
import { until } from '../../src/testing/wait.js';

const KEY_RE = /^tg_(live|test)_[0-9A-Za-z]{49}$/;

for (const backend of [embeddedBackend(), clusterBackend()] as Backend[]) {
  describe(`REST API on ${backend.name}`, () => {
    let gw: RunningGateway;
    let admin: string;

    beforeAll(async () => {
      // No rate table: every call is priced at policy.defaultRatePerMinute (2 a minute, per second).
      gw = await startGateway({ env: { ...backend.env, TOLLGATE_POLICY__RATE_TABLE_FILE: '' } });
      const r = await runCli(['keys', 'create', '--name', 'root', '--role', 'admin', '--json'], gw.env);
      expect(r.code, r.stderr).toBe(0);
      admin = JSON.parse(r.stdout).secret;
      rememberSecret(admin);
    });
    afterAll(async () => {
      expect(await gw?.stop()).toBe(0);
      await backend.cleanup();
    });

    const createKey = async (policy: Record<string, unknown> = {}): Promise<{ id: string; secret: string; key: any }> => {
      const r = await api(gw, 'POST', '/v1/keys', { auth: admin, body: { name: 'k', ...policy } });
      expect(r.status, r.text).toBe(201);
      rememberSecret(r.body.secret);
      return { id: r.body.key.id, secret: r.body.secret, key: r.body.key };
    };

    it('serves health, readiness, metrics and the OpenAPI document', async () => {
      expect((await api(gw, 'GET', '/healthz')).status).toBe(200);
      expect((await api(gw, 'GET', '/readyz')).body).toEqual({ status: 'ready' });
      const m = await api(gw, 'GET', '/metrics');
      expect(m.text).toContain('tollgate_key_verifications_total');
      const doc = await api(gw, 'GET', '/openapi.json');
      expect(doc.body.openapi).toBe('3.1.0');
      expect(Object.keys(doc.body.paths)).toEqual(expect.arrayContaining(['/v1/keys', '/v1/keys/{id}/rotate', '/v1/tokens', '/v1/audit', '/v1/usage']));
      expect(doc.body.paths['/v1/keys'].post.requestBody.content['application/json'].schema.properties).toHaveProperty('allowedCidrs');
    });

    it('creates a key whose secret is shown once and never again', async () => {
      const { id, secret, key } = await createKey({ mode: 'test', scopes: ['calls:outbound'], allowedCountries: ['gb'], budget: { amount: 500, period: 'day' } });
      expect(secret).toMatch(KEY_RE);
      expect(secret.startsWith('tg_test_')).toBe(true);
      expect(key).toMatchObject({ mode: 'test', status: 'active', scopes: ['calls:outbound'], allowedCountries: ['GB'], budget: { amount: 500, period: 'day', currency: 'USD' } });
      const got = await api(gw, 'GET', `/v1/keys/${id}`, { auth: admin });
      expect(got.status).toBe(200);
      expect(got.text).not.toContain(secret);
      expect(got.text).not.toContain(secret.slice(8, 30));
      const listed = await api(gw, 'GET', '/v1/keys?limit=1000', { auth: admin });
      expect(listed.body.keys.map((k: any) => k.id)).toContain(id);
      expect(listed.text).not.toContain(secret);
    });

    it('rejects an invalid body with 400 naming the field', async () => {
      const bad = await api(gw, 'POST', '/v1/keys', { auth: admin, body: { name: 'x', allowedCidrs: ['10.0.0.0/33'] } });
      expect(bad.status).toBe(400);
      expect(bad.body.error).toMatchObject({ code: 'VALIDATION_FAILED', details: { field: 'allowedCidrs.0' } });
      const unknownField = await api(gw, 'POST', '/v1/keys', { auth: admin, body: { name: 'x', colour: 'red' } });
      expect(unknownField.status).toBe(400);
      const notJson = await api(gw, 'POST', '/v1/keys', { auth: admin, body: '{"name":', headers: { 'content-type': 'application/json' } });
      expect(notJson.status).toBe(400);
      expect(notJson.body.error.code).toBe('VALIDATION_FAILED');
      const huge = await api(gw, 'POST', '/v1/keys', { auth: admin, body: { name: 'x'.repeat(70_000) } });
      expect(huge.status).toBe(413);
      const callerId = await api(gw, 'PATCH', '/v1/keys/key_nope', { auth: admin, body: { callerIds: ['12345'] } });
      expect(callerId.status).toBe(400);
      expect(callerId.body.error.details.field).toBe('callerIds.0');
    });

    it('answers 404 for an unknown key and an unknown route', async () => {
      expect((await api(gw, 'GET', '/v1/keys/key_doesnotexist', { auth: admin })).status).toBe(404);
      expect((await api(gw, 'GET', '/v1/nothing-here', { auth: admin })).body.error.code).toBe('NOT_FOUND');
    });

    it('refuses credentials in the query string', async () => {
      const r = await api(gw, 'GET', `/v1/keys?api_key=${encodeURIComponent(admin)}`, { auth: admin });
      expect(r.status).toBe(400);
      expect(r.text).not.toContain(admin);
    });

    it('refuses a key without the needed scope with 403', async () => {
      const dev = await createKey({ role: 'developer' });
      const r = await api(gw, 'GET', '/v1/keys', { auth: dev.secret });
      expect(r.status).toBe(403);
      expect(r.body.error.code).toBe('SCOPE_NOT_GRANTED');
      // ...but a key may read itself.
      expect((await api(gw, 'GET', `/v1/keys/${dev.id}`, { auth: dev.secret })).status).toBe(200);
      expect((await api(gw, 'GET', `/v1/keys/${(await createKey()).id}`, { auth: dev.secret })).status).toBe(403);
    });

    it('updates policy fields and leaves the others', async () => {
      const k = await createKey({ callsPerSecond: 3 });
      const r = await api(gw, 'PATCH', `/v1/keys/${k.id}`, { auth: admin, body: { maxConcurrentCalls: 9, allowedCidrs: ['2001:db8::/32'] } });
      expect(r.status).toBe(200);
      expect(r.body.key).toMatchObject({ maxConcurrentCalls: 9, allowedCidrs: ['2001:db8::/32'], callsPerSecond: 3 });
    });

    it('rotation keeps the old secret working for the grace period, then refuses it', async () => {
      const k = await createKey({ scopes: ['usage:read'] });
      const rot = await api(gw, 'POST', `/v1/keys/${k.id}/rotate`, { auth: admin, body: { graceSec: 4 } });
      expect(rot.status).toBe(201);
      rememberSecret(rot.body.secret);
      expect(rot.body.secret).not.toBe(k.secret);
      expect((await api(gw, 'GET', '/v1/usage', { auth: k.secret })).status).toBe(200);
      expect((await api(gw, 'GET', '/v1/usage', { auth: rot.body.secret })).status).toBe(200);
      const old = await until('the old secret to be refused', async () => {
        const r = await api(gw, 'GET', '/v1/usage', { auth: k.secret });
        return r.status !== 200 && r;
      }, 20_000, 250);
      // Not before the grace period was over.
      expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(rot.body.oldSecretsExpireAt));
      expect(old.status).toBe(401);
      expect(old.body.error.code).toBe('KEY_EXPIRED');
      expect((await api(gw, 'GET', '/v1/usage', { auth: rot.body.secret })).status).toBe(200);
    });

    it('rotation with no grace stops the old secret at once', async () => {
      const k = await createKey({ scopes: ['usage:read'] });
      expect((await api(gw, 'GET', '/v1/usage', { auth: k.secret })).status).toBe(200);
      const rot = await api(gw, 'POST', `/v1/keys/${k.id}/rotate`, { auth: admin, body: { graceSec: 0 } });
      rememberSecret(rot.body.secret);
      expect((await api(gw, 'GET', '/v1/usage', { auth: k.secret })).status).toBe(401);
      expect((await api(gw, 'GET', '/v1/usage', { auth: rot.body.secret })).status).toBe(200);
    });

    it('a key may revoke itself, and a revoked key cannot be rotated or updated', async () => {
      const k = await createKey();
      expect((await api(gw, 'POST', `/v1/keys/${k.id}/revoke`, { auth: k.secret, body: { reason: 'leaked in a log' } })).status).toBe(200);
      expect((await api(gw, 'POST', `/v1/keys/${k.id}/rotate`, { auth: admin, body: {} })).status).toBe(409);
      expect((await api(gw, 'PATCH', `/v1/keys/${k.id}`, { auth: admin, body: { name: 'again' } })).status).toBe(409);
    });

    describe('short-lived tokens', () => {
      it('are minted with a subset of scopes, work once, and are refused on replay', async () => {
        const k = await createKey({ scopes: ['tokens:mint', 'usage:read', 'calls:outbound'] });
        const m = await api(gw, 'POST', '/v1/tokens', { auth: k.secret, body: { scopes: ['usage:read'], ttlSec: 120 } });
        expect(m.status, m.text).toBe(201);
        rememberSecret(m.body.token);
        expect(m.body).toMatchObject({ keyId: k.id, scopes: ['usage:read'] });
        expect((await api(gw, 'GET', '/v1/usage', { auth: m.body.token })).status).toBe(200);
        const replay = await api(gw, 'GET', '/v1/usage', { auth: m.body.token });
        expect(replay.status).toBe(401);
        expect(replay.body.error.code).toBe('TOKEN_REPLAYED');
      });

      it('cannot carry a scope the parent lacks, mint tokens, or live longer than an hour', async () => {
        const k = await createKey({ scopes: ['tokens:mint', 'usage:read'] });
        expect((await api(gw, 'POST', '/v1/tokens', { auth: k.secret, body: { scopes: ['calls:outbound'] } })).status).toBe(403);
        expect((await api(gw, 'POST', '/v1/tokens', { auth: k.secret, body: { scopes: ['tokens:mint'] } })).status).toBe(403);
        const long = await api(gw, 'POST', '/v1/tokens', { auth: k.secret, body: { ttlSec: 3601 } });
        expect(long.status).toBe(400);
        expect(long.body.error.details.field).toBe('ttlSec');
        const noMint = await createKey({ scopes: ['usage:read'] });
        expect((await api(gw, 'POST', '/v1/tokens', { auth: noMint.secret, body: {} })).status).toBe(403);
      });

      it('is dead as soon as its parent key is revoked', async () => {
        const k = await createKey({ scopes: ['tokens:mint', 'usage:read'] });
        const m = await api(gw, 'POST', '/v1/tokens', { auth: k.secret, body: { scopes: ['usage:read'] } });
        rememberSecret(m.body.token);
        await api(gw, 'POST', `/v1/keys/${k.id}/revoke`, { auth: admin, body: {} });
        const r = await api(gw, 'GET', '/v1/usage', { auth: m.body.token });
        expect(r.status).toBe(401);
        expect(r.body.error.code).toBe('KEY_REVOKED');
      });

      it('expires after its TTL', async () => {
        const k = await createKey({ scopes: ['tokens:mint', 'usage:read'] });
        const m = await api(gw, 'POST', '/v1/tokens', { auth: k.secret, body: { ttlSec: 1 } });
        rememberSecret(m.body.token);
        // Tokens are single-use, so it is tried once: after the expiry the mint answered with.
        await new Promise((res) => setTimeout(res, Math.max(0, Date.parse(m.body.expiresAt) - Date.now()) + 100));
        const r = await api(gw, 'GET', '/v1/usage', { auth: m.body.token });
        expect(r.status).toBe(401);
        expect(r.body.error.code).toBe('TOKEN_INVALID');
      });

      it('a tampered token is refused', async () => {
        const k = await createKey({ scopes: ['tokens:mint', 'usage:read'] });
        const m = await api(gw, 'POST', '/v1/tokens', { auth: k.secret, body: {} });
        rememberSecret(m.body.token);
        const [h, p, sig] = (m.body.token as string).split('.');
        const payload = JSON.parse(Buffer.from(p!, 'base64url').toString());
        payload.scope = 'usage:read calls:outbound keys:admin';
        const forged = `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${sig}`;
        rememberSecret(forged);
        expect((await api(gw, 'GET', '/v1/keys', { auth: forged })).body.error.code).toBe('TOKEN_INVALID');
      });
    });

    describe('the policy engine through /v1/authorizations', () => {
      const authorize = (secret: string, body: Record<string, unknown>) => api(gw, 'POST', '/v1/authorizations', { auth: secret, body });

      it('refuses destinations outside the allowed countries, blocked prefixes and unowned caller IDs', async () => {
        const k = await createKey({ scopes: ['calls:outbound'], allowedCountries: ['US'], blockedPrefixes: ['+1202555'], callerIds: ['+14155550100'], callsPerSecond: 100, cpsBurst: 100 });
        const fr = await authorize(k.secret, { direction: 'outbound', destination: '+33142685300' });
        expect([fr.status, fr.body.error.code]).toEqual([403, 'DESTINATION_NOT_ALLOWED']);
        const premium = await authorize(k.secret, { direction: 'outbound', destination: '+19005550123' });
        expect([premium.status, premium.body.error.code]).toEqual([403, 'DESTINATION_BLOCKED']);
        const keyBlocked = await authorize(k.secret, { direction: 'outbound', destination: '+12025550111' });
        expect(keyBlocked.body.error.code).toBe('DESTINATION_BLOCKED');
        const invalid = await authorize(k.secret, { direction: 'outbound', destination: '+1' });
        expect([invalid.status, invalid.body.error.code]).toEqual([400, 'DESTINATION_INVALID']);
        const spoof = await authorize(k.secret, { direction: 'outbound', destination: '+14155550199', callerId: '+14155550111' });
        expect(spoof.body.error.code).toBe('CALLER_ID_NOT_OWNED');
        const ok = await authorize(k.secret, { direction: 'outbound', destination: '+14155550199', callerId: '+14155550100' });
        expect(ok.status, ok.text).toBe(201);
      });

      it('a test key cannot reach a live destination', async () => {
        const k = await createKey({ mode: 'test', scopes: ['calls:outbound'] });
        const r = await authorize(k.secret, { direction: 'outbound', destination: '+14155550199', mode: 'live' });
        expect([r.status, r.body.error.code]).toEqual([403, 'MODE_MISMATCH']);
      });

      it('refuses calls above the CPS limit with 429 and Retry-After', async () => {
        const k = await createKey({ scopes: ['calls:outbound'], callsPerSecond: 1, cpsBurst: 1, maxConcurrentCalls: 10 });
        expect((await authorize(k.secret, { direction: 'outbound', destination: '+14155550199' })).status).toBe(201);
        const r = await authorize(k.secret, { direction: 'outbound', destination: '+14155550199' });
        expect(r.status).toBe(429);
        expect(r.body.error.code).toBe('RATE_LIMITED');
        expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      });

      it('refuses calls above the concurrency limit until one completes', async () => {
        const k = await createKey({ scopes: ['calls:outbound'], callsPerSecond: 100, cpsBurst: 100, maxConcurrentCalls: 1 });
        const first = await authorize(k.secret, { direction: 'outbound', destination: '+14155550199' });
        expect(first.status).toBe(201);
        const second = await authorize(k.secret, { direction: 'outbound', destination: '+14155550199' });
        expect([second.status, second.body.error.code]).toEqual([429, 'CONCURRENCY_LIMITED']);
        const done = await api(gw, 'POST', `/v1/authorizations/${first.body.callId}/complete`, { auth: k.secret, body: { billableSeconds: 5 } });
        expect(done.status).toBe(200);
        expect((await authorize(k.secret, { direction: 'outbound', destination: '+14155550199' })).status).toBe(201);
      });

      it('reserves the budget for the maximum duration and settles the real seconds', async () => {
        const k = await createKey({ scopes: ['calls:outbound', 'usage:read'], callsPerSecond: 100, cpsBurst: 100, maxConcurrentCalls: 5, budget: { amount: 10, period: 'month' } });
        // 600 s at 2/min would cost 20: the call is admitted for the 300 s the budget of 10 covers.
        const g = await authorize(k.secret, { direction: 'outbound', destination: '+14155550199', maxDurationSec: 600 });
        expect(g.status, g.text).toBe(201);
        expect(g.body).toMatchObject({ maxDurationSec: 300, limitedBy: 'budget', reserved: 10 });
        // The whole budget is reserved: a second call cannot start.
        expect((await authorize(k.secret, { direction: 'outbound', destination: '+14155550199', maxDurationSec: 60 })).status).toBe(402);
        const done = await api(gw, 'POST', `/v1/authorizations/${g.body.callId}/complete`, { auth: k.secret, body: { billableSeconds: 31 } });
        expect(done.body).toMatchObject({ billableSeconds: 31, cost: 2 });
        // 8 left: 240 s at 2/min fits whole; 241 s is admitted for 240.
        const fits = await authorize(k.secret, { direction: 'outbound', destination: '+14155550199', maxDurationSec: 240 });
        expect(fits.body).toMatchObject({ maxDurationSec: 240, limitedBy: 'max-duration', reserved: 8 });
        const usage = await api(gw, 'GET', '/v1/usage', { auth: k.secret });
        expect(usage.body.totals).toEqual({ seconds: 31, amount: 2, calls: 1 });
        const csv = await api(gw, 'GET', '/v1/usage?format=csv', { auth: k.secret });
        expect(csv.headers.get('content-type')).toContain('text/csv');
        expect(csv.text.split('\r\n')[0]).toBe('id,key_id,call_id,direction,seconds,amount,created_at');
        expect(csv.text).toContain(`${k.id},${g.body.callId},outbound,31,2,`);
      });

      it('caps the call at the key\'s maximum duration', async () => {
        const k = await createKey({ scopes: ['calls:inbound'], maxCallDurationSec: 120, callsPerSecond: 10, cpsBurst: 10 });
        const r = await authorize(k.secret, { direction: 'inbound', maxDurationSec: 3600 });
        expect(r.body.maxDurationSec).toBe(120);
        expect((await authorize(k.secret, { direction: 'inbound', maxDurationSec: 0 })).body.error.code).toBe('DURATION_INVALID');
      });
    });

    it('audits key actions and policy denials in a chain that verifies', async () => {
      const k = await createKey({ scopes: ['calls:outbound'], allowedCountries: ['US'] });
      await api(gw, 'POST', '/v1/authorizations', { auth: k.secret, body: { direction: 'outbound', destination: '+33142685300' } });
      await api(gw, 'POST', `/v1/keys/${k.id}/revoke`, { auth: admin, body: { reason: 'test' } });
      const log = await api(gw, 'GET', `/v1/audit?target=${k.id}&order=asc`, { auth: admin });
      expect(log.body.entries.map((e: any) => e.action)).toEqual(['key.created', 'policy.denied', 'key.revoked']);
      expect(log.body.entries[1].details).toMatchObject({ code: 'DESTINATION_NOT_ALLOWED', destination: '+33142685300' });
      expect(log.text).not.toContain(k.secret);
      const v = await api(gw, 'GET', '/v1/audit/verify', { auth: admin });
      expect(v.body).toMatchObject({ ok: true });
      expect(v.body.entries).toBeGreaterThanOrEqual(3);
      const cli = await runCli(['audit', 'verify', '--json'], gw.env);
      expect(cli.code, cli.stderr).toBe(0);
      expect(JSON.parse(cli.stdout).ok).toBe(true);
    });

    describe('shared security cases', () => {
      securityCases({
        name: 'REST',
        attempt: async (credential) => {
          const r = await api(gw, 'GET', '/v1/usage', credential === null ? {} : { auth: credential });
          return { admitted: r.status === 200, code: r.body?.error?.code ?? null, status: r.status, raw: r.text };
        },
        freshKey: async (policy = {}) => createKey({ scopes: ['usage:read', 'calls:outbound'], callsPerSecond: 1, cpsBurst: 1, ...policy }),
        revoke: async (id) => void (await api(gw, 'POST', `/v1/keys/${id}/revoke`, { auth: admin, body: {} })),
        expire: async (id) => void (await api(gw, 'PATCH', `/v1/keys/${id}`, { auth: admin, body: { expiresAt: new Date(Date.now() - 1000).toISOString() } })),
        expect: { unauthenticated: 401, revoked: 401, expired: 401, forbiddenSource: 403, overLimit: 429 },
        overLimit: async (k) => {
          const body = { direction: 'outbound', destination: '+14155550199' };
          await api(gw, 'POST', '/v1/authorizations', { auth: k.secret, body });
          const r = await api(gw, 'POST', '/v1/authorizations', { auth: k.secret, body });
          return { admitted: r.status === 201, code: r.body?.error?.code ?? null, status: r.status, raw: r.text };
        },
      });
    });
  });
}
