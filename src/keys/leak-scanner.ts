import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { KEY_PATTERN, keyHint, parseKeySecret } from './key-format.js';

/** A leaked key found by the scanner. `secret` stays in memory for --quarantine; never print it. */
export interface Finding {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly mode: 'live' | 'test';
  readonly hint: string;
  /** Commit that added the line, when scanning git history. */
  readonly commit?: string;
  readonly secret: string;
}

const SKIP_DIRS = new Set(['.git', 'node_modules', 'dist', 'coverage', '.cache']);
const MAX_FILE_BYTES = 20 * 1024 * 1024;
const MAX_LINE = 1024 * 1024;

/**
 * Finds tollgate keys in a line: the prefix and length pattern, then the CRC32 checksum, so
 * random base62 text almost never matches (a false positive needs a 1 in 2^32 checksum hit).
 */
export function findKeysInLine(text: string): { index: number; secret: string; mode: 'live' | 'test' }[] {
  if (!text.includes('tg_')) return [];
  const out: { index: number; secret: string; mode: 'live' | 'test' }[] = [];
  for (const m of text.matchAll(KEY_PATTERN)) {
    const parsed = parseKeySecret(m[0]);
    if (parsed) out.push({ index: m.index, secret: m[0], mode: parsed.mode });
  }
  return out;
}

function finding(file: string, line: number, hit: { index: number; secret: string; mode: 'live' | 'test' }, commit?: string): Finding {
  return { file, line, column: hit.index + 1, mode: hit.mode, hint: keyHint(hit.secret), secret: hit.secret, ...(commit ? { commit } : {}) };
}

async function scanFile(path: string, out: Finding[]): Promise<void> {
  const st = await lstat(path);
  if (!st.isFile() || st.size > MAX_FILE_BYTES) return;
  const rl = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  let n = 0;
  for await (const line of rl) {
    n++;
    for (const hit of findKeysInLine(line.length > MAX_LINE ? line.slice(0, MAX_LINE) : line)) out.push(finding(path, n, hit));
  }
}

async function walk(path: string, out: Finding[], onError: (path: string, err: unknown) => void): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    onError(path, err);
    return;
  }
  if (st.isSymbolicLink()) return;
  if (st.isDirectory()) {
    let entries: string[];
    try {
      entries = (await readdir(path)).sort();
    } catch (err) {
      onError(path, err);
      return;
    }
    for (const e of entries) if (!SKIP_DIRS.has(e)) await walk(join(path, e), out, onError);
    return;
  }
  try {
    await scanFile(path, out);
  } catch (err) {
    onError(path, err);
  }
}

/** Scans files and directories (recursively, skipping .git, node_modules, dist and symlinks). */
export async function scanPaths(paths: readonly string[], onError: (path: string, err: unknown) => void = () => {}): Promise<Finding[]> {
  const out: Finding[] = [];
  for (const p of paths) await walk(p, out, onError);
  return out;
}

/**
 * Scans added lines of a git diff stream: `git log -p --all` (whole history) or
 * `git diff --cached` (what is about to be committed, for a pre-commit hook).
 */
export async function scanGit(cwd: string, mode: 'history' | 'staged'): Promise<Finding[]> {
  const args = mode === 'history'
    ? ['log', '--all', '-p', '--no-color', '--no-ext-diff', '--format=commit %H', '--unified=0', '--no-renames']
    : ['diff', '--cached', '--no-color', '--no-ext-diff', '--unified=0', '--no-renames'];
  const child = spawn('git', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  const out: Finding[] = [];
  let commit: string | undefined;
  let file = '';
  let newLine = 0;
  // File headers (diff --git, ---, +++) come before a file's first hunk; inside hunks a line
  // starting "+++" is an added line that begins with "++", not a header.
  let inHeader = false;
  const rl = createInterface({ input: child.stdout, crlfDelay: Infinity });
  for await (const line of rl) {
    if (line.startsWith('commit ') && line.length === 47 && /^commit [0-9a-f]{40}$/.test(line)) {
      commit = line.slice(7);
      inHeader = false;
    } else if (line.startsWith('diff --git ')) {
      inHeader = true;
      file = '';
    } else if (inHeader && line.startsWith('+++ ')) {
      file = line.startsWith('+++ b/') ? line.slice(6) : line.slice(4);
    } else if (line.startsWith('@@')) {
      inHeader = false;
      const m = /\+(\d+)/.exec(line);
      newLine = m ? Number(m[1]) : 0;
    } else if (!inHeader && line.startsWith('+')) {
      for (const hit of findKeysInLine(line.slice(1))) out.push(finding(file, newLine, { ...hit, index: hit.index }, commit));
      newLine++;
    }
  }
  const code: number = await new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.on('close', (c) => resolve(c ?? 1));
  });
  if (code !== 0) throw new Error(`git ${args[0]} failed (${code}): ${stderr.trim().split('\n')[0] ?? ''}`);
  return out;
}
