import { TollgateError, isTollgateError } from '../errors/index.js';

/** Exit codes: 0 done, 1 refused/failed or findings, 2 usage or configuration error. */
export const EXIT = { OK: 0, FAILED: 1, USAGE: 2 } as const;

export interface Out {
  json: boolean;
  print(human: string, data: unknown): void;
}

export function makeOut(json: boolean): Out {
  return {
    json,
    print(human, data) {
      process.stdout.write(json ? JSON.stringify(data, null, 2) + '\n' : human.endsWith('\n') ? human : human + '\n');
    },
  };
}

/** Prints an error (JSON on stderr with --json) and returns the exit code to use. */
export function reportError(err: unknown, json: boolean): number {
  const e = isTollgateError(err) ? err : new TollgateError('INTERNAL', (err as Error)?.message ?? String(err), { cause: err });
  if (json) process.stderr.write(JSON.stringify({ error: { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) } }) + '\n');
  else process.stderr.write(`tollgate: ${e.code}: ${e.message}\n`);
  return e.code === 'CONFIG_INVALID' || e.code === 'VALIDATION_FAILED' ? EXIT.USAGE : EXIT.FAILED;
}

export function table(rows: Record<string, unknown>[], columns: string[]): string {
  if (rows.length === 0) return '(none)';
  const cells = rows.map((r) => columns.map((c) => {
    const v = r[c];
    if (v === null || v === undefined) return '-';
    if (Array.isArray(v)) return v.join(',') || '-';
    return typeof v === 'string' ? v : JSON.stringify(v);
  }));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n');
}
