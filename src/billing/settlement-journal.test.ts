import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SettlementJournal, type JournalEntry } from './settlement-journal.js';

const root = mkdtempSync(join(tmpdir(), 'tollgate-journal-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let seq = 0;
const freshPath = (): string => join(root, `j${++seq}`, 'settlement-journal.jsonl');

const entry = (n: number): JournalEntry => ({
  countersDone: n % 2 === 0,
  settlement: { callId: `call-${n}`, keyId: 'key_a', direction: 'outbound', seconds: n, amount: n, createdAt: '2026-06-01T12:00:00.000Z', budget: null, leasePool: 'calls:key_a' },
});

const read = async (j: SettlementJournal, stopAfter = Infinity): Promise<string[]> => {
  const ids: string[] = [];
  await j.read((e) => {
    ids.push(e.settlement.callId);
    return ids.length < stopAfter;
  });
  return ids;
};

describe('SettlementJournal', () => {
  it('appends JSON lines in order, creates the file (and its directory) with mode 0600, and reads them back', async () => {
    const j = new SettlementJournal(freshPath());
    // Appends that arrive while one is written share the next write.
    await Promise.all([1, 2, 3, 4, 5].map((n) => j.append([entry(n)])));
    expect(await read(j)).toEqual(['call-1', 'call-2', 'call-3', 'call-4', 'call-5']);
    expect(statSync(j.path).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(j.path, 'utf8').split('\n')[1]!)).toEqual({ v: 1, ...entry(2) });
    expect(await read(j, 2)).toEqual(['call-1', 'call-2']);
  });

  it('compaction keeps the entries not landed, in order, and removes the file once none is left', async () => {
    const j = new SettlementJournal(freshPath());
    await j.append([1, 2, 3, 4].map(entry));
    const kept: string[] = [];
    expect(await j.compact(new Set(['call-1', 'call-3']), (e) => kept.push(e.settlement.callId))).toBe(2);
    expect(kept).toEqual(['call-2', 'call-4']);
    expect(await read(j)).toEqual(['call-2', 'call-4']);
    await j.append([entry(5)]);
    expect(await read(j)).toEqual(['call-2', 'call-4', 'call-5']);
    expect(await j.compact(new Set(['call-2', 'call-4', 'call-5']))).toBe(0);
    expect(existsSync(j.path)).toBe(false);
    expect(existsSync(`${j.path}.tmp`)).toBe(false);
    expect(await j.compact(new Set())).toBe(0);
  });

  it('sets aside lines that are not settlements, and says why', async () => {
    const reasons: string[] = [];
    const j = new SettlementJournal(freshPath(), (r) => reasons.push(r));
    await j.append([entry(1)]);
    appendFileSync(j.path, '{"v":1,"countersDone":true,"settlement":{"callId":"x"}}\nnot json\n');
    await j.append([entry(2)]);
    expect(await read(j)).toEqual(['call-1', 'call-2']);
    expect(await j.compact(new Set())).toBe(2);
    expect(reasons).toHaveLength(2);
    expect(reasons[0]).toMatch(/^not a settlement: settlement\.keyId/);
    expect(reasons[1]).toMatch(/^not JSON/);
    expect(readFileSync(`${j.path}.rejected`, 'utf8')).toBe('{"v":1,"countersDone":true,"settlement":{"callId":"x"}}\nnot json\n');
    expect(readFileSync(j.path, 'utf8').trim().split('\n')).toHaveLength(2);
  });
});
