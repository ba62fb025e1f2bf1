import { describe, expect, it } from 'vitest';
import { formatIp, inCidr, parseCidr, parseIp, parseIpv4Loose, parseIpv6, unmapIpv4 } from './ip-address.js';

describe('IP addresses', () => {
  it('reads every IPv4 spelling URL parsers and inet_aton accept (WHATWG URL §IPv4 parser) as the same address', () => {
    for (const s of ['127.0.0.1', '127.1', '127.0.1', '2130706433', '0x7f000001', '017700000001', '0177.0.0.1', '0x7f.0.0.1', '0x7F.1', '127.0.0.1.']) {
      expect(formatIp(parseIpv4Loose(s)!), s).toBe('127.0.0.1');
    }
    for (const s of ['256.0.0.1', '1.2.3.4.5', '4294967296', '08.0.0.1', 'example.com', '', '1..2']) expect(parseIpv4Loose(s), s).toBeNull();
  });

  it('reads IPv6 text per RFC 4291 §2.2 and writes it per RFC 5952', () => {
    expect(formatIp(parseIpv6('[::1]')!)).toBe('::1');
    expect(formatIp(parseIpv6('::ffff:127.0.0.1')!)).toBe('::ffff:7f00:1');
    expect(formatIp(parseIpv6('2001:DB8:0:0:1:0:0:1')!)).toBe('2001:db8::1:0:0:1');
    expect(formatIp(parseIpv6('1:2:3:4:5:6:7:8')!)).toBe('1:2:3:4:5:6:7:8');
    expect(formatIp(parseIpv6('::')!)).toBe('::');
    for (const s of ['1:2:3:4:5:6:7', ':::1', '1::2::3', 'fe80::1%eth0', '12345::', '::ffff:256.0.0.1', '1.2.3.4', 'g::1']) expect(parseIpv6(s), s).toBeNull();
  });

  it('sees the IPv4 address inside IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) IPv6 (RFC 4291 §2.5.5)', () => {
    expect(formatIp(unmapIpv4(parseIp('::ffff:7f00:1')!))).toBe('127.0.0.1');
    expect(formatIp(unmapIpv4(parseIp('::7f00:1')!))).toBe('127.0.0.1');
    expect(formatIp(unmapIpv4(parseIp('::ffff:169.254.169.254')!))).toBe('169.254.169.254');
    expect(unmapIpv4(parseIp('::1')!).family).toBe(6);
    expect(unmapIpv4(parseIp('::')!).family).toBe(6);
    expect(unmapIpv4(parseIp('2001:db8::7f00:1')!).family).toBe(6);
  });

  it('matches CIDR ranges, including prefixes that end inside a byte; mapped ranges become IPv4 ranges', () => {
    const cgnat = parseCidr('100.64.0.0/10')!;
    expect(inCidr(parseIp('100.64.0.1')!, cgnat)).toBe(true);
    expect(inCidr(parseIp('100.127.255.255')!, cgnat)).toBe(true);
    expect(inCidr(parseIp('100.128.0.0')!, cgnat)).toBe(false);
    expect(inCidr(parseIp('fd12::1')!, parseCidr('fc00::/7')!)).toBe(true);
    expect(inCidr(parseIp('fe00::1')!, parseCidr('fc00::/7')!)).toBe(false);
    expect(parseCidr('127.0.0.1')).toMatchObject({ family: 4, prefix: 32 });
    expect(parseCidr('::ffff:127.0.0.0/104')).toMatchObject({ family: 4, prefix: 8 });
    expect(inCidr(parseIp('10.0.0.1')!, parseCidr('0.0.0.0/0')!)).toBe(true);
    expect(inCidr(parseIp('::1')!, parseCidr('0.0.0.0/0')!)).toBe(false);
    for (const s of ['10.0.0.0/33', '10.0.0.0/', '10.0.0/8', 'fd00::/129', 'localhost/32', '10.0.0.0/08']) expect(parseCidr(s), s).toBeNull();
  });
});
