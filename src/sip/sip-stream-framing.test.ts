import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { framingErrorReply, sipStreamFraming } from './sip-stream-framing.js';
import { parseMessage } from './sip-parser.js';
import type { SipResponse } from './sip-message.js';

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/rfc4475/', import.meta.url));

const HEAD = [
  'INVITE sip:bob@biloxi.example.com SIP/2.0',
  'Via: SIP/2.0/TCP pc33.atlanta.example.com;branch=z9hG4bK776asdhds',
  'To: <sip:bob@biloxi.example.com>',
  'From: <sip:alice@atlanta.example.com>;tag=1928301774',
  'Call-ID: a84b4c76e66710',
  'CSeq: 1 INVITE',
];

function reply(bytes: string, maxMessageBytes = 65_535): { code: string; reply: SipResponse | null } {
  let out: { code: string; reply: SipResponse | null } | null = null;
  const framer = sipStreamFraming(
    {
      onMessage: () => undefined,
      onError: (e) => {
        const r = e.reply ? parseMessage(e.reply) : null;
        out = { code: e.code, reply: r?.ok && r.message.kind === 'response' ? r.message : null };
      },
    },
    maxMessageBytes,
  );
  framer.push(Buffer.from(bytes, 'latin1'));
  if (!out) throw new Error('no framing error');
  return out;
}

describe('SIP stream framing: answers to framing errors before the connection closes', () => {
  it('a negative Content-Length (RFC 4475 §3.1.2.3 ncl) is answered 400 with the request\'s Via, From, To, Call-ID and CSeq', () => {
    const r = reply([...HEAD, 'Content-Length: -999', '', 'v=0'].join('\r\n'));
    expect(r.code).toBe('BAD_CONTENT_LENGTH');
    expect(r.reply?.status).toBe(400);
    expect(r.reply?.reason).toBe('Invalid Content-Length');
    expect(r.reply?.headers.get('Via')).toBe('SIP/2.0/TCP pc33.atlanta.example.com;branch=z9hG4bK776asdhds');
    expect(r.reply?.headers.get('CSeq')).toBe('1 INVITE');
    expect(r.reply?.headers.get('Call-ID')).toBe('a84b4c76e66710');
  });

  it('the ncl fixture itself gets its 400', () => {
    const raw = readFileSync(`${FIXTURES}ncl.sip`, 'latin1');
    const r = reply(raw);
    expect(r.reply?.status).toBe(400);
    expect(r.reply?.headers.get('Call-ID')).toContain('ncl');
  });

  it('a message whose Content-Length takes it over maxMessageBytes is answered 513 before its body arrives', () => {
    const r = reply([...HEAD, 'Content-Length: 100000', '', 'v=0'].join('\r\n'));
    expect(r.code).toBe('MESSAGE_TOO_LARGE');
    expect(r.reply?.status).toBe(513);
    expect(r.reply?.reason).toBe('Message Too Large');
  });

  it('headers that do not end within maxMessageBytes are 513 too, built from the headers read', () => {
    const r = reply([...HEAD, `X-Filler: ${'a'.repeat(2000)}`, ''].join('\r\n'), 1500);
    expect(r.code).toBe('HEADERS_TOO_LARGE');
    expect(r.reply?.status).toBe(513);
    expect(r.reply?.headers.get('CSeq')).toBe('1 INVITE');
  });

  it('nothing to answer for a response, an ACK, a request without Via, or bytes that are not SIP', () => {
    const none = (bytes: string): void => expect(framingErrorReply({ code: 'BAD_CONTENT_LENGTH', message: '', head: Buffer.from(bytes) })).toBeNull();
    none(['SIP/2.0 200 OK', 'Via: SIP/2.0/TCP h;branch=z9hG4bK1', 'CSeq: 1 INVITE', 'Content-Length: -1', '', ''].join('\r\n'));
    none(['ACK sip:bob@biloxi.example.com SIP/2.0', ...HEAD.slice(1, 5), 'CSeq: 1 ACK', 'Content-Length: -1', '', ''].join('\r\n'));
    none([HEAD[0], ...HEAD.slice(2), 'Content-Length: -1', '', ''].join('\r\n'));
    none('\x16\x03\x01 not sip at all\r\n\r\n');
  });
});
