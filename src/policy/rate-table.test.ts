import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { TollgateError } from '../errors/index.js';
import { costOf as perSecondCostOf } from './budget-period.js';
import {
  billedSeconds,
  costOf,
  flatRate,
  loadRateTable,
  parseRateTable,
  rateTableFor,
  reserveFor,
  resolveShippedFile,
  type Rate,
  type RateTable,
} from './rate-table.js';

const ROOT = resolve(import.meta.dirname, '../..');

/** The error a parse throws, or a failure when it does not throw. */
function parseError(yaml: string): TollgateError {
  try {
    parseRateTable(yaml, 'rates.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(TollgateError);
    expect((err as TollgateError).code).toBe('CONFIG_INVALID');
    return err as TollgateError;
  }
  throw new Error('expected the rate table to be refused');
}

const table = (rates: string, head = 'currency: USD\n'): RateTable => parseRateTable(`${head}rates:\n${rates}`, 'rates.yaml');

/** A rate with the given increment and price, for the billing-math cases. */
function rate(increment: string, price: string, fee = '0'): Rate {
  const r = table(`  - { prefix: "+1", outbound: ${price}, increment: "${increment}", connectionFee: ${fee} }\n`).lookup('+1', 'outbound');
  if (!r) throw new Error('no rate');
  return r;
}

describe('rate table file: validation', () => {
  it('refuses YAML that does not parse, naming the line', () => {
    const e = parseError('currency: USD\nrates:\n  - prefix: "+1"\n    outbound: [1\n');
    expect(e.message).toMatch(/rates\.yaml is not valid YAML: .*line \d+/);
  });

  it('refuses an unquoted prefix (YAML reads +44 as the number 44) and says so', () => {
    const e = parseError('currency: USD\nrates:\n  - prefix: "+1"\n    outbound: 1\n  - prefix: +44\n    outbound: 1\n');
    expect(e.message).toContain('rates.yaml:5: rates[1] prefix must be a quoted string such as "+44"');
  });

  it.each([['44'], ['+'], ['+44a'], ['+1234567890123456'], ['']])('refuses the prefix %j', (p) => {
    const e = parseError(`currency: USD\nrates:\n  - prefix: "${p}"\n    outbound: 1\n`);
    expect(e.message).toMatch(/rates\.yaml:3: rates\[0\] .*prefix must be an E\.164 prefix/);
  });

  it('refuses a duplicate prefix, naming both entries and their lines', () => {
    const e = parseError('currency: USD\nrates:\n  - prefix: "+44"\n    outbound: 1\n  - prefix: "+447"\n    outbound: 3\n  - prefix: "+44"\n    inbound: 1\n');
    expect(e.message).toBe(
      'invalid rate table: rates.yaml:7: prefix +44 appears twice (rates[0] at line 3 and rates[2] at line 7); merge them into one entry',
    );
  });

  it.each([['"6/0"'], ['"0/6"'], ['"3601/1"']])('refuses the increment %s (each part 1 to 3600 s)', (inc) => {
    const e = parseError(`currency: USD\nrates:\n  - prefix: "+1"\n    outbound: 1\n    increment: ${inc}\n`);
    expect(e.message).toMatch(/rates\.yaml:5: rates\[0\] \(\+1\) increment both parts of .* must be between 1 and 3600 seconds/);
  });

  it.each([['six'], ['"6-6"'], ['60'], ['"6/6/6"']])('refuses the increment %s (not "first/next")', (inc) => {
    const e = parseError(`currency: USD\nrates:\n  - prefix: "+1"\n    outbound: 1\n    increment: ${inc}\n`);
    expect(e.message).toMatch(/rates\.yaml:5: rates\[0\] \(\+1\) increment must be .*"first\/next"/);
  });

  it('refuses a bad increment in a direction override and in defaults', () => {
    expect(parseError('currency: USD\nrates:\n  - prefix: "+1"\n    outbound: { rate: 1, increment: "6/x" }\n').message).toMatch(
      /rates\.yaml:4: rates\[0\] \(\+1\) outbound\.increment must be "first\/next"/,
    );
    expect(parseError('currency: USD\ndefaults:\n  increment: "1/0"\nrates:\n  - prefix: "+1"\n    outbound: 1\n').message).toMatch(
      /rates\.yaml:3: defaults\.increment both parts/,
    );
  });

  it.each([['-1'], ['1e-7'], ['0.1234567'], ['"abc"'], ['12345678']])('refuses the amount %s', (amount) => {
    const e = parseError(`currency: USD\nrates:\n  - prefix: "+1"\n    outbound: ${amount}\n`);
    expect(e.message).toMatch(/rates\.yaml:4: rates\[0\] \(\+1\) outbound\.rate must be a non-negative amount .* at most 6 decimal places/);
  });

  it('refuses an entry with no direction, an unknown field, a missing currency and an empty file', () => {
    expect(parseError('currency: USD\nrates:\n  - prefix: "+1"\n    description: nothing\n').message).toContain(
      'rates.yaml:3: rates[0] (+1) needs an inbound or an outbound price',
    );
    expect(parseError('currency: USD\nrates:\n  - prefix: "+1"\n    outbund: 1\n    inbound: 1\n').message).toMatch(/rates\.yaml:3: rates\[0\] \(\+1\) has unknown field "outbund" \(a typo\?\)/);
    expect(parseError('rates:\n  - prefix: "+1"\n    outbound: 1\n').message).toContain('currency is required');
    expect(parseError('currency: usd\nrates:\n  - prefix: "+1"\n    outbound: 1\n').message).toContain('rates.yaml:1: currency must be an ISO 4217 code');
    expect(parseError('').message).toContain('(top level) must be a mapping with currency, defaults and rates');
    expect(parseError('currency: USD\nrates: []\n').message).toContain('rates.yaml:2: rates must list at least one rate');
  });

  it('lists every problem, not just the first', () => {
    const e = parseError('currency: USD\nrates:\n  - prefix: "+1"\n    outbound: -1\n  - prefix: "+44"\n    outbound: 1\n    increment: "0/0"\n');
    expect(e.message).toContain('rates.yaml:4:');
    expect(e.message).toContain('rates.yaml:7:');
  });

  it('a missing file is CONFIG_INVALID naming the path', () => {
    expect(() => loadRateTable('/nonexistent/rates.yaml')).toThrow(/cannot read rate table \/nonexistent\/rates\.yaml .*ENOENT/);
  });
});

describe('rate table: longest-prefix match', () => {
  const t = table(
    [
      '  - { prefix: "*", description: world, outbound: 50, inbound: 5 }',
      '  - { prefix: "+1", description: US/CA, outbound: 1.1, inbound: 0.85 }',
      '  - { prefix: "+1800", description: toll-free, inbound: 2.2 }',
      '  - { prefix: "+44", description: UK, outbound: 1.2 }',
      '  - { prefix: "+447", description: UK mobile, outbound: 3.5 }',
      '',
    ].join('\n'),
  );
  const match = (n: string, d: 'inbound' | 'outbound' = 'outbound'): string | undefined => t.lookup(n, d)?.description;

  it('the longest prefix priced for the direction wins', () => {
    expect(match('+447700900123')).toBe('UK mobile');
    expect(match('+442079460000')).toBe('UK');
    expect(match('+14155550100')).toBe('US/CA');
    expect(match('+18005550100', 'inbound')).toBe('toll-free');
  });

  it('an entry that prices one direction leaves the other to the next shorter prefix', () => {
    expect(match('+18005550100', 'outbound')).toBe('US/CA');
    // +44 has no inbound price: inbound on a UK number falls through to the catch-all.
    expect(match('+447700900123', 'inbound')).toBe('world');
  });

  it('the catch-all prices everything else; without one there is no price', () => {
    expect(match('+81312345678')).toBe('world');
    const noCatchAll = table('  - { prefix: "+1", outbound: 1 }\n');
    expect(noCatchAll.lookup('+81312345678', 'outbound')).toBeNull();
    expect(noCatchAll.lookup('+14155550100', 'inbound')).toBeNull();
  });

  it('a prefix matches on digits, not on a number that merely shares its start', () => {
    const t2 = table('  - { prefix: "+4470", outbound: 35 }\n  - { prefix: "+447", outbound: 3.5 }\n');
    expect(t2.lookup('+447012345678', 'outbound')?.prefix).toBe('+4470');
    expect(t2.lookup('+447712345678', 'outbound')?.prefix).toBe('+447');
    expect(t2.lookup('+44', 'outbound')).toBeNull();
    expect(t2.lookup('+4470', 'outbound')?.prefix).toBe('+4470');
  });

  it('anything that is not "+" and 1 to 15 digits has no price, catch-all or not', () => {
    for (const bad of ['', '+', '14155550100', '+1415555O100', '+1 415 555 0100', '+1234567890123456', 'sip:+14155550100@x']) {
      expect(t.lookup(bad, 'outbound'), bad).toBeNull();
    }
  });

  it('carries the table currency, the increments and the fee, frozen', () => {
    const r = t.lookup('+14155550100', 'outbound')!;
    expect(r).toEqual({
      prefix: '+1',
      direction: 'outbound',
      description: 'US/CA',
      currency: 'USD',
      ratePerMinute: 1.1,
      ratePerMinuteMicros: 1_100_000,
      increment: { first: 1, next: 1 },
      connectionFee: 0,
      connectionFeeMicros: 0,
    });
    expect(Object.isFrozen(r) && Object.isFrozen(r.increment)).toBe(true);
    expect(t.size).toBe(7); // one rate per priced (prefix, direction)
    expect(t.currency).toBe('USD');
  });

  it('a direction may override the entry increment and fee, which override the defaults', () => {
    const t2 = parseRateTable(
      [
        'currency: EUR',
        'defaults: { increment: "60/60", connectionFee: 2 }',
        'rates:',
        '  - { prefix: "+33", outbound: 1 }',
        '  - { prefix: "+336", increment: "30/6", connectionFee: 1.5, outbound: 4, inbound: { rate: 1, increment: "1/1", connectionFee: 0 } }',
        '',
      ].join('\n'),
    );
    expect(t2.lookup('+33112345678', 'outbound')).toMatchObject({ increment: { first: 60, next: 60 }, connectionFee: 2, currency: 'EUR' });
    expect(t2.lookup('+33612345678', 'outbound')).toMatchObject({ increment: { first: 30, next: 6 }, connectionFee: 1.5 });
    expect(t2.lookup('+33612345678', 'inbound')).toMatchObject({ increment: { first: 1, next: 1 }, connectionFee: 0, ratePerMinute: 1 });
  });

  // Measured on the development container (Node 20.20, 2 vCPUs, tsx): 10 to 16 million lookups
  // per second on the shipped table (60 to 100 ns each, no allocation), mixed numbers and
  // directions. Not asserted: timing is a property of the machine, not of the code.
  it('answers a million lookups on the shipped table', () => {
    const shipped = loadRateTable(join(ROOT, 'config/rates.yaml'));
    const numbers = ['+14155550100', '+18005550100', '+447700900123', '+442079460000', '+4915123456789', '+33612345678', '+81312345678', '+18765550100'];
    let found = 0;
    for (let i = 0; i < 1_000_000; i++) if (shipped.lookup(numbers[i & 7]!, 'outbound')) found++;
    expect(found).toBe(1_000_000);
  });
});

describe('billing increments (first/next)', () => {
  it('1/1 bills each started second', () => {
    const r = rate('1/1', '6');
    expect([0, 0.2, 1, 59, 60, 61].map((s) => billedSeconds(r, s))).toEqual([0, 1, 1, 59, 60, 61]);
  });

  it('6/6 bills six-second blocks: 61 s is billed as 66 s', () => {
    const r = rate('6/6', '6');
    expect([0, 1, 5, 6, 7, 12, 13, 60, 61, 66, 67].map((s) => billedSeconds(r, s))).toEqual([0, 6, 6, 6, 12, 12, 18, 60, 66, 66, 72]);
  });

  it('60/60 bills whole minutes: 1 s is a minute, 61 s two', () => {
    const r = rate('60/60', '6');
    expect([0, 1, 59, 60, 61, 120, 121].map((s) => billedSeconds(r, s))).toEqual([0, 60, 60, 60, 120, 120, 180]);
  });

  it('30/6 bills a 30-second minimum, then six-second blocks', () => {
    const r = rate('30/6', '6');
    expect([1, 30, 31, 36, 37].map((s) => billedSeconds(r, s))).toEqual([30, 30, 36, 36, 42]);
  });

  it('refuses negative, NaN and infinite durations (a caller bug, not a price)', () => {
    const r = rate('1/1', '6');
    for (const s of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => billedSeconds(r, s)).toThrow(RangeError);
      expect(() => costOf(r, s)).toThrow(RangeError);
      expect(() => reserveFor(r, s)).toThrow(RangeError);
    }
  });
});

describe('costOf: exact, rounded up once to a whole unit', () => {
  it('6 units a minute: 61 s is 6.1 units at 1/1, 6.6 at 6/6, 12 at 60/60; each rounded up', () => {
    expect(costOf(rate('1/1', '6'), 61)).toBe(7);
    expect(costOf(rate('6/6', '6'), 61)).toBe(7);
    expect(costOf(rate('60/60', '6'), 61)).toBe(12);
    expect(costOf(rate('6/6', '6'), 60)).toBe(6);
  });

  it('fractional rates are exact where floating point is not', () => {
    // An hour at 1.1 a minute is 66, but 1.1 × 3600 / 60 is 66.00000000000001 in floating
    // point, which Math.ceil would bill as 67.
    expect((1.1 * 3600) / 60).toBeGreaterThan(66);
    expect(costOf(rate('6/6', '1.1'), 3600)).toBe(66);
    expect((0.07 * 6000) / 60).toBeGreaterThan(7);
    expect(costOf(rate('1/1', '0.07'), 6000)).toBe(7);
    expect(costOf(rate('1/1', '2.2'), 3600)).toBe(132);
    // 0.45 a minute at 6/6: 61 s → 66 s → 0.495 → 1; 3600 s → 27.
    expect(costOf(rate('6/6', '0.45'), 61)).toBe(1);
    expect(costOf(rate('6/6', '0.45'), 3600)).toBe(27);
    // The smallest step, 0.000001 a minute, still rounds a call up to 1.
    expect(costOf(rate('1/1', '0.000001'), 1)).toBe(1);
  });

  it('a long call stays exact (integer arithmetic, no overflow)', () => {
    expect(costOf(rate('1/1', '9999999.999999'), 86_400 * 365)).toBe(Math.ceil(9_999_999.999999 * 1440 * 365));
  });

  it('the connection fee is charged once per answered call, never for 0 billable seconds', () => {
    const r = rate('60/60', '4.2', '1.5');
    expect(costOf(r, 0)).toBe(0);
    expect(costOf(r, 1)).toBe(6); // 1.5 + 4.2 = 5.7 → 6
    expect(costOf(r, 61)).toBe(10); // 1.5 + 8.4 = 9.9 → 10
    expect(costOf(rate('1/1', '0', '1'), 30)).toBe(1);
    expect(costOf(rate('1/1', '0', '1'), 0)).toBe(0);
  });

  it('a free rate costs nothing', () => {
    expect(costOf(rate('1/1', '0'), 3600)).toBe(0);
  });

  it('flatRate(r) bills exactly as the per-second costOf(seconds, r) of budget-period', () => {
    for (let r = 0; r <= 12; r++) {
      const flat = flatRate(r);
      for (let s = 0; s <= 400; s++) expect(costOf(flat, s)).toBe(perSecondCostOf(s, r));
    }
    expect(() => flatRate(-1)).toThrow(RangeError);
  });
});

describe('reserveFor: the worst case of a call up to its maximum duration', () => {
  const cases: [string, string, string][] = [
    ['1/1', '1.1', '0'],
    ['6/6', '0.45', '0'],
    ['6/6', '1.1', '0.3'],
    ['60/60', '4.2', '1.5'],
    ['30/6', '2.333333', '0.5'],
    ['60/60', '50', '5'],
  ];

  it.each(cases)('%s at %s with fee %s: reserveFor(max) ≥ costOf(s) for every s ≤ max', (inc, price, fee) => {
    const r = rate(inc, price, fee);
    for (let max = 0; max <= 400; max += 7) {
      const reserved = reserveFor(r, max);
      for (let s = 0; s <= max; s++) expect(reserved).toBeGreaterThanOrEqual(costOf(r, s));
      // Deterministic fractional durations too (billable time measured in milliseconds).
      for (let k = 1; k < 10; k++) expect(reserved).toBeGreaterThanOrEqual(costOf(r, Math.max(0, max - k / 10)));
    }
  });

  it('is the connection fee plus the maximum duration rounded up by the increments', () => {
    const r = rate('60/60', '4.2', '1.5');
    expect(reserveFor(r, 61)).toBe(10); // 1.5 + 2 min × 4.2 = 9.9 → 10
    expect(reserveFor(r, 3600)).toBe(254); // 1.5 + 60 × 4.2 = 253.5 → 254
    expect(reserveFor(rate('6/6', '1.1'), 3600)).toBe(66);
    expect(reserveFor(r, 0)).toBe(0);
  });
});

describe('shipped config/rates.yaml', () => {
  const shipped = loadRateTable(join(ROOT, 'config/rates.yaml'));
  const at = (n: string, d: 'inbound' | 'outbound' = 'outbound'): Rate => {
    const r = shipped.lookup(n, d);
    if (!r) throw new Error(`no ${d} rate for ${n}`);
    return r;
  };

  it('loads and prices in US cents', () => {
    expect(shipped.currency).toBe('USD');
    expect(shipped.size).toBeGreaterThan(30);
  });

  it('prices US/CA cheaply at 6/6, toll-free inbound higher, and calls to toll-free as +1', () => {
    expect(at('+14155550100')).toMatchObject({ prefix: '+1', ratePerMinute: 1.1, increment: { first: 6, next: 6 } });
    expect(at('+16135550100')).toMatchObject({ prefix: '+1' }); // Ottawa, Canada
    for (const tf of ['800', '833', '844', '855', '866', '877', '888']) {
      expect(at(`+1${tf}5550100`, 'inbound')).toMatchObject({ prefix: `+1${tf}`, ratePerMinute: 2.2 });
      expect(at(`+1${tf}5550100`, 'outbound').prefix).toBe('+1');
    }
  });

  it('does not price the Caribbean NANP area codes as +1', () => {
    expect(at('+18765550100')).toMatchObject({ prefix: '+1876', increment: { first: 60, next: 60 } });
    expect(at('+18095550100').ratePerMinute).toBeGreaterThan(10);
  });

  it('tells UK mobiles from landlines, Germany and France likewise, and falls back to the catch-all', () => {
    expect(at('+447700900123').prefix).toBe('+447');
    expect(at('+442079460000').prefix).toBe('+44');
    expect(at('+4930123456').prefix).toBe('+49');
    expect(at('+4915123456789').prefix).toBe('+4915');
    expect(at('+33612345678')).toMatchObject({ prefix: '+336', connectionFee: 1.5, increment: { first: 60, next: 60 } });
    expect(at('+81312345678')).toMatchObject({ prefix: '*', connectionFee: 5 });
  });
});

describe('resolveShippedFile and rateTableFor', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tollgate-rates-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps absolute paths as given', () => {
    expect(resolveShippedFile('/etc/tollgate/rates.yaml', dir)).toBe('/etc/tollgate/rates.yaml');
  });

  it('prefers the working directory, then falls back to the package root', () => {
    writeFileSync(join(dir, 'mine.yaml'), 'currency: EUR\nrates:\n  - { prefix: "*", outbound: 1 }\n');
    expect(resolveShippedFile('mine.yaml', dir)).toBe(join(dir, 'mine.yaml'));
    expect(resolveShippedFile('config/rates.yaml', dir)).toBe(join(ROOT, 'config/rates.yaml'));
    expect(loadRateTable('config/rates.yaml', dir).source).toBe(join(ROOT, 'config/rates.yaml'));
    expect(loadRateTable('mine.yaml', dir).currency).toBe('EUR');
  });

  it('a file in neither place resolves to the working directory and fails to load naming both', () => {
    expect(resolveShippedFile('config/nope.yaml', dir)).toBe(join(dir, 'config/nope.yaml'));
    expect(() => loadRateTable('config/nope.yaml', dir)).toThrow(
      `cannot read rate table config/nope.yaml (looked for ${join(dir, 'config/nope.yaml')} or ${join(ROOT, 'config/nope.yaml')}): ENOENT`,
    );
  });

  it('an empty policy.rateTableFile means no table', () => {
    expect(rateTableFor({ policy: { rateTableFile: '' } })).toBeNull();
    expect(rateTableFor({ policy: { rateTableFile: 'config/rates.yaml' } }, dir)?.currency).toBe('USD');
  });

  it('errors from a loaded file name the file and the line', () => {
    writeFileSync(join(dir, 'bad.yaml'), 'currency: USD\nrates:\n  - prefix: "+1"\n    outbound: 1\n    increment: "6/0"\n');
    expect(() => loadRateTable('bad.yaml', dir)).toThrow(`${join(dir, 'bad.yaml')}:5: rates[0] (+1) increment both parts`);
  });
});
