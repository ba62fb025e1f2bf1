import { describe, it, expect } from 'vitest';
import { existsSync, rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { api, startGateway } from '../helpers/gateway-process.js';

describe('the first start, as `npm start` runs it (compiled, embedded default)', () => {
  it('creates its data dir, secrets and dev certificate, serves, and drains on SIGTERM', async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'tollgate-first-')), 'data');
    const gw = await startGateway({ built: true, dataDir });
    try {
      expect((await api(gw, 'GET', '/readyz')).body).toEqual({ status: 'ready' });
      for (const f of ['tollgate.db', 'secrets/pepper', 'secrets/master-key', 'secrets/token-signing-key.pem', 'tls/dev-cert.pem', 'tls/dev-key.pem']) {
        expect(existsSync(join(dataDir, f)), f).toBe(true);
      }
      // No key yet: the API refuses everything authenticated.
      expect((await api(gw, 'GET', '/v1/keys')).status).toBe(401);
    } finally {
      expect(await gw.stop()).toBe(0);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
