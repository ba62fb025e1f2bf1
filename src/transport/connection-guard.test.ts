import { describe, it, expect } from 'vitest';
import { sourceAddress } from './connection-guard.js';

describe('sourceAddress', () => {
  it('counts an IPv4 client reaching a dual-stack socket (::ffff:a.b.c.d) as the IPv4 address', () => {
    expect(sourceAddress({ remoteAddress: '::ffff:192.0.2.7' })).toBe('192.0.2.7');
    expect(sourceAddress({ remoteAddress: '192.0.2.7' })).toBe('192.0.2.7');
    expect(sourceAddress({ remoteAddress: '2001:db8::1' })).toBe('2001:db8::1');
    expect(sourceAddress({})).toBe('');
  });
});
