import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { api, callRecord, rememberSecret, runCli, startGateway, waitForLog, type RunningGateway } from '../helpers/gateway-process.js';
import { runSipp, type SippOptions } from '../helpers/sipp.js';
import { writeRtpPcap } from '../helpers/pcap.js';
import { BurstAgent, NativeAgent, PipecatLikeAgent } from '../helpers/agents.js';
import { detectTone, sine } from '../helpers/audio.js';
import { verifyTollgateSignature, twilioSignature } from '../../src/keys/request-signature.js';
import { generateKeySecret } from '../../src/keys/key-format.js';
import { until } from '../../src/testing/wait.js';

/** SIPp 3.6 reads only the first challenge and knows only MD5. */
const TWILIO_TOKEN = 'test-twilio-auth-token-0123456789';
const ENV = {
  TOLLGATE_SIP__DIGEST_ALGORITHMS: '[MD5, SHA-256]',
  TOLLGATE_AGENTS__CONNECT_TIMEOUT_MS: '2000',
  TOLLGATE_AGENTS__FALLBACK_TONE_MS: '1000',
  TOLLGATE_AGENTS__TWILIO_AUTH_TOKEN: TWILIO_TOKEN,
  // The attach webhook receiver is a plain http:// server on 127.0.0.1.
  TOLLGATE_WEBHOOKS__ALLOW_HTTP: 'true',
};

describe('agent bridge: phone calls to AI agents over WebSocket', () => {
  let gw: RunningGateway;
  let admin: string;
  let seq = 0;
  let pcap: string;
  const servers: { close(): Promise<void> }[] = [];

  beforeAll(async () => {
    gw = await startGateway({ env: ENV });
    const r = await runCli(['keys', 'create', '--name', 'root', '--role', 'admin', '--json'], gw.env);
    admin = JSON.parse(r.stdout).secret;
    rememberSecret(admin);
    // 2 s of 440 Hz, then the digit 5 (RFC 4733), then silence.
    pcap = writeRtpPcap(join(mkdtempSync(join(tmpdir(), 'tollgate-pcap-')), 'caller.pcap'), { seconds: 2, toneHz: 440, digits: '5' }).file;
  });
  afterAll(async () => {
    for (const s of servers) await s.close();
    expect(await gw?.stop()).toBe(0);
  });

  const keep = <T extends { close(): Promise<void> }>(s: T): T => {
    servers.push(s);
    return s;
  };

  /** A trunk key and a number routed to an agent. */
  const route = async (target: 'agent' | 'attach', agent: Record<string, unknown>, policy: Record<string, unknown> = {}) => {
    const k = await api(gw, 'POST', '/v1/keys', { auth: admin, body: { name: 'agent-trunk', scopes: ['calls:inbound', 'calls:read'], callsPerSecond: 100, cpsBurst: 100, maxConcurrentCalls: 100, ...policy } });
    expect(k.status, k.text).toBe(201);
    rememberSecret(k.body.secret);
    const number = `+1628555${String(1000 + ++seq).slice(-4)}`;
    const n = await api(gw, 'POST', '/v1/numbers', { auth: admin, body: { number, target, keyId: k.body.key.id, agent } });
    expect(n.status, n.text).toBe(201);
    return { id: k.body.key.id as string, secret: k.body.secret as string, number };
  };

  const call = (t: { id: string; secret: string; number: string }, o: Partial<SippOptions> = {}) =>
    runSipp({ scenario: 'uac-auth-pcap', target: gw.sip.udp!, transport: 'udp', dialled: t.number, username: t.id, password: t.secret, pcapFile: pcap, ...o });

  const cdr = (secret: string, callSid: string) => callRecord(gw, secret, callSid);

  it('Twilio mode, gateway dials out: signed upgrade, connected/start, 20 ms media with the caller\'s tone, DTMF, stop', async () => {
    const server = keep(await PipecatLikeAgent.listen());
    const url = `${server.url}/twilio/stream?tenant=acme`;
    const t = await route('agent', { url, parameters: { lang: 'en' } });
    const sipp = call(t, { holdMs: 3000 });
    const agent = await server.agent(0, 8000);
    await agent.waitForStart();
    // The upgrade is signed: Tollgate-Signature with the key's signing secret, X-Twilio-Signature with the auth token.
    const secret = await api(gw, 'GET', `/v1/keys/${t.id}/signing-secret`, { auth: admin });
    expect(secret.status).toBe(200);
    rememberSecret(secret.body.signingSecret);
    const hs = agent.handshake!;
    expect(verifyTollgateSignature(secret.body.signingSecret, hs.tollgateSignature!, url)).toBe(true);
    expect(verifyTollgateSignature(secret.body.signingSecret, hs.tollgateSignature!, url + 'x')).toBe(false);
    expect(hs.twilioSignature).toBe(twilioSignature(TWILIO_TOKEN, url));
    expect(agent.start).toMatchObject({
      accountSid: secret.body.accountSid,
      tracks: ['inbound'],
      customParameters: { lang: 'en', to_number: t.number, from_number: 'carrier' },
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
    });
    expect(agent.callSid).toMatch(/^CA[0-9a-f]{32}$/);
    expect(agent.streamSid).toMatch(/^MZ[0-9a-f]{32}$/);
    const r = await sipp;
    expect(r.code, r.errors || r.stdout.slice(-1500)).toBe(0);
    await agent.waitForEvent('stop', 5000);
    const closed = await agent.waitForClose();
    expect(closed.code).toBe(1000);
    expect(agent.protocolErrors, agent.protocolErrors.join('\n')).toEqual([]);
    expect(agent.mediaProblems({ toleranceMs: 1000 })).toEqual([]);
    expect(agent.media.length).toBeGreaterThan(100);
    // The caller's 440 Hz tone reached the agent; the digit too.
    expect(detectTone(agent.inboundPcm(), 8000, 440).present).toBe(true);
    expect(agent.dtmfReceived.map((d) => d.digit)).toEqual(['5']);
    const rec = await cdr(t.secret, agent.callSid!);
    expect(rec).toMatchObject({ status: 'ended', endReason: 'remote-bye', endedBy: 'caller', target: 'agent', to: t.number });
    expect(rec.billableSeconds).toBeGreaterThan(2);
  });

  it('Pipecat-like agent: paced speech with a mark, barge-in (clear) echoes the pending mark, REST hang-up ends the call once', async () => {
    const server = keep(await PipecatLikeAgent.listen());
    const t = await route('agent', { url: `${server.url}/pipecat` });
    const sipp = call(t, { scenario: 'uac-auth-pcap-wait-bye', holdMs: 15_000 });
    const agent = await server.agent(0, 8000);
    await agent.waitForStart();
    // 0.4 s of speech, paced in 40 ms chunks, then a mark: echoed once it has played.
    await agent.speak(sine(1000, 8000, 400), { chunkMs: 40, mark: 'greeting' });
    const inboundAtMark = (await agent.waitForMark('greeting', 3000)) && agent.media.length;
    expect(inboundAtMark).toBeGreaterThan(15);
    // A long reply, then the caller talks over it: clear flushes the queue and echoes the mark at once.
    const reply = agent.speak(sine(1000, 8000, 5000), { chunkMs: 40, paced: false, mark: 'reply' });
    await reply;
    await new Promise((r) => setTimeout(r, 300));
    const before = agent.media.length;
    agent.clear();
    await agent.waitForMark('reply', 4000);
    // The mark came back long before the 5 s reply could have played (the caller's frames count
    // the time: one per 20 ms; 4.7 s of the reply were left when the clear was sent).
    expect(agent.media.length - before).toBeLessThan(200);
    // Hang up the way Pipecat does: Twilio's REST call with Basic auth.
    const hang = await agent.hangupViaRest(gw.url, agent.accountSid, t.secret);
    expect(hang.status, hang.text).toBe(200);
    expect(hang.body).toMatchObject({ sid: agent.callSid, status: 'completed' });
    const r = await sipp;
    expect(r.code, r.errors || r.stdout.slice(-1500)).toBe(0);
    await agent.waitForEvent('stop', 3000);
    // Idempotent: the call has ended, so Twilio's 20404.
    const again = await agent.hangupViaRest(gw.url, agent.accountSid, t.secret);
    expect(again.status).toBe(404);
    expect(again.body).toMatchObject({ code: 20404, status: 404 });
    // Wrong credentials: Twilio's 20003.
    const wrong = await agent.hangupViaRest(gw.url, agent.accountSid, admin);
    expect(wrong.status).toBe(401);
    expect(wrong.body).toMatchObject({ code: 20003 });
    const rec = await cdr(t.secret, agent.callSid!);
    expect(rec).toMatchObject({ endReason: 'agent-hangup', endedBy: 'agent', details: { agentHangup: 'rest' } });
    expect(agent.protocolErrors).toEqual([]);
  });

  it('OpenAI-sample-like agent: a burst faster than real time is paced out at 20 ms; closing the socket hangs up', async () => {
    const server = keep(await BurstAgent.listen({ utterance: sine(1000, 8000, 2000), chunkBytes: [3001, 4000, 999], mark: 'utterance-end' }));
    const t = await route('agent', { url: `${server.url}/openai` });
    const sipp = call(t, { scenario: 'uac-auth-pcap-wait-bye', holdMs: 15_000 });
    const agent = await server.agent(0, 8000);
    await agent.waitForStart();
    await agent.waitForMark('utterance-end', 6000);
    // The whole utterance went out at once, yet its mark came back only after ~2 s of playout:
    // about 100 frames of the caller's audio reached the agent meanwhile.
    const framesDuringPlayout = agent.media.filter((m) => agent.burstAt !== null && m.arrivalMs >= agent.burstAt).length;
    expect(framesDuringPlayout).toBeGreaterThan(85);
    expect(framesDuringPlayout).toBeLessThan(160);
    // Lenient like Twilio: garbage and unknown events are ignored, the call goes on.
    agent.send('not json');
    agent.send({ event: 'nonsense' });
    await agent.waitForAudio(200);
    await agent.close(1000, 'bye');
    const r = await sipp;
    expect(r.code, r.errors || r.stdout.slice(-1500)).toBe(0);
    const rec = await cdr(t.secret, agent.callSid!);
    expect(rec).toMatchObject({ endReason: 'agent-hangup', endedBy: 'agent', details: { agentHangup: 'socket-closed' } });
  });

  it('native mode via attach: signed webhook with a single-call token, 16 kHz PCM16 frames, clear reports playedMs, hangup', async () => {
    const { createServer } = await import('node:http');
    const received: { body: string; signature: string | undefined }[] = [];
    const hook = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        received.push({ body, signature: req.headers['tollgate-signature'] as string | undefined });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()));
    keep({ close: () => new Promise<void>((r) => hook.close(() => r())) });
    const port = (hook.address() as { port: number }).port;
    const t = await route('attach', { webhookUrl: `http://127.0.0.1:${port}/incoming`, protocol: 'native', sampleRate: 16000, parameters: { bot: 'support' } });
    const sipp = call(t, { scenario: 'uac-auth-pcap-wait-bye', holdMs: 15_000 });
    await until('the call.incoming webhook', () => received.length > 0, 20_000);
    expect(received).toHaveLength(1);
    const secret = (await api(gw, 'GET', `/v1/keys/${t.id}/signing-secret`, { auth: t.secret })).body.signingSecret as string;
    rememberSecret(secret);
    expect(verifyTollgateSignature(secret, received[0]!.signature!, received[0]!.body)).toBe(true);
    const event = JSON.parse(received[0]!.body);
    expect(event).toMatchObject({ type: 'call.incoming', data: { to: t.number, parameters: { bot: 'support' }, streamUrl: `${gw.url.replace('http', 'ws')}/v1/stream` } });
    rememberSecret(event.data.token);
    const agent = await new NativeAgent().dial(event.data.streamUrl, { headers: { authorization: `Bearer ${event.data.token}` } });
    keep(agent);
    const start = await agent.waitForStart();
    expect(start).toMatchObject({ callId: event.data.callId, to: t.number, parameters: { bot: 'support' }, identity: { verstat: 'No-TN-Validation' }, audio: { toAgent: { encoding: 'L16', sampleRate: 16000 } } });
    await agent.waitForFrames(120, 6000);
    expect(agent.badFrameSizes).toBe(0);
    // The caller's 440 Hz tone, resampled to 16 kHz.
    expect(detectTone(agent.inboundPcm(), 16000, 440).present).toBe(true);
    // A single-call token works once: a second attach with it is refused.
    await expect(new NativeAgent().dial(event.data.streamUrl, { headers: { authorization: `Bearer ${event.data.token}` } }).then((a) => a.waitForClose())).resolves.toMatchObject({ code: 4401 });
    // 3 s of speech in one burst, a mark, then clear after ~0.5 s.
    await agent.speak(sine(1000, 16000, 3000), { paced: false, mark: 'answer' });
    await new Promise((r) => setTimeout(r, 500));
    agent.clear();
    const cleared = await agent.waitForEvent('cleared', 5000);
    // Some of it played, the clear discarded the rest, and together they are the 3 s sent. (How
    // much played depends on how long the 0.5 s wait really took: no bound on it.)
    expect(cleared.playedMs as number).toBeGreaterThan(200);
    expect(cleared.discardedMs as number).toBeGreaterThan(0);
    expect((cleared.playedMs as number) + (cleared.discardedMs as number)).toBeGreaterThan(2900);
    expect(agent.marks).toEqual([expect.objectContaining({ name: 'answer', status: 'cleared' })]);
    // A mark with nothing queued is played at once.
    agent.mark('empty');
    expect(await agent.waitForMark('empty', 1000)).toMatchObject({ status: 'played' });
    agent.hangup();
    const r = await sipp;
    expect(r.code, r.errors || r.stdout.slice(-1500)).toBe(0);
    expect((await agent.waitForEvent('stop', 3000)).reason).toBe('agent-hangup');
    expect((await cdr(t.secret, event.data.callId)).endedBy).toBe('agent');
    expect(agent.protocolErrors).toEqual([]);
  });

  it('/v1/stream refuses bad credentials and unknown calls with documented close codes', async () => {
    const streamUrl = `${gw.url.replace('http', 'ws')}/v1/stream`;
    const closeOf = async (headers: Record<string, string>, url = streamUrl, first?: Record<string, unknown>) => {
      const a = await new NativeAgent().dial(url, { headers });
      if (first) a.send(first);
      return (await a.waitForClose(5000)).code;
    };
    const t = await route('attach', { webhookUrl: 'http://127.0.0.1:9/never', protocol: 'native' });
    expect(await closeOf({})).toBe(4401);
    // A well-formed key (valid checksum) that the gateway never issued.
    const unknown = generateKeySecret('live');
    rememberSecret(unknown);
    expect(await closeOf({ authorization: `Bearer ${unknown}` })).toBe(4401);
    expect(await closeOf({ authorization: 'Bearer garbage' })).toBe(4401);
    expect(await closeOf({ authorization: `Bearer ${t.secret}` }, `${streamUrl}?token=${encodeURIComponent('abc')}`)).toBe(4400);
    expect(await closeOf({ authorization: `Bearer ${t.secret}` }, streamUrl, { type: 'attach', callId: 'CA' + '0'.repeat(32) })).toBe(4404);
    expect(await closeOf({ authorization: `Bearer ${t.secret}` }, streamUrl, { type: 'wat' })).toBe(4400);
    // dial needs calls:outbound, which this trunk key lacks.
    expect(await closeOf({ authorization: `Bearer ${t.secret}` }, streamUrl, { type: 'dial', to: '+14155550100', from: '+14155550101' })).toBe(4403);
    // A revoked key is refused at the upgrade.
    await api(gw, 'POST', `/v1/keys/${t.id}/revoke`, { auth: admin, body: {} });
    expect(await closeOf({ authorization: `Bearer ${t.secret}` })).toBe(4401);
    // A key from outside its allowlist is forbidden.
    const fenced = await route('attach', { webhookUrl: 'http://127.0.0.1:9/never' }, { allowedCidrs: ['10.0.0.0/8'] });
    expect(await closeOf({ authorization: `Bearer ${fenced.secret}` })).toBe(4403);
    // The credential travels as a subprotocol for browsers; the server never echoes it back.
    const ok = await route('attach', { webhookUrl: 'http://127.0.0.1:9/never' });
    const b = await new NativeAgent().dial(streamUrl, { protocols: ['audio.tollgate.v1', `tollgate.auth.${ok.secret}`] });
    expect(b.handshake?.protocol).toBe('audio.tollgate.v1');
    b.send({ type: 'attach', callId: 'CA' + '1'.repeat(32) });
    expect((await b.waitForClose()).code).toBe(4404);
  });

  it('an unreachable agent gets the number\'s fallback: 480, 503, or a tone then hang-up; the CDR says why', async () => {
    const dead = 'ws://127.0.0.1:9/agent';
    const t480 = await route('agent', { url: dead, fallback: '480' });
    const r480 = await runSipp({ scenario: 'uac-auth-expect', expect: 480, target: gw.sip.udp!, transport: 'udp', dialled: t480.number, username: t480.id, password: t480.secret });
    expect(r480.code, r480.errors).toBe(0);
    const t503 = await route('agent', { url: dead, fallback: '503' });
    const r503 = await runSipp({ scenario: 'uac-auth-expect', expect: 503, target: gw.sip.udp!, transport: 'udp', dialled: t503.number, username: t503.id, password: t503.secret });
    expect(r503.code, r503.errors).toBe(0);
    const tTone = await route('agent', { url: dead, fallback: 'tone' });
    const rTone = await call(tTone, { scenario: 'uac-auth-pcap-wait-bye', holdMs: 10_000 });
    expect(rTone.code, rTone.errors || rTone.stdout.slice(-1500)).toBe(0);
    const calls = await api(gw, 'GET', '/v1/calls', { auth: tTone.secret });
    expect(calls.body.calls[0]).toMatchObject({ status: 'ended', endReason: 'agent-unavailable', endedBy: 'gateway', details: { agentError: 'agent connection failed' } });
    const refused = await api(gw, 'GET', '/v1/calls', { auth: t480.secret });
    expect(refused.body.calls[0]).toMatchObject({ status: 'failed', endReason: 'agent-unavailable' });
    // An agent that refuses the upgrade (HTTP 401) is unreachable too.
    const server = keep(await PipecatLikeAgent.listen({ rejectStatus: 401 }));
    const t401 = await route('agent', { url: `${server.url}/x`, fallback: '480' });
    const r401 = await runSipp({ scenario: 'uac-auth-expect', expect: 480, target: gw.sip.udp!, transport: 'udp', dialled: t401.number, username: t401.id, password: t401.secret });
    expect(r401.code, r401.errors).toBe(0);
    expect((await api(gw, 'GET', '/v1/calls', { auth: t401.secret })).body.calls[0].details.agentError).toMatch(/HTTP 401/);
    // An agent that accepts the connection but never completes the upgrade times out.
    const { createServer: tcpServer } = await import('node:net');
    const held = new Set<import('node:net').Socket>();
    const silent = tcpServer((sock) => {
      held.add(sock);
      sock.resume(); // read (and discard) the upgrade request, so the peer's close is seen
      sock.on('error', () => {});
      sock.on('close', () => held.delete(sock));
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const heldAtStart = held.size;
    keep({
      close: () => new Promise<void>((r) => {
        for (const sock of held) sock.destroy();
        silent.close(() => r());
      }),
    });
    const tSlow = await route('agent', { url: `ws://127.0.0.1:${(silent.address() as { port: number }).port}/slow`, fallback: '503' });
    const rSlow = await runSipp({ scenario: 'uac-auth-expect', expect: 503, target: gw.sip.udp!, transport: 'udp', dialled: tSlow.number, username: tSlow.id, password: tSlow.secret });
    expect(rSlow.code, rSlow.errors).toBe(0);
    expect((await api(gw, 'GET', '/v1/calls', { auth: tSlow.secret })).body.calls[0].details.agentError).toMatch(/timeout|timed out/i);
    // The gateway gave up on the connection instead of leaving it open.
    await until('the gateway to close the silent agent\'s connection', () => held.size <= heldAtStart);
    expect(held.size).toBe(heldAtStart);
    // An admin pages through every call record; pages follow each other without gaps or repeats.
    const all = (await api(gw, 'GET', '/v1/calls?limit=1000', { auth: admin })).body.calls.map((c: { id: string }) => c.id);
    expect(all.length).toBeGreaterThanOrEqual(4);
    const paged: string[] = [];
    let next: string | null = null;
    for (let i = 0; i < 100; i++) {
      const page = await api(gw, 'GET', `/v1/calls?limit=2${next ? `&before=${encodeURIComponent(next)}` : ''}`, { auth: admin });
      expect(page.status, page.text).toBe(200);
      paged.push(...page.body.calls.map((c: { id: string }) => c.id));
      next = page.body.next;
      if (!next) break;
    }
    expect(paged).toEqual(all);
    // Another key's call is not visible to a trunk key.
    expect((await api(gw, 'GET', `/v1/calls/${all[0]}`, { auth: t480.secret })).status).toBe(all[0] === refused.body.calls[0].id ? 200 : 404);
  });

  it('the agent is warned before the key\'s maximum call duration ends the call', async () => {
    const server = keep(await NativeAgent.listen());
    const t = await route('agent', { url: `${server.url}/native`, protocol: 'native', sampleRate: 8000 }, { maxCallDurationSec: 3 });
    const sipp = call(t, { scenario: 'uac-auth-pcap-wait-bye', holdMs: 15_000 });
    const agent = await server.agent(0, 8000);
    const start = await agent.waitForStart();
    expect(start.audio?.toAgent).toEqual({ encoding: 'L16', sampleRate: 8000 });
    const warning = await agent.waitForEvent('warning', 5000);
    expect(warning).toMatchObject({ reason: 'max-duration' });
    expect((await agent.waitForEvent('stop', 6000)).reason).toBe('max-duration');
    const r = await sipp;
    expect(r.code, r.errors || r.stdout.slice(-1500)).toBe(0);
    expect(await cdr(t.secret, start.callId)).toMatchObject({ endReason: 'max-duration', endedBy: 'policy' });
  });

  it('a native protocol error closes the stream with 4400 and ends the call', async () => {
    const server = keep(await NativeAgent.listen());
    const t = await route('agent', { url: `${server.url}/native`, protocol: 'native', sampleRate: 24000 });
    const sipp = call(t, { scenario: 'uac-auth-pcap-wait-bye', holdMs: 15_000 });
    const agent = await server.agent(0, 8000);
    const start = await agent.waitForStart();
    await agent.waitForFrames(10, 5000); // the call is up
    agent.send(Buffer.alloc(3)); // not whole PCM16 samples
    expect((await agent.waitForClose()).code).toBe(4400);
    expect(agent.errors[0]?.code).toBe('bad_message');
    const r = await sipp;
    expect(r.code, r.errors || r.stdout.slice(-1500)).toBe(0);
    expect(await cdr(t.secret, start.callId)).toMatchObject({ endedBy: 'agent', details: { agentHangup: 'protocol-error' } });
    await waitForLog(gw, 'agent message refused');
  });

  it('limits: agent audio beyond agents.maxQueueMs drops the oldest with a warning; a message over maxMessageBytes closes the stream', async () => {
    const server = keep(await PipecatLikeAgent.listen());
    const t = await route('agent', { url: `${server.url}/chatty` });
    const sipp = call(t, { scenario: 'uac-auth-pcap-wait-bye', holdMs: 15_000 });
    const agent = await server.agent(0, 8000);
    await agent.waitForStart();
    // 31 s of speech at once: one second more than the 30 s queue.
    await agent.speak(sine(1000, 8000, 31_000), { paced: false, chunkMs: 500 });
    const warning = await agent.waitForEvent('warning', 3000);
    expect(warning).toMatchObject({ warning: { reason: 'queue-overflow' } });
    await waitForLog(gw, 'agent audio queue full');
    // One message of 2 MiB (limit 1 MiB): the gateway closes with 1009 and the call ends.
    agent.send({ event: 'media', streamSid: agent.streamSid, media: { payload: 'A'.repeat(2 * 1024 * 1024) } });
    expect((await agent.waitForClose()).code).toBe(1009);
    const r = await sipp;
    expect(r.code, r.errors || r.stdout.slice(-1500)).toBe(0);
    expect((await cdr(t.secret, agent.callSid!)).endedBy).toBe('agent');
  });
});
