import { describe, it, expect } from 'vitest';
import { generateKeySecret } from '../keys/key-format.js';
import { createLogger, scrubSecrets, type Logger } from './logger.js';

function collectingLogger(): { log: Logger; lines: string[]; parsed: () => Record<string, unknown>[] } {
  const lines: string[] = [];
  const log = createLogger({ level: 'trace', destination: { write: (s: string) => void lines.push(s) } });
  return { log, lines, parsed: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

// A JWT-shaped string (header.payload.signature, base64url).
const JWT =
  'eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJrZXlfYWJjIiwiZXhwIjoxNzAwMDAwMDAwfQ.c2lnbmF0dXJlLW9mLXRoZS10b2tlbi1oZXJl';

describe('createLogger redaction', () => {
  it('redacts secret-bearing fields and never writes their values', () => {
    const { log, lines, parsed } = collectingLogger();
    const values = {
      authorization: 'Bearer auth-value-0001',
      headerAuth: 'Basic header-auth-value-0002',
      secret: 'secret-value-0003',
      token: 'token-value-0004',
      password: 'password-value-0005',
      pepper: 'pepper-value-0006',
      masterKey: 'master-key-value-0007',
      nestedPassword: 'nested-password-0008',
    };
    log.info({ authorization: values.authorization }, 'top-level authorization');
    log.info({ req: { method: 'GET', headers: { authorization: values.headerAuth, 'user-agent': 'curl/8' } } }, 'request');
    log.info({ secret: values.secret, token: values.token, password: values.password }, 'credentials');
    log.info({ config: { http: { port: 8080 }, secrets: { pepper: values.pepper, masterKey: values.masterKey } } }, 'config');
    log.info({ user: { name: 'ada', password: values.nestedPassword } }, 'nested');

    const out = lines.join('');
    expect(lines).toHaveLength(5);
    for (const v of Object.values(values)) expect(out).not.toContain(v);
    expect(out).toContain('[redacted]');

    const [a, b, c, d, e] = parsed();
    expect(a!.authorization).toBe('[redacted]');
    expect((b!.req as { headers: Record<string, unknown> }).headers).toEqual({ authorization: '[redacted]', 'user-agent': 'curl/8' });
    expect(c).toMatchObject({ secret: '[redacted]', token: '[redacted]', password: '[redacted]' });
    // The rest of config stays visible; only the secrets subtree goes.
    expect(d!.config).toEqual({ http: { port: 8080 }, secrets: '[redacted]' });
    expect(e!.user).toEqual({ name: 'ada', password: '[redacted]' });
  });

  it('scrubs keys and JWTs from message strings, including format arguments', () => {
    const { log, lines, parsed } = collectingLogger();
    const live = generateKeySecret('live');
    const test = generateKeySecret('test');
    log.warn(`client sent ${live} and ${JWT}`);
    log.warn({ keyId: 'key_1' }, 'retrying with %s', test);

    const out = lines.join('');
    for (const v of [live, test, JWT, live.slice(8, 40)]) expect(out).not.toContain(v);
    const [first, second] = parsed();
    expect(first!.msg).toBe('client sent [redacted] and [redacted]');
    expect(second!.msg).toBe('retrying with [redacted]');
    expect(second!.keyId).toBe('key_1');
  });

  it('scrubs a key from an Error message and stack in the err serializer', () => {
    const { log, lines, parsed } = collectingLogger();
    const key = generateKeySecret('live');
    log.error({ err: new Error(`lookup failed for ${key}`) }, 'authentication error');

    const out = lines.join('');
    expect(out).not.toContain(key);
    const err = parsed()[0]!.err as { type: string; message: string; stack: string };
    expect(err.type).toBe('Error');
    expect(err.message).toBe('lookup failed for [redacted]');
    expect(err.stack).toContain('lookup failed for [redacted]');
  });

  it('writes nothing below the configured level', () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'warn', destination: { write: (s: string) => void lines.push(s) } });
    log.info('not written');
    log.warn('written');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('"level":"warn"');
  });
});

describe('createLogger last-line scrubbing', () => {
  it('scrubs a key from an Error logged on its own, whose message pino copies into msg', () => {
    const key = generateKeySecret('live');
    const { log, lines } = collectingLogger();
    log.error(new Error(`bad ${key}`));
    log.info({ msg: `key ${key}` });
    expect(lines).toHaveLength(2);
    for (const l of lines) {
      expect(l).not.toContain(key);
      expect(l).toContain('[redacted]');
    }
  });
});

describe('scrubSecrets', () => {
  it('replaces keys and JWTs and leaves other text alone', () => {
    const key = generateKeySecret('test');
    expect(scrubSecrets(`a ${key} b ${JWT} c`)).toBe('a [redacted] b [redacted] c');
    expect(scrubSecrets('key_abc tg_live_short eyJ.x.y')).toBe('key_abc tg_live_short eyJ.x.y');
  });
});
