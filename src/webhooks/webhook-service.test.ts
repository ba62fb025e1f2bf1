import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { AuditLog, deriveAuditKey } from '../audit/index.js';
import { accountSidFor, signingSecretFor } from '../keys/key-identity.js';
import { verifyTollgateSignature } from '../keys/request-signature.js';
import { KeyService, type KeyServiceOptions } from '../keys/key-service.js';
import { createLogger } from '../observability/logger.js';
import { LocalRevocationBus } from '../policy/memory-counters.js';
import { SqliteStore } from '../store/sqlite-store.js';
import { until } from '../testing/wait.js';
import type { Clock } from '../util/time.js';
import type { WebhookOutcome, WebhookRequest } from './webhook-sender.js';
import { WebhookService, type WebhookServiceDeps, type WebhookServiceOptions } from './webhook-service.js';
import { EgressGuard, type Resolver } from '../net/index.js';

const T0 = Date.parse('2026-06-01T12:00:00.000Z');
const dir = mkdtempSync(join(tmpdir(), 'tollgate-webhooks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Names in the tests resolve here without DNS: *.example.com to a public address, the rest nowhere. */
const PUBLIC = '93.184.215.14';
const resolver: Resolver = (name) => (name.endsWith('.example.com') ? Promise.resolve([{ address: PUBLIC, family: 4 }]) : Promise.reject(Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' })));
/** The receivers here listen on 127.0.0.1, which a key's endpoint may reach only through egress.allow. */
const EGRESS = new EgressGuard({ allow: ['127.0.0.1/32'], resolver });

const OPTIONS = { maxAttempts: 4, initialBackoffMs: 1000, maxBackoffMs: 600_000, timeoutMs: 2000, concurrency: 4, allowHttp: true } as const;

interface Setup {
  store: SqliteStore;
  keys: KeyService;
  webhooks: WebhookService;
  masterKey: Buffer;
  logs: string[];
  close(): Promise<void>;
}

const opened: Setup[] = [];
afterEach(async () => {
  while (opened.length) await opened.pop()!.close();
});

/** A store, a key service that tells the webhook service about key changes, and the service. */
async function setup(o: {
  path?: string;
  masterKey?: Buffer;
  clock?: Clock;
  options?: Partial<WebhookServiceOptions>;
  deps?: WebhookServiceDeps;
  keyHook?: KeyServiceOptions['onEvent'];
} = {}): Promise<Setup> {
  const logs: string[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (l: string) => void logs.push(l) } });
  const store = new SqliteStore(o.path ?? ':memory:');
  await store.migrate();
  const masterKey = o.masterKey ?? randomBytes(32);
  const clock = o.clock ?? Date.now;
  const audit = new AuditLog(store, deriveAuditKey(masterKey), log, clock);
  const webhooks = new WebhookService(store, audit, { ...OPTIONS, masterKey, ...o.options }, log, { clock, egress: EGRESS, ...o.deps });
  const keys = new KeyService(
    store,
    audit,
    new LocalRevocationBus(),
    {
      pepper: randomBytes(32), masterKey, realm: 'tollgate', rotationGraceSec: 60, cache: { maxEntries: 100, ttlMs: 1000 },
      defaults: { scopes: ['calls:inbound'], callsPerSecond: 1, cpsBurst: 1, maxConcurrentCalls: 1, maxCallDurationSec: 60, allowedCountries: ['US'] },
      onEvent: o.keyHook ?? ((type, keyId, data) => webhooks.emit(type, keyId, data)),
    },
    log,
    clock,
  );
  const s: Setup = {
    store, keys, webhooks, masterKey, logs,
    async close() {
      await webhooks.stop();
      keys.close();
      await store.close();
    },
  };
  opened.push(s);
  return s;
}

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  url: string;
}

/** A local receiver: each request is answered by the next handler (the last one repeats). */
async function receiver(...handlers: ((req: IncomingMessage, res: ServerResponse) => void)[]): Promise<{ url: string; got: Received[]; close(): Promise<void> }> {
  const got: Received[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      got.push({ headers: req.headers, body, url: req.url ?? '' });
      const h = handlers[Math.min(got.length - 1, handlers.length - 1)]!;
      h(req, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    got,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
const answer = (status: number, headers: Record<string, string> = {}) => (_req: IncomingMessage, res: ServerResponse) => res.writeHead(status, headers).end();

describe('WebhookService', () => {
  it('queues one durable delivery per subscribed endpoint: the key\'s own and the account-wide ones', async () => {
    const s = await setup();
    const { key: a } = await s.keys.create({ name: 'a' }, 'test');
    const { key: b } = await s.keys.create({ name: 'b' }, 'test');
    const own = await s.webhooks.addEndpoint({ url: 'https://a.example.com/h', events: ['call.ended'], keyId: a.id }, 'test');
    await s.webhooks.addEndpoint({ url: 'https://a.example.com/other', events: ['call.started'], keyId: a.id }, 'test');
    await s.webhooks.addEndpoint({ url: 'https://b.example.com/h', events: ['*'], keyId: b.id }, 'test');
    const account = await s.webhooks.addEndpoint({ url: 'https://ops.example.com/h', events: ['*'], keyId: null }, 'test');

    await s.webhooks.emit('call.ended', a.id, { callSid: 'CA' + '0'.repeat(32), billableSeconds: 12 });
    const queued = await s.store.listDeliveries({ limit: 10 });
    expect(queued.map((d) => [d.endpointId, d.keyId, d.status, d.attempts]).sort()).toEqual([
      [account.id, null, 'pending', 0],
      [own.id, a.id, 'pending', 0],
    ].sort());
    expect(queued[0]!.payload).toBe(queued[1]!.payload);
    const event = JSON.parse(queued[0]!.payload);
    expect(Object.keys(event)).toEqual(['id', 'type', 'createdAt', 'accountSid', 'keyId', 'data']);
    expect(event).toMatchObject({ type: 'call.ended', keyId: a.id, accountSid: accountSidFor(a.id), data: { billableSeconds: 12 } });
    expect(event.id).toMatch(/^evt_/);
    expect(queued.every((d) => d.eventId === event.id && d.id.startsWith('whd_'))).toBe(true);

    // An account event (no key) reaches only account-wide endpoints, and carries no accountSid.
    await s.webhooks.emit('limit.exceeded', null, { limit: 'cps' });
    const accountOnly = await s.store.listDeliveries({ limit: 10, status: 'pending' });
    const limitEvent = accountOnly.filter((d) => d.eventType === 'limit.exceeded');
    expect(limitEvent.map((d) => d.endpointId)).toEqual([account.id]);
    expect(JSON.parse(limitEvent[0]!.payload)).not.toHaveProperty('accountSid');
    // No subscriber: nothing written.
    await s.webhooks.emit('identity.failed', b.id, {});
    expect((await s.store.listDeliveries({ limit: 10, endpointId: own.id })).length).toBe(1);
  });

  it('POSTs the exact stored body, signed with the key\'s signing secret over that body', async () => {
    const r = await receiver(answer(204));
    try {
      const s = await setup();
      const { key } = await s.keys.create({ name: 'a' }, 'test');
      const e = await s.webhooks.addEndpoint({ url: `${r.url}/hooks/tollgate?token=receiver-token-123`, events: ['key.rotated'], keyId: key.id }, 'test');
      await s.keys.rotate(key.id, 0, 'test');
      expect(await s.webhooks.deliverNow()).toBe(1);
      const [d] = await s.store.listDeliveries({ limit: 10, endpointId: e.id });
      expect(d).toMatchObject({ status: 'delivered', attempts: 1, lastStatus: 204, lastError: null, nextAttemptAt: null });
      expect(d!.deliveredAt).not.toBeNull();

      expect(r.got.length).toBe(1);
      const got = r.got[0]!;
      expect(got.url).toBe('/hooks/tollgate?token=receiver-token-123');
      expect(got.body).toBe(d!.payload);
      expect(got.headers).toMatchObject({ 'content-type': 'application/json', 'user-agent': 'tollgate', 'tollgate-event': 'key.rotated', 'tollgate-delivery': d!.id });
      const header = got.headers['tollgate-signature'] as string;
      expect(header).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
      const secret = signingSecretFor(s.masterKey, key.id);
      expect(verifyTollgateSignature(secret, header, got.body)).toBe(true);
      // Over the exact bytes: a re-serialised body, another key's secret or the account secret fail.
      expect(verifyTollgateSignature(secret, header, JSON.stringify(JSON.parse(got.body), null, 1))).toBe(false);
      expect(verifyTollgateSignature(signingSecretFor(s.masterKey, 'account'), header, got.body)).toBe(false);
      expect(JSON.parse(got.body)).toMatchObject({ type: 'key.rotated', keyId: key.id, data: { keyId: key.id, graceSec: 0 } });

      // Logs name the endpoint by scheme and host: no path, no query, no body.
      const logText = s.logs.join('');
      expect(logText).toContain('webhook delivered');
      expect(logText).not.toContain('receiver-token-123');
      expect(logText).not.toContain('/hooks/tollgate');
      expect(logText).not.toContain(d!.payload);
      expect(logText).not.toContain(secret);
    } finally {
      await r.close();
    }
  });

  it('signs account-wide endpoints\' deliveries with the account signing secret', async () => {
    const r = await receiver(answer(200));
    try {
      const s = await setup();
      const { key } = await s.keys.create({ name: 'a' }, 'test');
      await s.webhooks.addEndpoint({ url: r.url, events: ['key.revoked'], keyId: null }, 'test');
      await s.keys.revoke(key.id, 'leaked', 'test');
      await s.webhooks.deliverNow();
      const got = r.got[0]!;
      expect(verifyTollgateSignature(s.webhooks.signingSecret(null), got.headers['tollgate-signature'] as string, got.body)).toBe(true);
      expect(s.webhooks.signingSecret(null)).toBe(signingSecretFor(s.masterKey, 'account'));
      expect(JSON.parse(got.body)).toMatchObject({ type: 'key.revoked', keyId: key.id, data: { keyId: key.id, reason: 'leaked' } });
    } finally {
      await r.close();
    }
  });

  it('retries with exponential backoff and jitter, then settles as failed after maxAttempts', async () => {
    let now = T0;
    const sent: WebhookRequest[] = [];
    const outcomes: WebhookOutcome[] = [
      { ok: false, status: 500, error: 'HTTP 500' },
      { ok: false, status: null, error: 'timeout after 2000 ms' },
      { ok: false, status: null, error: 'connection failed' },
      { ok: false, status: 503, error: 'HTTP 503' },
    ];
    const randoms = [0, 0.999_999, 0.5];
    const s = await setup({
      clock: () => now,
      deps: { random: () => randoms.shift() ?? 0.5, send: (req) => (sent.push(req), Promise.resolve(outcomes.shift()!)) },
    });
    const { key } = await s.keys.create({ name: 'a' }, 'test');
    await s.webhooks.addEndpoint({ url: 'https://hooks.example.com/h', events: ['*'], keyId: key.id }, 'test');
    await s.webhooks.emit('call.started', key.id, {});
    const get = async () => (await s.store.listDeliveries({ keyId: key.id, limit: 1 }))[0]!;

    // Attempt 1 fails: next in 1000 ms × 0.8 (random 0).
    expect(await s.webhooks.deliverNow()).toBe(1);
    expect(await get()).toMatchObject({ status: 'pending', attempts: 1, lastStatus: 500, lastError: 'HTTP 500', nextAttemptAt: new Date(T0 + 800).toISOString() });
    // Not due yet: nothing sent.
    now = T0 + 799;
    expect(await s.webhooks.deliverNow()).toBe(0);
    // Attempt 2 fails: next in 2000 ms × 1.2.
    now = T0 + 800;
    expect(await s.webhooks.deliverNow()).toBe(1);
    expect(await get()).toMatchObject({ attempts: 2, lastStatus: null, lastError: 'timeout after 2000 ms', nextAttemptAt: new Date(T0 + 800 + 2400).toISOString() });
    // Attempt 3 fails: next in 4000 ms exactly (random 0.5).
    now = T0 + 3200;
    expect(await s.webhooks.deliverNow()).toBe(1);
    expect(await get()).toMatchObject({ attempts: 3, lastError: 'connection failed', nextAttemptAt: new Date(T0 + 7200).toISOString() });
    // Attempt 4 = maxAttempts: failed for good.
    now = T0 + 7200;
    expect(await s.webhooks.deliverNow()).toBe(1);
    expect(await get()).toMatchObject({ status: 'failed', attempts: 4, lastStatus: 503, lastError: 'HTTP 503', nextAttemptAt: null, deliveredAt: null });
    now = T0 + 3_600_000;
    expect(await s.webhooks.deliverNow()).toBe(0);

    // Every attempt carried the same body and delivery id, each with a fresh signature time.
    expect(new Set(sent.map((r) => r.body)).size).toBe(1);
    expect(new Set(sent.map((r) => r.headers['tollgate-delivery'])).size).toBe(1);
    expect(sent.map((r) => /t=(\d+)/.exec(r.headers['tollgate-signature']!)![1])).toEqual(
      [T0, T0 + 800, T0 + 3200, T0 + 7200].map((t) => String(Math.floor(t / 1000))),
    );
    expect(sent.every((r) => r.timeoutMs === OPTIONS.timeoutMs)).toBe(true);
  });

  it('a manual retry sends a failed delivery once more; a pending one cannot be retried', async () => {
    let now = T0;
    const outcomes: WebhookOutcome[] = [{ ok: false, status: 500, error: 'HTTP 500' }, { ok: true, status: 202 }];
    const s = await setup({ clock: () => now, options: { maxAttempts: 1 }, deps: { send: () => Promise.resolve(outcomes.shift()!) } });
    const { key } = await s.keys.create({ name: 'a' }, 'test');
    await s.webhooks.addEndpoint({ url: 'https://hooks.example.com/h', events: ['*'], keyId: key.id }, 'test');
    await s.webhooks.emit('call.answered', key.id, {});
    await s.webhooks.deliverNow();
    const [failed] = await s.store.listDeliveries({ keyId: key.id, limit: 1 });
    expect(failed).toMatchObject({ status: 'failed', attempts: 1 });
    now += 5000;
    const queued = await s.webhooks.retry(failed!.id, 'test');
    expect(queued).toMatchObject({ status: 'pending', attempts: 1, nextAttemptAt: new Date(now).toISOString() });
    await expect(s.webhooks.retry(failed!.id, 'test')).rejects.toMatchObject({ code: 'CONFLICT' });
    await expect(s.webhooks.retry('whd_missing', 'test')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await s.webhooks.deliverNow();
    expect(await s.store.getDelivery(failed!.id)).toMatchObject({ status: 'delivered', attempts: 2, lastStatus: 202, lastError: null });
    const audit = await s.store.listAudit({ limit: 100, target: key.id });
    expect(audit.map((e) => e.action)).toContain('webhook.retried');
  });

  it('does not follow redirects, and bounds an attempt by timeoutMs', async () => {
    const elsewhere = await receiver(answer(204));
    const r = await receiver(answer(307, { location: `${elsewhere.url}/stolen` }), () => {
      // Never answers: the attempt must time out.
    });
    try {
      let now = T0;
      const s = await setup({ clock: () => now, options: { timeoutMs: 300 } });
      const { key } = await s.keys.create({ name: 'a' }, 'test');
      await s.webhooks.addEndpoint({ url: r.url, events: ['*'], keyId: key.id }, 'test');
      await s.webhooks.emit('call.ended', key.id, {});
      await s.webhooks.deliverNow();
      const get = async () => (await s.store.listDeliveries({ keyId: key.id, limit: 1 }))[0]!;
      expect(await get()).toMatchObject({ status: 'pending', attempts: 1, lastStatus: 307, lastError: 'HTTP 307 (redirects are not followed)' });
      expect(elsewhere.got.length).toBe(0);
      now += 3_600_000;
      // The receiver never answers: deliverNow returns only because the attempt's own timeout ends it.
      await s.webhooks.deliverNow();
      expect(await get()).toMatchObject({ status: 'pending', attempts: 2, lastStatus: null, lastError: 'timeout after 300 ms' });
    } finally {
      await r.close();
      await elsewhere.close();
    }
  });

  it('reports a connection reset as "connection failed": neither the URL nor the socket error', async () => {
    const r = await receiver((req) => req.socket.destroy());
    try {
      const s = await setup();
      const { key } = await s.keys.create({ name: 'a' }, 'test');
      await s.webhooks.addEndpoint({ url: `${r.url}/x?token=zzz-secret-zzz`, events: ['*'], keyId: key.id }, 'test');
      await s.webhooks.emit('call.ended', key.id, {});
      await s.webhooks.deliverNow();
      const [d] = await s.store.listDeliveries({ keyId: key.id, limit: 1 });
      expect(d).toMatchObject({ status: 'pending', attempts: 1, lastStatus: null });
      expect(d!.lastError).toBe('connection failed');
      expect(d!.lastError).not.toContain('zzz-secret-zzz');
      expect(s.logs.join('')).not.toContain('zzz-secret-zzz');
    } finally {
      await r.close();
    }
  });

  it('settles deliveries of a removed or disabled endpoint as failed without sending', async () => {
    const sent: WebhookRequest[] = [];
    const s = await setup({ deps: { send: (req) => (sent.push(req), Promise.resolve({ ok: true, status: 200 })) } });
    const { key } = await s.keys.create({ name: 'a' }, 'test');
    const e = await s.webhooks.addEndpoint({ url: 'https://hooks.example.com/h', events: ['*'], keyId: key.id }, 'test');
    await s.webhooks.emit('call.ended', key.id, {});
    await s.webhooks.removeEndpoint(e.id, 'test');
    await expect(s.webhooks.removeEndpoint(e.id, 'test')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await s.webhooks.deliverNow()).toBe(0);
    expect((await s.store.listDeliveries({ keyId: key.id, limit: 1 }))[0]).toMatchObject({ status: 'failed', lastError: 'endpoint removed' });
    // A delivery whose endpoint vanished in another way (a row without endpoint) is dropped when claimed.
    const now = new Date().toISOString();
    await s.store.insertDelivery({
      id: 'whd_orphan', endpointId: 'wh_gone', keyId: key.id, eventId: 'evt_orphan', eventType: 'call.ended', payload: '{}', status: 'pending', attempts: 0,
      nextAttemptAt: now, lastStatus: null, lastError: null, createdAt: now, updatedAt: now, deliveredAt: null,
    });
    expect(await s.webhooks.deliverNow()).toBe(1);
    expect(await s.store.getDelivery('whd_orphan')).toMatchObject({ status: 'failed', lastError: 'endpoint removed', attempts: 0 });
    expect(sent.length).toBe(0);
  });

  it('validates endpoints: https only (unless allowHttp), no user:password, a real unrevoked key, at most 16 each', async () => {
    const s = await setup({ options: { allowHttp: false } });
    const { key } = await s.keys.create({ name: 'a' }, 'test');
    const add = (over: Record<string, unknown>) => s.webhooks.addEndpoint({ url: 'https://hooks.example.com/h', events: ['call.ended'], keyId: key.id, ...over } as never, 'test');
    await expect(add({ url: 'http://hooks.example.com/h' })).rejects.toMatchObject({ code: 'VALIDATION_FAILED', details: { field: 'url' } });
    await expect(add({ url: 'https://u:p@hooks.example.com/h' })).rejects.toMatchObject({ code: 'VALIDATION_FAILED', details: { field: 'url' } });
    await expect(add({ events: ['call.exploded'] })).rejects.toMatchObject({ code: 'VALIDATION_FAILED', details: { field: 'events.0' } });
    await expect(add({ events: [] })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await expect(add({ keyId: 'key_nobody' })).rejects.toMatchObject({ code: 'VALIDATION_FAILED', details: { field: 'keyId' } });
    expect((await add({ events: ['call.ended', 'call.ended', '*'] })).events).toEqual(['call.ended', '*']);
    for (let i = 1; i < 16; i++) await add({});
    await expect(add({})).rejects.toMatchObject({ code: 'CONFLICT' });
    await s.keys.revoke(key.id, undefined, 'test');
    const { key: other } = await s.keys.create({ name: 'b' }, 'test');
    await s.keys.revoke(other.id, undefined, 'test');
    await expect(add({ keyId: other.id })).rejects.toMatchObject({ code: 'CONFLICT' });
    const audit = await s.store.listAudit({ limit: 100, target: key.id });
    expect(audit.filter((a) => a.action === 'webhook.added').length).toBe(16);
    expect(JSON.stringify(audit)).not.toContain('u:p@');
  });

  it('the loop delivers on its own after emit, with bounded concurrency, and stop() is idempotent', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    try {
      let inFlight = 0;
      let peak = 0;
      const s = await setup({
        options: { concurrency: 2, pollIntervalMs: 50 },
        deps: {
          send: async () => {
            peak = Math.max(peak, ++inFlight);
            await new Promise((r) => setTimeout(r, 30));
            inFlight--;
            return { ok: true, status: 200 };
          },
        },
      });
      const { key } = await s.keys.create({ name: 'a' }, 'test');
      for (let i = 0; i < 3; i++) await s.webhooks.addEndpoint({ url: `https://hooks.example.com/${i}`, events: ['*'], keyId: key.id }, 'test');
      s.webhooks.start();
      s.webhooks.start();
      for (let i = 0; i < 3; i++) await s.webhooks.emit('call.ended', key.id, { i });
      const count = async (status: 'pending' | 'delivered') => (await s.store.listDeliveries({ keyId: key.id, status, limit: 100 })).length;
      // 9 sends of 30 ms, two at a time: 5 rounds.
      await vi.advanceTimersByTimeAsync(5 * 30);
      expect(await count('delivered')).toBe(9);
      expect(peak).toBe(2);
      await s.webhooks.stop();
      await s.webhooks.stop();
      // After stop, events are still recorded but not sent, however many polls would have passed.
      await s.webhooks.emit('call.ended', key.id, {});
      await vi.advanceTimersByTimeAsync(10 * 50);
      expect(await count('pending')).toBe(3);
    } finally {
      vi.useRealTimers();
    }
  });

  it('retries on its own at the backoff time, without waiting for the next poll', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    try {
      let now = T0;
      const sentAt: number[] = [];
      const outcomes: WebhookOutcome[] = [{ ok: false, status: 500, error: 'HTTP 500' }, { ok: true, status: 204 }];
      const s = await setup({
        clock: () => now,
        options: { initialBackoffMs: 50, pollIntervalMs: 60_000 },
        deps: { random: () => 0.5, send: () => (sentAt.push(now), Promise.resolve(outcomes.shift()!)) },
      });
      const { key } = await s.keys.create({ name: 'a' }, 'test');
      await s.webhooks.addEndpoint({ url: 'https://hooks.example.com/h', events: ['*'], keyId: key.id }, 'test');
      s.webhooks.start();
      await s.webhooks.emit('call.ended', key.id, {});
      await vi.advanceTimersByTimeAsync(0);
      const get = async () => (await s.store.listDeliveries({ keyId: key.id, limit: 1 }))[0]!;
      expect(await get()).toMatchObject({ status: 'pending', attempts: 1, nextAttemptAt: new Date(T0 + 50).toISOString() });

      // The wake timer runs on the monotonic clock and may fire while the wall clock still reads
      // a millisecond short of the due time: nothing is due yet, and the loop must sleep again
      // rather than leave the retry to the next poll (a minute away).
      now = T0 + 49;
      await vi.advanceTimersByTimeAsync(50);
      expect(sentAt).toEqual([T0]);
      now = T0 + 50;
      await vi.advanceTimersByTimeAsync(1);
      expect(sentAt).toEqual([T0, T0 + 50]);
      expect(await get()).toMatchObject({ status: 'delivered', attempts: 2, lastStatus: 204 });
    } finally {
      vi.useRealTimers();
    }
  });

  it('stop() aborts an attempt in flight and hands it back uncounted; the next run sends it', async () => {
    const path = join(dir, `restart-${Date.now()}.db`);
    const masterKey = randomBytes(32);
    let hang = true;
    const r = await receiver((_req, res) => {
      if (!hang) res.writeHead(204).end();
    });
    try {
      const first = await setup({ path, masterKey, options: { timeoutMs: 10_000 } });
      const { key } = await first.keys.create({ name: 'a' }, 'test');
      await first.webhooks.addEndpoint({ url: r.url, events: ['*'], keyId: key.id }, 'test');
      first.webhooks.start();
      await first.webhooks.emit('call.ended', key.id, {});
      await until('the receiver to hold the request', () => Promise.resolve(r.got.length === 1));
      await first.webhooks.stop();
      // Aborted, not timed out: a timeout (10 s) would have counted the attempt and recorded an error.
      const [held] = await first.store.listDeliveries({ keyId: key.id, limit: 1 });
      expect(held).toMatchObject({ status: 'pending', attempts: 0, lastError: null });
      expect(Date.parse(held!.nextAttemptAt!)).toBeLessThanOrEqual(Date.now());
      // An event queued while no loop runs (e.g. by the CLI) waits in the store too.
      await first.webhooks.emit('call.started', key.id, {});
      await first.close();
      opened.splice(opened.indexOf(first), 1);

      hang = false;
      const second = await setup({ path, masterKey, options: { pollIntervalMs: 50 } });
      second.webhooks.start();
      const done = await until('both delivered', async () => {
        const ds = await second.store.listDeliveries({ keyId: key.id, status: 'delivered', limit: 10 });
        return ds.length === 2 && ds;
      });
      expect(done.map((d) => d.attempts)).toEqual([1, 1]);
      const bodies = r.got.slice(1).map((g) => JSON.parse(g.body).type).sort();
      expect(bodies).toEqual(['call.ended', 'call.started']);
      for (const g of r.got.slice(1)) expect(verifyTollgateSignature(signingSecretFor(masterKey, key.id), g.headers['tollgate-signature'] as string, g.body)).toBe(true);
    } finally {
      await r.close();
    }
  });

  it('a failing key event hook is logged and does not undo the revocation', async () => {
    const s = await setup({ keyHook: () => Promise.reject(new Error('webhook store down')) });
    const { key } = await s.keys.create({ name: 'a' }, 'test');
    expect(await s.keys.revoke(key.id, undefined, 'test')).toMatchObject({ status: 'revoked' });
    expect((await s.store.getKey(key.id))?.status).toBe('revoked');
    expect(s.logs.join('')).toContain('key event hook failed');
  });

  it('notify() never throws: a store fault is logged, and stop() waits for it', async () => {
    const s = await setup();
    const { key } = await s.keys.create({ name: 'a' }, 'test');
    await s.store.close();
    expect(() => s.webhooks.notify('call.ended', key.id, {})).not.toThrow();
    await s.webhooks.stop();
    expect(s.logs.join('')).toContain('could not queue webhook event');
  });
});

describe('WebhookService and the egress guard (docs/security.md, "Server-side requests")', () => {
  const strict = new EgressGuard({ allow: [], resolver: (name) => (name === 'loop.example.com' ? Promise.resolve([{ address: '127.0.0.1', family: 4 }]) : resolver(name)) });

  it("refuses a key's endpoint on loopback, private, link-local or metadata addresses in any spelling, with EGRESS_REFUSED and no address in the message", async () => {
    const s = await setup({ deps: { egress: strict } });
    const { key } = await s.keys.create({ name: 'a' }, 'test');
    for (const url of ['http://127.1:9/h', 'http://2130706433/h', 'http://[::ffff:127.0.0.1]/h', 'http://localhost/h', 'http://169.254.169.254/latest', 'http://10.0.0.1/h', 'https://loop.example.com/h']) {
      const err = await s.webhooks.addEndpoint({ url, events: ['*'], keyId: key.id }, 'test').catch((e: unknown) => e);
      expect(err, url).toMatchObject({ code: 'EGRESS_REFUSED', httpStatus: 403, details: { field: 'url' } });
      expect((err as Error).message, url).not.toMatch(/127\.0\.0\.1|169\.254|10\.0\.0\.1/);
    }
    expect(await s.store.listWebhookEndpoints({ keyId: key.id, limit: 100 })).toEqual([]);
    // A name that does not resolve yet is accepted: every delivery is checked again.
    await s.webhooks.addEndpoint({ url: 'https://not-yet.invalid/h', events: ['*'], keyId: key.id }, 'test');
  });

  it('lets account-wide (keys:admin) endpoints reach private receivers, but never link-local or metadata ones', async () => {
    const r = await receiver(answer(204));
    try {
      const s = await setup({ deps: { egress: strict } });
      await s.webhooks.addEndpoint({ url: r.url, events: ['key.revoked'], keyId: null }, 'test');
      for (const url of ['http://169.254.169.254/', 'http://[fe80::1]/', 'http://metadata.google.internal/']) {
        await expect(s.webhooks.addEndpoint({ url, events: ['*'], keyId: null }, 'test'), url).rejects.toMatchObject({ code: 'EGRESS_REFUSED' });
      }
      await s.webhooks.emit('key.revoked', null, {});
      await s.webhooks.deliverNow();
      expect(r.got.length).toBe(1);
    } finally {
      await r.close();
    }
  });

  it('checks again at each delivery: a name that now resolves to loopback fails at once with "destination not allowed", and nothing is sent', async () => {
    const r = await receiver(answer(204));
    try {
      let target = PUBLIC;
      const port = new URL(r.url).port;
      const guard = new EgressGuard({ allow: [], resolver: () => Promise.resolve([{ address: target, family: 4 }]) });
      const s = await setup({ deps: { egress: guard } });
      const { key } = await s.keys.create({ name: 'a' }, 'test');
      await s.webhooks.addEndpoint({ url: `http://rebind.example.com:${port}/h`, events: ['*'], keyId: key.id }, 'test');
      target = '127.0.0.1';
      await s.webhooks.emit('call.ended', key.id, {});
      expect(await s.webhooks.deliverNow()).toBe(1);
      expect((await s.store.listDeliveries({ keyId: key.id, limit: 1 }))[0]).toMatchObject({ status: 'failed', attempts: 1, lastStatus: null, lastError: 'destination not allowed', nextAttemptAt: null });
      expect(r.got.length).toBe(0);
    } finally {
      await r.close();
    }
  });
});
