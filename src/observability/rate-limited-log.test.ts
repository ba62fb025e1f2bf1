import { describe, it, expect } from 'vitest';
import pino from 'pino';
import { RateLimitedLog } from './rate-limited-log.js';

function capture(level = 'debug'): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  return { log, lines };
}

describe('RateLimitedLog', () => {
  it('writes at most `burst` lines per key per interval, and reports how many it dropped on the next line', () => {
    let now = 0;
    const { log, lines } = capture();
    const rl = new RateLimitedLog(log, { intervalMs: 10_000, burst: 2, clock: () => now });
    for (let i = 0; i < 1000; i++) rl.write('warn', 'refused:source-limit', { ip: `192.0.2.${i % 250}` }, 'SIP connection refused');
    expect(lines).toHaveLength(2);
    now = 10_000;
    rl.write('warn', 'refused:source-limit', { ip: '192.0.2.1' }, 'SIP connection refused');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatchObject({ ip: '192.0.2.1', suppressed: 998, msg: 'SIP connection refused' });
    rl.write('warn', 'refused:source-limit', { ip: '192.0.2.1' }, 'SIP connection refused');
    expect(lines[3]).not.toHaveProperty('suppressed');
  });

  it('keys are independent, and a disabled level costs nothing and counts nothing', () => {
    const { log, lines } = capture('info');
    const rl = new RateLimitedLog(log, { intervalMs: 10_000, burst: 1, clock: () => 0 });
    rl.write('warn', 'a', {}, 'a');
    rl.write('warn', 'b', {}, 'b');
    for (let i = 0; i < 10; i++) rl.write('debug', 'a', {}, 'hidden');
    expect(lines.map((l) => l.msg)).toEqual(['a', 'b']);
  });
});
