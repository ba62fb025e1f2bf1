import { describe, it, expect } from 'vitest';
import { countersContract } from './counters-contract.js';
import { LocalRevocationBus, MemoryCounters } from './memory-counters.js';

// A fake clock: the contract's TTLs and waits take no time and no scheduling delay can stretch them.
let now = 1_000_000;
countersContract('memory', () => Promise.resolve(new MemoryCounters(() => now)), {
  scale: 1,
  pass: (ms) => {
    now += ms;
    return Promise.resolve();
  },
});

describe('LocalRevocationBus', () => {
  it('delivers to every subscriber even when one throws', async () => {
    const bus = new LocalRevocationBus();
    const seen: string[] = [];
    bus.subscribe(() => {
      throw new Error('faulty listener');
    });
    bus.subscribe((id) => seen.push(id));
    await bus.publish('key_1');
    expect(seen).toEqual(['key_1']);
  });
});
