/**
 * Runs the whole suite (unit + integration) several times in a row and stops at the first
 * failure, to show the suite is deterministic; with --hogs, while CPU hogs keep every core busy,
 * to show it also holds on a loaded machine (docs/testing.md).
 *
 *   npm run test:soak                      5 runs on the machine as it is
 *   npm run test:soak -- --runs 3 --hogs 2 3 runs beside 2 busy-looping processes
 *
 * Set-up (scripts/test-setup.ts) and the build run once first. Each run's output goes to
 * coverage/soak/run-N.log; a summary line per run gives its result, duration and the load
 * average. The hogs are this script's children and are killed however it ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = resolve(import.meta.dirname, '..');
const OUT = join(ROOT, 'coverage', 'soak');

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    hogs: { type: 'string', default: '0' },
  },
});
const runs = Number(values.runs);
const hogCount = Number(values.hogs);
if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(hogCount) || hogCount < 0) {
  process.stderr.write('usage: npm run test:soak -- [--runs N (default 5)] [--hogs N (default 0)]\n');
  process.exit(2);
}

const hogs: ChildProcess[] = [];
function killHogs(): void {
  for (const h of hogs.splice(0)) h.kill('SIGKILL');
}
process.on('exit', killHogs);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    killHogs();
    process.exit(130);
  });
}

const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');
const minutes = (ms: number) => `${Math.floor(ms / 60_000)}m${String(Math.round((ms % 60_000) / 1000)).padStart(2, '0')}s`;

/** Runs `cmd`, its output to `log` (and the terminal when no log), and resolves with its exit code. */
function run(cmd: string, args: string[], log?: string): Promise<number> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, TOLLGATE_TEST_REQUIRE_TOOLS: '1' }, stdio: log ? ['ignore', 'pipe', 'pipe'] : 'inherit' });
    if (log) {
      const out = createWriteStream(log);
      child.stdout!.pipe(out);
      child.stderr!.pipe(out);
    }
    child.on('error', rej);
    child.on('close', (code) => res(code ?? 1));
  });
}

interface Report {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  testResults: { name: string; assertionResults: { fullName: string; status: string }[]; message?: string }[];
}

function readReport(file: string): Report | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Report;
  } catch {
    return null;
  }
}

async function main(): Promise<number> {
  if ((await run('npm', ['run', '--silent', 'test:setup'])) !== 0) return 1;
  if ((await run('npm', ['run', '--silent', 'build'])) !== 0) return 1;
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });

  // Each hog busy-loops and exits on its own if this script dies without killing it (its parent changes).
  const hog = `const p = process.ppid; for (let i = 1; ; i++) if (i % 1e7 === 0 && process.ppid !== p) process.exit(0);`;
  for (let i = 0; i < hogCount; i++) hogs.push(spawn(process.execPath, ['-e', hog], { stdio: 'ignore' }));
  process.stdout.write(`soak: ${runs} run(s) of the whole suite${hogCount ? ` beside ${hogCount} CPU hog(s)` : ''}; load average ${load()}; logs in ${OUT}\n`);

  const vitest = join(ROOT, 'node_modules', '.bin', 'vitest');
  const durations: number[] = [];
  let failedRun = 0;
  for (let n = 1; n <= runs; n++) {
    const log = join(OUT, `run-${n}.log`);
    const json = join(OUT, `run-${n}.json`);
    const started = Date.now();
    const code = await run(vitest, ['run', '--reporter=default', '--reporter=json', `--outputFile.json=${json}`], log);
    const ms = Date.now() - started;
    durations.push(ms);
    const r = readReport(json);
    const counts = r ? `${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests} skipped` : 'no report';
    process.stdout.write(`run ${n}/${runs}: ${code === 0 ? 'passed' : `FAILED (exit ${code})`}: ${counts} in ${minutes(ms)}; load average ${load()}\n`);
    if (code !== 0) {
      failedRun = n;
      for (const f of r?.testResults ?? []) {
        const failed = f.assertionResults.filter((a) => a.status === 'failed');
        for (const a of failed) process.stdout.write(`  failed: ${f.name.replace(`${ROOT}/`, '')} > ${a.fullName}\n`);
        if (failed.length === 0 && f.message) process.stdout.write(`  failed: ${f.name.replace(`${ROOT}/`, '')}: ${f.message.split('\n')[0]}\n`);
      }
      process.stdout.write(`  output: ${log}\n`);
      break;
    }
  }
  killHogs();
  const done = durations.length;
  const passed = failedRun ? done - 1 : done;
  process.stdout.write(
    `soak: ${passed} of ${runs} run(s) passed, ${failedRun ? 1 : 0} failed${failedRun ? ` (run ${failedRun}; stopped there)` : ''}` +
      `${hogCount ? ` with ${hogCount} CPU hog(s)` : ''}; durations ${durations.map(minutes).join(', ')}\n`,
  );
  return failedRun ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`test:soak failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
