import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ALAW_TO_LINEAR, ULAW_TO_LINEAR, alawToLinear, decodeAlaw, decodeUlaw, encodeAlaw, encodeUlaw,
  linearToAlaw, linearToUlaw, ulawToLinear,
} from './g711.js';
import { hasCommand } from '../testing/system-tools.js';

/** Decoded value spacing around a code: the quantisation step of its segment. */
function stepOf(table: Int16Array, code: number): number {
  const base = code & 0xf0;
  return Math.abs(table[base | 1]! - table[base]!);
}

/** The largest amount by which |decode(encode(s)) - s| exceeds step/2 + slack over [lo, hi]. */
function worstExcess(lo: number, hi: number, encode: (s: number) => number, table: Int16Array, slack: number): { excess: number; sample: number } {
  let worst = { excess: -Infinity, sample: lo };
  for (let s = lo; s <= hi; s++) {
    const code = encode(s);
    const excess = Math.abs(table[code]! - s) - (stepOf(table, code) / 2 + slack);
    if (excess > worst.excess) worst = { excess, sample: s };
  }
  return worst;
}

function snrDb(reference: Int16Array, decoded: Int16Array): number {
  let signal = 0;
  let noise = 0;
  for (let i = 0; i < reference.length; i++) {
    signal += reference[i]! ** 2;
    noise += (reference[i]! - decoded[i]!) ** 2;
  }
  return 10 * Math.log10(signal / noise);
}

function sine(freq: number, amplitude: number, n: number): Int16Array {
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.round(amplitude * Math.sin((2 * Math.PI * freq * i) / 8000));
  return out;
}

describe('G.711 µ-law (ITU-T G.711 Table 2a)', () => {
  it('decodes the reference codes: 0xFF and 0x7F are ±0, 0x00 is -32124, 0x80 is +32124', () => {
    expect([ulawToLinear(0xff), ulawToLinear(0x7f), ulawToLinear(0x00), ulawToLinear(0x80)]).toEqual([0, 0, -32124, 32124]);
  });

  it('encodes 0 to 0xFF and full scale to 0x80 / 0x00', () => {
    expect([linearToUlaw(0), linearToUlaw(32767), linearToUlaw(-32768)]).toEqual([0xff, 0x80, 0x00]);
  });

  it('encode∘decode is the identity on every code but negative zero (0x7F re-encodes as 0xFF)', () => {
    for (let code = 0; code < 256; code++) {
      expect(linearToUlaw(ulawToLinear(code)), `code 0x${code.toString(16)}`).toBe(code === 0x7f ? 0xff : code);
    }
  });

  it('decode∘encode is within half a quantisation step (plus the 3 the dropped LSBs can add) below clipping', () => {
    const worst = worstExcess(-32124, 32124, linearToUlaw, ULAW_TO_LINEAR, 3);
    expect(worst.excess, `sample ${worst.sample}`).toBeLessThanOrEqual(0);
  });

  it('carries a 440 Hz sine at -6 dBFS with SNR ≥ 35 dB', () => {
    const ref = sine(440, 16384, 8000);
    const codes = new Uint8Array(ref.length);
    const out = new Int16Array(ref.length);
    expect(encodeUlaw(ref, codes)).toBe(8000);
    expect(decodeUlaw(codes, out)).toBe(8000);
    expect(snrDb(ref, out)).toBeGreaterThanOrEqual(35);
  });
});

describe('G.711 A-law (ITU-T G.711 Table 1a)', () => {
  it('decodes the reference codes: 0xD5 is +8, 0x55 is -8, 0xAA is +32256, 0x2A is -32256', () => {
    // The sign bit (MSB) set means positive in A-law; 0x2A has it clear, so it is the negative peak.
    expect([alawToLinear(0xd5), alawToLinear(0x55), alawToLinear(0xaa), alawToLinear(0x2a)]).toEqual([8, -8, 32256, -32256]);
  });

  it('encodes 0 to 0xD5 and full scale to 0xAA / 0x2A', () => {
    expect([linearToAlaw(0), linearToAlaw(32767), linearToAlaw(-32768)]).toEqual([0xd5, 0xaa, 0x2a]);
  });

  it('encode∘decode is the identity on all 256 codes', () => {
    for (let code = 0; code < 256; code++) expect(linearToAlaw(alawToLinear(code)), `code 0x${code.toString(16)}`).toBe(code);
  });

  it('decode∘encode is within half a quantisation step below clipping', () => {
    const worst = worstExcess(-32256, 32256, linearToAlaw, ALAW_TO_LINEAR, 0);
    expect(worst.excess, `sample ${worst.sample}`).toBeLessThanOrEqual(0);
  });

  it('carries a 440 Hz sine at -6 dBFS with SNR ≥ 35 dB', () => {
    const ref = sine(440, 16384, 8000);
    const codes = new Uint8Array(ref.length);
    const out = new Int16Array(ref.length);
    encodeAlaw(ref, codes);
    decodeAlaw(codes, out);
    expect(snrDb(ref, out)).toBeGreaterThanOrEqual(35);
  });
});

describe('G.711 frame functions', () => {
  it('write into caller-owned output and refuse one that is too small', () => {
    const dst = new Int16Array(160);
    expect(decodeUlaw(new Uint8Array(160).fill(0xff), dst)).toBe(160);
    expect(dst.every((v) => v === 0)).toBe(true);
    expect(() => decodeAlaw(new Uint8Array(161), dst)).toThrow(RangeError);
    expect(() => encodeUlaw(new Int16Array(161), new Uint8Array(160))).toThrow(RangeError);
  });

  it('a larger output is filled only up to the input length', () => {
    const dst = new Uint8Array(4).fill(7);
    expect(encodeAlaw(Int16Array.of(0, 0), dst)).toBe(2);
    expect([...dst]).toEqual([0xd5, 0xd5, 7, 7]);
  });
});

describe.skipIf(!hasCommand('sox'))('G.711 against SoX (skipped when sox is not installed)', () => {
  it('decodes all 256 codes of both laws exactly as sox does', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-g711-'));
    try {
      const codes = Buffer.alloc(256);
      for (let i = 0; i < 256; i++) codes[i] = i;
      writeFileSync(join(dir, 'codes.raw'), codes);
      for (const [enc, table] of [['u-law', ULAW_TO_LINEAR], ['a-law', ALAW_TO_LINEAR]] as const) {
        const out = join(dir, `${enc}.s16`);
        execFileSync('sox', ['-t', 'raw', '-r', '8000', '-e', enc, '-b', '8', '-c', '1', join(dir, 'codes.raw'), '-t', 'raw', '-e', 'signed', '-b', '16', '-L', out]);
        const pcm = readFileSync(out);
        for (let c = 0; c < 256; c++) expect(table[c], `${enc} 0x${c.toString(16)}`).toBe(pcm.readInt16LE(c * 2));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('encodes every 16-bit sample as sox does (sox rounds to 14/13 bits first, so we feed it rounded input)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-g711-'));
    try {
      const all = Buffer.alloc(131072);
      for (let i = 0; i < 65536; i++) all.writeInt16LE(i - 32768, i * 2);
      writeFileSync(join(dir, 'all.s16'), all);
      for (const [enc, encode, lsb] of [['u-law', linearToUlaw, 2], ['a-law', linearToAlaw, 3]] as const) {
        const out = join(dir, `all.${enc}`);
        execFileSync('sox', ['-D', '-t', 'raw', '-r', '8000', '-e', 'signed', '-b', '16', '-L', '-c', '1', join(dir, 'all.s16'), '-t', 'raw', '-e', enc, out], { stdio: ['ignore', 'ignore', 'ignore'] });
        const got = readFileSync(out);
        const half = 1 << (lsb - 1);
        let mismatches = 0;
        for (let i = 0; i < 65536; i++) {
          const rounded = Math.min(32767, i - 32768 + half) & ~((1 << lsb) - 1);
          if (encode(rounded) !== got[i]) mismatches++;
        }
        expect(mismatches, enc).toBe(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
