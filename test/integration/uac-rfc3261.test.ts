import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { api, rememberSecret, runCli, startGateway, type RunningGateway } from '../helpers/gateway-process.js';
import { startSippScenario } from '../helpers/sipp.js';

/**
 * The UAC core against SIPp as the carrier (RFC 3261 §9.1, §13.2.2.4, §17.1.1.2): the ring
 * timeout CANCELs once, an answer crossing the CANCEL is ACKed then BYEd, and a second fork's
 * 2xx gets its own ACK and a BYE while the first call stays up. That Timer B no longer ends a
 * ringing call at 32 s is shown with fake timers in src/sip/sip-uac.test.ts.
 */
describe('outbound legs per RFC 3261 (SIPp as the carrier)', () => {
  let gw: RunningGateway;
  let admin: string;
  let seq = 0;

  beforeAll(async () => {
    gw = await startGateway();
    const r = await runCli(['keys', 'create', '--name', 'root', '--role', 'admin', '--json'], gw.env);
    admin = JSON.parse(r.stdout).secret;
    rememberSecret(admin);
  });
  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
  });

  /** A live key calling from its own number, and a trunk to the SIPp on `port` for one prefix. */
  const setUp = async (port: number, prefix: string) => {
    const from = `+1415555${String(3000 + ++seq).slice(-4)}`;
    const k = await api(gw, 'POST', '/v1/keys', {
      auth: admin,
      body: { name: 'agent', mode: 'live', scopes: ['calls:outbound', 'calls:read'], allowedCountries: ['US'], callerIds: [from], callsPerSecond: 50, cpsBurst: 50, maxConcurrentCalls: 10 },
    });
    expect(k.status, k.text).toBe(201);
    rememberSecret(k.body.secret);
    const t = await api(gw, 'POST', '/v1/trunks', { auth: admin, body: { name: `carrier-${port}`, host: '127.0.0.1', port, transport: 'udp', srtp: 'off', prefixes: [prefix], priority: seq } });
    expect(t.status, t.text).toBe(201);
    return { secret: k.body.secret as string, from };
  };

  const record = async (secret: string, id: string, until: (c: Record<string, any>) => boolean = (c) => Boolean(c.endedAt)) => {
    for (let i = 0; i < 150; i++) {
      const r = await api(gw, 'GET', `/v1/calls/${id}`, { auth: secret });
      if (r.status === 200 && until(r.body.call)) return r.body.call as Record<string, any>;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error(`call ${id} never reached the expected state`);
  };

  /** The requests of one method in a SIPp -trace_msg log (its entries are set apart by lines of dashes). */
  const requestLines = (log: string, method: string) => log.split(/-{10,}/).filter((m) => new RegExp(`^${method} sip:`, 'm').test(m));

  it('the ring timeout sends exactly one CANCEL (none for a later provisional), and the call ends no-answer after the 487', async () => {
    const uas = startSippScenario('uas-ring-cancel', { timeoutSec: 20 });
    const k = await setUp(uas.port, '+1202555');
    const placed = await api(gw, 'POST', '/v1/calls', { auth: k.secret, body: { to: '+12025550140', from: k.from, target: 'echo', ringTimeoutSec: 1 } });
    expect(placed.status, placed.text).toBe(201);
    const r = await uas.done;
    expect(r.code, r.errors || r.stdout.slice(-1500)).toBe(0);
    expect(requestLines(r.messages, 'CANCEL')).toHaveLength(1);
    expect(requestLines(r.messages, 'ACK')).toHaveLength(1);
    expect(await record(k.secret, placed.body.call.id)).toMatchObject({ status: 'failed', endReason: 'no-answer', endedBy: 'gateway' });
  });

  it('a 200 OK that crosses the CANCEL gets ACK then BYE, and the call ends no-answer', async () => {
    const uas = startSippScenario('uas-cancel-crossing', { timeoutSec: 20 });
    const k = await setUp(uas.port, '+1303555');
    const placed = await api(gw, 'POST', '/v1/calls', { auth: k.secret, body: { to: '+13035550141', from: k.from, target: 'echo', ringTimeoutSec: 1 } });
    expect(placed.status, placed.text).toBe(201);
    const r = await uas.done;
    // The scenario itself checks the order (CANCEL, then ACK with the 2xx's To tag, then BYE).
    expect(r.code, r.errors || r.stdout.slice(-1500)).toBe(0);
    expect(requestLines(r.messages, 'CANCEL')).toHaveLength(1);
    expect(requestLines(r.messages, 'BYE')).toHaveLength(1);
    const done = await record(k.secret, placed.body.call.id);
    expect(done).toMatchObject({ status: 'failed', endReason: 'no-answer', endedBy: 'gateway', billableSeconds: 0 });
    expect(done.answeredAt).toBeNull();
  });

  it('two 200 OKs with different To tags (forking): each gets its own ACK, the second a BYE, and the first call stays up until hung up', async () => {
    const uas = startSippScenario('uas-fork', { timeoutSec: 30 });
    const k = await setUp(uas.port, '+1404555');
    const placed = await api(gw, 'POST', '/v1/calls', { auth: k.secret, body: { to: '+14045550142', from: k.from, target: 'echo', maxDurationSec: 60 } });
    expect(placed.status, placed.text).toBe(201);
    const id = placed.body.call.id as string;
    expect((await record(k.secret, id, (c) => c.status === 'answered' || Boolean(c.endedAt))).status).toBe('answered');
    // Wait until the second fork was ended, then the first call must still be up.
    for (let i = 0; i < 100 && !gw.logs().includes('an unwanted 2xx on an outbound leg'); i++) await new Promise((res) => setTimeout(res, 100));
    expect(gw.logs()).toContain('an unwanted 2xx on an outbound leg');
    const live = await api(gw, 'GET', `/v1/calls/${id}`, { auth: k.secret });
    expect(live.body.call).toMatchObject({ status: 'answered', endedAt: null });
    expect((await api(gw, 'DELETE', `/v1/calls/${id}`, { auth: k.secret })).status).toBe(204);
    const r = await uas.done;
    // The scenario checks each ACK's and BYE's To tag in order: ACK fork1, ACK fork2, BYE fork2, BYE fork1.
    expect(r.code, r.errors || r.stdout.slice(-1500)).toBe(0);
    const byes = requestLines(r.messages, 'BYE');
    expect(byes).toHaveLength(2);
    expect(byes[0]).toMatch(/^To: .*;tag=fork2/m);
    expect(byes[1]).toMatch(/^To: .*;tag=fork1/m);
    expect(await record(k.secret, id)).toMatchObject({ status: 'ended', endReason: 'api-hangup', endedBy: 'api' });
  });
});
