import { describe, it, expect } from 'vitest';
import { createHmac } from 'node:crypto';
import { HmacSha1 } from './hmac-sha1.js';
import { prng } from '../testing/prng.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const ascii = (s: string) => Buffer.from(s, 'latin1');

function macHex(key: Uint8Array, data: Uint8Array, extra: Uint8Array | null = null, tagLength = 20): string {
  const out = Buffer.alloc(tagLength);
  new HmacSha1(key).mac(data, 0, data.length, extra, out, 0, tagLength);
  return out.toString('hex');
}


describe('HMAC-SHA1 test cases of RFC 2202 §3', () => {
  const cases: [string, Buffer, Buffer, string][] = [
    ['1', Buffer.alloc(20, 0x0b), ascii('Hi There'), 'b617318655057264e28bc0b6fb378c8ef146be00'],
    ['2', ascii('Jefe'), ascii('what do ya want for nothing?'), 'effcdf6ae5eb2fa2d27416d5f184df9c259a7c79'],
    ['3', Buffer.alloc(20, 0xaa), Buffer.alloc(50, 0xdd), '125d7342b9ac11cd91a39af48aa17b4f63f175d3'],
    ['4', hex('0102030405060708090a0b0c0d0e0f10111213141516171819'), Buffer.alloc(50, 0xcd), '4c9007f4026250c6bc8414f9bf50c86c2d7235da'],
    ['5', Buffer.alloc(20, 0x0c), ascii('Test With Truncation'), '4c1a03424b55e07fe7f27be1d58bb9324a9a5a04'],
    ['6', Buffer.alloc(80, 0xaa), ascii('Test Using Larger Than Block-Size Key - Hash Key First'), 'aa4ae5e15272d00e95705637ce8a3b55ed402112'],
    [
      '7',
      Buffer.alloc(80, 0xaa),
      ascii('Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data'),
      'e8e99d0f45237d786d6bbaa7965c7808bbff1a91',
    ],
  ];

  it.each(cases)('test case %s', (_n, key, data, digest) => {
    expect(macHex(key, data)).toBe(digest);
    // Same answer with the message split between data and extra.
    const cut = data.length >> 1;
    const out = Buffer.alloc(20);
    new HmacSha1(key).mac(data, 0, cut, data.subarray(cut), out, 0, 20);
    expect(out.toString('hex')).toBe(digest);
  });

  it('test case 5 truncated to 96 bits (digest-96)', () => {
    expect(macHex(Buffer.alloc(20, 0x0c), ascii('Test With Truncation'), null, 12)).toBe('4c1a03424b55e07fe7f27be1');
  });
});

describe('HMAC-SHA1 against node:crypto', () => {
  it('2,000 seeded random keys and messages (0–1500 octets, sub-ranges, split extra tails)', () => {
    const rand = prng(0x5eed5a1);
    const int = (n: number) => Math.floor(rand() * n);
    const bytes = (n: number) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = int(256);
      return b;
    };
    for (let c = 0; c < 2000; c++) {
      // Keys from empty to past one block (hashed first); SRTP's are 20 octets.
      const key = bytes(c % 4 === 0 ? 20 : int(150));
      const len = c < 200 ? c : int(1501);
      const msg = bytes(len);
      // Message inside a larger buffer at a random offset, and a random split into data ‖ extra.
      const lead = int(40);
      const buf = Buffer.concat([bytes(lead), msg, bytes(int(40))]);
      const split = c % 3 === 0 ? len : c % 3 === 1 ? Math.max(0, len - 4) : int(len + 1);
      const extra = split === len && c % 2 === 0 ? null : Buffer.from(msg.subarray(split));
      const ref = createHmac('sha1', key).update(msg).digest();
      const mac = new HmacSha1(key);
      const out = Buffer.alloc(24, 0xee);
      mac.mac(buf, lead, lead + split, extra, out, 2, 20);
      if (!out.subarray(2, 22).equals(ref)) {
        throw new Error(`case ${c}: key ${key.length}, message ${len}, split ${split}: ${out.subarray(2, 22).toString('hex')} != ${ref.toString('hex')}`);
      }
      expect(out[0]).toBe(0xee); // nothing outside [outOffset, outOffset + tagLength)
      expect(out[22]).toBe(0xee);
      // The instance is reusable: a second message under the same key.
      if (c % 50 === 0) {
        const again = Buffer.alloc(20);
        mac.mac(msg, 0, len, null, again, 0, 20);
        expect(again.equals(ref)).toBe(true);
        expect(mac.verify(msg, 0, len, null, ref, 0, 20)).toBe(true);
      }
    }
  });

  it('every length around the padding boundaries (0–200 octets), data only and with a 4-octet extra', () => {
    const key = hex('cebe321f6ff7716b6fd4ab49af256a156d38baa4'); // RFC 3711 B.3 auth key, 20 octets
    const mac = new HmacSha1(key);
    const msg = Buffer.alloc(204);
    for (let i = 0; i < msg.length; i++) msg[i] = (i * 31 + 7) & 0xff;
    const out = Buffer.alloc(20);
    for (let n = 0; n <= 200; n++) {
      const ref = createHmac('sha1', key).update(msg.subarray(0, n + 4)).digest();
      mac.mac(msg, 0, n, msg.subarray(n, n + 4), out, 0, 20);
      expect(out.equals(ref), `length ${n} + 4`).toBe(true);
      mac.mac(msg, 0, n + 4, null, out, 0, 20);
      expect(out.equals(ref), `length ${n + 4}`).toBe(true);
    }
  });

  it('writes the tag right after the message in the same buffer (the SRTP layout)', () => {
    const key = Buffer.alloc(20, 7);
    const pkt = Buffer.alloc(172 + 10);
    for (let i = 0; i < 172; i++) pkt[i] = i;
    const roc = hex('00000003');
    const ref = createHmac('sha1', key).update(pkt.subarray(0, 172)).update(roc).digest();
    new HmacSha1(key).mac(pkt, 0, 172, roc, pkt, 172, 10);
    expect(pkt.subarray(172).equals(ref.subarray(0, 10))).toBe(true);
    expect(pkt[171]).toBe(171);
  });

  it('refuses a message or tag range outside its buffer', () => {
    const mac = new HmacSha1(Buffer.alloc(20));
    const out = Buffer.alloc(20);
    expect(() => mac.mac(Buffer.alloc(10), 0, 11, null, out, 0, 20)).toThrow(RangeError);
    expect(() => mac.mac(Buffer.alloc(10), 5, 4, null, out, 0, 20)).toThrow(RangeError);
    expect(() => mac.mac(Buffer.alloc(10), 0, 10, null, out, 12, 10)).toThrow(RangeError);
    expect(() => mac.mac(Buffer.alloc(10), 0, 10, null, Buffer.alloc(30), 0, 21)).toThrow(RangeError);
    expect(() => mac.verify(Buffer.alloc(10), 0, 10, null, Buffer.alloc(10), 4, 10)).toThrow(RangeError);
  });
});

describe('HMAC-SHA1 truncated tags (SRTP: 80 and 32 bits)', () => {
  const key = Buffer.alloc(20, 0x42);
  const data = Buffer.from('an RTP header and payload, followed by the ROC');
  const roc = hex('00000001');
  const full = createHmac('sha1', key).update(data).update(roc).digest();

  it.each([10, 4])('a %i-octet tag is the digest prefix, and only those octets are written', (n) => {
    const out = Buffer.alloc(22, 0xaa);
    new HmacSha1(key).mac(data, 0, data.length, roc, out, 1, n);
    expect(out.subarray(1, 1 + n).equals(full.subarray(0, n))).toBe(true);
    expect(out[0]).toBe(0xaa);
    expect(out.subarray(1 + n).equals(Buffer.alloc(21 - n, 0xaa))).toBe(true);
  });

  it.each([10, 4])('verify accepts the %i-octet tag and refuses it with any single bit flipped', (n) => {
    const mac = new HmacSha1(key);
    const tag = Buffer.concat([Buffer.alloc(3), full.subarray(0, n)]);
    expect(mac.verify(data, 0, data.length, roc, tag, 3, n)).toBe(true);
    for (let i = 0; i < n; i++) {
      for (let bit = 0; bit < 8; bit++) {
        tag[3 + i]! ^= 1 << bit;
        expect(mac.verify(data, 0, data.length, roc, tag, 3, n)).toBe(false);
        tag[3 + i]! ^= 1 << bit;
      }
    }
    // Wrong ROC (extra) or one octet less of data: refused.
    expect(mac.verify(data, 0, data.length, hex('00000002'), tag, 3, n)).toBe(false);
    expect(mac.verify(data, 0, data.length - 1, roc, tag, 3, n)).toBe(false);
  });
});
