/**
 * npm run bench:resample — cost of converting one 20 ms mono PCM16 frame, printed as JSON.
 * For each conversion between 8 kHz and 16/24/48 kHz (both ways): `processUs` times
 * `Resampler.process` (allocates its result), `processIntoUs` the caller-owned-buffer form.
 * Input is a 1 kHz tone at 0.5 full scale. Every loop is bounded in count (20k frames,
 * 2k with --quick, after a warm-up).
 */
import { Resampler, type PcmRate } from '../src/media/resampler.js';

const quick = process.argv.includes('--quick');
const FRAMES = quick ? 2_000 : 20_000;
const WARMUP = quick ? 500 : 2_000;

const round = (v: number, d = 2) => Math.round(v * 10 ** d) / 10 ** d;
const nowNs = () => process.hrtime.bigint();

function bench(from: PcmRate, to: PcmRate) {
  const frame = new Int16Array(from / 50);
  for (let i = 0; i < frame.length; i++) frame[i] = Math.round(16000 * Math.sin((2 * Math.PI * 1000 * i) / from));
  const time = (f: (r: Resampler) => void) => {
    const r = new Resampler(from, to);
    for (let i = 0; i < WARMUP; i++) f(r);
    const t0 = nowNs();
    for (let i = 0; i < FRAMES; i++) f(r);
    return round(Number(nowNs() - t0) / FRAMES / 1000);
  };
  const out = new Int16Array((to / 50) + 1);
  let sink = 0;
  const processUs = time((r) => {
    sink ^= r.process(frame)[0]!;
  });
  const processIntoUs = time((r) => {
    sink ^= r.processInto(frame, out);
  });
  const probe = new Resampler(from, to);
  return {
    inSamples: frame.length,
    outSamples: probe.outputLength(frame.length),
    delaySamples: probe.delaySamples,
    delayMs: round((probe.delaySamples / to) * 1000, 3),
    processUs,
    processIntoUs,
    sink: sink & 1, // keeps the results observable so the loops are not optimised away
  };
}

const pairs: [PcmRate, PcmRate][] = [
  [8000, 16000], [8000, 24000], [8000, 48000],
  [16000, 8000], [24000, 8000], [48000, 8000],
];
const conversions: Record<string, ReturnType<typeof bench>> = {};
for (const [from, to] of pairs) conversions[`${from / 1000}k->${to / 1000}k`] = bench(from, to);

const result = { bench: 'resample', node: process.version, quick, frames: FRAMES, frameMs: 20, conversions };
process.stdout.write(JSON.stringify(result, null, 2) + '\n');
