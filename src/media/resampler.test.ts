import { describe, it, expect } from 'vitest';
import { Resampler, lowPassTaps, type PcmRate } from './resampler.js';

const AGENT_RATES: readonly PcmRate[] = [16000, 24000, 48000];
const TONES = [300, 1000, 3000] as const;

function tone(hz: number, rate: number, seconds: number, amplitude = 16000): Int16Array {
  const n = Math.round(rate * seconds);
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.round(amplitude * Math.sin((2 * Math.PI * hz * i) / rate));
  return out;
}

/** Feeds `input` in chunks of `chunk` samples and concatenates the output. */
function run(r: Resampler, input: Int16Array, chunk = input.length): Int16Array {
  const parts: Int16Array[] = [];
  for (let i = 0; i < input.length; i += chunk) parts.push(r.process(input.subarray(i, i + chunk)));
  const out = new Int16Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const frame20ms = (rate: number) => rate / 50;

/** Power of the component at `hz` (single-bin DFT) as a fraction of total power of `x`. */
function toneFraction(x: ArrayLike<number>, hz: number, rate: number): number {
  let re = 0;
  let im = 0;
  let total = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    const ph = (2 * Math.PI * hz * i) / rate;
    re += v * Math.cos(ph);
    im -= v * Math.sin(ph);
    total += v * v;
  }
  const tonePower = (2 * (re * re + im * im)) / x.length; // same scale as Σx² for a whole number of cycles
  return tonePower / total;
}

const db = (ratio: number) => 10 * Math.log10(ratio);
const rms = (x: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return Math.sqrt(s / x.length);
};

/** Deterministic noise (LCG), full-band, roughly ±12000. */
function noise(n: number, seed = 1): Int16Array {
  const out = new Int16Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s >>> 16) - 32768 > 0 ? ((s >>> 18) % 12000) : -((s >>> 18) % 12000);
  }
  return out;
}

describe('filter design', () => {
  it.each([2, 3, 6])('ratio %i: ≥ 60 dB stopband from the low rate\'s Nyquist up, passband flat to 0.1 dB below 0.4 × fsLow', (ratio) => {
    const h = lowPassTaps(ratio);
    expect(h.length % 2).toBe(1);
    const response = (f: number) => {
      // f in cycles per high-rate sample
      let re = 0;
      let im = 0;
      for (let i = 0; i < h.length; i++) {
        re += h[i]! * Math.cos(2 * Math.PI * f * i);
        im -= h[i]! * Math.sin(2 * Math.PI * f * i);
      }
      return Math.hypot(re, im);
    };
    let worstStop = 0;
    for (let f = 0.5 / ratio; f <= 0.5; f += 0.0005) worstStop = Math.max(worstStop, response(f));
    expect(20 * Math.log10(worstStop)).toBeLessThan(-60);
    for (let f = 0; f <= 0.4 / ratio; f += 0.001) expect(Math.abs(20 * Math.log10(response(f)))).toBeLessThan(0.1);
  });
});

describe('Resampler', () => {
  it('rejects rates it cannot convert with an integer ratio', () => {
    expect(() => new Resampler(16000, 24000)).toThrow(RangeError);
    expect(() => new Resampler(44100 as PcmRate, 8000)).toThrow(RangeError);
  });

  describe.each(AGENT_RATES)('8 kHz ↔ %i Hz', (agentHz) => {
    const ratio = agentHz / 8000;

    it.each(TONES)('a %i Hz tone survives the round trip 8k → agent → 8k with SNR ≥ 40 dB', (hz) => {
      const up = new Resampler(8000, agentHz);
      const down = new Resampler(agentHz, 8000);
      const input = tone(hz, 8000, 1);
      const mid = run(up, input, frame20ms(8000));
      const out = run(down, mid, frame20ms(agentHz));
      expect(mid.length).toBe(input.length * ratio);
      expect(out.length).toBe(input.length);
      // Delay through both: the upsampler's in 8 kHz samples plus the downsampler's.
      const d = up.delaySamples / ratio + down.delaySamples;
      expect(Number.isInteger(d)).toBe(true);
      let sig = 0;
      let err = 0;
      for (let j = d + 50; j < out.length; j++) {
        const ref = 16000 * Math.sin((2 * Math.PI * hz * (j - d)) / 8000);
        sig += ref * ref;
        err += (out[j]! - ref) ** 2;
      }
      expect(db(sig / err)).toBeGreaterThanOrEqual(40);
    });

    it('produces ratio × as many samples up and 1/ratio down, whatever the framing', () => {
      const up = new Resampler(8000, agentHz);
      const down = new Resampler(agentHz, 8000);
      expect(up.outputLength(160)).toBe(160 * ratio);
      expect(up.process(new Int16Array(160)).length).toBe(160 * ratio);
      let total = 0;
      for (let i = 0; i < 50; i++) total += down.process(new Int16Array(7)).length;
      expect(total).toBe(Math.ceil((50 * 7) / ratio));
      expect(down.process(new Int16Array(frame20ms(agentHz) * ratio)).length).toBe(frame20ms(agentHz));
    });

    it('upsampling a 1 kHz tone gives a 1 kHz tone at the new rate, images ≥ 50 dB down', () => {
      const up = new Resampler(8000, agentHz);
      const out = run(up, tone(1000, 8000, 1), frame20ms(8000));
      const settled = out.subarray(up.delaySamples + agentHz / 100); // skip the start-up transient, keep whole cycles
      const whole = settled.subarray(0, Math.floor(settled.length / ratio / 8) * ratio * 8);
      expect(db(1 - toneFraction(whole, 1000, agentHz))).toBeLessThan(-50);
      let crossings = 0;
      for (let i = 1; i < whole.length; i++) if ((whole[i - 1]! < 0) !== (whole[i]! < 0)) crossings++;
      const expected = (2 * 1000 * whole.length) / agentHz;
      expect(Math.abs(crossings - expected)).toBeLessThanOrEqual(2);
    });

    it.each([4500, 6000])('downsampling to 8 kHz attenuates a %i Hz tone (above 4 kHz Nyquist) by ≥ 40 dB', (hz) => {
      if (hz >= agentHz / 2) return;
      const down = new Resampler(agentHz, 8000);
      const input = tone(hz, agentHz, 1);
      const out = run(down, input, frame20ms(agentHz));
      const settled = out.subarray(2 * down.delaySamples + 1);
      expect(db((rms(settled) / rms(input)) ** 2)).toBeLessThan(-40);
    });

    it.each([
      ['up', 8000, agentHz],
      ['down', agentHz, 8000],
    ] as const)('%s: 20 ms frames, odd chunks and one piece give the same samples', (_dir, from, to) => {
      const input = noise(from); // 1 s
      const whole = run(new Resampler(from, to), input);
      expect(run(new Resampler(from, to), input, frame20ms(from))).toEqual(whole);
      const odd = new Resampler(from, to);
      const parts: Int16Array[] = [];
      for (let i = 0, c = 1; i < input.length; i += c, c = (c * 7) % 61 + 1) parts.push(odd.process(input.subarray(i, i + c)));
      expect(Int16Array.from(parts.flatMap((p) => [...p]))).toEqual(whole);
    });

    it.each([
      ['up', 8000, agentHz],
      ['down', agentHz, 8000],
    ] as const)('%s: silence in gives silence out; reset() forgets history', (_dir, from, to) => {
      const r = new Resampler(from, to);
      expect(run(r, new Int16Array(from), frame20ms(from)).every((v) => v === 0)).toBe(true);
      r.process(noise(333));
      r.reset();
      const input = noise(from / 10, 7);
      expect(r.process(input)).toEqual(new Resampler(from, to).process(input));
    });

    it.each([
      ['up', 8000, agentHz],
      ['down', agentHz, 8000],
    ] as const)('%s: full-scale square wave is clamped, never wraps around', (_dir, from, to) => {
      const r = new Resampler(from, to);
      const period = from / 50; // 50 Hz
      const input = new Int16Array(from);
      for (let i = 0; i < input.length; i++) input[i] = i % period < period / 2 ? 32767 : -32768;
      const out = run(r, input, frame20ms(from));
      let clamped = 0;
      let worst = 0;
      const edgeGuard = 1.5 / 8000; // seconds: the band-limited edge spreads over about a sample at 8 kHz
      for (let m = 0; m < out.length; m++) {
        const t = (m - r.delaySamples) / to + 0.5 / from; // centre the sampled edge
        if (t < 0.02) continue;
        const half = t / 0.01;
        const fromEdge = Math.min(half - Math.floor(half), Math.ceil(half) - half) * 0.01;
        if (fromEdge < edgeGuard) continue;
        const expected = Math.floor(half) % 2 === 0 ? 32767 : -32768;
        worst = Math.max(worst, Math.abs(out[m]! - expected));
        if (out[m] === 32767 || out[m] === -32768) clamped++;
      }
      expect(clamped).toBeGreaterThan(0);
      expect(worst).toBeLessThan(8000);
    });
  });

  it('same rate is a copy with no delay', () => {
    const r = new Resampler(16000, 16000);
    const input = noise(320);
    expect(r.delaySamples).toBe(0);
    expect(r.process(input)).toEqual(input);
  });
});
