import { afterAll, describe, it, expect } from 'vitest';
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { TollgateError } from '../errors/index.js';
import { optionalTool } from '../testing/system-tools.js';
import { writeRtpHeader, writeSenderReport } from './rtp-packet.js';
import { AesCmKeystream, ReplayWindow, SRTP_LABEL, SrtpContext, deriveSessionKey, estimateIndex, type SrtpProfile } from './srtp.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const PROFILES: SrtpProfile[] = ['AES_CM_128_HMAC_SHA1_80', 'AES_CM_128_HMAC_SHA1_32', 'AEAD_AES_128_GCM'];

// RFC 3711 Appendix B.3 master key and salt; libsrtp's srtp_validate() uses the same.
const B3_KEY = hex('E1F97A0D3E018BE0D64FA32C06DE4139');
const B3_SALT = hex('0EC675AD498AFEEBB6960B3AABE6');
// libsrtp's srtp_validate_gcm() key and 96-bit salt.
const GCM_KEY = hex('000102030405060708090a0b0c0d0e0f');
const GCM_SALT = hex('a0a1a2a3a4a5a6a7a8a9aaab');

function keysFor(profile: SrtpProfile): [Buffer, Buffer] {
  return profile === 'AEAD_AES_128_GCM' ? [GCM_KEY, GCM_SALT] : [B3_KEY, B3_SALT];
}

function pair(profile: SrtpProfile, opts?: ConstructorParameters<typeof SrtpContext>[3]): { tx: SrtpContext; rx: SrtpContext } {
  const [k, s] = keysFor(profile);
  return { tx: new SrtpContext(profile, k, s, opts), rx: new SrtpContext(profile, k, s, opts) };
}

/** An RTP packet with a recognisable payload (160 octets of PCMU by default). */
function rtp(seq: number, ssrc = 0x11223344, payload = 160, csrcs?: number[]): Buffer {
  const buf = Buffer.alloc(12 + (csrcs?.length ?? 0) * 4 + payload);
  const hl = writeRtpHeader(buf, 0, { marker: false, payloadType: 0, sequenceNumber: seq, timestamp: seq * 160, ssrc, csrcs });
  for (let i = hl; i < buf.length; i++) buf[i] = (i * 7 + seq) & 0xff;
  return buf;
}

function rtcpSr(ssrc = 0x11223344): Buffer {
  const buf = Buffer.alloc(28);
  writeSenderReport(buf, 0, { ssrc, ntpSeconds: 1, ntpFraction: 2, rtpTimestamp: 3, packetCount: 4, octetCount: 5 });
  return buf;
}

describe('SRTP key derivation (RFC 3711 §4.3, Appendix B.3)', () => {
  it('derives the cipher key (label 0), cipher salt (label 2) and auth key (label 1) of the test vectors', () => {
    expect(deriveSessionKey(B3_KEY, B3_SALT, SRTP_LABEL.RTP_ENCRYPTION, 16).toString('hex')).toBe('c61e7a93744f39ee10734afe3ff7a087');
    expect(deriveSessionKey(B3_KEY, B3_SALT, SRTP_LABEL.RTP_SALT, 14).toString('hex')).toBe('30cbbc08863d8c85d49db34a9ae1');
    expect(deriveSessionKey(B3_KEY, B3_SALT, SRTP_LABEL.RTP_AUTH, 94).toString('hex').toUpperCase()).toBe(
      'CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE' +
      'E049646C43D9327AD175578EF72270986371C10C9A369AC2F94A8C5FBCDDDC25' +
      '6D6E919A48B610EF17C2041E474035766B68642C59BBFC2F34DB60DBDFB2',
    );
  });

  it('RTCP session keys use labels 3, 4 and 5 and differ from the RTP ones', () => {
    const rtpKey = deriveSessionKey(B3_KEY, B3_SALT, SRTP_LABEL.RTP_ENCRYPTION, 16);
    const rtcpKey = deriveSessionKey(B3_KEY, B3_SALT, SRTP_LABEL.RTCP_ENCRYPTION, 16);
    expect(SRTP_LABEL).toMatchObject({ RTCP_ENCRYPTION: 3, RTCP_AUTH: 4, RTCP_SALT: 5 });
    expect(rtcpKey.equals(rtpKey)).toBe(false);
  });
});

describe('AES-CM keystream (RFC 3711 §4.1.1, Appendix B.2)', () => {
  it('produces the test-vector keystream blocks, including past counter 0xFEFF', () => {
    const ks = Buffer.alloc(0xff02 * 16);
    new AesCmKeystream(hex('2B7E151628AED2A6ABF7158809CF4F3C')).xor(hex('F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000'), ks, 0, ks.length);
    const block = (i: number) => ks.subarray(i * 16, i * 16 + 16).toString('hex').toUpperCase();
    expect(block(0)).toBe('E03EAD0935C95E80E166B16DD92B4EB4');
    expect(block(1)).toBe('D23513162B02D0F72A43A2FE4A5F97AB');
    expect(block(2)).toBe('41E95B3BB0A2E8DD477901E4FCA894C0');
    expect(block(0xfeff)).toBe('EC8CDF7398607CB0F2D21675EA9EA1E4');
    expect(block(0xff00)).toBe('362B7C3C6773516318A077D7FC5073AE');
    expect(block(0xff01)).toBe('6A2CC3787889374FBEB4C81B17BA6C44');
  });

  it('matches OpenSSL aes-128-ctr, which counts over all 128 bits, also when the low 16 bits carry', () => {
    const key = randomBytes(16);
    for (const tail of ['0000', 'fff0', 'ffff']) {
      const iv = Buffer.concat([randomBytes(13), hex('ff' + tail)]);
      const data = randomBytes(40 * 16 + 5);
      const ours = Buffer.from(data);
      new AesCmKeystream(key).xor(iv, ours, 0, ours.length);
      const ref = createCipheriv('aes-128-ctr', key, iv).update(data);
      expect(ours.equals(ref), `IV ending ${tail}`).toBe(true);
    }
  });

  it('XORs only the requested range and handles a partial last block', () => {
    const key = randomBytes(16);
    const iv = Buffer.concat([randomBytes(14), Buffer.alloc(2)]);
    const full = Buffer.alloc(48);
    new AesCmKeystream(key).xor(iv, full, 0, 48);
    const part = Buffer.alloc(40, 0);
    new AesCmKeystream(key).xor(iv, part, 3, 40);
    expect(part.subarray(0, 3).equals(Buffer.alloc(3))).toBe(true);
    expect(part.subarray(3, 40).equals(full.subarray(0, 37))).toBe(true);
  });
});

describe('known-answer packets (libsrtp test/srtp_driver.c srtp_validate, srtp_validate_gcm)', () => {
  const plainRtp = hex('800f1234 decafbad cafebabe' + 'ab'.repeat(16));
  const plainRtcp = hex('81c8000b cafebabe' + 'ab'.repeat(16));

  it('AES_CM_128_HMAC_SHA1_80 protects the reference RTP packet octet for octet and unprotects it', () => {
    const ref = '800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb';
    const { tx, rx } = pair('AES_CM_128_HMAC_SHA1_80');
    expect(tx.protectRtp(plainRtp)!.toString('hex')).toBe(ref);
    expect(rx.unprotectRtp(hex(ref))!.equals(plainRtp)).toBe(true);
  });

  it('AES_CM_128_HMAC_SHA1_32 carries the same ciphertext with the tag cut to 32 bits', () => {
    const { tx, rx } = pair('AES_CM_128_HMAC_SHA1_32');
    const ref = '800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc';
    expect(tx.protectRtp(plainRtp)!.toString('hex')).toBe(ref);
    expect(rx.unprotectRtp(hex(ref))!.equals(plainRtp)).toBe(true);
  });

  it('SRTCP: the packet with index 1 matches libsrtp (whose first index is 1; ours is 0, §3.4)', () => {
    const ref = '81c8000bcafebabe7128035be487b9bdbef89041f977a5a880000001993e08cd54d6c1230798';
    const { tx, rx } = pair('AES_CM_128_HMAC_SHA1_80');
    expect(tx.protectRtcp(plainRtcp)!.subarray(24, 28).toString('hex')).toBe('80000000');
    expect(tx.protectRtcp(plainRtcp)!.toString('hex')).toBe(ref);
    expect(rx.unprotectRtcp(hex(ref))!.equals(plainRtcp)).toBe(true);
  });

  it('AEAD_AES_128_GCM (RFC 7714) protects the reference RTP and SRTCP packets', () => {
    const refRtp = '800f1234decafbadcafebabec5002ede04cfdd2eb91159e0880aa06ed2976826f796b201df3131a127e8a392';
    const refRtcp = '81c8000bcafebabec98b8b5df0392a55852b6c21ac8e7025c52c6fbea2b3b446ea31123ba88ce61e80000001';
    const { tx, rx } = pair('AEAD_AES_128_GCM');
    expect(tx.protectRtp(plainRtp)!.toString('hex')).toBe(refRtp);
    tx.protectRtcp(plainRtcp);
    expect(tx.protectRtcp(plainRtcp)!.toString('hex')).toBe(refRtcp);
    expect(rx.unprotectRtp(hex(refRtp))!.equals(plainRtp)).toBe(true);
    expect(rx.unprotectRtcp(hex(refRtcp))!.equals(plainRtcp)).toBe(true);
  });
});

describe('SRTP packet index (RFC 3711 §3.3.1, Appendix A)', () => {
  it('estimates ROC - 1, ROC or ROC + 1 from the highest index seen', () => {
    expect(estimateIndex(-1, 40000)).toBe(40000); // first packet of a stream: ROC 0
    expect(estimateIndex(65535, 0)).toBe(65536); // s_l ≥ 2^15 and SEQ far below: next roll
    expect(estimateIndex(65535, 65534)).toBe(65534);
    expect(estimateIndex(65536 + 2, 65535)).toBe(65535); // s_l < 2^15 and SEQ far above: previous roll
    expect(estimateIndex(5 * 65536 + 100, 200)).toBe(5 * 65536 + 200);
    expect(estimateIndex(100, 65000)).toBe(65000); // no ROC -1 before the first roll
  });
});

describe('replay window (RFC 3711 §3.3.2)', () => {
  it('accepts new and unseen-in-window indices, refuses seen ones and those left of the window', () => {
    const w = new ReplayWindow(64);
    expect(w.check(10)).toBe('ok');
    w.accept(10);
    expect(w.check(10)).toBe('REPLAYED');
    w.accept(100);
    expect([w.check(99), w.check(37), w.check(36), w.check(100), w.check(101)]).toEqual(['ok', 'ok', 'TOO_OLD', 'REPLAYED', 'ok']);
    w.accept(99);
    expect(w.check(99)).toBe('REPLAYED');
    w.accept(100 + 64 + 5); // slides past everything
    expect([w.check(100 + 64 + 4), w.check(100)]).toEqual(['ok', 'TOO_OLD']);
  });

  it('rejects a window smaller than 64 (the §3.3.2 minimum) or not a multiple of 32', () => {
    expect(() => new ReplayWindow(32)).toThrow(TollgateError);
    expect(() => new ReplayWindow(100)).toThrow(/multiple of 32/);
  });
});

describe.each(PROFILES)('SrtpContext %s', (profile) => {
  const tagLen = profile === 'AES_CM_128_HMAC_SHA1_80' ? 10 : profile === 'AES_CM_128_HMAC_SHA1_32' ? 4 : 16;

  it('round-trips RTP: header in clear, payload encrypted, tag appended', () => {
    const { tx, rx } = pair(profile);
    for (const pkt of [rtp(1), rtp(2, 0x11223344, 160, [0xa, 0xb]), rtp(3, 0x11223344, 0)]) {
      const srtp = tx.protectRtp(pkt)!;
      expect(srtp.length).toBe(pkt.length + tagLen);
      const hl = 12 + (pkt[0]! & 0x0f) * 4;
      expect(srtp.subarray(0, hl).equals(pkt.subarray(0, hl))).toBe(true);
      if (pkt.length > hl) expect(srtp.subarray(hl, pkt.length).equals(pkt.subarray(hl))).toBe(false);
      expect(rx.unprotectRtp(srtp)!.equals(pkt)).toBe(true);
    }
    expect([tx.stats.rtpProtected, rx.stats.rtpUnprotected]).toEqual([3, 3]);
  });

  it('leaves a header extension in clear and encrypts only after it', () => {
    const { tx, rx } = pair(profile);
    const pkt = hex('90000007 00000460 11223344 bede0001 10aa0000' + '55'.repeat(20));
    const srtp = tx.protectRtp(pkt)!;
    expect(srtp.subarray(0, 20).equals(pkt.subarray(0, 20))).toBe(true);
    expect(rx.unprotectRtp(srtp)!.equals(pkt)).toBe(true);
  });

  it('unprotects in place: the result is a view of the received buffer', () => {
    const { tx, rx } = pair(profile);
    const srtp = tx.protectRtp(rtp(9))!;
    const plain = rx.unprotectRtp(srtp)!;
    expect(plain.buffer).toBe(srtp.buffer);
    expect(plain.byteOffset).toBe(srtp.byteOffset);
  });

  it('protects into a caller buffer, including in place when it has room for the tag', () => {
    const { tx, rx } = pair(profile);
    const pkt = rtp(20);
    const room = Buffer.alloc(pkt.length + 16);
    pkt.copy(room);
    const n = tx.protectRtpInto(room, pkt.length, room);
    expect(n).toBe(pkt.length + tagLen);
    expect(rx.unprotectRtp(room.subarray(0, n))!.equals(pkt)).toBe(true);
    expect(tx.protectRtpInto(rtp(21), 172, Buffer.alloc(172))).toBe(-1); // no room for the tag
  });

  it('refuses a packet whose payload, header or tag was altered, and leaves it unchanged', () => {
    const { tx, rx } = pair(profile);
    for (const at of [5, 20, -1]) {
      const srtp = tx.protectRtp(rtp(100 + at + 1))!;
      const pos = at < 0 ? srtp.length - 1 : at;
      srtp[pos]! ^= 0x01;
      const before = Buffer.from(srtp);
      expect(rx.unprotectRtp(srtp), `flip at ${pos}`).toBeNull();
      expect(srtp.equals(before)).toBe(true);
    }
    expect(rx.stats.authFailures).toBe(3);
  });

  it('refuses packets under another master key', () => {
    const [k, s] = keysFor(profile);
    const tx = new SrtpContext(profile, k, s);
    const other = Buffer.from(k);
    other[0]! ^= 0x80;
    const rx = new SrtpContext(profile, other, s);
    expect(rx.unprotectRtp(tx.protectRtp(rtp(1))!)).toBeNull();
  });

  it('refuses a replayed packet, accepts reordering inside the window, refuses packets older than it', () => {
    const { tx, rx } = pair(profile);
    const sent = new Map<number, Buffer>();
    for (let seq = 1000; seq < 1200; seq++) sent.set(seq, tx.protectRtp(rtp(seq))!);
    const copy = (seq: number) => Buffer.from(sent.get(seq)!);
    expect(rx.unprotectRtp(copy(1001))).not.toBeNull();
    expect(rx.unprotectRtp(copy(1001))).toBeNull(); // replay
    expect(rx.unprotectRtp(copy(1003))).not.toBeNull();
    expect(rx.unprotectRtp(copy(1002))).not.toBeNull(); // late but inside the window
    expect(rx.unprotectRtp(copy(1199))).not.toBeNull();
    expect(rx.unprotectRtp(copy(1199 - 127))).not.toBeNull(); // edge of the 128-packet window
    expect(rx.unprotectRtp(copy(1199 - 128))).toBeNull(); // too old
    expect(rx.unprotectRtp(copy(1003))).toBeNull();
    expect([rx.stats.replayed, rx.stats.tooOld]).toEqual([1, 2]);
  });

  it('a forged packet with a far sequence number moves neither the window nor the ROC', () => {
    const { tx, rx } = pair(profile);
    expect(rx.unprotectRtp(tx.protectRtp(rtp(65000))!)).not.toBeNull();
    // Seq 100 after 65000 would mean ROC 1; its tag is garbage.
    const forged = pair(profile).tx.protectRtp(rtp(100))!;
    forged[forged.length - 1]! ^= 0xff;
    expect(rx.unprotectRtp(forged)).toBeNull();
    expect(rx.receivedRoc(0x11223344)).toBe(0);
    expect(rx.unprotectRtp(tx.protectRtp(rtp(65001))!)).not.toBeNull();
  });

  it('carries the rollover counter across the 65535 → 0 wrap on both sides (§3.3.1)', () => {
    const { tx, rx } = pair(profile);
    const seqs = [65533, 65534, 65535, 0, 1, 2];
    const srtp = seqs.map((s) => tx.protectRtp(rtp(s))!);
    // Receive 0 before 65535: the reordered packet still finds its (previous) ROC.
    for (const i of [0, 1, 3, 2, 4, 5]) expect(rx.unprotectRtp(Buffer.from(srtp[i]!)), `seq ${seqs[i]}`).not.toBeNull();
    expect(rx.receivedRoc(0x11223344)).toBe(1);
    // The ROC is part of the keystream and the tag: seq 0 with ROC 1 differs from seq 0 with ROC 0.
    const fresh = pair(profile).tx.protectRtp(rtp(0))!;
    expect(fresh.equals(srtp[3]!)).toBe(false);
    // And a receiver that never saw the wrap (ROC 0) cannot authenticate it.
    expect(pair(profile).rx.unprotectRtp(Buffer.from(srtp[4]!))).toBeNull();
  });

  it('keeps ROC and replay state per SSRC', () => {
    const { tx, rx } = pair(profile);
    const a = tx.protectRtp(rtp(65535, 1))!;
    const a2 = tx.protectRtp(rtp(0, 1))!;
    const b = tx.protectRtp(rtp(0, 2))!;
    for (const p of [a, a2, b]) expect(rx.unprotectRtp(p)).not.toBeNull();
    expect([rx.receivedRoc(1), rx.receivedRoc(2), rx.receivedRoc(3)]).toEqual([1, 0, null]);
  });

  it('never protects two packets under one index (keystream reuse)', () => {
    const { tx } = pair(profile);
    expect(tx.protectRtp(rtp(7))).not.toBeNull();
    expect(tx.protectRtp(rtp(7))).toBeNull();
    expect(tx.stats.sendRefused).toBe(1);
  });

  it('refuses packets that are not RTP', () => {
    const { tx, rx } = pair(profile);
    expect(tx.protectRtp(hex('8000'))).toBeNull();
    expect(tx.protectRtp(hex('40000001 00000000 00000001'))).toBeNull();
    expect(rx.unprotectRtp(hex('80000001 00000000 00000001'))).toBeNull();
    expect(tx.stats.malformed + rx.stats.malformed).toBe(3);
  });

  it('round-trips SRTCP with E = 1, a 31-bit index that increments, and tag of the profile (§3.4)', () => {
    const { tx, rx } = pair(profile);
    const rtcpTag = profile === 'AEAD_AES_128_GCM' ? 16 : 10;
    const sr = rtcpSr();
    for (let i = 0; i < 3; i++) {
      expect(tx.nextSrtcpIndex(0x11223344)).toBe(i);
      const s = tx.protectRtcp(sr)!;
      expect(s.length).toBe(sr.length + 4 + rtcpTag);
      expect(s.subarray(0, 8).equals(sr.subarray(0, 8))).toBe(true);
      const indexAt = profile === 'AEAD_AES_128_GCM' ? sr.length + rtcpTag : sr.length;
      expect(s.readUInt32BE(indexAt)).toBe(0x80000000 + i);
      expect(rx.unprotectRtcp(s)!.equals(sr)).toBe(true);
    }
    expect(tx.nextSrtcpIndex(0x11223344)).toBe(3);
  });

  it('refuses a replayed or altered SRTCP packet', () => {
    const { tx, rx } = pair(profile);
    const s = tx.protectRtcp(rtcpSr())!;
    const replay = Buffer.from(s);
    expect(rx.unprotectRtcp(s)).not.toBeNull();
    expect(rx.unprotectRtcp(replay)).toBeNull();
    const t = tx.protectRtcp(rtcpSr())!;
    t[10]! ^= 4;
    expect(rx.unprotectRtcp(t)).toBeNull();
    expect([rx.stats.replayed, rx.stats.authFailures]).toEqual([1, 1]);
  });
});

describe('SrtpContext set-up and limits', () => {
  it('accepts an authenticated SRTCP packet sent unencrypted (E = 0, §3.4)', () => {
    const rx = new SrtpContext('AES_CM_128_HMAC_SHA1_80', B3_KEY, B3_SALT);
    const sr = rtcpSr();
    const body = Buffer.concat([sr, hex('00000005')]);
    const authKey = deriveSessionKey(B3_KEY, B3_SALT, SRTP_LABEL.RTCP_AUTH, 20);
    const pkt = Buffer.concat([body, createHmac('sha1', authKey).update(body).digest().subarray(0, 10)]);
    expect(rx.unprotectRtcp(pkt)!.equals(sr)).toBe(true);
  });

  it('refuses a master key or salt of the wrong length with VALIDATION_FAILED', () => {
    expect(() => new SrtpContext('AES_CM_128_HMAC_SHA1_80', Buffer.alloc(15), B3_SALT)).toThrow(TollgateError);
    expect(() => new SrtpContext('AEAD_AES_128_GCM', GCM_KEY, B3_SALT)).toThrow(/12-octet master salt/);
    try {
      new SrtpContext('AES_CM_128_HMAC_SHA1_32', B3_KEY, Buffer.alloc(12));
    } catch (e) {
      expect((e as TollgateError).code).toBe('VALIDATION_FAILED');
    }
  });

  it('builds from SDES inline key material (base64 of key ‖ salt, RFC 4568 §6.1)', () => {
    const inline = Buffer.concat([B3_KEY, B3_SALT]).toString('base64');
    const tx = SrtpContext.fromKeySalt('AES_CM_128_HMAC_SHA1_80', inline);
    const rx = new SrtpContext('AES_CM_128_HMAC_SHA1_80', B3_KEY, B3_SALT);
    expect(rx.unprotectRtp(tx.protectRtp(rtp(1))!)).not.toBeNull();
    expect(() => SrtpContext.fromKeySalt('AES_CM_128_HMAC_SHA1_80', 'AAAA')).toThrow(TollgateError);
  });

  it('bounds the SSRCs it tracks: sending refuses a new one, receiving forgets the oldest', () => {
    const { tx, rx } = pair('AES_CM_128_HMAC_SHA1_80', { maxStreams: 2 });
    const p1 = tx.protectRtp(rtp(1, 1))!;
    const p2 = tx.protectRtp(rtp(1, 2))!;
    expect(tx.protectRtp(rtp(1, 3))).toBeNull();
    const other = pair('AES_CM_128_HMAC_SHA1_80').tx.protectRtp(rtp(1, 3))!;
    for (const p of [p1, p2, other]) expect(rx.unprotectRtp(p)).not.toBeNull();
    expect([rx.receivedRoc(1), rx.receivedRoc(2), rx.receivedRoc(3)]).toEqual([null, 0, 0]);
  });
});

/** Builds test/fixtures/media/srtp-interop.c against libsrtp2, or returns null when it can't. */
function buildLibsrtpDriver(): string | null {
  try {
    const out = join(mkdtempSync(join(tmpdir(), 'tollgate-srtp-')), 'srtp-interop');
    const src = resolve(import.meta.dirname, '../../test/fixtures/media/srtp-interop.c');
    execFileSync('cc', ['-O1', '-o', out, src, '-lsrtp2'], { stdio: 'ignore' });
    return out;
  } catch {
    return null;
  }
}

const driver = buildLibsrtpDriver();
const haveLibsrtp = optionalTool(driver !== null, 'a C compiler linking libsrtp2 (Debian: gcc libc6-dev libsrtp2-dev)');
afterAll(() => {
  if (driver) rmSync(dirname(driver), { recursive: true, force: true });
});

describe.skipIf(!haveLibsrtp)('interop with libsrtp2 (skipped when cc or libsrtp2-dev is missing)', () => {
  function runLibsrtp(profile: SrtpProfile, ops: [string, Buffer][]): string[] {
    const [k, s] = keysFor(profile);
    const input = ops.map(([op, b]) => `${op} ${b.toString('hex')}`).join('\n') + '\n';
    const out = execFileSync(driver!, [profile, Buffer.concat([k, s]).toString('hex')], { input, encoding: 'utf8' });
    return out.trim().split('\n');
  }

  it.each(PROFILES)('%s: identical SRTP across a sequence wrap, and each side unprotects the other', (profile) => {
    const plain = [65533, 65534, 65535, 0, 1, 2].map((seq) => rtp(seq, 0xcafebabe, seq === 0 ? 33 : 160, seq === 1 ? [5] : undefined));
    const { tx, rx } = pair(profile);
    const ours = plain.map((p) => tx.protectRtp(p)!);
    const theirs = runLibsrtp(profile, [...plain.map((p): [string, Buffer] => ['P', p]), ...ours.map((p): [string, Buffer] => ['U', p])]);
    expect(theirs.slice(0, plain.length)).toEqual(ours.map((b) => b.toString('hex')));
    expect(theirs.slice(plain.length)).toEqual(plain.map((b) => b.toString('hex')));
    for (let i = 0; i < plain.length; i++) expect(rx.unprotectRtp(hex(theirs[i]!))!.equals(plain[i]!)).toBe(true);
  });

  it.each(PROFILES)('%s: SRTCP protected by either side is unprotected by the other', (profile) => {
    const sr = [rtcpSr(0xcafebabe), rtcpSr(0xcafebabe), rtcpSr(0xcafebabe)];
    sr[1]![20] = 0x77;
    const { tx, rx } = pair(profile);
    const ours = sr.map((p) => tx.protectRtcp(p)!);
    const theirs = runLibsrtp(profile, [...sr.map((p): [string, Buffer] => ['p', p]), ...ours.map((p): [string, Buffer] => ['u', p])]);
    expect(theirs.slice(sr.length)).toEqual(sr.map((b) => b.toString('hex')));
    for (let i = 0; i < sr.length; i++) expect(rx.unprotectRtcp(hex(theirs[i]!))!.equals(sr[i]!)).toBe(true);
  });

  it('libsrtp refuses a packet we protected and then altered', () => {
    const { tx } = pair('AES_CM_128_HMAC_SHA1_80');
    const bad = tx.protectRtp(rtp(10, 0xcafebabe))!;
    bad[30]! ^= 1;
    expect(runLibsrtp('AES_CM_128_HMAC_SHA1_80', [['U', bad]])[0]).toMatch(/^ERR /);
  });
});
