import { describe, it, expect } from 'vitest';
import { SipStreamFramer, type FramingError } from './sip-stream-framer.js';
import { parseMessage } from './sip-parser.js';

const BODY = 'v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n';
const M1 = Buffer.from(
  [
    'INVITE sip:bob@biloxi.example.com SIP/2.0',
    'Via: SIP/2.0/TCP pc33.atlanta.example.com;branch=z9hG4bK776asdhds',
    'To: <sip:bob@biloxi.example.com>',
    'From: <sip:alice@atlanta.example.com>;tag=1928301774',
    'Call-ID: a84b4c76e66710',
    'CSeq: 1 INVITE',
    `Content-Length: ${Buffer.byteLength(BODY)}`,
    '',
    BODY,
  ].join('\r\n'),
);
// Compact Content-Length, and a body containing an empty line and a NUL.
const BODY2 = Buffer.from('line one\r\n\r\nafter blank\x00', 'latin1');
const M2 = Buffer.concat([
  Buffer.from(
    [
      'MESSAGE sip:bob@biloxi.example.com SIP/2.0',
      'Via: SIP/2.0/TCP pc33.atlanta.example.com;branch=z9hG4bK776asdhdt',
      'To: <sip:bob@biloxi.example.com>',
      'From: <sip:alice@atlanta.example.com>;tag=1928301774',
      'Call-ID: a84b4c76e66711',
      'CSeq: 2 MESSAGE',
      `l  :  ${BODY2.length}`,
      '',
      '',
    ].join('\r\n'),
  ),
  BODY2,
]);
// No Content-Length at all: on a stream that means an empty body (RFC 3261 §18.3 requires it; we default to 0).
const M3 = Buffer.from('OPTIONS sip:bob@biloxi.example.com SIP/2.0\r\nCall-ID: x\r\nCSeq: 3 OPTIONS\r\n\r\n');

type Event = { kind: 'message'; data: Buffer } | { kind: 'ping' } | { kind: 'pong' } | { kind: 'error'; error: FramingError };

function framer(maxMessageBytes?: number): { f: SipStreamFramer; events: Event[] } {
  const events: Event[] = [];
  const f = new SipStreamFramer(
    {
      onMessage: (data) => events.push({ kind: 'message', data }),
      onPing: () => events.push({ kind: 'ping' }),
      onPong: () => events.push({ kind: 'pong' }),
      onError: (error) => events.push({ kind: 'error', error }),
    },
    maxMessageBytes === undefined ? {} : { maxMessageBytes },
  );
  return { f, events };
}

const summary = (events: Event[]): string[] =>
  events.map((e) => (e.kind === 'message' ? `message:${e.data.toString('latin1')}` : e.kind === 'error' ? `error:${e.error.code}` : e.kind));

describe('SipStreamFramer (RFC 3261 §18.3)', () => {
  it('frames one message by Content-Length, and two pipelined ones', () => {
    const { f, events } = framer();
    f.push(Buffer.concat([M1, M2, M3]));
    expect(summary(events)).toEqual([`message:${M1.toString('latin1')}`, `message:${M2.toString('latin1')}`, `message:${M3.toString('latin1')}`]);
    expect(f.bufferedBytes).toBe(0);
    for (const e of events) if (e.kind === 'message') expect(parseMessage(e.data).ok || e.data.equals(M3)).toBe(true);
  });

  it('gives the same messages for every split point of two pipelined messages', () => {
    const stream = Buffer.concat([M1, M2]);
    const expected = [`message:${M1.toString('latin1')}`, `message:${M2.toString('latin1')}`];
    for (let cut = 0; cut <= stream.length; cut++) {
      const { f, events } = framer();
      f.push(stream.subarray(0, cut));
      f.push(stream.subarray(cut));
      expect(summary(events), `cut at ${cut}`).toEqual(expected);
    }
  });

  it('gives the same result when fed one byte at a time', () => {
    const stream = Buffer.concat([M1, M2, M3]);
    const { f, events } = framer();
    for (let i = 0; i < stream.length; i++) f.push(stream.subarray(i, i + 1));
    expect(events.filter((e) => e.kind === 'message')).toHaveLength(3);
  });

  it('hands out messages that do not share memory with the pushed chunks', () => {
    const chunk = Buffer.from(M1);
    const { f, events } = framer();
    f.push(chunk);
    chunk.fill(0);
    expect(events[0]?.kind === 'message' && events[0].data.equals(M1)).toBe(true);
  });
});

describe('SipStreamFramer keep-alives (RFC 5626 §3.5.1)', () => {
  it('reports CRLFCRLF between messages as a ping and a single CRLF as a pong', () => {
    const { f, events } = framer();
    f.push(Buffer.concat([Buffer.from('\r\n\r\n'), M1, Buffer.from('\r\n\r\n\r\n\r\n'), M2, Buffer.from('\r\n'), M3]));
    expect(summary(events).map((s) => s.split(' ')[0])).toEqual(['ping', 'message:INVITE', 'ping', 'ping', 'message:MESSAGE', 'pong', 'message:OPTIONS']);
  });

  it('reports a lone CRLF pong at once, without waiting for more data', () => {
    const { f, events } = framer();
    f.push(Buffer.from('\r\n'));
    expect(summary(events)).toEqual(['pong']);
  });

  it('finds the messages and pings at every split point of message, ping, message', () => {
    const stream = Buffer.concat([M1, Buffer.from('\r\n\r\n'), M2]);
    const pingAt = M1.length;
    for (let cut = 0; cut <= stream.length; cut++) {
      const { f, events } = framer();
      f.push(stream.subarray(0, cut));
      f.push(stream.subarray(cut));
      const kinds = summary(events).map((s) => s.split(' ')[0]);
      // Cut after the ping's first CRLF (before or inside the second): the first half is reported
      // as a pong before the rest shows it was a ping (documented in the framer). Every other cut
      // gives exactly one ping.
      const expected = cut === pingAt + 2 || cut === pingAt + 3 ? ['message:INVITE', 'pong', 'ping', 'message:MESSAGE'] : ['message:INVITE', 'ping', 'message:MESSAGE'];
      expect(kinds, `cut at ${cut}`).toEqual(expected);
    }
  });

  it('does not mistake CRLFs inside a body for keep-alives', () => {
    const body = '\r\n\r\n\r\n';
    const m = Buffer.from(`MESSAGE sip:b@example.com SIP/2.0\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    const { f, events } = framer();
    f.push(m);
    expect(summary(events)).toEqual([`message:${m.toString('latin1')}`]);
  });
});

describe('SipStreamFramer limits and framing errors', () => {
  it('stops with HEADERS_TOO_LARGE when no end of headers arrives within maxMessageBytes', () => {
    const { f, events } = framer(1000);
    f.push(Buffer.from('INVITE sip:b@example.com SIP/2.0\r\n'));
    for (let i = 0; i < 40 && !f.isStopped; i++) f.push(Buffer.from(`X-Filler-${i}: ${'a'.repeat(30)}\r\n`));
    expect(summary(events)).toEqual(['error:HEADERS_TOO_LARGE']);
    expect(f.isStopped).toBe(true);
    f.push(M1);
    expect(events).toHaveLength(1);
    expect(f.bufferedBytes).toBe(0);
  });

  it('stops with MESSAGE_TOO_LARGE when Content-Length exceeds the limit, before the body arrives', () => {
    const { f, events } = framer(1000);
    f.push(Buffer.from('INVITE sip:b@example.com SIP/2.0\r\nContent-Length: 5000\r\n\r\n'));
    expect(summary(events)).toEqual(['error:MESSAGE_TOO_LARGE']);
  });

  it('hands the failed message\'s header block to onError, so the request can be answered', () => {
    const { f, events } = framer(1000);
    const head = 'INVITE sip:b@example.com SIP/2.0\r\nCSeq: 1 INVITE\r\nContent-Length: 5000\r\n\r\n';
    f.push(Buffer.from(`${head}body bytes`));
    const e = events[0];
    expect(e?.kind === 'error' && e.error.head.toString()).toBe(head);
    const bad = framer();
    bad.f.push(Buffer.from('OPTIONS sip:b@example.com SIP/2.0\r\nl: -1\r\n\r\n'));
    const b = bad.events[0];
    expect(b?.kind === 'error' && b.error.head.toString()).toBe('OPTIONS sip:b@example.com SIP/2.0\r\nl: -1\r\n\r\n');
    const long = framer(100);
    long.f.push(Buffer.from(`OPTIONS sip:b@example.com SIP/2.0\r\nX: ${'a'.repeat(200)}`));
    const l = long.events[0];
    expect(l?.kind === 'error' && l.error.head.length).toBe(100);
  });

  it.each([
    ['negative (RFC 4475 §3.1.2.3)', 'Content-Length: -999'],
    ['non-numeric', 'Content-Length: five'],
    ['conflicting (RFC 4475 §3.3.9)', 'Content-Length: 13\r\nl: 5'],
    ['overlong', 'Content-Length: 99999999999999999999'],
  ])('stops with BAD_CONTENT_LENGTH for a %s value', (_label, header) => {
    const { f, events } = framer();
    f.push(Buffer.from(`OPTIONS sip:b@example.com SIP/2.0\r\n${header}\r\n\r\nbody`));
    expect(summary(events)).toEqual(['error:BAD_CONTENT_LENGTH']);
  });

  it('accepts repeated identical Content-Length values and folded ones', () => {
    const { f, events } = framer();
    f.push(Buffer.from('OPTIONS sip:b@example.com SIP/2.0\r\nContent-Length: 2\r\nl: 2\r\n\r\nhi'));
    f.push(Buffer.from('OPTIONS sip:b@example.com SIP/2.0\r\nContent-Length:\r\n  3\r\n\r\nabc'));
    expect(summary(events).map((s) => s.slice(-3))).toEqual(['\nhi', 'abc']);
  });

  it('keeps framing when a handler throws, and rethrows the first error after the chunk', () => {
    let calls = 0;
    const f = new SipStreamFramer({
      onMessage: () => {
        calls++;
        if (calls === 1) throw new Error('listener bug');
      },
      onError: () => undefined,
    });
    expect(() => f.push(Buffer.concat([M1, M2]))).toThrow('listener bug');
    expect(calls).toBe(2);
    f.push(M3);
    expect(calls).toBe(3);
  });
});
