import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { gatewayEnv, rememberSecret, runCli } from '../helpers/gateway-process.js';

describe('the tollgate CLI', () => {
  let env: Record<string, string>;
  let dataDir: string;
  beforeAll(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'tollgate-cli-'));
    env = gatewayEnv({ dataDir });
  });
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  const json = async (args: string[]) => {
    const r = await runCli([...args, '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout);
  };

  it('creates, lists, shows, updates, rotates and revokes a key', async () => {
    const created = await json(['keys', 'create', '--name', 'trunk-a', '--mode', 'test', '--scopes', 'calls:inbound,usage:read', '--cidrs', '203.0.113.0/24,2001:db8::/32', '--countries', 'us,gb', '--cps', '5', '--burst', '2', '--max-concurrent', '3', '--budget', '2500/day/eur', '--max-duration', '900', '--caller-ids', '+14155550100', '--require-tls']);
    rememberSecret(created.secret);
    expect(created.secret).toMatch(/^tg_test_[0-9A-Za-z]{49}$/);
    expect(created.key).toMatchObject({
      name: 'trunk-a', mode: 'test', scopes: ['calls:inbound', 'usage:read'], allowedCidrs: ['203.0.113.0/24', '2001:db8::/32'],
      allowedCountries: ['US', 'GB'], callsPerSecond: 5, cpsBurst: 2, maxConcurrentCalls: 3, budget: { amount: 2500, period: 'day', currency: 'EUR' },
      maxCallDurationSec: 900, callerIds: ['+14155550100'], requireTls: true,
    });
    const id = created.key.id as string;

    const listed = await json(['keys', 'list', '--mode', 'test']);
    expect(listed.keys.map((k: any) => k.id)).toContain(id);
    expect(JSON.stringify(listed)).not.toContain(created.secret);

    const human = await runCli(['keys', 'list'], env);
    expect(human.stdout).toMatch(/^ID\s+NAME\s+MODE\s+STATUS/);
    expect(human.stdout).toContain(created.key.hint);

    expect((await json(['keys', 'show', id])).key.id).toBe(id);
    const updated = await json(['keys', 'update', id, '--cps', '7', '--no-require-tls', '--budget', 'none']);
    expect(updated.key).toMatchObject({ callsPerSecond: 7, requireTls: false, budget: null, maxConcurrentCalls: 3 });

    const rotated = await json(['keys', 'rotate', id, '--grace', '0']);
    rememberSecret(rotated.secret);
    expect(rotated.secret).not.toBe(created.secret);
    expect(rotated.key.hint).not.toBe(created.key.hint);

    const revoked = await json(['keys', 'revoke', id, '--reason', 'done']);
    expect(revoked.key.status).toBe('revoked');
    const again = await runCli(['keys', 'rotate', id, '--json'], env);
    expect(again.code).toBe(1);
    expect(JSON.parse(again.stderr).error.code).toBe('CONFLICT');
  });

  it('exits 2 naming the field for invalid input, and 1 for an unknown key', async () => {
    const bad = await runCli(['keys', 'create', '--name', 'x', '--cidrs', '300.1.1.1/8'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('allowedCidrs.0');
    const nan = await runCli(['keys', 'create', '--name', 'x', '--cps', 'fast'], env);
    expect(nan.code).toBe(2);
    expect(nan.stderr).toContain('callsPerSecond');
    const unknownFlag = await runCli(['keys', 'create', '--name', 'x', '--colour', 'red'], env);
    expect(unknownFlag.code).toBe(2);
    const missing = await runCli(['keys', 'show', 'key_nothere'], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('NOT_FOUND');
    const help = await runCli(['keys', 'create', '--help'], env);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--max-concurrent');
  });

  it('mints a token only for a key that holds tokens:mint', async () => {
    const minter = await json(['keys', 'create', '--name', 'app', '--scopes', 'tokens:mint,calls:outbound']);
    rememberSecret(minter.secret);
    const t = await json(['tokens', 'mint', '--key-id', minter.key.id, '--ttl', '30', '--destination', '+14155550100']);
    rememberSecret(t.token);
    expect(t).toMatchObject({ keyId: minter.key.id, scopes: ['calls:outbound'], destination: '+14155550100' });
    const plain = await json(['keys', 'create', '--name', 'plain', '--scopes', 'usage:read']);
    rememberSecret(plain.secret);
    const refused = await runCli(['tokens', 'mint', '--key-id', plain.key.id], env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('SCOPE_NOT_GRANTED');
    const tooLong = await runCli(['tokens', 'mint', '--key-id', minter.key.id, '--ttl', '7200'], env);
    expect(tooLong.code).toBe(2);
  });

  it('lists the audit log, verifies it, and names the entry that was edited', async () => {
    const listed = await json(['audit', 'list', '--limit', '5']);
    expect(listed.entries.length).toBeGreaterThan(0);
    expect(listed.entries[0].seq).toBeGreaterThan(listed.entries[listed.entries.length - 1].seq);
    expect((await json(['audit', 'verify'])).ok).toBe(true);

    const db = new Database(join(dataDir, 'tollgate.db'));
    db.prepare("UPDATE audit_log SET details = json_set(details, '$.name', 'someone else') WHERE seq = 2").run();
    db.close();
    const broken = await runCli(['audit', 'verify', '--json'], env);
    expect(broken.code).toBe(1);
    expect(JSON.parse(broken.stdout)).toMatchObject({ ok: false, seq: 2, problem: 'edited' });
    const human = await runCli(['audit', 'verify'], env);
    expect(human.stdout).toContain('BROKEN at entry 2');
  });

  describe('scan', () => {
    let repo: string;
    beforeAll(() => {
      repo = mkdtempSync(join(tmpdir(), 'tollgate-scan-'));
    });
    afterAll(() => rmSync(repo, { recursive: true, force: true }));
    const git = (...args: string[]) => execFileSync('git', ['-c', 'user.email=t@example.com', '-c', 'user.name=T', '-c', 'commit.gpgsign=false', ...args], { cwd: repo, stdio: 'pipe' });

    it('exits 0 on a clean tree and 1 with file, line and hint (never the key) when it finds one', async () => {
      writeFileSync(join(repo, 'clean.txt'), 'nothing here tg_live_short\n');
      const clean = await runCli(['scan', repo], env);
      expect(clean.code).toBe(0);
      expect(clean.stdout).toContain('no tollgate keys found');

      const k = await json(['keys', 'create', '--name', 'leaky']);
      rememberSecret(k.secret);
      mkdirSync(join(repo, 'src'));
      writeFileSync(join(repo, 'src', 'config.ts'), `// settings\nexport const key = "${k.secret}";\n`);
      const found = await runCli(['scan', repo, '--json'], env);
      expect(found.code).toBe(1);
      expect(found.stdout).not.toContain(k.secret);
      const report = JSON.parse(found.stdout);
      expect(report.findings).toEqual([{ file: join(repo, 'src', 'config.ts'), line: 2, column: 21, mode: 'live', hint: k.key.hint }]);
    });

    it('finds a key in git history after it was deleted, and a staged key', async () => {
      git('init', '-q');
      git('add', '.');
      git('commit', '-qm', 'add config');
      rmSync(join(repo, 'src', 'config.ts'));
      git('add', '-A');
      git('commit', '-qm', 'remove config');
      const tree = await runCli(['scan', repo], env);
      expect(tree.code).toBe(0);
      const history = await runCli(['scan', '--git', '--json'], env, { cwd: repo });
      expect(history.code).toBe(1);
      const [f] = JSON.parse(history.stdout).findings;
      expect(f).toMatchObject({ file: 'src/config.ts', line: 2 });
      expect(f.commit).toMatch(/^[0-9a-f]{40}$/);

      const k = await json(['keys', 'create', '--name', 'staged']);
      rememberSecret(k.secret);
      writeFileSync(join(repo, '.env'), `TOLLGATE_KEY=${k.secret}\n`);
      git('add', '.env');
      const staged = await runCli(['scan', '--staged'], env, { cwd: repo });
      expect(staged.code).toBe(1);
      expect(staged.stdout).toContain('.env:1:14: live key');
      const notRepo = await runCli(['scan', '--git'], env, { cwd: tmpdir() });
      expect(notRepo.code).toBe(1);
      expect(notRepo.stderr).toContain('SCAN_FAILED');
    });

    it('--quarantine suspends a found key that exists in the store', async () => {
      const k = await json(['keys', 'create', '--name', 'to-quarantine']);
      rememberSecret(k.secret);
      const dir = mkdtempSync(join(tmpdir(), 'tollgate-q-'));
      writeFileSync(join(dir, 'ticket.txt'), `customer pasted ${k.secret} in a ticket\n`);
      const r = await runCli(['scan', dir, '--quarantine', '--json'], env);
      rmSync(dir, { recursive: true, force: true });
      expect(r.code).toBe(1);
      expect(JSON.parse(r.stdout).quarantined).toEqual([k.key.id]);
      expect((await json(['keys', 'show', k.key.id])).key.status).toBe('quarantined');
      const log = await json(['audit', 'list', '--target', k.key.id]);
      expect(log.entries[0]).toMatchObject({ action: 'key.quarantined' });
    });
  });

  it('exits 2 with a clear message when a SIP port is taken, leaving nothing running', async () => {
    const { createSocket } = await import('node:dgram');
    const taken = createSocket('udp4');
    await new Promise<void>((r) => taken.bind(0, '127.0.0.1', () => r()));
    try {
      const r = await runCli(['serve', '--port', '0'], { ...env, TOLLGATE_SIP__UDP_PORT: String(taken.address().port) }, { timeoutMs: 20_000 });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`cannot listen for SIP on 127.0.0.1:${taken.address().port} (EADDRINUSE)`);
    } finally {
      taken.close();
    }
  });

  it('refuses a bad configuration at start, naming the field', async () => {
    const bad = await runCli(['serve', '--port', '0'], { ...env, TOLLGATE_STORE__DRIVER: 'mysql' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('store.driver');
    const file = join(dataDir, 'bad.yaml');
    writeFileSync(file, 'http:\n  port: 99999\n');
    const fromFile = await runCli(['--config', file, 'keys', 'list'], env);
    expect(fromFile.code).toBe(2);
    expect(fromFile.stderr).toContain('http.port');
    const noSecrets = await runCli(['keys', 'list'], { ...env, TOLLGATE_SECRETS__AUTO_GENERATE: 'false' });
    expect(noSecrets.code).toBe(2);
    expect(noSecrets.stderr).toContain('secrets.pepper');
  });
});
