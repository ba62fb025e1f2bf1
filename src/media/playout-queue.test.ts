import { describe, it, expect } from 'vitest';
import { PlayoutQueue, type PlayoutQueueOptions, type ReleasedMark } from './playout-queue.js';
import { prng } from '../testing/prng.js';

const FRAME = 160;
const SILENCE = 0xff;

function make(opts: Partial<PlayoutQueueOptions> = {}): PlayoutQueue {
  return new PlayoutQueue({ frameBytes: FRAME, maxBytes: 8000, silence: SILENCE, ...opts });
}

/** `n` bytes counting on from `from` (mod 251, so frames do not repeat on byte boundaries). */
function ramp(from: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (from + i) % 251;
  return b;
}

/** Pops one frame; returns its bytes (or null when there was nothing to play) and the marks released. */
function pop(q: PlayoutQueue, now: number): { frame: number[] | null; marks: ReleasedMark[] } {
  const out = new Uint8Array(FRAME).fill(0x11);
  const marks: ReleasedMark[] = [];
  const ok = q.pop(out, now, marks);
  if (!ok) expect([...out].every((b) => b === 0x11)).toBe(true); // untouched
  return { frame: ok ? [...out] : null, marks };
}


describe('PlayoutQueue', () => {
  it('returns false with nothing queued', () => {
    const q = make();
    expect(pop(q, 0).frame).toBeNull();
    expect(q.length).toBe(0);
  });

  it('pops whole frames in order across chunk boundaries of odd sizes', () => {
    const q = make();
    const sizes = [7, 151, 33, 1, 250, 198]; // 640 bytes: 4 frames
    let at = 0;
    for (const n of sizes) {
      q.push(ramp(at, n), 0);
      at += n;
    }
    expect(q.length).toBe(640);
    for (let f = 0; f < 4; f++) {
      expect(pop(q, 0).frame).toEqual([...ramp(f * FRAME, FRAME)]);
      expect(q.length).toBe(640 - (f + 1) * FRAME);
    }
    expect(pop(q, 1000).frame).toBeNull();
  });

  it('plays a chunk larger than several frames frame by frame', () => {
    const q = make();
    q.push(ramp(0, 3 * FRAME + 17), 0);
    expect(pop(q, 0).frame).toEqual([...ramp(0, FRAME)]);
    expect(pop(q, 0).frame).toEqual([...ramp(FRAME, FRAME)]);
    expect(pop(q, 0).frame).toEqual([...ramp(2 * FRAME, FRAME)]);
    expect(q.length).toBe(17);
  });

  it('holds a partial frame while less than partialWaitMs has passed since the last push, then pads it with silence', () => {
    const q = make();
    q.push(ramp(0, 100), 1000);
    expect(pop(q, 1000).frame).toBeNull();
    expect(pop(q, 1039).frame).toBeNull();
    const f = pop(q, 1040).frame!;
    expect(f.slice(0, 100)).toEqual([...ramp(0, 100)]);
    expect(f.slice(100)).toEqual(new Array(60).fill(SILENCE));
    expect(q.length).toBe(0);
    expect(pop(q, 2000).frame).toBeNull();
  });

  it('restarts the partial wait on each push, and completes the frame when more audio comes', () => {
    const q = make();
    q.push(ramp(0, 100), 0);
    q.push(ramp(100, 30), 30);
    expect(pop(q, 50).frame).toBeNull(); // 20 ms since the last push
    q.push(ramp(130, 40), 60); // now a whole frame and 10 bytes
    expect(pop(q, 60).frame).toEqual([...ramp(0, FRAME)]);
    expect(pop(q, 60).frame).toBeNull();
    expect(pop(q, 99).frame).toBeNull();
    const f = pop(q, 100).frame!;
    expect(f.slice(0, 10)).toEqual([...ramp(160, 10)]);
    expect(f.slice(10).every((b) => b === SILENCE)).toBe(true);
  });

  it('honours a custom partialWaitMs', () => {
    const q = make({ partialWaitMs: 100 });
    q.push(ramp(0, 10), 0);
    expect(pop(q, 99).frame).toBeNull();
    expect(pop(q, 100).frame).not.toBeNull();
  });

  it('ignores an empty push (but it still counts as activity for the partial wait)', () => {
    const q = make();
    expect(q.push(new Uint8Array(0), 0)).toEqual({ droppedBytes: 0, marks: [] });
    expect(q.length).toBe(0);
    q.push(ramp(0, 10), 0);
    q.push(new Uint8Array(0), 30);
    expect(pop(q, 50).frame).toBeNull();
    expect(pop(q, 70).frame).not.toBeNull();
  });

  it('returns a mark at once, as played, when nothing is queued', () => {
    const q = make();
    expect(q.mark('greeting')).toEqual({ name: 'greeting', status: 'played' });
    expect(q.pendingMarks).toBe(0);
  });

  it('releases marks in order exactly when the audio queued before them has been popped', () => {
    const q = make();
    q.push(ramp(0, 200), 0);
    expect(q.mark('m1')).toBeNull();
    q.push(ramp(200, 160), 0);
    expect(q.mark('m2')).toBeNull();
    expect(q.mark('m3')).toBeNull(); // same position as m2
    expect(q.pendingMarks).toBe(3);

    expect(pop(q, 0).marks).toEqual([]); // bytes 0–159: m1 (at 200) still ahead
    expect(pop(q, 0).marks).toEqual([{ name: 'm1', status: 'played' }]); // bytes 160–319
    expect(pop(q, 0)).toEqual({ frame: null, marks: [] }); // 40 bytes held back
    const last = pop(q, 40);
    expect(last.frame).not.toBeNull();
    expect(last.marks).toEqual([
      { name: 'm2', status: 'played' },
      { name: 'm3', status: 'played' },
    ]);
    expect(q.pendingMarks).toBe(0);
  });

  it('releases a mark placed exactly on a frame boundary with that frame', () => {
    const q = make();
    q.push(ramp(0, 2 * FRAME), 0);
    q.mark('one-frame-in'); // placed after both frames: at 320
    q.push(ramp(320, FRAME), 0);
    expect(pop(q, 0).marks).toEqual([]);
    expect(pop(q, 0).marks).toEqual([{ name: 'one-frame-in', status: 'played' }]);
    expect(pop(q, 0).marks).toEqual([]);
  });

  it('queues a mark behind pending marks so the order is kept', () => {
    const q = make();
    q.push(ramp(0, FRAME), 0);
    q.mark('a');
    expect(pop(q, 0).marks).toEqual([{ name: 'a', status: 'played' }]);
    // Nothing queued and no marks pending: immediate again.
    expect(q.mark('b')).toEqual({ name: 'b', status: 'played' });
  });

  it('clear returns the bytes played since the previous clear, the bytes discarded and the pending marks as cleared', () => {
    const q = make();
    q.push(ramp(0, 400), 0);
    q.mark('x');
    q.push(ramp(400, 50), 0);
    q.mark('y');
    pop(q, 0);
    pop(q, 0);
    expect(q.clear()).toEqual({
      playedBytes: 320,
      discardedBytes: 130,
      marks: [
        { name: 'x', status: 'cleared' },
        { name: 'y', status: 'cleared' },
      ],
    });
    expect(q.length).toBe(0);
    expect(q.pendingMarks).toBe(0);
    expect(pop(q, 1000)).toEqual({ frame: null, marks: [] });

    // The counter restarts at the clear, partial frames count by their real bytes.
    q.push(ramp(0, FRAME + 20), 2000);
    pop(q, 2000);
    pop(q, 2040);
    expect(q.clear()).toEqual({ playedBytes: FRAME + 20, discardedBytes: 0, marks: [] });
    expect(q.clear()).toEqual({ playedBytes: 0, discardedBytes: 0, marks: [] });
  });

  it('places marks correctly after a clear', () => {
    const q = make();
    q.push(ramp(0, 500), 0);
    pop(q, 0);
    q.clear();
    expect(q.mark('immediate')).toEqual({ name: 'immediate', status: 'played' });
    q.push(ramp(0, 2 * FRAME), 100);
    q.mark('after-two');
    expect(pop(q, 100)).toEqual({ frame: [...ramp(0, FRAME)], marks: [] });
    expect(pop(q, 100)).toEqual({ frame: [...ramp(FRAME, FRAME)], marks: [{ name: 'after-two', status: 'played' }] });
  });

  it('drops the oldest bytes on overflow and releases the marks inside the dropped audio as cleared', () => {
    const q = make({ maxBytes: 480 });
    expect(q.push(ramp(0, 300), 0)).toEqual({ droppedBytes: 0, marks: [] });
    q.mark('a'); // at 300
    expect(q.push(ramp(300, 180), 0)).toEqual({ droppedBytes: 0, marks: [] }); // exactly full
    expect(q.length).toBe(480);
    expect(q.push(ramp(480, 120), 0)).toEqual({ droppedBytes: 120, marks: [] }); // drops 0–119
    q.mark('b'); // at 600
    expect(q.push(ramp(600, 200), 0)).toEqual({ droppedBytes: 200, marks: [{ name: 'a', status: 'cleared' }] }); // drops 120–319
    expect(q.length).toBe(480);
    expect(q.pendingMarks).toBe(1);
    // Playout resumes at the oldest byte kept.
    expect(pop(q, 0).frame).toEqual([...ramp(320, FRAME)]);
    expect(pop(q, 0)).toEqual({ frame: [...ramp(480, FRAME)], marks: [{ name: 'b', status: 'played' }] });
    expect(pop(q, 0).frame).toEqual([...ramp(640, FRAME)]);
    expect(q.length).toBe(0);
  });

  it('drops across several chunks in one overflow', () => {
    const q = make({ maxBytes: 320 });
    q.push(ramp(0, 50), 0);
    q.push(ramp(50, 70), 0);
    q.push(ramp(120, 90), 0);
    expect(q.push(ramp(210, 300), 0).droppedBytes).toBe(190);
    expect(pop(q, 0).frame).toEqual([...ramp(190, FRAME)]);
    expect(pop(q, 0).frame).toEqual([...ramp(350, FRAME)]);
  });

  it('counts dropped audio neither as played nor as discarded', () => {
    const q = make({ maxBytes: 320 });
    q.push(ramp(0, 400), 0); // 80 dropped
    pop(q, 0);
    expect(q.clear()).toEqual({ playedBytes: 160, discardedBytes: 160, marks: [] });
  });

  it('never holds more than a 30 s cap under bursty pushes, and accounts for every byte', () => {
    const rand = prng(0x30c);
    const maxBytes = 30 * 8000;
    const q = make({ maxBytes });
    let pushed = 0;
    let played = 0;
    let dropped = 0;
    let discarded = 0;
    let nextByte = 0;
    let expectedNext = 0; // the byte value the next played byte must have, given the drops
    const released: string[] = [];
    let markNo = 0;
    for (let t = 0; t < 600_000; t += 20) {
      // Bursts: now and then an agent sends seconds of TTS at once, in odd chunk sizes.
      if (rand() < 0.05) {
        let burst = Math.floor(rand() * 20 * 8000);
        while (burst > 0) {
          const n = Math.min(burst, 1 + Math.floor(rand() * 4000));
          const r = q.push(ramp(nextByte, n), t);
          nextByte += n;
          pushed += n;
          dropped += r.droppedBytes;
          expectedNext += r.droppedBytes;
          released.push(...r.marks.map((m) => m.name));
          expect(q.length).toBeLessThanOrEqual(maxBytes);
          burst -= n;
        }
        const m = q.mark(`m${markNo++}`);
        if (m) released.push(m.name);
      }
      if (rand() < 0.002) {
        const c = q.clear();
        discarded += c.discardedBytes;
        expectedNext += c.discardedBytes;
        released.push(...c.marks.map((m) => m.name));
      }
      const out = new Uint8Array(FRAME);
      const marks: ReleasedMark[] = [];
      const before = q.length;
      if (q.pop(out, t, marks)) {
        const n = before - q.length;
        for (let i = 0; i < n; i++) if (out[i] !== (expectedNext + i) % 251) throw new Error(`t=${t}: byte ${i} out of order`);
        expectedNext += n;
        played += n;
      }
      released.push(...marks.map((m) => m.name));
      expect(q.length).toBeLessThanOrEqual(maxBytes);
    }
    expect(dropped).toBeGreaterThan(0);
    expect(pushed).toBe(played + dropped + discarded + q.length);
    // Every mark is released exactly once, in the order it was placed, unless still pending.
    expect(released).toEqual(Array.from({ length: markNo - q.pendingMarks }, (_, i) => `m${i}`));
  });
});
