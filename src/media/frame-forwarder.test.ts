import { describe, it, expect } from 'vitest';
import { FrameForwarder, type FrameForwarderOptions } from './frame-forwarder.js';
import { prng } from '../testing/prng.js';

/** A payload that names its sequence number, so emissions can be told apart. */
const frame = (seq: number) => Uint8Array.of(seq & 0xff, (seq >> 8) & 0xff);
const seqOf = (p: Uint8Array) => p[0]! | (p[1]! << 8);

/** One emission: the frame's sequence number (or 'gap' when concealed) and its arrival time. */
type Out = [number | 'gap', number | null];

function make(now = 0, opts?: FrameForwarderOptions): { ff: FrameForwarder; out: Out[] } {
  const out: Out[] = [];
  const ff = new FrameForwarder(now, (payload, at) => out.push([payload ? seqOf(payload) : 'gap', at]), opts);
  return { ff, out };
}


describe('FrameForwarder', () => {
  it('hands on in-order frames at once with their arrival time, concealing nothing', () => {
    const { ff, out } = make(0);
    ff.push(100, frame(100), 3);
    expect(out).toEqual([[100, 3]]);
    ff.tick(10);
    ff.push(101, frame(101), 24);
    ff.tick(30);
    ff.push(102, frame(102), 41);
    ff.tick(50);
    expect(out).toEqual([[100, 3], [101, 24], [102, 41]]);
    expect(ff.stats).toEqual({ forwarded: 3, concealed: 0, reordered: 0, late: 0, resyncs: 0 });
  });

  it('emits silence once per 20 ms before the first packet', () => {
    const { ff, out } = make(1000);
    ff.tick(1000);
    ff.tick(1019);
    expect(out).toEqual([]);
    ff.tick(1020);
    expect(out).toEqual([['gap', null]]);
    ff.tick(1025);
    ff.tick(1039);
    expect(out).toHaveLength(1);
    ff.tick(1040);
    ff.tick(1060);
    expect(out).toEqual([['gap', null], ['gap', null], ['gap', null]]);
    // Ticking every 5 ms for 200 ms more: exactly 10 more slots.
    for (let t = 1065; t <= 1260; t += 5) ff.tick(t);
    expect(out).toHaveLength(13);
    expect(ff.stats.concealed).toBe(13);
    // The first packet then plays at once, whatever its sequence number.
    ff.push(7, frame(7), 1262);
    expect(out.at(-1)).toEqual([7, 1262]);
    expect(ff.stats.resyncs).toBe(0);
  });

  it('conceals a lost packet exactly once, frameMs + holdMs after the previous arrival', () => {
    const { ff, out } = make(0);
    ff.push(100, frame(100), 0);
    ff.push(101, frame(101), 20);
    // 102 is lost; 103 arrives early and waits for the gap.
    ff.push(103, frame(103), 61);
    expect(out).toEqual([[100, 0], [101, 20]]);
    ff.tick(79); // 101 arrived at 20: slot 102 is due 20 + 20 + 40 = 80
    expect(out).toHaveLength(2);
    ff.tick(80);
    expect(out).toEqual([[100, 0], [101, 20], ['gap', null], [103, 61]]);
    ff.push(104, frame(104), 82);
    for (let t = 85; t <= 140; t += 5) ff.tick(t);
    expect(out).toEqual([[100, 0], [101, 20], ['gap', null], [103, 61], [104, 82]]);
    expect(ff.stats).toMatchObject({ forwarded: 4, concealed: 1, reordered: 1, late: 0 });
  });

  it('honours custom frameMs and holdMs in the deadline', () => {
    const { ff, out } = make(0, { frameMs: 30, holdMs: 10 });
    ff.push(5, frame(5), 0);
    ff.tick(39);
    expect(out).toHaveLength(1);
    ff.tick(40);
    expect(out).toEqual([[5, 0], ['gap', null]]);
    ff.tick(69);
    expect(out).toHaveLength(2);
    ff.tick(70);
    expect(out).toHaveLength(3);
  });

  it('holds a packet that comes before its predecessor and emits both in order when the gap fills', () => {
    const { ff, out } = make(0);
    ff.push(10, frame(10), 0);
    ff.push(12, frame(12), 40);
    expect(out).toEqual([[10, 0]]);
    ff.tick(45);
    ff.push(11, frame(11), 50);
    expect(out).toEqual([[10, 0], [11, 50], [12, 40]]);
    // The next slot is due 60 ms after 12 arrived (at 40), not after 11.
    for (let t = 55; t <= 95; t += 5) ff.tick(t);
    expect(out).toHaveLength(3);
    expect(ff.stats).toMatchObject({ forwarded: 3, concealed: 0, reordered: 1, late: 0 });
    ff.tick(100);
    expect(out.at(-1)).toEqual(['gap', null]);
  });

  it('counts a duplicated early packet once', () => {
    const { ff, out } = make(0);
    ff.push(10, frame(10), 0);
    ff.push(12, frame(12), 30);
    ff.push(12, frame(12), 31);
    ff.push(11, frame(11), 35);
    expect(out.map((o) => o[0])).toEqual([10, 11, 12]);
    expect(ff.stats.reordered).toBe(1);
  });

  it('after concealed slots, a frame newer than the last real one resumes the stream (DTX)', () => {
    const { ff, out } = make(0);
    ff.push(200, frame(200), 0);
    ff.push(201, frame(201), 20);
    // The caller goes quiet: slots are concealed one per 20 ms from 80 on.
    for (let t = 25; t <= 400; t += 5) ff.tick(t);
    const gaps = out.filter((o) => o[0] === 'gap').length;
    expect(gaps).toBe(17); // 80, 100, …, 400
    // The stream resumes with the next sequence number, whose slot was concealed long ago.
    ff.push(202, frame(202), 405);
    expect(out.at(-1)).toEqual([202, 405]);
    ff.push(203, frame(203), 425);
    ff.push(204, frame(204), 445);
    for (let t = 410; t <= 460; t += 5) ff.tick(t);
    expect(out.slice(-3)).toEqual([[202, 405], [203, 425], [204, 445]]);
    expect(out.filter((o) => o[0] === 'gap')).toHaveLength(17);
    expect(ff.stats).toMatchObject({ forwarded: 5, concealed: 17, resyncs: 0 });
  });

  it('drops a lone packet whose slot was concealed (each slot once), and restarts after three late in a row', () => {
    const { ff, out } = make(0);
    ff.push(1, frame(1), 0);
    ff.tick(60); // slot 2 concealed
    ff.push(2, frame(2), 65); // late, alone: dropped
    expect(out).toEqual([[1, 0], ['gap', null]]);
    ff.push(3, frame(3), 66); // slot 3 still open: handed on
    expect(out.at(-1)).toEqual([3, 66]);
    // The delay rises for good: 4, 5, 6 each arrive after their slot was concealed.
    ff.tick(126); // slot 4 concealed
    ff.push(4, frame(4), 130);
    ff.tick(146); // slot 5 concealed
    ff.push(5, frame(5), 150);
    ff.tick(166); // slot 6 concealed
    ff.push(6, frame(6), 170);
    expect(out.slice(-2)).toEqual([['gap', null], [6, 170]]);
    expect(ff.stats.late).toBe(4);
    // The sequence restarted from 6: the next deadline follows its arrival (170 + 60).
    ff.tick(229);
    expect(out.at(-1)).toEqual([6, 170]);
    ff.push(7, frame(7), 190);
    expect(out.at(-1)).toEqual([7, 190]);
  });

  it('drops duplicates and packets older than the last real frame', () => {
    const { ff, out } = make(0);
    ff.push(50, frame(50), 0);
    ff.push(51, frame(51), 20);
    ff.push(51, frame(51), 21);
    ff.push(50, frame(50), 22);
    ff.push(49, frame(49), 23);
    ff.push(52, frame(52), 40);
    expect(out).toEqual([[50, 0], [51, 20], [52, 40]]);
    expect(ff.stats).toMatchObject({ forwarded: 3, late: 3, resyncs: 0 });
  });

  it('drops a frame whose slot was concealed after a newer real frame was forwarded', () => {
    const { ff, out } = make(0);
    ff.push(1, frame(1), 0);
    ff.push(3, frame(3), 45);
    ff.tick(60); // slot 2 concealed, then 3 drained
    expect(out).toEqual([[1, 0], ['gap', null], [3, 45]]);
    ff.push(2, frame(2), 70);
    expect(out).toHaveLength(3);
    expect(ff.stats.late).toBe(1);
  });

  it('follows the sequence number across 65535 → 0', () => {
    const { ff, out } = make(0);
    ff.push(65534, frame(65534), 0);
    ff.push(65535, frame(65535), 20);
    ff.push(1, frame(1), 40); // before 0
    ff.push(0, frame(0), 45);
    ff.push(2, frame(2), 60);
    expect(out.map((o) => o[0])).toEqual([65534, 65535, 0, 1, 2]);
    expect(ff.stats).toMatchObject({ forwarded: 5, reordered: 1, late: 0, resyncs: 0 });
    ff.push(65535, frame(65535), 61); // old, across the wrap
    expect(out).toHaveLength(5);
    expect(ff.stats.late).toBe(1);
  });

  it('restarts the sequence on a jump beyond resyncFrames, forward or back', () => {
    const { ff, out } = make(0);
    ff.push(100, frame(100), 0);
    ff.push(101, frame(101), 20);
    ff.push(5000, frame(5000), 40);
    ff.push(5001, frame(5001), 60);
    expect(out.map((o) => o[0])).toEqual([100, 101, 5000, 5001]);
    expect(ff.stats.resyncs).toBe(1);
    ff.push(30, frame(30), 80); // far behind: a new source
    ff.push(31, frame(31), 100);
    expect(out.map((o) => o[0])).toEqual([100, 101, 5000, 5001, 30, 31]);
    expect(ff.stats).toMatchObject({ resyncs: 2, late: 0 });
  });

  it('discards early frames on a resync (they belong to the old sequence)', () => {
    const { ff, out } = make(0);
    ff.push(100, frame(100), 0);
    ff.push(102, frame(102), 10); // early, from the old source
    ff.push(65530, frame(65530), 20); // 107 behind: resync; 102 is ahead of the new sequence
    let t = 40;
    for (let s = 65531; s !== 103; s = (s + 1) & 0xffff, t += 20) ff.push(s, frame(s), t);
    const at102 = out.filter((o) => o[0] === 102);
    expect(at102).toHaveLength(1);
    expect(at102[0]![1]).not.toBe(10); // the new source's 102, not the stale early one
    expect(ff.stats.resyncs).toBe(1);
  });

  it('keeps a jump of exactly resyncFrames as an early frame, and resyncs beyond it', () => {
    const { ff, out } = make(0);
    ff.push(100, frame(100), 0);
    ff.push(151, frame(151), 20); // 50 ahead of the expected 101
    expect(ff.stats).toMatchObject({ resyncs: 0, reordered: 1 });
    expect(out).toHaveLength(1);
    ff.push(152, frame(152), 21); // 51 ahead
    expect(ff.stats.resyncs).toBe(1);
    expect(out).toEqual([[100, 0], [152, 21]]);
  });

  it('conceals at most 10 slots in one tick when the clock jumps far, then resumes the 20 ms pace', () => {
    const { ff, out } = make(0);
    ff.push(1, frame(1), 0);
    ff.tick(5000);
    expect(out).toHaveLength(11);
    expect(out.slice(1).every((o) => o[0] === 'gap' && o[1] === null)).toBe(true);
    ff.tick(5019);
    expect(out).toHaveLength(11);
    ff.tick(5020);
    expect(out).toHaveLength(12);
    ff.tick(5040);
    expect(out).toHaveLength(13);
    expect(ff.stats.concealed).toBe(12);
  });

  it('emits one frame per 20 ms without gaps over a long jittery, lossy run', () => {
    for (const seed of [1, 2, 3, 0xbeef, 0x5eed]) {
      const rand = prng(seed);
      const start = 10_000;
      const { ff, out } = make(start);
      // Packets sent every 20 ms from seq 60000 (wrapping), delayed by 5–40 ms (jitter within
      // holdMs), 2% lost.
      const n = 15_000; // 5 minutes
      const arrivals: { at: number; seq: number }[] = [];
      let lost = 0;
      for (let i = 0; i < n; i++) {
        if (rand() < 0.02) {
          lost++;
          continue;
        }
        arrivals.push({ at: start + 20 * i + 5 + rand() * 35, seq: (60000 + i) & 0xffff });
      }
      arrivals.sort((a, b) => a.at - b.at);
      // The gateway's clock ticks every 5 ms; packets are handled between ticks.
      let k = 0;
      const end = start + 20 * n;
      for (let t = start; t <= end; t += 5) {
        while (k < arrivals.length && arrivals[k]!.at <= t) {
          const a = arrivals[k++]!;
          ff.push(a.seq, frame(a.seq), a.at);
        }
        ff.tick(t);
      }
      const slots = (end - start) / 20;
      expect(lost).toBeGreaterThan(200);
      expect(Math.abs(out.length - slots), `seed ${seed}: ${out.length} frames for ${slots} slots`).toBeLessThanOrEqual(3);
      // Every real frame that arrived was emitted once, in sequence order.
      const real = out.filter((o) => o[0] !== 'gap').map((o) => o[0] as number);
      expect(real).toHaveLength(k);
      for (let i = 1; i < real.length; i++) expect(((real[i]! - real[i - 1]!) & 0xffff) > 0).toBe(true);
      expect(ff.stats.resyncs).toBe(0);
    }
  });
});
