import { describe, it, expect } from 'vitest';
import type { KeyRecord } from '../store/key-record.js';
import { normaliseAddress, sourceAllowed } from './source-address.js';

function keyWith(allowedCidrs: string[]): KeyRecord {
  return {
    id: 'key_0000000000000test',
    name: 'source address test',
    mode: 'test',
    status: 'active',
    role: null,
    scopes: ['calls:outbound'],
    allowedCidrs,
    allowedCountries: ['US'],
    blockedPrefixes: [],
    callsPerSecond: 1,
    cpsBurst: 1,
    maxConcurrentCalls: 2,
    budget: null,
    maxCallDurationSec: 3600,
    callerIds: [],
    requireTls: false,
    attestation: null,
    hint: 'tg_test_AbCd…wxyz',
    expiresAt: null,
    createdAt: '2025-01-01T00:00:00.000Z',
    createdBy: 'test',
    updatedAt: '2025-01-01T00:00:00.000Z',
    lastUsedAt: null,
    revokedAt: null,
  };
}

describe('sourceAllowed', () => {
  it('an empty list allows any source', () => {
    const key = keyWith([]);
    for (const addr of ['203.0.113.9', '10.0.0.1', '2001:db8::1', '::1']) expect(sourceAllowed(key, addr)).toBe(true);
  });

  it('an IPv4 CIDR admits addresses inside it and nothing outside', () => {
    const key = keyWith(['10.0.0.0/8']);
    expect(sourceAllowed(key, '10.0.0.0')).toBe(true);
    expect(sourceAllowed(key, '10.1.2.3')).toBe(true);
    expect(sourceAllowed(key, '10.255.255.255')).toBe(true);
    expect(sourceAllowed(key, '11.0.0.0')).toBe(false);
    expect(sourceAllowed(key, '9.255.255.255')).toBe(false);
    expect(sourceAllowed(key, '192.168.1.1')).toBe(false);
  });

  it('a narrow IPv4 CIDR (/29) has exact edges', () => {
    const key = keyWith(['198.51.100.8/29']);
    expect(sourceAllowed(key, '198.51.100.7')).toBe(false);
    expect(sourceAllowed(key, '198.51.100.8')).toBe(true);
    expect(sourceAllowed(key, '198.51.100.15')).toBe(true);
    expect(sourceAllowed(key, '198.51.100.16')).toBe(false);
  });

  it('an IPv6 CIDR admits addresses inside it and nothing outside', () => {
    const key = keyWith(['2001:db8::/32']);
    expect(sourceAllowed(key, '2001:db8::1')).toBe(true);
    expect(sourceAllowed(key, '2001:db8:ffff:ffff::42')).toBe(true);
    expect(sourceAllowed(key, '2001:db9::1')).toBe(false);
    expect(sourceAllowed(key, '2001:db7:ffff::1')).toBe(false);
    expect(sourceAllowed(key, '10.1.2.3')).toBe(false);
  });

  it('an IPv4-mapped IPv6 address matches the IPv4 CIDR it maps to', () => {
    const key = keyWith(['10.0.0.0/8']);
    expect(sourceAllowed(key, '::ffff:10.1.2.3')).toBe(true);
    expect(sourceAllowed(key, '::FFFF:10.1.2.3')).toBe(true);
    expect(sourceAllowed(key, '::ffff:11.1.2.3')).toBe(false);
  });

  it('a single address without a prefix admits exactly that address', () => {
    const v4 = keyWith(['192.0.2.7']);
    expect(sourceAllowed(v4, '192.0.2.7')).toBe(true);
    expect(sourceAllowed(v4, '192.0.2.8')).toBe(false);
    expect(sourceAllowed(v4, '192.0.2.6')).toBe(false);
    const v6 = keyWith(['2001:db8::7']);
    expect(sourceAllowed(v6, '2001:db8::7')).toBe(true);
    expect(sourceAllowed(v6, '2001:db8:0:0:0:0:0:7')).toBe(true);
    expect(sourceAllowed(v6, '2001:db8::8')).toBe(false);
  });

  it('any of several CIDRs of mixed families admits an address', () => {
    const key = keyWith(['192.0.2.0/24', '2001:db8::/48']);
    expect(sourceAllowed(key, '192.0.2.200')).toBe(true);
    expect(sourceAllowed(key, '2001:db8:0:1::1')).toBe(true);
    expect(sourceAllowed(key, '2001:db8:1::1')).toBe(false);
    expect(sourceAllowed(key, '198.51.100.1')).toBe(false);
  });

  it('a garbage address is refused when the key has a list', () => {
    const key = keyWith(['0.0.0.0/0', '::/0']);
    expect(sourceAllowed(key, '203.0.113.1')).toBe(true); // the list really admits everything valid
    for (const addr of ['not-an-ip', '', '10.0.0.256', '10.1.2.3/8', 'localhost', '::ffff:']) expect(sourceAllowed(key, addr)).toBe(false);
  });
});

describe('normaliseAddress', () => {
  it('turns IPv4-mapped IPv6 into IPv4 and leaves other addresses alone', () => {
    expect(normaliseAddress('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(normaliseAddress('192.0.2.1')).toBe('192.0.2.1');
    expect(normaliseAddress('2001:db8::1')).toBe('2001:db8::1');
    expect(normaliseAddress('::1')).toBe('::1');
  });
});
