import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyTollgateSignature } from '../../src/keys/request-signature.js';
import { api, rememberSecret, runCli, startGateway, type RunningGateway } from '../helpers/gateway-process.js';
import { clusterBackend, embeddedBackend, type Backend } from '../helpers/backends.js';
import { securityCases } from '../helpers/security-cases.js';
import { until } from '../../src/testing/wait.js';

/** Deliveries here wait out retries with backoffs of up to 3 s: room for a loaded machine. */
const WAIT_MS = 30_000;

/** Short retries so a whole schedule fits in a test: 100, 200, 400 ms (±20 %), 4 attempts, 500 ms timeout. */
const FAST = {
  TOLLGATE_WEBHOOKS__ALLOW_HTTP: 'true',
  // The receivers listen on 127.0.0.1, which a key's endpoint reaches only through egress.allow.
  TOLLGATE_EGRESS__ALLOW: '[127.0.0.1/32]',
  TOLLGATE_WEBHOOKS__INITIAL_BACKOFF_MS: '100',
  TOLLGATE_WEBHOOKS__MAX_BACKOFF_MS: '400',
  TOLLGATE_WEBHOOKS__MAX_ATTEMPTS: '4',
  TOLLGATE_WEBHOOKS__TIMEOUT_MS: '500',
};

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
const answer = (status: number): Handler => (_req, res) => void res.writeHead(status).end();
/** Drops the connection without a response. */
const reset: Handler = (req) => void req.socket.destroy();
/** Never answers: the gateway's attempt times out. */
const hang: Handler = () => undefined;

interface Receiver {
  readonly url: string;
  readonly got: { headers: IncomingHttpHeaders; body: string; path: string; at: number }[];
  /** Handlers for the next requests in order; the last one repeats. */
  plan(...handlers: Handler[]): void;
  close(): Promise<void>;
}

/** A local HTTP receiver on 127.0.0.1:0 that records every request with its raw body. */
async function startReceiver(...initial: Handler[]): Promise<Receiver> {
  let handlers = initial;
  let served = 0;
  const got: Receiver['got'] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      got.push({ headers: req.headers, body, path: req.url ?? '', at: Date.now() });
      handlers[Math.min(served++, handlers.length - 1)]!(req, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    got,
    plan(...next) {
      handlers = next;
      served = 0;
    },
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

async function adminKey(gw: RunningGateway): Promise<string> {
  const r = await runCli(['keys', 'create', '--name', 'root', '--role', 'admin', '--json'], gw.env);
  expect(r.code, r.stderr).toBe(0);
  const secret = JSON.parse(r.stdout).secret as string;
  rememberSecret(secret);
  return secret;
}

/** A query token the receiver would check: it must never reach a log. */
const receiverToken = (): string => `rcv_${randomBytes(16).toString('hex')}`;

for (const backend of [embeddedBackend(), clusterBackend()] as Backend[]) {
  describe(`webhooks on ${backend.name}`, () => {
    let gw: RunningGateway;
    let admin: string;
    const receivers: Receiver[] = [];

    beforeAll(async () => {
      gw = await startGateway({ env: { ...backend.env, ...FAST } });
      admin = await adminKey(gw);
    });
    afterAll(async () => {
      for (const r of receivers) await r.close();
      expect(await gw?.stop()).toBe(0);
      await backend.cleanup();
    });

    const createKey = async (policy: Record<string, unknown> = {}): Promise<{ id: string; secret: string }> => {
      const r = await api(gw, 'POST', '/v1/keys', { auth: admin, body: { name: 'k', ...policy } });
      expect(r.status, r.text).toBe(201);
      rememberSecret(r.body.secret);
      return { id: r.body.key.id, secret: r.body.secret };
    };
    const receiver = async (...handlers: Handler[]): Promise<Receiver> => {
      const r = await startReceiver(...handlers);
      receivers.push(r);
      return r;
    };
    const deliveries = async (query: string): Promise<any[]> => {
      const r = await api(gw, 'GET', `/v1/webhooks/deliveries?${query}`, { auth: admin });
      expect(r.status, r.text).toBe(200);
      return r.body.deliveries;
    };

    it('a key\'s own endpoint gets key.revoked on the 3rd attempt (500, reset, 204), signed with the key\'s signing secret', async () => {
      const rcv = await receiver(answer(500), reset, answer(204));
      const k = await createKey();
      const token = receiverToken();
      rememberSecret(token);
      // A key manages its own endpoints without any scope.
      const added = await api(gw, 'POST', '/v1/webhooks', { auth: k.secret, body: { url: `${rcv.url}/hooks?token=${token}`, events: ['key.revoked'] } });
      expect(added.status, added.text).toBe(201);
      expect(added.body.endpoint).toMatchObject({ keyId: k.id, events: ['key.revoked'], enabled: true });
      const endpointId = added.body.endpoint.id as string;
      const listed = await api(gw, 'GET', '/v1/webhooks', { auth: k.secret });
      expect(listed.body.endpoints.map((e: any) => e.id)).toEqual([endpointId]);
      const ss = await api(gw, 'GET', `/v1/keys/${k.id}/signing-secret`, { auth: k.secret });
      const signingSecret = ss.body.signingSecret as string;
      rememberSecret(signingSecret);

      const revoked = await api(gw, 'POST', `/v1/keys/${k.id}/revoke`, { auth: admin, body: { reason: 'rotating out' } });
      expect(revoked.status, revoked.text).toBe(200);

      const [d] = await until('the delivery to be delivered', async () => {
        const ds = await deliveries(`endpointId=${endpointId}&status=delivered`);
        return ds.length > 0 && ds;
      }, WAIT_MS);
      expect(d).toMatchObject({ keyId: k.id, eventType: 'key.revoked', status: 'delivered', attempts: 3, lastStatus: 204, lastError: null, nextAttemptAt: null });
      expect(rcv.got.length).toBe(3);
      // One body and one delivery id across the attempts; each attempt signed afresh over that body.
      expect(new Set(rcv.got.map((g) => g.body)).size).toBe(1);
      expect(new Set(rcv.got.map((g) => g.headers['tollgate-delivery'])).size).toBe(1);
      const last = rcv.got[2]!;
      expect(last.path).toBe(`/hooks?token=${token}`);
      expect(last.body).toBe(d.payload);
      expect(last.headers).toMatchObject({ 'content-type': 'application/json', 'user-agent': 'tollgate', 'tollgate-event': 'key.revoked', 'tollgate-delivery': d.id });
      expect(verifyTollgateSignature(signingSecret, last.headers['tollgate-signature'] as string, last.body)).toBe(true);
      expect(verifyTollgateSignature(signingSecret, last.headers['tollgate-signature'] as string, last.body + ' ')).toBe(false);
      const event = JSON.parse(last.body);
      expect(event).toMatchObject({ type: 'key.revoked', keyId: k.id, accountSid: ss.body.accountSid, data: { keyId: k.id, reason: 'rotating out' } });
      expect(event.id).toMatch(/^evt_/);
      // Retries waited: ~100 ms then ~200 ms (±20 %).
      expect(rcv.got[1]!.at - rcv.got[0]!.at).toBeGreaterThanOrEqual(70);
      expect(rcv.got[2]!.at - rcv.got[1]!.at).toBeGreaterThanOrEqual(150);
      // The revoked key no longer reads its log; the gateway never logged the receiver's token.
      expect((await api(gw, 'GET', '/v1/webhooks/deliveries', { auth: k.secret })).status).toBe(401);
      expect(gw.logs()).not.toContain(token);
      expect(gw.logs()).not.toContain(signingSecret);
    });

    it('a receiver that always fails ends failed after maxAttempts; a manual retry sends it once more', async () => {
      const rcv = await receiver(answer(503), hang, answer(503));
      const k = await createKey();
      // Account-wide endpoints are keys:admin's, signed with the account secret.
      const added = await api(gw, 'POST', '/v1/webhooks', { auth: admin, body: { url: rcv.url, events: ['key.rotated'], keyId: null } });
      expect(added.status, added.text).toBe(201);
      expect(added.body.endpoint.keyId).toBeNull();
      const endpointId = added.body.endpoint.id as string;
      const secret = await api(gw, 'GET', '/v1/webhooks/signing-secret', { auth: admin });
      expect(secret.headers.get('cache-control')).toBe('no-store');
      rememberSecret(secret.body.signingSecret);

      expect((await api(gw, 'POST', `/v1/keys/${k.id}/rotate`, { auth: admin, body: { graceSec: 0 } })).status).toBe(201);
      const [d] = await until('the delivery to fail', async () => {
        const ds = await deliveries(`endpointId=${endpointId}&status=failed`);
        return ds.length > 0 && ds;
      }, WAIT_MS);
      expect(d).toMatchObject({ keyId: null, eventType: 'key.rotated', status: 'failed', attempts: 4, lastStatus: 503, lastError: 'HTTP 503', nextAttemptAt: null, deliveredAt: null });
      expect(rcv.got.length).toBe(4);
      expect(verifyTollgateSignature(secret.body.signingSecret, rcv.got[0]!.headers['tollgate-signature'] as string, rcv.got[0]!.body)).toBe(true);
      expect(JSON.parse(rcv.got[0]!.body)).toMatchObject({ type: 'key.rotated', keyId: k.id, data: { graceSec: 0 } });
      // Nothing more is sent on its own.
      await new Promise((r) => setTimeout(r, 800));
      expect(rcv.got.length).toBe(4);

      rcv.plan(answer(200));
      const retried = await api(gw, 'POST', `/v1/webhooks/deliveries/${d.id}/retry`, { auth: admin });
      expect(retried.status, retried.text).toBe(202);
      expect(retried.body.delivery).toMatchObject({ status: 'pending' });
      const done = await until('the retried delivery', async () => (await deliveries(`endpointId=${endpointId}&status=delivered`))[0], WAIT_MS);
      expect(done).toMatchObject({ id: d.id, attempts: 5, lastStatus: 200 });
      expect(rcv.got.at(-1)!.body).toBe(rcv.got[0]!.body);
    });

    it('scopes endpoints and the log to their key; keys:admin sees and manages all', async () => {
      const rcv = await receiver(answer(204));
      const a = await createKey();
      const b = await createKey();
      const ea = await api(gw, 'POST', '/v1/webhooks', { auth: a.secret, body: { url: rcv.url, events: ['*'] } });
      expect(ea.status).toBe(201);
      const id = ea.body.endpoint.id as string;
      // b cannot add for a, nor account-wide, nor see, remove or retry a's.
      expect((await api(gw, 'POST', '/v1/webhooks', { auth: b.secret, body: { url: rcv.url, events: ['*'], keyId: a.id } })).body.error.code).toBe('FORBIDDEN');
      expect((await api(gw, 'POST', '/v1/webhooks', { auth: b.secret, body: { url: rcv.url, events: ['*'], keyId: null } })).status).toBe(403);
      expect((await api(gw, 'GET', '/v1/webhooks', { auth: b.secret })).body.endpoints).toEqual([]);
      expect((await api(gw, 'GET', `/v1/webhooks?keyId=${a.id}`, { auth: b.secret })).status).toBe(403);
      expect((await api(gw, 'DELETE', `/v1/webhooks/${id}`, { auth: b.secret })).status).toBe(404);
      expect((await api(gw, 'GET', '/v1/webhooks/signing-secret', { auth: b.secret })).status).toBe(403);
      // Admin sees it; a's event reaches a, and b's log stays empty.
      expect((await api(gw, 'GET', `/v1/webhooks?keyId=${a.id}`, { auth: admin })).body.endpoints.map((e: any) => e.id)).toEqual([id]);
      expect((await api(gw, 'POST', `/v1/keys/${a.id}/rotate`, { auth: admin, body: {} })).status).toBe(201);
      await until('a\'s delivery', async () => (await deliveries(`endpointId=${id}&status=delivered`)).length === 1, WAIT_MS);
      const aLog = await api(gw, 'GET', '/v1/webhooks/deliveries', { auth: a.secret });
      expect(aLog.status).toBe(200);
      expect(aLog.body.deliveries.map((d: any) => d.endpointId)).toEqual([id]);
      const dId = aLog.body.deliveries[0].id as string;
      expect((await api(gw, 'GET', '/v1/webhooks/deliveries', { auth: b.secret })).body.deliveries).toEqual([]);
      expect((await api(gw, 'POST', `/v1/webhooks/deliveries/${dId}/retry`, { auth: b.secret })).status).toBe(404);
      // Bad input is refused naming the field.
      const bad = await api(gw, 'POST', '/v1/webhooks', { auth: a.secret, body: { url: 'ftp://x.example.com', events: ['*'] } });
      expect(bad.body.error).toMatchObject({ code: 'VALIDATION_FAILED', details: { field: 'url' } });
      const badEvent = await api(gw, 'POST', '/v1/webhooks', { auth: a.secret, body: { url: rcv.url, events: ['call.exploded'] } });
      expect(badEvent.body.error.details.field).toBe('events.0');
      expect((await api(gw, 'POST', '/v1/webhooks', { auth: a.secret, body: { url: 'http://u:p@127.0.0.1/x', events: ['*'] } })).status).toBe(400);
      expect((await api(gw, 'GET', '/v1/webhooks/deliveries?status=lost', { auth: a.secret })).status).toBe(400);
      // The owner removes it; removing again is 404.
      expect((await api(gw, 'DELETE', `/v1/webhooks/${id}`, { auth: a.secret })).status).toBe(204);
      expect((await api(gw, 'DELETE', `/v1/webhooks/${id}`, { auth: a.secret })).status).toBe(404);
      const doc = await api(gw, 'GET', '/openapi.json');
      expect(Object.keys(doc.body.paths)).toEqual(expect.arrayContaining(['/v1/webhooks', '/v1/webhooks/{id}', '/v1/webhooks/deliveries', '/v1/webhooks/deliveries/{id}/retry']));
    });

    if (backend.name === embeddedBackend().name) {
      describe('shared security cases', () => {
        securityCases({
          name: 'REST /v1/webhooks',
          attempt: async (credential) => {
            const r = await api(gw, 'GET', '/v1/webhooks', credential === null ? {} : { auth: credential });
            return { admitted: r.status === 200, code: r.body?.error?.code ?? null, status: r.status, raw: r.text };
          },
          freshKey: async (policy = {}) => createKey({ scopes: ['calls:outbound'], callsPerSecond: 1, cpsBurst: 1, ...policy }),
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
    }
  });
}

describe('webhooks across a gateway restart', () => {
  let receiver: Receiver;
  const running: RunningGateway[] = [];
  afterAll(async () => {
    for (const g of running) await g.stop();
    await receiver?.close();
  });

  it('resumes a pending retry and sends what the CLI queued while the gateway was down', async () => {
    receiver = await startReceiver(answer(500));
    // Slow retries here: the first failed attempt is still pending when the gateway stops.
    const env = { ...FAST, TOLLGATE_WEBHOOKS__INITIAL_BACKOFF_MS: '3000', TOLLGATE_WEBHOOKS__MAX_BACKOFF_MS: '3000', TOLLGATE_WEBHOOKS__MAX_ATTEMPTS: '8' };
    const first = await startGateway({ env });
    running.push(first);
    const admin = await adminKey(first);
    const created = await api(first, 'POST', '/v1/keys', { auth: admin, body: { name: 'k' } });
    rememberSecret(created.body.secret);
    const keyId = created.body.key.id as string;
    const added = await api(first, 'POST', '/v1/webhooks', { auth: admin, body: { url: `${receiver.url}/h`, events: ['key.rotated', 'key.revoked'], keyId } });
    expect(added.status, added.text).toBe(201);

    expect((await api(first, 'POST', `/v1/keys/${keyId}/rotate`, { auth: admin, body: { graceSec: 0 } })).status).toBe(201);
    await until('the first attempt', () => receiver.got.length >= 1, WAIT_MS);
    expect(await first.stop()).toBe(0);
    running.splice(running.indexOf(first), 1);

    // While no gateway runs: the CLI revokes the key, which only queues the event.
    const revoked = await runCli(['keys', 'revoke', keyId, '--json'], first.env);
    expect(revoked.code, revoked.stderr).toBe(0);
    const attemptsBefore = receiver.got.length;
    receiver.plan(answer(204));

    const second = await startGateway({ env, dataDir: first.env.TOLLGATE_DATA_DIR });
    running.push(second);
    const done = await until('both deliveries', async () => {
      const r = await api(second, 'GET', `/v1/webhooks/deliveries?keyId=${keyId}&status=delivered`, { auth: admin });
      return r.body.deliveries.length === 2 && (r.body.deliveries as any[]);
    }, WAIT_MS);
    const byType = Object.fromEntries(done.map((d) => [d.eventType, d]));
    expect(byType['key.rotated']).toMatchObject({ status: 'delivered', lastStatus: 204 });
    expect(byType['key.rotated'].attempts).toBe(attemptsBefore + 1);
    expect(byType['key.revoked']).toMatchObject({ status: 'delivered', attempts: 1, lastStatus: 204 });
    const ss = await runCli(['keys', 'signing-secret', keyId, '--json'], second.env);
    const signingSecret = JSON.parse(ss.stdout).signingSecret as string;
    rememberSecret(signingSecret);
    for (const g of receiver.got.slice(attemptsBefore)) {
      expect(verifyTollgateSignature(signingSecret, g.headers['tollgate-signature'] as string, g.body)).toBe(true);
    }
    expect(receiver.got.slice(attemptsBefore).map((g) => JSON.parse(g.body).type).sort()).toEqual(['key.revoked', 'key.rotated']);
  });
});
