import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createSocket } from 'node:dgram';
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { connect } from 'node:net';
import { api, rememberSecret, runCli, startGateway, waitForLog, type RunningGateway } from '../helpers/gateway-process.js';
import { runSipp, toneFile, type SippOptions } from '../helpers/sipp.js';
import { RawUac } from '../helpers/raw-uac.js';
import { until } from '../../src/testing/wait.js';

/** SIPp 3.6 reads only the first challenge and knows only MD5. */
const SIPP_ENV = { TOLLGATE_SIP__DIGEST_ALGORITHMS: '[MD5, SHA-256]' };

describe('SIP trunking against SIPp', () => {
  let gw: RunningGateway;
  let admin: string;
  let tone: string;
  let seq = 0;

  beforeAll(async () => {
    gw = await startGateway({ env: SIPP_ENV });
    const r = await runCli(['keys', 'create', '--name', 'root', '--role', 'admin', '--json'], gw.env);
    admin = JSON.parse(r.stdout).secret;
    rememberSecret(admin);
    tone = await toneFile(1);
  });
  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
  });

  /** A trunk key and a number routed to it. */
  const trunk = async (policy: Record<string, unknown> = {}, target = 'echo') => {
    const k = await api(gw, 'POST', '/v1/keys', { auth: admin, body: { name: 'trunk', scopes: ['calls:inbound', 'usage:read'], callsPerSecond: 100, cpsBurst: 100, maxConcurrentCalls: 100, ...policy } });
    expect(k.status, k.text).toBe(201);
    rememberSecret(k.body.secret);
    const number = `+1415555${String(1000 + ++seq).slice(-4)}`;
    const n = await api(gw, 'POST', '/v1/numbers', { auth: admin, body: { number, target, keyId: k.body.key.id } });
    expect(n.status, n.text).toBe(201);
    return { id: k.body.key.id as string, secret: k.body.secret as string, number };
  };
  const sipp = (t: { id: string; secret: string; number: string }, o: Partial<SippOptions>) =>
    runSipp({
      scenario: 'uac-auth-expect',
      target: gw.sip[o.transport ?? 'udp']!,
      transport: 'udp',
      dialled: t.number,
      username: t.id,
      password: t.secret,
      rtpFile: tone,
      ...o,
    });

  it('answers OPTIONS without authentication, as a trunk health ping', async () => {
    const sock = createSocket('udp4');
    const reply = await new Promise<string>((res, rej) => {
      const timer = setTimeout(() => rej(new Error('no answer to OPTIONS')), 5000);
      sock.on('message', (m) => {
        clearTimeout(timer);
        res(m.toString());
      });
      sock.bind(0, '127.0.0.1', () => {
        const { port } = sock.address();
        const msg = [
          `OPTIONS sip:${gw.sip.udp!.address}:${gw.sip.udp!.port} SIP/2.0`,
          `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bKopt1;rport`,
          'From: <sip:monitor@127.0.0.1>;tag=1',
          'To: <sip:tollgate@127.0.0.1>',
          'Call-ID: options-1',
          'CSeq: 1 OPTIONS',
          'Max-Forwards: 70',
          'Content-Length: 0',
          '',
          '',
        ].join('\r\n');
        sock.send(msg, gw.sip.udp!.port, gw.sip.udp!.address);
      });
    });
    sock.close();
    expect(reply.split('\r\n')[0]).toBe('SIP/2.0 200 OK');
    expect(reply).toMatch(/\r\nAllow: .*INVITE/);
    expect(reply).toMatch(/;rport=\d+/);
  });

  it.each(['udp', 'tcp'] as const)('a carrier call over %s authenticates with the key, is answered, echoes RTP, and is metered', async (transport) => {
    const t = await trunk();
    const r = await sipp(t, { scenario: 'uac-auth-echo', transport });
    expect(r.code, r.errors || r.stdout.slice(-2000)).toBe(0);
    expect(r.successful).toBe(1);
    // The media worker saw the caller's RTP and sent audio back.
    const closed = await waitForLog(gw, 'call media closed', transport === 'udp' ? 1 : 2);
    const media = closed.at(-1)?.media as { packetsIn: number; packetsOut: number } | undefined;
    expect(media?.packetsIn).toBeGreaterThan(100);
    expect(media?.packetsOut).toBeGreaterThan(100);
    const usage = await api(gw, 'GET', '/v1/usage', { auth: t.secret });
    expect(usage.body.totals.calls).toBe(1);
    expect(usage.body.totals.seconds).toBeGreaterThanOrEqual(3);
  });

  it('handles 20 concurrent calls with RTP, none failing', async () => {
    const t = await trunk();
    const r = await sipp(t, { scenario: 'uac-auth-echo', calls: 20, limit: 20, rate: 20, timeoutSec: 40 });
    expect(r.code, r.errors.slice(0, 2000)).toBe(0);
    expect([r.successful, r.failed]).toEqual([20, 0]);
  });

  describe('every refusal has its SIP answer', () => {
    it('a wrong password is challenged again (407)', async () => {
      const t = await trunk();
      const r = await sipp({ ...t, secret: t.secret.slice(0, -3) + 'AAA' }, { expect: 407 });
      expect(r.code, r.errors).toBe(0);
    });

    it('an unknown number is 404, and so is a number owned by another key', async () => {
      const t = await trunk();
      expect((await sipp({ ...t, number: '+14155559999' }, { expect: 404 })).code).toBe(0);
      const other = await trunk();
      expect((await sipp({ ...t, number: other.number }, { expect: 404 })).code).toBe(0);
      // Byte for byte the same answer, Reason header included: numbers cannot be enumerated.
      const uac = await RawUac.open({ transport: 'udp', server: gw.sip.udp! });
      try {
        const answer = async (dialled: string) => {
          const call = uac.call({ dialled, credentials: { username: t.id, password: t.secret } });
          await call.start();
          const res = await call.finalResponse();
          return { status: res.status, reason: res.reason, reasonHeader: res.headers.get('Reason'), warning: res.headers.get('Warning') };
        };
        const unknown = await answer('+14155559999');
        const notOwned = await answer(other.number);
        expect(unknown).toEqual({ status: 404, reason: 'Not Found', reasonHeader: 'SIP;cause=404;text="NUMBER_NOT_FOUND"', warning: undefined });
        expect(notOwned).toEqual(unknown);
      } finally {
        await uac.close();
      }
    });

    it('a revoked key is 403', async () => {
      const t = await trunk();
      await api(gw, 'POST', `/v1/keys/${t.id}/revoke`, { auth: admin, body: {} });
      const r = await sipp(t, { expect: 403 });
      expect(r.code, r.errors).toBe(0);
    });

    it('a source outside the key\'s CIDR allowlist is 403', async () => {
      const t = await trunk({ allowedCidrs: ['10.0.0.0/8'] });
      expect((await sipp(t, { expect: 403 })).code).toBe(0);
    });

    it('a TLS-only key over UDP is 403', async () => {
      const t = await trunk({ requireTls: true });
      expect((await sipp(t, { expect: 403 })).code).toBe(0);
    });

    it('a key without calls:inbound is 403', async () => {
      const t = await trunk({ scopes: ['usage:read'] });
      expect((await sipp(t, { expect: 403 })).code).toBe(0);
    });

    it('over the CPS limit is 503 with Retry-After', async () => {
      const t = await trunk({ callsPerSecond: 0.1, cpsBurst: 1 });
      expect((await sipp(t, { expect: 200 })).code).toBe(0);
      const r = await sipp(t, { expect: 503 });
      expect(r.code, r.errors).toBe(0);
    });

    it('over the concurrency limit is 486 while a call is up', async () => {
      const t = await trunk({ maxConcurrentCalls: 1 });
      // Held 10 s: the second call is placed once the first is answered, with room for a slow machine.
      const long = sipp(t, { scenario: 'uac-auth-call', holdMs: 10_000 });
      await until('the first call to be answered', async () => {
        const calls = await api(gw, 'GET', `/v1/calls?keyId=${t.id}`, { auth: admin });
        return calls.body.calls?.some((c: { status: string }) => c.status === 'answered');
      }, 20_000, 100);
      const busy = await sipp(t, { expect: 486 });
      expect(busy.code, busy.errors).toBe(0);
      expect((await long).code).toBe(0);
    });

    it('an exhausted budget is 403', async () => {
      // Nothing left: not even the 10 s a budget-limited call needs at least.
      const t = await trunk({ budget: { amount: 0, period: 'month' }, maxCallDurationSec: 3600 });
      expect((await sipp(t, { expect: 403 })).code).toBe(0);
    });
  });

  it('never crashes on the RFC 4475 torture messages and mutated INVITEs, over UDP and TCP', async () => {
    const dir = resolve(import.meta.dirname, '../fixtures/rfc4475');
    const corpus = readdirSync(dir).map((f) => readFileSync(resolve(dir, f)));
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const base = corpus[0]!;
    for (let i = 0; i < 300; i++) {
      const b = Buffer.from(base);
      for (let j = 0; j < 5; j++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      corpus.push(rnd() < 0.3 ? b.subarray(0, Math.floor(rnd() * b.length)) : b);
    }
    const sock = createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    for (const m of corpus) sock.send(m, gw.sip.udp!.port, gw.sip.udp!.address);
    const tcp = connect(gw.sip.tcp!.port, gw.sip.tcp!.address);
    await new Promise<void>((r) => tcp.once('connect', () => r()));
    for (const m of corpus.slice(0, 60)) tcp.write(m);
    await new Promise((r) => setTimeout(r, 1000));
    tcp.destroy();
    sock.close();
    expect(gw.process.exitCode).toBeNull();
    expect((await api(gw, 'GET', '/healthz')).status).toBe(200);
    // Still answering calls.
    const t = await trunk();
    expect((await sipp(t, { expect: 200 })).code).toBe(0);
  });
});

describe('brute-force protection', () => {
  it('blocks a username from a source after repeated authentication failures', async () => {
    const gw = await startGateway({ env: { ...SIPP_ENV, TOLLGATE_SIP__BRUTE_FORCE__MAX_FAILURES: '3', TOLLGATE_SIP__BRUTE_FORCE__BLOCK_SEC: '60' } });
    try {
      const r = await runCli(['keys', 'create', '--name', 't', '--scopes', 'calls:inbound', '--json'], gw.env);
      const k = JSON.parse(r.stdout);
      rememberSecret(k.secret);
      const wrong = { scenario: 'uac-auth-expect' as const, target: gw.sip.udp!, transport: 'udp' as const, dialled: '+14155550100', username: k.key.id, password: 'tg_live_wrong', timeoutSec: 5 };
      for (let i = 0; i < 3; i++) await runSipp({ ...wrong, expect: 407 });
      // Blocked now: no answer at all, even with the right password.
      const blocked = await runSipp({ ...wrong, password: k.secret, expect: 404 });
      expect(blocked.code).not.toBe(0);
      const metrics = await api(gw, 'GET', '/metrics');
      expect(metrics.text).toMatch(/tollgate_sip_blocked_sources_total\{reason="brute-force"\} 1/);
      expect(metrics.text).toMatch(/tollgate_sip_auth_failures_total\{reason="response"\} [3-9]/);
    } finally {
      await gw.stop();
    }
  });
});

describe('media timeout', () => {
  it('a caller that sends no RTP is hung up with a BYE after media.timeoutSec', async () => {
    const gw = await startGateway({ env: { ...SIPP_ENV, TOLLGATE_MEDIA__TIMEOUT_SEC: '1' } });
    try {
      const r = await runCli(['keys', 'create', '--name', 't', '--scopes', 'calls:inbound', '--json'], gw.env);
      const k = JSON.parse(r.stdout);
      rememberSecret(k.secret);
      await runCli(['numbers', 'add', '+14155550100', '--target', 'echo', '--key-id', k.key.id], gw.env);
      // The scenario holds 3 s without RTP before its own BYE: tollgate's BYE comes first.
      const run = await runSipp({ scenario: 'uac-auth-call', target: gw.sip.udp!, transport: 'udp', dialled: '+14155550100', username: k.key.id, password: k.secret, holdMs: 3000, timeoutSec: 10 });
      expect(run.errors).toContain('unexpected BYE'); // SIPp was still holding when tollgate hung up
      const ended = await waitForLog(gw, '"call ended"');
      expect(ended.map((e) => e.reason)).toEqual(['media-timeout']);
    } finally {
      await gw.stop();
    }
  });
});

describe('SIP over WebSocket (RFC 7118)', () => {
  it('answers OPTIONS on WS and WSS with the sip subprotocol, and refuses a WebSocket without it', async () => {
    const { WebSocket } = await import('ws');
    const gw = await startGateway({});
    try {
      const url = `ws://127.0.0.1:${gw.sip.ws!.port}`;
      const ws = new WebSocket(url, 'sip');
      await new Promise((res, rej) => (ws.once('open', res), ws.once('error', rej)));
      const reply = new Promise<string>((res) => ws.once('message', (d: Buffer) => res(d.toString('utf8'))));
      ws.send(['OPTIONS sip:tollgate@127.0.0.1 SIP/2.0', 'Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKws1;rport', 'From: <sip:app@invalid>;tag=w1', 'To: <sip:tollgate@127.0.0.1>', 'Call-ID: ws-1', 'CSeq: 1 OPTIONS', 'Max-Forwards: 70', 'Content-Length: 0', '', ''].join('\r\n'));
      const text = await reply;
      expect(text.split('\r\n')[0]).toBe('SIP/2.0 200 OK');
      expect(text).toMatch(/received=127\.0\.0\.1/);
      ws.close();
      const plain = new WebSocket(url);
      const closed = await new Promise<number>((res) => {
        plain.once('close', (code) => res(code));
        plain.once('error', () => res(-1));
      });
      expect(closed).not.toBe(1000);
      // The same over TLS (WSS), trusting the gateway's development certificate.
      const { readFileSync } = await import('node:fs');
      const ca = readFileSync(`${gw.env.TOLLGATE_DATA_DIR}/tls/dev-cert.pem`);
      const wss = new WebSocket(`wss://127.0.0.1:${gw.sip.wss!.port}`, 'sip', { ca });
      await new Promise((res, rej) => (wss.once('open', res), wss.once('error', rej)));
      const secure = new Promise<string>((res) => wss.once('message', (d: Buffer) => res(d.toString('utf8'))));
      wss.send(['OPTIONS sip:tollgate@127.0.0.1 SIP/2.0', 'Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKwss1;rport', 'From: <sip:app@invalid>;tag=w2', 'To: <sip:tollgate@127.0.0.1>', 'Call-ID: wss-1', 'CSeq: 1 OPTIONS', 'Max-Forwards: 70', 'Content-Length: 0', '', ''].join('\r\n'));
      expect((await secure).split('\r\n')[0]).toBe('SIP/2.0 200 OK');
      wss.close();
    } finally {
      await gw.stop();
    }
  });
});

describe('a call over SIP-over-WebSocket with RTP', () => {
  it('authenticates, is answered, echoes RTP and hangs up, all on the WebSocket the client opened', async () => {
    const { WebSocket } = await import('ws');
    const { createHash } = await import('node:crypto');
    const gw = await startGateway({ env: { TOLLGATE_SIP__DIGEST_ALGORITHMS: '[SHA-256, MD5]' } });
    const media = createSocket('udp4');
    try {
      const r = await runCli(['keys', 'create', '--name', 'ws', '--scopes', 'calls:inbound', '--json'], gw.env);
      const k = JSON.parse(r.stdout);
      rememberSecret(k.secret);
      await runCli(['numbers', 'add', '+14155550100', '--target', 'echo', '--key-id', k.key.id], gw.env);
      await new Promise<void>((res) => media.bind(0, '127.0.0.1', () => res()));
      const ws = new WebSocket(`ws://127.0.0.1:${gw.sip.ws!.port}`, 'sip');
      await new Promise((res, rej) => (ws.once('open', res), ws.once('error', rej)));
      const inbox: string[] = [];
      const waiters: ((m: string) => void)[] = [];
      ws.on('message', (d: Buffer) => {
        const m = d.toString('utf8');
        const w = waiters.shift();
        if (w) w(m);
        else inbox.push(m);
      });
      const next = (pred: (m: string) => boolean) =>
        new Promise<string>((res, rej) => {
          const timer = setTimeout(() => rej(new Error('no SIP message in time')), 5000);
          const take = (m: string) => {
            if (pred(m)) {
              clearTimeout(timer);
              res(m);
            } else waiters.push(take);
          };
          const queued = inbox.shift();
          if (queued !== undefined) take(queued);
          else waiters.push(take);
        });
      const status = (m: string) => Number(m.split(' ')[1]);
      const sdp = ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', `m=audio ${media.address().port} RTP/AVP 8 0`, 'a=rtpmap:8 PCMA/8000', 'a=rtpmap:0 PCMU/8000', 'a=sendrecv', ''].join('\r\n');
      const uri = 'sip:+14155550100@127.0.0.1';
      const request = (method: string, cseq: number, branch: string, extra: string[] = [], body = '', to = `<${uri}>`) =>
        [`${method} ${uri} SIP/2.0`, `Via: SIP/2.0/WS client.invalid;branch=${branch};rport`, 'From: <sip:app@invalid>;tag=wsf1', `To: ${to}`, 'Call-ID: ws-call-1', `CSeq: ${cseq} ${method}`, 'Contact: <sip:app@client.invalid;transport=ws>', 'Max-Forwards: 70', ...extra, ...(body ? ['Content-Type: application/sdp'] : []), `Content-Length: ${Buffer.byteLength(body)}`, '', body].join('\r\n');
      ws.send(request('INVITE', 1, 'z9hG4bKw1', [], sdp));
      const challenge = await next((m) => status(m) === 407);
      const nonce = /Proxy-Authenticate: Digest [^\r\n]*nonce="([^"]+)"[^\r\n]*algorithm=SHA-256/.exec(challenge)![1]!;
      ws.send(request('ACK', 1, 'z9hG4bKw1', [], '', `<${uri}>;tag=${/To: [^\r\n]*tag=([^;\r\n]+)/.exec(challenge)![1]}`));
      const H = (s: string) => createHash('sha256').update(s).digest('hex');
      const response = H(`${H(`${k.key.id}:tollgate:${k.secret}`)}:${nonce}:00000001:abc123:auth:${H(`INVITE:${uri}`)}`);
      ws.send(request('INVITE', 2, 'z9hG4bKw2', [`Proxy-Authorization: Digest username="${k.key.id}", realm="tollgate", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="abc123"`], sdp));
      const ok = await next((m) => status(m) === 200 && m.includes('CSeq: 2 INVITE'));
      expect(ok).toMatch(/m=audio \d+ RTP\/AVP 8/); // the offerer's first codec: PCMA
      const toTag = /To: [^\r\n]*tag=([^;\r\n]+)/.exec(ok)![1]!;
      const rtpPort = Number(/m=audio (\d+)/.exec(ok)![1]);
      ws.send(request('ACK', 2, 'z9hG4bKw3', [], '', `<${uri}>;tag=${toTag}`));
      const echoed: Buffer[] = [];
      media.on('message', (m) => echoed.push(m));
      for (let i = 0; i < 25; i++) {
        const p = Buffer.alloc(172, 0xd5);
        p[0] = 0x80;
        p[1] = 8;
        p.writeUInt16BE(i, 2);
        p.writeUInt32BE(i * 160, 4);
        p.writeUInt32BE(4242, 8);
        media.send(p, rtpPort, '127.0.0.1');
        await new Promise((res) => setTimeout(res, 20));
      }
      await until('16 echoed packets', () => echoed.length > 15);
      expect(echoed[0]![1]! & 0x7f).toBe(8);
      ws.send(request('BYE', 3, 'z9hG4bKw4', [], '', `<${uri}>;tag=${toTag}`));
      await next((m) => status(m) === 200 && m.includes('CSeq: 3 BYE'));
      ws.close();
    } finally {
      media.close();
      await gw.stop();
    }
  });
});

describe('draining on SIGTERM', () => {
  it('refuses new calls with 503 while a running call finishes normally, then exits 0', async () => {
    const gw = await startGateway({ env: { ...SIPP_ENV, TOLLGATE_SIP__DRAIN_TIMEOUT_SEC: '20' } });
    const r = await runCli(['keys', 'create', '--name', 't', '--scopes', 'calls:inbound,calls:read', '--cps', '100', '--burst', '100', '--max-concurrent', '10', '--json'], gw.env);
    const k = JSON.parse(r.stdout);
    rememberSecret(k.secret);
    await runCli(['numbers', 'add', '+14155550100', '--target', 'echo', '--key-id', k.key.id], gw.env);
    const tone = await toneFile(1);
    const base = { target: gw.sip.udp!, transport: 'udp' as const, dialled: '+14155550100', username: k.key.id, password: k.secret, rtpFile: tone };
    const exited = new Promise<number | null>((res) => gw.process.once('exit', (code) => res(code)));
    const running = runSipp({ ...base, scenario: 'uac-auth-echo' });
    await until('the call to be answered', async () => {
      const calls = await api(gw, 'GET', '/v1/calls', { auth: k.secret });
      return calls.body.calls?.some((c: { status: string }) => c.status === 'answered');
    }, 20_000, 100);
    gw.process.kill('SIGTERM');
    await waitForLog(gw, '"draining"');
    // A new INVITE is refused before any challenge.
    const sock = createSocket('udp4');
    await new Promise<void>((res) => sock.bind(0, '127.0.0.1', () => res()));
    const answer = new Promise<string>((res) => sock.once('message', (m) => res(m.toString())));
    const sdp = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n';
    sock.send(
      [`INVITE sip:+14155550100@127.0.0.1 SIP/2.0`, `Via: SIP/2.0/UDP 127.0.0.1:${sock.address().port};branch=z9hG4bKdrain;rport`, 'From: <sip:c@127.0.0.1>;tag=d1', 'To: <sip:+14155550100@127.0.0.1>', 'Call-ID: drain-1', 'CSeq: 1 INVITE', 'Max-Forwards: 70', 'Content-Type: application/sdp', `Content-Length: ${sdp.length}`, '', sdp].join('\r\n'),
      gw.sip.udp!.port,
      '127.0.0.1',
    );
    const refusal = await answer;
    sock.close();
    expect(refusal.split('\r\n')[0]).toBe('SIP/2.0 503 Service Unavailable');
    expect(refusal).toMatch(/\r\nRetry-After: \d+/);
    expect(refusal).toContain('text="DRAINING"');
    // The running call was not cut: SIPp hung up itself after its 3 s of RTP.
    const first = await running;
    expect(first.code, first.errors).toBe(0);
    expect(await exited).toBe(0);
    const ended = await waitForLog(gw, '"call ended"');
    expect(ended.map((e) => e.reason)).toEqual(['remote-bye']);
  });
});
