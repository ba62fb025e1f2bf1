import { describe, it, expect } from 'vitest';
import { createHmac, randomBytes } from 'node:crypto';
import { computeHa1, digestsEqual, hashSecret, open, seal } from './secret-crypto.js';

const pepper = Buffer.from('a-server-pepper-of-some-length', 'utf8');
const secret = 'tg_live_' + '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg000000'; // key-shaped, split so scanners of this repo do not flag it

describe('hashSecret', () => {
  it('is the hex HMAC-SHA256 of the secret under the pepper', () => {
    const expected = createHmac('sha256', pepper).update(secret, 'utf8').digest('hex');
    const h = hashSecret(pepper, secret);
    expect(h).toBe(expected);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
  });

  it('differs when the pepper differs', () => {
    const other = Buffer.from('another-server-pepper-value!!', 'utf8');
    expect(hashSecret(other, secret)).not.toBe(hashSecret(pepper, secret));
    expect(hashSecret(other, secret)).toBe(createHmac('sha256', other).update(secret, 'utf8').digest('hex'));
  });

  it('differs when the secret differs by one character', () => {
    expect(hashSecret(pepper, secret)).not.toBe(hashSecret(pepper, secret.slice(0, -1) + '1'));
  });
});

describe('digestsEqual', () => {
  const a = hashSecret(pepper, 'one');
  const b = hashSecret(pepper, 'two');

  it('is true for the same digest', () => {
    expect(digestsEqual(a, a)).toBe(true);
    expect(digestsEqual(a, a.slice())).toBe(true);
  });

  it('is false for different digests of the same length', () => {
    expect(digestsEqual(a, b)).toBe(false);
    // Differs only in the last nibble.
    const last = a.slice(-1) === '0' ? '1' : '0';
    expect(digestsEqual(a, a.slice(0, -1) + last)).toBe(false);
  });

  it('is false for digests of different lengths', () => {
    expect(digestsEqual(a, a.slice(0, 62))).toBe(false);
    expect(digestsEqual(a.slice(0, 62), a)).toBe(false);
    expect(digestsEqual(a, a + '00')).toBe(false);
  });

  it('is false when either or both are empty', () => {
    expect(digestsEqual('', '')).toBe(false);
    expect(digestsEqual(a, '')).toBe(false);
    expect(digestsEqual('', a)).toBe(false);
  });
});

describe('computeHa1', () => {
  it('matches the MD5 HA1 of RFC 2617 §3.5', () => {
    expect(computeHa1('MD5', 'Mufasa', 'testrealm@host.com', 'Circle Of Life')).toBe('939e7578ed9e3c518a452acee763bce9');
  });

  it('matches the SHA-256 HA1 of RFC 7616 §3.9.1', () => {
    // Checked with: printf 'Mufasa:http-auth@example.org:Circle of Life' | sha256sum
    expect(computeHa1('SHA-256', 'Mufasa', 'http-auth@example.org', 'Circle of Life')).toBe(
      '7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232',
    );
  });

  it('is case-sensitive in the password', () => {
    expect(computeHa1('SHA-256', 'Mufasa', 'http-auth@example.org', 'Circle Of Life')).not.toBe(
      '7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232',
    );
  });
});

describe('seal and open', () => {
  const masterKey = randomBytes(32);
  const aad = 'key_abc:sec_def';
  const plaintext = '939e7578ed9e3c518a452acee763bce9';

  /** Replaces part `i` (0 = version, 1 = iv, 2 = ciphertext, 3 = tag) with a one-bit-flipped copy. */
  function flipPart(sealed: string, i: number): string {
    const parts = sealed.split('.');
    const bytes = Buffer.from(parts[i]!, 'base64url');
    bytes[0] = bytes[0]! ^ 0x01;
    parts[i] = bytes.toString('base64url');
    return parts.join('.');
  }

  it('round-trips a value with the same key and AAD', () => {
    const sealed = seal(masterKey, plaintext, aad);
    expect(sealed.startsWith('v1.')).toBe(true);
    expect(sealed).not.toContain(plaintext);
    expect(open(masterKey, sealed, aad)).toBe(plaintext);
  });

  it('round-trips an empty string and non-ASCII text', () => {
    expect(open(masterKey, seal(masterKey, '', aad), aad)).toBe('');
    expect(open(masterKey, seal(masterKey, 'Grüße ☎', aad), aad)).toBe('Grüße ☎');
  });

  it('does not open with a different master key', () => {
    const sealed = seal(masterKey, plaintext, aad);
    expect(() => open(randomBytes(32), sealed, aad)).toThrow();
  });

  it('does not open with a different AAD (a value copied to another row)', () => {
    const sealed = seal(masterKey, plaintext, aad);
    expect(() => open(masterKey, sealed, 'key_abc:sec_other')).toThrow();
    expect(() => open(masterKey, sealed, '')).toThrow();
  });

  it('does not open when the ciphertext, tag or IV was tampered with', () => {
    const sealed = seal(masterKey, plaintext, aad);
    expect(() => open(masterKey, flipPart(sealed, 2), aad)).toThrow();
    expect(() => open(masterKey, flipPart(sealed, 3), aad)).toThrow();
    expect(() => open(masterKey, flipPart(sealed, 1), aad)).toThrow();
  });

  it('does not open a truncated tag or an unknown format', () => {
    const sealed = seal(masterKey, plaintext, aad);
    const parts = sealed.split('.');
    expect(() => open(masterKey, [parts[0], parts[1], parts[2]].join('.'), aad)).toThrow();
    expect(() => open(masterKey, ['v2', parts[1], parts[2], parts[3]].join('.'), aad)).toThrow(/unknown format/);
    expect(() => open(masterKey, [parts[0], parts[1], parts[2], parts[3]!.slice(0, 4)].join('.'), aad)).toThrow();
  });

  it('gives different output for two seals of the same plaintext (random IV)', () => {
    const s1 = seal(masterKey, plaintext, aad);
    const s2 = seal(masterKey, plaintext, aad);
    expect(s1).not.toBe(s2);
    expect(s1.split('.')[1]).not.toBe(s2.split('.')[1]);
    expect(open(masterKey, s1, aad)).toBe(open(masterKey, s2, aad));
  });
});
