/**
 * HMAC-SHA1 (RFC 2104 over FIPS 180-4 SHA-1) for the SRTP hot path (STYLE.md §14).
 *
 * node:crypto builds an Hmac object, re-keys it and allocates a digest for every packet; here
 * the SHA-1 states after the inner (key XOR ipad) and outer (key XOR opad) blocks are computed
 * once per session key, so a MAC costs the message's blocks plus one outer block, with no
 * allocation: the block words, the chaining state (which ends as the digest) and the tail
 * block are preallocated, the rest of the message schedule lives in locals of `compress`,
 * and whole 64-octet blocks are read straight from the caller's bytes.
 *
 * The message is `data[start, end)` followed by an optional `extra` run of octets, which is how
 * SRTP authenticates RTP (RFC 3711 §4.2: authenticated portion ‖ ROC) without writing the ROC
 * into the packet. (For SRTCP the E‖index word is part of the packet, so `extra` is null.)
 *
 * One instance is not re-entrant: it is meant for one SRTP session key, used by one thread.
 */

/** SHA-1 initial hash value H(0) (FIPS 180-4 §5.3.1). */
const SHA1_IV = Int32Array.of(0x67452301, 0xefcdab89 | 0, 0x98badcfe | 0, 0x10325476, 0xc3d2e1f0 | 0);
const BLOCK = 64;
export const SHA1_DIGEST_LENGTH = 20;

export class HmacSha1 {
  /** Chaining value after the ipad block, and after the opad block. */
  private readonly innerState = new Int32Array(5);
  private readonly outerState = new Int32Array(5);
  /** Working chaining value. */
  private readonly h = new Int32Array(5);
  /** The block being compressed, as big-endian words W0..W15 (the rest of the schedule is in locals). */
  private readonly w = new Int32Array(16);
  /** Tail of the message, padding and length. */
  private readonly tail = new Uint8Array(BLOCK);

  constructor(key: Uint8Array) {
    // Keys longer than a block are hashed first (RFC 2104 §2).
    const k = new Uint8Array(BLOCK);
    if (key.length > BLOCK) {
      this.hash(SHA1_IV, 0, key, 0, key.length, null);
      writeWords(this.h, k, 0, SHA1_DIGEST_LENGTH);
    } else {
      k.set(key);
    }
    const pad = new Uint8Array(BLOCK);
    for (let i = 0; i < BLOCK; i++) pad[i] = k[i]! ^ 0x36;
    this.initState(pad, this.innerState);
    for (let i = 0; i < BLOCK; i++) pad[i] = k[i]! ^ 0x5c;
    this.initState(pad, this.outerState);
    k.fill(0);
    pad.fill(0);
    this.h.fill(0);
    this.w.fill(0);
  }

  /**
   * Writes the first `tagLength` (1 to 20) octets of HMAC(key, data[start, end) ‖ extra) to
   * `out[outOffset, outOffset + tagLength)`. `out` may be `data` itself (past `end`).
   */
  mac(data: Uint8Array, start: number, end: number, extra: Uint8Array | null, out: Uint8Array, outOffset: number, tagLength: number): void {
    checkTag(out, outOffset, tagLength);
    this.compute(data, start, end, extra);
    writeWords(this.h, out, outOffset, tagLength);
  }

  /**
   * Whether `tag[tagOffset, tagOffset + tagLength)` is the (truncated) HMAC of
   * data[start, end) ‖ extra. Constant-time in the tag contents: every octet is compared.
   */
  verify(data: Uint8Array, start: number, end: number, extra: Uint8Array | null, tag: Uint8Array, tagOffset: number, tagLength: number): boolean {
    checkTag(tag, tagOffset, tagLength);
    this.compute(data, start, end, extra);
    const h = this.h;
    let d = 0;
    for (let i = 0; i < tagLength; i++) {
      d |= ((h[i >>> 2]! >>> (24 - ((i & 3) << 3))) & 0xff) ^ tag[tagOffset + i]!;
    }
    return d === 0;
  }

  /** Leaves HMAC(key, message) in `this.h`. */
  private compute(data: Uint8Array, start: number, end: number, extra: Uint8Array | null): void {
    if (start < 0 || end > data.length || start > end) throw new RangeError('HMAC-SHA1 message range out of bounds');
    this.hash(this.innerState, BLOCK, data, start, end, extra);
    // Outer hash: one block of H(inner) ‖ 0x80 ‖ 0… ‖ length (64 + 20 octets), built as words.
    const h = this.h;
    const w = this.w;
    for (let i = 0; i < 5; i++) w[i] = h[i]!;
    w[5] = 0x80000000 | 0;
    for (let i = 6; i < 15; i++) w[i] = 0;
    w[15] = (BLOCK + SHA1_DIGEST_LENGTH) * 8;
    for (let i = 0; i < 5; i++) h[i] = this.outerState[i]!;
    compress(h, w);
  }

  /**
   * SHA-1 of data[start, end) ‖ extra into `this.h`, starting from chaining value `iv` after
   * `prefix` octets already hashed (0, or one block for the ipad state).
   */
  private hash(iv: Int32Array, prefix: number, data: Uint8Array, start: number, end: number, extra: Uint8Array | null): void {
    const h = this.h;
    const w = this.w;
    for (let i = 0; i < 5; i++) h[i] = iv[i]!;
    let pos = start;
    // Whole blocks straight from the input.
    while (end - pos >= BLOCK) {
      loadBlock(data, pos, w);
      compress(h, w);
      pos += BLOCK;
    }
    // The rest (< 64 octets) and `extra` go through the tail block.
    const t = this.tail;
    let n = 0;
    while (pos < end) t[n++] = data[pos++]!;
    const extraLength = extra === null ? 0 : extra.length;
    for (let i = 0; i < extraLength; i++) {
      t[n++] = extra![i]!;
      if (n === BLOCK) {
        loadBlock(t, 0, w);
        compress(h, w);
        n = 0;
      }
    }
    // Padding (FIPS 180-4 §5.1.1): 0x80, zeros, 64-bit big-endian bit length.
    t[n++] = 0x80;
    if (n > BLOCK - 8) {
      while (n < BLOCK) t[n++] = 0;
      loadBlock(t, 0, w);
      compress(h, w);
      n = 0;
    }
    while (n < BLOCK - 8) t[n++] = 0;
    loadBlock(t, 0, w);
    const bytes = prefix + (end - start) + extraLength;
    w[14] = Math.floor(bytes / 0x20000000) | 0; // high 32 bits of bytes · 8
    w[15] = (bytes << 3) | 0;
    compress(h, w);
  }

  /** Chaining value after one 64-octet block from the IV. */
  private initState(block: Uint8Array, state: Int32Array): void {
    const h = this.h;
    h.set(SHA1_IV);
    loadBlock(block, 0, this.w);
    compress(h, this.w);
    state.set(h);
  }
}

/** Tag lengths are 1 to 20 octets and must fit in their buffer. */
function checkTag(buf: Uint8Array, offset: number, length: number): void {
  if (!(length >= 1 && length <= SHA1_DIGEST_LENGTH) || offset < 0 || offset + length > buf.length) {
    throw new RangeError('HMAC-SHA1 tag range out of bounds');
  }
}

/** W0..W15 from 64 big-endian octets at `buf[pos]`. */
function loadBlock(buf: Uint8Array, pos: number, w: Int32Array): void {
  for (let i = 0; i < 16; i++, pos += 4) {
    w[i] = (buf[pos]! << 24) | (buf[pos + 1]! << 16) | (buf[pos + 2]! << 8) | buf[pos + 3]!;
  }
}

/** The first `n` octets of the big-endian words `h` into `out[at, at + n)`. */
function writeWords(h: Int32Array, out: Uint8Array, at: number, n: number): void {
  for (let i = 0; i < n; i++) out[at + i] = h[i >>> 2]! >>> (24 - ((i & 3) << 3));
}

/**
 * The SHA-1 compression function (FIPS 180-4 §6.1.2) on the block W0..W15 in `w[0, 16)`.
 *
 * Written out round by round: the schedule lives in sixteen locals updated in place
 * (W[t] = ROTL1(W[t-3] ^ W[t-8] ^ W[t-14] ^ W[t-16]), §6.1.3's alternative method), and instead
 * of moving a..e after every round the roles rotate through the variable names (round t + 1's
 * `a` is round t's `e`), so TurboFan keeps the whole state in registers. About twice as fast
 * in V8 as the loop form with an 80-word schedule array. Tested against node:crypto.
 */
function compress(h: Int32Array, w: Int32Array): void {
  let a = h[0]!;
  let b = h[1]!;
  let c = h[2]!;
  let d = h[3]!;
  let e = h[4]!;
  let w0 = w[0]!, w1 = w[1]!, w2 = w[2]!, w3 = w[3]!, w4 = w[4]!, w5 = w[5]!, w6 = w[6]!, w7 = w[7]!;
  let w8 = w[8]!, w9 = w[9]!, w10 = w[10]!, w11 = w[11]!, w12 = w[12]!, w13 = w[13]!, w14 = w[14]!, w15 = w[15]!;
  let x: number;
  // Rounds 0–19: f = Ch, K = 0x5a827999.
  e = (((a << 5) | (a >>> 27)) + ((b & c) | (~b & d)) + e + w0 + 0x5a827999) | 0; b = (b << 30) | (b >>> 2);
  d = (((e << 5) | (e >>> 27)) + ((a & b) | (~a & c)) + d + w1 + 0x5a827999) | 0; a = (a << 30) | (a >>> 2);
  c = (((d << 5) | (d >>> 27)) + ((e & a) | (~e & b)) + c + w2 + 0x5a827999) | 0; e = (e << 30) | (e >>> 2);
  b = (((c << 5) | (c >>> 27)) + ((d & e) | (~d & a)) + b + w3 + 0x5a827999) | 0; d = (d << 30) | (d >>> 2);
  a = (((b << 5) | (b >>> 27)) + ((c & d) | (~c & e)) + a + w4 + 0x5a827999) | 0; c = (c << 30) | (c >>> 2);
  e = (((a << 5) | (a >>> 27)) + ((b & c) | (~b & d)) + e + w5 + 0x5a827999) | 0; b = (b << 30) | (b >>> 2);
  d = (((e << 5) | (e >>> 27)) + ((a & b) | (~a & c)) + d + w6 + 0x5a827999) | 0; a = (a << 30) | (a >>> 2);
  c = (((d << 5) | (d >>> 27)) + ((e & a) | (~e & b)) + c + w7 + 0x5a827999) | 0; e = (e << 30) | (e >>> 2);
  b = (((c << 5) | (c >>> 27)) + ((d & e) | (~d & a)) + b + w8 + 0x5a827999) | 0; d = (d << 30) | (d >>> 2);
  a = (((b << 5) | (b >>> 27)) + ((c & d) | (~c & e)) + a + w9 + 0x5a827999) | 0; c = (c << 30) | (c >>> 2);
  e = (((a << 5) | (a >>> 27)) + ((b & c) | (~b & d)) + e + w10 + 0x5a827999) | 0; b = (b << 30) | (b >>> 2);
  d = (((e << 5) | (e >>> 27)) + ((a & b) | (~a & c)) + d + w11 + 0x5a827999) | 0; a = (a << 30) | (a >>> 2);
  c = (((d << 5) | (d >>> 27)) + ((e & a) | (~e & b)) + c + w12 + 0x5a827999) | 0; e = (e << 30) | (e >>> 2);
  b = (((c << 5) | (c >>> 27)) + ((d & e) | (~d & a)) + b + w13 + 0x5a827999) | 0; d = (d << 30) | (d >>> 2);
  a = (((b << 5) | (b >>> 27)) + ((c & d) | (~c & e)) + a + w14 + 0x5a827999) | 0; c = (c << 30) | (c >>> 2);
  e = (((a << 5) | (a >>> 27)) + ((b & c) | (~b & d)) + e + w15 + 0x5a827999) | 0; b = (b << 30) | (b >>> 2);
  x = w13 ^ w8 ^ w2 ^ w0; w0 = (x << 1) | (x >>> 31);
  d = (((e << 5) | (e >>> 27)) + ((a & b) | (~a & c)) + d + w0 + 0x5a827999) | 0; a = (a << 30) | (a >>> 2);
  x = w14 ^ w9 ^ w3 ^ w1; w1 = (x << 1) | (x >>> 31);
  c = (((d << 5) | (d >>> 27)) + ((e & a) | (~e & b)) + c + w1 + 0x5a827999) | 0; e = (e << 30) | (e >>> 2);
  x = w15 ^ w10 ^ w4 ^ w2; w2 = (x << 1) | (x >>> 31);
  b = (((c << 5) | (c >>> 27)) + ((d & e) | (~d & a)) + b + w2 + 0x5a827999) | 0; d = (d << 30) | (d >>> 2);
  x = w0 ^ w11 ^ w5 ^ w3; w3 = (x << 1) | (x >>> 31);
  a = (((b << 5) | (b >>> 27)) + ((c & d) | (~c & e)) + a + w3 + 0x5a827999) | 0; c = (c << 30) | (c >>> 2);
  // Rounds 20–39: f = Parity, K = 0x6ed9eba1.
  x = w1 ^ w12 ^ w6 ^ w4; w4 = (x << 1) | (x >>> 31);
  e = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + w4 + 0x6ed9eba1) | 0; b = (b << 30) | (b >>> 2);
  x = w2 ^ w13 ^ w7 ^ w5; w5 = (x << 1) | (x >>> 31);
  d = (((e << 5) | (e >>> 27)) + (a ^ b ^ c) + d + w5 + 0x6ed9eba1) | 0; a = (a << 30) | (a >>> 2);
  x = w3 ^ w14 ^ w8 ^ w6; w6 = (x << 1) | (x >>> 31);
  c = (((d << 5) | (d >>> 27)) + (e ^ a ^ b) + c + w6 + 0x6ed9eba1) | 0; e = (e << 30) | (e >>> 2);
  x = w4 ^ w15 ^ w9 ^ w7; w7 = (x << 1) | (x >>> 31);
  b = (((c << 5) | (c >>> 27)) + (d ^ e ^ a) + b + w7 + 0x6ed9eba1) | 0; d = (d << 30) | (d >>> 2);
  x = w5 ^ w0 ^ w10 ^ w8; w8 = (x << 1) | (x >>> 31);
  a = (((b << 5) | (b >>> 27)) + (c ^ d ^ e) + a + w8 + 0x6ed9eba1) | 0; c = (c << 30) | (c >>> 2);
  x = w6 ^ w1 ^ w11 ^ w9; w9 = (x << 1) | (x >>> 31);
  e = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + w9 + 0x6ed9eba1) | 0; b = (b << 30) | (b >>> 2);
  x = w7 ^ w2 ^ w12 ^ w10; w10 = (x << 1) | (x >>> 31);
  d = (((e << 5) | (e >>> 27)) + (a ^ b ^ c) + d + w10 + 0x6ed9eba1) | 0; a = (a << 30) | (a >>> 2);
  x = w8 ^ w3 ^ w13 ^ w11; w11 = (x << 1) | (x >>> 31);
  c = (((d << 5) | (d >>> 27)) + (e ^ a ^ b) + c + w11 + 0x6ed9eba1) | 0; e = (e << 30) | (e >>> 2);
  x = w9 ^ w4 ^ w14 ^ w12; w12 = (x << 1) | (x >>> 31);
  b = (((c << 5) | (c >>> 27)) + (d ^ e ^ a) + b + w12 + 0x6ed9eba1) | 0; d = (d << 30) | (d >>> 2);
  x = w10 ^ w5 ^ w15 ^ w13; w13 = (x << 1) | (x >>> 31);
  a = (((b << 5) | (b >>> 27)) + (c ^ d ^ e) + a + w13 + 0x6ed9eba1) | 0; c = (c << 30) | (c >>> 2);
  x = w11 ^ w6 ^ w0 ^ w14; w14 = (x << 1) | (x >>> 31);
  e = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + w14 + 0x6ed9eba1) | 0; b = (b << 30) | (b >>> 2);
  x = w12 ^ w7 ^ w1 ^ w15; w15 = (x << 1) | (x >>> 31);
  d = (((e << 5) | (e >>> 27)) + (a ^ b ^ c) + d + w15 + 0x6ed9eba1) | 0; a = (a << 30) | (a >>> 2);
  x = w13 ^ w8 ^ w2 ^ w0; w0 = (x << 1) | (x >>> 31);
  c = (((d << 5) | (d >>> 27)) + (e ^ a ^ b) + c + w0 + 0x6ed9eba1) | 0; e = (e << 30) | (e >>> 2);
  x = w14 ^ w9 ^ w3 ^ w1; w1 = (x << 1) | (x >>> 31);
  b = (((c << 5) | (c >>> 27)) + (d ^ e ^ a) + b + w1 + 0x6ed9eba1) | 0; d = (d << 30) | (d >>> 2);
  x = w15 ^ w10 ^ w4 ^ w2; w2 = (x << 1) | (x >>> 31);
  a = (((b << 5) | (b >>> 27)) + (c ^ d ^ e) + a + w2 + 0x6ed9eba1) | 0; c = (c << 30) | (c >>> 2);
  x = w0 ^ w11 ^ w5 ^ w3; w3 = (x << 1) | (x >>> 31);
  e = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + w3 + 0x6ed9eba1) | 0; b = (b << 30) | (b >>> 2);
  x = w1 ^ w12 ^ w6 ^ w4; w4 = (x << 1) | (x >>> 31);
  d = (((e << 5) | (e >>> 27)) + (a ^ b ^ c) + d + w4 + 0x6ed9eba1) | 0; a = (a << 30) | (a >>> 2);
  x = w2 ^ w13 ^ w7 ^ w5; w5 = (x << 1) | (x >>> 31);
  c = (((d << 5) | (d >>> 27)) + (e ^ a ^ b) + c + w5 + 0x6ed9eba1) | 0; e = (e << 30) | (e >>> 2);
  x = w3 ^ w14 ^ w8 ^ w6; w6 = (x << 1) | (x >>> 31);
  b = (((c << 5) | (c >>> 27)) + (d ^ e ^ a) + b + w6 + 0x6ed9eba1) | 0; d = (d << 30) | (d >>> 2);
  x = w4 ^ w15 ^ w9 ^ w7; w7 = (x << 1) | (x >>> 31);
  a = (((b << 5) | (b >>> 27)) + (c ^ d ^ e) + a + w7 + 0x6ed9eba1) | 0; c = (c << 30) | (c >>> 2);
  // Rounds 40–59: f = Maj, K = 0x8f1bbcdc.
  x = w5 ^ w0 ^ w10 ^ w8; w8 = (x << 1) | (x >>> 31);
  e = (((a << 5) | (a >>> 27)) + ((b & c) | (b & d) | (c & d)) + e + w8 - 0x70e44324) | 0; b = (b << 30) | (b >>> 2);
  x = w6 ^ w1 ^ w11 ^ w9; w9 = (x << 1) | (x >>> 31);
  d = (((e << 5) | (e >>> 27)) + ((a & b) | (a & c) | (b & c)) + d + w9 - 0x70e44324) | 0; a = (a << 30) | (a >>> 2);
  x = w7 ^ w2 ^ w12 ^ w10; w10 = (x << 1) | (x >>> 31);
  c = (((d << 5) | (d >>> 27)) + ((e & a) | (e & b) | (a & b)) + c + w10 - 0x70e44324) | 0; e = (e << 30) | (e >>> 2);
  x = w8 ^ w3 ^ w13 ^ w11; w11 = (x << 1) | (x >>> 31);
  b = (((c << 5) | (c >>> 27)) + ((d & e) | (d & a) | (e & a)) + b + w11 - 0x70e44324) | 0; d = (d << 30) | (d >>> 2);
  x = w9 ^ w4 ^ w14 ^ w12; w12 = (x << 1) | (x >>> 31);
  a = (((b << 5) | (b >>> 27)) + ((c & d) | (c & e) | (d & e)) + a + w12 - 0x70e44324) | 0; c = (c << 30) | (c >>> 2);
  x = w10 ^ w5 ^ w15 ^ w13; w13 = (x << 1) | (x >>> 31);
  e = (((a << 5) | (a >>> 27)) + ((b & c) | (b & d) | (c & d)) + e + w13 - 0x70e44324) | 0; b = (b << 30) | (b >>> 2);
  x = w11 ^ w6 ^ w0 ^ w14; w14 = (x << 1) | (x >>> 31);
  d = (((e << 5) | (e >>> 27)) + ((a & b) | (a & c) | (b & c)) + d + w14 - 0x70e44324) | 0; a = (a << 30) | (a >>> 2);
  x = w12 ^ w7 ^ w1 ^ w15; w15 = (x << 1) | (x >>> 31);
  c = (((d << 5) | (d >>> 27)) + ((e & a) | (e & b) | (a & b)) + c + w15 - 0x70e44324) | 0; e = (e << 30) | (e >>> 2);
  x = w13 ^ w8 ^ w2 ^ w0; w0 = (x << 1) | (x >>> 31);
  b = (((c << 5) | (c >>> 27)) + ((d & e) | (d & a) | (e & a)) + b + w0 - 0x70e44324) | 0; d = (d << 30) | (d >>> 2);
  x = w14 ^ w9 ^ w3 ^ w1; w1 = (x << 1) | (x >>> 31);
  a = (((b << 5) | (b >>> 27)) + ((c & d) | (c & e) | (d & e)) + a + w1 - 0x70e44324) | 0; c = (c << 30) | (c >>> 2);
  x = w15 ^ w10 ^ w4 ^ w2; w2 = (x << 1) | (x >>> 31);
  e = (((a << 5) | (a >>> 27)) + ((b & c) | (b & d) | (c & d)) + e + w2 - 0x70e44324) | 0; b = (b << 30) | (b >>> 2);
  x = w0 ^ w11 ^ w5 ^ w3; w3 = (x << 1) | (x >>> 31);
  d = (((e << 5) | (e >>> 27)) + ((a & b) | (a & c) | (b & c)) + d + w3 - 0x70e44324) | 0; a = (a << 30) | (a >>> 2);
  x = w1 ^ w12 ^ w6 ^ w4; w4 = (x << 1) | (x >>> 31);
  c = (((d << 5) | (d >>> 27)) + ((e & a) | (e & b) | (a & b)) + c + w4 - 0x70e44324) | 0; e = (e << 30) | (e >>> 2);
  x = w2 ^ w13 ^ w7 ^ w5; w5 = (x << 1) | (x >>> 31);
  b = (((c << 5) | (c >>> 27)) + ((d & e) | (d & a) | (e & a)) + b + w5 - 0x70e44324) | 0; d = (d << 30) | (d >>> 2);
  x = w3 ^ w14 ^ w8 ^ w6; w6 = (x << 1) | (x >>> 31);
  a = (((b << 5) | (b >>> 27)) + ((c & d) | (c & e) | (d & e)) + a + w6 - 0x70e44324) | 0; c = (c << 30) | (c >>> 2);
  x = w4 ^ w15 ^ w9 ^ w7; w7 = (x << 1) | (x >>> 31);
  e = (((a << 5) | (a >>> 27)) + ((b & c) | (b & d) | (c & d)) + e + w7 - 0x70e44324) | 0; b = (b << 30) | (b >>> 2);
  x = w5 ^ w0 ^ w10 ^ w8; w8 = (x << 1) | (x >>> 31);
  d = (((e << 5) | (e >>> 27)) + ((a & b) | (a & c) | (b & c)) + d + w8 - 0x70e44324) | 0; a = (a << 30) | (a >>> 2);
  x = w6 ^ w1 ^ w11 ^ w9; w9 = (x << 1) | (x >>> 31);
  c = (((d << 5) | (d >>> 27)) + ((e & a) | (e & b) | (a & b)) + c + w9 - 0x70e44324) | 0; e = (e << 30) | (e >>> 2);
  x = w7 ^ w2 ^ w12 ^ w10; w10 = (x << 1) | (x >>> 31);
  b = (((c << 5) | (c >>> 27)) + ((d & e) | (d & a) | (e & a)) + b + w10 - 0x70e44324) | 0; d = (d << 30) | (d >>> 2);
  x = w8 ^ w3 ^ w13 ^ w11; w11 = (x << 1) | (x >>> 31);
  a = (((b << 5) | (b >>> 27)) + ((c & d) | (c & e) | (d & e)) + a + w11 - 0x70e44324) | 0; c = (c << 30) | (c >>> 2);
  // Rounds 60–79: f = Parity, K = 0xca62c1d6.
  x = w9 ^ w4 ^ w14 ^ w12; w12 = (x << 1) | (x >>> 31);
  e = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + w12 - 0x359d3e2a) | 0; b = (b << 30) | (b >>> 2);
  x = w10 ^ w5 ^ w15 ^ w13; w13 = (x << 1) | (x >>> 31);
  d = (((e << 5) | (e >>> 27)) + (a ^ b ^ c) + d + w13 - 0x359d3e2a) | 0; a = (a << 30) | (a >>> 2);
  x = w11 ^ w6 ^ w0 ^ w14; w14 = (x << 1) | (x >>> 31);
  c = (((d << 5) | (d >>> 27)) + (e ^ a ^ b) + c + w14 - 0x359d3e2a) | 0; e = (e << 30) | (e >>> 2);
  x = w12 ^ w7 ^ w1 ^ w15; w15 = (x << 1) | (x >>> 31);
  b = (((c << 5) | (c >>> 27)) + (d ^ e ^ a) + b + w15 - 0x359d3e2a) | 0; d = (d << 30) | (d >>> 2);
  x = w13 ^ w8 ^ w2 ^ w0; w0 = (x << 1) | (x >>> 31);
  a = (((b << 5) | (b >>> 27)) + (c ^ d ^ e) + a + w0 - 0x359d3e2a) | 0; c = (c << 30) | (c >>> 2);
  x = w14 ^ w9 ^ w3 ^ w1; w1 = (x << 1) | (x >>> 31);
  e = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + w1 - 0x359d3e2a) | 0; b = (b << 30) | (b >>> 2);
  x = w15 ^ w10 ^ w4 ^ w2; w2 = (x << 1) | (x >>> 31);
  d = (((e << 5) | (e >>> 27)) + (a ^ b ^ c) + d + w2 - 0x359d3e2a) | 0; a = (a << 30) | (a >>> 2);
  x = w0 ^ w11 ^ w5 ^ w3; w3 = (x << 1) | (x >>> 31);
  c = (((d << 5) | (d >>> 27)) + (e ^ a ^ b) + c + w3 - 0x359d3e2a) | 0; e = (e << 30) | (e >>> 2);
  x = w1 ^ w12 ^ w6 ^ w4; w4 = (x << 1) | (x >>> 31);
  b = (((c << 5) | (c >>> 27)) + (d ^ e ^ a) + b + w4 - 0x359d3e2a) | 0; d = (d << 30) | (d >>> 2);
  x = w2 ^ w13 ^ w7 ^ w5; w5 = (x << 1) | (x >>> 31);
  a = (((b << 5) | (b >>> 27)) + (c ^ d ^ e) + a + w5 - 0x359d3e2a) | 0; c = (c << 30) | (c >>> 2);
  x = w3 ^ w14 ^ w8 ^ w6; w6 = (x << 1) | (x >>> 31);
  e = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + w6 - 0x359d3e2a) | 0; b = (b << 30) | (b >>> 2);
  x = w4 ^ w15 ^ w9 ^ w7; w7 = (x << 1) | (x >>> 31);
  d = (((e << 5) | (e >>> 27)) + (a ^ b ^ c) + d + w7 - 0x359d3e2a) | 0; a = (a << 30) | (a >>> 2);
  x = w5 ^ w0 ^ w10 ^ w8; w8 = (x << 1) | (x >>> 31);
  c = (((d << 5) | (d >>> 27)) + (e ^ a ^ b) + c + w8 - 0x359d3e2a) | 0; e = (e << 30) | (e >>> 2);
  x = w6 ^ w1 ^ w11 ^ w9; w9 = (x << 1) | (x >>> 31);
  b = (((c << 5) | (c >>> 27)) + (d ^ e ^ a) + b + w9 - 0x359d3e2a) | 0; d = (d << 30) | (d >>> 2);
  x = w7 ^ w2 ^ w12 ^ w10; w10 = (x << 1) | (x >>> 31);
  a = (((b << 5) | (b >>> 27)) + (c ^ d ^ e) + a + w10 - 0x359d3e2a) | 0; c = (c << 30) | (c >>> 2);
  x = w8 ^ w3 ^ w13 ^ w11; w11 = (x << 1) | (x >>> 31);
  e = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + w11 - 0x359d3e2a) | 0; b = (b << 30) | (b >>> 2);
  x = w9 ^ w4 ^ w14 ^ w12; w12 = (x << 1) | (x >>> 31);
  d = (((e << 5) | (e >>> 27)) + (a ^ b ^ c) + d + w12 - 0x359d3e2a) | 0; a = (a << 30) | (a >>> 2);
  x = w10 ^ w5 ^ w15 ^ w13; w13 = (x << 1) | (x >>> 31);
  c = (((d << 5) | (d >>> 27)) + (e ^ a ^ b) + c + w13 - 0x359d3e2a) | 0; e = (e << 30) | (e >>> 2);
  x = w11 ^ w6 ^ w0 ^ w14; w14 = (x << 1) | (x >>> 31);
  b = (((c << 5) | (c >>> 27)) + (d ^ e ^ a) + b + w14 - 0x359d3e2a) | 0; d = (d << 30) | (d >>> 2);
  x = w12 ^ w7 ^ w1 ^ w15; w15 = (x << 1) | (x >>> 31);
  a = (((b << 5) | (b >>> 27)) + (c ^ d ^ e) + a + w15 - 0x359d3e2a) | 0; c = (c << 30) | (c >>> 2);
  h[0] = (h[0]! + a) | 0;
  h[1] = (h[1]! + b) | 0;
  h[2] = (h[2]! + c) | 0;
  h[3] = (h[3]! + d) | 0;
  h[4] = (h[4]! + e) | 0;
}
