import { existsSync, readFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { clusterBackend, PG_URL, type Backend } from '../helpers/backends.js';
import { api, rememberSecret, runCli, startGateway, waitForLog, type RunningGateway } from '../helpers/gateway-process.js';
import { runSipp, type SippRun } from '../helpers/sipp.js';

/**
 * A TCP proxy between the gateway and PostgreSQL that the test can cut: every connection is
 * reset and new ones are reset as they arrive, until restore().
 */
class StoreLink {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private cut = false;

  private constructor(private readonly upstream: { host: string; port: number }) {
    this.server = createServer((client) => {
      if (this.cut) {
        client.resetAndDestroy();
        return;
      }
      const server = connect(this.upstream.port, this.upstream.host);
      for (const [a, b] of [[client, server], [server, client]] as const) {
        this.sockets.add(a);
        a.on('error', () => b.destroy());
        a.on('close', () => {
          this.sockets.delete(a);
          b.destroy();
        });
        a.pipe(b);
      }
    });
  }

  static async open(upstreamUrl: string): Promise<{ link: StoreLink; url: string }> {
    const u = new URL(upstreamUrl);
    const link = new StoreLink({ host: u.hostname, port: Number(u.port || 5432) });
    await new Promise<void>((res) => link.server.listen(0, '127.0.0.1', res));
    u.hostname = '127.0.0.1';
    u.port = String((link.server.address() as AddressInfo).port);
    return { link, url: u.toString() };
  }

  /** The store outage: every open connection is reset, and so is every new one. */
  cutAll(): void {
    this.cut = true;
    for (const s of this.sockets) s.resetAndDestroy();
  }

  restore(): void {
    this.cut = false;
  }

  close(): Promise<void> {
    this.cutAll();
    return new Promise((res) => this.server.close(() => res()));
  }
}

/** SIPp 3.6 reads only the first challenge and knows only MD5. */
const SIPP_ENV = { TOLLGATE_SIP__DIGEST_ALGORITHMS: '[MD5, SHA-256]' };
/** Short retries and a short shutdown flush, so the test waits seconds, not minutes. */
const LEDGER_ENV = { TOLLGATE_BILLING__INITIAL_BACKOFF_MS: '200', TOLLGATE_BILLING__MAX_BACKOFF_MS: '1000', TOLLGATE_BILLING__FLUSH_TIMEOUT_MS: '1000' };
const HOLD_MS = 5000;

/** Polls `probe` every 200 ms until it returns a value, for at most `ms`. */
async function until<T>(what: string, ms: number, probe: () => Promise<T | null | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== null && v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

interface Trunk {
  id: string;
  secret: string;
  number: string;
}

interface Rig {
  backend: Backend;
  link: StoreLink;
  gw: RunningGateway;
  env: Record<string, string>;
  journal: string;
  trunk: Trunk;
}

const opened: { backend: Backend; link: StoreLink; gws: RunningGateway[] }[] = [];
afterEach(async () => {
  for (const o of opened.splice(0)) {
    for (const gw of o.gws) await gw.stop();
    await o.link.close();
    await o.backend.cleanup();
  }
});

/** A PostgreSQL-backed gateway whose store connection runs through a StoreLink, and a trunk key with a number. */
async function rig(): Promise<Rig> {
  const backend = clusterBackend();
  const { link, url } = await StoreLink.open(PG_URL);
  const o = { backend, link, gws: [] as RunningGateway[] };
  opened.push(o);
  const gw = await startGateway({ env: { ...backend.env, TOLLGATE_STORE__POSTGRES__URL: url, ...SIPP_ENV, ...LEDGER_ENV } });
  o.gws.push(gw);
  const admin = await runCli(['keys', 'create', '--name', 'root', '--role', 'admin', '--json'], gw.env);
  expect(admin.code, admin.stderr).toBe(0);
  const adminSecret = JSON.parse(admin.stdout).secret as string;
  rememberSecret(adminSecret);
  const k = await api(gw, 'POST', '/v1/keys', {
    auth: adminSecret,
    body: { name: 'trunk', scopes: ['calls:inbound', 'calls:read', 'usage:read'], callsPerSecond: 10, cpsBurst: 10, maxConcurrentCalls: 5, budget: { amount: 100_000, period: 'month' } },
  });
  expect(k.status, k.text).toBe(201);
  rememberSecret(k.body.secret);
  const number = `+1415556${String(Date.now() % 10_000).padStart(4, '0')}`;
  const n = await api(gw, 'POST', '/v1/numbers', { auth: adminSecret, body: { number, target: 'echo', keyId: k.body.key.id } });
  expect(n.status, n.text).toBe(201);
  return {
    backend, link, gw, env: gw.env,
    journal: join(gw.env.TOLLGATE_DATA_DIR!, 'settlement-journal.jsonl'),
    trunk: { id: k.body.key.id, secret: k.body.secret, number },
  };
}

/**
 * Places one SIPp call that holds HOLD_MS, cuts the store once the call record says it is
 * answered, and returns when SIPp has hung up (BYE answered) and the gateway has reported
 * the outage. The call's identity comes from its record (REST), not from SIP.
 */
async function callThroughOutage(r: Rig): Promise<{ call: { id: string; sipCallId: string | null }; sipp: SippRun }> {
  const sipp = runSipp({
    scenario: 'uac-auth-call',
    target: r.gw.sip.udp!,
    transport: 'udp',
    dialled: r.trunk.number,
    username: r.trunk.id,
    password: r.trunk.secret,
    holdMs: HOLD_MS,
    timeoutSec: 30,
  });
  const call = await until('the call to be answered', 10_000, async () => {
    const list = await api(r.gw, 'GET', '/v1/calls', { auth: r.trunk.secret });
    const answered = (list.body?.calls ?? []).filter((c: { status: string }) => c.status === 'answered');
    return answered.length === 1 ? (answered[0] as { id: string; sipCallId: string | null }) : null;
  });
  r.link.cutAll();
  const run = await sipp;
  expect(run.code, run.errors || run.stdout.slice(-2000)).toBe(0);
  expect(run.successful).toBe(1);
  await waitForLog(r.gw, 'the store is unreachable', 1, 10_000);
  return { call, sipp: run };
}

const metric = async (gw: RunningGateway, name: string): Promise<number | null> => {
  const text = (await api(gw, 'GET', '/metrics')).text;
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : null;
};

const journalLines = (path: string): { settlement: { keyId: string; seconds: number } }[] =>
  existsSync(path) ? readFileSync(path, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];

/** The key's usage records, read through the REST API. */
async function usageOf(gw: RunningGateway, t: Trunk): Promise<{ callId: string; seconds: number; keyId: string }[]> {
  const u = await api(gw, 'GET', '/v1/usage', { auth: t.secret });
  expect(u.status, u.text).toBe(200);
  return u.body.records;
}

describe('settlement survives a store outage (PostgreSQL cut mid-call)', () => {
  it('a call that ends while the store is unreachable is journaled, and its usage lands exactly once when the store is back', async () => {
    const r = await rig();
    const { call } = await callThroughOutage(r);

    // The settlement is on disk and counted as pending while the store is away.
    const journaled = journalLines(r.journal);
    expect(journaled).toHaveLength(1);
    expect(journaled[0]!.settlement.keyId).toBe(r.trunk.id);
    expect(await metric(r.gw, 'tollgate_settlements_pending')).toBe(1);
    // A few seconds of outage: the ledger keeps retrying and failing.
    await new Promise((res) => setTimeout(res, 2000));
    expect(existsSync(r.journal)).toBe(true);

    r.link.restore();
    const usage = await until('the usage record', 20_000, async () => {
      const rows = await usageOf(r.gw, r.trunk);
      return rows.length > 0 ? rows : null;
    });
    expect(usage).toHaveLength(1);
    // The record is the call's: today the grant's id is the SIP dialog's, after the Call rework
    // it is the call record's own id.
    expect([call.id, call.sipCallId]).toContain(usage[0]!.callId);
    expect(usage[0]!.seconds).toBeGreaterThanOrEqual(HOLD_MS / 1000);
    expect(usage[0]!.seconds).toBeLessThanOrEqual(HOLD_MS / 1000 + 2);
    await until('the journal to be compacted away', 10_000, () => Promise.resolve(existsSync(r.journal) ? null : true));
    expect(await metric(r.gw, 'tollgate_settlements_pending')).toBe(0);
    // Retries after the row landed changed nothing.
    await new Promise((res) => setTimeout(res, 1500));
    expect(await usageOf(r.gw, r.trunk)).toHaveLength(1);
    expect(await r.gw.stop()).toBe(0);
  });

  it('a gateway stopped (SIGTERM) while the store is unreachable keeps the settlement in its journal; the next start replays it', async () => {
    const r = await rig();
    const { call } = await callThroughOutage(r);
    expect(await r.gw.stop()).toBe(0);
    expect(journalLines(r.journal)).toHaveLength(1);
    expect(r.gw.logs()).toContain('stay journaled for the next start');

    r.link.restore();
    const again = await startGateway({ dataDir: r.env.TOLLGATE_DATA_DIR!, env: Object.fromEntries(Object.entries(r.env).filter(([k]) => k.startsWith('TOLLGATE_') && k !== 'TOLLGATE_DATA_DIR')) });
    opened.at(-1)!.gws.push(again);
    // Replayed before the gateway listens: the usage is there as soon as it answers.
    expect(again.logs()).toContain('replaying settlements an earlier run could not write to the store');
    expect(existsSync(r.journal)).toBe(false);
    const usage = await usageOf(again, r.trunk);
    expect(usage).toHaveLength(1);
    expect([call.id, call.sipCallId]).toContain(usage[0]!.callId);
    expect(usage[0]!.seconds).toBeGreaterThanOrEqual(HOLD_MS / 1000);
    expect(usage[0]!.seconds).toBeLessThanOrEqual(HOLD_MS / 1000 + 2);
    expect(await again.stop()).toBe(0);
  });
});
