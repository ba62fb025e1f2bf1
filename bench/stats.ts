/** Latency summary in microseconds from a list of nanosecond samples. */
export function summarise(samplesNs: number[]): { n: number; p50Us: number; p99Us: number; maxUs: number; meanUs: number } {
  const s = [...samplesNs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]! / 1000;
  const round = (v: number) => Math.round(v * 100) / 100;
  return {
    n: s.length,
    p50Us: round(at(0.5)),
    p99Us: round(at(0.99)),
    maxUs: round(s[s.length - 1]! / 1000),
    meanUs: round(s.reduce((a, b) => a + b, 0) / s.length / 1000),
  };
}

/** Times `n` sequential runs of an async operation; returns ops/s and latency. */
export async function timeOps(n: number, op: (i: number) => Promise<unknown>): Promise<{ opsPerSec: number; latency: ReturnType<typeof summarise> }> {
  const samples = new Array<number>(n);
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await op(i);
    samples[i] = Number(process.hrtime.bigint() - t0);
  }
  const totalNs = Number(process.hrtime.bigint() - start);
  return { opsPerSec: Math.round(n / (totalNs / 1e9)), latency: summarise(samples) };
}
