import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import Database from 'better-sqlite3';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../store/sqlite-store.js';
import { createLogger } from '../observability/logger.js';
import { AuditLog, deriveAuditKey } from './audit-log.js';
import { AuditCheckpoints, checkpointPublicKey, readCheckpointFile, verifyAgainstCheckpoints } from './audit-checkpoints.js';

const pem = (): string => generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

describe('signed checkpoints of the audit chain (truncation detection)', () => {
  let dir: string;
  let dbPath: string;
  let file: string;
  let store: SqliteStore;
  let audit: AuditLog;
  let cps: AuditCheckpoints;
  const keyPem = pem();
  let now = Date.UTC(2026, 0, 1, 12, 0, 0);
  const clock = () => (now += 1000);

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tollgate-checkpoints-'));
    dbPath = join(dir, 'audit.db');
    file = join(dir, 'elsewhere', 'checkpoints.jsonl');
    store = new SqliteStore(dbPath);
    await store.migrate();
    const log = createLogger({ level: 'silent' });
    audit = new AuditLog(store, deriveAuditKey(randomBytes(32)), log, clock);
    cps = new AuditCheckpoints(audit, store, { keyPem, file, node: 'n1' }, log, clock);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const appendN = async (n: number) => {
    for (let i = 0; i < n; i++) await audit.append({ actor: 'cli:test', action: 'key.created', target: `key_${i}` });
  };
  /** What someone with the database alone can do: delete rows. */
  const deleteNewest = (n: number) => {
    const db = new Database(dbPath);
    try {
      db.prepare('DELETE FROM audit_log WHERE seq > (SELECT MAX(seq) FROM audit_log) - ?').run(n);
    } finally {
      db.close();
    }
  };

  it('a checkpoint pins the head: the chain verifies against it, and again after more entries', async () => {
    await appendN(5);
    const r = await cps.checkpoint();
    expect(r).toMatchObject({ ok: true, written: true, checkpoint: { seq: 5, node: 'n1', keyId: cps.keyId } });
    expect(await cps.verify()).toMatchObject({ ok: true, entries: 5, checkpoints: { count: 1, latest: { seq: 5 } } });
    await appendN(3);
    expect(await cps.verify()).toMatchObject({ ok: true, entries: 8 });
    // The head has not moved since: nothing new is written.
    await cps.checkpoint();
    expect(await cps.checkpoint()).toMatchObject({ ok: true, written: false, checkpoint: { seq: 8 } });
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(2);
  });

  it('deleting the newest entries at or below a checkpoint fails verification (truncated), though the chain alone still verifies', async () => {
    await appendN(6);
    await cps.checkpoint();
    deleteNewest(2);
    expect(await audit.verify()).toMatchObject({ ok: true, entries: 4 });
    const v = await cps.verify();
    expect(v).toMatchObject({ ok: false, problem: 'truncated', seq: 5 });
    if (!v.ok) expect(v.message).toMatch(/entries 5\.\.6 were deleted/);
    // And no checkpoint is signed for the shorter chain.
    expect(await cps.checkpoint()).toMatchObject({ ok: false, message: expect.stringMatching(/before the last checkpoint/) });
  });

  it('entries cut and the chain grown again past the checkpoint: the pinned entry differs (checkpoint_mismatch)', async () => {
    await appendN(4);
    await cps.checkpoint();
    deleteNewest(2);
    await appendN(3); // new entries 3..5: the chain is valid, but entry 4 is not the checkpointed one
    expect(await audit.verify()).toMatchObject({ ok: true, entries: 5 });
    expect(await cps.verify()).toMatchObject({ ok: false, problem: 'checkpoint_mismatch', seq: 4 });
  });

  it('a checkpoint file edited, or signed with another key, is refused (checkpoint_invalid)', async () => {
    await appendN(3);
    await cps.checkpoint();
    const original = readFileSync(file, 'utf8');
    // Rolled back to an earlier head by editing the line: the signature no longer matches.
    writeFileSync(file, original.replace('"seq":3', '"seq":2'));
    expect(await cps.verify()).toMatchObject({ ok: false, problem: 'checkpoint_invalid', message: expect.stringMatching(/line 1: bad signature/) });
    writeFileSync(file, original);
    appendFileSync(file, 'garbage\n');
    expect(await cps.verify()).toMatchObject({ ok: false, problem: 'checkpoint_invalid', message: expect.stringMatching(/line 2: not JSON/) });
    writeFileSync(file, original);
    const other = checkpointPublicKey(pem());
    expect(await verifyAgainstCheckpoints(audit, { file, publicKey: other, required: true })).toMatchObject({ ok: false, problem: 'checkpoint_invalid', message: expect.stringMatching(/signed by another key/) });
    // The public key alone (SPKI PEM) verifies, on a host without the private key.
    expect(await verifyAgainstCheckpoints(audit, { file, publicKey: checkpointPublicKey(cps.publicKeyPem()), required: true })).toMatchObject({ ok: true });
  });

  it('a named checkpoint file must exist; the configured one may not yet (no checkpoint taken)', async () => {
    await appendN(1);
    expect(await cps.verify()).toMatchObject({ ok: true, checkpoints: { count: 0, latest: null } });
    expect(await cps.verify({ required: true })).toMatchObject({ ok: false, problem: 'checkpoint_invalid', message: expect.stringMatching(/does not exist/) });
  });

  it('an empty log has nothing to checkpoint; stop() takes a last checkpoint', async () => {
    expect(await cps.checkpoint()).toEqual({ ok: true, checkpoint: null, written: false });
    await appendN(2);
    cps.start(3600);
    await cps.stop();
    expect(readCheckpointFile(file, cps.publicKey).checkpoints.map((c) => c.seq)).toEqual([2]);
  });

  it('a new instance continues from the last checkpoint in the file (a restart)', async () => {
    await appendN(3);
    await cps.checkpoint();
    deleteNewest(1);
    const again = new AuditCheckpoints(audit, store, { keyPem, file, node: 'n1' }, createLogger({ level: 'silent' }), clock);
    expect(await again.checkpoint()).toMatchObject({ ok: false });
  });
});
