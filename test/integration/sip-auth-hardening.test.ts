import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createSocket } from 'node:dgram';
import { spawn, spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { api, rememberSecret, runCli, startGateway, type RunningGateway } from '../helpers/gateway-process.js';
import { RawUac, type UacCall } from '../helpers/raw-uac.js';
import { runSipp } from '../helpers/sipp.js';
import { PipecatLikeAgent } from '../helpers/agents.js';
import { digestResponse } from '../../src/sip/digest-auth.js';
import { parseAuthParams } from '../../src/sip/sip-grammar.js';
import type { SipResponse } from '../../src/sip/sip-message.js';

/**
 * The SIP signalling attacks of the "hostile edges" issue, each against a real gateway process
 * with real peers (a raw SIP client, SIPp): digest answers without qop or for another number,
 * brute force and username scans from a carrier's own address, a challenge flood from another
 * address while the carrier calls, and overload (INVITEs piling up; the gateway starved of CPU).
 * Every source is its own 127/8 address, so one test's blocks never reach another's.
 */

/** SIPp 3.6 reads only the first challenge and knows only MD5. */
const SIPP_ENV = { TOLLGATE_SIP__DIGEST_ALGORITHMS: '[MD5, SHA-256]' };

interface Key {
  readonly id: string;
  readonly secret: string;
}

async function until<T>(fn: () => Promise<T | null | false> | T | null | false, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** A metric's value from the Prometheus text (the full series, labels included), 0 when absent. */
async function metric(gw: RunningGateway, series: string): Promise<number> {
  const text = (await api(gw, 'GET', '/metrics')).text;
  const found = text.split('\n').find((l) => l.startsWith(series + ' '));
  return found ? Number(found.slice(series.length + 1)) : 0;
}

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

  async key(): Promise<Key> {
    const k = await api(this.gw, 'POST', '/v1/keys', { auth: this.admin, body: { name: 'carrier', scopes: ['calls:inbound', 'usage:read'], callsPerSecond: 100, cpsBurst: 100, maxConcurrentCalls: 50 } });
    expect(k.status, k.text).toBe(201);
    rememberSecret(k.body.secret);
    return { id: k.body.key.id, secret: k.body.secret };
  }

  async number(key: Key, target: 'echo' | 'agent' = 'echo', agent?: Record<string, unknown>): Promise<string> {
    const number = `+1628557${String(1000 + ++this.seq).slice(-4)}`;
    const n = await api(this.gw, 'POST', '/v1/numbers', { auth: this.admin, body: { number, target, keyId: key.id, ...(agent ? { agent } : {}) } });
    expect(n.status, n.text).toBe(201);
    return number;
  }

  /** A raw UDP client bound to `host` (a 127/8 address standing for its own host). */
  async uac(host: string): Promise<RawUac> {
    return this.keep(await RawUac.open({ transport: 'udp', server: this.gw.sip.udp!, host }));
  }

  keep<T extends { close(): unknown }>(x: T): T {
    this.opened.push(x);
    return x;
  }

  async closeAll(): Promise<void> {
    for (const x of this.opened.splice(0).reverse()) await x.close();
  }

  async calls(key: Key): Promise<number> {
    const u = await api(this.gw, 'GET', '/v1/usage', { auth: key.secret });
    return u.body.totals.calls as number;
  }
}

/** The nonce of the first MD5 challenge of a 407. */
function md5Nonce(challenge: SipResponse): string {
  // entries(), not getAll(): a challenge's value has commas that are not list separators.
  const offer = challenge.headers.entries().filter((e) => e.name.toLowerCase() === 'proxy-authenticate').map((e) => parseAuthParams(e.value)).find((p) => p?.params.get('algorithm') === 'MD5');
  return offer!.params.get('nonce')!;
}

/** A call connected with digest, BYE'd, and the Proxy-Authorization it used (what a wire tap captures). */
async function capturedCall(call: UacCall): Promise<string> {
  await call.connect();
  const header = call.invite!.headers.get('Proxy-Authorization')!;
  expect((await call.bye()).status).toBe(200);
  return header;
}

describe('digest per RFC 7616 against a real gateway', () => {
  let gw: RunningGateway;
  let h: Harness;

  beforeAll(async () => {
    gw = await startGateway({
      env: { ...SIPP_ENV, TOLLGATE_SIP__BRUTE_FORCE__MAX_FAILURES: '3', TOLLGATE_SIP__BRUTE_FORCE__MAX_USERNAMES_PER_SOURCE: '3' },
    });
    h = await new Harness(gw).init();
  });
  afterAll(async () => {
    await h?.closeAll();
    expect(await gw?.stop()).toBe(0);
  });

  it('an answer without qop is refused although the password is right, and so is its replay; a captured qop answer replayed is refused too', async () => {
    const k = await h.key();
    const number = await h.number(k);
    const uac = await h.uac('127.0.0.11');
    const plain = uac.call({ dialled: number });
    await plain.sendInvite();
    const challenge = await plain.finalResponse();
    expect(challenge.status).toBe(407);
    expect(challenge.headers.get('Proxy-Authenticate')).toContain('qop="auth"');
    const nonce = md5Nonce(challenge);
    const response = digestResponse({ algorithm: 'MD5', username: k.id, realm: 'tollgate', password: k.secret, method: 'INVITE', uri: plain.requestUri, nonce });
    const noQop = `Digest username="${k.id}", realm="tollgate", nonce="${nonce}", uri="${plain.requestUri}", response="${response}", algorithm=MD5`;
    await plain.sendInvite(['Proxy-Authorization', noQop]);
    expect((await plain.finalResponse()).status).toBe(407);
    // The header captured and placed again on a call of the attacker's own: refused again.
    const replay = uac.call({ dialled: number, requestUri: plain.requestUri });
    await replay.sendInvite(['Proxy-Authorization', noQop]);
    expect((await replay.finalResponse()).status).toBe(407);
    expect(await metric(gw, 'tollgate_sip_auth_failures_total{reason="qop-required"}')).toBeGreaterThanOrEqual(2);

    // With qop: a call goes through once; its header replayed (same nonce and nc) places nothing.
    const legit = uac.call({ dialled: number, credentials: { username: k.id, password: k.secret } });
    const captured = await capturedCall(legit);
    const again = uac.call({ dialled: number, requestUri: legit.requestUri });
    await again.sendInvite(['Proxy-Authorization', captured]);
    expect((await again.finalResponse()).status).toBe(407);
    expect(await metric(gw, 'tollgate_sip_auth_failures_total{reason="replay"}')).toBeGreaterThanOrEqual(1);
    expect(await h.calls(k)).toBe(1);
  });

  it('a digest answer for one number places no call to another: its uri must be the Request-URI (400)', async () => {
    const k = await h.key();
    const paid = await h.number(k);
    const other = await h.number(k);
    const uac = await h.uac('127.0.0.12');
    const captured = await capturedCall(uac.call({ dialled: paid, credentials: { username: k.id, password: k.secret } }));
    // The attacker keeps the captured credentials and changes the number dialled.
    const forged = uac.call({ dialled: other });
    await forged.sendInvite(['Proxy-Authorization', captured]);
    const res = await forged.finalResponse();
    expect([res.status, res.reason]).toEqual([400, 'Digest URI Mismatch']);
    expect(await metric(gw, 'tollgate_sip_auth_failures_total{reason="uri-mismatch"}')).toBeGreaterThanOrEqual(1);
    expect(await h.calls(k)).toBe(1);
  });

  it('a brute force on one username blocks that username from the address; the carrier on the same address still calls', async () => {
    const carrier = await h.key();
    const victim = await h.key();
    const number = await h.number(carrier);
    const shared = '127.0.0.13';
    const uac = await h.uac(shared);
    const guess = (password: string) => uac.call({ dialled: number, credentials: { username: victim.id, password } });
    for (let i = 0; i < 2; i++) {
      const g = guess(`tg_live_guess${i}`);
      await g.start();
      expect((await g.finalResponse()).status).toBe(407);
    }
    // The third failure blocks (victim, 127.0.0.13): no answer to it, nor to anything after it,
    // not even the right password.
    const third = guess('tg_live_guess2');
    await third.start();
    await expect(third.finalResponse(1500)).rejects.toThrow(/timed out/);
    const right = guess(victim.secret);
    await right.start();
    await expect(right.finalResponse(1500)).rejects.toThrow(/timed out/);
    expect(await metric(gw, 'tollgate_sip_blocked_sources_total{reason="brute-force"}')).toBe(1);
    expect(await metric(gw, 'tollgate_sip_dropped_requests_total{reason="brute-force"}')).toBeGreaterThanOrEqual(1);
    // The carrier shares the address and is not locked out.
    const call = uac.call({ dialled: number, credentials: { username: carrier.id, password: carrier.secret } });
    await call.connect();
    expect((await call.bye()).status).toBe(200);
  });

  it('a source trying more usernames than sip.bruteForce.maxUsernamesPerSource may go on only with the usernames that authenticated from it', async () => {
    const carrier = await h.key();
    const newcomer = await h.key();
    const number = await h.number(carrier);
    const uac = await h.uac('127.0.0.14');
    await capturedCall(uac.call({ dialled: number, credentials: { username: carrier.id, password: carrier.secret } }));
    for (let i = 0; i < 4; i++) {
      const scan = uac.call({ dialled: number, credentials: { username: `key_scan${i}`, password: 'tg_live_nothing' } });
      await scan.start();
      if (i < 3) expect((await scan.finalResponse()).status).toBe(407);
    }
    expect(await until(() => metric(gw, 'tollgate_sip_blocked_sources_total{reason="username-scan"}'), 5000, 'the username-scan block')).toBe(1);
    // A username that never authenticated from this address is dropped unread now...
    const unseen = uac.call({ dialled: number, credentials: { username: newcomer.id, password: newcomer.secret } });
    await unseen.start();
    await expect(unseen.finalResponse(1500)).rejects.toThrow(/timed out/);
    // ...while the carrier that did goes on calling.
    const call = uac.call({ dialled: number, credentials: { username: carrier.id, password: carrier.secret } });
    await call.connect();
    expect((await call.bye()).status).toBe(200);
  });

  it('a challenge flood from 127.0.0.2 is limited, then blocked, while the carrier on 127.0.0.1 completes its SIPp calls', async () => {
    const carrier = await h.key();
    const number = await h.number(carrier);
    const flood = createSocket('udp4');
    await new Promise<void>((r) => flood.bind(0, '127.0.0.2', () => r()));
    let challenged = 0;
    flood.on('message', (m) => {
      if (m.subarray(0, 12).toString() === 'SIP/2.0 407 ') challenged++;
    });
    const port = flood.address().port;
    const { address, port: gwPort } = gw.sip.udp!;
    const invite = (i: number): Buffer => Buffer.from([
      `INVITE sip:${number}@${address}:${gwPort} SIP/2.0`,
      `Via: SIP/2.0/UDP 127.0.0.2:${port};branch=z9hG4bKflood${i};rport`,
      'Max-Forwards: 70',
      `From: <sip:flood@127.0.0.2>;tag=f${i}`,
      `To: <sip:${number}@${address}>`,
      `Call-ID: flood-${i}`,
      'CSeq: 1 INVITE',
      `Contact: <sip:flood@127.0.0.2:${port}>`,
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n'));
    // 20,000 INVITEs without credentials at about 4,000/s (the rate of the reported attack):
    // 200 every 50 ms, for 15 s at most. Faster, the kernel drops most of them before the
    // gateway reads them, which tests the socket buffer rather than tollgate.
    const TOTAL = 20_000;
    let sent = 0;
    const deadline = Date.now() + 15_000;
    const flooding = (async () => {
      while (sent < TOTAL && Date.now() < deadline) {
        for (let j = 0; j < 200 && sent < TOTAL; j++) flood.send(invite(sent++), gwPort, address);
        await sleep(50);
      }
    })();
    try {
      const sipp = await runSipp({ scenario: 'uac-auth-call', target: gw.sip.udp!, transport: 'udp', dialled: number, username: carrier.id, password: carrier.secret, calls: 20, rate: 10, limit: 20, holdMs: 200, timeoutSec: 40, localAddress: '127.0.0.1' });
      await flooding;
      expect(sipp.code, sipp.errors.slice(0, 2000)).toBe(0);
      expect([sipp.successful, sipp.failed]).toEqual([20, 0]);
    } finally {
      await flooding;
      flood.close();
    }
    expect(sent).toBeGreaterThan(1000);
    // Answered: the burst and the rate until the block (sip.challenges defaults: 400, 200/s, a
    // block after 2000 over the rate within 10 s). The rest got nothing.
    expect(challenged).toBeGreaterThan(0);
    expect(challenged).toBeLessThan(sent / 4);
    expect(await metric(gw, 'tollgate_sip_blocked_sources_total{reason="flood"}')).toBeGreaterThanOrEqual(1);
    expect(await metric(gw, 'tollgate_sip_challenges_total{outcome="rate-limited"}')).toBeGreaterThan(0);
    expect(await metric(gw, 'tollgate_sip_dropped_requests_total{reason="flood"}')).toBeGreaterThan(0);
    // The flood left no error in the log (the block is one sampled warning).
    expect(gw.logs().split('\n').filter((l) => l.includes('"level":"error"'))).toEqual([]);
  });
});

/** Whether this machine lets us run a real-time busy loop pinned to one core (root, taskset, chrt). */
function canStarveCpu(): boolean {
  return spawnSync('taskset', ['-c', '0', 'chrt', '-f', '10', 'true']).status === 0;
}

describe('overload control against a real gateway', () => {
  it('while INVITEs in progress reach sip.overload.maxPendingInvites, a new INVITE gets 503 with Retry-After; the admitted call\'s BYE is still answered; then calls are admitted again', async () => {
    const gw = await startGateway({ env: { ...SIPP_ENV, TOLLGATE_SIP__OVERLOAD__MAX_PENDING_INVITES: '1', TOLLGATE_SIP__OVERLOAD__RETRY_AFTER_SEC: '7' } });
    const h = await new Harness(gw).init();
    const agents = h.keep(await PipecatLikeAgent.listen({ holdUpgradeMs: 3000 }));
    try {
      const k = await h.key();
      const echo = await h.number(k);
      const slow = await h.number(k, 'agent', { url: `${agents.url}/slow` });
      const creds = { username: k.id, password: k.secret };
      const uac = await h.uac('127.0.0.21');
      const up = uac.call({ dialled: echo, credentials: creds });
      await up.connect();
      // One INVITE in progress: the agent takes 3 s to answer.
      const pending = uac.call({ dialled: slow, credentials: creds });
      await pending.start();
      await pending.response(180);
      const refused = uac.call({ dialled: echo, credentials: creds });
      await refused.start();
      const r = await refused.finalResponse();
      expect(r.status).toBe(503);
      expect(r.headers.get('Retry-After')).toBe('7');
      expect(r.headers.get('Reason')).toBe('SIP;cause=503;text="OVERLOADED"');
      // In-dialog requests are never refused by overload.
      expect((await up.bye()).status).toBe(200);
      expect(await metric(gw, 'tollgate_sip_overload_refusals_total{signal="pending-invites"}')).toBeGreaterThanOrEqual(1);
      // The slow call is answered, and with nothing in progress a new call is admitted.
      expect((await pending.finalResponse(10_000)).status).toBe(200);
      pending.ack();
      const later = uac.call({ dialled: echo, credentials: creds });
      await later.connect();
      expect((await later.bye()).status).toBe(200);
      expect((await pending.bye()).status).toBe(200);
    } finally {
      await h.closeAll();
      await gw.stop();
    }
  });

  it.skipIf(!canStarveCpu())('a gateway starved of CPU (a real-time busy loop pinned to its core) answers new INVITEs 503 with Retry-After, then admits them again', async () => {
    const gw = await startGateway({ env: { ...SIPP_ENV, TOLLGATE_SIP__OVERLOAD__MAX_EVENT_LOOP_DELAY_MS: '100', TOLLGATE_SIP__OVERLOAD__SAMPLE_MS: '200', TOLLGATE_SIP__OVERLOAD__RETRY_AFTER_SEC: '3' } });
    const h = await new Harness(gw).init();
    const spinners = new Set<ReturnType<typeof spawn>>();
    try {
      const k = await h.key();
      const number = await h.number(k);
      // Every thread of the gateway on core 0.
      expect(spawnSync('taskset', ['-a', '-p', '-c', '0', String(gw.process.pid)]).status).toBe(0);
      const uac = await h.uac('127.0.0.22');
      /** One INVITE without credentials: 407 when admitted, 503 when overloaded. */
      const probe = async (): Promise<SipResponse> => {
        const c = uac.call({ dialled: number });
        await c.sendInvite();
        return c.finalResponse(10_000);
      };
      expect((await probe()).status).toBe(407);
      // A SCHED_FIFO busy loop on core 0 for 0.6 s: the gateway gets no CPU meanwhile (its
      // event loop stalls as under saturation). Probes sent meanwhile and after are answered
      // once it runs again; at most 8 rounds.
      let overloaded: SipResponse | null = null;
      for (let round = 0; round < 8 && !overloaded; round++) {
        const spinner = spawn('timeout', ['-s', 'KILL', '0.6', 'taskset', '-c', '0', 'chrt', '-f', '10', 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' });
        spinners.add(spinner);
        const done = new Promise<void>((r) => spinner.once('exit', () => r()));
        await sleep(100);
        const answers = await Promise.all(Array.from({ length: 12 }, async (_, i) => {
          await sleep(i * 80);
          return probe();
        }));
        await done;
        spinners.delete(spinner);
        overloaded = answers.find((a) => a.status === 503) ?? null;
      }
      expect(overloaded, 'no 503 while the gateway was starved').not.toBeNull();
      expect(overloaded!.headers.get('Retry-After')).toBe('3');
      expect(overloaded!.headers.get('Reason')).toBe('SIP;cause=503;text="OVERLOADED"');
      expect(await metric(gw, 'tollgate_sip_overload_refusals_total{signal="event-loop-delay"}')).toBeGreaterThanOrEqual(1);
      // With the CPU back, new INVITEs are challenged again (bounded wait).
      await until(async () => (await probe()).status === 407, 20_000, 'a 407 once the load is gone');
    } finally {
      for (const s of spinners) s.kill('SIGKILL');
      await h.closeAll();
      await gw.stop();
    }
  });
});
