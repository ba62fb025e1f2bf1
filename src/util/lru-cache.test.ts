import { describe, it, expect } from 'vitest';
import { LruCache } from './lru-cache.js';

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

describe('LruCache eviction', () => {
  it('evicts the least recently used entry when full', () => {
    const c = new LruCache<string, number>(3, 60_000);
    c.set('a', 1);
    c.set('b', 2);
    c.set('c', 3);
    c.set('d', 4);
    expect(c.size).toBe(3);
    expect(c.get('a')).toBeUndefined();
    expect([c.get('b'), c.get('c'), c.get('d')]).toEqual([2, 3, 4]);
  });

  it('a get makes an entry the most recently used, so the next eviction takes another', () => {
    const c = new LruCache<string, number>(3, 60_000);
    c.set('a', 1);
    c.set('b', 2);
    c.set('c', 3);
    expect(c.get('a')).toBe(1);
    c.set('d', 4); // evicts b, the eldest after a was used
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')).toBe(1);
    c.set('e', 5); // evicts c
    expect(c.get('c')).toBeUndefined();
    expect([c.get('a'), c.get('d'), c.get('e')]).toEqual([1, 4, 5]);
  });

  it('re-setting an existing key replaces its value and refreshes it without growing', () => {
    const c = new LruCache<string, number>(2, 60_000);
    c.set('a', 1);
    c.set('b', 2);
    c.set('a', 10);
    expect(c.size).toBe(2);
    c.set('c', 3); // evicts b, not the refreshed a
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')).toBe(10);
  });

  it('never holds more than maxEntries over many inserts', () => {
    const c = new LruCache<number, number>(5, 60_000);
    for (let i = 0; i < 100; i++) {
      c.set(i, i * 2);
      expect(c.size).toBeLessThanOrEqual(5);
    }
    expect(c.size).toBe(5);
    expect(c.get(94)).toBeUndefined();
    expect(c.get(95)).toBe(190);
    expect(c.get(99)).toBe(198);
  });
});

describe('LruCache time to live', () => {
  it('returns an entry before its TTL and drops it once the TTL has passed', () => {
    const t = clock();
    const c = new LruCache<string, string>(10, 1000, t.now);
    c.set('k', 'v');
    t.advance(999);
    expect(c.get('k')).toBe('v');
    t.advance(1);
    expect(c.get('k')).toBeUndefined();
    expect(c.size).toBe(0);
  });

  it('a get does not extend the TTL; a set does', () => {
    const t = clock();
    const c = new LruCache<string, string>(10, 1000, t.now);
    c.set('k', 'v1');
    t.advance(600);
    expect(c.get('k')).toBe('v1');
    t.advance(600);
    expect(c.get('k')).toBeUndefined();

    c.set('k', 'v2');
    t.advance(600);
    c.set('k', 'v3');
    t.advance(600);
    expect(c.get('k')).toBe('v3');
  });

  it('a TTL of 0 disables caching', () => {
    const c = new LruCache<string, string>(10, 0);
    c.set('k', 'v');
    expect(c.size).toBe(0);
    expect(c.get('k')).toBeUndefined();
  });
});

describe('LruCache deletion', () => {
  it('deleteWhere removes every matching entry and returns how many', () => {
    const c = new LruCache<string, { keyId: string }>(10, 60_000);
    c.set('s1', { keyId: 'key_a' });
    c.set('s2', { keyId: 'key_b' });
    c.set('s3', { keyId: 'key_a' });
    c.set('s4', { keyId: 'key_c' });
    expect(c.deleteWhere((v) => v.keyId === 'key_a')).toBe(2);
    expect(c.size).toBe(2);
    expect(c.get('s1')).toBeUndefined();
    expect(c.get('s3')).toBeUndefined();
    expect(c.get('s2')).toEqual({ keyId: 'key_b' });
    expect(c.get('s4')).toEqual({ keyId: 'key_c' });
    expect(c.deleteWhere((v) => v.keyId === 'key_a')).toBe(0);
  });

  it('deleteWhere passes the cache key to the predicate', () => {
    const c = new LruCache<string, number>(10, 60_000);
    c.set('x1', 1);
    c.set('y1', 1);
    expect(c.deleteWhere((_v, k) => k.startsWith('x'))).toBe(1);
    expect(c.get('y1')).toBe(1);
  });

  it('delete and clear remove entries', () => {
    const c = new LruCache<string, number>(10, 60_000);
    c.set('a', 1);
    c.set('b', 2);
    expect(c.delete('a')).toBe(true);
    expect(c.delete('a')).toBe(false);
    c.clear();
    expect(c.size).toBe(0);
    expect(c.get('b')).toBeUndefined();
  });
});

describe('LruCache disabled', () => {
  it('maxEntries 0 disables the cache: nothing is stored', () => {
    const c = new LruCache<string, number>(0, 60_000);
    c.set('a', 1);
    expect(c.size).toBe(0);
    expect(c.get('a')).toBeUndefined();
  });
});
