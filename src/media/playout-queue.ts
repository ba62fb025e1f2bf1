/**
 * Agent → caller playout queue: the agent's audio (already 8 kHz G.711, one byte per sample)
 * in whatever chunk sizes and at whatever pace it was sent, taken out one 20 ms frame per tick
 * of the gateway's clock. Marks sit at byte positions and are released, in order, when the
 * audio queued before them has been played. `clear` flushes everything and releases the
 * pending marks as cleared. The queue is capped; overflow drops the oldest audio.
 *
 * A partial frame at the end of the queue is held back while more may follow (the agent is
 * mid-stream) and played, padded with silence, once `partialWaitMs` passed without more audio.
 */

export interface PlayoutQueueOptions {
  /** Bytes per frame: 160 for 20 ms of G.711. */
  frameBytes: number;
  /** Most bytes held; pushing more drops the oldest. */
  maxBytes: number;
  /** The codec's silence byte, used to pad a final partial frame. */
  silence: number;
  /** Default 40 ms. */
  partialWaitMs?: number;
}

export type MarkStatus = 'played' | 'cleared';

export interface ReleasedMark {
  readonly name: string;
  readonly status: MarkStatus;
}

export interface ClearResult {
  /** Agent audio played to the caller since the previous clear (or the start), in bytes. */
  readonly playedBytes: number;
  /** Agent audio flushed by this clear, in bytes. */
  readonly discardedBytes: number;
  readonly marks: readonly ReleasedMark[];
}

export class PlayoutQueue {
  private readonly chunks: Uint8Array[] = [];
  /** Read offset into chunks[0]. */
  private offset = 0;
  private queued = 0;
  /** Absolute byte positions: everything ever pushed / taken (played or dropped). */
  private pushed = 0;
  private taken = 0;
  private playedSinceClear = 0;
  private lastPushAt = -Infinity;
  private readonly marks: { name: string; at: number }[] = [];
  private readonly partialWaitMs: number;

  constructor(private readonly opts: PlayoutQueueOptions) {
    this.partialWaitMs = opts.partialWaitMs ?? 40;
  }

  /** Bytes waiting to be played. */
  get length(): number {
    return this.queued;
  }

  get pendingMarks(): number {
    return this.marks.length;
  }

  /**
   * Queues audio (the queue keeps `bytes`: do not reuse it). Returns how many of the oldest
   * bytes were dropped to stay under the cap, and the marks released as cleared with them.
   */
  push(bytes: Uint8Array, now: number): { droppedBytes: number; marks: ReleasedMark[] } {
    this.lastPushAt = now;
    if (bytes.length === 0) return { droppedBytes: 0, marks: [] };
    this.chunks.push(bytes);
    this.queued += bytes.length;
    this.pushed += bytes.length;
    const over = this.queued - this.opts.maxBytes;
    if (over <= 0) return { droppedBytes: 0, marks: [] };
    this.skip(over);
    return { droppedBytes: over, marks: this.releaseUpTo(this.taken, 'cleared') };
  }

  /** Adds a mark after the audio queued so far; returned at once (played) when nothing is queued. */
  mark(name: string): ReleasedMark | null {
    if (this.queued === 0 && this.marks.length === 0) return { name, status: 'played' };
    this.marks.push({ name, at: this.pushed });
    return null;
  }

  /**
   * Fills `out` (frameBytes long) with the next frame. Returns false (out untouched) when there
   * is nothing to play now; `released` receives marks whose audio has now been played.
   */
  pop(out: Uint8Array, now: number, released: ReleasedMark[]): boolean {
    const frame = this.opts.frameBytes;
    if (this.queued === 0) {
      // Marks after audio that overflow dropped, or at the very end: release them now.
      if (this.marks.length) released.push(...this.releaseUpTo(this.taken, 'played'));
      return false;
    }
    if (this.queued < frame && now - this.lastPushAt < this.partialWaitMs) return false;
    const n = Math.min(frame, this.queued);
    let w = 0;
    while (w < n) {
      const c = this.chunks[0]!;
      const take = Math.min(n - w, c.length - this.offset);
      out.set(c.subarray(this.offset, this.offset + take), w);
      w += take;
      this.advance(take);
    }
    if (n < frame) out.fill(this.opts.silence, n, frame);
    this.playedSinceClear += n;
    if (this.marks.length) released.push(...this.releaseUpTo(this.taken, 'played'));
    return true;
  }

  /** Flushes all queued audio; pending marks are released as cleared. */
  clear(): ClearResult {
    const discardedBytes = this.queued;
    this.chunks.length = 0;
    this.offset = 0;
    this.taken += this.queued;
    this.queued = 0;
    const marks = this.marks.splice(0).map((m) => ({ name: m.name, status: 'cleared' as const }));
    const playedBytes = this.playedSinceClear;
    this.playedSinceClear = 0;
    return { playedBytes, discardedBytes, marks };
  }

  private skip(n: number): void {
    let left = n;
    while (left > 0) {
      const c = this.chunks[0]!;
      const take = Math.min(left, c.length - this.offset);
      left -= take;
      this.advance(take);
    }
  }

  private advance(n: number): void {
    this.offset += n;
    this.queued -= n;
    this.taken += n;
    if (this.offset >= this.chunks[0]!.length) {
      this.chunks.shift();
      this.offset = 0;
    }
  }

  private releaseUpTo(pos: number, status: MarkStatus): ReleasedMark[] {
    const out: ReleasedMark[] = [];
    while (this.marks.length && this.marks[0]!.at <= pos) out.push({ name: this.marks.shift()!.name, status });
    return out;
  }
}
