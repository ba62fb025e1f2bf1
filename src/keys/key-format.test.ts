import { describe, it, expect } from 'vitest';
import { crc32 } from 'node:zlib';
import { generateKeySecret, keyHint, newId, parseKeySecret } from './key-format.js';

const B62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const KEY_SHAPE = /^tg_(live|test)_[0-9A-Za-z]{43}[0-9A-Za-z]{6}$/;

/** Independent base62 (most significant digit first), left-padded with '0' to `width`. */
function toBase62(n: number, width: number): string {
  let v = n;
  let out = '';
  while (v > 0) {
    out = B62[v % 62]! + out;
    v = Math.floor(v / 62);
  }
  return out.padStart(width, '0');
}

function split(secret: string): { prefix: string; body: string; check: string } {
  const prefix = secret.slice(0, 8);
  return { prefix, body: secret.slice(8, 8 + 43), check: secret.slice(8 + 43) };
}

/** A different base62 character at position `i` of `s`. */
function changeCharAt(s: string, i: number): string {
  const c = s[i]!;
  const replacement = c === 'A' ? 'B' : 'A';
  return s.slice(0, i) + replacement + s.slice(i + 1);
}

describe('generateKeySecret', () => {
  it('produces tg_live_ keys of 8 + 43 + 6 = 57 base62 characters', () => {
    const k = generateKeySecret('live');
    expect(k.startsWith('tg_live_')).toBe(true);
    expect(k).toHaveLength(57);
    expect(k).toMatch(KEY_SHAPE);
    const { body, check } = split(k);
    expect(body).toMatch(/^[0-9A-Za-z]{43}$/);
    expect(check).toMatch(/^[0-9A-Za-z]{6}$/);
  });

  it('produces tg_test_ keys for test mode', () => {
    const k = generateKeySecret('test');
    expect(k.startsWith('tg_test_')).toBe(true);
    expect(k).toHaveLength(57);
    expect(k).toMatch(KEY_SHAPE);
  });

  it('ends with the base62 CRC32 of everything before the checksum', () => {
    for (let i = 0; i < 50; i++) {
      const k = generateKeySecret(i % 2 === 0 ? 'live' : 'test');
      const head = k.slice(0, -6);
      const expected = toBase62(crc32(head), 6);
      expect(k.slice(-6)).toBe(expected);
    }
  });

  it('never repeats across 1,000 generated keys', () => {
    const keys = new Set<string>();
    for (let i = 0; i < 1000; i++) keys.add(generateKeySecret('live'));
    expect(keys.size).toBe(1000);
  });
});

describe('parseKeySecret', () => {
  it('accepts generated keys and reports their mode and body', () => {
    for (const mode of ['live', 'test'] as const) {
      const k = generateKeySecret(mode);
      expect(parseKeySecret(k)).toEqual({ mode, body: split(k).body });
    }
  });

  it('rejects a key with one changed body character', () => {
    const k = generateKeySecret('live');
    for (const i of [8, 20, 50]) expect(parseKeySecret(changeCharAt(k, i))).toBeNull();
  });

  it('rejects a key with a changed checksum', () => {
    const k = generateKeySecret('live');
    expect(parseKeySecret(changeCharAt(k, k.length - 1))).toBeNull();
    expect(parseKeySecret(changeCharAt(k, k.length - 6))).toBeNull();
  });

  it('rejects a key whose prefix was switched between live and test (the checksum covers the prefix)', () => {
    const k = generateKeySecret('live');
    expect(parseKeySecret('tg_test_' + k.slice(8))).toBeNull();
  });

  it('rejects a wrong prefix even with a checksum that matches it', () => {
    const k = generateKeySecret('live');
    const body = split(k).body;
    for (const prefix of ['tg_prod_', 'sk_live_', 'TG_LIVE_', 'tglive__']) {
      const head = prefix + body;
      expect(parseKeySecret(head + toBase62(crc32(head), 6))).toBeNull();
    }
  });

  it('rejects keys one character too short or too long', () => {
    const k = generateKeySecret('live');
    expect(parseKeySecret(k.slice(0, -1))).toBeNull();
    expect(parseKeySecret(k + 'A')).toBeNull();
    // Too short / too long body, with a checksum that is right for that head.
    for (const body of [split(k).body.slice(1), split(k).body + 'x']) {
      const head = 'tg_live_' + body;
      expect(parseKeySecret(head + toBase62(crc32(head), 6))).toBeNull();
    }
  });

  it('rejects non-base62 characters even with a matching checksum', () => {
    const k = generateKeySecret('live');
    const body = split(k).body;
    for (const bad of ['-', '_', '+', '/', '=', ' ', 'é']) {
      const head = 'tg_live_' + bad + body.slice(1);
      expect(parseKeySecret(head + toBase62(crc32(head), 6))).toBeNull();
    }
  });

  it('rejects surrounding text and whitespace', () => {
    const k = generateKeySecret('live');
    expect(parseKeySecret(' ' + k)).toBeNull();
    expect(parseKeySecret(k + '\n')).toBeNull();
    expect(parseKeySecret('')).toBeNull();
  });
});

describe('keyHint', () => {
  it('shows the mode and at most 4 body characters, never the full secret', () => {
    for (let i = 0; i < 100; i++) {
      const k = generateKeySecret(i % 2 === 0 ? 'live' : 'test');
      const { prefix, body } = split(k);
      const hint = keyHint(k);
      expect(hint).not.toContain(k);
      expect(hint).not.toContain(body);
      expect(hint).not.toContain(body.slice(0, 5));
      expect(hint.startsWith(prefix + body.slice(0, 4))).toBe(true);
      // Everything after the prefix: 4 body characters, an ellipsis, 4 more characters.
      const rest = hint.slice(prefix.length);
      expect(rest).toMatch(/^[0-9A-Za-z]{4}…[0-9A-Za-z]{4}$/);
      expect(hint.length).toBeLessThan(k.length);
    }
  });

  it('reveals nothing of text that is not a key', () => {
    const notAKey = 'tg_live_' + 'x'.repeat(10);
    expect(keyHint(notAKey)).not.toContain('xxxx');
  });
});

describe('newId', () => {
  it('is the prefix, an underscore and 17 base62 characters, and unique', () => {
    const ids = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const id = newId('key');
      expect(id).toMatch(/^key_[0-9A-Za-z]{17}$/);
      ids.add(id);
    }
    expect(ids.size).toBe(200);
    expect(newId('tok')).toMatch(/^tok_[0-9A-Za-z]{17}$/);
    expect(newId('sec')).toHaveLength('sec_'.length + 17);
  });
});
