import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { storeContract } from './store-contract.js';
import { SqliteStore } from './sqlite-store.js';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-sqlite-'));
storeContract('sqlite', () => Promise.resolve(new SqliteStore(join(dir, 'test.db'))), () => {
  rmSync(dir, { recursive: true, force: true });
  return Promise.resolve();
});
