import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { formatCrypto, generateKeySalt, keySaltLength, parseCrypto } from './sdp-crypto.js';

const key30 = randomBytes(30).toString('base64');
const key28 = randomBytes(28).toString('base64');

describe('a=crypto (RFC 4568 §9.1)', () => {
  it('reads tag, suite and a 30-octet inline key ‖ salt for AES_CM_128_HMAC_SHA1_80 and _32 (RFC 4568 §6.2)', () => {
    for (const suite of ['AES_CM_128_HMAC_SHA1_80', 'AES_CM_128_HMAC_SHA1_32'] as const) {
      const r = parseCrypto(`7 ${suite} inline:${key30}`);
      expect(r.ok).toBe(true);
      if (!r.ok) return;
      expect(r.crypto).toEqual({ tag: 7, suite, keySalt: Buffer.from(key30, 'base64'), lifetime: null });
    }
  });

  it('reads a 28-octet key ‖ salt for AEAD_AES_128_GCM (RFC 7714 §14.2: 16-octet key, 12-octet salt)', () => {
    const r = parseCrypto(`1 AEAD_AES_128_GCM inline:${key28}`);
    expect(r.ok && r.crypto.keySalt.length).toBe(28);
  });

  it('a key of the wrong length for its suite is skipped, with the lengths in the reason', () => {
    expect(parseCrypto(`1 AES_CM_128_HMAC_SHA1_80 inline:${key28}`)).toMatchObject({ ok: false, tag: 1, reason: expect.stringContaining('30-octet') });
    expect(parseCrypto(`1 AEAD_AES_128_GCM inline:${key30}`)).toMatchObject({ ok: false, reason: expect.stringContaining('got 30') });
    expect(parseCrypto(`1 AES_CM_128_HMAC_SHA1_80 inline:${randomBytes(46).toString('base64')}`).ok).toBe(false);
  });

  it('reads the lifetime as 2^n or as a packet count (RFC 4568 §6.1)', () => {
    const a = parseCrypto(`1 AES_CM_128_HMAC_SHA1_80 inline:${key30}|2^31`);
    const b = parseCrypto(`1 AES_CM_128_HMAC_SHA1_80 inline:${key30}|1048576`);
    expect(a.ok && a.crypto.lifetime).toBe(2 ** 31);
    expect(b.ok && b.crypto.lifetime).toBe(1048576);
    expect(parseCrypto(`1 AES_CM_128_HMAC_SHA1_80 inline:${key30}|2^99`).ok).toBe(false);
    expect(parseCrypto(`1 AES_CM_128_HMAC_SHA1_80 inline:${key30}|2^20|2^20`).ok).toBe(false);
  });

  it('a line with MKI, alone or after a lifetime, or with several keys, is skipped (no MKI in media/srtp.ts)', () => {
    expect(parseCrypto(`1 AES_CM_128_HMAC_SHA1_80 inline:${key30}|1:4`)).toMatchObject({ ok: false, reason: 'MKI is not supported' });
    expect(parseCrypto(`1 AES_CM_128_HMAC_SHA1_80 inline:${key30}|2^20|1:32`)).toMatchObject({ ok: false, reason: 'MKI is not supported' });
    expect(parseCrypto(`1 AES_CM_128_HMAC_SHA1_80 inline:${key30}|2^20|1:4;inline:${key30}|2^20|2:4`).ok).toBe(false);
  });

  it('session parameters other than WSH are refused, as §6.3.7 forbids ignoring unknown ones', () => {
    expect(parseCrypto(`1 AES_CM_128_HMAC_SHA1_80 inline:${key30} WSH=128`).ok).toBe(true);
    for (const p of ['KDR=0', 'UNENCRYPTED_SRTCP', 'UNENCRYPTED_SRTP', 'UNAUTHENTICATED_SRTP', 'FEC_ORDER=FEC_SRTP', 'X-FOO=1']) {
      expect(parseCrypto(`1 AES_CM_128_HMAC_SHA1_80 inline:${key30} ${p}`), p).toMatchObject({ ok: false, reason: expect.stringContaining('session parameter') });
    }
    // A second parameter counts too (sdp-transform keeps only the first).
    expect(parseCrypto(`1 AES_CM_128_HMAC_SHA1_80 inline:${key30} WSH=64 UNENCRYPTED_SRTP`).ok).toBe(false);
  });

  it('other suites, key methods and broken lines are skipped with a reason that never quotes the key', () => {
    const cases = [
      `1 AES_256_CM_HMAC_SHA1_80 inline:${randomBytes(46).toString('base64')}`,
      `1 F8_128_HMAC_SHA1_80 inline:${key30}`,
      `1 AES_CM_128_HMAC_SHA1_80 uri:https://example.com/${key30}`,
      `1 AES_CM_128_HMAC_SHA1_80 inline:${key30.slice(0, 20)}!!${key30.slice(22)}`,
      `x AES_CM_128_HMAC_SHA1_80 inline:${key30}`,
      `1 AES_CM_128_HMAC_SHA1_80`,
      '',
      `1234567890 AES_CM_128_HMAC_SHA1_80 inline:${key30}`,
    ];
    for (const c of cases) {
      const r = parseCrypto(c);
      expect(r.ok, c).toBe(false);
      if (!r.ok) expect(r.reason).not.toContain(key30.slice(0, 10));
    }
  });

  it('our own lines: fresh keys of the suite length, written as inline base64', () => {
    expect(keySaltLength('AES_CM_128_HMAC_SHA1_80')).toBe(30);
    expect(keySaltLength('AEAD_AES_128_GCM')).toBe(28);
    const a = generateKeySalt('AES_CM_128_HMAC_SHA1_32');
    expect(a.length).toBe(30);
    expect(generateKeySalt('AES_CM_128_HMAC_SHA1_32').equals(a)).toBe(false);
    const line = formatCrypto(3, 'AES_CM_128_HMAC_SHA1_32', a);
    expect(line).toBe(`3 AES_CM_128_HMAC_SHA1_32 inline:${a.toString('base64')}`);
    const back = parseCrypto(line);
    expect(back.ok && back.crypto.keySalt.equals(a)).toBe(true);
  });
});
