import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ERROR_CODES, TollgateError } from './tollgate-error.js';

const doc = readFileSync(resolve(import.meta.dirname, '../../docs/errors.md'), 'utf8');
const documented = new Map(
  [...doc.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1]!, Number(m[2])]),
);

describe('error codes', () => {
  it('every code is documented in docs/errors.md with its HTTP status', () => {
    for (const [code, { httpStatus }] of Object.entries(ERROR_CODES)) {
      expect(documented.get(code), `${code} missing from docs/errors.md`).toBe(httpStatus);
    }
  });

  it('docs/errors.md lists no code the program does not have', () => {
    for (const code of documented.keys()) expect(Object.keys(ERROR_CODES)).toContain(code);
  });

  it('a TollgateError carries its code, status, retryability and cause', () => {
    const cause = new Error('socket closed');
    const e = new TollgateError('RATE_LIMITED', 'slow down', { cause, details: { retryAfterMs: 5 } });
    expect([e.code, e.httpStatus, e.retryable, e.cause, e.details]).toEqual(['RATE_LIMITED', 429, true, cause, { retryAfterMs: 5 }]);
  });
});
