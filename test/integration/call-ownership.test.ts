import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { api, rememberSecret, runCli, startGateway, waitForLog, type RunningGateway } from '../helpers/gateway-process.js';
import { RawUac, mediaOf, type UacCall } from '../helpers/raw-uac.js';
import { runSipp } from '../helpers/sipp.js';
import { NativeAgent, PipecatLikeAgent } from '../helpers/agents.js';
import { clusterBackend, type Backend } from '../helpers/backends.js';
import { newBranch } from '../../src/sip/sip-ids.js';
import { billedSeconds } from '../../src/policy/rate-table.js';
import { detectTone, ulawDecode } from '../helpers/audio.js';

/**
 * One Call object owns each call, keyed by the gateway's own id, never by the SIP Call-ID:
 * these tests drive real gateway processes with a raw UAC (test/helpers/raw-uac.ts), SIPp and
 * test agents, and check what a carrier, an agent and the records see.
 */

/** SIPp 3.6 reads only the first challenge and knows only MD5; the raw UAC takes either. */
const BASE_ENV = { TOLLGATE_SIP__DIGEST_ALGORITHMS: '[MD5, SHA-256]' };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a value (bounded in time and count). */
async function until<T>(probe: () => Promise<T | null | undefined | false> | T | null | undefined | false, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 10_000; i++) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) break;
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

interface Key {
  readonly id: string;
  readonly secret: string;
}

/** Keys, numbers, records and the resources a test opened, against one gateway. */
class Harness {
  admin = '';
  private seq = 0;
  private readonly opened: { close(): unknown }[] = [];

  constructor(readonly gw: RunningGateway) {}

  async init(): Promise<this> {
    const r = await runCli(['keys', 'create', '--name', 'root', '--role', 'admin', '--json'], this.gw.env);
    expect(r.code, r.stderr).toBe(0);
    this.admin = JSON.parse(r.stdout).secret;
    rememberSecret(this.admin);
    return this;
  }

  async key(policy: Record<string, unknown> = {}): Promise<Key> {
    const k = await api(this.gw, 'POST', '/v1/keys', {
      auth: this.admin,
      body: { name: 'carrier', scopes: ['calls:inbound', 'calls:read', 'usage:read'], callsPerSecond: 100, cpsBurst: 100, maxConcurrentCalls: 10, ...policy },
    });
    expect(k.status, k.text).toBe(201);
    rememberSecret(k.body.secret);
    return { id: k.body.key.id, secret: k.body.secret };
  }

  /** A number of the key's, routed to echo or to an agent. */
  async number(key: Key, target: 'echo' | 'agent', agent?: Record<string, unknown>): Promise<string> {
    const number = `+1628556${String(1000 + ++this.seq).slice(-4)}`;
    const n = await api(this.gw, 'POST', '/v1/numbers', { auth: this.admin, body: { number, target, keyId: key.id, ...(agent ? { agent } : {}) } });
    expect(n.status, n.text).toBe(201);
    return number;
  }

  async uac(transport: 'udp' | 'tcp' = 'udp'): Promise<RawUac> {
    return this.keep(await RawUac.open({ transport, server: this.gw.sip[transport]! }));
  }

  keep<T extends { close(): unknown }>(x: T): T {
    this.opened.push(x);
    return x;
  }

  async closeAll(): Promise<void> {
    for (const x of this.opened.splice(0).reverse()) await x.close();
  }

  /** The key's call records for one SIP Call-ID, oldest first (read by the admin: a revoked key cannot). */
  async records(key: Key, sipCallId: string): Promise<Record<string, any>[]> {
    const r = await api(this.gw, 'GET', `/v1/calls?keyId=${key.id}&limit=1000`, { auth: this.admin });
    expect(r.status, r.text).toBe(200);
    return (r.body.calls as Record<string, any>[]).filter((c) => c.sipCallId === sipCallId).reverse();
  }

  /** Waits (bounded) until the key has `count` records for the Call-ID, all ended. */
  endedRecords(key: Key, sipCallId: string, count = 1, timeoutMs = 10_000): Promise<Record<string, any>[]> {
    return until(async () => {
      const r = await this.records(key, sipCallId);
      return r.length === count && r.every((c) => c.endedAt) ? r : null;
    }, timeoutMs, `${count} ended record(s) of SIP Call-ID ${sipCallId}`);
  }

  /** One record by the gateway's call id (admin), once `done` holds. */
  record(id: string, done: (c: Record<string, any>) => boolean = (c) => Boolean(c.endedAt), timeoutMs = 10_000): Promise<Record<string, any>> {
    return until(async () => {
      const r = await api(this.gw, 'GET', `/v1/calls/${id}`, { auth: this.admin });
      return r.status === 200 && done(r.body.call) ? (r.body.call as Record<string, any>) : null;
    }, timeoutMs, `call ${id} to reach the expected state`);
  }

  /** The key's usage records (read by the admin: a revoked key cannot read its own). */
  async usage(key: Key): Promise<Record<string, any>> {
    const u = await api(this.gw, 'GET', `/v1/usage?keyId=${key.id}`, { auth: this.admin });
    expect(u.status, u.text).toBe(200);
    return u.body;
  }

  revoke(key: Key): Promise<{ status: number; text: string }> {
    return api(this.gw, 'POST', `/v1/keys/${key.id}/revoke`, { auth: this.admin, body: { reason: 'test' } });
  }
}

const credsOf = (k: Key) => ({ username: k.id, password: k.secret });
const callIdFor = (label: string) => `${label}-${randomBytes(6).toString('hex')}@carrier.test`;

/** Connects a call and streams RTP into it until stopStream(); resolves once its echo flows. */
async function connectWithEcho(call: UacCall): Promise<void> {
  await call.connect();
  expect(call.remoteMedia, 'SDP answer').not.toBeNull();
  call.rtp.stream(call.remoteMedia!);
  await call.rtp.waitForEchoes(10, 5000);
}

/** The usage seconds a record's billable seconds settle to at its rate's increments. */
function settledSeconds(rec: Record<string, any>): number[] {
  const [first, next] = String(rec.details.rate.increment).split('/').map(Number) as [number, number];
  const rate = { increment: { first, next } } as Parameters<typeof billedSeconds>[0];
  // The record keeps billable seconds to the millisecond; the ledger settled the exact value.
  return [billedSeconds(rate, rec.billableSeconds), billedSeconds(rate, rec.billableSeconds + 0.0005)];
}

describe('one Call per call, keyed by the gateway (leaseTtlSec 5, agents.connectTimeoutMs 20 s)', () => {
  let gw: RunningGateway;
  let h: Harness;

  beforeAll(async () => {
    gw = await startGateway({ env: { ...BASE_ENV, TOLLGATE_POLICY__LEASE_TTL_SEC: '5', TOLLGATE_AGENTS__CONNECT_TIMEOUT_MS: '20000' } });
    h = await new Harness(gw).init();
  });
  afterEach(async () => {
    await h?.closeAll();
  });
  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
  });

  it('a Call-ID reused under one key is a new call each time: busy (486) while the first is up, answered after its BYE, and both are billed', async () => {
    const k = await h.key({ maxConcurrentCalls: 1 });
    const number = await h.number(k, 'echo');
    const uac = await h.uac();
    const X = callIdFor('reuse');

    const a = uac.call({ dialled: number, callId: X, fromTag: 'tag-a', credentials: credsOf(k) });
    await connectWithEcho(a);
    const aAnsweredAt = performance.now();
    // Same Call-ID, a new From tag: another call, refused by the key's one concurrent call.
    const b = uac.call({ dialled: number, callId: X, fromTag: 'tag-b', credentials: credsOf(k) });
    await b.start();
    expect((await b.finalResponse()).status).toBe(486);
    // A did not notice: its echo keeps flowing.
    await a.rtp.waitForEchoes(a.rtp.echoed + 25);
    const aHeldSec = (performance.now() - aAnsweredAt) / 1000;
    expect((await a.bye()).status).toBe(200);
    a.rtp.stopStream();

    // The same Call-ID again after A's BYE: a third call, admitted now the slot is free.
    const c = uac.call({ dialled: number, callId: X, fromTag: 'tag-c', credentials: credsOf(k) });
    await connectWithEcho(c);
    const cAnsweredAt = performance.now();
    await sleep(2500);
    await c.rtp.waitForEchoes(c.rtp.echoed + 10);
    const cHeldSec = (performance.now() - cAnsweredAt) / 1000;
    expect((await c.bye()).status).toBe(200);
    expect(a.rtp.foreign + c.rtp.foreign).toBe(0);

    // Two records under one SIP Call-ID, each its own call id (B was refused by the policy
    // before it became a call, so it has none).
    const records = await h.endedRecords(k, X, 2);
    const [ra, rc] = records as [Record<string, any>, Record<string, any>];
    expect(ra.id).not.toBe(rc.id);
    for (const r of records) expect(r.id).toMatch(/^CA[0-9a-f]{32}$/);
    expect(ra).toMatchObject({ status: 'ended', endReason: 'remote-bye', endedBy: 'caller', sipCallId: X });
    expect(rc).toMatchObject({ status: 'ended', endReason: 'remote-bye', endedBy: 'caller', sipCallId: X });
    expect(Date.parse(rc.answeredAt)).toBeGreaterThanOrEqual(Date.parse(ra.endedAt));
    // Each is billed for its own time: from its answer to its BYE.
    expect(ra.billableSeconds).toBeGreaterThanOrEqual(aHeldSec - 0.1);
    expect(ra.billableSeconds).toBeLessThanOrEqual(aHeldSec + 2);
    expect(rc.billableSeconds).toBeGreaterThanOrEqual(cHeldSec - 0.1);
    expect(rc.billableSeconds).toBeLessThanOrEqual(cHeldSec + 2);
    const usage = await h.usage(k);
    expect(usage.totals.calls).toBe(2);
    const byCall = new Map((usage.records as Record<string, any>[]).map((u) => [u.callId, u]));
    for (const r of [ra, rc]) {
      expect(byCall.get(r.id)?.id).toBe(`use_${r.id}`);
      expect(settledSeconds(r)).toContain(byCall.get(r.id)?.seconds);
    }
  });

  it('a Call-ID another key\'s live call uses is a separate call: each caller hears only its own echo, before, during and after, and each record ends on its own BYE', async () => {
    const ka = await h.key();
    const kb = await h.key();
    const na = await h.number(ka, 'echo');
    const nb = await h.number(kb, 'echo');
    const carrierA = await h.uac();
    const carrierB = await h.uac();
    const X = callIdFor('shared');

    const a = carrierA.call({ dialled: na, callId: X, fromTag: 'a1', credentials: credsOf(ka) });
    await connectWithEcho(a);
    const b = carrierB.call({ dialled: nb, callId: X, fromTag: 'b1', credentials: credsOf(kb) });
    await connectWithEcho(b);
    // During B's call A's echo goes on, and neither hears the other.
    await a.rtp.waitForEchoes(a.rtp.echoed + 25);
    await b.rtp.waitForEchoes(b.rtp.echoed + 25);
    expect((await b.bye()).status).toBe(200);
    b.rtp.stopStream();
    // After B's call, A's goes on.
    await a.rtp.waitForEchoes(a.rtp.echoed + 25);
    expect([a.rtp.foreign, b.rtp.foreign]).toEqual([0, 0]);
    expect(a.byeReceived).toBeNull();
    expect((await a.bye()).status).toBe(200);

    const [ra] = await h.endedRecords(ka, X, 1);
    const [rb] = await h.endedRecords(kb, X, 1);
    // A's record ended on A's BYE (not stuck "answered" because B's BYE carried the same Call-ID).
    expect(ra).toMatchObject({ status: 'ended', endReason: 'remote-bye', endedBy: 'caller', to: na, sipCallId: X });
    expect(rb).toMatchObject({ status: 'ended', endReason: 'remote-bye', endedBy: 'caller', to: nb, sipCallId: X });
    expect(ra!.id).not.toBe(rb!.id);
    expect(Date.parse(ra!.endedAt)).toBeGreaterThan(Date.parse(rb!.endedAt));
    // Each key sees only its own call.
    expect((await api(gw, 'GET', `/v1/calls/${rb!.id}`, { auth: ka.secret })).status).toBe(404);
    expect((await h.usage(ka)).totals.calls).toBe(1);
    expect((await h.usage(kb)).totals.calls).toBe(1);
  });

  it('the concurrency lease is renewed for the whole call: with leaseTtlSec 5 a call held three TTLs keeps its key\'s only slot (486 every 2 s), and frees it when it ends', async () => {
    const k = await h.key({ maxConcurrentCalls: 1 });
    const number = await h.number(k, 'echo');
    const uac = await h.uac();
    const a = uac.call({ dialled: number, credentials: credsOf(k) });
    await connectWithEcho(a);
    const heldSince = Date.now();
    // SIPp as a second carrier call every ~2 s for three lease TTLs: always busy.
    const probes: number[] = [];
    for (let i = 0; i < 12; i++) {
      const r = await runSipp({ scenario: 'uac-auth-expect', expect: 486, target: gw.sip.udp!, transport: 'udp', dialled: number, username: k.id, password: k.secret, timeoutSec: 10 });
      expect(r.code, `probe ${i + 1}, ${Math.round((Date.now() - heldSince) / 1000)} s into the call: ${r.errors || r.stdout.slice(-1000)}`).toBe(0);
      probes.push(Date.now() - heldSince);
      if (probes.at(-1)! >= 3 * 5000) break;
      await sleep(2000);
    }
    expect(probes.length).toBeGreaterThanOrEqual(5);
    expect(probes.at(-1)).toBeGreaterThanOrEqual(3 * 5000);
    // The first call is still up and echoing: nothing but its own end releases the slot.
    await a.rtp.waitForEchoes(a.rtp.echoed + 10);
    expect(a.byeReceived).toBeNull();
    expect((await a.bye()).status).toBe(200);
    a.rtp.stopStream();
    const next = uac.call({ dialled: number, credentials: credsOf(k) });
    await connectWithEcho(next);
    expect((await next.bye()).status).toBe(200);
    const [first] = await h.endedRecords(k, a.callId, 1);
    expect(first).toMatchObject({ status: 'ended', endReason: 'remote-bye' });
    expect(first!.billableSeconds).toBeGreaterThanOrEqual(15);
  });

  describe('revoking a key ends its live calls (policy.liveCalls: end)', () => {
    it('an inbound echo call: the caller gets a BYE, the record says key-revoked by policy, the usage is settled', async () => {
      const k = await h.key();
      const number = await h.number(k, 'echo');
      const uac = await h.uac();
      const call = uac.call({ dialled: number, credentials: credsOf(k) });
      await connectWithEcho(call);
      const rev = await h.revoke(k);
      expect(rev.status, rev.text).toBe(200);
      await call.waitForBye(5000);
      call.rtp.stopStream();
      const [rec] = await h.endedRecords(k, call.callId, 1);
      expect(rec).toMatchObject({ status: 'ended', endReason: 'key-revoked', endedBy: 'policy' });
      const usage = await h.usage(k);
      expect(usage.records.map((u: { callId: string }) => u.callId)).toEqual([rec!.id]);
    });

    it('an outbound call of a test key, answered by the test sink: it ends key-revoked and its usage is settled', async () => {
      const from = '+14155557001';
      const k = await h.key({ mode: 'test', scopes: ['calls:outbound', 'calls:read', 'usage:read'], allowedCountries: ['US'], callerIds: [from] });
      const placed = await api(gw, 'POST', '/v1/calls', { auth: k.secret, body: { to: '+12025550123', from, target: 'echo' } });
      expect(placed.status, placed.text).toBe(201);
      const id = placed.body.call.id as string;
      await h.record(id, (c) => c.status === 'answered' || Boolean(c.endedAt));
      await sleep(1000); // a second of echo between the gateway and the sink
      const rev = await h.revoke(k);
      expect(rev.status, rev.text).toBe(200);
      const rec = await h.record(id, (c) => Boolean(c.endedAt), 5000);
      expect(rec).toMatchObject({ status: 'ended', endReason: 'key-revoked', endedBy: 'policy', direction: 'outbound', details: { trunk: 'test-sink' } });
      expect(rec.details.media.packetsIn).toBeGreaterThan(10);
      expect(rec.billableSeconds).toBeGreaterThan(0.9);
      const usage = await until(async () => {
        const u = await h.usage(k);
        return u.totals.calls === 1 ? u : null;
      }, 5000, 'the outbound call\'s usage');
      expect(usage.records[0]).toMatchObject({ id: `use_${id}`, callId: id, direction: 'outbound' });
      expect(settledSeconds(rec)).toContain(usage.records[0].seconds);
    });

    it('an inbound call bridged to an agent: the agent gets stop, the caller a BYE', async () => {
      const server = h.keep(await NativeAgent.listen());
      const k = await h.key();
      const number = await h.number(k, 'agent', { url: `${server.url}/revoke`, protocol: 'native', sampleRate: 8000 });
      const uac = await h.uac();
      const call = uac.call({ dialled: number, credentials: credsOf(k) });
      await call.connect();
      call.rtp.stream(call.remoteMedia!);
      const agent = await server.agent(0, 5000);
      const start = await agent.waitForStart();
      await agent.waitForFrames(10);
      const rev = await h.revoke(k);
      expect(rev.status, rev.text).toBe(200);
      expect((await agent.waitForEvent('stop', 5000)).reason).toBe('key-revoked');
      await call.waitForBye(5000);
      call.rtp.stopStream();
      expect((await agent.waitForClose()).code).toBe(1000);
      expect(await h.record(start.callId)).toMatchObject({ status: 'ended', endReason: 'key-revoked', endedBy: 'policy', target: 'agent' });
    });
  });

  it('a CANCEL while the agent is being dialled aborts the dial: 180 first, then 200 + 487; the agent never gets its call, and the record ends cancelled by the caller long before the connect timeout', async () => {
    // The agent holds the WebSocket upgrade for 3 s before answering it.
    const server = h.keep(await PipecatLikeAgent.listen({ holdUpgradeMs: 3000 }));
    const k = await h.key();
    const number = await h.number(k, 'agent', { url: `${server.url}/slow` });
    const uac = await h.uac();
    const call = uac.call({ dialled: number, credentials: credsOf(k) });
    await call.start();
    await call.response(180);
    // The caller heard ringing while the gateway is still waiting on the agent.
    await until(() => server.requests.length === 1, 5000, 'the gateway\'s upgrade request to the agent');
    expect(server.agents).toHaveLength(0);
    expect((await call.cancel()).status).toBe(200);
    expect((await call.response(487)).status).toBe(487);
    // agents.connectTimeoutMs is 20 s: the record is complete well within that.
    const [rec] = await h.endedRecords(k, call.callId, 1, 10_000);
    expect(rec).toMatchObject({ status: 'failed', endReason: 'cancelled', endedBy: 'caller', target: 'agent' });
    // The gateway dropped the upgrade it was waiting on; the late answer reaches nobody.
    await until(() => server.abandoned === 1, 5000, 'the gateway to drop its held upgrade');
    await sleep(3500);
    expect(server.requests).toHaveLength(1);
    expect(server.agents).toHaveLength(0);
    expect(call.answer).toBeNull();
  });

  it('a 200 OK that cannot be sent ends the call (transport-error): the caller\'s TCP connection is gone when the agent answers, and the key\'s only slot is free again', async () => {
    // The agent answers the upgrade after 1 s; the caller drops its connection after the 180.
    const server = h.keep(await PipecatLikeAgent.listen({ holdUpgradeMs: 1000 }));
    const k = await h.key({ maxConcurrentCalls: 1 });
    const agentNumber = await h.number(k, 'agent', { url: `${server.url}/late` });
    const echoNumber = await h.number(k, 'echo');
    const uac = await RawUac.open({ transport: 'tcp', server: gw.sip.tcp! });
    const call = uac.call({ dialled: agentNumber, credentials: credsOf(k) });
    try {
      await call.start();
      await call.response(180);
      expect(server.agents).toHaveLength(0); // the 180 came before the agent answered
      uac.destroy();
    } finally {
      await uac.close();
    }
    const [rec] = await h.endedRecords(k, call.callId, 1, 10_000);
    expect(rec).toMatchObject({ status: 'failed', endReason: 'transport-error', endedBy: 'gateway', target: 'agent' });
    // The agent was reached, then let go without ever hearing of the call.
    const agent = await server.agent(0, 5000);
    await agent.waitForClose();
    expect([agent.connected, agent.start]).toEqual([null, null]);
    expect((await h.usage(k)).totals.calls).toBe(0);
    // The slot came back: a new call of the key is admitted.
    const again = (await h.uac('tcp')).call({ dialled: echoNumber, credentials: credsOf(k) });
    await connectWithEcho(again);
    expect((await again.bye()).status).toBe(200);
  });

  it('the same INVITE arriving again on another branch while the first is set up is a merged request (482), right behind the first or after its 180; the first call goes on', async () => {
    const server = h.keep(await PipecatLikeAgent.listen({ holdUpgradeMs: 1500 }));
    const k = await h.key();
    const number = await h.number(k, 'agent', { url: `${server.url}/merged` });
    const uac = await h.uac();

    // Right behind the first: before any answer to it.
    const first = uac.call({ dialled: number, credentials: credsOf(k) });
    await first.start();
    const behind = first.resendInvite(newBranch());
    expect((await first.finalResponseOn(behind)).status).toBe(482);
    await first.response(180);
    // After the 180, while the agent is being dialled.
    const second = uac.call({ dialled: number, credentials: credsOf(k) });
    await second.start();
    await second.response(180);
    const after = second.resendInvite(newBranch());
    expect((await second.finalResponseOn(after)).status).toBe(482);

    // Both first INVITEs are answered once the agent picks up; each is one call.
    for (const c of [first, second]) {
      expect((await c.finalResponse(10_000)).status).toBe(200);
      c.ack();
    }
    await server.agent(1, 5000);
    for (const c of [first, second]) expect((await c.bye()).status).toBe(200);
    for (const c of [first, second]) {
      const records = await h.endedRecords(k, c.callId, 1);
      expect(records[0]).toMatchObject({ status: 'ended', endReason: 'remote-bye' });
    }
  });
});

describe('agents.progress: ringback', () => {
  let gw: RunningGateway;
  let h: Harness;
  beforeAll(async () => {
    gw = await startGateway({ env: { ...BASE_ENV, TOLLGATE_AGENTS__PROGRESS: 'ringback' } });
    h = await new Harness(gw).init();
  });
  afterEach(() => h.closeAll());
  afterAll(() => gw.stop());

  it('while the agent is reached the caller gets 183 with the SDP answer and hears the ringing tone (440 + 480 Hz) as early media, then the 200 with the same SDP', async () => {
    // The agent answers its upgrade only after 2 s: the caller hears ringing meanwhile.
    const server = h.keep(await PipecatLikeAgent.listen({ holdUpgradeMs: 2000 }));
    const k = await h.key();
    const number = await h.number(k, 'agent', { url: `${server.url}/ringback` });
    const uac = await h.uac();
    const call = uac.call({ dialled: number, credentials: credsOf(k) });
    await call.start();
    const progress = await call.response(183);
    expect(progress.headers.get('Content-Type')).toBe('application/sdp');
    const early = mediaOf(progress.body);
    expect(early).not.toBeNull();
    // Ringing tone before the answer (RTP to the SDP address the INVITE came from).
    await until(() => call.rtp.payloads.length >= 50, 5000, 'a second of early media');
    expect(call.answer).toBeNull();
    const heard = ulawDecode(Buffer.concat(call.rtp.payloads.slice(0, 50)));
    // Two tones of equal level: each stands at about 0 dB against the other, far above the rest.
    expect(detectTone(heard, 8000, 440, { minSnrDb: -3 }).present, 'the 440 Hz of ringback').toBe(true);
    expect(detectTone(heard, 8000, 480, { minSnrDb: -3 }).present, 'the 480 Hz of ringback').toBe(true);
    expect(detectTone(heard, 8000, 1000, { minSnrDb: -3 }).present, 'nothing at 1 kHz').toBe(false);
    const ok = await call.finalResponse(10_000);
    expect(ok.status).toBe(200);
    call.ack();
    expect(mediaOf(ok.body)).toEqual(early);
    expect((await call.bye()).status).toBe(200);
  });
});

describe('policy.liveCalls: finish', () => {
  let gw: RunningGateway;
  let h: Harness;

  beforeAll(async () => {
    gw = await startGateway({ env: { ...BASE_ENV, TOLLGATE_POLICY__LIVE_CALLS: 'finish' } });
    h = await new Harness(gw).init();
  });
  afterAll(async () => {
    await h?.closeAll();
    expect(await gw?.stop()).toBe(0);
  });

  it('a revoke leaves the running call up until its own end, and the next INVITE is refused 403', async () => {
    const k = await h.key();
    const number = await h.number(k, 'echo');
    const uac = await h.uac();
    const call = uac.call({ dialled: number, credentials: credsOf(k) });
    await connectWithEcho(call);
    const rev = await h.revoke(k);
    expect(rev.status, rev.text).toBe(200);
    // Two seconds of echo after the revoke, and no BYE.
    await call.rtp.waitForEchoes(call.rtp.echoed + 100, 10_000);
    expect(call.byeReceived).toBeNull();
    const next = uac.call({ dialled: number, credentials: credsOf(k) });
    await next.start();
    expect((await next.finalResponse()).status).toBe(403);
    await call.rtp.waitForEchoes(call.rtp.echoed + 10);
    expect((await call.bye()).status).toBe(200);
    const [rec] = await h.endedRecords(k, call.callId, 1);
    expect(rec).toMatchObject({ status: 'ended', endReason: 'remote-bye', endedBy: 'caller' });
  });
});

describe('a cluster node (PostgreSQL + Redis)', () => {
  let gw: RunningGateway;
  let h: Harness;
  let backend: Backend;

  beforeAll(async () => {
    backend = clusterBackend();
    gw = await startGateway({ env: { ...BASE_ENV, ...backend.env } });
    h = await new Harness(gw).init();
  });
  afterAll(async () => {
    await h?.closeAll();
    expect(await gw?.stop()).toBe(0);
    await backend?.cleanup();
  });

  it('a key quarantined elsewhere (the leak scanner run against the shared store) ends its live call: key-quarantined by policy', async () => {
    const k = await h.key();
    const number = await h.number(k, 'echo');
    const uac = await h.uac();
    const call = uac.call({ dialled: number, credentials: credsOf(k) });
    await connectWithEcho(call);
    // The key leaks into a file; `tollgate scan --quarantine` (another process on the shared
    // store and bus) quarantines it, and the serving node hears of it on Redis.
    const leak = join(mkdtempSync(join(tmpdir(), 'tollgate-leak-')), 'settings.env');
    writeFileSync(leak, `CARRIER_KEY=${k.secret}\n`);
    const scan = await runCli(['scan', '--quarantine', '--json', leak], gw.env);
    expect(scan.code, scan.stderr).toBe(1);
    expect(JSON.parse(scan.stdout).quarantined).toEqual([k.id]);
    await call.waitForBye(5000);
    call.rtp.stopStream();
    const [rec] = await h.endedRecords(k, call.callId, 1);
    expect(rec).toMatchObject({ status: 'ended', endReason: 'key-quarantined', endedBy: 'policy' });
    // And the key's next call is refused.
    const next = uac.call({ dialled: number, credentials: credsOf(k) });
    await next.start();
    expect((await next.finalResponse()).status).toBe(403);
  });

  it('a copy of an INVITE right behind it, while its credentials are read from PostgreSQL, is merged (482), not a failed digest (407)', async () => {
    const uac = await h.uac();
    for (let i = 0; i < 3; i++) {
      // A fresh key each time: its credentials are not cached yet.
      const k = await h.key();
      const number = await h.number(k, 'echo');
      const call = uac.call({ dialled: number, credentials: credsOf(k) });
      await call.start();
      const copy = call.resendInvite(newBranch());
      expect((await call.finalResponseOn(copy)).status).toBe(482);
      expect((await call.finalResponse()).status).toBe(200);
      call.ack();
      expect((await call.bye()).status).toBe(200);
      expect(await h.endedRecords(k, call.callId, 1)).toHaveLength(1);
    }
  });
});

describe('draining on SIGTERM covers every call type', () => {
  it('an outbound call keeps the gateway up: new inbound, REST and stream calls are refused (503, DRAINING, close 1001) until it is hung up, then the gateway exits 0 with its record complete', async () => {
    const gw = await startGateway({ env: { ...BASE_ENV, TOLLGATE_SIP__DRAIN_TIMEOUT_SEC: '20' } });
    const h = await new Harness(gw).init();
    try {
      const from = '+14155557002';
      const k = await h.key({ mode: 'test', scopes: ['calls:outbound', 'calls:inbound', 'calls:read'], allowedCountries: ['US'], callerIds: [from] });
      const number = await h.number(k, 'echo');
      const placed = await api(gw, 'POST', '/v1/calls', { auth: k.secret, body: { to: '+12025550123', from, target: 'echo' } });
      expect(placed.status, placed.text).toBe(201);
      const id = placed.body.call.id as string;
      await h.record(id, (c) => c.status === 'answered' || Boolean(c.endedAt));
      const exited = new Promise<number | null>((res) => gw.process.once('exit', (code) => res(code)));
      gw.process.kill('SIGTERM');
      await waitForLog(gw, '"draining"', 1, 5000);

      // REST: 503 DRAINING.
      const refused = await api(gw, 'POST', '/v1/calls', { auth: k.secret, body: { to: '+12025550124', from, target: 'echo' } });
      expect([refused.status, refused.body?.error?.code]).toEqual([503, 'DRAINING']);
      // An agent stream's dial: closed as documented for a gateway shutting down (docs/agents.md).
      const agent = h.keep(await new NativeAgent().dial(`${gw.url.replace('http', 'ws')}/v1/stream`, { headers: { authorization: `Bearer ${k.secret}` } }));
      agent.send({ type: 'dial', to: '+12025550125', from });
      expect((await agent.waitForClose(5000)).code).toBe(1001);
      expect(agent.errors[0]?.message).toMatch(/DRAINING/);
      // Inbound: 503 before any challenge.
      const uac = await h.uac();
      const inbound = uac.call({ dialled: number, credentials: credsOf(k) });
      await inbound.start();
      const sip = await inbound.finalResponse();
      expect(sip.status).toBe(503);
      expect(sip.headers.get('Reason')).toContain('DRAINING');

      // The outbound call is still up, and the gateway with it.
      await sleep(1500);
      expect((await api(gw, 'GET', `/v1/calls/${id}`, { auth: k.secret })).body.call).toMatchObject({ status: 'answered', progress: 'answered' });
      expect(gw.process.exitCode).toBeNull();
      expect((await api(gw, 'DELETE', `/v1/calls/${id}`, { auth: k.secret })).status).toBe(204);
      expect(await exited).toBe(0);
      const shown = await runCli(['calls', 'show', id, '--json'], gw.env);
      expect(shown.code, shown.stderr).toBe(0);
      const rec = JSON.parse(shown.stdout);
      expect(rec.call ?? rec).toMatchObject({ id, status: 'ended', endReason: 'api-hangup', endedBy: 'api' });
      expect((rec.call ?? rec).billableSeconds).toBeGreaterThan(1);
    } finally {
      await h.closeAll();
      await gw.stop();
    }
  });
});
