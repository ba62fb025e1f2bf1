/**
 * G.711 µ-law and A-law (ITU-T G.711, 1988), table-driven for the media hot path (STYLE.md §14).
 *
 * The tables are built once at module load from the classic reference algorithm (Sun
 * Microsystems' public-domain g711.c, the one SoX, PJSIP and Asterisk use):
 * - decode: 256-entry Int16Array per law, indexed by the code byte;
 * - encode: 16384-entry Uint8Array per law, indexed by the top 14 bits of the 16-bit sample.
 *   µ-law's input is 14-bit and A-law's is 13-bit, so dropping the two low bits loses nothing.
 *
 * Frame functions work on whole frames into caller-owned output and allocate nothing.
 * Bit order on the wire: codes are sent as-is, MSB first (RFC 3551 §4.5.14).
 */

/** Linear 16-bit value of each µ-law code. Treat as read-only. */
export const ULAW_TO_LINEAR: Int16Array = new Int16Array(256);
/** Linear 16-bit value of each A-law code. Treat as read-only. */
export const ALAW_TO_LINEAR: Int16Array = new Int16Array(256);
/** µ-law code for each 14-bit sample (index = (sample >> 2) & 0x3fff). Treat as read-only. */
export const LINEAR14_TO_ULAW: Uint8Array = new Uint8Array(16384);
/** A-law code for each 14-bit sample (index = (sample >> 2) & 0x3fff). Treat as read-only. */
export const LINEAR14_TO_ALAW: Uint8Array = new Uint8Array(16384);

/** The µ-law code the silence of an idle channel encodes to (0 → 0xFF). */
export const ULAW_SILENCE = 0xff;
/** The A-law code for 0 (0xD5, which decodes to +8: A-law has no exact zero). */
export const ALAW_SILENCE = 0xd5;

const ULAW_BIAS = 0x84; // 132: added before the segment search so segment 0 starts at 33 (14-bit)
const ULAW_CLIP = 8159; // largest 14-bit magnitude µ-law represents (32635 in 16-bit)
const SEG_UEND = [0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff] as const;
const SEG_AEND = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff] as const;

function segment(value: number, ends: readonly number[]): number {
  for (let i = 0; i < ends.length; i++) if (value <= ends[i]!) return i;
  return ends.length;
}

/** µ-law code → linear (G.711 Table 2a; codes are stored bit-inverted). */
function ulawDecodeRef(code: number): number {
  const u = ~code & 0xff;
  const t = (((u & 0x0f) << 3) + ULAW_BIAS) << ((u & 0x70) >> 4);
  return u & 0x80 ? ULAW_BIAS - t : t - ULAW_BIAS;
}

/** A-law code → linear (G.711 Table 1a; even bits are inverted on the wire, hence ^0x55). */
function alawDecodeRef(code: number): number {
  const a = code ^ 0x55;
  let t = (a & 0x0f) << 4;
  const seg = (a & 0x70) >> 4;
  if (seg === 0) t += 8;
  else t = (t + 0x108) << (seg - 1);
  return a & 0x80 ? t : -t;
}

/** 16-bit linear → µ-law, Sun's linear2ulaw. */
function ulawEncodeRef(sample: number): number {
  let v = sample >> 2;
  let mask: number;
  if (v < 0) {
    v = -v;
    mask = 0x7f;
  } else {
    mask = 0xff;
  }
  if (v > ULAW_CLIP) v = ULAW_CLIP;
  v += ULAW_BIAS >> 2;
  const seg = segment(v, SEG_UEND);
  if (seg >= 8) return 0x7f ^ mask;
  return ((seg << 4) | ((v >> (seg + 1)) & 0x0f)) ^ mask;
}

/** 16-bit linear → A-law, Sun's linear2alaw (one's complement for negatives). */
function alawEncodeRef(sample: number): number {
  let v = sample >> 3;
  let mask: number;
  if (v >= 0) {
    mask = 0xd5;
  } else {
    mask = 0x55;
    v = -v - 1;
  }
  const seg = segment(v, SEG_AEND);
  if (seg >= 8) return 0x7f ^ mask;
  const aval = (seg << 4) | ((seg < 2 ? v >> 1 : v >> seg) & 0x0f);
  return aval ^ mask;
}

for (let code = 0; code < 256; code++) {
  ULAW_TO_LINEAR[code] = ulawDecodeRef(code);
  ALAW_TO_LINEAR[code] = alawDecodeRef(code);
}
for (let i = 0; i < 16384; i++) {
  // Index i holds the 14-bit two's-complement value i (as an unsigned bit pattern).
  const sample = ((i << 18) >> 18) << 2;
  LINEAR14_TO_ULAW[i] = ulawEncodeRef(sample);
  LINEAR14_TO_ALAW[i] = alawEncodeRef(sample);
}

/** One µ-law code → 16-bit linear. */
export function ulawToLinear(code: number): number {
  return ULAW_TO_LINEAR[code & 0xff]!;
}

/** One A-law code → 16-bit linear. */
export function alawToLinear(code: number): number {
  return ALAW_TO_LINEAR[code & 0xff]!;
}

/** One 16-bit linear sample → µ-law code. */
export function linearToUlaw(sample: number): number {
  return LINEAR14_TO_ULAW[(sample >> 2) & 0x3fff]!;
}

/** One 16-bit linear sample → A-law code. */
export function linearToAlaw(sample: number): number {
  return LINEAR14_TO_ALAW[(sample >> 2) & 0x3fff]!;
}

function checkRoom(srcLength: number, dstLength: number): void {
  if (dstLength < srcLength) throw new RangeError(`G.711: output holds ${dstLength} samples, input has ${srcLength}`);
}

/**
 * Decodes a µ-law frame into `dst` (which must hold at least `src.length` samples) and returns
 * the number of samples written.
 */
export function decodeUlaw(src: Uint8Array, dst: Int16Array): number {
  const n = src.length;
  checkRoom(n, dst.length);
  const table = ULAW_TO_LINEAR;
  for (let i = 0; i < n; i++) dst[i] = table[src[i]!]!;
  return n;
}

/** Decodes an A-law frame into `dst`; returns the number of samples written. */
export function decodeAlaw(src: Uint8Array, dst: Int16Array): number {
  const n = src.length;
  checkRoom(n, dst.length);
  const table = ALAW_TO_LINEAR;
  for (let i = 0; i < n; i++) dst[i] = table[src[i]!]!;
  return n;
}

/** Encodes 16-bit linear samples to µ-law into `dst`; returns the number of codes written. */
export function encodeUlaw(src: Int16Array, dst: Uint8Array): number {
  const n = src.length;
  checkRoom(n, dst.length);
  const table = LINEAR14_TO_ULAW;
  for (let i = 0; i < n; i++) dst[i] = table[(src[i]! >> 2) & 0x3fff]!;
  return n;
}

/** Encodes 16-bit linear samples to A-law into `dst`; returns the number of codes written. */
export function encodeAlaw(src: Int16Array, dst: Uint8Array): number {
  const n = src.length;
  checkRoom(n, dst.length);
  const table = LINEAR14_TO_ALAW;
  for (let i = 0; i < n; i++) dst[i] = table[(src[i]! >> 2) & 0x3fff]!;
  return n;
}
