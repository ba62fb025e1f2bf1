/**
 * A media worker thread: owns a slice of the RTP port range and every packet of its calls.
 * Receive: SRTP unprotect (auth + replay check first) → RTP header → latch the source
 * (symmetric RTP, RFC 4961) → DTMF events or audio into the playout buffer. Send: one paced
 * clock for all sessions emits a 20 ms frame per session (echo: the buffered caller audio;
 * tone: a 440 Hz tone) → RTP header → SRTP protect → socket. RTCP reports every 5 s.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createSocket, type Socket, type RemoteInfo } from 'node:dgram';
import { isIP, isIPv6 } from 'node:net';
import { randomBytes, randomInt } from 'node:crypto';
import type { AgentAudio, Codec, FromWorker, MediaSpec, SessionStats, SrtpKeys, ToWorker, WorkerInit } from './media-protocol.js';
import { encodeAlaw, encodeUlaw, decodeAlaw, decodeUlaw, ULAW_SILENCE, ALAW_SILENCE } from './g711.js';
import { RtpHeader, parseRtpHeader, writeRtpHeader, isRtcpPacket, writeReceiverReport, writeSenderReport, ntpFromUnixMs, type RtpHeaderFields, RtpReceiveStats, type ReportBlock } from './rtp-packet.js';
import { SrtpContext } from './srtp.js';
import { JitterBuffer } from './jitter-buffer.js';
import { DtmfReceiver, dtmfPackets, digitToEvent } from './dtmf.js';
import { FrameForwarder } from './frame-forwarder.js';
import { PlayoutQueue, type ReleasedMark } from './playout-queue.js';
import { Resampler } from './resampler.js';
import { RtpLatch } from './rtp-latch.js';

const init = workerData as WorkerInit;
const port = parentPort!;
const post = (m: FromWorker): void => port.postMessage(m);
/** Posts a message whose `audio` buffer moves to the main thread instead of being copied. */
const postAudio = (m: FromWorker & { audio: Uint8Array }): void => port.postMessage(m, [m.audio.buffer as ArrayBuffer]);

const FRAME_SAMPLES = 160; // 20 ms at 8 kHz
const FRAME_MS = 20;
/** media.jitterTargetMs 0: echo frames go back as they arrive, with no playout clock. */
const PASS_THROUGH = init.jitterTargetMs === 0;
/**
 * Symmetric RTP learning (media/rtp-latch.ts): a plain-RTP source other than the SDP or
 * signalling address may be latched only in the first 2 s of media, after 4 packets in sequence.
 */
const LATCH_LEARNING_MS = 2000;
const LATCH_PROBATION = 4;

/**
 * One second of a tone at 8 kHz made of whole-Hz frequencies holds whole periods of each: 50
 * frames that loop seamlessly. 440 Hz for the tone app; 440 + 480 Hz for ringback (the North
 * American ringing tone, ITU-T E.180), each at half the amplitude.
 */
function toneFrames(encode: (src: Int16Array, dst: Uint8Array) => number, freqs: readonly number[] = [440]): Uint8Array[] {
  const pcm = new Int16Array(8000);
  const amp = 16_000 / freqs.length;
  for (let i = 0; i < pcm.length; i++) pcm[i] = Math.round(freqs.reduce((sum, f) => sum + Math.sin((2 * Math.PI * f * i) / 8000) * amp, 0));
  const frames: Uint8Array[] = [];
  for (let f = 0; f < 50; f++) {
    const out = new Uint8Array(FRAME_SAMPLES);
    encode(pcm.subarray(f * FRAME_SAMPLES, (f + 1) * FRAME_SAMPLES), out);
    frames.push(out);
  }
  return frames;
}
const TONE = { PCMU: toneFrames(encodeUlaw), PCMA: toneFrames(encodeAlaw) };
const RINGBACK = { PCMU: toneFrames(encodeUlaw, [440, 480]), PCMA: toneFrames(encodeAlaw, [440, 480]) };
/** Ringback cadence: 2 s on, 4 s off, in 20 ms frames. */
const RINGBACK_ON_FRAMES = 100;
const RINGBACK_CYCLE_FRAMES = 300;
const SILENCE = { PCMU: new Uint8Array(FRAME_SAMPLES).fill(ULAW_SILENCE), PCMA: new Uint8Array(FRAME_SAMPLES).fill(ALAW_SILENCE) };

/** The agent bridge's half of a call: framing towards the agent, the playout queue from it. */
interface AgentSide {
  readonly audio: AgentAudio;
  readonly codec: Codec;
  readonly forwarder: FrameForwarder;
  readonly queue: PlayoutQueue;
  /** 8 kHz → agent rate, agent rate → 8 kHz (L16 at other rates than 8 kHz only). */
  readonly up: Resampler | null;
  readonly down: Resampler | null;
  readonly frame: Uint8Array;
  readonly released: ReleasedMark[];
}

interface Session {
  readonly callId: string;
  readonly port: number;
  readonly rtp: Socket;
  readonly rtcp: Socket;
  spec: MediaSpec | null;
  /** Symmetric RTP, done safely: where media goes and whose packets count (media/rtp-latch.ts). */
  latch: RtpLatch | null;
  /** The SDP endpoint the latch was set up for (a re-INVITE naming another one learns again). */
  latchFor: { address: string; port: number } | null;
  /** Where RTCP goes once the latched address has sent RTCP from its own port. */
  remoteRtcp: { address: string; port: number } | null;
  srtpIn: SrtpContext | null;
  srtpOut: SrtpContext | null;
  readonly out: RtpHeaderFields;
  readonly playout: JitterBuffer;
  rxStats: RtpReceiveStats | null;
  readonly dtmf: DtmfReceiver;
  toneIndex: number;
  /** Telephone-event packets waiting for their time, all of one event sharing `timestamp`. */
  dtmfOut: { at: number; marker: boolean; payload: Buffer; timestamp: number }[];
  agent: AgentSide | null;
  nextSendAt: number;
  lastRxAt: number;
  configuredAt: number;
  lastRtcpAt: number;
  stats: { packetsIn: number; packetsOut: number; bytesIn: number; authFailures: number; octetsOut: number; dtmf: string[] };
}

const sessions = new Map<string, Session>();
const usedPorts = new Set<number>();
const header = new RtpHeader();
const sendBuf = Buffer.alloc(1500);
/** Protected copy of an outgoing packet: one buffer for the whole worker (sends are synchronous). */
const srtpBuf = Buffer.alloc(1600);
const rtcpBuf = Buffer.alloc(512);

const SOCKET_TYPE = isIPv6(init.host) ? 'udp6' : 'udp4';

/**
 * RTP is always sent to IP literals (from SDP or the latched source): answering dgram's lookup
 * synchronously skips a dns.lookup round (a nextTick and closures) on every packet sent.
 */
function literalLookup(host: string, _opts: unknown, cb: (err: Error | null, address: string, family: number) => void): void {
  const family = isIP(host);
  if (family === 0) cb(new Error(`not an IP literal: ${host}`), '', 0);
  else cb(null, host, family);
}

function now(): number {
  return performance.now();
}

/** Binds an even RTP port and the odd RTCP port above it, from this worker's slice. */
async function bindPair(): Promise<{ rtp: Socket; rtcp: Socket; port: number }> {
  const type = SOCKET_TYPE;
  const first = init.portMin % 2 === 0 ? init.portMin : init.portMin + 1;
  const slots = Math.floor((init.portMax - first) / 2);
  const start = randomInt(0, Math.max(1, slots));
  for (let i = 0; i < slots; i++) {
    const p = first + ((start + i) % slots) * 2;
    if (usedPorts.has(p)) continue;
    const rtp = createSocket({ type, lookup: literalLookup });
    const rtcp = createSocket({ type, lookup: literalLookup });
    try {
      await bind(rtp, p);
      await bind(rtcp, p + 1);
      usedPorts.add(p);
      return { rtp, rtcp, port: p };
    } catch {
      rtp.close();
      rtcp.close();
    }
  }
  throw new Error('no free RTP port pair in this worker\'s range');
}

function bind(s: Socket, p: number): Promise<void> {
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.bind(p, init.host, () => {
      s.off('error', reject);
      resolve();
    });
  });
}

function open(callId: string): Promise<void> {
  return bindPair().then(({ rtp, rtcp, port: p }) => {
    const stats: Session['stats'] = { packetsIn: 0, packetsOut: 0, bytesIn: 0, authFailures: 0, octetsOut: 0, dtmf: [] };
    const s: Session = {
      callId,
      port: p,
      rtp,
      rtcp,
      spec: null,
      latch: null,
      latchFor: null,
      remoteRtcp: null,
      srtpIn: null,
      srtpOut: null,
      // RFC 3711 §3.3.1: a random initial sequence number below 2^15, so a receiver that misses
      // the first packets cannot be left one rollover behind (and refuse the whole call).
      out: { marker: true, payloadType: 0, sequenceNumber: randomInt(0, 32768), timestamp: randomInt(0, 2 ** 32), ssrc: randomBytes(4).readUInt32BE(0) },
      playout: new JitterBuffer({ frameMs: FRAME_MS, initialDelayMs: Math.max(20, init.jitterTargetMs) }),
      rxStats: null,
      dtmf: new DtmfReceiver({
        onDigit: (d) => {
          if (!d.digit) return;
          stats.dtmf.push(d.digit);
          post({ type: 'dtmf', callId, digit: d.digit, durationMs: d.durationMs });
          // The echo application echoes digits too.
          if (sessions.get(callId)?.spec?.app === 'echo') queueDtmf(callId, d.digit, d.durationMs);
        },
      }),
      toneIndex: 0,
      dtmfOut: [],
      agent: null,
      nextSendAt: 0,
      lastRxAt: 0,
      configuredAt: 0,
      lastRtcpAt: now(),
      stats,
    };
    rtp.on('message', (msg, rinfo) => onRtp(s, msg, rinfo));
    rtcp.on('message', (msg, rinfo) => onRtcp(s, msg, rinfo));
    rtp.on('error', () => {});
    rtcp.on('error', () => {});
    sessions.set(callId, s);
    post({ type: 'opened', callId, port: p });
  });
}

function srtpContext(keys: SrtpKeys): SrtpContext {
  return SrtpContext.fromKeySalt(keys.suite, keys.keySalt);
}

function configure(callId: string, spec: MediaSpec): void {
  const s = sessions.get(callId);
  if (!s) return;
  const rekey = !s.spec || JSON.stringify(s.spec.srtp) !== JSON.stringify(spec.srtp);
  s.spec = spec;
  if (rekey) {
    s.srtpIn = spec.srtp ? srtpContext(spec.srtp.recv) : null;
    s.srtpOut = spec.srtp ? srtpContext(spec.srtp.send) : null;
  }
  // New media (another SDP address or key, e.g. a re-INVITE): learn the source again. Hold and
  // resume keep the latch.
  const prev = s.latchFor;
  const moved = !prev || prev.address !== spec.remote.address || prev.port !== spec.remote.port || rekey;
  if (moved) s.latchFor = { address: spec.remote.address, port: spec.remote.port };
  const latchOpts = {
    sdp: s.latchFor!,
    signallingAddress: spec.signallingAddress,
    trustSdp: spec.trustSdp,
    authenticated: spec.srtp !== null,
    learningMs: LATCH_LEARNING_MS,
    probation: LATCH_PROBATION,
  };
  if (!s.latch) s.latch = new RtpLatch(latchOpts, now());
  else if (moved) {
    s.latch.reset(latchOpts, now());
    s.remoteRtcp = null;
  }
  s.out.payloadType = spec.payloadType;
  if (spec.app === 'agent' && spec.agent && (!s.agent || s.agent.codec !== spec.codec || JSON.stringify(s.agent.audio) !== JSON.stringify(spec.agent))) {
    s.agent = newAgentSide(s, spec.agent, spec.codec);
  }
  if (!s.configuredAt) {
    s.configuredAt = now();
    s.nextSendAt = now();
  }
}

function onRtp(s: Session, msg: Buffer, rinfo: RemoteInfo): void {
  const spec = s.spec;
  if (!spec) return;
  if (spec.rtcpMux && isRtcpPacket(msg)) {
    onRtcp(s, msg, rinfo);
    return;
  }
  let pkt: Buffer | null = msg;
  if (s.srtpIn) {
    pkt = s.srtpIn.unprotectRtp(msg);
    if (!pkt) {
      s.stats.authFailures++;
      return;
    }
  }
  if (parseRtpHeader(pkt, header) !== 'ok') return;
  const t = now();
  // Symmetric RTP (RFC 4961): answer to where the caller's packets really come from (NAT), once
  // that source is latched; packets from anywhere else are dropped.
  if (!s.latch?.accept(rinfo.address, rinfo.port, header.ssrc, header.sequenceNumber, t)) return;
  s.lastRxAt = t;
  s.stats.packetsIn++;
  s.stats.bytesIn += pkt.length;
  if (!s.rxStats || s.rxStats.ssrc !== header.ssrc) s.rxStats = new RtpReceiveStats(header.ssrc, { minSequential: s.srtpIn ? 1 : 2 });
  s.rxStats.update(header.sequenceNumber, header.timestamp, Date.now());
  const payload = pkt.subarray(header.payloadOffset, header.payloadOffset + header.payloadLength);
  if (spec.telephoneEventPt !== null && header.payloadType === spec.telephoneEventPt) {
    s.dtmf.push(header.timestamp, payload);
    return;
  }
  if (header.payloadType !== spec.payloadType) return;
  if (spec.app === 'agent') {
    s.agent?.forwarder.push(header.sequenceNumber, payload, t);
    return;
  }
  if (spec.app !== 'echo') return;
  if (PASS_THROUGH) {
    if (spec.direction === 'sendrecv' || spec.direction === 'sendonly') sendFrame(s, payload);
  } else {
    s.playout.push(header.sequenceNumber, header.timestamp, Buffer.from(payload));
  }
}

function onRtcp(s: Session, msg: Buffer, rinfo: RemoteInfo): void {
  if (!s.spec) return;
  if (s.srtpIn && !s.srtpIn.unprotectRtcp(msg)) {
    s.stats.authFailures++;
    return;
  }
  // RTCP only from the caller's latched (or trusted) address: a stranger cannot re-point it.
  if (!s.latch?.rtcpAllowedFrom(rinfo.address)) return;
  if (s.remoteRtcp?.address !== rinfo.address || s.remoteRtcp.port !== rinfo.port) s.remoteRtcp = { address: rinfo.address, port: rinfo.port };
}

/** Where RTCP goes: where the caller's RTCP comes from, else beside its RTP (RFC 3550 §11: port + 1) or muxed. */
function rtcpTarget(s: Session, spec: MediaSpec): { address: string; port: number } | null {
  if (s.remoteRtcp) return s.remoteRtcp;
  const rtp = s.latch?.target;
  if (!rtp) return null;
  if (spec.rtcpMux) return rtp;
  return rtp === s.latchFor ? { address: rtp.address, port: spec.remote.rtcpPort } : { address: rtp.address, port: rtp.port + 1 };
}

/**
 * Writes the RTP header `fields` and `payload` into the worker's send buffer, protects it when
 * the call is encrypted, and sends it to the caller. False when nothing was sent.
 */
function sendRtp(s: Session, fields: RtpHeaderFields, payload: Uint8Array): boolean {
  const remote = s.latch?.target;
  if (!remote) return false;
  const h = writeRtpHeader(sendBuf, 0, fields);
  sendBuf.set(payload, h);
  const len = h + payload.length;
  let out: Buffer = sendBuf.subarray(0, len);
  if (s.srtpOut) {
    const n = s.srtpOut.protectRtpInto(sendBuf, len, srtpBuf);
    if (n < 0) return false;
    out = srtpBuf.subarray(0, n);
  }
  s.rtp.send(out, remote.port, remote.address);
  s.out.sequenceNumber = (s.out.sequenceNumber + 1) & 0xffff;
  s.stats.packetsOut++;
  return true;
}

function sendFrame(s: Session, payload: Uint8Array): void {
  if (!sendRtp(s, s.out, payload)) return;
  s.out.marker = false;
  s.out.timestamp = (s.out.timestamp + (FRAME_SAMPLES * s.spec!.ptimeMs) / FRAME_MS) >>> 0;
  s.stats.octetsOut += payload.length;
}

/** Sends one RFC 4733 telephone-event packet: the event's own timestamp, the stream's sequence. */
function sendEvent(s: Session, ev: { marker: boolean; payload: Buffer; timestamp: number }): void {
  const pt = s.spec!.telephoneEventPt;
  if (pt === null) return;
  sendRtp(s, { marker: ev.marker, payloadType: pt, sequenceNumber: s.out.sequenceNumber, timestamp: ev.timestamp, ssrc: s.out.ssrc }, ev.payload);
}

function queueDtmf(callId: string, digit: string, durationMs: number): void {
  const s = sessions.get(callId);
  if (!s?.spec || s.spec.telephoneEventPt === null || digitToEvent(digit) === null) return;
  const t = now();
  const timestamp = s.out.timestamp;
  for (const p of dtmfPackets(digit, { durationMs: Math.min(Math.max(durationMs, 40), 5000) })) {
    s.dtmfOut.push({ at: t + p.atMs, marker: p.marker, payload: p.payload, timestamp });
  }
}

/** Sends an RTCP report (SR when we send, RR otherwise) with a block about the caller's stream. */
function sendRtcp(s: Session, t: number): void {
  if (!s.spec) return;
  const remote = rtcpTarget(s, s.spec);
  if (!remote) return;
  s.lastRtcpAt = t;
  const block: ReportBlock | null = s.rxStats ? s.rxStats.fillReportBlock(Date.now(), {} as ReportBlock) : null;
  const blocks = block ? [block] : [];
  let len: number;
  if (s.stats.packetsOut > 0) {
    const [sec, frac] = ntpFromUnixMs(Date.now());
    len = writeSenderReport(rtcpBuf, 0, { ssrc: s.out.ssrc, ntpSeconds: sec, ntpFraction: frac, rtpTimestamp: s.out.timestamp, packetCount: s.stats.packetsOut, octetCount: s.stats.octetsOut }, blocks);
  } else {
    len = writeReceiverReport(rtcpBuf, 0, s.out.ssrc, blocks);
  }
  let out: Buffer | null = rtcpBuf.subarray(0, len);
  if (s.srtpOut) out = s.srtpOut.protectRtcp(rtcpBuf, len);
  if (!out) return;
  (s.spec.rtcpMux ? s.rtp : s.rtcp).send(out, remote.port, remote.address);
}

/**
 * The paced clock: every few milliseconds, each session whose next frame is due sends it.
 * Deadlines advance by exactly one frame, so the average rate is exact whatever the timer's
 * jitter; a session that fell more than 5 frames behind skips ahead instead of bursting.
 */
function tick(): void {
  const t = now();
  for (const s of sessions.values()) {
    const spec = s.spec;
    if (!spec) continue;
    if ((spec.direction === 'sendrecv' || spec.direction === 'sendonly') && !(PASS_THROUGH && spec.app === 'echo')) {
      if (t - s.nextSendAt > 5 * FRAME_MS) s.nextSendAt = t;
      while (s.nextSendAt <= t) {
        s.nextSendAt += spec.ptimeMs;
        let payload: Uint8Array;
        if (spec.app === 'tone') {
          payload = TONE[spec.codec][s.toneIndex % 50]!;
          s.toneIndex = (s.toneIndex + 1) % 50;
        } else if (spec.app === 'ringback') {
          payload = s.toneIndex < RINGBACK_ON_FRAMES ? RINGBACK[spec.codec][s.toneIndex % 50]! : SILENCE[spec.codec];
          s.toneIndex = (s.toneIndex + 1) % RINGBACK_CYCLE_FRAMES;
        } else if (spec.app === 'agent') {
          payload = s.agent ? agentFrame(s, s.agent, t) : SILENCE[spec.codec];
        } else {
          // Missing frames are concealed with silence; the buffer keeps the payload it was given.
          const f = s.playout.pop();
          payload = f.kind === 'frame' && f.payload ? f.payload : SILENCE[spec.codec];
        }
        sendFrame(s, payload);
      }
    }
    if (spec.app === 'agent') s.agent?.forwarder.tick(t);
    while (s.dtmfOut.length > 0 && s.dtmfOut[0]!.at <= t) sendEvent(s, s.dtmfOut.shift()!);
    if (t - s.lastRtcpAt > 5000) sendRtcp(s, t);
    const since = s.lastRxAt || s.configuredAt;
    if (spec.direction !== 'inactive' && spec.direction !== 'sendonly' && t - since > init.timeoutMs) {
      s.lastRxAt = t; // report once per timeout period
      post({ type: 'timeout', callId: s.callId });
    }
  }
}

const ULAW_FRAME_SILENCE = new Uint8Array(FRAME_SAMPLES).fill(ULAW_SILENCE);

function newAgentSide(s: Session, audio: AgentAudio, codec: Codec): AgentSide {
  const callId = s.callId;
  const l16 = audio.encoding === 'L16';
  const rate = l16 ? audio.sampleRate : 8000;
  const up = l16 && rate !== 8000 ? new Resampler(8000, rate) : null;
  const down = l16 && rate !== 8000 ? new Resampler(rate, 8000) : null;
  const pcm = new Int16Array(FRAME_SAMPLES);
  const outSamples = rate / 50;
  const decode = codec === 'PCMU' ? decodeUlaw : decodeAlaw;
  // Caller → agent: one message per 20 ms frame in the agent's format.
  const emit = (payload: Uint8Array | null, arrivedAt: number | null): void => {
    let audioOut: Uint8Array;
    if (!l16) {
      if (payload === null) audioOut = ULAW_FRAME_SILENCE.slice();
      else if (codec === 'PCMU') audioOut = new Uint8Array(payload);
      else {
        decodeAlaw(payload, pcm);
        audioOut = new Uint8Array(FRAME_SAMPLES);
        encodeUlaw(pcm, audioOut);
      }
    } else {
      if (payload === null) pcm.fill(0);
      else decode(payload.length === FRAME_SAMPLES ? payload : payload.subarray(0, FRAME_SAMPLES), pcm);
      const out = new Int16Array(outSamples);
      if (up) up.processInto(pcm, out);
      else out.set(pcm);
      audioOut = new Uint8Array(out.buffer);
    }
    postAudio({ type: 'audio', callId, audio: audioOut, arrivedAt: arrivedAt === null ? null : performance.timeOrigin + arrivedAt });
  };
  return {
    audio,
    codec,
    forwarder: new FrameForwarder(now(), emit, { frameMs: FRAME_MS }),
    queue: new PlayoutQueue({ frameBytes: FRAME_SAMPLES, maxBytes: Math.max(1, Math.round(audio.maxQueueMs * 8)), silence: codec === 'PCMU' ? ULAW_SILENCE : ALAW_SILENCE }),
    up,
    down,
    frame: new Uint8Array(FRAME_SAMPLES),
    released: [],
  };
}

/** The next frame of agent audio for the caller (silence when none is due); reports played marks. */
function agentFrame(s: Session, a: AgentSide, t: number): Uint8Array {
  const ok = a.queue.pop(a.frame, t, a.released);
  if (a.released.length) post({ type: 'marks', callId: s.callId, marks: a.released.splice(0) });
  return ok ? a.frame : SILENCE[a.codec];
}

/** Agent audio in: converted to the call's codec at 8 kHz and queued for playout. */
function play(callId: string, audio: Uint8Array): void {
  const s = sessions.get(callId);
  const a = s?.agent;
  if (!a) return;
  let bytes: Uint8Array;
  if (a.audio.encoding === 'PCMU') {
    if (a.codec === 'PCMU') bytes = audio;
    else {
      const pcm = new Int16Array(audio.length);
      decodeUlaw(audio, pcm);
      bytes = new Uint8Array(audio.length);
      encodeAlaw(pcm, bytes);
    }
  } else {
    const n = audio.length >> 1;
    // Little-endian PCM16 (the platforms Node runs on); copied when the view is unaligned.
    const samples = audio.byteOffset % 2 === 0 ? new Int16Array(audio.buffer, audio.byteOffset, n) : new Int16Array(audio.slice(0, n * 2).buffer);
    const pcm = a.down ? a.down.process(samples) : samples;
    bytes = new Uint8Array(pcm.length);
    (a.codec === 'PCMU' ? encodeUlaw : encodeAlaw)(pcm, bytes);
  }
  const r = a.queue.push(bytes, now());
  if (r.droppedBytes > 0) post({ type: 'overflow', callId, droppedMs: r.droppedBytes / 8 });
  if (r.marks.length) post({ type: 'marks', callId, marks: r.marks });
}

function close(callId: string): void {
  const s = sessions.get(callId);
  if (!s) {
    post({ type: 'closed', callId, stats: { packetsIn: 0, packetsOut: 0, bytesIn: 0, lost: 0, late: 0, authFailures: 0, rejectedSource: 0, dtmf: [] } });
    return;
  }
  sessions.delete(callId);
  s.dtmf.flush();
  usedPorts.delete(s.port);
  s.rtp.close();
  s.rtcp.close();
  const ps = s.playout.stats;
  const stats: SessionStats = { packetsIn: s.stats.packetsIn, packetsOut: s.stats.packetsOut, bytesIn: s.stats.bytesIn, lost: ps.lost, late: ps.late, authFailures: s.stats.authFailures, rejectedSource: s.latch?.dropped ?? 0, dtmf: s.stats.dtmf };
  post({ type: 'closed', callId, stats });
}

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'open':
      open(m.callId).catch((err: unknown) => post({ type: 'open-failed', callId: m.callId, reason: (err as Error).message }));
      return;
    case 'configure':
      configure(m.callId, m.spec);
      return;
    case 'close':
      close(m.callId);
      return;
    case 'dtmf':
      queueDtmf(m.callId, m.digit, m.durationMs);
      return;
    case 'play':
      play(m.callId, m.audio);
      return;
    case 'mark': {
      const s = sessions.get(m.callId);
      const now = s?.agent?.queue.mark(m.name);
      if (now) post({ type: 'marks', callId: m.callId, marks: [now] });
      return;
    }
    case 'clear': {
      const r = sessions.get(m.callId)?.agent?.queue.clear();
      if (r) post({ type: 'cleared', callId: m.callId, playedMs: r.playedBytes / 8, discardedMs: r.discardedBytes / 8, marks: r.marks });
      return;
    }
    case 'stats': {
      const cpu = process.cpuUsage();
      post({ type: 'stats', sessions: sessions.size, cpuUserUs: cpu.user, cpuSystemUs: cpu.system, heapUsed: process.memoryUsage().heapUsed });
      return;
    }
    case 'shutdown':
      for (const id of [...sessions.keys()]) close(id);
      clearInterval(timer);
      port.close();
      return;
  }
});

const timer = setInterval(tick, 5);
post({ type: 'ready' });
