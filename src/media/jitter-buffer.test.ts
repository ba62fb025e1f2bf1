import { describe, it, expect } from 'vitest';
import { JitterBuffer, type JitterBufferOptions } from './jitter-buffer.js';

const frame = (seq: number) => Uint8Array.of(seq & 0xff, (seq >> 8) & 0xff);

/** Pops `n` times and describes each result: a sequence number, 'miss' or 'buf'. */
function drain(jb: JitterBuffer, n: number): (number | 'miss' | 'buf')[] {
  const out: (number | 'miss' | 'buf')[] = [];
  for (let i = 0; i < n; i++) {
    const f = jb.pop();
    out.push(f.kind === 'frame' ? f.seq : f.kind === 'missing' ? 'miss' : 'buf');
  }
  return out;
}

/** A paced stream: one push and one pop per 20 ms tick, pushes `lead` frames ahead first. */
function steady(jb: JitterBuffer, from: number, ticks: number): (number | 'miss' | 'buf')[] {
  const out: (number | 'miss' | 'buf')[] = [];
  for (let i = 0; i < ticks; i++) {
    const seq = (from + i) & 0xffff;
    jb.push(seq, seq * 160, frame(seq));
    out.push(...drain(jb, 1));
  }
  return out;
}

function make(opts?: JitterBufferOptions): JitterBuffer {
  return new JitterBuffer(opts);
}

describe('JitterBuffer', () => {
  it('buffers up to the 40 ms initial target, then plays in order with the payload and timestamp', () => {
    const jb = make();
    expect(jb.targetDelayMs).toBe(40);
    jb.push(100, 16000, frame(100));
    expect(jb.pop().kind).toBe('buffering');
    jb.push(101, 16160, frame(101));
    const f = jb.pop();
    expect([f.kind, f.seq, f.timestamp, [...f.payload!]]).toEqual(['frame', 100, 16000, [100, 0]]);
    expect(jb.isPlaying).toBe(true);
    expect(steady(jb, 102, 5)).toEqual([101, 102, 103, 104, 105]);
    expect(jb.stats).toMatchObject({ pushed: 7, played: 6, lost: 0, late: 0, reordered: 0 });
  });

  it('puts packets reordered within its depth back in sequence', () => {
    const jb = make();
    for (const s of [10, 12, 11, 14, 13]) expect(jb.push(s, s * 160, frame(s))).toBe('queued');
    expect(drain(jb, 5)).toEqual([10, 11, 12, 13, 14]);
    expect(jb.stats.reordered).toBe(2);
  });

  it('accepts a packet older than the first one while nothing has been played', () => {
    const jb = make();
    jb.push(11, 0, frame(11));
    jb.push(10, 0, frame(10));
    expect(drain(jb, 2)).toEqual([10, 11]);
  });

  it('drops duplicates', () => {
    const jb = make();
    jb.push(1, 0, frame(1));
    expect(jb.push(1, 0, frame(1))).toBe('duplicate');
    jb.push(2, 0, frame(2));
    expect(jb.depth).toBe(2);
    expect(drain(jb, 2)).toEqual([1, 2]);
    expect(jb.stats.duplicates).toBe(1);
  });

  it('drops a packet that arrives after its slot and raises the target delay by one frame', () => {
    const jb = make();
    for (const s of [1, 2, 4]) jb.push(s, 0, frame(s));
    expect(drain(jb, 3)).toEqual([1, 2, 'miss']);
    expect(jb.push(3, 0, frame(3))).toBe('late');
    expect(jb.stats).toMatchObject({ late: 1, lost: 1 });
    expect(jb.targetDelayMs).toBe(60);
    // The extra frame of delay is played out as one inserted 'missing' before 4.
    jb.push(5, 0, frame(5));
    expect(drain(jb, 3)).toEqual(['miss', 4, 5]);
    expect(jb.stats.inserted).toBe(1);
  });

  it('never raises the target above 60 ms', () => {
    const jb = make();
    jb.push(1, 0, frame(1));
    jb.push(2, 0, frame(2));
    drain(jb, 2);
    for (let i = 0; i < 5; i++) jb.push(0, 0, frame(0));
    expect(jb.targetDelayMs).toBe(60);
    expect(jb.stats.late).toBe(5);
  });

  it('reports each frame of a burst loss as missing, then resumes', () => {
    const jb = make();
    const out = [...steady(jb, 1, 4)];
    for (let s = 10; s < 14; s++) jb.push(s, 0, frame(s)); // 5..9 never arrive
    out.push(...drain(jb, 9));
    expect(out).toEqual(['buf', 1, 2, 3, 4, 'miss', 'miss', 'miss', 'miss', 'miss', 10, 11, 12]);
    expect(jb.stats.lost).toBe(5);
  });

  it('plays across the sequence number wrap 65535 → 0', () => {
    const jb = make();
    expect(steady(jb, 65533, 6)).toEqual(['buf', 65533, 65534, 65535, 0, 1]);
    jb.push(4, 0, frame(4));
    jb.push(3, 0, frame(3));
    expect(drain(jb, 3)).toEqual([2, 3, 4]);
    expect(jb.stats.lost).toBe(0);
  });

  it('holds its position on underrun and rebuffers when the stream pauses', () => {
    const jb = make();
    steady(jb, 1, 5);
    expect(drain(jb, 2)).toEqual([5, 'miss']);
    expect(jb.stats.underruns).toBe(1);
    // The next packet was only late on the wire: it plays, nothing counted lost.
    jb.push(6, 0, frame(6));
    expect(drain(jb, 1)).toEqual([6]);
    expect(drain(jb, 4)).toEqual(['miss', 'miss', 'miss', 'buf']);
    expect(jb.isPlaying).toBe(false);
    jb.push(7, 0, frame(7));
    jb.push(8, 0, frame(8));
    expect(drain(jb, 2)).toEqual([7, 8]);
    expect(jb.stats.lost).toBe(0);
  });

  it('lowers the target to 20 ms after a quiet spell and sheds the extra frame', () => {
    const jb = make({ decreaseAfterPops: 100, windowPops: 20 });
    jb.push(0, 0, frame(0));
    const out = steady(jb, 1, 200);
    expect(jb.targetDelayMs).toBe(20);
    expect(jb.stats.dropped).toBe(1);
    // One frame skipped, none missing: 201 frames in, 200 played, nothing left over.
    expect(out.every((x) => typeof x === 'number')).toBe(true);
    expect(jb.stats.played).toBe(200);
    expect(jb.depth).toBe(0);
  });

  it('sheds delay that builds up after a burst arrival', () => {
    const jb = make({ windowPops: 10 });
    jb.push(0, 0, frame(0));
    steady(jb, 1, 5);
    for (let s = 6; s < 10; s++) jb.push(s, 0, frame(s)); // four frames at once
    expect(jb.depth).toBe(5);
    const out = steady(jb, 10, 30);
    expect(out.every((x) => typeof x === 'number')).toBe(true);
    // Back to the 40 ms target: two frames at pop time, one left after it.
    expect(jb.depth).toBe(1);
    expect(jb.stats.dropped).toBe(4);
  });

  it('ignores one stray far-off packet but resynchronises on two in a row', () => {
    const jb = make();
    steady(jb, 1, 4);
    expect(jb.push(30000, 0, frame(30000))).toBe('ignored');
    expect(steady(jb, 5, 2)).toEqual([4, 5]);
    expect(jb.push(40000, 0, frame(40000))).toBe('ignored');
    expect(jb.push(40001, 0, frame(40001))).toBe('resync');
    jb.push(40002, 0, frame(40002));
    expect(drain(jb, 2)).toEqual([40001, 40002]);
    expect(jb.stats.resyncs).toBe(1);
  });

  it('reuses one result object and allocates none per pop', () => {
    const jb = make();
    jb.push(1, 0, frame(1));
    jb.push(2, 0, frame(2));
    expect(jb.pop()).toBe(jb.pop());
  });

  it('rejects a capacity that is not a power of two or too small for the delay', () => {
    expect(() => new JitterBuffer({ capacity: 48 })).toThrow(RangeError);
    expect(() => new JitterBuffer({ capacity: 4 })).toThrow(RangeError);
  });
});
