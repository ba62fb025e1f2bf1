import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { api, rememberSecret, runCli, startGateway, waitForLog, type RunningGateway } from '../helpers/gateway-process.js';
import { baresipCall, soxStat } from '../helpers/baresip.js';
import { PipecatLikeAgent } from '../helpers/agents.js';
import { detectTone, readWav, sine, slicePcm, toneTimeline } from '../helpers/audio.js';

/** baresip 1.0's digest code gives up on any challenge that is not MD5 (libre ENOSYS). */
const BARESIP_ENV = { TOLLGATE_SIP__DIGEST_ALGORITHMS: '[MD5]' };

describe('a softphone over TLS with mandatory SDES-SRTP (baresip)', () => {
  let gw: RunningGateway;
  let admin: string;
  beforeAll(async () => {
    gw = await startGateway({ env: BARESIP_ENV });
    const r = await runCli(['keys', 'create', '--name', 'root', '--role', 'admin', '--json'], gw.env);
    admin = JSON.parse(r.stdout).secret;
    rememberSecret(admin);
  });
  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
  });

  const setup = async (target: 'echo' | 'tone', number: string) => {
    const k = await api(gw, 'POST', '/v1/keys', { auth: admin, body: { name: 'phone', scopes: ['calls:inbound'], requireTls: true } });
    rememberSecret(k.body.secret);
    await api(gw, 'POST', '/v1/numbers', { auth: admin, body: { number, target, keyId: k.body.key.id, srtp: 'required' } });
    return { id: k.body.key.id as string, secret: k.body.secret as string };
  };

  /** baresip dials `number` over TLS with the key's credentials, trusting the gateway's dev certificate. */
  const dial = (number: string, k: { id: string; secret: string }, mediaenc: 'srtp-mand' | 'none', seconds: number) =>
    baresipCall({
      uri: `sip:${number}@127.0.0.1:${gw.sip.tls!.port};transport=tls`,
      username: k.id,
      password: k.secret,
      caFile: join(gw.env.TOLLGATE_DATA_DIR!, 'tls', 'dev-cert.pem'),
      mediaenc,
      seconds,
    });

  it('the caller hears its own 440 Hz tone back through SRTP (echo)', async () => {
    const k = await setup('echo', '+14155550100');
    const call = await dial('+14155550100', k, 'srtp-mand', 4);
    expect(call.output).toContain('Call established');
    expect(call.received, call.output.slice(-1500)).not.toBeNull();
    const heard = soxStat(call.received!);
    const sent = soxStat(call.sent!);
    expect(heard.seconds).toBeGreaterThan(3);
    expect(Math.abs(heard.frequency - 440)).toBeLessThan(15);
    // Nearly all of the tone's energy comes back (G.711 both ways, silence only at the start).
    expect(heard.rms).toBeGreaterThan(sent.rms * 0.8);
    const closed = (await waitForLog(gw, 'call media closed')).at(-1)!;
    expect(closed.media.packetsIn).toBeGreaterThan(150);
  });

  it('a tone target plays 440 Hz to the caller', async () => {
    const k = await setup('tone', '+14155550101');
    const call = await dial('+14155550101', k, 'srtp-mand', 3);
    expect(call.received, call.output.slice(-1500)).not.toBeNull();
    const heard = soxStat(call.received!);
    expect(Math.abs(heard.frequency - 440)).toBeLessThan(15);
    expect(heard.rms).toBeGreaterThan(0.2);
  });

  it('an agent over the Twilio protocol talks to the softphone through SRTP: both tones heard, DTMF to the caller', async () => {
    const server = await PipecatLikeAgent.listen();
    try {
      const k = await api(gw, 'POST', '/v1/keys', { auth: admin, body: { name: 'phone', scopes: ['calls:inbound'], requireTls: true } });
      rememberSecret(k.body.secret);
      const number = '+14155550103';
      const n = await api(gw, 'POST', '/v1/numbers', { auth: admin, body: { number, target: 'agent', keyId: k.body.key.id, srtp: 'required', agent: { url: `${server.url}/bot` } } });
      expect(n.status, n.text).toBe(201);
      const dialling = dial(number, { id: k.body.key.id, secret: k.body.secret }, 'srtp-mand', 5);
      const agent = await server.agent(0, 10_000);
      await agent.waitForStart();
      // The agent answers with 3 s of 1000 Hz, sent at once (the gateway's clock paces it, so a
      // late agent on a loaded machine cannot leave gaps), and presses 7 on the caller's keypad.
      await agent.speak(sine(1000, 8000, 3000, 12000), { chunkMs: 40, paced: false });
      await agent.waitForAudio(3000);
      agent.sendDtmf('7');
      const call = await dialling;
      expect(call.output).toContain('Call established');
      // The caller heard the agent's 1000 Hz through the reply (and not its own 440 Hz: there is
      // no echo path). A paced agent on a loaded machine can be late for a frame, so nearly
      // every 20 ms window, not all, must carry the tone.
      const heard = readWav(call.received!);
      const windows = toneTimeline(heard.samples, heard.sampleRate, 1000, 20);
      const first = windows.indexOf(true);
      expect(first).toBeGreaterThanOrEqual(0);
      expect(windows.slice(first, first + 145).filter(Boolean).length).toBeGreaterThanOrEqual(138);
      const reply = slicePcm(heard.samples, heard.sampleRate, first * 20, first * 20 + 2900);
      expect(detectTone(reply, heard.sampleRate, 1000).snrDb).toBeGreaterThan(35);
      expect(detectTone(heard.samples, heard.sampleRate, 440).present).toBe(false);
      // baresip prints the RFC 4733 events it receives.
      expect(call.output).toContain("received event: '7' (end=1)");
      // The agent heard the caller's 440 Hz tone.
      expect(detectTone(agent.inboundPcm(), 8000, 440).present).toBe(true);
      expect(agent.mediaProblems({ toleranceMs: 1000 })).toEqual([]);
    } finally {
      await server.close();
    }
  });

  it('a plain-RTP offer to an SRTP-required number is refused with 488', async () => {
    const k = await setup('echo', '+14155550102');
    const call = await dial('+14155550102', k, 'none', 2);
    expect(call.output).toMatch(/488 Not Acceptable Here/);
    expect(call.output).not.toContain('Call established');
  });
});
