import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeySecret } from './key-format.js';
import { findKeysInLine, scanGit, scanPaths, type Finding } from './leak-scanner.js';
import { hasCommand } from '../testing/system-tools.js';

const B62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function randomBase62(n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += B62[randomInt(62)]!;
  return s;
}

/** The key with its last checksum character replaced by a different one. */
function breakChecksum(key: string): string {
  const last = key.slice(-1);
  return key.slice(0, -1) + (last === 'A' ? 'B' : 'A');
}

function expectNoSecretInHints(findings: readonly Finding[]): void {
  for (const f of findings) {
    expect(f.hint).not.toContain(f.secret);
    expect(f.hint.length).toBeLessThan(f.secret.length);
  }
}

describe('findKeysInLine', () => {
  it('finds a key inside JSON', () => {
    const key = generateKeySecret('live');
    const line = JSON.stringify({ apiKey: key, other: 'value' });
    const hits = findKeysInLine(line);
    expect(hits).toEqual([{ index: line.indexOf(key), secret: key, mode: 'live' }]);
  });

  it('finds a key in an env file assignment', () => {
    const key = generateKeySecret('test');
    const line = `TOLLGATE_API_KEY=${key}`;
    expect(findKeysInLine(line)).toEqual([{ index: 'TOLLGATE_API_KEY='.length, secret: key, mode: 'test' }]);
  });

  it('finds a key in a URL query string', () => {
    const key = generateKeySecret('live');
    const line = `curl "https://gw.example.com/v1/calls?api_key=${key}&to=%2B15551234567"`;
    const hits = findKeysInLine(line);
    expect(hits.map((h) => h.secret)).toEqual([key]);
    expect(hits[0]!.index).toBe(line.indexOf(key));
  });

  it('ignores a key whose checksum is broken', () => {
    const key = generateKeySecret('live');
    expect(findKeysInLine(`KEY=${breakChecksum(key)}`)).toEqual([]);
  });

  it('ignores 200 random tg_live_ strings of key length that fail the checksum', () => {
    let found = 0;
    for (let i = 0; i < 200; i++) found += findKeysInLine(`token: tg_live_${randomBase62(49)}`).length;
    expect(found).toBe(0);
  });

  it('finds two keys on one line at their columns', () => {
    const a = generateKeySecret('live');
    const b = generateKeySecret('test');
    const line = `primary=${a}, fallback=${b}`;
    const hits = findKeysInLine(line);
    expect(hits).toEqual([
      { index: 'primary='.length, secret: a, mode: 'live' },
      { index: `primary=${a}, fallback=`.length, secret: b, mode: 'test' },
    ]);
  });

  it('finds nothing in a line without a key', () => {
    expect(findKeysInLine('nothing to see here tg_ maybe')).toEqual([]);
    expect(findKeysInLine('')).toEqual([]);
  });
});

describe('scanPaths', () => {
  let dir: string;
  let outside: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tollgate-scan-'));
    outside = mkdtempSync(join(tmpdir(), 'tollgate-scan-outside-'));
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  });

  it('reports file, line and column of keys in a directory tree', async () => {
    const k1 = generateKeySecret('live');
    const k2 = generateKeySecret('test');
    mkdirSync(join(dir, 'src', 'deep'), { recursive: true });
    writeFileSync(join(dir, 'src', 'config.json'), `{\n  "name": "x",\n  "key": "${k1}"\n}\n`);
    writeFileSync(join(dir, 'src', 'deep', '.env'), `# comment\n\nexport KEY=${k2}\n`);
    writeFileSync(join(dir, 'clean.txt'), 'no keys here\n');

    const findings = await scanPaths([dir]);
    const byFile = new Map(findings.map((f) => [f.file, f]));
    expect(findings).toHaveLength(2);

    const f1 = byFile.get(join(dir, 'src', 'config.json'))!;
    expect(f1).toMatchObject({ line: 3, column: '  "key": "'.length + 1, mode: 'live', secret: k1 });
    const f2 = byFile.get(join(dir, 'src', 'deep', '.env'))!;
    expect(f2).toMatchObject({ line: 3, column: 'export KEY='.length + 1, mode: 'test', secret: k2 });
    expect(f1.commit).toBeUndefined();
    expectNoSecretInHints(findings);
  });

  it('skips node_modules and .git directories', async () => {
    const visible = generateKeySecret('live');
    mkdirSync(join(dir, 'node_modules', 'pkg'), { recursive: true });
    mkdirSync(join(dir, '.git', 'objects'), { recursive: true });
    writeFileSync(join(dir, 'node_modules', 'pkg', 'index.js'), `const k = '${generateKeySecret('live')}';\n`);
    writeFileSync(join(dir, '.git', 'objects', 'blob'), `${generateKeySecret('live')}\n`);
    writeFileSync(join(dir, 'app.js'), `const k = '${visible}';\n`);

    const findings = await scanPaths([dir]);
    expect(findings.map((f) => f.file)).toEqual([join(dir, 'app.js')]);
    expect(findings[0]!.secret).toBe(visible);
  });

  it('does not follow symlinks to files or directories', async () => {
    writeFileSync(join(outside, 'secret.txt'), `${generateKeySecret('live')}\n`);
    mkdirSync(join(outside, 'sub'));
    writeFileSync(join(outside, 'sub', 'more.txt'), `${generateKeySecret('live')}\n`);
    symlinkSync(join(outside, 'secret.txt'), join(dir, 'link-to-file.txt'));
    symlinkSync(join(outside, 'sub'), join(dir, 'link-to-dir'));
    writeFileSync(join(dir, 'plain.txt'), 'nothing\n');

    expect(await scanPaths([dir])).toEqual([]);
    // The targets do hold keys: scanning them directly finds both.
    expect(await scanPaths([outside])).toHaveLength(2);
  });

  it('reports unreadable paths to onError instead of throwing', async () => {
    const errors: string[] = [];
    const findings = await scanPaths([join(dir, 'does-not-exist')], (p) => errors.push(p));
    expect(findings).toEqual([]);
    expect(errors).toEqual([join(dir, 'does-not-exist')]);
  });
});

describe.skipIf(!hasCommand('git'))('scanGit (skipped without git)', () => {
  let repo: string;
  const git = (...args: string[]): string =>
    execFileSync('git', ['-c', 'user.email=test@example.com', '-c', 'user.name=Test', '-c', 'commit.gpgsign=false', ...args], {
      cwd: repo,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();

  beforeEach(() => {
    repo = mkdtempSync(join(tmpdir(), 'tollgate-git-'));
    git('init', '-q');
  });

  afterEach(() => {
    rmSync(repo, { recursive: true, force: true });
  });

  it('finds a key in history after it was removed, with the commit that added it', async () => {
    const key = generateKeySecret('live');
    writeFileSync(join(repo, 'README.md'), '# project\n');
    git('add', 'README.md');
    git('commit', '-q', '-m', 'initial');

    writeFileSync(join(repo, 'settings.env'), `A=1\nB=2\nAPI_KEY=${key}\n`);
    git('add', 'settings.env');
    git('commit', '-q', '-m', 'add settings');
    const added = git('rev-parse', 'HEAD');

    writeFileSync(join(repo, 'settings.env'), 'A=1\nB=2\n');
    git('add', 'settings.env');
    git('commit', '-q', '-m', 'remove key');
    const removed = git('rev-parse', 'HEAD');
    expect(removed).not.toBe(added);

    const findings = await scanGit(repo, 'history');
    expect(findings).toHaveLength(1);
    expect(findings[0]).toMatchObject({ file: 'settings.env', line: 3, column: 'API_KEY='.length + 1, mode: 'live', commit: added, secret: key });
    expectNoSecretInHints(findings);
  });

  it('finds a staged key and nothing once it is unstaged', async () => {
    writeFileSync(join(repo, 'README.md'), '# project\n');
    git('add', 'README.md');
    git('commit', '-q', '-m', 'initial');

    const key = generateKeySecret('test');
    writeFileSync(join(repo, 'client.ts'), `export const k = '${key}';\n`);
    git('add', 'client.ts');

    const staged = await scanGit(repo, 'staged');
    expect(staged).toHaveLength(1);
    expect(staged[0]).toMatchObject({ file: 'client.ts', line: 1, column: "export const k = '".length + 1, mode: 'test', secret: key });
    expect(staged[0]!.commit).toBeUndefined();
    expectNoSecretInHints(staged);

    git('reset', '-q', 'HEAD', '--', 'client.ts');
    expect(await scanGit(repo, 'staged')).toEqual([]);
  });

  it('an added line that begins with "++" is content, not a file header', async () => {
    const [a, b] = [generateKeySecret('live'), generateKeySecret('live')];
    writeFileSync(join(repo, 'notes.md'), `++ ${a}\nkey2 ${b}\n`);
    git('add', 'notes.md');
    git('commit', '-q', '-m', 'notes');
    const findings = await scanGit(repo, 'history');
    expect(findings.map((f) => [f.file, f.line, f.secret])).toEqual([
      ['notes.md', 1, a],
      ['notes.md', 2, b],
    ]);
  });
});
