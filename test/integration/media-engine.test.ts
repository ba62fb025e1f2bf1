import { describe, it, expect, afterEach } from 'vitest';
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { MediaEngine } from '../../src/media/media-engine.js';
import type { MediaSpec } from '../../src/media/media-protocol.js';
import { SrtpContext } from '../../src/media/srtp.js';
import { writeRtpHeader, parseRtpHeader, RtpHeader } from '../../src/media/rtp-packet.js';
import { createLogger } from '../../src/observability/logger.js';
import { until } from '../../src/testing/wait.js';

/** Real worker threads and real UDP on 127.0.0.1: crash isolation, timeouts, SRTP echo. */
describe('media workers', () => {
  let engine: MediaEngine | null = null;
  const sockets: Socket[] = [];
  afterEach(async () => {
    await engine?.stop();
    for (const s of sockets.splice(0)) s.close();
  });

  /** A UDP endpoint on loopback; other 127/8 addresses stand for other hosts (Linux routes all of 127/8 to lo). */
  const caller = async (address = '127.0.0.1') => {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, address, () => r()));
    sockets.push(s);
    return s;
  };
  const spec = (port: number, srtp: MediaSpec['srtp'] = null, app: MediaSpec['app'] = 'echo'): MediaSpec => ({
    app, codec: 'PCMU', payloadType: 0, telephoneEventPt: 101, ptimeMs: 20,
    remote: { address: '127.0.0.1', port, rtcpPort: port + 1 }, rtcpMux: false, srtp, direction: 'sendrecv', signallingAddress: '127.0.0.1', trustSdp: false,
  });
  const rtp = (seq: number, ssrc = 1234, payload = Buffer.alloc(160, 0x55)) => {
    const b = Buffer.alloc(172);
    writeRtpHeader(b, 0, { marker: seq === 0, payloadType: 0, sequenceNumber: seq, timestamp: seq * 160, ssrc });
    payload.copy(b, 12);
    return b;
  };

  const start = async (o: Partial<ConstructorParameters<typeof MediaEngine>[0]> = {}, events: Partial<ConstructorParameters<typeof MediaEngine>[1]> = {}) => {
    engine = new MediaEngine(
      { host: '127.0.0.1', advertisedAddress: '', portMin: 42_000, portMax: 42_999, workers: 2, timeoutMs: 30_000, jitterTargetMs: 0, ...o },
      { onTimeout: () => {}, onLost: () => {}, ...events },
      createLogger({ level: 'silent' }),
    );
    await engine.start();
    return engine;
  };

  it('echoes SRTP audio back under its own SSRC and key, and drops packets that fail authentication', async () => {
    const e = await start();
    const s = await caller();
    const { port } = await e.open('c1');
    const callerKey = randomBytes(30);
    const gwKey = randomBytes(30);
    e.configure('c1', spec(s.address().port, { send: { suite: 'AES_CM_128_HMAC_SHA1_80', keySalt: gwKey.toString('base64') }, recv: { suite: 'AES_CM_128_HMAC_SHA1_80', keySalt: callerKey.toString('base64') } }));
    const tx = SrtpContext.fromKeySalt('AES_CM_128_HMAC_SHA1_80', callerKey);
    const rx = SrtpContext.fromKeySalt('AES_CM_128_HMAC_SHA1_80', gwKey);
    const got: Buffer[] = [];
    s.on('message', (m) => got.push(Buffer.from(m)));
    const wrongKey = SrtpContext.fromKeySalt('AES_CM_128_HMAC_SHA1_80', randomBytes(30));
    for (let i = 0; i < 5; i++) s.send(wrongKey.protectRtp(rtp(100 + i, 999))!, port, '127.0.0.1');
    for (let i = 0; i < 10; i++) s.send(tx.protectRtp(rtp(i, 1234, Buffer.alloc(160, 0x20 + i)))!, port, '127.0.0.1');
    // The bad packets went first: had any been echoed, it would be here by the time the good ones are.
    await until('10 echoed packets', () => got.length >= 10);
    expect(got).toHaveLength(10);
    const h = new RtpHeader();
    const plain = rx.unprotectRtp(got[3]!)!;
    expect(plain).not.toBeNull();
    parseRtpHeader(plain, h);
    expect(h.ssrc).not.toBe(1234);
    expect(plain[h.payloadOffset]).toBe(0x23); // the caller's 4th frame, echoed
    const stats = await e.close('c1');
    expect(stats).toMatchObject({ packetsIn: 10, packetsOut: 10, authFailures: 5 });
  });

  it('reports a call whose caller sends no RTP within the media timeout', async () => {
    const timedOut: string[] = [];
    // Far above the 20 ms between the talking caller's packets, so a loaded machine's pauses stay well inside it.
    const e = await start({ timeoutMs: 1500 }, { onTimeout: (id) => timedOut.push(id) });
    const quiet = await caller();
    const talking = await caller();
    await e.open('quiet');
    const { port } = await e.open('talking');
    e.configure('quiet', spec(quiet.address().port));
    e.configure('talking', spec(talking.address().port));
    const feed = setInterval(() => talking.send(rtp(Math.floor(Math.random() * 60000)), port, '127.0.0.1'), 20);
    try {
      await until('the quiet call to time out', () => timedOut.includes('quiet'));
      expect(timedOut).not.toContain('talking');
    } finally {
      clearInterval(feed);
    }
  });

  it('a worker that dies loses only its own calls; the others keep their media and a new worker takes over', async () => {
    let lost: string[] = [];
    const e = await start({}, { onLost: (ids) => (lost = [...lost, ...ids]) });
    const ids = ['a', 'b', 'c', 'd'];
    const ports = new Map<string, number>();
    const socks = new Map<string, Socket>();
    for (const id of ids) {
      ports.set(id, (await e.open(id)).port);
      const s = await caller();
      socks.set(id, s);
      e.configure(id, spec(s.address().port));
    }
    const onWorker0 = ids.filter((id) => e.workerOf(id) === 0);
    const onWorker1 = ids.filter((id) => e.workerOf(id) === 1);
    expect(onWorker0.length).toBeGreaterThan(0);
    expect(onWorker1.length).toBeGreaterThan(0);
    await e.killWorker(0);
    await until('worker 0\'s calls to be reported lost', () => lost.length >= onWorker0.length);
    expect(lost.sort()).toEqual(onWorker0.sort());
    // Calls on worker 1 still echo.
    const survivor = onWorker1[0]!;
    const got: Buffer[] = [];
    socks.get(survivor)!.on('message', (m) => got.push(m));
    for (let i = 0; i < 3; i++) socks.get(survivor)!.send(rtp(i), ports.get(survivor), '127.0.0.1');
    await until('3 echoed packets', () => got.length >= 3);
    expect(got.length).toBe(3);
    // The slot is served again: once the new worker 0 is up, the next call goes to it (it has none).
    let n = 0;
    await until('a call on the new worker 0', async () => {
      const id = `new-${n++}`;
      await e.open(id);
      return e.workerOf(id) === 0;
    }, 20_000, 200);
  });

  it('sends a DTMF digit as RFC 4733 telephone-event packets: marker first, three end packets, one timestamp', async () => {
    const e = await start({ jitterTargetMs: 40 });
    const s = await caller();
    await e.open('d');
    e.configure('d', spec(s.address().port, null, 'tone'));
    const events: Buffer[] = [];
    s.on('message', (m: Buffer) => {
      if ((m[1]! & 0x7f) === 101) events.push(Buffer.from(m));
    });
    e.sendDtmf('d', '7', 100);
    await until('the 3 end packets', () => events.filter((p) => (p[13]! & 0x80) !== 0).length >= 3);
    expect(events.length).toBe(5); // updates at 0 and 50 ms, then 3 end packets
    expect(events.map((p) => p[12])).toEqual([7, 7, 7, 7, 7]);
    expect(events[0]![1]! & 0x80).toBe(0x80);
    expect(events.slice(1).every((p) => (p[1]! & 0x80) === 0)).toBe(true);
    expect(events.map((p) => (p[13]! & 0x80) !== 0)).toEqual([false, false, true, true, true]);
    expect(new Set(events.map((p) => p.readUInt32BE(4))).size).toBe(1);
    expect(events.at(-1)!.readUInt16BE(14)).toBe(800); // 100 ms at 8 kHz
  });

  it('reports a DTMF digit the caller sends (RFC 4733) once, and the echo application sends it back', async () => {
    const digits: [string, string, number][] = [];
    const e = await start({ jitterTargetMs: 40 }, { onDtmf: (id, digit, ms) => digits.push([id, digit, ms]) });
    const s = await caller();
    const { port } = await e.open('in');
    e.configure('in', spec(s.address().port));
    const echoed: Buffer[] = [];
    s.on('message', (m: Buffer) => {
      if ((m[1]! & 0x7f) === 101) echoed.push(Buffer.from(m));
    });
    // Digit 9 for 120 ms: two updates and three end packets, all with the event's timestamp.
    const send = (seq: number, end: boolean, duration: number, marker: boolean) => {
      const b = Buffer.alloc(16);
      writeRtpHeader(b, 0, { marker, payloadType: 101, sequenceNumber: seq, timestamp: 8000, ssrc: 77 });
      b[12] = 9;
      b[13] = (end ? 0x80 : 0) | 10;
      b.writeUInt16BE(duration, 14);
      s.send(b, port, '127.0.0.1');
    };
    send(1, false, 400, true);
    send(2, false, 800, false);
    for (let i = 0; i < 3; i++) send(3 + i, true, 960, false);
    await until('the digit and its echo', () => digits.length > 0 && echoed.length >= 4);
    expect(digits).toEqual([['in', '9', 120]]);
    expect(echoed.every((p) => p[12] === 9)).toBe(true);
  });

  it('plays a 440 Hz tone for a tone call, one 20 ms packet at a time', async () => {
    const e = await start({ jitterTargetMs: 40 });
    const s = await caller();
    await e.open('t');
    e.configure('t', spec(s.address().port, null, 'tone'));
    const got: Buffer[] = [];
    const at: number[] = [];
    s.on('message', (m) => {
      got.push(m);
      at.push(performance.now());
    });
    await until('50 packets', () => got.length >= 50);
    // Paced, not bursted: 50 packets span about a second (a loaded machine can only stretch that).
    expect(at[49]! - at[0]!).toBeGreaterThan(500);
    const h = new RtpHeader();
    parseRtpHeader(got[10]!, h);
    expect(h.payloadLength).toBe(160);
    const seqs = got.map((p) => p.readUInt16BE(2));
    for (let i = 1; i < seqs.length; i++) expect((seqs[i]! - seqs[i - 1]! + 65536) % 65536).toBe(1);
  });

  describe('symmetric RTP done safely (RFC 4961; media/rtp-latch.ts)', () => {
    /** Collects what a socket receives; `count()` reads it later. */
    const listen = (sock: Socket) => {
      const got: Buffer[] = [];
      sock.on('message', (m) => got.push(m));
      return got;
    };
    const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

    it('one spoofed RTP packet from another source cannot take over a plain-RTP call: the caller keeps its echo, the spoofer gets nothing', async () => {
      const e = await start();
      const real = await caller('127.0.0.1');
      const spoofer = await caller('127.0.0.2');
      const { port } = await e.open('s1');
      e.configure('s1', spec(real.address().port));
      const realGot = listen(real);
      const spoofGot = listen(spoofer);
      for (let i = 0; i < 3; i++) real.send(rtp(i, 1234), port, '127.0.0.1');
      await settle(200);
      expect(realGot.length).toBe(3);
      // Same SSRC, next sequence numbers, valid RTP: what an attacker guessing the stream would send.
      for (let i = 3; i < 8; i++) spoofer.send(rtp(i, 1234), port, '127.0.0.1');
      await settle(200);
      for (let i = 8; i < 11; i++) real.send(rtp(i, 1234), port, '127.0.0.1');
      await settle(200);
      expect(spoofGot).toHaveLength(0);
      expect(realGot.length).toBe(6);
      expect(await e.close('s1')).toMatchObject({ packetsIn: 6, rejectedSource: 5 });
    });

    it('sends nothing to an SDP address that is not where the signalling came from until the caller\'s own RTP arrives', async () => {
      const e = await start({ jitterTargetMs: 40 });
      const victim = await caller('127.0.0.3');
      const real = await caller('127.0.0.1');
      const { port } = await e.open('aim');
      // The caller (signalling from 127.0.0.1) names a third party's address in its SDP.
      e.configure('aim', { ...spec(victim.address().port, null, 'tone'), remote: { address: '127.0.0.3', port: victim.address().port, rtcpPort: victim.address().port + 1 } });
      const victimGot = listen(victim);
      const realGot = listen(real);
      await settle(500);
      expect(victimGot).toHaveLength(0);
      // Its own packet, from the signalling address, latches: the tone now goes to it.
      real.send(rtp(0, 77), port, '127.0.0.1');
      await settle(500);
      expect(victimGot).toHaveLength(0);
      expect(realGot.length).toBeGreaterThan(5);
      await e.close('aim');
    });

    it('a trusted SDP (an outbound carrier, or media.sendBeforeLatch: always) gets media before its first packet', async () => {
      const e = await start({ jitterTargetMs: 40 });
      const carrierMedia = await caller('127.0.0.3');
      await e.open('trusted');
      e.configure('trusted', { ...spec(carrierMedia.address().port, null, 'tone'), remote: { address: '127.0.0.3', port: carrierMedia.address().port, rtcpPort: carrierMedia.address().port + 1 }, trustSdp: true });
      const got = listen(carrierMedia);
      await settle(500);
      expect(got.length).toBeGreaterThan(5);
      await e.close('trusted');
    });

    it('a caller behind NAT (RTP from another address than its SDP and signalling) is learnt after 4 packets in sequence', async () => {
      const e = await start();
      const natted = await caller('127.0.0.4');
      const { port } = await e.open('nat');
      e.configure('nat', spec(45_000));
      const got = listen(natted);
      for (let i = 0; i < 8; i++) natted.send(rtp(i, 4321), port, '127.0.0.1');
      await settle(300);
      // The first three wait for probation; from the fourth on they are echoed.
      expect(got.length).toBe(5);
      expect(await e.close('nat')).toMatchObject({ packetsIn: 5, rejectedSource: 3 });
    });

    it('RTCP from a stranger does not re-point the call\'s RTCP', async () => {
      const e = await start();
      const real = await caller('127.0.0.1');
      const stranger = await caller('127.0.0.2');
      const { port } = await e.open('rtcp');
      e.configure('rtcp', spec(real.address().port));
      real.send(rtp(0, 1), port, '127.0.0.1');
      // A receiver report (RFC 3550 §6.4.2), empty, from the stranger to the RTCP port.
      const rr = Buffer.from([0x80, 201, 0, 1, 0, 0, 0, 9]);
      stranger.send(rr, port + 1, '127.0.0.1');
      const strangerGot = listen(stranger);
      await settle(5500); // RTCP reports go out every 5 s
      expect(strangerGot).toHaveLength(0);
      await e.close('rtcp');
    });
  });
});
