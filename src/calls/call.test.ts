import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest';
import { createLogger } from '../observability/logger.js';
import { settlementOf, type CallGrant } from '../policy/policy-engine.js';
import { flatRate } from '../policy/rate-table.js';
import type { CallPatch, CallRecord } from '../store/store.js';
import type { SessionStats } from '../media/media-protocol.js';
import type { CallResources, EndReason } from './call.js';
import { CallRegistry } from './call-registry.js';

const STATS: SessionStats = { packetsIn: 10, packetsOut: 9, bytesIn: 1720, lost: 0, late: 0, authFailures: 0, rejectedSource: 0, dtmf: [] };

function grant(over: Partial<CallGrant> = {}): CallGrant {
  return {
    callId: 'CA' + '0'.repeat(32),
    keyId: 'key_a',
    direction: 'inbound',
    maxDurationSec: 60,
    limitedBy: 'max-duration',
    ratePerMinute: 6,
    rate: flatRate(6, 'inbound'),
    mode: 'live',
    leasePool: 'calls:key_a',
    budget: null,
    ...over,
  };
}

/** Resources that count what a call gives back, so every test can say "exactly once". */
function counting() {
  const counts = { mediaClosed: 0, agentsEnded: 0, renewed: 0, slotsFreed: 0, settled: [] as (number | null)[], recordsStarted: 0, patches: [] as CallPatch[], notified: [] as string[] };
  let mediaOpen: (() => void) | null = null;
  /** Resolves media.close(); the default answers at once. */
  let mediaClosing: Promise<void> = Promise.resolve();
  const res: CallResources = {
    media: {
      close: async () => {
        counts.mediaClosed++;
        await mediaClosing;
        return STATS;
      },
    },
    agents: { ended: () => void counts.agentsEnded++ },
    renew: () => {
      counts.renewed++;
      return Promise.resolve(true);
    },
    freeSlot: () => {
      counts.slotsFreed++;
      return Promise.resolve();
    },
    complete: (_g, seconds, record) => {
      counts.settled.push(seconds);
      if (record) counts.patches.push(record.patch);
      return Promise.resolve();
    },
    release: () => {
      counts.settled.push(null);
      return Promise.resolve();
    },
    records: {
      start: (_r: CallRecord) => {
        counts.recordsStarted++;
        return Promise.resolve(true);
      },
      update: (_id, patch) => {
        counts.patches.push(patch);
        return Promise.resolve();
      },
    },
    notify: (type) => void counts.notified.push(type),
    renewEveryMs: 20_000,
    log: createLogger({ level: 'silent' }),
    now: () => Date.now(),
  };
  const openMedia = () =>
    new Promise<{ address: string; port: number }>((resolve) => {
      mediaOpen = () => resolve({ address: '127.0.0.1', port: 20_000 });
    });
  return { counts, res, openMedia, finishOpen: () => mediaOpen?.(), holdMediaClose: (p: Promise<void>) => void (mediaClosing = p) };
}

describe('Call: one owner for every per-call resource, released exactly once', () => {
  let c: ReturnType<typeof counting>;
  let registry: CallRegistry;
  let standing: EndReason | null;
  const init = (over: Partial<CallGrant> = {}) => ({ id: 'CA' + '1'.repeat(32), keyId: 'key_a', direction: 'inbound' as const, from: '+14155550199', to: '+14155550100', target: 'echo', grant: grant(over), startedAt: Date.now() });

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    c = counting();
    standing = null;
    registry = new CallRegistry(c.res, () => Promise.resolve(standing), { onKeyChange: 'end' }, createLogger({ level: 'silent' }));
  });
  afterEach(() => vi.useRealTimers());

  it('end() is idempotent: the leg is hung up, the agent stopped, media closed, the grant and the record settled once', async () => {
    const call = registry.create(init());
    const hangups: EndReason[] = [];
    call.attachLeg({ hangup: (r) => void hangups.push(r) });
    expect(await call.startRecord()).toBe(true);
    await call.openMedia(() => Promise.resolve({ address: '127.0.0.1', port: 1 }));
    call.answered();
    await vi.advanceTimersByTimeAsync(5_000);
    call.end('remote-bye', 'caller');
    call.end('media-timeout', 'gateway');
    call.end('shutdown', 'gateway');
    await call.finished;
    expect(hangups).toEqual(['remote-bye']);
    expect(c.counts).toMatchObject({ mediaClosed: 1, agentsEnded: 1, settled: [5] });
    const last = c.counts.patches.at(-1)!;
    expect(last).toMatchObject({ status: 'ended', endReason: 'remote-bye', endedBy: 'caller', billableSeconds: 5 });
    // The price the ledger settles at, from the rate table's arithmetic (never a second copy of it).
    expect(last.details).toMatchObject({ cost: settlementOf(call.grant, 5).cost, media: { packetsIn: 10 } });
    expect(settlementOf(call.grant, 5).cost).toBeGreaterThan(0);
    expect(c.counts.notified.filter((n) => n === 'call.ended')).toHaveLength(1);
    expect(registry.get(call.id)).toBeNull();
  });

  it('the concurrency slot is free the moment the call ends, before the media figures and the settlement', async () => {
    const call = registry.create(init());
    await call.startRecord();
    await call.openMedia(() => Promise.resolve({ address: '127.0.0.1', port: 1 }));
    call.answered();
    let letMediaClose!: () => void;
    c.holdMediaClose(new Promise((r) => (letMediaClose = r)));
    call.end('remote-bye', 'caller');
    call.end('remote-bye', 'caller');
    await vi.advanceTimersByTimeAsync(0);
    expect(c.counts).toMatchObject({ slotsFreed: 1, mediaClosed: 1, settled: [] });
    letMediaClose();
    await call.finished;
    expect(c.counts).toMatchObject({ slotsFreed: 1, settled: [0] });
  });

  it('a call that never answered releases its grant (no usage) and is recorded failed', async () => {
    const call = registry.create(init());
    await call.startRecord();
    call.end('cancelled', 'caller');
    await call.finished;
    expect(c.counts.settled).toEqual([null]);
    expect(c.counts.patches.at(-1)).toMatchObject({ status: 'failed', endReason: 'cancelled', billableSeconds: 0 });
    // No media was opened: nothing to close.
    expect(c.counts.mediaClosed).toBe(0);
  });

  it('media opened while the call ends is closed once it is open, and openMedia tells the caller the call is gone', async () => {
    const call = registry.create(init());
    const opening = call.openMedia(c.openMedia);
    call.end('cancelled', 'caller');
    expect(c.counts.mediaClosed).toBe(0);
    c.finishOpen();
    expect(await opening).toBeNull();
    await call.finished;
    expect(c.counts.mediaClosed).toBe(1);
    // After the end nothing new is acquired.
    expect(await call.openMedia(() => Promise.reject(new Error('must not be called')))).toBeNull();
  });

  it('a leg attached after the end is hung up at once', () => {
    const call = registry.create(init());
    call.end('key-revoked', 'policy');
    const hangups: EndReason[] = [];
    call.attachLeg({ hangup: (r) => void hangups.push(r) });
    expect(hangups).toEqual(['key-revoked']);
  });

  it('renews the lease from admission every renewEveryMs (a long ring or agent dial cannot outlive it), and stops at the end', async () => {
    const call = registry.create(init());
    await vi.advanceTimersByTimeAsync(61_000);
    expect(c.counts.renewed).toBe(3);
    call.answered();
    await vi.advanceTimersByTimeAsync(40_000);
    expect(c.counts.renewed).toBe(5);
    call.end('remote-bye', 'caller');
    await vi.advanceTimersByTimeAsync(120_000);
    expect(c.counts.renewed).toBe(5);
  });

  it('hangs up at the granted duration: max-duration by policy, billed for exactly the grant', async () => {
    const call = registry.create(init({ maxDurationSec: 30 }));
    await call.startRecord();
    call.answered();
    await vi.advanceTimersByTimeAsync(30_000);
    expect(call.ended).toBe(true);
    await call.finished;
    expect(c.counts.settled).toEqual([30]);
    expect(c.counts.patches.at(-1)).toMatchObject({ endReason: 'max-duration', endedBy: 'policy', billableSeconds: 30 });
  });

  it('a call admitted for what its budget covers ends budget-exhausted', async () => {
    const call = registry.create(init({ maxDurationSec: 12, limitedBy: 'budget' }));
    call.answered();
    await vi.advanceTimersByTimeAsync(12_000);
    expect(call.endReason).toBe('budget-exhausted');
  });

  it('the state machine only moves forward: setup → ringing → answered → ended', () => {
    const call = registry.create(init());
    expect(call.progress).toBe('trying');
    call.ringing();
    expect(call.state).toBe('ringing');
    expect(call.answered()).toBe(true);
    expect(call.answered()).toBe(false);
    call.ringing();
    expect(call.state).toBe('answered');
    call.end('remote-bye', 'caller');
    expect(call.answered()).toBe(false);
    expect(call.state).toBe('ended');
  });

  it('refuses a second live call under an id already in use', () => {
    registry.create(init());
    expect(() => registry.create(init())).toThrow(/already live/);
  });
});

describe('CallRegistry: key changes, drain and shutdown reach every live call', () => {
  let c: ReturnType<typeof counting>;
  const log = createLogger({ level: 'silent' });
  const mk = (registry: CallRegistry, id: string, keyId: string, direction: 'inbound' | 'outbound' = 'inbound') =>
    registry.create({ id, keyId, direction, from: '+1', to: '+2', target: 'echo', grant: grant({ keyId }), startedAt: Date.now() });

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    c = counting();
  });
  afterEach(() => vi.useRealTimers());

  it('a revoked key\'s calls end with the standing reason, by policy; other keys\' calls go on', async () => {
    const registry = new CallRegistry(c.res, (call) => Promise.resolve(call.keyId === 'key_a' ? 'key-revoked' : null), { onKeyChange: 'end' }, log);
    const a1 = mk(registry, 'CA' + 'a'.repeat(32), 'key_a');
    const a2 = mk(registry, 'CA' + 'b'.repeat(32), 'key_a', 'outbound');
    const b1 = mk(registry, 'CA' + 'c'.repeat(32), 'key_b');
    await registry.keyChanged('key_a');
    expect([a1.endReason, a2.endReason, b1.endReason]).toEqual(['key-revoked', 'key-revoked', null]);
    expect(a1.endedBy).toBe('policy');
    expect(registry.size).toBe(1);
  });

  it('policy.liveCalls finish lets a changed key\'s calls run on', async () => {
    const registry = new CallRegistry(c.res, () => Promise.resolve('key-revoked'), { onKeyChange: 'finish' }, log);
    const a1 = mk(registry, 'CA' + 'a'.repeat(32), 'key_a');
    await registry.keyChanged('key_a');
    expect(a1.ended).toBe(false);
  });

  it('a key change the key still allows ends nothing', async () => {
    const registry = new CallRegistry(c.res, () => Promise.resolve(null), { onKeyChange: 'end' }, log);
    const a1 = mk(registry, 'CA' + 'a'.repeat(32), 'key_a');
    await registry.keyChanged('key_a');
    expect(a1.ended).toBe(false);
  });

  it('drain marks the registry draining; idle() resolves when the last call ends; endAll waits for settlements', async () => {
    const registry = new CallRegistry(c.res, () => Promise.resolve(null), { onKeyChange: 'end' }, log);
    const a1 = mk(registry, 'CA' + 'a'.repeat(32), 'key_a');
    const b1 = mk(registry, 'CA' + 'b'.repeat(32), 'key_b', 'outbound');
    registry.drain();
    expect(registry.draining).toBe(true);
    const idle = registry.idle(10_000);
    a1.end('remote-bye', 'caller');
    await vi.advanceTimersByTimeAsync(200);
    expect(registry.size).toBe(1);
    b1.end('remote-bye', 'callee');
    await vi.advanceTimersByTimeAsync(200);
    expect(await idle).toBe(true);
    const c1 = mk(registry, 'CA' + 'c'.repeat(32), 'key_c');
    c1.answered();
    await registry.endAll();
    expect(c1.endReason).toBe('shutdown');
    expect(c.counts.settled).toHaveLength(3);
  });

  it('idle() gives up at its deadline while calls still run', async () => {
    const registry = new CallRegistry(c.res, () => Promise.resolve(null), { onKeyChange: 'end' }, log);
    mk(registry, 'CA' + 'a'.repeat(32), 'key_a');
    const idle = registry.idle(1_000);
    await vi.advanceTimersByTimeAsync(1_100);
    expect(await idle).toBe(false);
  });
});
