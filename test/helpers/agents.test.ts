import { describe, it, expect, afterEach } from 'vitest';
import { createServer, type IncomingMessage } from 'node:http';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket, WebSocketServer } from 'ws';
import { AgentServer, BurstAgent, DialError, EchoAgent, NATIVE_SUBPROTOCOL, NativeAgent, PipecatLikeAgent } from './agents.js';
import { concatPcm, detectTone, dominantFrequency, pcm16le, readWav, sine, silence, toPcm16le, toneLevel, toneOnsetMs, ulawDecode, ulawEncode, wavBytes } from './audio.js';
import { readPcap, readRtpPcap, rtpToneStream, writeRtpPcap } from './pcap.js';
import { hasCommand } from '../../src/testing/system-tools.js';
import { until } from '../../src/testing/wait.js';

/** Things each test opened, closed afterwards whatever happened. */
const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** A gateway stand-in that dials an agent URL as a WebSocket client. */
async function gatewayDials(url: string, protocols: string[] = [], headers: Record<string, string> = {}): Promise<{ ws: WebSocket; received: { data: string | Buffer; at: number }[] }> {
  const ws = new WebSocket(url, protocols, { headers });
  const received: { data: string | Buffer; at: number }[] = [];
  ws.on('message', (d: Buffer, isBinary: boolean) => received.push({ data: isBinary ? d : d.toString(), at: performance.now() }));
  await new Promise<void>((res, rej) => {
    ws.once('open', () => res());
    ws.once('error', rej);
  });
  cleanup.push(() => ws.terminate());
  return { ws, received };
}

const twilioStart = (streamSid: string) => ({
  event: 'start',
  sequenceNumber: '1',
  start: {
    accountSid: 'AC123',
    streamSid,
    callSid: 'CA456',
    tracks: ['inbound'],
    customParameters: { from_number: '+14155550100', to_number: '+14155550199' },
    mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
  },
  streamSid,
});

describe('audio helpers', () => {
  it('detects a tone through µ-law and rejects other tones, noise and silence', () => {
    const tone = sine(440, 8000, 500, 8000);
    const coded = ulawDecode(ulawEncode(tone));
    const d = detectTone(coded, 8000, 440);
    expect(d.present).toBe(true);
    expect(d.snrDb).toBeGreaterThan(25);
    expect(Math.abs(d.level - 8000)).toBeLessThan(400);
    expect(Math.abs(toneLevel(tone, 8000, 440) - 8000)).toBeLessThan(100);
    expect(detectTone(coded, 8000, 1000).present).toBe(false);
    expect(detectTone(silence(8000, 500), 8000, 440).present).toBe(false);
    let seed = 1;
    const noise = Int16Array.from({ length: 4000 }, () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 8000) - 4000);
    expect(detectTone(noise, 8000, 440).present).toBe(false);
    expect(dominantFrequency(coded, 8000, [300, 440, 1000]).freq).toBe(440);
    expect(dominantFrequency(sine(1000, 16000, 200), 16000, { min: 900, max: 1100, step: 10 }).freq).toBe(1000);
    // A tone starting 200 ms in.
    expect(toneOnsetMs(concatPcm([silence(16000, 200), sine(440, 16000, 300)]), 16000, 440)).toBe(200);
  });

  it('converts PCM16LE at any alignment and reads WAV files', () => {
    const s = Int16Array.from([0, 1, -1, 32767, -32768, 1234]);
    const bytes = toPcm16le(s);
    const odd = Buffer.concat([Buffer.from([9]), bytes]).subarray(1);
    expect([...pcm16le(odd)]).toEqual([...s]);
    expect(() => pcm16le(Buffer.alloc(3))).toThrow(/odd/);
    // A WAV with an extra chunk before data, as sox and libsndfile may write.
    const wav = wavBytes(s, 16000);
    const list = Buffer.concat([Buffer.from('LIST'), Buffer.from([3, 0, 0, 0]), Buffer.from('abc'), Buffer.from([0])]);
    const withList = Buffer.concat([wav.subarray(0, 36), list, wav.subarray(36)]);
    withList.writeUInt32LE(withList.length - 8, 4);
    const r = readWav(withList);
    expect(r.sampleRate).toBe(16000);
    expect([...r.samples]).toEqual([...s]);
  });

  it.skipIf(!hasCommand('sox'))('reads a WAV that sox wrote (skipped without sox)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-audio-'));
    const f = join(dir, 't.wav');
    execFileSync('sox', ['-n', '-r', '8000', '-c', '1', '-b', '16', '-e', 'signed-integer', f, 'synth', '0.5', 'sine', '440', 'vol', '0.5'], { stdio: 'ignore' });
    const w = readWav(f);
    expect([w.sampleRate, w.channels, w.samples.length]).toEqual([8000, 1, 4000]);
    expect(detectTone(w.samples, 8000, 440).present).toBe(true);
  });
});

describe('pcap writer', () => {
  it('writes an Ethernet/IPv4/UDP pcap of a PCMU tone and RFC 4733 digits', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-pcap-'));
    const { file, packets, durationMs } = writeRtpPcap(join(dir, 'a.pcap'), { seconds: 1, digits: '5#' });
    const buf = readFileSync(file);
    expect(buf.readUInt32LE(0)).toBe(0xa1b2c3d4);
    expect(readPcap(buf).linkType).toBe(1);
    const rtp = readRtpPcap(buf);
    expect(rtp.length).toBe(packets.length);
    // Sequence numbers count up by one; capture times never go back.
    rtp.forEach((p, i) => {
      if (i === 0) return;
      expect(p.header.sequenceNumber).toBe((rtp[i - 1]!.header.sequenceNumber + 1) & 0xffff);
      expect(p.atMs).toBeGreaterThanOrEqual(rtp[i - 1]!.atMs);
    });
    const audio = rtp.filter((p) => p.header.payloadType === 0);
    expect(audio.slice(0, 50).every((p, i) => p.payload.length === 160 && p.atMs === i * 20 && p.header.timestamp - audio[0]!.header.timestamp === i * 160)).toBe(true);
    expect(audio[0]!.header.marker).toBe(true);
    expect(detectTone(ulawDecode(Buffer.concat(audio.slice(0, 50).map((p) => p.payload))), 8000, 440).present).toBe(true);
    const events = rtp.filter((p) => p.header.payloadType === 101);
    const starts = [...new Set(events.map((e) => e.header.timestamp))];
    expect(starts.length).toBe(2);
    expect(events.filter((e) => e.payload[1]! & 0x80).map((e) => e.payload[0])).toEqual([5, 5, 5, 11, 11, 11]);
    expect(events.filter((e) => e.header.marker).length).toBe(2);
    // Each digit's events carry the RTP timestamp of its start on the audio clock.
    const first = events[0]!;
    expect(first.header.timestamp - audio[0]!.header.timestamp).toBe(first.atMs * 8);
    expect(durationMs).toBe(rtp.at(-1)!.atMs + 20);
  });

  it('sends nothing but the tone without digits', () => {
    const p = rtpToneStream({ seconds: 0.2 });
    expect(p.map((x) => x.payloadType)).toEqual(Array(10).fill(0));
  });
});

describe('Twilio agents', () => {
  it('PipecatLikeAgent records the handshake and checks media, speaks paced, marks, barges in', async () => {
    const server = await PipecatLikeAgent.listen();
    cleanup.push(() => server.close());
    const gw = await gatewayDials(`${server.url}/agents/a1?x=1`, [], { 'x-twilio-signature': 'sig1', 'tollgate-signature': 't=1,v1=abc' });
    const agent = await server.nextAgent();
    expect(agent.handshake).toMatchObject({ side: 'server', path: '/agents/a1', query: { x: '1' }, twilioSignature: 'sig1', tollgateSignature: 't=1,v1=abc' });
    const sid = 'MZ1';
    gw.ws.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
    gw.ws.send(JSON.stringify(twilioStart(sid)));
    const start = await agent.waitForStart();
    expect(start.customParameters.from_number).toBe('+14155550100');
    expect(agent.callSid).toBe('CA456');
    const tone = ulawEncode(sine(440, 8000, 200));
    for (let i = 0; i < 10; i++) {
      gw.ws.send(JSON.stringify({ event: 'media', sequenceNumber: String(i + 2), media: { track: 'inbound', chunk: String(i + 1), timestamp: String(i * 20), payload: tone.subarray(i * 160, i * 160 + 160).toString('base64') }, streamSid: sid }));
      await new Promise((r) => setTimeout(r, 20));
    }
    await agent.waitForAudio(200);
    expect(agent.mediaProblems({ toleranceMs: 1000 })).toEqual([]);
    expect(detectTone(agent.inboundPcm(), 8000, 440).present).toBe(true);
    // A gap in the chunk numbers and a short payload are reported.
    gw.ws.send(JSON.stringify({ event: 'media', sequenceNumber: '12', media: { track: 'inbound', chunk: '12', timestamp: '200', payload: Buffer.alloc(80).toString('base64') }, streamSid: sid }));
    await agent.waitFor(() => agent.media.length === 11);
    expect(agent.mediaProblems({ toleranceMs: null })).toEqual(['media #11: chunk "12", expected "11"', 'media #11: payload of 80 bytes, expected 160']);
    gw.ws.send(JSON.stringify({ event: 'dtmf', streamSid: sid, sequenceNumber: '13', dtmf: { track: 'inbound_track', digit: '5' } }));
    await agent.waitForEvent('dtmf');
    expect(agent.dtmfReceived[0]!.digit).toBe('5');

    // 200 ms in 40 ms messages, paced: about 160 ms from first to last.
    const r = await agent.speak(sine(440, 8000, 200), { mark: 'm1' });
    expect(r).toMatchObject({ chunks: 5, bytes: 1600, aborted: false });
    await until('5 media messages and the mark', () => gw.received.length === 6);
    const sent = gw.received.map((m) => JSON.parse(m.data as string));
    expect(sent.slice(0, 5).every((m) => m.event === 'media' && m.streamSid === sid && Buffer.from(m.media.payload, 'base64').length === 320)).toBe(true);
    expect(sent[5]).toEqual({ event: 'mark', streamSid: sid, mark: { name: 'm1' } });
    // Paced, not sent in one burst. No upper bound: a loaded machine may stretch the pacing.
    const span = gw.received[4]!.at - gw.received[0]!.at;
    expect(span).toBeGreaterThan(140);

    const long = agent.speak(sine(440, 8000, 2000), { mark: 'never' });
    await until('the long reply to start', () => gw.received.length > 6);
    agent.bargeIn();
    const cut = await long;
    expect(cut.aborted).toBe(true);
    await until('the clear', () => JSON.parse(gw.received.at(-1)!.data as string).event === 'clear');
    expect(gw.received.some((m) => (m.data as string).includes('never'))).toBe(false);

    gw.ws.send(JSON.stringify({ event: 'mark', sequenceNumber: '14', streamSid: sid, mark: { name: 'm1' } }));
    await agent.waitForMark('m1');
    gw.ws.send(JSON.stringify({ event: 'stop', sequenceNumber: '15', streamSid: sid, stop: { accountSid: 'AC123', callSid: 'CA456' } }));
    await agent.waitForEvent('stop');
    gw.ws.close(1000, 'bye');
    expect(await agent.waitForClose()).toEqual({ code: 1000, reason: 'bye' });
    expect(agent.protocolErrors).toEqual([]);
  });

  it('reports a broken handshake and a wrong sequence number', async () => {
    const server = await PipecatLikeAgent.listen();
    cleanup.push(() => server.close());
    const gw = await gatewayDials(server.url);
    const agent = await server.nextAgent();
    gw.ws.send(JSON.stringify(twilioStart('MZ2')));
    gw.ws.send(JSON.stringify({ event: 'media', sequenceNumber: 3, media: { track: 'inbound', chunk: '1', timestamp: '0', payload: Buffer.alloc(160).toString('base64') }, streamSid: 'MZ2' }));
    await agent.waitFor(() => agent.media.length === 1);
    expect(agent.protocolErrors[0]).toMatch(/first frame is not/);
    expect(agent.mediaProblems()).toEqual(['media: sequenceNumber 3 is not a decimal string']);
  });

  it('flags media that runs ahead of real time', async () => {
    const server = await PipecatLikeAgent.listen();
    cleanup.push(() => server.close());
    const gw = await gatewayDials(server.url);
    const agent = await server.nextAgent();
    gw.ws.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
    gw.ws.send(JSON.stringify(twilioStart('MZ4')));
    // 2 s of audio sent at once: the last frame is far ahead of real time even if a loaded
    // machine spreads the arrivals over a second.
    const payload = Buffer.alloc(160, 0xff).toString('base64');
    for (let i = 0; i < 100; i++) {
      gw.ws.send(JSON.stringify({ event: 'media', sequenceNumber: String(i + 2), media: { track: 'inbound', chunk: String(i + 1), timestamp: String(i * 20), payload }, streamSid: 'MZ4' }));
    }
    await agent.waitForAudio(2000);
    const problems = agent.mediaProblems({ toleranceMs: 100 });
    expect(problems.length).toBeGreaterThan(0);
    expect(problems.every((p) => /ms ahead of its timestamp/.test(p))).toBe(true);
    expect(agent.mediaTiming().minDriftMs).toBeLessThan(-300);
  });

  it('waits are bounded and fail clearly, also when the socket closes', async () => {
    const server = await PipecatLikeAgent.listen();
    cleanup.push(() => server.close());
    await expect(server.agent(0, 50)).rejects.toThrow(/timed out after 50 ms waiting for connection #1/);
    const gw = await gatewayDials(server.url);
    const agent = await server.nextAgent();
    await expect(agent.waitForStart(50)).rejects.toThrow(/PipecatLikeAgent: timed out after 50 ms waiting for the start event; received \{\}/);
    const pending = agent.waitForMark('x', 5000);
    gw.ws.close(4000, 'gone');
    await expect(pending).rejects.toThrow(/socket closed \(4000 gone\) while waiting for mark "x"/);
    expect(() => agent.mark('y')).toThrow(/no start event yet|cannot send/);
  });

  it('hangs up through the REST API like Pipecat', async () => {
    const seen: { method?: string; url?: string; auth?: string; type?: string; body: string }[] = [];
    const http = createServer((req: IncomingMessage, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, auth: req.headers.authorization, type: req.headers['content-type'], body });
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sid: 'CA456', status: 'completed' }));
      });
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
    cleanup.push(() => new Promise<void>((r) => http.close(() => r())));
    const { port } = http.address() as { port: number };
    const agent = new PipecatLikeAgent();
    const r = await agent.hangupViaRest(`http://127.0.0.1:${port}/`, 'AC123', 'tg_secret', 'CA456');
    expect(r).toMatchObject({ status: 200, body: { status: 'completed' } });
    expect(seen).toEqual([{ method: 'POST', url: '/2010-04-01/Accounts/AC123/Calls/CA456.json', auth: `Basic ${Buffer.from('AC123:tg_secret').toString('base64')}`, type: 'application/x-www-form-urlencoded', body: 'Status=completed' }]);
  });

  it('BurstAgent sends the whole utterance at once in odd chunks, then a mark', async () => {
    const server = await BurstAgent.listen({ utterance: ulawEncode(sine(440, 8000, 1000)), chunkBytes: [2999, 1001] });
    cleanup.push(() => server.close());
    const gw = await gatewayDials(server.url);
    gw.ws.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
    gw.ws.send(JSON.stringify(twilioStart('MZ3')));
    await until('5 messages', () => gw.received.length === 5);
    const sent = gw.received.map((m) => JSON.parse(m.data as string));
    expect(sent.map((m) => (m.event === 'media' ? Buffer.from(m.media.payload, 'base64').length : m.mark.name))).toEqual([2999, 1001, 2999, 1001, 'utterance-end']);
    const agent = await server.nextAgent();
    expect([agent.burstMessages, agent.burstBytes]).toEqual([4, 8000]);
    expect(gw.received[4]!.at - gw.received[0]!.at).toBeLessThan(200);
  });
});

describe('NativeAgent', () => {
  it('dials /v1/stream with the subprotocol, attaches, checks frame sizes, speaks L16', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    cleanup.push(() => new Promise<void>((r) => wss.close(() => r())));
    await new Promise<void>((r) => wss.once('listening', () => r()));
    const got: (string | Buffer)[] = [];
    let peer: WebSocket | null = null;
    let seenAuth: string | undefined;
    wss.on('connection', (ws, req) => {
      peer = ws;
      seenAuth = req.headers.authorization;
      ws.on('message', (d: Buffer, bin: boolean) => got.push(bin ? d : d.toString()));
    });
    const { port } = wss.address() as { port: number };
    const agent = new NativeAgent();
    cleanup.push(() => agent.close());
    await agent.dial(`ws://127.0.0.1:${port}/v1/stream`, { headers: { authorization: 'Bearer k' } });
    expect(agent.handshake?.protocol).toBe(NATIVE_SUBPROTOCOL);
    expect(seenAuth).toBe('Bearer k');
    agent.attach('CA1');
    await until('the first message', () => got.length === 1);
    expect(JSON.parse(got[0] as string)).toEqual({ type: 'attach', callId: 'CA1', audio: { encoding: 'L16', sampleRate: 16000 } });
    const fmt = { encoding: 'L16', sampleRate: 16000 };
    peer!.send(JSON.stringify({ type: 'start', callId: 'CA1', streamId: 'MZ1', from: '+1415', to: '+1416', direction: 'inbound', parameters: {}, identity: { verstat: 'No-TN-Validation' }, audio: { toAgent: fmt, fromAgent: fmt } }));
    const tone = toPcm16le(sine(440, 16000, 100));
    for (let i = 0; i < 5; i++) peer!.send(tone.subarray(i * 640, i * 640 + 640));
    peer!.send(Buffer.alloc(100));
    await agent.waitForFrames(6);
    expect([agent.frames, agent.badFrameSizes, agent.badFrames]).toEqual([6, 1, [100]]);
    expect(detectTone(agent.inboundPcm().subarray(0, 1600), 16000, 440).present).toBe(true);
    await agent.speak(sine(440, 16000, 60), { paced: false, mark: 'a' });
    agent.dtmf('12', 100);
    agent.clear();
    agent.hangup();
    await until('8 messages', () => got.length === 1 + 3 + 4);
    expect(got.slice(1, 4).map((b) => (b as Buffer).length)).toEqual([640, 640, 640]);
    expect(got.slice(4).map((t) => JSON.parse(t as string))).toEqual([{ type: 'mark', name: 'a' }, { type: 'dtmf', digits: '12', durationMs: 100 }, { type: 'clear' }, { type: 'hangup' }]);
    peer!.send(JSON.stringify({ type: 'cleared', playedMs: 20, discardedMs: 40 }));
    peer!.send(JSON.stringify({ type: 'mark', name: 'a', status: 'cleared' }));
    expect((await agent.waitForMark('a')).status).toBe('cleared');
    expect(agent.cleared[0]).toMatchObject({ playedMs: 20, discardedMs: 40 });
    peer!.send(JSON.stringify({ type: 'stop', reason: 'hangup' }));
    await agent.waitForEvent('stop');
    expect(agent.protocolErrors).toEqual([]);
  });

  it('reports a refused dial with its status', async () => {
    const server = await NativeAgent.listen({ rejectStatus: 401 });
    cleanup.push(() => server.close());
    const err = await new NativeAgent().dial(`${server.url}/v1/stream`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DialError);
    expect((err as DialError).status).toBe(401);
    expect(server.requests[0]?.headers['sec-websocket-protocol']).toBe(NATIVE_SUBPROTOCOL);
  });

  it('as a server, accepts the subprotocol and records the path', async () => {
    const server: AgentServer<NativeAgent> = await NativeAgent.listen();
    cleanup.push(() => server.close());
    const gw = await gatewayDials(`${server.url}/agent`, [NATIVE_SUBPROTOCOL]);
    expect(gw.ws.protocol).toBe(NATIVE_SUBPROTOCOL);
    const agent = await server.nextAgent();
    expect(agent.handshake).toMatchObject({ path: '/agent', protocol: NATIVE_SUBPROTOCOL });
  });
});

describe('EchoAgent', () => {
  it('sends every media payload and binary frame straight back', async () => {
    const echo = await EchoAgent.listen();
    cleanup.push(() => echo.close());
    const gw = await gatewayDials(echo.url);
    gw.ws.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
    gw.ws.send(JSON.stringify({ event: 'media', sequenceNumber: '2', media: { track: 'inbound', chunk: '1', timestamp: '0', payload: 'AAEC' }, streamSid: 'MZ9' }));
    gw.ws.send(Buffer.from([1, 2, 3, 4]));
    await until('2 messages', () => gw.received.length === 2);
    expect(JSON.parse(gw.received[0]!.data as string)).toEqual({ event: 'media', streamSid: 'MZ9', media: { payload: 'AAEC' } });
    expect([...(gw.received[1]!.data as Buffer)]).toEqual([1, 2, 3, 4]);
    await echo.waitForConnections(1);
    expect([echo.connections, echo.echoedFrames]).toEqual([1, 2]);
  });
});
