import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nodeSupported, printable, report, TOOLS, type Findings } from './test-setup.js';

const ROOT = resolve(import.meta.dirname, '..');
const TSX = join(ROOT, 'node_modules/tsx/dist/loader.mjs');
/** A PATH with nothing on it: the machine has none of the tools. */
const emptyPath = mkdtempSync(join(tmpdir(), 'tollgate-empty-path-'));
afterAll(() => rmSync(emptyPath, { recursive: true, force: true }));

/** Runs the set-up script as `npm test` does, on a machine without tools or services (port 1 refuses). */
function runSetup(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['--import', TSX, join(ROOT, 'scripts/test-setup.ts'), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 30_000,
    env: {
      HOME: process.env.HOME ?? tmpdir(),
      PATH: emptyPath,
      TOLLGATE_TEST_PG_URL: 'postgres://tester:hunter2pw@127.0.0.1:1/test',
      TOLLGATE_TEST_REDIS_URL: 'redis://127.0.0.1:1',
      ...env,
    },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('the test set-up (scripts/test-setup.ts)', () => {
  it('--check on a machine without the peers: lists each one and how to get it, changes nothing, exits 1', () => {
    const r = runSetup(['--check']);
    expect(r.status).toBe(1);
    // Nothing was run: no apt-get, no service started (each command it runs is echoed with "+ ").
    expect(r.stdout).not.toMatch(/^\+ /m);
    expect(r.stderr).toContain('no test was run');
    for (const t of TOOLS) expect(r.stderr).toContain(`- ${t.name}, for ${t.usedBy}`);
    const packages = [...new Set(TOOLS.flatMap((t) => t.packages))];
    const install = r.stderr.split('\n').find((l) => l.includes('apt-get install')) ?? r.stderr;
    for (const p of packages) expect(install).toContain(p);
    expect(r.stderr).toMatch(/PostgreSQL at postgres:\/\/tester:\*\*\*@127\.0\.0\.1:1\/test \(TOLLGATE_TEST_PG_URL\): .*ECONNREFUSED/);
    expect(r.stderr).toMatch(/Redis at redis:\/\/127\.0\.0\.1:1 \(TOLLGATE_TEST_REDIS_URL\): .*ECONNREFUSED/);
    expect(r.stderr).not.toContain('hunter2pw');
    expect(r.stderr).toContain('npm run test:unit');
  });

  it('TOLLGATE_TEST_SETUP=check is --check: for peers managed by hand, presence is still checked', () => {
    const r = runSetup([], { TOLLGATE_TEST_SETUP: 'check' });
    expect(r.status).toBe(1);
    expect(r.stdout).not.toMatch(/^\+ /m);
    expect(r.stderr).toContain('- SIPp, for');
  });

  const none: Findings = { nodeOk: true, missingTools: [], sippNeedsRawSocket: false, pg: { ok: true }, redis: { ok: true } };
  const ctx = { pgUrl: 'postgres://postgres@127.0.0.1:5432/test', redisUrl: 'redis://127.0.0.1:6379' };

  it('names the apt-get line with sudo for a normal user, and only what is missing', () => {
    const sox = TOOLS.find((t) => t.name === 'sox')!;
    const text = report({ ...none, missingTools: [sox], sippNeedsRawSocket: true }, { ...ctx, root: false, debian: true });
    expect(text).toContain('sudo apt-get update && sudo apt-get install -y --no-install-recommends sox\n');
    expect(text).toContain('sudo setcap cap_net_raw+ep');
    expect(text).not.toContain('PostgreSQL at');
  });

  it('off Debian, names the packages to find equivalents for instead of an apt-get line', () => {
    const text = report({ ...none, missingTools: [...TOOLS] }, { ...ctx, root: true, debian: false });
    expect(text).not.toContain('apt-get');
    expect(text).toContain('not a Debian system');
  });

  it('knows the supported Node versions (package.json engines)', () => {
    expect(['20.15.0', '20.20.2', '22.0.0', '24.1.0'].map(nodeSupported)).toEqual([true, true, true, true]);
    expect(['18.20.0', '20.14.9', '21.7.3'].map(nodeSupported)).toEqual([false, false, false]);
  });

  it('prints service URLs without their password', () => {
    expect(printable('postgres://u:secret@db:5432/test')).toBe('postgres://u:***@db:5432/test');
    expect(printable('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
  });
});
