import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { EventLoopUtilization } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { FromWorker, MediaSpec, SessionStats, ToWorker, WorkerInit } from './media-protocol.js';

export interface MediaEngineOptions {
  host: string;
  advertisedAddress: string;
  portMin: number;
  portMax: number;
  /** 0 = one per core. */
  workers: number;
  timeoutMs: number;
  jitterTargetMs: number;
}

export interface MediaEngineEvents {
  /** No RTP from the caller within the media timeout. */
  onTimeout(callId: string): void;
  /** A worker died: these calls lost their media and must be ended. */
  onLost(callIds: string[]): void;
  onDtmf?(callId: string, digit: string, durationMs: number): void;
  /** app 'agent': audio frames, released marks, clear results and overflows for the bridge. */
  onAgent?(m: AgentMessage): void;
}

export type AgentMessage = Extract<FromWorker, { type: 'audio' | 'marks' | 'cleared' | 'overflow' }>;

interface WorkerSlot {
  readonly index: number;
  worker: Worker;
  readonly sessions: Set<string>;
  readonly pending: Map<string, { resolve: (v: unknown) => void; reject: (e: Error) => void }>;
  alive: boolean;
  /** The worker's event-loop utilisation when utilization() last read it. */
  elu?: EventLoopUtilization;
}

/**
 * Starts the worker script: the compiled file from dist/, or, when running from TypeScript
 * sources (tsx, vitest), a one-line bootstrap that registers tsx's loader in the new thread
 * first (a --import in execArgv does not reach a worker's module loading in Node 20).
 */
function newWorker(init: WorkerInit): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./media-worker.js', import.meta.url), { workerData: init });
  const script = new URL('./media-worker.ts', import.meta.url).href;
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const code = `import(${JSON.stringify(tsxApi)}).then(({ register }) => { register(); return import(${JSON.stringify(script)}); }).catch((err) => { console.error(err); process.exit(1); });`;
  return new Worker(code, { eval: true, workerData: init });
}

/**
 * Media plane control (ARCHITECTURE.md "media workers"): one worker thread per core, each
 * owning an equal slice of the RTP port range and doing all per-packet work for its calls.
 * This class only places calls on workers and relays control messages. A worker that exits
 * loses only its own calls, which are reported through onLost; a fresh worker takes its slice.
 */
export class MediaEngine {
  private readonly slots: WorkerSlot[] = [];
  private readonly where = new Map<string, WorkerSlot>();
  private closed = false;

  constructor(
    private readonly opts: MediaEngineOptions,
    private readonly events: MediaEngineEvents,
    private readonly log: Logger,
  ) {}

  get address(): string {
    return this.opts.advertisedAddress || this.opts.host;
  }

  get workerCount(): number {
    return this.slots.length;
  }

  async start(): Promise<void> {
    const n = this.opts.workers > 0 ? this.opts.workers : availableParallelism();
    const span = Math.floor((this.opts.portMax - this.opts.portMin + 1) / n);
    if (span < 4) throw new Error('media port range too small for the number of workers');
    const starts: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const init: WorkerInit = {
        index: i,
        host: this.opts.host,
        portMin: this.opts.portMin + i * span,
        portMax: this.opts.portMin + (i + 1) * span - 1,
        timeoutMs: this.opts.timeoutMs,
        jitterTargetMs: this.opts.jitterTargetMs,
      };
      const slot: WorkerSlot = { index: i, worker: null as unknown as Worker, sessions: new Set(), pending: new Map(), alive: false };
      this.slots.push(slot);
      starts.push(this.spawn(slot, init));
    }
    await Promise.all(starts);
  }

  private spawn(slot: WorkerSlot, init: WorkerInit): Promise<void> {
    const worker = newWorker(init);
    slot.worker = worker;
    delete slot.elu;
    return new Promise((resolve, reject) => {
      worker.on('message', (m: FromWorker) => {
        if (m.type === 'ready') {
          slot.alive = true;
          resolve();
          return;
        }
        this.onWorkerMessage(slot, m);
      });
      worker.once('error', (err) => {
        if (!slot.alive) reject(err);
        this.log.error({ err, worker: slot.index }, 'media worker failed');
      });
      worker.once('exit', (code) => {
        const wasAlive = slot.alive;
        slot.alive = false;
        const lost = [...slot.sessions];
        slot.sessions.clear();
        for (const id of lost) this.where.delete(id);
        for (const p of slot.pending.values()) p.reject(new Error('media worker exited'));
        slot.pending.clear();
        if (this.closed || !wasAlive) return;
        this.log.error({ worker: slot.index, code, calls: lost.length }, 'media worker exited; ending its calls and starting a new one');
        if (lost.length) this.events.onLost(lost);
        this.spawn(slot, init).catch((err: unknown) => this.log.error({ err, worker: slot.index }, 'could not restart a media worker'));
      });
    });
  }

  private onWorkerMessage(slot: WorkerSlot, m: FromWorker): void {
    switch (m.type) {
      case 'opened':
        slot.pending.get(`open:${m.callId}`)?.resolve(m.port);
        slot.pending.delete(`open:${m.callId}`);
        return;
      case 'open-failed':
        slot.pending.get(`open:${m.callId}`)?.reject(new Error(m.reason));
        slot.pending.delete(`open:${m.callId}`);
        return;
      case 'closed':
        slot.pending.get(`close:${m.callId}`)?.resolve(m.stats);
        slot.pending.delete(`close:${m.callId}`);
        return;
      case 'timeout':
        this.events.onTimeout(m.callId);
        return;
      case 'dtmf':
        this.events.onDtmf?.(m.callId, m.digit, m.durationMs);
        return;
      case 'audio':
      case 'marks':
      case 'cleared':
      case 'overflow':
        this.events.onAgent?.(m);
        return;
      case 'stats':
        slot.pending.get('stats')?.resolve(m);
        slot.pending.delete('stats');
        return;
      case 'ready':
        return;
    }
  }

  private post(slot: WorkerSlot, msg: ToWorker): void {
    slot.worker.postMessage(msg);
  }

  private request<T>(slot: WorkerSlot, key: string, msg: ToWorker, timeoutMs = 5000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        slot.pending.delete(key);
        reject(new Error(`media worker ${slot.index} did not answer ${msg.type}`));
      }, timeoutMs);
      slot.pending.set(key, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.post(slot, msg);
    });
  }

  /** Places a new call on the least busy live worker and binds its RTP/RTCP port pair. */
  async open(callId: string): Promise<{ address: string; port: number }> {
    if (this.closed) throw new Error('media engine is closed');
    const live = this.slots.filter((s) => s.alive);
    if (live.length === 0) throw new Error('no media worker is running');
    const slot = live.reduce((a, b) => (b.sessions.size < a.sessions.size ? b : a));
    slot.sessions.add(callId);
    this.where.set(callId, slot);
    try {
      const port = await this.request<number>(slot, `open:${callId}`, { type: 'open', callId });
      return { address: this.address, port };
    } catch (err) {
      slot.sessions.delete(callId);
      this.where.delete(callId);
      throw err;
    }
  }

  configure(callId: string, spec: MediaSpec): void {
    const slot = this.where.get(callId);
    if (slot?.alive) this.post(slot, { type: 'configure', callId, spec });
  }

  /** Sends a DTMF digit to the caller (RFC 4733); ignored when no telephone-event was negotiated. */
  sendDtmf(callId: string, digit: string, durationMs = 100): void {
    const slot = this.where.get(callId);
    if (slot?.alive) this.post(slot, { type: 'dtmf', callId, digit, durationMs });
  }

  /** app 'agent': queues the agent's audio (its format, any length) for playout to the caller. */
  play(callId: string, audio: Uint8Array): void {
    const slot = this.where.get(callId);
    if (!slot?.alive) return;
    // Small Buffers are views of Node's shared 8 KB pool, and postMessage would clone the whole
    // pool for each frame: give the worker its own exact-size copy, transferred, not cloned.
    const own = audio.byteOffset === 0 && audio.byteLength === audio.buffer.byteLength && audio.buffer instanceof ArrayBuffer ? audio : new Uint8Array(audio);
    slot.worker.postMessage({ type: 'play', callId, audio: own } satisfies ToWorker, [own.buffer as ArrayBuffer]);
  }

  /** app 'agent': a mark after the audio queued so far (reported through onAgent when played). */
  mark(callId: string, name: string): void {
    const slot = this.where.get(callId);
    if (slot?.alive) this.post(slot, { type: 'mark', callId, name });
  }

  /** app 'agent': flushes the queued audio (barge-in); the result comes through onAgent. */
  clear(callId: string): void {
    const slot = this.where.get(callId);
    if (slot?.alive) this.post(slot, { type: 'clear', callId });
  }

  async close(callId: string): Promise<SessionStats | null> {
    const slot = this.where.get(callId);
    if (!slot) return null;
    this.where.delete(callId);
    slot.sessions.delete(callId);
    if (!slot.alive) return null;
    return this.request<SessionStats>(slot, `close:${callId}`, { type: 'close', callId }).catch(() => null);
  }

  /** Per-worker figures (sessions, CPU time, heap) for metrics and benchmarks. */
  async stats(): Promise<Extract<FromWorker, { type: 'stats' }>[]> {
    return Promise.all(this.slots.filter((s) => s.alive).map((s) => this.request<Extract<FromWorker, { type: 'stats' }>>(s, 'stats', { type: 'stats' })));
  }

  /**
   * The busiest worker's event-loop utilisation (0..1: the share of wall time its loop was busy)
   * since the previous call, read from the main thread without a message round trip. A load
   * signal for overload control: near 1 the worker no longer keeps up with its packets.
   */
  utilization(): number {
    let max = 0;
    for (const s of this.slots) {
      if (!s.alive) continue;
      const now = s.worker.performance.eventLoopUtilization();
      const delta = s.elu ? s.worker.performance.eventLoopUtilization(now, s.elu) : now;
      s.elu = now;
      max = Math.max(max, delta.utilization);
    }
    return max;
  }

  /** Test hook and operator tool: terminates one worker as a crash would. */
  async killWorker(index: number): Promise<void> {
    await this.slots[index]?.worker.terminate();
  }

  workerOf(callId: string): number | null {
    return this.where.get(callId)?.index ?? null;
  }

  async stop(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
