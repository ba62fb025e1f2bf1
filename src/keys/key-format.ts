import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { KeyMode } from '../store/key-record.js';

/**
 * API key format: `tg_live_` or `tg_test_`, then 32 random bytes as 43 base62 characters, then
 * a 6-character base62 CRC32 of everything before it. The checksum lets scanners (and the
 * gateway, before any lookup) tell a real key from random text offline.
 */
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
export const SECRET_BYTES = 32;
export const BODY_LENGTH = 43; // ceil(256 / log2(62))
export const CHECKSUM_LENGTH = 6; // 62^6 > 2^32
export const KEY_PATTERN = /\btg_(live|test)_([0-9A-Za-z]{43})([0-9A-Za-z]{6})\b/g;
const KEY_EXACT = /^tg_(live|test)_([0-9A-Za-z]{43})([0-9A-Za-z]{6})$/;

export function base62(n: bigint, width: number): string {
  let out = '';
  let v = n;
  while (v > 0n) {
    out = ALPHABET[Number(v % 62n)]! + out;
    v /= 62n;
  }
  return out.padStart(width, '0');
}

export function checksum(text: string): string {
  return base62(BigInt(crc32(text)), CHECKSUM_LENGTH);
}

export function generateKeySecret(mode: KeyMode): string {
  const body = base62(BigInt('0x' + randomBytes(SECRET_BYTES).toString('hex')), BODY_LENGTH);
  const head = `tg_${mode}_${body}`;
  return head + checksum(head);
}

export interface ParsedKey {
  readonly mode: KeyMode;
  readonly body: string;
}

/** Parses and checks the checksum; null for anything that is not a well-formed key. */
export function parseKeySecret(text: string): ParsedKey | null {
  const m = KEY_EXACT.exec(text);
  if (!m) return null;
  const head = text.slice(0, text.length - CHECKSUM_LENGTH);
  if (checksum(head) !== m[3]) return null;
  return { mode: m[1] as KeyMode, body: m[2]! };
}

/** A recognisable but harmless hint: mode, 4 characters of the body and the last 4 of the checksum. */
export function keyHint(secret: string): string {
  const m = KEY_EXACT.exec(secret);
  if (!m) return 'tg_…';
  return `tg_${m[1]}_${m[2]!.slice(0, 4)}…${m[3]!.slice(-4)}`;
}

/** Random identifier with a type prefix: key_…, sec_…, tok_… (base62, 96 bits). */
export function newId(prefix: string): string {
  return `${prefix}_${base62(BigInt('0x' + randomBytes(12).toString('hex')), 17)}`;
}
