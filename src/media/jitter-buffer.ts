/**
 * Playout (jitter) buffer for fixed-duration frames, 20 ms by default (RFC 3551 §4.5 ptime for
 * G.711). Packets are pushed as they arrive, in any order; a clock calls `pop()` once per frame
 * and gets the next frame in sequence order, a "missing" marker for the caller to conceal
 * (repeat the last frame or play silence), or "buffering" while the buffer fills.
 *
 * ```
 *            push ≥ target frames             empty for `underrunPops` pops
 *  buffering ───────────────────────▶ playing ─────────────────────────────▶ buffering
 * ```
 *
 * The target delay adapts between `minDelayMs` and `maxDelayMs` (default 20–60 ms, starting at
 * 40): a packet that arrives after its playout slot raises it by one frame, played out as one
 * inserted "missing" frame; `decreaseAfterPops` pops without a late packet lower it by one
 * frame. Delay above target that persists for a whole second (the fewest frames buffered at
 * any pop in it stay over target) is shed by skipping frames, one per pop.
 *
 * Storage is a ring of `capacity` slots indexed by sequence number; nothing is allocated per
 * packet. The buffer keeps a reference to each pushed payload until it is popped: callers must
 * not reuse a payload buffer before then.
 */

export interface JitterBufferOptions {
  /** Frame duration. Default 20 ms. */
  frameMs?: number;
  /** Default 20 ms. */
  minDelayMs?: number;
  /** Default 60 ms. */
  maxDelayMs?: number;
  /** Default 40 ms. */
  initialDelayMs?: number;
  /** Slots (frames) held at most; a power of two. Default 64 (1.28 s of 20 ms frames). */
  capacity?: number;
  /** Pops without a late packet before the target is lowered by one frame. Default 250 (5 s). */
  decreaseAfterPops?: number;
  /** Pops in one low-water window for shedding excess delay. Default 50 (1 s). */
  windowPops?: number;
  /** Consecutive pops with nothing buffered before going back to buffering. Default 3. */
  underrunPops?: number;
}

/** What `pop()` returns; one object is reused, so read it before the next pop. */
export interface PlayoutFrame {
  kind: 'frame' | 'missing' | 'buffering';
  /** Sequence number of the frame (or of the one missing); -1 for an inserted frame or buffering. */
  seq: number;
  /** RTP timestamp of the frame; 0 unless kind is 'frame'. */
  timestamp: number;
  /** The pushed payload; null unless kind is 'frame'. */
  payload: Uint8Array | null;
}

export type PushResult = 'queued' | 'duplicate' | 'late' | 'ignored' | 'resync';

export interface JitterBufferStats {
  pushed: number;
  played: number;
  /** Arrived after their playout slot had passed. */
  late: number;
  duplicates: number;
  /** Arrived after a higher sequence number. */
  reordered: number;
  /** Playout slots passed with the frame absent (gaps in the sequence). */
  lost: number;
  /** Pops with nothing at all buffered while playing. */
  underruns: number;
  /** Frames skipped to shed excess delay. */
  dropped: number;
  /** Frames inserted to grow the delay. */
  inserted: number;
  /** Restarts after a sequence jump beyond the buffer (two in-order packets confirm it). */
  resyncs: number;
}

/** Signed distance a - b between 16-bit sequence numbers. */
function seqDiff(a: number, b: number): number {
  return (((a - b) & 0xffff) << 16) >> 16;
}

export class JitterBuffer {
  readonly stats: JitterBufferStats = { pushed: 0, played: 0, late: 0, duplicates: 0, reordered: 0, lost: 0, underruns: 0, dropped: 0, inserted: 0, resyncs: 0 };

  private readonly frameMs: number;
  private readonly minFrames: number;
  private readonly maxFrames: number;
  private readonly capacity: number;
  private readonly mask: number;
  private readonly decreaseAfterPops: number;
  private readonly windowPops: number;
  private readonly underrunPops: number;

  private readonly seqs: Int32Array;
  private readonly timestamps: Float64Array;
  private readonly payloads: (Uint8Array | null)[];
  private readonly out: PlayoutFrame = { kind: 'buffering', seq: -1, timestamp: 0, payload: null };

  private targetFrames: number;
  private started = false;
  private playing = false;
  /** Whether any slot has been played out since the (re)start: then earlier packets are late. */
  private advanced = false;
  /** Next sequence number to play. */
  private head = 0;
  /** Highest sequence number stored (valid while count > 0). */
  private highest = 0;
  private count = 0;
  private pendingInserts = 0;
  private pendingDrops = 0;
  private popsSinceLate = 0;
  private windowCount = 0;
  private lowWater = Infinity;
  private emptyPops = 0;
  private jumpNext = -1;

  constructor(opts: JitterBufferOptions = {}) {
    this.frameMs = opts.frameMs ?? 20;
    this.minFrames = Math.max(1, Math.round((opts.minDelayMs ?? 20) / this.frameMs));
    this.maxFrames = Math.max(this.minFrames, Math.round((opts.maxDelayMs ?? 60) / this.frameMs));
    const initial = Math.round((opts.initialDelayMs ?? 40) / this.frameMs);
    this.targetFrames = Math.min(this.maxFrames, Math.max(this.minFrames, initial));
    this.capacity = opts.capacity ?? 64;
    if (this.capacity < 2 * this.maxFrames || (this.capacity & (this.capacity - 1)) !== 0) {
      throw new RangeError('jitter buffer capacity must be a power of two of at least twice the maximum delay');
    }
    this.mask = this.capacity - 1;
    this.decreaseAfterPops = opts.decreaseAfterPops ?? 250;
    this.windowPops = opts.windowPops ?? 50;
    this.underrunPops = opts.underrunPops ?? 3;
    this.seqs = new Int32Array(this.capacity).fill(-1);
    this.timestamps = new Float64Array(this.capacity);
    this.payloads = new Array<Uint8Array | null>(this.capacity).fill(null);
  }

  /** The delay the buffer is aiming for. */
  get targetDelayMs(): number {
    return this.targetFrames * this.frameMs;
  }

  /** Frames held now. */
  get depth(): number {
    return this.count;
  }

  /** True while frames are being played out (false while buffering). */
  get isPlaying(): boolean {
    return this.playing;
  }

  /** Adds a received frame. Returns what became of it. */
  push(seq: number, timestamp: number, payload: Uint8Array): PushResult {
    seq &= 0xffff;
    this.stats.pushed++;
    if (!this.started) {
      this.started = true;
      this.head = seq;
      this.store(seq, timestamp, payload);
      return 'queued';
    }
    const d = seqDiff(seq, this.head);
    if (d < 0) {
      if (!this.advanced && d > -this.capacity && (this.count === 0 || seqDiff(this.highest, seq) < this.capacity)) {
        // Nothing has been played from here yet: an earlier packet moves the start back.
        this.head = seq;
        this.jumpNext = -1;
        this.stats.reordered++;
        this.store(seq, timestamp, payload);
        return 'queued';
      }
      if (d > -this.capacity) {
        this.jumpNext = -1;
        this.stats.late++;
        this.onLate();
        return 'late';
      }
      return this.jump(seq, timestamp, payload);
    }
    if (d >= this.capacity) return this.jump(seq, timestamp, payload);
    this.jumpNext = -1;
    const slot = seq & this.mask;
    if (this.seqs[slot] === seq) {
      this.stats.duplicates++;
      return 'duplicate';
    }
    if (this.count > 0 && seqDiff(seq, this.highest) < 0) this.stats.reordered++;
    this.store(seq, timestamp, payload);
    return 'queued';
  }

  /** Called once per frame interval. The returned object is reused by the next call. */
  pop(): PlayoutFrame {
    const out = this.out;
    out.timestamp = 0;
    out.payload = null;
    if (!this.playing) {
      if (this.count === 0 || this.span() < this.targetFrames) {
        out.kind = 'buffering';
        out.seq = -1;
        return out;
      }
      this.playing = true;
      this.emptyPops = 0;
    }

    if (++this.popsSinceLate >= this.decreaseAfterPops) {
      this.popsSinceLate = 0;
      if (this.targetFrames > this.minFrames) this.targetFrames--;
    }
    this.trackLowWater();

    if (this.pendingInserts > 0) {
      this.pendingInserts--;
      this.stats.inserted++;
      out.kind = 'missing';
      out.seq = -1;
      return out;
    }

    if (this.count === 0) {
      // Nothing buffered: hold the position (the next packet may just be late), and rebuffer
      // if this lasts, as at the end of a talk spurt.
      this.stats.underruns++;
      if (++this.emptyPops >= this.underrunPops) this.playing = false;
      out.kind = 'missing';
      out.seq = this.head;
      return out;
    }
    this.emptyPops = 0;

    if (this.pendingDrops > 0 && this.count > 1) {
      this.pendingDrops--;
      if (this.take(this.head)) this.stats.dropped++;
      else this.stats.lost++;
      this.head = (this.head + 1) & 0xffff;
    }

    const seq = this.head;
    this.head = (seq + 1) & 0xffff;
    this.advanced = true;
    const slot = seq & this.mask;
    if (this.seqs[slot] === seq) {
      out.kind = 'frame';
      out.seq = seq;
      out.timestamp = this.timestamps[slot]!;
      out.payload = this.payloads[slot]!;
      this.clear(slot);
      this.stats.played++;
      return out;
    }
    this.stats.lost++;
    out.kind = 'missing';
    out.seq = seq;
    return out;
  }

  /** Forgets every frame and starts buffering again (e.g. on a new SSRC). Stats are kept. */
  reset(): void {
    for (let i = 0; i < this.capacity; i++) this.clear(i);
    this.count = 0;
    this.started = false;
    this.playing = false;
    this.advanced = false;
    this.pendingInserts = 0;
    this.pendingDrops = 0;
    this.windowCount = 0;
    this.lowWater = Infinity;
    this.emptyPops = 0;
    this.jumpNext = -1;
  }

  /** Frames from the playout position to the highest stored, gaps included. */
  private span(): number {
    return this.count === 0 ? 0 : seqDiff(this.highest, this.head) + 1;
  }

  private store(seq: number, timestamp: number, payload: Uint8Array): void {
    const slot = seq & this.mask;
    this.seqs[slot] = seq;
    this.timestamps[slot] = timestamp;
    this.payloads[slot] = payload;
    if (this.count === 0 || seqDiff(seq, this.highest) > 0) this.highest = seq;
    this.count++;
  }

  private take(seq: number): boolean {
    const slot = seq & this.mask;
    if (this.seqs[slot] !== seq) return false;
    this.clear(slot);
    return true;
  }

  private clear(slot: number): void {
    if (this.seqs[slot]! >= 0) this.count--;
    this.seqs[slot] = -1;
    this.payloads[slot] = null;
  }

  /** A packet missed its slot: the delay is too short. Grow it by one frame. */
  private onLate(): void {
    this.popsSinceLate = 0;
    if (this.targetFrames < this.maxFrames) {
      this.targetFrames++;
      if (this.playing) this.pendingInserts++;
    }
  }

  /** Sheds delay that stayed above target for a whole window. */
  private trackLowWater(): void {
    const span = this.span();
    if (span < this.lowWater) this.lowWater = span;
    if (++this.windowCount < this.windowPops) return;
    if (this.lowWater > this.targetFrames) this.pendingDrops = this.lowWater - this.targetFrames;
    this.windowCount = 0;
    this.lowWater = Infinity;
  }

  /**
   * A sequence number outside the buffer's reach: a stray packet, or the sender restarted its
   * numbering. Two consecutive packets there confirm a restart (as RFC 3550 A.1 does).
   */
  private jump(seq: number, timestamp: number, payload: Uint8Array): PushResult {
    if (seq !== this.jumpNext) {
      this.jumpNext = (seq + 1) & 0xffff;
      return 'ignored';
    }
    // The first packet of the new run was dropped as stray; start again from this one.
    this.reset();
    this.stats.resyncs++;
    this.started = true;
    this.head = seq;
    this.store(seq, timestamp, payload);
    return 'resync';
  }
}
