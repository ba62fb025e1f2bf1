import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import Database from 'better-sqlite3';
import { generateKeyPairSync } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { api, rememberSecret, runCli, startGateway, waitForLog, type RunningGateway } from '../helpers/gateway-process.js';

/**
 * Hostile edges of policy, keys, audit and configuration, each against a real gateway process
 * or the real CLI: a caller cannot price its own calls or pick the live environment with a test
 * key; a token dies with the secret it came from; cutting the newest audit rows out of the
 * database is caught by the signed checkpoints; a stray TOLLGATE_* variable is not fatal.
 */
describe('hostile edges: policy, keys, audit, configuration', () => {
  let gw: RunningGateway;
  let admin: string;
  // The checkpoint key and file live outside the data directory, as in production.
  const outside = mkdtempSync(join(tmpdir(), 'tollgate-outside-'));
  const checkpointFile = join(outside, 'checkpoints', 'audit-checkpoints.jsonl');

  beforeAll(async () => {
    const keyFile = join(outside, 'audit-checkpoint-key.pem');
    writeFileSync(keyFile, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), { mode: 0o600 });
    gw = await startGateway({
      env: {
        TOLLGATE_AUDIT__CHECKPOINT_KEY_FILE: keyFile,
        TOLLGATE_AUDIT__CHECKPOINT_FILE: checkpointFile,
        TOLLGATE_AUDIT__CHECKPOINT_INTERVAL_SEC: '1',
      },
    });
    const r = await runCli(['keys', 'create', '--name', 'root', '--role', 'admin', '--json'], gw.env);
    expect(r.code, r.stderr).toBe(0);
    admin = JSON.parse(r.stdout).secret;
    rememberSecret(admin);
  });
  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
    rmSync(outside, { recursive: true, force: true });
  });

  const createKey = async (policy: Record<string, unknown>): Promise<{ id: string; secret: string }> => {
    const r = await api(gw, 'POST', '/v1/keys', { auth: admin, body: { name: 'k', callsPerSecond: 100, cpsBurst: 100, maxConcurrentCalls: 10, ...policy } });
    expect(r.status, r.text).toBe(201);
    rememberSecret(r.body.secret);
    return { id: r.body.key.id, secret: r.body.secret };
  };
  const authorize = (secret: string, body: Record<string, unknown>) => api(gw, 'POST', '/v1/authorizations', { auth: secret, body });

  describe('/v1/authorizations: server-side prices and modes', () => {
    it('prices from the rate table; a client price of 0 with the budget spent gets no grant', async () => {
      const k = await createKey({ scopes: ['calls:outbound', 'usage:read'], budget: { amount: 10, period: 'month' } });
      // config/rates.yaml: +1 outbound 1.1 a minute in 6 s blocks. 10 units cover 540 s.
      const g = await authorize(k.secret, { direction: 'outbound', destination: '+14155550199', maxDurationSec: 600 });
      expect(g.status, g.text).toBe(201);
      expect(g.body).toMatchObject({ ratePerMinute: 1.1, maxDurationSec: 540, limitedBy: 'budget', reserved: 10, mode: 'live' });
      const done = await api(gw, 'POST', `/v1/authorizations/${g.body.callId}/complete`, { auth: k.secret, body: { billableSeconds: 540 } });
      expect(done.body).toMatchObject({ cost: 10 });
      // The budget is spent. Claiming the call costs nothing is refused outright...
      const free = await authorize(k.secret, { direction: 'outbound', destination: '+14155550199', ratePerMinute: 0 });
      expect([free.status, free.body.error.code, free.body.error.details.field]).toEqual([400, 'VALIDATION_FAILED', 'ratePerMinute']);
      // ...and the call at the gateway's price is refused for the budget.
      const priced = await authorize(k.secret, { direction: 'outbound', destination: '+14155550199' });
      expect([priced.status, priced.body.error.code]).toEqual([402, 'BUDGET_EXHAUSTED']);
    });

    it('a test key that names no mode gets a test grant, and cannot ask for live', async () => {
      const test = await createKey({ mode: 'test', scopes: ['calls:outbound', 'calls:inbound'] });
      const implicit = await authorize(test.secret, { direction: 'outbound', destination: '+14155550199' });
      expect([implicit.status, implicit.body.mode]).toEqual([201, 'test']);
      const inbound = await authorize(test.secret, { direction: 'inbound' });
      expect([inbound.status, inbound.body.mode]).toEqual([201, 'test']);
      const live = await authorize(test.secret, { direction: 'outbound', destination: '+14155550199', mode: 'live' });
      expect([live.status, live.body.error.code]).toEqual([403, 'MODE_MISMATCH']);
      const liveKey = await createKey({ scopes: ['calls:outbound'] });
      expect((await authorize(liveKey.secret, { direction: 'outbound', destination: '+14155550199' })).body.mode).toBe('live');
    });
  });

  describe('tokens and rotation', () => {
    it('a token minted before `keys rotate --grace 0` is refused; one minted after works; a graceful rotation keeps old tokens', async () => {
      const k = await createKey({ scopes: ['tokens:mint', 'usage:read'] });
      const mint = async (secret: string) => {
        const t = await api(gw, 'POST', '/v1/tokens', { auth: secret, body: { ttlSec: 600 } });
        expect(t.status, t.text).toBe(201);
        rememberSecret(t.body.token);
        return t.body.token as string;
      };
      const usage = (token: string) => api(gw, 'GET', '/v1/usage', { auth: token });

      // A graceful rotation: the old secret works for its grace, and so do its tokens.
      const beforeGraceful = await mint(k.secret);
      const graceful = await runCli(['keys', 'rotate', k.id, '--grace', '600', '--json'], gw.env);
      expect(graceful.code, graceful.stderr).toBe(0);
      const second = JSON.parse(graceful.stdout).secret as string;
      rememberSecret(second);
      expect((await usage(beforeGraceful)).status).toBe(200);

      // The "secret leaked" path, from the CLI while the gateway serves.
      const leaked1 = await mint(k.secret);
      const leaked2 = await mint(second);
      const cut = await runCli(['keys', 'rotate', k.id, '--grace', '0', '--json'], gw.env);
      expect(cut.code, cut.stderr).toBe(0);
      const third = JSON.parse(cut.stdout).secret as string;
      rememberSecret(third);
      for (const token of [leaked1, leaked2]) {
        const r = await usage(token);
        expect([r.status, r.body.error.code]).toEqual([401, 'TOKEN_INVALID']);
      }
      expect((await usage(await mint(third))).status).toBe(200);
    });
  });

  describe('audit truncation', () => {
    it('the serving gateway checkpoints the head; deleting the newest rows fails `audit verify`, against the file and a copy kept elsewhere', async () => {
      // Some activity, then wait for the gateway's own checkpoint of it (every second).
      await createKey({ scopes: ['usage:read'] });
      const head = (await api(gw, 'GET', '/v1/audit?limit=1', { auth: admin })).body.entries[0].seq as number;
      let covered = false;
      for (let i = 0; i < 100 && !covered; i++) {
        const lines = existsSync(checkpointFile) ? readFileSync(checkpointFile, 'utf8').trim().split('\n') : [];
        covered = lines.some((l) => l !== '' && (JSON.parse(l) as { seq: number }).seq >= head);
        if (!covered) await new Promise((r) => setTimeout(r, 100));
      }
      expect(covered).toBe(true);
      expect((await waitForLog(gw, '"msg":"audit checkpoint"')).length).toBeGreaterThan(0);
      // An on-demand checkpoint from the CLI, and a copy of the file kept elsewhere.
      const cp = await runCli(['audit', 'checkpoint', '--json'], gw.env);
      expect(cp.code, cp.stderr).toBe(0);
      const { checkpoint, publicKey } = JSON.parse(cp.stdout) as { checkpoint: { seq: number }; publicKey: string };
      const copy = join(outside, 'copy.jsonl');
      copyFileSync(checkpointFile, copy);
      const pub = join(outside, 'checkpoint-public.pem');
      writeFileSync(pub, publicKey);
      const intact = await runCli(['audit', 'verify', '--json'], gw.env);
      expect(intact.code, intact.stderr).toBe(0);
      expect(JSON.parse(intact.stdout)).toMatchObject({ ok: true, checkpoints: { latest: { seq: checkpoint.seq } } });

      // Someone with the database alone deletes the newest rows: the chain that is left is valid.
      const db = new Database(join(gw.env.TOLLGATE_DATA_DIR!, 'tollgate.db'));
      try {
        db.pragma('busy_timeout = 5000');
        db.prepare('DELETE FROM audit_log WHERE seq > ?').run(checkpoint.seq - 2);
      } finally {
        db.close();
      }
      const broken = await runCli(['audit', 'verify', '--json'], gw.env);
      expect(broken.code).toBe(1);
      expect(JSON.parse(broken.stdout)).toMatchObject({ ok: false, problem: 'truncated', seq: checkpoint.seq - 1 });
      const human = await runCli(['audit', 'verify'], gw.env);
      expect(human.stdout).toMatch(/BROKEN at entry \d+: entries \d+\.\.\d+ were deleted/);
      // Against the copy kept elsewhere, with only the public key.
      const viaCopy = await runCli(['audit', 'verify', '--checkpoint', copy, '--public-key', pub, '--json'], gw.env);
      expect(viaCopy.code).toBe(1);
      expect(JSON.parse(viaCopy.stdout)).toMatchObject({ ok: false, problem: 'truncated' });
      // The REST verify says the same, and the gateway refuses to checkpoint the cut chain.
      expect((await api(gw, 'GET', '/v1/audit/verify', { auth: admin })).body).toMatchObject({ ok: false, problem: 'truncated' });
      expect((await waitForLog(gw, 'audit checkpoint refused')).length).toBeGreaterThan(0);
      // A checkpoint file that is named but missing is a failure, not a pass.
      const missing = await runCli(['audit', 'verify', '--checkpoint', join(outside, 'none.jsonl'), '--public-key', pub], gw.env);
      expect(missing.code).toBe(1);
    });
  });

  describe('configuration from the environment', () => {
    it('TOLLGATE_DIR=x tollgate keys list works, with a warning naming it; a misspelled setting still stops the command', async () => {
      const r = await runCli(['keys', 'list'], { ...gw.env, TOLLGATE_DIR: 'x' });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^ID\s+NAME/);
      expect(r.stderr).toContain('warning: ignoring the environment variable TOLLGATE_DIR');
      const typo = await runCli(['keys', 'list'], { ...gw.env, TOLLGATE_SIP__UDP_PORTT: '5070' });
      expect(typo.code).toBe(2);
      expect(typo.stderr).toContain('udpPortt');
    });
  });
});
