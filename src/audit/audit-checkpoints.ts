import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readSync, statSync, writeSync, existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { ConfigError } from '../errors/index.js';
import type { Store } from '../store/store.js';
import { canonicalJson } from '../util/canonical-json.js';
import { systemClock, toIso, type Clock } from '../util/time.js';
import type { AuditLog, ChainVerdict } from './audit-log.js';

/**
 * Signed checkpoints of the audit chain's head (docs/audit.md#truncation-and-checkpoints).
 *
 * The hash chain shows an edited, deleted or reordered entry, but deleting the newest entries
 * leaves a shorter chain that is still valid. A checkpoint {seq, headHash, at, node} signed with
 * an Ed25519 key that is not stored in the database pins the head: a later chain must still
 * hold entry `seq` with exactly `headHash`. Checkpoints are appended to a file outside the
 * database (and logged), so someone with access to the database alone can neither remove the
 * evidence nor forge a checkpoint for a shorter chain.
 */

export interface Checkpoint {
  readonly v: 1;
  /** The chain's head when the checkpoint was taken. */
  readonly seq: number;
  readonly headHash: string;
  readonly at: string;
  /** The node (config nodeId) that took it. */
  readonly node: string;
  /** Which key signed it: the first 16 base64url characters of SHA-256 over its public key (SPKI DER). */
  readonly keyId: string;
  /** Ed25519 signature (base64url) over the domain string and the canonical JSON of the fields above. */
  readonly sig: string;
}

const DOMAIN = 'tollgate audit checkpoint v1\n';
const HASH = /^[0-9a-f]{64}$/;

export function checkpointKeyId(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('base64url').slice(0, 16);
}

function signedBytes(c: Omit<Checkpoint, 'sig'>): Buffer {
  return Buffer.from(DOMAIN + canonicalJson({ v: c.v, seq: c.seq, headHash: c.headHash, at: c.at, node: c.node, keyId: c.keyId }), 'utf8');
}

/** Reads a public key (SPKI PEM) or derives it from a private key (PKCS#8 PEM). */
export function checkpointPublicKey(pem: string): KeyObject {
  const key = pem.includes('PRIVATE KEY') ? createPublicKey(createPrivateKey(pem)) : createPublicKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new ConfigError('the audit checkpoint key must be an Ed25519 key');
  return key;
}

/** The outcome of reading a checkpoint file with the key that should have signed it. */
export interface CheckpointFile {
  readonly file: string;
  readonly exists: boolean;
  /** Checkpoints whose signature verifies, in file order. */
  readonly checkpoints: readonly Checkpoint[];
  /** Lines that are not a checkpoint signed by this key: each is evidence of tampering (or of another key). */
  readonly problems: readonly string[];
}

function parseLine(line: string, publicKey: KeyObject, keyId: string): Checkpoint | string {
  let c: Record<string, unknown>;
  try {
    const v: unknown = JSON.parse(line);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return 'not a JSON object';
    c = v as Record<string, unknown>;
  } catch {
    return 'not JSON';
  }
  if (c.v !== 1 || !Number.isSafeInteger(c.seq) || (c.seq as number) < 1 || typeof c.headHash !== 'string' || !HASH.test(c.headHash)
    || typeof c.at !== 'string' || typeof c.node !== 'string' || typeof c.keyId !== 'string' || typeof c.sig !== 'string') {
    return 'not a checkpoint';
  }
  if (c.keyId !== keyId) return `signed by another key (${c.keyId}, expected ${keyId})`;
  const cp = c as unknown as Checkpoint;
  let ok = false;
  try {
    ok = verify(null, signedBytes(cp), publicKey, Buffer.from(cp.sig, 'base64url'));
  } catch {
    ok = false;
  }
  return ok ? { v: 1, seq: cp.seq, headHash: cp.headHash, at: cp.at, node: cp.node, keyId: cp.keyId, sig: cp.sig } : 'bad signature';
}

/** Reads and checks every line of a checkpoint file (a missing file has none). */
export function readCheckpointFile(file: string, publicKey: KeyObject): CheckpointFile {
  if (!existsSync(file)) return { file, exists: false, checkpoints: [], problems: [] };
  const keyId = checkpointKeyId(publicKey);
  const checkpoints: Checkpoint[] = [];
  const problems: string[] = [];
  readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const r = parseLine(line, publicKey, keyId);
    if (typeof r === 'string') problems.push(`line ${i + 1}: ${r}`);
    else checkpoints.push(r);
  });
  return { file, exists: true, checkpoints, problems };
}

/** The last line of a file, reading only its tail (the file grows by a line per checkpoint). */
function lastLine(file: string): string | null {
  if (!existsSync(file)) return null;
  const size = statSync(file).size;
  if (size === 0) return null;
  const len = Math.min(size, 8192);
  const buf = Buffer.alloc(len);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, buf, 0, len, size - len);
  } finally {
    closeSync(fd);
  }
  const lines = buf.toString('utf8').split('\n').filter((l) => l.trim() !== '');
  return lines.at(-1) ?? null;
}

export interface CheckpointOptions {
  /** PKCS#8 PEM of the Ed25519 signing key. */
  readonly keyPem: string;
  readonly file: string;
  readonly node: string;
}

export type CheckpointResult =
  | { readonly ok: true; readonly checkpoint: Checkpoint; readonly written: boolean }
  | { readonly ok: true; readonly checkpoint: null; readonly written: false }
  | { readonly ok: false; readonly message: string };

/**
 * Takes checkpoints of one audit chain into one file: on demand (`tollgate audit checkpoint`),
 * periodically while a gateway serves (audit.checkpointIntervalSec) and at shutdown. Before
 * signing a new head it checks the chain still extends the last checkpoint in the file (entry
 * `seq` with the same hash), so it never signs a chain that was cut short.
 */
export class AuditCheckpoints {
  private readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly keyId: string;
  private last: Checkpoint | null | undefined;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly audit: AuditLog,
    private readonly store: Store,
    private readonly opts: CheckpointOptions,
    private readonly log: Logger,
    private readonly clock: Clock = systemClock,
  ) {
    this.privateKey = createPrivateKey(opts.keyPem);
    if (this.privateKey.asymmetricKeyType !== 'ed25519') throw new ConfigError('the audit checkpoint key must be an Ed25519 private key');
    this.publicKey = createPublicKey(this.privateKey);
    this.keyId = checkpointKeyId(this.publicKey);
  }

  get file(): string {
    return this.opts.file;
  }

  /** The public key in SPKI PEM: give it to whoever verifies elsewhere (`audit verify --public-key`). */
  publicKeyPem(): string {
    return this.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  }

  /** The newest checkpoint in the file signed by this key, or null. */
  private lastCheckpoint(): Checkpoint | null {
    if (this.last !== undefined) return this.last;
    const line = lastLine(this.opts.file);
    const parsed = line === null ? null : parseLine(line, this.publicKey, this.keyId);
    this.last = parsed !== null && typeof parsed !== 'string' ? parsed : null;
    return this.last;
  }

  /** Checkpoints the chain's head now, unless it has not moved since the last checkpoint. Serialised. */
  checkpoint(): Promise<CheckpointResult> {
    const p = this.running.then(() => this.checkpointNow());
    this.running = p.catch(() => undefined);
    return p;
  }

  private async checkpointNow(): Promise<CheckpointResult> {
    const [head] = await this.store.listAudit({ limit: 1, descending: true });
    if (!head) return { ok: true, checkpoint: null, written: false };
    const last = this.lastCheckpoint();
    if (last) {
      if (head.seq === last.seq && head.hash === last.headHash) return { ok: true, checkpoint: last, written: false };
      const [pinned] = await this.store.listAudit({ afterSeq: last.seq - 1, limit: 1 });
      if (head.seq < last.seq || !pinned || pinned.seq !== last.seq || pinned.hash !== last.headHash) {
        const message = head.seq < last.seq
          ? `the audit chain ends at entry ${head.seq}, before the last checkpoint (entry ${last.seq} at ${last.at}): entries were deleted`
          : `entry ${last.seq} is not the one checkpointed at ${last.at}: the chain was rewritten`;
        this.log.error({ seq: head.seq, checkpoint: { seq: last.seq, at: last.at } }, `audit checkpoint refused: ${message}`);
        return { ok: false, message };
      }
    }
    const unsigned = { v: 1 as const, seq: head.seq, headHash: head.hash, at: toIso(this.clock()), node: this.opts.node, keyId: this.keyId };
    const checkpoint: Checkpoint = { ...unsigned, sig: sign(null, signedBytes(unsigned), this.privateKey).toString('base64url') };
    mkdirSync(dirname(this.opts.file), { recursive: true });
    // One write of one line with O_APPEND, then fsync: a crash loses at most this checkpoint.
    const fd = openSync(this.opts.file, 'a', 0o644);
    try {
      writeSync(fd, JSON.stringify(checkpoint) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    this.last = checkpoint;
    // Also in the log, which usually leaves the host: a second copy out of the database's reach.
    this.log.info({ checkpoint }, 'audit checkpoint');
    return { ok: true, checkpoint, written: true };
  }

  /** Checkpoints every intervalSec (0: never) while the gateway serves. */
  start(intervalSec: number): void {
    if (intervalSec <= 0 || this.timer) return;
    this.timer = setInterval(() => {
      this.checkpoint().catch((err: unknown) => this.log.warn({ err }, 'audit checkpoint failed'));
    }, intervalSec * 1000);
    this.timer.unref();
  }

  /** Stops the timer and takes a last checkpoint (shutdown). Idempotent. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    try {
      await this.checkpoint();
    } catch (err) {
      this.log.warn({ err }, 'audit checkpoint at shutdown failed');
    }
  }

  /**
   * The chain verified against a checkpoint file (this key's, unless another public key is
   * given): see verifyAgainstCheckpoints.
   */
  verify(opts: { file?: string; publicKey?: KeyObject; required?: boolean } = {}): Promise<CheckpointedVerdict> {
    return verifyAgainstCheckpoints(this.audit, { file: opts.file ?? this.opts.file, publicKey: opts.publicKey ?? this.publicKey, required: opts.required ?? false });
  }
}

/** A chain verdict with what the checkpoints said. */
export type CheckpointedVerdict = ChainVerdict & {
  readonly checkpoints: {
    readonly file: string;
    /** Valid checkpoints checked. */
    readonly count: number;
    /** The newest one (highest seq), or null when there is none. */
    readonly latest: { readonly seq: number; readonly headHash: string; readonly at: string } | null;
  };
};

/**
 * Verifies the chain (AuditLog.verify) and then every checkpoint of `file` against it: a
 * checkpoint whose entry is missing (the chain was cut: 'truncated') or holds another hash (the
 * chain was rewritten: 'checkpoint_mismatch') fails, and so does a line that is not a checkpoint
 * signed by `publicKey` ('checkpoint_invalid'). `required`: a missing file fails too (when the
 * operator named one); otherwise it means "no checkpoint yet".
 */
export async function verifyAgainstCheckpoints(audit: AuditLog, opts: { file: string; publicKey: KeyObject; required: boolean }): Promise<CheckpointedVerdict> {
  const read = readCheckpointFile(opts.file, opts.publicKey);
  const latest = read.checkpoints.reduce<Checkpoint | null>((a, c) => (a === null || c.seq > a.seq ? c : a), null);
  const summary = { file: opts.file, count: read.checkpoints.length, latest: latest ? { seq: latest.seq, headHash: latest.headHash, at: latest.at } : null };
  if (!read.exists && opts.required) {
    return { ok: false, entries: 0, seq: 0, problem: 'checkpoint_invalid', message: `the checkpoint file ${opts.file} does not exist`, checkpoints: summary };
  }
  if (read.problems.length > 0) {
    return { ok: false, entries: 0, seq: 0, problem: 'checkpoint_invalid', message: `the checkpoint file ${opts.file} was tampered with or is not this key's: ${read.problems.slice(0, 3).join('; ')}`, checkpoints: summary };
  }
  return { ...(await audit.verify(1000, read.checkpoints)), checkpoints: summary };
}
