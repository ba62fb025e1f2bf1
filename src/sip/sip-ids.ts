import { randomFillSync } from 'node:crypto';

/**
 * Random bytes for ids come from a pooled buffer refilled 4 KiB at a time: one CSPRNG call per
 * ~300 ids instead of one per id (they are made for every SIP transaction).
 */
const pool = Buffer.alloc(4096);
let poolOffset = pool.length;
function randomBytes(n: number): Buffer {
  if (poolOffset + n > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const out = Buffer.from(pool.subarray(poolOffset, poolOffset + n));
  poolOffset += n;
  return out;
}

/** RFC 3261 §8.1.1.7: branch ids start with the magic cookie so they are unique per transaction. */
export const MAGIC_COOKIE = 'z9hG4bK';

/** Crypto-random branch: the cookie plus 96 random bits. */
export function newBranch(): string {
  return MAGIC_COOKIE + randomBytes(12).toString('base64url');
}

/** Crypto-random tag (RFC 3261 §19.3: at least 32 random bits; we use 64). */
export function newTag(): string {
  return randomBytes(8).toString('base64url');
}

/** Crypto-random Call-ID (RFC 3261 §8.1.1.4). */
export function newCallId(): string {
  return randomBytes(16).toString('base64url');
}
