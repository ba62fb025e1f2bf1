import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { api, gatewayEnv, rememberSecret, runCli, startGateway, type RunningGateway } from '../helpers/gateway-process.js';
import { clusterBackend } from '../helpers/backends.js';
import { RawUac } from '../helpers/raw-uac.js';
import { until } from '../../src/testing/wait.js';

/**
 * Two relays sharing PostgreSQL and Redis, as in a cluster: they must agree on keys, limits
 * and revocations. Each node has its own data dir, so nothing is shared through files.
 */
describe('a cluster of two relays on PostgreSQL and Redis', () => {
  const backend = clusterBackend();
  let a: RunningGateway;
  let b: RunningGateway;
  let admin: string;
  // Every node needs the same pepper, master key and token key: give them as secrets, as in production.
  const secretsDir = mkdtempSync(join(tmpdir(), 'tollgate-cluster-'));

  beforeAll(async () => {
    // No rate table: every call is priced at policy.defaultRatePerMinute (2 a minute, per second).
    const shared = { ...backend.env, TOLLGATE_SECRETS__AUTO_GENERATE: 'false', TOLLGATE_POLICY__RATE_TABLE_FILE: '' };
    // The first CLI run generates the secrets into secretsDir; the nodes then read them as files.
    const gen = await runCli(['keys', 'list'], gatewayEnv({ dataDir: secretsDir, env: backend.env }));
    expect(gen.code, gen.stderr).toBe(0);
    const files = {
      TOLLGATE_SECRETS__PEPPER_FILE: join(secretsDir, 'secrets', 'pepper'),
      TOLLGATE_SECRETS__MASTER_KEY_FILE: join(secretsDir, 'secrets', 'master-key'),
      TOLLGATE_SECRETS__TOKEN_SIGNING_KEY_FILE: join(secretsDir, 'secrets', 'token-signing-key.pem'),
    };
    [a, b] = await Promise.all([startGateway({ env: { ...shared, ...files } }), startGateway({ env: { ...shared, ...files } })]);
    const r = await runCli(['keys', 'create', '--name', 'root', '--role', 'admin', '--json'], a.env);
    expect(r.code, r.stderr).toBe(0);
    admin = JSON.parse(r.stdout).secret;
    rememberSecret(admin);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await backend.cleanup();
    rmSync(secretsDir, { recursive: true, force: true });
  });

  const createKey = async (policy: Record<string, unknown>) => {
    const r = await api(a, 'POST', '/v1/keys', { auth: admin, body: { name: 'k', ...policy } });
    expect(r.status, r.text).toBe(201);
    rememberSecret(r.body.secret);
    return { id: r.body.key.id as string, secret: r.body.secret as string };
  };

  it('a key created on one node works on the other', async () => {
    const k = await createKey({ scopes: ['usage:read'] });
    expect((await api(b, 'GET', '/v1/usage', { auth: k.secret })).status).toBe(200);
  });

  it('a revocation on one node is refused at once by the other, whose cache held the key', async () => {
    const k = await createKey({ scopes: ['usage:read'] });
    // Warm node B's cache (TTL 30 s): only the revocation bus can make it forget in time.
    expect((await api(b, 'GET', '/v1/usage', { auth: k.secret })).status).toBe(200);
    expect((await api(a, 'POST', `/v1/keys/${k.id}/revoke`, { auth: admin, body: {} })).status).toBe(200);
    // Well inside the 30 s the cache would have kept it, with room for a loaded machine.
    await until('node B to refuse the revoked key', async () => {
      const r = await api(b, 'GET', '/v1/usage', { auth: k.secret });
      return r.status === 401 && r.body.error.code === 'KEY_REVOKED';
    }, 10_000, 25);
  });

  it('the CPS limit is shared: a call on A counts against B', async () => {
    const k = await createKey({ scopes: ['calls:outbound'], callsPerSecond: 1, cpsBurst: 1, maxConcurrentCalls: 10 });
    const body = { direction: 'outbound', destination: '+14155550199' };
    expect((await api(a, 'POST', '/v1/authorizations', { auth: k.secret, body })).status).toBe(201);
    const onB = await api(b, 'POST', '/v1/authorizations', { auth: k.secret, body });
    expect([onB.status, onB.body.error.code]).toEqual([429, 'RATE_LIMITED']);
  });

  it('the concurrency limit is shared across nodes', async () => {
    const k = await createKey({ scopes: ['calls:outbound'], callsPerSecond: 100, cpsBurst: 100, maxConcurrentCalls: 2 });
    const body = { direction: 'outbound', destination: '+14155550199' };
    expect((await api(a, 'POST', '/v1/authorizations', { auth: k.secret, body })).status).toBe(201);
    const second = await api(b, 'POST', '/v1/authorizations', { auth: k.secret, body });
    expect(second.status).toBe(201);
    expect((await api(a, 'POST', '/v1/authorizations', { auth: k.secret, body })).body.error.code).toBe('CONCURRENCY_LIMITED');
    await api(b, 'POST', `/v1/authorizations/${second.body.callId}/complete`, { auth: k.secret, body: { billableSeconds: 1 } });
    expect((await api(a, 'POST', '/v1/authorizations', { auth: k.secret, body })).status).toBe(201);
  });

  it('a budget spent through one node is seen by the other', async () => {
    const k = await createKey({ scopes: ['calls:outbound'], callsPerSecond: 100, cpsBurst: 100, maxConcurrentCalls: 10, budget: { amount: 10, period: 'month' } });
    const call = (gw: RunningGateway, maxDurationSec: number) =>
      api(gw, 'POST', '/v1/authorizations', { auth: k.secret, body: { direction: 'outbound', destination: '+14155550199', maxDurationSec } });
    const g = await call(a, 180);
    expect(g.status).toBe(201);
    // 6 of 10 reserved through A: B's 150 s (5) is admitted for the 120 s (4) left, then nothing is.
    const capped = await call(b, 150);
    expect([capped.status, capped.body.maxDurationSec, capped.body.limitedBy]).toEqual([201, 120, 'budget']);
    expect((await call(b, 60)).body.error.code).toBe('BUDGET_EXHAUSTED');
  });

  it('a digest answer one node accepted is a replay on the other: the (nonce, nc) pair is claimed in Redis', async () => {
    const k = await createKey({ scopes: ['calls:inbound', 'usage:read'], callsPerSecond: 100, cpsBurst: 100, maxConcurrentCalls: 10 });
    const number = '+14155550177';
    expect((await api(a, 'POST', '/v1/numbers', { auth: admin, body: { number, target: 'echo', keyId: k.id } })).status).toBe(201);
    const creds = { username: k.id, password: k.secret };
    const toA = await RawUac.open({ transport: 'udp', server: a.sip.udp! });
    const toB = await RawUac.open({ transport: 'udp', server: b.sip.udp! });
    try {
      const call = toA.call({ dialled: number, credentials: creds });
      await call.connect();
      const captured = call.invite!.headers.get('Proxy-Authorization')!;
      expect((await call.bye()).status).toBe(200);
      // The same Request-URI (naming node A) and the captured header, sent to node B: both
      // nodes share the nonce key, so only the nonce-count memory in Redis can tell.
      const replay = toB.call({ dialled: number, requestUri: call.requestUri });
      await replay.sendInvite(['Proxy-Authorization', captured]);
      expect((await replay.finalResponse()).status).toBe(407);
      const metrics = (await api(b, 'GET', '/metrics')).text;
      expect(metrics).toMatch(/tollgate_sip_auth_failures_total\{reason="replay"\} 1/);
      // Node B takes that Request-URI with a fresh answer of its own.
      const fresh = toB.call({ dialled: number, requestUri: call.requestUri, credentials: creds });
      await fresh.connect();
      expect((await fresh.bye()).status).toBe(200);
    } finally {
      await toA.close();
      await toB.close();
    }
  });

  it('a single-use token used on one node is refused on the other', async () => {
    const k = await createKey({ scopes: ['tokens:mint', 'usage:read'] });
    const t = await api(a, 'POST', '/v1/tokens', { auth: k.secret, body: {} });
    rememberSecret(t.body.token);
    expect((await api(a, 'GET', '/v1/usage', { auth: t.body.token })).status).toBe(200);
    expect((await api(b, 'GET', '/v1/usage', { auth: t.body.token })).body.error.code).toBe('TOKEN_REPLAYED');
  });
});
