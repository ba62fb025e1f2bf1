import { describe, it, expect } from 'vitest';
import {
  DtmfReceiver, digitToEvent, dtmfPackets, eventToDigit, parseTelephoneEvent, writeTelephoneEvent,
  type DtmfDigit, type TelephoneEvent,
} from './dtmf.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const blank = (): TelephoneEvent => ({ event: 0, end: false, volume: 0, duration: 0 });

function receiver(): { rx: DtmfReceiver; digits: DtmfDigit[] } {
  const digits: DtmfDigit[] = [];
  return { rx: new DtmfReceiver({ onDigit: (d) => digits.push(d) }), digits };
}

describe('telephone-event payload (RFC 4733 §2.3)', () => {
  it('parses event, E bit, volume and duration', () => {
    const ev = blank();
    expect(parseTelephoneEvent(hex('09 8a 0320'), ev)).toBe(true);
    expect(ev).toEqual({ event: 9, end: true, volume: 10, duration: 800 });
    expect(parseTelephoneEvent(hex('0b 3f ffff'), ev)).toBe(true);
    expect(ev).toEqual({ event: 11, end: false, volume: 63, duration: 65535 });
  });

  it('ignores the reserved R bit and refuses a payload shorter than 4 octets', () => {
    const ev = blank();
    expect(parseTelephoneEvent(hex('01 4a 00a0'), ev)).toBe(true);
    expect([ev.end, ev.volume]).toEqual([false, 10]);
    expect(parseTelephoneEvent(hex('01 8a 00'), ev)).toBe(false);
  });

  it('builds the payload octet for octet, with R = 0', () => {
    const buf = Buffer.alloc(4);
    expect(writeTelephoneEvent(buf, 0, { event: 5, end: true, volume: 10, duration: 1600 })).toBe(4);
    expect(buf.toString('hex')).toBe('058a0640');
    expect(() => writeTelephoneEvent(buf, 0, { event: 5, end: false, volume: 0, duration: 70000 })).toThrow(RangeError);
  });

  it('maps event codes 0–15 to 0–9, *, #, A–D (§3.2)', () => {
    expect([0, 9, 10, 11, 12, 15, 16].map(eventToDigit)).toEqual(['0', '9', '*', '#', 'A', 'D', null]);
    expect(['0', '*', '#', 'd', 'x', '12'].map(digitToEvent)).toEqual([0, 10, 11, 15, null, null]);
  });
});

describe('DtmfReceiver (RFC 4733 §2.5.2)', () => {
  it('reports a digit once, with its duration, despite the three end packets', () => {
    const { rx, digits } = receiver();
    for (const p of dtmfPackets('7', { durationMs: 160 })) rx.push(48000, p.payload);
    expect(digits).toEqual([{ event: 7, digit: '7', durationMs: 160, volume: 10, timestamp: 48000, ended: true }]);
  });

  it('reports the same digit twice when pressed twice (a new RTP timestamp is a new event)', () => {
    const { rx, digits } = receiver();
    for (const ts of [1000, 3000]) for (const p of dtmfPackets('1')) rx.push(ts, p.payload);
    expect(digits.map((d) => [d.digit, d.timestamp])).toEqual([['1', 1000], ['1', 3000]]);
  });

  it('ignores an update that arrives after the end packet', () => {
    const { rx, digits } = receiver();
    rx.push(500, hex('03 0a 0190'));
    rx.push(500, hex('03 8a 0320'));
    rx.push(500, hex('03 0a 0190')); // reordered update
    rx.push(500, hex('03 8a 0320'));
    expect(digits).toHaveLength(1);
    expect(digits[0]!.durationMs).toBe(100);
  });

  it('closes an event whose end packets were all lost when the next one starts', () => {
    const { rx, digits } = receiver();
    rx.push(100, hex('04 0a 0190'));
    rx.push(100, hex('04 0a 0320'));
    rx.push(2000, hex('05 0a 0190'));
    expect(digits).toMatchObject([{ digit: '4', durationMs: 100, ended: false }]);
    rx.push(2000, hex('05 8a 0320'));
    expect(digits.map((d) => d.digit)).toEqual(['4', '5']);
  });

  it('reports an event still open on flush, and nothing when none is', () => {
    const { rx, digits } = receiver();
    rx.flush();
    rx.push(100, hex('0b 0a 0190'));
    rx.flush();
    rx.flush();
    expect(digits).toMatchObject([{ digit: '#', durationMs: 50, ended: false }]);
  });

  it('reports an event whose only surviving packet is an end packet', () => {
    const { rx, digits } = receiver();
    rx.push(100, hex('0a 8a 0320'));
    expect(digits).toMatchObject([{ digit: '*', durationMs: 100, ended: true }]);
  });

  it('reports events that are not digits with digit null, and uses the clock rate', () => {
    const digits: DtmfDigit[] = [];
    const rx = new DtmfReceiver({ clockRate: 16000, onDigit: (d) => digits.push(d) });
    rx.push(0, hex('10 80 0640'));
    expect(digits).toMatchObject([{ event: 16, digit: null, durationMs: 100 }]);
  });
});

describe('dtmfPackets (RFC 4733 §2.5.1)', () => {
  it('starts with the marker bit, updates every 50 ms, and ends with three end packets', () => {
    const pkts = dtmfPackets('9', { durationMs: 200 });
    expect(pkts.map((p) => [p.atMs, p.marker, p.end, p.duration])).toEqual([
      [0, true, false, 400],
      [50, false, false, 800],
      [100, false, false, 1200],
      [150, false, false, 1600],
      [200, false, true, 1600],
      [220, false, true, 1600],
      [240, false, true, 1600],
    ]);
    expect(pkts[0]!.payload.toString('hex')).toBe('090a0190');
    expect(pkts[4]!.payload.toString('hex')).toBe('098a0640');
  });

  it('caps the last update at the total duration when it is not a multiple of the interval', () => {
    const pkts = dtmfPackets('A', { durationMs: 120, volume: 7 });
    expect(pkts.map((p) => p.duration)).toEqual([400, 800, 960, 960, 960, 960]);
    expect(pkts.every((p) => (p.payload[1]! & 0x3f) === 7)).toBe(true);
  });

  it('refuses what is not a DTMF digit or does not fit 16 bits of duration', () => {
    expect(() => dtmfPackets('x')).toThrow(RangeError);
    expect(() => dtmfPackets('1', { durationMs: 9000 })).toThrow(RangeError);
  });
});
