import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { TollgateError } from '../errors/index.js';
import { blockedPrefixes, loadPrefixFiles, parsePrefixList } from './prefix-lists.js';

const ROOT = resolve(import.meta.dirname, '../..');
const SHIPPED = ['config/blocked/premium-rate.txt', 'config/blocked/high-risk.txt'];

function parseError(text: string): TollgateError {
  try {
    parsePrefixList(text, 'list.txt');
  } catch (err) {
    expect(err).toBeInstanceOf(TollgateError);
    expect((err as TollgateError).code).toBe('CONFIG_INVALID');
    return err as TollgateError;
  }
  throw new Error('expected the list to be refused');
}

describe('parsePrefixList', () => {
  it('reads one prefix per line, skipping blank lines and # comments (whole-line or trailing)', () => {
    const text = '# premium\n\n+1900\n  +1976   # pay-per-call\n\t\n# +44 is not blocked\n+4490#no space\n';
    expect(parsePrefixList(text)).toEqual(['+1900', '+1976', '+4490']);
  });

  it('accepts CRLF line ends and a byte-order mark', () => {
    expect(parsePrefixList('\uFEFF+870\r\n+881\r\n')).toEqual(['+870', '+881']);
  });

  it('keeps the first of repeated prefixes, in file order', () => {
    expect(parsePrefixList('+882\n+870\n+882\n')).toEqual(['+882', '+870']);
  });

  it('an empty or comment-only list blocks nothing', () => {
    expect(parsePrefixList('')).toEqual([]);
    expect(parsePrefixList('# nothing yet\n')).toEqual([]);
  });

  it.each([
    ['1900', 1],
    ['+', 1],
    ['+1 900', 1],
    ['+19a0', 1],
    ['+1234567890123456', 1],
    ['+1900, +1976', 1],
    ['+1900\n\n# ok\n00449', 4],
  ])('refuses %j, naming the file and the line', (text, line) => {
    const e = parseError(text);
    expect(e.message).toMatch(new RegExp(`^list\\.txt:${line}: ".*" is not an E\\.164 prefix`));
  });
});

describe('loadPrefixFiles and blockedPrefixes', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tollgate-prefixes-'));
    writeFileSync(join(dir, 'a.txt'), '+1900\n+870 # satellite\n');
    writeFileSync(join(dir, 'b.txt'), '+870\n+979\n');
    writeFileSync(join(dir, 'bad.txt'), '+1900\n\n+44 90\n');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('merges files in order without repeats', () => {
    expect(loadPrefixFiles([join(dir, 'a.txt'), join(dir, 'b.txt')])).toEqual(['+1900', '+870', '+979']);
    expect(loadPrefixFiles([])).toEqual([]);
  });

  it('resolves relative paths against the working directory', () => {
    expect(loadPrefixFiles(['a.txt'], dir)).toEqual(['+1900', '+870']);
  });

  it('names the file and line of a bad entry', () => {
    expect(() => loadPrefixFiles(['a.txt', 'bad.txt'], dir)).toThrow(`${join(dir, 'bad.txt')}:3: "+44 90" is not an E.164 prefix`);
  });

  it('a missing file is CONFIG_INVALID naming the path', () => {
    expect(() => loadPrefixFiles(['missing.txt'], dir)).toThrow(/cannot read blocked-prefix list missing\.txt .*ENOENT/);
  });

  it('blockedPrefixes puts policy.blockedPrefixes first, then the files, deduplicated', () => {
    const config = { policy: { blockedPrefixes: ['+99', '+1900'], blockedPrefixFiles: ['a.txt', 'b.txt'] } };
    expect(blockedPrefixes(config, dir)).toEqual(['+99', '+1900', '+870', '+979']);
  });
});

describe('shipped blocked lists', () => {
  const shipped = loadPrefixFiles(SHIPPED.map((p) => join(ROOT, p)));
  const blocked = (n: string): boolean => shipped.some((p) => n.startsWith(p));

  it('load without error and are found from any working directory', () => {
    expect(shipped.length).toBeGreaterThan(15);
    expect(loadPrefixFiles(SHIPPED, tmpdir())).toEqual(shipped);
  });

  it('block NANP and UK premium rate, revenue-share 087x, satellite and international premium', () => {
    for (const n of ['+19005550100', '+449098790000', '+449198790000', '+449808790000', '+448712345678', '+870772000000', '+881631000000', '+882161234567', '+979123456789']) {
      expect(blocked(n), n).toBe(true);
    }
  });

  it('leave ordinary US, Canadian, UK, German and French numbers and toll-free callable', () => {
    const open = ['+14155550100', '+16135550100', '+18005550100', '+442079460000', '+441184960000', '+447700900123', '+443001234567', '+4930123456', '+33612345678'];
    for (const n of open) expect(blocked(n), n).toBe(false);
  });

  it('merge with the default configuration without error or repeats', () => {
    const defaults = parseYaml(readFileSync(join(ROOT, 'config/default.yaml'), 'utf8')) as {
      policy: { blockedPrefixes: string[]; blockedPrefixFiles: string[] };
    };
    const all = blockedPrefixes(defaults, ROOT);
    expect(new Set(all).size).toBe(all.length);
    expect(all).toEqual(expect.arrayContaining(['+1900', '+4490', '+870', '+99']));
  });
});
