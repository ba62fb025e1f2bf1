/**
 * Caller → agent framing: every RTP frame that arrives in order is handed on at once (no
 * playout delay), frames that arrive early wait for the gap before them, and a slot whose frame
 * has not come `holdMs` after it was due is concealed, so the agent receives one frame per
 * 20 ms without gaps whatever the network does, including silence while the caller sends
 * nothing (hold, DTX) and before the first packet.
 *
 * Deadlines follow arrivals: the slot after a real frame is due `frameMs + holdMs` after that
 * frame arrived, and each concealed slot moves the deadline on by one frame. A frame whose slot
 * was already concealed is dropped (each slot is handed on once), unless the stream resumed
 * after a silence or three frames in a row came late (the delay rose for good): then it is
 * handed on at once and the sequence restarts from it.
 *
 * Emissions go through a callback with the payload (null for a concealed slot) and the
 * frame's arrival time (null when concealed). Nothing is allocated per frame except the
 * entries of early frames.
 */

export type EmitFrame = (payload: Uint8Array | null, arrivedAt: number | null) => void;

export interface FrameForwarderOptions {
  /** Default 20 ms. */
  frameMs?: number;
  /** How long a missing frame is waited for after it was due. Default 40 ms. */
  holdMs?: number;
  /** Frames further ahead (or behind) than this restart the sequence. Default 50. */
  resyncFrames?: number;
}

export interface FrameForwarderStats {
  forwarded: number;
  concealed: number;
  reordered: number;
  late: number;
  resyncs: number;
}

function seqDiff(a: number, b: number): number {
  return (((a - b) & 0xffff) << 16) >> 16;
}

/** Concealed slots emitted in one tick at most (a stalled thread does not burst seconds of silence). */
const MAX_CONCEAL_PER_TICK = 10;

export class FrameForwarder {
  readonly stats: FrameForwarderStats = { forwarded: 0, concealed: 0, reordered: 0, late: 0, resyncs: 0 };
  private readonly frameMs: number;
  private readonly holdMs: number;
  private readonly resync: number;
  private readonly early = new Map<number, { payload: Uint8Array; at: number }>();
  private haveSeq = false;
  private nextSeq = 0;
  private lastReal = 0;
  private lastRealAt = 0;
  /** Late packets in a row: a lasting rise in delay, after which the sequence restarts. */
  private lateRun = 0;
  private deadline: number;

  constructor(
    now: number,
    private readonly emit: EmitFrame,
    opts: FrameForwarderOptions = {},
  ) {
    this.frameMs = opts.frameMs ?? 20;
    this.holdMs = opts.holdMs ?? 40;
    this.resync = opts.resyncFrames ?? 50;
    this.deadline = now + this.frameMs;
  }

  /** An authentic RTP audio frame arrived (any order). */
  push(seq: number, payload: Uint8Array, now: number): void {
    if (!this.haveSeq) {
      this.haveSeq = true;
      this.nextSeq = seq;
      this.lastReal = (seq - 1) & 0xffff;
    }
    let d = seqDiff(seq, this.nextSeq);
    if (d > this.resync || d < -this.resync) {
      this.stats.resyncs++;
      this.early.clear();
      this.nextSeq = seq;
      this.lastReal = (seq - 1) & 0xffff;
      d = 0;
    }
    if (d < 0) {
      this.stats.late++;
      // Newer than anything real, yet its slot was concealed: either the stream resumed after
      // a silence (nothing arrived for a while) or the delay rose for good (several late in a
      // row). Then the sequence restarts from it; a lone late packet is dropped, so each slot
      // is handed on exactly once.
      const resumed = now - this.lastRealAt > 3 * this.frameMs + this.holdMs;
      if (seqDiff(seq, this.lastReal) <= 0 || (!resumed && ++this.lateRun < 3)) return;
      this.nextSeq = seq;
      d = 0;
    }
    if (d > 0) {
      if (!this.early.has(seq)) {
        this.stats.reordered++;
        this.early.set(seq, { payload, at: now });
      }
      return;
    }
    this.forward(payload, now);
    this.drainEarly();
  }

  /** Called by the clock every few ms: conceals slots whose deadline has passed. */
  tick(now: number): void {
    let n = 0;
    while (now >= this.deadline) {
      if (++n > MAX_CONCEAL_PER_TICK) {
        this.deadline = now + this.frameMs;
        break;
      }
      this.stats.concealed++;
      this.nextSeq = (this.nextSeq + 1) & 0xffff;
      this.deadline += this.frameMs;
      this.emit(null, null);
      this.drainEarly();
    }
  }

  private forward(payload: Uint8Array, at: number): void {
    this.stats.forwarded++;
    this.lastReal = this.nextSeq;
    this.lastRealAt = at;
    this.lateRun = 0;
    this.nextSeq = (this.nextSeq + 1) & 0xffff;
    this.deadline = at + this.frameMs + this.holdMs;
    this.emit(payload, at);
  }

  private drainEarly(): void {
    if (this.early.size === 0) return;
    for (let e = this.early.get(this.nextSeq); e; e = this.early.get(this.nextSeq)) {
      this.early.delete(this.nextSeq);
      this.forward(e.payload, e.at);
    }
    // Anything left behind the sequence can never be forwarded.
    for (const s of this.early.keys()) if (seqDiff(s, this.nextSeq) < 0) this.early.delete(s);
  }
}
