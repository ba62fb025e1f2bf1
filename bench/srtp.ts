/**
 * npm run bench:srtp — per-packet media costs, printed as JSON.
 * SRTP protect / unprotect of a 172-octet RTP packet (12-octet header + 160 octets of PCMU,
 * one 20 ms frame) for each profile, next to a naive baseline that builds an aes-128-ctr
 * cipher per packet; G.711 encode / decode of a 160-sample frame; RTP header parse.
 * `protectUs` / `unprotectUs` time `protectRtp` (new buffer) and `unprotectRtp` (a view);
 * `protectIntoUs` / `unprotectInPlaceUs` the caller-owned-buffer forms the media worker can
 * use (`protectRtpInto`, `unprotectRtpInPlace`). `hmacSha1` compares the precomputed JS
 * HMAC-SHA1 with node:crypto's `createHmac` on the same 172 + 4 octets.
 * Reference (ARCHITECTURE.md): AES-CM + HMAC-SHA1 with node:crypto ~7 µs per packet, ~5 µs
 * with reused cipher/HMAC state. Every loop is bounded in count.
 */
import { createCipheriv, createHmac, createSecretKey, randomBytes } from 'node:crypto';
import { HmacSha1 } from '../src/media/hmac-sha1.js';
import { RtpHeader, parseRtpHeader, writeRtpHeader, type RtpHeaderFields } from '../src/media/rtp-packet.js';
import { SrtpContext, deriveSessionKey, type SrtpProfile } from '../src/media/srtp.js';
import { decodeAlaw, decodeUlaw, encodeAlaw, encodeUlaw } from '../src/media/g711.js';

const quick = process.argv.includes('--quick');
const N = quick ? 20_000 : 200_000;
const WARMUP = quick ? 5_000 : 20_000;
const PAYLOAD = 160;

const round = (v: number, d = 3) => Math.round(v * 10 ** d) / 10 ** d;
const nowNs = () => process.hrtime.bigint();

function makePacket(): { pkt: Buffer; fields: RtpHeaderFields } {
  const pkt = Buffer.alloc(12 + PAYLOAD);
  randomBytes(PAYLOAD).copy(pkt, 12);
  return { pkt, fields: { marker: false, payloadType: 0, sequenceNumber: 0, timestamp: 0, ssrc: 0x1234abcd } };
}

function srtp(profile: SrtpProfile) {
  const keyLen = 16;
  const saltLen = profile === 'AEAD_AES_128_GCM' ? 12 : 14;
  const key = randomBytes(keyLen);
  const salt = randomBytes(saltLen);
  const { pkt, fields } = makePacket();

  // Warm-up on its own SSRC so the JIT has settled before timing.
  const wtx = new SrtpContext(profile, key, salt);
  const wrx = new SrtpContext(profile, key, salt);
  fields.ssrc = 0x0bad0bad;
  for (let i = 0; i < WARMUP; i++) {
    fields.sequenceNumber = i & 0xffff;
    writeRtpHeader(pkt, 0, fields);
    wrx.unprotectRtp(wtx.protectRtp(pkt)!);
  }

  const tx = new SrtpContext(profile, key, salt);
  const rx = new SrtpContext(profile, key, salt);
  fields.ssrc = 0x1234abcd;
  // Chunks of 1000, each protected then unprotected, so packets die young as on a real relay
  // (keeping all 200k alive would time the garbage collector instead).
  const CHUNK = 1000;
  const out = new Array<Buffer>(CHUNK);
  let protectNs = 0;
  let unprotectNs = 0;
  let ok = 0;
  for (let base = 0; base < N; base += CHUNK) {
    let t0 = nowNs();
    for (let j = 0; j < CHUNK; j++) {
      const i = base + j;
      fields.sequenceNumber = i & 0xffff; // wraps three times over 200k packets: ROC in play
      fields.timestamp = i * 160;
      writeRtpHeader(pkt, 0, fields);
      out[j] = tx.protectRtp(pkt)!;
    }
    protectNs += Number(nowNs() - t0);
    t0 = nowNs();
    for (let j = 0; j < CHUNK; j++) if (rx.unprotectRtp(out[j]!)) ok++;
    unprotectNs += Number(nowNs() - t0);
  }
  if (ok !== N) throw new Error(`${profile}: ${N - ok} packets failed to unprotect`);

  // Same again into caller-owned buffers (allocated once) and unprotected in place.
  const tx2 = new SrtpContext(profile, key, salt);
  const rx2 = new SrtpContext(profile, key, salt);
  const bufs = Array.from({ length: CHUNK }, () => Buffer.alloc(1500));
  const lens = new Int32Array(CHUNK);
  let intoNs = 0;
  let inPlaceNs = 0;
  ok = 0;
  for (let base = 0; base < N; base += CHUNK) {
    let t0 = nowNs();
    for (let j = 0; j < CHUNK; j++) {
      const i = base + j;
      fields.sequenceNumber = i & 0xffff;
      fields.timestamp = i * 160;
      writeRtpHeader(pkt, 0, fields);
      lens[j] = tx2.protectRtpInto(pkt, pkt.length, bufs[j]!);
    }
    intoNs += Number(nowNs() - t0);
    t0 = nowNs();
    for (let j = 0; j < CHUNK; j++) if (rx2.unprotectRtpInPlace(bufs[j]!, lens[j]) >= 0) ok++;
    inPlaceNs += Number(nowNs() - t0);
  }
  if (ok !== N) throw new Error(`${profile}: ${N - ok} packets failed to unprotect in place`);
  return {
    packetOctets: pkt.length,
    srtpOctets: out[0]!.length,
    packets: N,
    protectUs: round(protectNs / N / 1000),
    unprotectUs: round(unprotectNs / N / 1000),
    protectPerSec: Math.round(N / (protectNs / 1e9)),
    unprotectPerSec: Math.round(N / (unprotectNs / 1e9)),
    protectIntoUs: round(intoNs / N / 1000),
    unprotectInPlaceUs: round(inPlaceNs / N / 1000),
  };
}

/** HMAC-SHA1 over 172 + 4 octets (RTP packet ‖ ROC), 80-bit tag: HmacSha1 against createHmac. */
function hmacSha1() {
  const key = randomBytes(20);
  const keyObject = createSecretKey(key);
  const mac = new HmacSha1(key);
  const buf = randomBytes(172 + 10);
  const roc = Buffer.alloc(4);
  const time = (f: (i: number) => void) => {
    for (let i = 0; i < WARMUP; i++) f(i);
    const t0 = nowNs();
    for (let i = 0; i < N; i++) f(i);
    return round(Number(nowNs() - t0) / N / 1000);
  };
  return {
    messageOctets: 176,
    jsUs: time((i) => {
      buf[3] = i & 0xff;
      mac.mac(buf, 0, 172, roc, buf, 172, 10);
    }),
    nodeCryptoUs: time((i) => {
      buf[3] = i & 0xff;
      createHmac('sha1', keyObject).update(buf.subarray(0, 172)).update(roc).digest().copy(buf, 172, 0, 10);
    }),
  };
}

/** What a straightforward implementation does: a new aes-128-ctr cipher and Hmac per packet. */
function naiveBaseline() {
  const encKey = randomBytes(16);
  const authKey = createSecretKey(deriveSessionKey(randomBytes(16), randomBytes(14), 1, 20));
  const iv = randomBytes(16);
  const { pkt } = makePacket();
  const roc = Buffer.alloc(4);
  const run = (n: number) => {
    for (let i = 0; i < n; i++) {
      iv[13] = i & 0xff;
      const c = createCipheriv('aes-128-ctr', encKey, iv);
      const ct = c.update(pkt.subarray(12));
      const out = Buffer.allocUnsafe(pkt.length + 10);
      pkt.copy(out, 0, 0, 12);
      ct.copy(out, 12);
      createHmac('sha1', authKey).update(out.subarray(0, pkt.length)).update(roc).digest().copy(out, pkt.length, 0, 10);
    }
  };
  run(WARMUP);
  const t0 = nowNs();
  run(N);
  return { note: 'createCipheriv(aes-128-ctr) + createHmac per packet, no replay/ROC bookkeeping', protectUs: round(Number(nowNs() - t0) / N / 1000) };
}

function g711() {
  const pcm = new Int16Array(160);
  for (let i = 0; i < 160; i++) pcm[i] = Math.round(12000 * Math.sin((2 * Math.PI * 440 * i) / 8000));
  const codes = new Uint8Array(160);
  const back = new Int16Array(160);
  const time = (f: () => void) => {
    for (let i = 0; i < WARMUP; i++) f();
    const t0 = nowNs();
    for (let i = 0; i < N; i++) f();
    return round(Number(nowNs() - t0) / N, 1);
  };
  return {
    frameSamples: 160,
    frames: N,
    ulawEncodeNsPerFrame: time(() => encodeUlaw(pcm, codes)),
    ulawDecodeNsPerFrame: time(() => decodeUlaw(codes, back)),
    alawEncodeNsPerFrame: time(() => encodeAlaw(pcm, codes)),
    alawDecodeNsPerFrame: time(() => decodeAlaw(codes, back)),
  };
}

function rtpParse() {
  const { pkt, fields } = makePacket();
  writeRtpHeader(pkt, 0, fields);
  const h = new RtpHeader();
  for (let i = 0; i < WARMUP; i++) parseRtpHeader(pkt, h);
  const t0 = nowNs();
  for (let i = 0; i < N; i++) {
    pkt[3] = i & 0xff;
    parseRtpHeader(pkt, h);
  }
  return { parseNs: round(Number(nowNs() - t0) / N, 1) };
}

const result = {
  bench: 'srtp',
  node: process.version,
  quick,
  srtp: {
    AES_CM_128_HMAC_SHA1_80: srtp('AES_CM_128_HMAC_SHA1_80'),
    AES_CM_128_HMAC_SHA1_32: srtp('AES_CM_128_HMAC_SHA1_32'),
    AEAD_AES_128_GCM: srtp('AEAD_AES_128_GCM'),
    naiveBaseline: naiveBaseline(),
    hmacSha1: hmacSha1(),
    referenceUs: { naive: 7, reusedState: 5 },
  },
  g711: g711(),
  rtpHeader: rtpParse(),
};
process.stdout.write(JSON.stringify(result, null, 2) + '\n');
