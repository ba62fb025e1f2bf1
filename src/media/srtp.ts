/**
 * SRTP and SRTCP (RFC 3711) with node:crypto, for SDES-keyed calls (RFC 4568 crypto suites):
 *
 * - AES_CM_128_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_32: AES counter mode (§4.1.1) and
 *   HMAC-SHA1 (§4.2.1) with an 80- or 32-bit RTP tag; SRTCP always carries an 80-bit tag
 *   (RFC 4568 §6.2.1, RFC 3711 §5.2);
 * - AEAD_AES_128_GCM (RFC 7714): AES-GCM with a 128-bit tag and a 96-bit master salt.
 *
 * Session keys come from the AES-CM PRF (§4.3.1, §4.3.3) with a key derivation rate of 0: they
 * are derived once, when the context is built. One `SrtpContext` serves one direction (one for
 * what we send, one for what we receive); inside it, rollover counter (§3.3.1), replay window
 * (§3.3.2) and SRTCP index state are kept per SSRC.
 *
 * Receive order (§3.3): estimate the index, check the replay window, authenticate, and only
 * then decrypt and move the window, so a forged or replayed packet changes no state. (With GCM
 * OpenSSL decrypts while it authenticates; the plaintext is written back only once the tag
 * has checked.)
 *
 * Not supported: MKI (RFC 3711 §3.1, unused by SDES offers without `|mki`), key derivation rates
 * other than 0, encrypted header extensions (RFC 6904), and re-keying: a sender refuses packets
 * once the SRTCP index would pass 2^31 - 1; the 2^48 RTP limit is out of reach.
 *
 * Hot path (STYLE.md §14): AES-CM keystream comes from one long-lived AES-ECB cipher per
 * session key fed with counter blocks built in a preallocated buffer, instead of a new
 * `aes-128-ctr` cipher per packet, and is XORed from the input straight into the output (no
 * separate copy of the payload). HMAC-SHA1 is `HmacSha1` (./hmac-sha1.ts): the inner and outer
 * key blocks are hashed once per session key and a tag is computed into the packet with no
 * allocation, the ROC coming from a 4-octet scratch buffer rather than being written into the
 * packet. The one allocation left per AES-CM packet is the keystream buffer that
 * `Cipher.update` returns (node:crypto has no update-into); `protectRtp` / `unprotectRtp` also
 * make the buffer or view they return (`protectRtpInto` / `unprotectRtpInPlace` do not). GCM
 * still builds a cipher per packet.
 */
import { createCipheriv, createDecipheriv, createSecretKey, type Cipher, type KeyObject } from 'node:crypto';
import { TollgateError } from '../errors/index.js';
import { HmacSha1 } from './hmac-sha1.js';
import { rtpHeaderLength } from './rtp-packet.js';

export type SrtpProfile = 'AES_CM_128_HMAC_SHA1_80' | 'AES_CM_128_HMAC_SHA1_32' | 'AEAD_AES_128_GCM';

export interface SrtpProfileParams {
  readonly aead: boolean;
  /** Master and session encryption key length (octets). */
  readonly keyLength: number;
  /** Master and session salt length: 14 for AES-CM (§8.2), 12 for GCM (RFC 7714 §12). */
  readonly saltLength: number;
  /** Session authentication key length (HMAC-SHA1 key, §4.2.1); 0 for AEAD. */
  readonly authKeyLength: number;
  readonly rtpTagLength: number;
  readonly rtcpTagLength: number;
}

export const SRTP_PROFILES: Readonly<Record<SrtpProfile, SrtpProfileParams>> = Object.freeze({
  AES_CM_128_HMAC_SHA1_80: { aead: false, keyLength: 16, saltLength: 14, authKeyLength: 20, rtpTagLength: 10, rtcpTagLength: 10 },
  AES_CM_128_HMAC_SHA1_32: { aead: false, keyLength: 16, saltLength: 14, authKeyLength: 20, rtpTagLength: 4, rtcpTagLength: 10 },
  AEAD_AES_128_GCM: { aead: true, keyLength: 16, saltLength: 12, authKeyLength: 0, rtpTagLength: 16, rtcpTagLength: 16 },
});

/** Key derivation labels (RFC 3711 §4.3.1, §4.3.2). */
export const SRTP_LABEL = Object.freeze({
  RTP_ENCRYPTION: 0,
  RTP_AUTH: 1,
  RTP_SALT: 2,
  RTCP_ENCRYPTION: 3,
  RTCP_AUTH: 4,
  RTCP_SALT: 5,
});

/** The E flag and 31-bit SRTCP index that follow an SRTCP payload (§3.4). */
const SRTCP_INDEX_LENGTH = 4;
const SRTCP_INDEX_MAX = 0x7fffffff;
const RTCP_HEADER_LENGTH = 8;

/**
 * AES in counter mode as SRTP defines it (RFC 3711 §4.1.1): keystream block i is
 * AES(k, IV + i). Built on one long-lived AES-ECB cipher, which encrypts the counter blocks
 * this class writes into a reusable buffer: no cipher context is created per packet.
 */
export class AesCmKeystream {
  private readonly ecb: Cipher;
  private counters = Buffer.alloc(2048);
  private words = new Uint32Array(this.counters.buffer, this.counters.byteOffset, 512);
  /** views[k] = counters[0, 16k): made once per size, not per packet. */
  private views: Buffer[] = [];

  constructor(key: Uint8Array) {
    this.ecb = createCipheriv(`aes-${key.length * 8}-ecb`, key, null);
    this.ecb.setAutoPadding(false);
  }

  /** XORs the keystream that starts at the 16-octet counter `iv` into `buf[start, end)`. */
  xor(iv: Uint8Array, buf: Uint8Array, start: number, end: number): void {
    this.xorInto(iv, buf, start, buf, start, end - start);
  }

  /**
   * Writes `src[srcStart, srcStart + n)` XOR the keystream that starts at counter `iv` to
   * `dst[dstStart, dstStart + n)`: encrypts or decrypts and copies in one pass. `dst` may be
   * `src` at the same offset.
   */
  xorInto(iv: Uint8Array, src: Uint8Array, srcStart: number, dst: Uint8Array, dstStart: number, n: number): void {
    if (n <= 0) return;
    const blocks = (n + 15) >>> 4;
    const size = blocks << 4;
    if (size > this.counters.length) {
      this.counters = Buffer.alloc(1 << Math.ceil(Math.log2(size)));
      this.words = new Uint32Array(this.counters.buffer, this.counters.byteOffset, this.counters.length >>> 2);
      this.views = [];
    }
    const low = (iv[14]! << 8) | iv[15]!;
    if (LITTLE_ENDIAN && low + blocks <= 0x10000) this.fillCountersLE(iv, low, blocks);
    else this.fillCounters(iv, low, blocks);
    const ks = this.ecb.update(this.views[blocks] ?? (this.views[blocks] = this.counters.subarray(0, size)));
    for (let i = 0; i < n; i++) dst[dstStart + i] = src[srcStart + i]! ^ ks[i]!;
  }

  /** Counter blocks IV + b, four 32-bit stores a block; the sum stays in the low 16 bits. */
  private fillCountersLE(iv: Uint8Array, low: number, blocks: number): void {
    const w = this.words;
    const w0 = iv[0]! | (iv[1]! << 8) | (iv[2]! << 16) | (iv[3]! << 24);
    const w1 = iv[4]! | (iv[5]! << 8) | (iv[6]! << 16) | (iv[7]! << 24);
    const w2 = iv[8]! | (iv[9]! << 8) | (iv[10]! << 16) | (iv[11]! << 24);
    const w3 = iv[12]! | (iv[13]! << 8);
    for (let b = 0; b < blocks; b++) {
      const o = b << 2;
      const c = low + b;
      w[o] = w0;
      w[o + 1] = w1;
      w[o + 2] = w2;
      w[o + 3] = w3 | ((c >>> 8) << 16) | ((c & 0xff) << 24);
    }
  }

  /** Counter blocks IV + b as 128-bit big-endian integers, octet by octet (any IV, any host). */
  private fillCounters(iv: Uint8Array, low: number, blocks: number): void {
    const ctr = this.counters;
    for (let b = 0; b < blocks; b++) {
      const o = b << 4;
      for (let k = 0; k < 14; k++) ctr[o + k] = iv[k]!;
      const sum = low + b;
      ctr[o + 14] = (sum >>> 8) & 0xff;
      ctr[o + 15] = sum & 0xff;
      let carry = sum >>> 16;
      for (let k = o + 13; carry !== 0 && k >= o; k--) {
        const v = ctr[k]! + carry;
        ctr[k] = v & 0xff;
        carry = v >>> 8;
      }
    }
  }
}

const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/**
 * The SRTP key derivation function with key_derivation_rate 0 (RFC 3711 §4.3.1, §4.3.3):
 * AES-CM keystream under the master key, with IV = ((label << 48) XOR master_salt) · 2^16.
 * A 12-octet GCM master salt is zero-extended to 14 octets first (RFC 7714 §12), as libsrtp
 * does.
 */
export function deriveSessionKey(masterKey: Uint8Array, masterSalt: Uint8Array, label: number, length: number): Buffer {
  const iv = Buffer.alloc(16);
  iv.set(masterSalt.subarray(0, 14), 0);
  iv[7]! ^= label;
  const out = Buffer.alloc(length);
  new AesCmKeystream(masterKey).xor(iv, out, 0, length);
  return out;
}

/** Keys and reusable crypto state for one of RTP or RTCP. */
class SessionCrypto {
  readonly salt: Buffer;
  readonly cm: AesCmKeystream | null;
  readonly gcmKey: KeyObject | null;
  /** HMAC-SHA1 under the session authentication key (AES-CM profiles). */
  readonly auth: HmacSha1 | null;

  constructor(p: SrtpProfileParams, masterKey: Uint8Array, masterSalt: Uint8Array, rtcp: boolean) {
    const base = rtcp ? SRTP_LABEL.RTCP_ENCRYPTION : SRTP_LABEL.RTP_ENCRYPTION;
    const key = deriveSessionKey(masterKey, masterSalt, base, p.keyLength);
    this.salt = deriveSessionKey(masterKey, masterSalt, base + 2, p.saltLength);
    if (p.aead) {
      this.cm = null;
      this.gcmKey = createSecretKey(key);
      this.auth = null;
    } else {
      this.cm = new AesCmKeystream(key);
      this.gcmKey = null;
      const authKey = deriveSessionKey(masterKey, masterSalt, base + 1, p.authKeyLength);
      this.auth = new HmacSha1(authKey);
      authKey.fill(0);
    }
    key.fill(0);
  }
}

export type ReplayVerdict = 'ok' | 'REPLAYED' | 'TOO_OLD';

/**
 * Sliding replay window (RFC 3711 §3.3.2) over packet indices: a ring of bits, one per index
 * in (top - size, top]. Checking and accepting are separate so a packet moves the window only
 * after it has been authenticated.
 */
export class ReplayWindow {
  /** The highest index accepted so far; -1 before the first. */
  top = -1;
  private readonly bits: Uint32Array;

  constructor(readonly size: number) {
    checkWindowSize(size);
    this.bits = new Uint32Array(size / 32);
  }

  check(index: number): ReplayVerdict {
    if (index > this.top) return 'ok';
    if (this.top - index >= this.size) return 'TOO_OLD';
    const pos = index % this.size;
    return this.bits[pos >>> 5]! & (1 << (pos & 31)) ? 'REPLAYED' : 'ok';
  }

  accept(index: number): void {
    const delta = index - this.top;
    if (this.top < 0 || delta >= this.size) {
      this.bits.fill(0);
    } else {
      // Forget the slots the window slides over.
      for (let i = this.top + 1; i < index; i++) {
        const pos = i % this.size;
        this.bits[pos >>> 5]! &= ~(1 << (pos & 31));
      }
    }
    const pos = index % this.size;
    this.bits[pos >>> 5]! |= 1 << (pos & 31);
    if (delta > 0) this.top = index;
  }
}

function checkWindowSize(size: number): void {
  if (!Number.isInteger(size) || size < 64 || size % 32 !== 0 || size > 32768) {
    throw new TollgateError('VALIDATION_FAILED', 'SRTP replay window must be a multiple of 32 from 64 to 32768');
  }
}

/** The 48-bit SRTP packet index (RFC 3711 §3.3.1) from the highest index seen and a new SEQ. */
export function estimateIndex(top: number, seq: number): number {
  if (top < 0) return seq;
  const roc = Math.floor(top / 65536);
  const sl = top - roc * 65536;
  let v = roc;
  // Appendix A: if s_l < 2^15 a SEQ far above it belongs to the previous roll; if s_l ≥ 2^15,
  // a SEQ far below belongs to the next one.
  if (sl < 32768) {
    if (seq - sl > 32768) v = roc - 1;
  } else if (sl - 32768 > seq) {
    v = roc + 1;
  }
  // Before the first roll there is no ROC -1: take SEQ as it is (libsrtp does the same).
  if (v < 0) v = 0;
  return v * 65536 + seq;
}

export interface SrtpContextOptions {
  /** Replay window in packets (§3.3.2 requires at least 64). Default 128, as libsrtp. */
  replayWindow?: number;
  /**
   * Most SSRCs tracked. Default 64. Receiving: the oldest SSRC is forgotten to make room
   * (only authenticated packets create state). Sending: packets of a further SSRC are refused.
   */
  maxStreams?: number;
}

/** Counters for metrics and logs; read-only for callers. */
export interface SrtpStats {
  rtpProtected: number;
  rtpUnprotected: number;
  rtcpProtected: number;
  rtcpUnprotected: number;
  /** Packets refused because authentication failed. */
  authFailures: number;
  /** Packets refused as already seen, or older than the window (§3.3.2). */
  replayed: number;
  tooOld: number;
  /** Packets too short or not RTP/RTCP. */
  malformed: number;
  /** Sending: refused because the index was already used (keystream reuse), or out of streams. */
  sendRefused: number;
}

/**
 * SRTP/SRTCP for one direction of one session. `protect*` returns a new buffer with the tag
 * (or null when the packet is malformed or would reuse an index); `unprotect*` works in place
 * and returns a view of the caller's buffer holding the plain packet, or null when the packet
 * fails authentication, is a replay or is too old: it is then left unchanged.
 * `protect*Into` (caller's output buffer) and `unprotect*InPlace` (returns a length) are the
 * same without the returned buffer or view: for AES-CM they allocate nothing but node:crypto's
 * keystream buffer.
 */
export class SrtpContext {
  readonly params: SrtpProfileParams;
  readonly stats: SrtpStats = { rtpProtected: 0, rtpUnprotected: 0, rtcpProtected: 0, rtcpUnprotected: 0, authFailures: 0, replayed: 0, tooOld: 0, malformed: 0, sendRefused: 0 };

  private readonly rtp: SessionCrypto;
  private readonly rtcp: SessionCrypto;
  private readonly windowSize: number;
  private readonly maxStreams: number;
  private readonly txRtp = new Map<number, ReplayWindow>();
  private readonly rxRtp = new Map<number, ReplayWindow>();
  private readonly txRtcp = new Map<number, { next: number }>();
  private readonly rxRtcp = new Map<number, ReplayWindow>();
  private readonly iv = Buffer.alloc(16);
  private readonly gcmIv = Buffer.alloc(12);
  private readonly gcmAad = Buffer.alloc(RTCP_HEADER_LENGTH + SRTCP_INDEX_LENGTH);
  /** The ROC, big-endian: what RFC 3711 §4.2 appends to the authenticated portion of RTP. */
  private readonly rocOctets = new Uint8Array(4);

  constructor(
    readonly profile: SrtpProfile,
    masterKey: Uint8Array,
    masterSalt: Uint8Array,
    opts: SrtpContextOptions = {},
  ) {
    const p = SRTP_PROFILES[profile];
    if (!p) throw new TollgateError('VALIDATION_FAILED', `unknown SRTP profile ${String(profile)}`);
    if (masterKey.length !== p.keyLength) throw new TollgateError('VALIDATION_FAILED', `${profile} needs a ${p.keyLength}-octet master key`);
    if (masterSalt.length !== p.saltLength) throw new TollgateError('VALIDATION_FAILED', `${profile} needs a ${p.saltLength}-octet master salt`);
    this.params = p;
    this.windowSize = opts.replayWindow ?? 128;
    this.maxStreams = opts.maxStreams ?? 64;
    checkWindowSize(this.windowSize);
    this.rtp = new SessionCrypto(p, masterKey, masterSalt, false);
    this.rtcp = new SessionCrypto(p, masterKey, masterSalt, true);
  }

  /** A context from SDES key material: master key ‖ master salt (RFC 4568 §6.1 inline:), raw or base64. */
  static fromKeySalt(profile: SrtpProfile, keySalt: Uint8Array | string, opts?: SrtpContextOptions): SrtpContext {
    const p = SRTP_PROFILES[profile];
    const raw = typeof keySalt === 'string' ? Buffer.from(keySalt, 'base64') : keySalt;
    if (!p || raw.length !== p.keyLength + p.saltLength) {
      throw new TollgateError('VALIDATION_FAILED', `${profile} key material must be ${p ? p.keyLength + p.saltLength : '?'} octets`);
    }
    return new SrtpContext(profile, raw.subarray(0, p.keyLength), raw.subarray(p.keyLength), opts);
  }

  /** Octets SRTP adds to an RTP packet. */
  get rtpOverhead(): number {
    return this.params.rtpTagLength;
  }

  /** Octets SRTCP adds to an RTCP packet (E‖index + tag). */
  get rtcpOverhead(): number {
    return SRTCP_INDEX_LENGTH + this.params.rtcpTagLength;
  }

  /** Protects `packet[0, length)` into a new buffer; null when it is not RTP or would reuse an index. */
  protectRtp(packet: Buffer, length: number = packet.length): Buffer | null {
    const out = Buffer.allocUnsafe(length + this.params.rtpTagLength);
    const n = this.protectRtpInto(packet, length, out);
    return n < 0 ? null : out;
  }

  /**
   * Protects `packet[0, length)` into `out` (which may be `packet` itself when it has room for
   * the tag) and returns the SRTP length, or -1 when refused.
   */
  protectRtpInto(packet: Buffer, length: number, out: Buffer): number {
    const p = this.params;
    const hl = rtpHeaderLength(packet, length);
    if (hl < 0 || out.length < length + p.rtpTagLength) {
      this.stats.malformed++;
      return -1;
    }
    // SSRCs are kept as signed 32-bit integers: small integers as Map keys, where an SSRC of
    // 2^31 or more read unsigned would be boxed as a heap number on every packet.
    const ssrc = packet.readInt32BE(8);
    const seq = (packet[2]! << 8) | packet[3]!;
    let win = this.txRtp.get(ssrc);
    if (!win) {
      if (this.txRtp.size >= this.maxStreams) {
        this.stats.sendRefused++;
        return -1;
      }
      win = new ReplayWindow(this.windowSize);
      this.txRtp.set(ssrc, win);
    }
    const index = estimateIndex(win.top, seq);
    // Never encrypt two packets under one index: the keystream would repeat (§3.3.2, §9.1).
    if (win.check(index) !== 'ok') {
      this.stats.sendRefused++;
      return -1;
    }
    win.accept(index);
    const roc = Math.floor(index / 65536);
    if (p.aead) {
      if (out !== packet) packet.copy(out, 0, 0, length);
      this.gcmRtpIv(ssrc, roc, seq);
      const c = createCipheriv('aes-128-gcm', this.rtp.gcmKey!, this.gcmIv, { authTagLength: 16 });
      c.setAAD(out.subarray(0, hl));
      const ct = c.update(out.subarray(hl, length));
      ct.copy(out, hl);
      c.final();
      c.getAuthTag().copy(out, length);
    } else {
      this.cmIv(this.rtp.salt, ssrc, index);
      if (overlaps(packet, out, length)) {
        // In place (or `out` a shifted view of the same memory: copy with memmove first).
        if (out !== packet) packet.copy(out, 0, 0, length);
        this.rtp.cm!.xor(this.iv, out, hl, length);
      } else {
        // Header copied by a short loop (a partial Buffer.copy makes a view); payload
        // encrypted from `packet` straight into `out`.
        for (let i = 0; i < hl; i++) out[i] = packet[i]!;
        this.rtp.cm!.xorInto(this.iv, packet, hl, out, hl, length - hl);
      }
      // Tag over authenticated portion ‖ ROC (§4.2).
      this.rtp.auth!.mac(out, 0, length, this.setRoc(roc), out, length, p.rtpTagLength);
    }
    this.stats.rtpProtected++;
    return length + p.rtpTagLength;
  }

  /** Authenticates and decrypts an SRTP packet in place; returns the RTP packet (a view of `packet`) or null. */
  unprotectRtp(packet: Buffer, length: number = packet.length): Buffer | null {
    const n = this.unprotectRtpInPlace(packet, length);
    return n < 0 ? null : packet.subarray(0, n);
  }

  /**
   * As `unprotectRtp`, returning the length of the RTP packet now in `packet[0, n)`, or -1
   * (the packet is then unchanged). Makes no view.
   */
  unprotectRtpInPlace(packet: Buffer, length: number = packet.length): number {
    const p = this.params;
    const tagLen = p.rtpTagLength;
    const authLen = length - tagLen;
    const hl = authLen >= 12 ? rtpHeaderLength(packet, authLen) : -1;
    if (hl < 0) {
      this.stats.malformed++;
      return -1;
    }
    const ssrc = packet.readInt32BE(8);
    const seq = (packet[2]! << 8) | packet[3]!;
    const win = this.rxRtp.get(ssrc);
    const index = estimateIndex(win ? win.top : -1, seq);
    if (win && !this.replayOk(win.check(index))) return -1;
    const roc = Math.floor(index / 65536);

    if (p.aead) {
      this.gcmRtpIv(ssrc, roc, seq);
      const d = createDecipheriv('aes-128-gcm', this.rtp.gcmKey!, this.gcmIv, { authTagLength: 16 });
      d.setAAD(packet.subarray(0, hl));
      d.setAuthTag(packet.subarray(authLen, length));
      const pt = d.update(packet.subarray(hl, authLen));
      try {
        d.final();
      } catch {
        this.stats.authFailures++;
        return -1;
      }
      pt.copy(packet, hl);
    } else {
      // Tag over authenticated portion ‖ ROC (§4.2), compared in constant time; nothing in
      // the packet is written before it has checked.
      if (!this.rtp.auth!.verify(packet, 0, authLen, this.setRoc(roc), packet, authLen, tagLen)) {
        this.stats.authFailures++;
        return -1;
      }
      this.cmIv(this.rtp.salt, ssrc, index);
      this.rtp.cm!.xor(this.iv, packet, hl, authLen);
    }
    this.rxWindow(this.rxRtp, ssrc, win).accept(index);
    this.stats.rtpUnprotected++;
    return authLen;
  }

  /** Protects a (compound) RTCP packet into a new buffer, with E = 1 and the next SRTCP index. */
  protectRtcp(packet: Buffer, length: number = packet.length): Buffer | null {
    const out = Buffer.allocUnsafe(length + this.rtcpOverhead);
    const n = this.protectRtcpInto(packet, length, out);
    return n < 0 ? null : out;
  }

  /** As `protectRtcp`, into `out` (may be `packet` with room); returns the length or -1. */
  protectRtcpInto(packet: Buffer, length: number, out: Buffer): number {
    const p = this.params;
    if (length < RTCP_HEADER_LENGTH || packet[0]! >> 6 !== 2 || out.length < length + this.rtcpOverhead) {
      this.stats.malformed++;
      return -1;
    }
    const ssrc = packet.readInt32BE(4);
    let st = this.txRtcp.get(ssrc);
    if (!st) {
      if (this.txRtcp.size >= this.maxStreams) {
        this.stats.sendRefused++;
        return -1;
      }
      // §3.4: the SRTCP index starts at zero (libsrtp starts at 1; receivers accept either).
      st = { next: 0 };
      this.txRtcp.set(ssrc, st);
    }
    const index = st.next;
    if (index > SRTCP_INDEX_MAX) {
      // 2^31 packets under one key: re-keying is required (§9.2).
      this.stats.sendRefused++;
      return -1;
    }
    st.next++;
    const eIndex = (0x80000000 | index) >>> 0;
    if (p.aead) {
      if (out !== packet) packet.copy(out, 0, 0, length);
      // RFC 7714 §9: header ‖ ciphertext ‖ tag ‖ E‖index; AAD = header ‖ E‖index.
      this.gcmRtcpIv(ssrc, index);
      out.copy(this.gcmAad, 0, 0, RTCP_HEADER_LENGTH);
      this.gcmAad.writeUInt32BE(eIndex, RTCP_HEADER_LENGTH);
      const c = createCipheriv('aes-128-gcm', this.rtcp.gcmKey!, this.gcmIv, { authTagLength: 16 });
      c.setAAD(this.gcmAad);
      c.update(out.subarray(RTCP_HEADER_LENGTH, length)).copy(out, RTCP_HEADER_LENGTH);
      c.final();
      c.getAuthTag().copy(out, length);
      out.writeUInt32BE(eIndex, length + 16);
    } else {
      // §3.4: header ‖ encrypted portion ‖ E‖index ‖ tag, tag over all that precedes it.
      this.cmIv(this.rtcp.salt, ssrc, index);
      if (overlaps(packet, out, length)) {
        if (out !== packet) packet.copy(out, 0, 0, length);
        this.rtcp.cm!.xor(this.iv, out, RTCP_HEADER_LENGTH, length);
      } else {
        for (let i = 0; i < RTCP_HEADER_LENGTH; i++) out[i] = packet[i]!;
        this.rtcp.cm!.xorInto(this.iv, packet, RTCP_HEADER_LENGTH, out, RTCP_HEADER_LENGTH, length - RTCP_HEADER_LENGTH);
      }
      out.writeUInt32BE(eIndex, length);
      this.rtcp.auth!.mac(out, 0, length + SRTCP_INDEX_LENGTH, null, out, length + SRTCP_INDEX_LENGTH, p.rtcpTagLength);
    }
    this.stats.rtcpProtected++;
    return length + this.rtcpOverhead;
  }

  /** Authenticates and (if E = 1) decrypts an SRTCP packet in place; returns the RTCP (a view of `packet`) or null. */
  unprotectRtcp(packet: Buffer, length: number = packet.length): Buffer | null {
    const n = this.unprotectRtcpInPlace(packet, length);
    return n < 0 ? null : packet.subarray(0, n);
  }

  /** As `unprotectRtcp`, returning the length of the RTCP now in `packet[0, n)`, or -1. */
  unprotectRtcpInPlace(packet: Buffer, length: number = packet.length): number {
    const p = this.params;
    const tagLen = p.rtcpTagLength;
    const rtcpLen = length - SRTCP_INDEX_LENGTH - tagLen;
    if (rtcpLen < RTCP_HEADER_LENGTH || packet[0]! >> 6 !== 2) {
      this.stats.malformed++;
      return -1;
    }
    const ssrc = packet.readInt32BE(4);
    const indexAt = p.aead ? rtcpLen + tagLen : rtcpLen;
    const eIndex = packet.readUInt32BE(indexAt);
    const encrypted = eIndex >>> 31 === 1;
    const index = eIndex & SRTCP_INDEX_MAX;
    const win = this.rxRtcp.get(ssrc);
    if (win && !this.replayOk(win.check(index))) return -1;

    if (p.aead) {
      this.gcmRtcpIv(ssrc, index);
      const d = createDecipheriv('aes-128-gcm', this.rtcp.gcmKey!, this.gcmIv, { authTagLength: 16 });
      d.setAuthTag(packet.subarray(rtcpLen, rtcpLen + tagLen));
      let pt: Buffer | null = null;
      if (encrypted) {
        packet.copy(this.gcmAad, 0, 0, RTCP_HEADER_LENGTH);
        this.gcmAad.writeUInt32BE(eIndex, RTCP_HEADER_LENGTH);
        d.setAAD(this.gcmAad);
        pt = d.update(packet.subarray(RTCP_HEADER_LENGTH, rtcpLen));
      } else {
        // RFC 7714 §9.2: unencrypted SRTCP authenticates the whole packet and E‖index as AAD.
        d.setAAD(Buffer.concat([packet.subarray(0, rtcpLen), packet.subarray(indexAt, indexAt + SRTCP_INDEX_LENGTH)]));
      }
      try {
        d.final();
      } catch {
        this.stats.authFailures++;
        return -1;
      }
      if (pt) pt.copy(packet, RTCP_HEADER_LENGTH);
    } else {
      // §3.4: the tag covers header ‖ encrypted portion ‖ E‖index; constant-time comparison.
      const authEnd = rtcpLen + SRTCP_INDEX_LENGTH;
      if (!this.rtcp.auth!.verify(packet, 0, authEnd, null, packet, authEnd, tagLen)) {
        this.stats.authFailures++;
        return -1;
      }
      if (encrypted) {
        this.cmIv(this.rtcp.salt, ssrc, index);
        this.rtcp.cm!.xor(this.iv, packet, RTCP_HEADER_LENGTH, rtcpLen);
      }
    }
    this.rxWindow(this.rxRtcp, ssrc, win).accept(index);
    this.stats.rtcpUnprotected++;
    return rtcpLen;
  }

  /** The rollover counter in use for a received SSRC (for tests and diagnostics), or null. */
  receivedRoc(ssrc: number): number | null {
    const w = this.rxRtp.get(ssrc | 0);
    return w ? Math.floor(w.top / 65536) : null;
  }

  /** The next SRTCP index this context will send for an SSRC. */
  nextSrtcpIndex(ssrc: number): number {
    return this.txRtcp.get(ssrc | 0)?.next ?? 0;
  }

  private replayOk(v: ReplayVerdict): boolean {
    if (v === 'ok') return true;
    if (v === 'REPLAYED') this.stats.replayed++;
    else this.stats.tooOld++;
    return false;
  }

  private rxWindow(map: Map<number, ReplayWindow>, ssrc: number, win: ReplayWindow | undefined): ReplayWindow {
    if (win) return win;
    if (map.size >= this.maxStreams) {
      const oldest = map.keys().next();
      if (!oldest.done) map.delete(oldest.value);
    }
    const w = new ReplayWindow(this.windowSize);
    map.set(ssrc, w);
    return w;
  }

  /** The ROC as the 4 big-endian octets appended to RTP for authentication (§4.2). */
  private setRoc(roc: number): Uint8Array {
    const r = this.rocOctets;
    r[0] = roc >>> 24;
    r[1] = roc >>> 16;
    r[2] = roc >>> 8;
    r[3] = roc;
    return r;
  }

  /** AES-CM IV (§4.1.1): (k_s · 2^16) XOR (SSRC · 2^64) XOR (i · 2^16), i up to 48 bits. */
  private cmIv(salt: Buffer, ssrc: number, index: number): void {
    const iv = this.iv;
    salt.copy(iv, 0, 0, 14);
    iv[14] = 0;
    iv[15] = 0;
    iv[4]! ^= ssrc >>> 24;
    iv[5]! ^= (ssrc >>> 16) & 0xff;
    iv[6]! ^= (ssrc >>> 8) & 0xff;
    iv[7]! ^= ssrc & 0xff;
    const hi = Math.floor(index / 0x1_0000_0000); // upper 16 bits of the 48-bit index
    const lo = index >>> 0;
    iv[8]! ^= (hi >>> 8) & 0xff;
    iv[9]! ^= hi & 0xff;
    iv[10]! ^= lo >>> 24;
    iv[11]! ^= (lo >>> 16) & 0xff;
    iv[12]! ^= (lo >>> 8) & 0xff;
    iv[13]! ^= lo & 0xff;
  }

  /** RFC 7714 §8.1: IV = (0x0000 ‖ SSRC ‖ ROC ‖ SEQ) XOR salt. */
  private gcmRtpIv(ssrc: number, roc: number, seq: number): void {
    const iv = this.gcmIv;
    iv[0] = 0;
    iv[1] = 0;
    iv.writeInt32BE(ssrc, 2);
    iv.writeUInt32BE(roc >>> 0, 6);
    iv[10] = seq >>> 8;
    iv[11] = seq & 0xff;
    for (let i = 0; i < 12; i++) iv[i]! ^= this.rtp.salt[i]!;
  }

  /** RFC 7714 §9.1: IV = (0x0000 ‖ SSRC ‖ 0x0000 ‖ 0 ‖ SRTCP index) XOR salt. */
  private gcmRtcpIv(ssrc: number, index: number): void {
    const iv = this.gcmIv;
    iv[0] = 0;
    iv[1] = 0;
    iv.writeInt32BE(ssrc, 2);
    iv[6] = 0;
    iv[7] = 0;
    iv.writeUInt32BE(index, 8);
    for (let i = 0; i < 12; i++) iv[i]! ^= this.rtcp.salt[i]!;
  }
}

/** Whether `a[0, n)` and `b[0, n)` share memory (then a copy between them must be a memmove). */
function overlaps(a: Uint8Array, b: Uint8Array, n: number): boolean {
  return a === b || (a.buffer === b.buffer && a.byteOffset < b.byteOffset + n && b.byteOffset < a.byteOffset + n);
}
