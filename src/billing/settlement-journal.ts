import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { settlementSchema, type Settlement } from './settlement.js';

/** One journaled settlement, and whether the counters had already taken it when it was written. */
export interface JournalEntry {
  readonly settlement: Settlement;
  readonly countersDone: boolean;
}

const lineSchema = z.strictObject({ v: z.literal(1), countersDone: z.boolean(), settlement: settlementSchema });

const encode = (e: JournalEntry): string => JSON.stringify({ v: 1, countersDone: e.countersDone, settlement: e.settlement });

function decode(line: string): JournalEntry | string {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return 'not JSON (a write cut short?)';
  }
  const r = lineSchema.safeParse(raw);
  if (!r.success) return `not a settlement: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`;
  return { settlement: r.data.settlement, countersDone: r.data.countersDone };
}

/** Appends text and fsyncs it. */
async function appendDurably(path: string, text: string): Promise<void> {
  const fh = await open(path, 'a', 0o600);
  try {
    await fh.write(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false);

/** Makes a created, renamed or removed file's directory entry durable (fsync of the directory). */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * The settlement journal: an append-only file of JSON lines, each written and fsync'd before
 * append() resolves, so a settlement the store could not take survives a crash or a restart.
 * It holds exactly the settlements not yet landed as of its last compaction; compact()
 * rewrites it without the landed ones (temp file, fsync, rename, fsync of the directory) and
 * removes it when none are left. Lines that do not read back (a write cut short by a crash,
 * a hand edit) are moved to `<path>.rejected` by compaction and reported, never dropped silently.
 * Operations run one at a time; appends that arrive while another write runs share the next
 * write and its fsync (group commit).
 */
export class SettlementJournal {
  private tail: Promise<unknown> = Promise.resolve();
  private batch: { lines: string[]; done: Promise<void> } | null = null;
  /** Whether the file may end in a torn line that the next append must not continue. */
  private tailChecked = false;

  constructor(
    readonly path: string,
    /** Told about every line compaction moves to `<path>.rejected`. */
    private readonly onRejected: (reason: string) => void = () => {},
  ) {}

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.tail.then(op, op);
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Appends the entries; resolves once they are on disk (fsync'd). */
  append(entries: readonly JournalEntry[]): Promise<void> {
    const lines = entries.map(encode);
    if (lines.length === 0) return Promise.resolve();
    if (this.batch) {
      this.batch.lines.push(...lines);
      return this.batch.done;
    }
    const batch: { lines: string[]; done: Promise<void> } = { lines, done: Promise.resolve() };
    this.batch = batch;
    batch.done = this.serial(async () => {
      // Appends from now on start the next batch.
      if (this.batch === batch) this.batch = null;
      await this.write(batch.lines);
    });
    return batch.done;
  }

  private async write(lines: string[]): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    const created = !(await exists(this.path));
    const fh = await open(this.path, 'a', 0o600);
    try {
      let prefix = '';
      if (!created && !this.tailChecked) {
        const { size } = await fh.stat();
        if (size > 0) {
          const last = Buffer.alloc(1);
          const r = await open(this.path, 'r');
          try {
            await r.read(last, 0, 1, size - 1);
          } finally {
            await r.close();
          }
          // A crash cut the last line short: start ours on a line of its own.
          if (last[0] !== 0x0a) prefix = '\n';
        }
      }
      await fh.write(prefix + lines.join('\n') + '\n');
      await fh.sync();
      this.tailChecked = true;
    } finally {
      await fh.close();
    }
    if (created) await syncDir(dirname(this.path));
  }

  /**
   * Visits the entries in the order they were written until `visit` returns false. Lines that
   * do not read back are skipped here (compaction sets them aside).
   */
  read(visit: (e: JournalEntry) => boolean | void): Promise<void> {
    return this.serial(() => this.scan((line) => {
      const e = decode(line);
      return typeof e === 'string' ? undefined : visit(e);
    }));
  }

  private async scan(visit: (line: string) => boolean | void | Promise<void>): Promise<void> {
    if (!(await exists(this.path))) return;
    const input = createReadStream(this.path, { encoding: 'utf8' });
    const lines = createInterface({ input, crlfDelay: Infinity });
    try {
      for await (const line of lines) {
        if (line.trim() === '') continue;
        if ((await visit(line)) === false) break;
      }
    } finally {
      lines.close();
      input.destroy();
    }
  }

  /**
   * Rewrites the journal without the settlements of calls in `landed` (and without unreadable
   * lines, which go to `<path>.rejected`); removes it when nothing is left. `kept` sees each
   * entry that stays. Returns how many stay.
   */
  compact(landed: ReadonlySet<string>, kept: (e: JournalEntry) => void = () => {}): Promise<number> {
    return this.serial(async () => {
      if (!(await exists(this.path))) return 0;
      const tmp = `${this.path}.tmp`;
      const out = await open(tmp, 'w', 0o600);
      let count = 0;
      try {
        let chunk: string[] = [];
        await this.scan(async (line) => {
          const e = decode(line);
          if (typeof e === 'string') {
            await appendDurably(`${this.path}.rejected`, line + '\n');
            this.onRejected(e);
            return;
          }
          if (landed.has(e.settlement.callId)) return;
          kept(e);
          count++;
          chunk.push(line);
          if (chunk.length >= 1000) {
            const text = chunk.join('\n') + '\n';
            chunk = [];
            await out.write(text);
          }
        });
        if (chunk.length) await out.write(chunk.join('\n') + '\n');
        await out.sync();
      } finally {
        await out.close();
      }
      if (count === 0) {
        await rm(tmp, { force: true });
        await rm(this.path, { force: true });
      } else {
        await rename(tmp, this.path);
      }
      await syncDir(dirname(this.path));
      this.tailChecked = true;
      return count;
    });
  }
}
