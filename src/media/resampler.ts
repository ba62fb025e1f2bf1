/**
 * Streaming sample-rate conversion for mono PCM16 between telephone audio (8 kHz) and the rates
 * AI agents speak (16, 24, 48 kHz), in both directions.
 *
 * Every supported pair is an integer ratio R = fsHigh / fsLow (2, 3 or 6; 16k↔48k and 24k↔48k
 * come for free). One linear-phase low-pass FIR, designed at the high rate, serves both ways:
 * - up by L = R: polyphase interpolator. Zero-stuffing is never materialised; output sample
 *   jL + p is input x[j − i] weighed by phase p's taps h[p + iL], scaled by L for unity gain.
 * - down by M = R: decimating FIR that computes only the kept outputs (N/M multiplies per input
 *   sample, the same work as the polyphase form).
 *
 * Filter (windowed sinc, Kaiser window — Kaiser & Schafer 1980; Oppenheim & Schafer §7.5.3):
 * - cutoff (−6 dB) at 0.45 × fsLow (3600 Hz for 8 kHz), so the transition band runs from
 *   0.40 × fsLow to exactly the low rate's Nyquist (3200–4000 Hz at 8 kHz): what would alias on
 *   decimation, or be an image on interpolation, lies wholly in the stopband;
 * - designed for 70 dB stopband attenuation (target ≥ 60 dB; Kaiser's length estimate is within
 *   a dB or two), β = 0.1102 (A − 8.7);
 * - length N = 2·D·R + 1 with D chosen so the group delay (N − 1)/2 = D·R is a whole number of
 *   samples at both rates: `delaySamples` is D × R at 48/24/16 kHz out, D at 8 kHz out (D = 22,
 *   2.75 ms per conversion).
 * Taps depend only on R and direction and are computed once (module cache, at most 6 entries).
 *
 * Streaming: the last N − 1 input samples (K − 1 for the interpolator) and the decimation phase
 * are carried between calls, so feeding 20 ms frames gives the same samples as one long buffer.
 * Output is rounded to nearest and clamped to the Int16 range (ringing near full scale must not
 * wrap). `processInto` allocates nothing once the internal history buffer has grown to the
 * largest input seen; `process` allocates only its result.
 */

/** The PCM rates the gateway converts between. */
export type PcmRate = 8000 | 16000 | 24000 | 48000;

const RATES: readonly number[] = [8000, 16000, 24000, 48000];

/** Cutoff (−6 dB point) as a fraction of the lower rate. */
const CUTOFF = 0.45;
/** Stopband attenuation the Kaiser design aims for, dB. */
const STOPBAND_DB = 70;

/**
 * Prototype low-pass for ratio R at the high rate, unity DC gain, symmetric, length 2·D·R + 1.
 * Exported for tests (frequency-response checks); treat the result as read-only.
 */
export function lowPassTaps(ratio: number): Float64Array {
  const cached = prototypes.get(ratio);
  if (cached) return cached;
  const fc = CUTOFF / ratio; // cycles per high-rate sample
  const transition = (1 - 2 * CUTOFF) / ratio; // stop edge 0.5/R minus pass edge (2C − 0.5)/R
  // Kaiser's order estimate: N − 1 = (A − 7.95) / (14.36 · Δf), Δf in cycles per sample.
  const order = (STOPBAND_DB - 7.95) / (14.36 * transition);
  const d = Math.ceil(order / (2 * ratio));
  const n = 2 * d * ratio + 1;
  const centre = d * ratio;
  const beta = 0.1102 * (STOPBAND_DB - 8.7);
  const i0Beta = besselI0(beta);
  const h = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const t = i - centre;
    const sinc = t === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * t) / (Math.PI * t);
    const r = t / centre;
    const w = besselI0(beta * Math.sqrt(Math.max(0, 1 - r * r))) / i0Beta;
    h[i] = sinc * w;
    sum += sinc * w;
  }
  for (let i = 0; i < n; i++) h[i] = h[i]! / sum;
  prototypes.set(ratio, h);
  return h;
}

/** Zeroth-order modified Bessel function of the first kind (power series; converges fast for β ≤ 10). */
function besselI0(x: number): number {
  let term = 1;
  let sum = 1;
  const q = (x * x) / 4;
  for (let k = 1; k < 50 && term > sum * 1e-17; k++) {
    term *= q / (k * k);
    sum += term;
  }
  return sum;
}

// Bounded by construction: keys are the ratios 2, 3 and 6 (STYLE.md §11).
const prototypes = new Map<number, Float64Array>();
const polyphases = new Map<number, Float64Array>();

/**
 * Interpolator taps for L = ratio, phase-major: phase p's K taps h[p + iL] stored newest-last
 * (index p·K + k holds h[p + (K − 1 − k)L]) so the inner loop walks history forwards. Scaled by L.
 */
function polyphaseTaps(ratio: number): Float64Array {
  const cached = polyphases.get(ratio);
  if (cached) return cached;
  const h = lowPassTaps(ratio);
  const k = Math.ceil(h.length / ratio);
  const taps = new Float64Array(ratio * k);
  for (let p = 0; p < ratio; p++) {
    for (let j = 0; j < k; j++) {
      const idx = p + (k - 1 - j) * ratio;
      taps[p * k + j] = idx < h.length ? h[idx]! * ratio : 0;
    }
  }
  polyphases.set(ratio, taps);
  return taps;
}

function toInt16(v: number): number {
  const r = Math.round(v);
  return r > 32767 ? 32767 : r < -32768 ? -32768 : r;
}

/**
 * A streaming resampler for one direction of one call's audio. Not shared between streams:
 * it holds that stream's history.
 */
export class Resampler {
  readonly fromHz: PcmRate;
  readonly toHz: PcmRate;
  private readonly mode: 'copy' | 'up' | 'down';
  private readonly ratio: number;
  /** up: polyphase taps (ratio × perOutput); down: the symmetric prototype. */
  private readonly taps: Float64Array;
  /** Taps per output sample: K for the interpolator, N for the decimator. */
  private readonly perOutput: number;
  /** Input samples of history kept between calls (perOutput − 1). */
  private readonly history: number;
  private readonly delay: number;
  /** history samples, then the current input; grows to the largest input seen. */
  private buf: Float64Array;
  /** down: index into the next input of the next sample to keep (0 ≤ phase < M). */
  private phase = 0;

  constructor(fromHz: PcmRate, toHz: PcmRate) {
    if (!RATES.includes(fromHz) || !RATES.includes(toHz)) {
      throw new RangeError(`resampler: unsupported rate ${fromHz} → ${toHz} (8000, 16000, 24000 or 48000)`);
    }
    const high = Math.max(fromHz, toHz);
    const low = Math.min(fromHz, toHz);
    if (high % low !== 0) throw new RangeError(`resampler: ${fromHz} → ${toHz} is not an integer ratio`);
    this.fromHz = fromHz;
    this.toHz = toHz;
    this.ratio = high / low;
    if (this.ratio === 1) {
      this.mode = 'copy';
      this.taps = new Float64Array(0);
      this.perOutput = 1;
      this.delay = 0;
    } else if (toHz > fromHz) {
      this.mode = 'up';
      this.taps = polyphaseTaps(this.ratio);
      this.perOutput = this.taps.length / this.ratio;
      this.delay = (lowPassTaps(this.ratio).length - 1) / 2; // D·L output samples
    } else {
      this.mode = 'down';
      this.taps = lowPassTaps(this.ratio);
      this.perOutput = this.taps.length;
      this.delay = (this.taps.length - 1) / 2 / this.ratio; // D output samples
    }
    this.history = this.perOutput - 1;
    this.buf = new Float64Array(this.history + 1024);
  }

  /** Group delay in output samples: output sample m corresponds to input time (m − delay) / toHz. */
  get delaySamples(): number {
    return this.delay;
  }

  /** How many samples `process` would return for `inputLength` more input, in the current state. */
  outputLength(inputLength: number): number {
    if (this.mode === 'copy') return inputLength;
    if (this.mode === 'up') return inputLength * this.ratio;
    return inputLength > this.phase ? Math.ceil((inputLength - this.phase) / this.ratio) : 0;
  }

  /** Converts `input` (any length) and returns the output samples now available. */
  process(input: Int16Array): Int16Array {
    const out = new Int16Array(this.outputLength(input.length));
    this.processInto(input, out);
    return out;
  }

  /**
   * As `process`, into caller-owned `output` (at least `outputLength(input.length)` samples).
   * Returns the number of samples written.
   */
  processInto(input: Int16Array, output: Int16Array): number {
    const n = input.length;
    const count = this.outputLength(n);
    if (output.length < count) throw new RangeError(`resampler: output holds ${output.length} samples, needs ${count}`);
    if (this.mode === 'copy') {
      output.set(input);
      return n;
    }
    const hist = this.history;
    if (this.buf.length < hist + n) {
      const grown = new Float64Array(hist + n);
      grown.set(this.buf.subarray(0, hist));
      this.buf = grown;
    }
    const buf = this.buf;
    const taps = this.taps;
    const k = this.perOutput;
    buf.set(input, hist);
    let o = 0;
    if (this.mode === 'up') {
      const l = this.ratio;
      // x[j] sits at buf[hist + j]; its oldest partner x[j − K + 1] at buf[j].
      for (let j = 0; j < n; j++) {
        for (let p = 0; p < l; p++) {
          const t0 = p * k;
          let acc = 0;
          for (let i = 0; i < k; i++) acc += taps[t0 + i]! * buf[j + i]!;
          output[o++] = toInt16(acc);
        }
      }
    } else {
      const m = this.ratio;
      let t = this.phase;
      for (; t < n; t += m) {
        let acc = 0;
        for (let i = 0; i < k; i++) acc += taps[i]! * buf[t + i]!;
        output[o++] = toInt16(acc);
      }
      this.phase = t - n;
    }
    // Keep the newest `hist` samples (old history included when n < hist) for the next call.
    buf.copyWithin(0, n, n + hist);
    return o;
  }

  /** Forgets history and phase, as if newly constructed (e.g. after a stream restarts). */
  reset(): void {
    this.buf.fill(0);
    this.phase = 0;
  }
}
