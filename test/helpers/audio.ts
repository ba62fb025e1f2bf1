import { readFileSync } from 'node:fs';
import { decodeUlaw, encodeUlaw } from '../../src/media/g711.js';

/**
 * Audio tools for tests: tone synthesis, tone detection (Goertzel), G.711 µ-law of whole
 * buffers, PCM16LE conversions and a WAV reader for what baresip and sox write.
 *
 * Levels are in linear 16-bit sample units (full scale 32767) unless a name says dB.
 */

/** A sine of `freqHz` at `rate` Hz lasting `ms`, peak `amplitude` (16-bit units). */
export function sine(freqHz: number, rate: number, ms: number, amplitude = 8000, phase = 0): Int16Array {
  const n = Math.round((rate * ms) / 1000);
  const out = new Int16Array(n);
  const w = (2 * Math.PI * freqHz) / rate;
  for (let i = 0; i < n; i++) out[i] = clamp16(Math.round(amplitude * Math.sin(w * i + phase)));
  return out;
}

/** `ms` of digital silence at `rate`. */
export function silence(rate: number, ms: number): Int16Array {
  return new Int16Array(Math.round((rate * ms) / 1000));
}

/** Concatenates sample buffers. */
export function concatPcm(parts: readonly Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Samples `[fromMs, toMs)` of a buffer at `rate` (clamped to the buffer). */
export function slicePcm(samples: Int16Array, rate: number, fromMs: number, toMs = (samples.length * 1000) / rate): Int16Array {
  const a = Math.max(0, Math.round((fromMs * rate) / 1000));
  const b = Math.min(samples.length, Math.round((toMs * rate) / 1000));
  return samples.subarray(a, Math.max(a, b));
}

/** Duration of `samples` at `rate`, in ms. */
export function durationMs(samples: { length: number }, rate: number): number {
  return (samples.length * 1000) / rate;
}

/** Root mean square of the samples (0 for an empty buffer). */
export function rms(samples: Int16Array): number {
  if (samples.length === 0) return 0;
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i]! * samples[i]!;
  return Math.sqrt(sum / samples.length);
}

/**
 * Goertzel power of `samples` at `freqHz` (any frequency, not only a DFT bin), Hann-windowed:
 * |X(f)|² of the windowed signal. Use `toneLevel` for a figure in sample units.
 */
export function goertzelPower(samples: Int16Array, rate: number, freqHz: number): number {
  const n = samples.length;
  if (n === 0) return 0;
  const w = (2 * Math.PI * freqHz) / rate;
  const coeff = 2 * Math.cos(w);
  let s1 = 0;
  let s2 = 0;
  const hann = (2 * Math.PI) / n;
  for (let i = 0; i < n; i++) {
    const x = samples[i]! * (0.5 - 0.5 * Math.cos(hann * (i + 0.5)));
    const s0 = x + coeff * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  // Exact for a non-integer bin too: X = e^{jw(N-1)}·(s1 - e^{-jw}·s2), so |X|² is:
  return s1 * s1 + s2 * s2 - coeff * s1 * s2;
}

/**
 * Estimated peak amplitude (16-bit units) of the component at `freqHz`: a sine of amplitude A
 * at that frequency gives ≈ A. The Hann window (coherent gain ½) keeps leakage from other
 * frequencies low.
 */
export function toneLevel(samples: Int16Array, rate: number, freqHz: number): number {
  if (samples.length === 0) return 0;
  return (4 * Math.sqrt(Math.max(0, goertzelPower(samples, rate, freqHz)))) / samples.length;
}

/** A frequency range to scan: `min` to `max` Hz in steps of `step` Hz (default 1). */
export interface FrequencyRange {
  min: number;
  max: number;
  step?: number;
}

/**
 * The frequency, among `candidates` (a list, or a range to scan), with the highest `toneLevel`.
 * Returns it with its level; `freq` is NaN for empty input.
 */
export function dominantFrequency(samples: Int16Array, rate: number, candidates: readonly number[] | FrequencyRange): { freq: number; level: number } {
  const list: number[] = [];
  if (Array.isArray(candidates)) list.push(...(candidates as readonly number[]));
  else {
    const r = candidates as FrequencyRange;
    const step = r.step ?? 1;
    if (step <= 0) throw new RangeError('dominantFrequency: step must be positive');
    for (let f = r.min; f <= r.max + 1e-9; f += step) list.push(f);
  }
  let best = { freq: NaN, level: -1 };
  for (const f of list) {
    const level = toneLevel(samples, rate, f);
    if (level > best.level) best = { freq: f, level };
  }
  return best.level < 0 ? { freq: NaN, level: 0 } : best;
}

export interface ToneDetection {
  /** `snrDb >= minSnrDb` and `rms >= minRms`. */
  present: boolean;
  /** Power of the tone against everything else (DC removed), in dB. */
  snrDb: number;
  /** RMS of the whole buffer (DC removed), 16-bit units. */
  rms: number;
  /** Estimated peak amplitude of the tone. */
  level: number;
}

export interface ToneDetectOptions {
  /** Default 10 dB. µ-law alone leaves a loud tone at ~35 dB; a missing tone is far below 0. */
  minSnrDb?: number;
  /** Below this the buffer counts as silent whatever the SNR. Default 100 (about -50 dBFS). */
  minRms?: number;
  /**
   * Also try frequencies within ± this many Hz (in steps of a quarter of the analysis
   * resolution) and take the strongest. Default 0: exactly `freqHz`.
   */
  toleranceHz?: number;
}

/**
 * Whether a tone at `freqHz` dominates `samples`: its power against the rest of the signal.
 * Robust to µ-law quantisation and to a resampler's small errors; give it at least 100 ms.
 */
export function detectTone(samples: Int16Array, rate: number, freqHz: number, opts: ToneDetectOptions = {}): ToneDetection {
  const minSnrDb = opts.minSnrDb ?? 10;
  const minRms = opts.minRms ?? 100;
  const n = samples.length;
  if (n === 0) return { present: false, snrDb: -Infinity, rms: 0, level: 0 };
  let mean = 0;
  for (let i = 0; i < n; i++) mean += samples[i]!;
  mean /= n;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const d = samples[i]! - mean;
    total += d * d;
  }
  total /= n;
  let level = toneLevel(samples, rate, freqHz);
  const tol = opts.toleranceHz ?? 0;
  if (tol > 0) {
    const step = Math.max(0.25, rate / n / 4);
    for (let f = freqHz - tol; f <= freqHz + tol + 1e-9; f += step) level = Math.max(level, toneLevel(samples, rate, f));
  }
  const tonePower = (level * level) / 2;
  // The rest: what is not the tone, floored so a pure synthetic sine does not give +∞.
  const noise = Math.max(total - tonePower, total * 1e-6, 1e-3);
  const snrDb = 10 * Math.log10(Math.max(tonePower, 1e-9) / noise);
  const r = Math.sqrt(total);
  return { present: snrDb >= minSnrDb && r >= minRms, snrDb, rms: r, level };
}

/**
 * Tone presence window by window (`windowMs` each, default 20): true where `detectTone` finds
 * the tone. Handy for "when did the tone start/stop" checks.
 */
export function toneTimeline(samples: Int16Array, rate: number, freqHz: number, windowMs = 20, opts: ToneDetectOptions = {}): boolean[] {
  const win = Math.round((rate * windowMs) / 1000);
  const out: boolean[] = [];
  for (let off = 0; off + win <= samples.length; off += win) out.push(detectTone(samples.subarray(off, off + win), rate, freqHz, opts).present);
  return out;
}

/** Time (ms) of the first window of `windowMs` holding the tone, or null. */
export function toneOnsetMs(samples: Int16Array, rate: number, freqHz: number, windowMs = 20, opts: ToneDetectOptions = {}): number | null {
  const i = toneTimeline(samples, rate, freqHz, windowMs, opts).indexOf(true);
  return i < 0 ? null : i * windowMs;
}

// ---------------------------------------------------------------------------------------------
// G.711 µ-law and PCM16LE of whole buffers

/** 16-bit samples → µ-law bytes (src/media/g711.ts). */
export function ulawEncode(samples: Int16Array): Buffer {
  const out = Buffer.alloc(samples.length);
  encodeUlaw(samples, out);
  return out;
}

/** µ-law bytes → 16-bit samples (src/media/g711.ts). */
export function ulawDecode(codes: Uint8Array): Int16Array {
  const out = new Int16Array(codes.length);
  decodeUlaw(codes, out);
  return out;
}

/** Little-endian 16-bit PCM bytes → samples (copied; any alignment). Throws on an odd length. */
export function pcm16le(buf: Uint8Array): Int16Array {
  if (buf.length % 2 !== 0) throw new RangeError(`PCM16 buffer of odd length ${buf.length}`);
  const out = new Int16Array(buf.length / 2);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true);
  return out;
}

/** Samples → little-endian 16-bit PCM bytes. */
export function toPcm16le(samples: Int16Array): Buffer {
  const out = Buffer.alloc(samples.length * 2);
  for (let i = 0; i < samples.length; i++) out.writeInt16LE(samples[i]!, i * 2);
  return out;
}

// ---------------------------------------------------------------------------------------------
// WAV

export interface Wav {
  sampleRate: number;
  channels: number;
  bitsPerSample: number;
  /** The first channel, 16-bit. */
  samples: Int16Array;
}

/**
 * Reads a 16-bit PCM WAV (what baresip's sndfile module and sox write) from a path or bytes:
 * walks the RIFF chunks for 'fmt ' and 'data' (skipping LIST, fact, … and the pad byte after
 * odd-sized chunks). A data size larger than the file (a recorder killed before it fixed the
 * header, or 0xFFFFFFFF from a streaming writer) is clamped to what is there. Multi-channel
 * files give their first channel.
 */
export function readWav(source: string | Uint8Array): Wav {
  const buf = typeof source === 'string' ? readFileSync(source) : Buffer.from(source.buffer, source.byteOffset, source.byteLength);
  const what = typeof source === 'string' ? source : 'WAV buffer';
  if (buf.length < 12 || buf.toString('latin1', 0, 4) !== 'RIFF' || buf.toString('latin1', 8, 12) !== 'WAVE') {
    throw new Error(`${what}: not a RIFF/WAVE file`);
  }
  let fmt: { format: number; channels: number; sampleRate: number; bitsPerSample: number; blockAlign: number } | null = null;
  let off = 12;
  while (off + 8 <= buf.length) {
    const id = buf.toString('latin1', off, off + 4);
    const size = buf.readUInt32LE(off + 4);
    const body = off + 8;
    if (id === 'fmt ') {
      if (size < 16 || body + 16 > buf.length) throw new Error(`${what}: short fmt chunk`);
      let format = buf.readUInt16LE(body);
      // WAVE_FORMAT_EXTENSIBLE: the real format is the first two bytes of the sub-format GUID.
      if (format === 0xfffe && size >= 40 && body + 26 <= buf.length) format = buf.readUInt16LE(body + 24);
      fmt = {
        format,
        channels: buf.readUInt16LE(body + 2),
        sampleRate: buf.readUInt32LE(body + 4),
        blockAlign: buf.readUInt16LE(body + 12),
        bitsPerSample: buf.readUInt16LE(body + 14),
      };
    } else if (id === 'data') {
      if (!fmt) throw new Error(`${what}: data chunk before fmt chunk`);
      if (fmt.format !== 1 || fmt.bitsPerSample !== 16) {
        throw new Error(`${what}: only 16-bit PCM is supported (format ${fmt.format}, ${fmt.bitsPerSample} bits)`);
      }
      const end = Math.min(buf.length, body + size);
      const frame = fmt.blockAlign || fmt.channels * 2;
      const frames = Math.floor((end - body) / frame);
      const samples = new Int16Array(frames);
      for (let i = 0; i < frames; i++) samples[i] = buf.readInt16LE(body + i * frame);
      return { sampleRate: fmt.sampleRate, channels: fmt.channels, bitsPerSample: fmt.bitsPerSample, samples };
    }
    off = body + size + (size & 1);
  }
  throw new Error(`${what}: no data chunk`);
}

/** A 16-bit mono WAV file's bytes, for fixtures. */
export function wavBytes(samples: Int16Array, sampleRate: number): Buffer {
  const data = toPcm16le(samples);
  const h = Buffer.alloc(44);
  h.write('RIFF', 0, 'latin1');
  h.writeUInt32LE(36 + data.length, 4);
  h.write('WAVE', 8, 'latin1');
  h.write('fmt ', 12, 'latin1');
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20);
  h.writeUInt16LE(1, 22);
  h.writeUInt32LE(sampleRate, 24);
  h.writeUInt32LE(sampleRate * 2, 28);
  h.writeUInt16LE(2, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36, 'latin1');
  h.writeUInt32LE(data.length, 40);
  return Buffer.concat([h, data]);
}

function clamp16(v: number): number {
  return v > 32767 ? 32767 : v < -32768 ? -32768 : v;
}
