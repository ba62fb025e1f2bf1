import { mkdtempSync, readdirSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { findLeakedSecrets } from '../helpers/leak-check.js';

/**
 * One run directory for the whole integration suite: every gateway process writes its logs
 * under logs/, every test records each secret it sees in secrets/. At the end, teardown fails
 * the run if any of those secrets appears in any log (docs/security.md).
 */
export default function setup(project: TestProject): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-it-'));
  process.env.TOLLGATE_IT_DIR = dir;
  project.provide('itDir', dir);
  return () => {
    const logsDir = join(dir, 'logs');
    const secretsDir = join(dir, 'secrets');
    const logs = existsSync(logsDir) ? readdirSync(logsDir).map((f) => ({ name: f, text: readFileSync(join(logsDir, f), 'utf8') })) : [];
    const secrets = existsSync(secretsDir)
      ? readdirSync(secretsDir).flatMap((f) => readFileSync(join(secretsDir, f), 'utf8').split('\n').filter(Boolean))
      : [];
    const leaks = findLeakedSecrets(logs, secrets);
    const summary = `log leak check: ${secrets.length} secrets against ${logs.length} log files (${logs.reduce((n, l) => n + l.text.length, 0)} bytes)`;
    if (leaks.length > 0) {
      throw new Error(`${summary}: ${leaks.length} leaked, first in ${leaks[0]!.file} (secret kind: ${leaks[0]!.kind}); logs kept in ${logsDir}`);
    }
    if (logs.length === 0) {
      // Only files that start no gateway ran (e.g. one test file on its own): nothing to check.
      process.stdout.write('log leak check: no gateway logs in this run\n');
      rmSync(dir, { recursive: true, force: true });
      return;
    }
    if (secrets.length === 0) {
      throw new Error(`${summary}: the integration suite recorded no secrets or no logs, so the leak check proved nothing`);
    }
    process.stdout.write(`${summary}: none leaked\n`);
    rmSync(dir, { recursive: true, force: true });
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    itDir: string;
  }
}
