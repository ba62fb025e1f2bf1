import { describe, it, expect } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseMessage } from './sip-parser.js';
import { parseNameAddr } from './sip-grammar.js';
import { buildResponse, buildResponseFromPartial, reasonPhrase, serializeMessage } from './sip-serializer.js';
import { SipHeaders, type ParseResult, type SipMessage, type SipRequest } from './sip-message.js';

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/rfc4475/', import.meta.url));

function ok(r: ParseResult): SipMessage {
  if (!r.ok) throw new Error(`expected a message, got ${r.status} ${r.reason}`);
  return r.message;
}
function req(r: ParseResult): SipRequest {
  const m = ok(r);
  if (m.kind !== 'request') throw new Error('expected a request');
  return m;
}

const INVITE = Buffer.from(
  [
    'INVITE sip:bob@biloxi.example.com SIP/2.0',
    'Via: SIP/2.0/UDP bigbox3.site3.example.com;branch=z9hG4bK77ef4c2312983.1',
    'Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8;received=192.0.2.1',
    'Max-Forwards: 70',
    'To: Bob <sip:bob@biloxi.example.com>',
    'From: Alice <sip:alice@atlanta.example.com>;tag=1928301774',
    'Call-ID: a84b4c76e66710',
    'CSeq: 314159 INVITE',
    'Contact: <sip:alice@pc33.atlanta.example.com>',
    'Content-Type: application/sdp',
    'Content-Length: 4',
    '',
    'v=0\n',
  ].join('\r\n'),
);

describe('serializeMessage (RFC 3261 §7)', () => {
  it('writes the start line, headers in order, Content-Length, an empty line and the body', () => {
    const headers = new SipHeaders().append('Via', 'SIP/2.0/UDP h.example.com;branch=z9hG4bK1').append('Call-ID', 'x');
    const out = serializeMessage({ kind: 'request', method: 'OPTIONS', uri: 'sip:b@example.com', headers, body: Buffer.from('hi') });
    expect(out.toString()).toBe('OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\nCall-ID: x\r\nContent-Length: 2\r\n\r\nhi');
    const resp = serializeMessage({ kind: 'response', status: 200, reason: 'OK', headers: new SipHeaders(), body: Buffer.alloc(0) });
    expect(resp.toString()).toBe('SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n');
  });

  it('replaces any Content-Length (long or compact) with the body byte length, in place', () => {
    const headers = new SipHeaders().append('Call-ID', 'x').append('Content-Length', '999').append('Subject', 's').append('l', '7');
    const body = Buffer.from('ünïcödé', 'utf8');
    const out = serializeMessage({ kind: 'request', method: 'MESSAGE', uri: 'sip:b@example.com', headers, body }).toString('utf8');
    expect(out).toBe(`MESSAGE sip:b@example.com SIP/2.0\r\nCall-ID: x\r\nContent-Length: ${body.length}\r\nSubject: s\r\n\r\nünïcödé`);
  });

  it('writes header values as UTF-8 and bodies byte for byte', () => {
    const body = Buffer.from([0, 0xff, 0x80, 0x0d, 0x0a]);
    const headers = new SipHeaders().append('Subject', 'Grüße');
    const out = serializeMessage({ kind: 'response', status: 200, reason: 'Всё хорошо', headers, body });
    expect(out.subarray(out.length - body.length).equals(body)).toBe(true);
    expect(out.toString('utf8')).toContain('SIP/2.0 200 Всё хорошо\r\nSubject: Grüße\r\n');
  });

  it('never lets a CR or LF in a value end a header early (header injection)', () => {
    const headers = new SipHeaders().append('Subject', 'a\r\nVia: SIP/2.0/UDP evil.example.com\r\n\r\nBODY');
    const text = serializeMessage({ kind: 'response', status: 200, reason: 'OK\r\nX: y', headers, body: Buffer.alloc(0) }).toString();
    expect(text.split('\r\n')).toEqual(['SIP/2.0 200 OK X: y', 'Subject: a Via: SIP/2.0/UDP evil.example.com BODY', 'Content-Length: 0', '', '']);
  });

  it('refuses a header name that is not a token (a caller bug)', () => {
    const headers = new SipHeaders().append('Bad: name', 'x');
    expect(() => serializeMessage({ kind: 'response', status: 200, reason: 'OK', headers, body: Buffer.alloc(0) })).toThrow(/header name/);
  });
});

describe('round trip: parse → serialize → parse', () => {
  const valid = readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.sip'))
    .map((f) => f.slice(0, -4))
    .filter((name) => parseMessage(readFileSync(`${FIXTURES}${name}.sip`)).ok);

  it('covers the RFC 4475 messages that parse', () => {
    expect(valid.length).toBeGreaterThanOrEqual(25);
    expect(valid).toContain('wsinv');
    expect(valid).toContain('intmeth');
  });

  it.each([['invite', INVITE] as const, ...valid.map((name) => [name, readFileSync(`${FIXTURES}${name}.sip`)] as const)])(
    '%s keeps start line, header values and body',
    (_name, raw) => {
      const first = ok(parseMessage(raw));
      const second = ok(parseMessage(serializeMessage(first)));
      expect(second.kind).toBe(first.kind);
      if (first.kind === 'request' && second.kind === 'request') {
        expect([second.method, second.uri]).toEqual([first.method, first.uri]);
      } else if (first.kind === 'response' && second.kind === 'response') {
        expect([second.status, second.reason]).toEqual([first.status, first.reason]);
      }
      const withoutLength = (m: SipMessage) => m.headers.entries().filter((h) => h.name !== 'Content-Length');
      expect(withoutLength(second)).toEqual(withoutLength(first));
      expect(second.body.equals(first.body)).toBe(true);
      expect(second.headers.get('Content-Length')).toBe(String(first.body.length));
    },
  );
});

describe('buildResponse (RFC 3261 §8.2.6.2)', () => {
  it('copies every Via in order, From, To, Call-ID and CSeq, and nothing else', () => {
    const r = buildResponse(req(parseMessage(INVITE)), 180);
    expect(r.reason).toBe('Ringing');
    expect(r.headers.entries()).toEqual([
      { name: 'Via', value: 'SIP/2.0/UDP bigbox3.site3.example.com;branch=z9hG4bK77ef4c2312983.1' },
      { name: 'Via', value: 'SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8;received=192.0.2.1' },
      { name: 'From', value: 'Alice <sip:alice@atlanta.example.com>;tag=1928301774' },
      { name: 'To', value: 'Bob <sip:bob@biloxi.example.com>' },
      { name: 'Call-ID', value: 'a84b4c76e66710' },
      { name: 'CSeq', value: '314159 INVITE' },
    ]);
    expect(r.body.length).toBe(0);
  });

  it('adds the To tag when To has none, and keeps an existing one', () => {
    const request = req(parseMessage(INVITE));
    const r = buildResponse(request, 200, undefined, { toTag: 'a6c85cf', headers: [['Contact', '<sip:bob@192.0.2.4>']], body: Buffer.from('v=0\r\n') });
    expect(parseNameAddr(r.headers.get('To')!)?.params.get('tag')).toBe('a6c85cf');
    expect(r.headers.get('Contact')).toBe('<sip:bob@192.0.2.4>');
    expect(r.body.toString()).toBe('v=0\r\n');
    const tagged = { ...request, headers: request.headers.clone().set('To', 'Bob <sip:bob@biloxi.example.com>;tag=existing') };
    expect(buildResponse(tagged, 200, 'OK', { toTag: 'new' }).headers.get('To')).toBe('Bob <sip:bob@biloxi.example.com>;tag=existing');
  });

  it('keeps a comma-joined Via line as it is, and serializes to a parseable response', () => {
    const joined = Buffer.from(INVITE.toString('latin1').replace('z9hG4bK77ef4c2312983.1\r\nVia: ', 'z9hG4bK77ef4c2312983.1, '), 'latin1');
    const r = buildResponse(req(parseMessage(joined)), 486);
    expect(r.headers.getAll('Via')).toHaveLength(2);
    const back = ok(parseMessage(serializeMessage(r)));
    expect(back.kind === 'response' && [back.status, back.reason]).toEqual([486, 'Busy Here']);
  });

  it('has default reason phrases for the common codes', () => {
    const table: [number, string][] = [
      [100, 'Trying'], [180, 'Ringing'], [183, 'Session Progress'], [200, 'OK'], [202, 'Accepted'], [400, 'Bad Request'],
      [401, 'Unauthorized'], [403, 'Forbidden'], [404, 'Not Found'], [405, 'Method Not Allowed'], [407, 'Proxy Authentication Required'],
      [408, 'Request Timeout'], [413, 'Request Entity Too Large'], [415, 'Unsupported Media Type'], [420, 'Bad Extension'],
      [480, 'Temporarily Unavailable'], [481, 'Call/Transaction Does Not Exist'], [482, 'Loop Detected'], [483, 'Too Many Hops'],
      [486, 'Busy Here'], [487, 'Request Terminated'], [488, 'Not Acceptable Here'], [491, 'Request Pending'],
      [500, 'Server Internal Error'], [501, 'Not Implemented'], [503, 'Service Unavailable'], [504, 'Server Time-out'],
      [505, 'Version Not Supported'], [513, 'Message Too Large'], [603, 'Decline'],
    ];
    for (const [code, phrase] of table) expect(reasonPhrase(code)).toBe(phrase);
    expect(reasonPhrase(499)).toBe('Client Error');
  });
});

describe('buildResponseFromPartial', () => {
  it('answers a request that failed to parse when Via, From, To, Call-ID and CSeq were read', () => {
    const bad = Buffer.from(INVITE.toString('latin1').replace('Content-Length: 4', 'Content-Length: 40'), 'latin1');
    const r = parseMessage(bad);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const resp = buildResponseFromPartial(r.partial, r.status!, r.reason);
    expect(resp?.status).toBe(400);
    expect(resp?.reason).toBe('Content-Length larger than the message body');
    expect(resp?.headers.getAll('Via')).toHaveLength(2);
    expect(resp?.headers.get('CSeq')).toBe('314159 INVITE');
    expect(buildResponseFromPartial(r.partial, 400)?.reason).toBe('Bad Request');
  });

  it('answers a request whose start line was malformed (RFC 4475 §3.1.2.9 lwsstart)', () => {
    const r = parseMessage(readFileSync(`${FIXTURES}lwsstart.sip`));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.partial?.method).toBeNull();
    const resp = buildResponseFromPartial(r.partial, 400);
    expect(resp?.headers.get('Call-ID')).toBe('lwsstart.dfknq234oi243099adsdfnawe3@example.com');
    expect(resp?.headers.get('CSeq')).toBe('1893884 INVITE');
  });

  it('answers 513 to an oversize request', () => {
    const big = Buffer.concat([INVITE, Buffer.alloc(70_000, 0x41)]);
    const r = parseMessage(big);
    expect(!r.ok && r.status).toBe(513);
    if (r.ok) return;
    expect(buildResponseFromPartial(r.partial, 513)?.reason).toBe('Message Too Large');
  });

  it('answers insuf (RFC 4475 §3.3.1) with a 400 carrying Via and CSeq, without the missing From, To and Call-ID', () => {
    const insuf = parseMessage(readFileSync(`${FIXTURES}insuf.sip`));
    expect(insuf.ok).toBe(false);
    if (insuf.ok) return;
    const resp = buildResponseFromPartial(insuf.partial, 400);
    expect(resp?.status).toBe(400);
    expect(resp?.headers.entries().map((e) => e.name)).toEqual(['Via', 'CSeq']);
    expect(serializeMessage(resp!).toString()).toBe('SIP/2.0 400 Bad Request\r\nVia: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\r\nCSeq: 193942 INVITE\r\nContent-Length: 0\r\n\r\n');
  });

  it('returns null without Via or CSeq (nothing to route or match the answer by), for responses, and for ACK', () => {
    const noVia = parseMessage(Buffer.from(INVITE.toString('latin1').replace(/^Via:.*\r\n/gm, '').replace('Content-Length: 4', 'Content-Length: 40'), 'latin1'));
    expect(noVia.ok).toBe(false);
    if (!noVia.ok) expect(buildResponseFromPartial(noVia.partial, 400)).toBeNull();
    const noCSeq = parseMessage(Buffer.from(INVITE.toString('latin1').replace(/^CSeq:.*\r\n/gm, ''), 'latin1'));
    expect(noCSeq.ok).toBe(false);
    if (!noCSeq.ok) expect(buildResponseFromPartial(noCSeq.partial, 400)).toBeNull();
    expect(buildResponseFromPartial(null, 400)).toBeNull();
    const ack = Buffer.from(INVITE.toString('latin1').replace('INVITE sip:', 'ACK sip:').replace('Content-Length: 4', 'Content-Length: 99'), 'latin1');
    const r = parseMessage(ack);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(buildResponseFromPartial(r.partial, 400)).toBeNull();
  });
});
