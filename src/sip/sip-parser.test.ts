import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseMessage, canonicalHeaderName } from './sip-parser.js';
import { parseAuthParams, parseCSeq, parseNameAddr, parseUri, parseVia } from './sip-grammar.js';
import { DEFAULT_LIMITS, type ParseResult, type SipMessage, type SipRequest, type SipResponse } from './sip-message.js';

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/rfc4475/', import.meta.url));
const fixture = (name: string): Buffer => readFileSync(`${FIXTURES}${name}.sip`);

function ok(r: ParseResult): SipMessage {
  if (!r.ok) throw new Error(`expected a message, got ${r.status} ${r.reason}`);
  return r.message;
}
function request(r: ParseResult): SipRequest {
  const m = ok(r);
  if (m.kind !== 'request') throw new Error('expected a request');
  return m;
}
function response(r: ParseResult): SipResponse {
  const m = ok(r);
  if (m.kind !== 'response') throw new Error('expected a response');
  return m;
}

const lines = (...l: string[]): Buffer => Buffer.from(l.join('\r\n'));

const SDP = 'v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n';
function invite(opts: { body?: string; contentLength?: number | null; extra?: string[] } = {}): Buffer {
  const body = opts.body ?? SDP;
  const cl = opts.contentLength === undefined ? Buffer.byteLength(body) : opts.contentLength;
  return Buffer.from(
    [
      'INVITE sip:bob@biloxi.example.com SIP/2.0',
      'Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds',
      'Max-Forwards: 70',
      'To: Bob <sip:bob@biloxi.example.com>',
      'From: Alice <sip:alice@atlanta.example.com>;tag=1928301774',
      'Call-ID: a84b4c76e66710@pc33.atlanta.example.com',
      'CSeq: 314159 INVITE',
      'Contact: <sip:alice@pc33.atlanta.example.com>',
      'Content-Type: application/sdp',
      ...(opts.extra ?? []),
      ...(cl === null ? [] : [`Content-Length: ${cl}`]),
      '',
      body,
    ].join('\r\n'),
  );
}

describe('parseMessage: start line (RFC 3261 §7.1, §7.2)', () => {
  it('parses a request line, headers and body', () => {
    const m = request(parseMessage(invite()));
    expect(m.method).toBe('INVITE');
    expect(m.uri).toBe('sip:bob@biloxi.example.com');
    expect(m.headers.get('call-id')).toBe('a84b4c76e66710@pc33.atlanta.example.com');
    expect(m.body.toString()).toBe(SDP);
  });

  it('parses a status line, with an empty reason phrase too', () => {
    const base = ['Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1', 'From: <sip:a@example.com>;tag=1', 'To: <sip:b@example.com>;tag=2', 'Call-ID: x', 'CSeq: 1 INVITE', 'Content-Length: 0', '', ''];
    const r = response(parseMessage(lines('SIP/2.0 180 Ringing', ...base)));
    expect(r.status).toBe(180);
    expect(r.reason).toBe('Ringing');
    expect(response(parseMessage(lines('SIP/2.0 100 ', ...base))).reason).toBe('');
    expect(response(parseMessage(lines('SIP/2.0 100', ...base))).reason).toBe('');
  });

  it('keeps extension methods case-sensitive', () => {
    const m = request(parseMessage(lines('invite sip:b@example.com SIP/2.0', 'Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1', 'From: <sip:a@example.com>;tag=1', 'To: <sip:b@example.com>', 'Call-ID: x', 'CSeq: 1 invite', '', '')));
    expect(m.method).toBe('invite');
  });

  it('skips CRLFs before the start line (RFC 3261 §7.5) and accepts bare LF line ends', () => {
    const crlf = invite();
    expect(request(parseMessage(Buffer.concat([Buffer.from('\r\n\r\n'), crlf]))).method).toBe('INVITE');
    const lf = Buffer.from(invite({ body: 'v=0 no line ends' }).toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
    const m = request(parseMessage(lf));
    expect(m.headers.get('CSeq')).toBe('314159 INVITE');
    expect(m.body.toString()).toBe('v=0 no line ends');
  });

  it('drops input that is not SIP at all (status null)', () => {
    for (const junk of ['', '\r\n\r\n', 'hello world\r\n\r\n', 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', '\x16\x03\x01\x02\x00\x01']) {
      const r = parseMessage(Buffer.from(junk, 'latin1'));
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.status).toBeNull();
    }
  });

  it('drops malformed responses (status null)', () => {
    for (const start of ['SIP/2.0 99 Low', 'SIP/2.0 700 High', 'SIP/2.0 20x OK', 'SIP/2.0 200OK', 'SIP/3.0 200 OK']) {
      const r = parseMessage(lines(start, 'Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1', 'From: <sip:a@example.com>;tag=1', 'To: <sip:b@example.com>', 'Call-ID: x', 'CSeq: 1 INVITE', '', ''));
      expect(r.ok, start).toBe(false);
      if (!r.ok) {
        expect(r.status).toBeNull();
        expect(r.partial).toBeNull();
      }
    }
  });
});

describe('parseMessage: headers (RFC 3261 §7.3)', () => {
  it('allows any white space around the colon and unfolds continuation lines into one SP', () => {
    const m = request(
      parseMessage(invite({ extra: ['Subject   :   lunch', 'X-Folded: first', '   second\t', '\tthird', 'X-Empty:', 'X-Empty-Fold:', '  late value'] })),
    );
    expect(m.headers.get('Subject')).toBe('lunch');
    expect(m.headers.get('X-Folded')).toBe('first second third');
    expect(m.headers.get('X-Empty')).toBe('');
    expect(m.headers.get('X-Empty-Fold')).toBe('late value');
  });

  it('expands every compact form (RFC 3261 §7.3.3) and canonicalises known names', () => {
    const compact: Record<string, string> = {
      i: 'Call-ID', m: 'Contact', e: 'Content-Encoding', l: 'Content-Length', c: 'Content-Type', f: 'From', s: 'Subject',
      k: 'Supported', t: 'To', v: 'Via', o: 'Event', r: 'Refer-To', b: 'Referred-By', u: 'Allow-Events', x: 'Session-Expires',
      a: 'Accept-Contact', j: 'Reject-Contact', d: 'Request-Disposition', y: 'Identity',
    };
    for (const [short, long] of Object.entries(compact)) {
      expect(canonicalHeaderName(short)).toBe(long);
      expect(canonicalHeaderName(short.toUpperCase())).toBe(long);
    }
    for (const [written, canonical] of [
      ['call-id', 'Call-ID'], ['CSEQ', 'CSeq'], ['www-authenticate', 'WWW-Authenticate'], ['proxy-authenticate', 'Proxy-Authenticate'],
      ['PROXY-AUTHORIZATION', 'Proxy-Authorization'], ['authorization', 'Authorization'], ['max-forwards', 'Max-Forwards'],
      ['record-route', 'Record-Route'], ['content-length', 'Content-Length'], ['content-type', 'Content-Type'],
      ['p-asserted-identity', 'P-Asserted-Identity'], ['X-Custom-Thing', 'X-Custom-Thing'], ['x-custom-thing', 'x-custom-thing'],
    ]) {
      expect(canonicalHeaderName(written!)).toBe(canonical);
    }
    const m = request(
      parseMessage(
        lines(
          'OPTIONS sip:b@example.com SIP/2.0',
          'v: SIP/2.0/UDP h.example.com;branch=z9hG4bK1',
          'f: <sip:a@example.com>;tag=1',
          't: <sip:b@example.com>',
          'i: abc',
          'CSEQ: 1 OPTIONS',
          'max-forwards: 70',
          'X-Odd-Case: kept',
          'L: 0',
          '',
          '',
        ),
      ),
    );
    expect(m.headers.entries().map((h) => h.name)).toEqual(['Via', 'From', 'To', 'Call-ID', 'CSeq', 'Max-Forwards', 'X-Odd-Case', 'Content-Length']);
  });

  it('decodes non-ASCII header values as UTF-8', () => {
    const m = request(parseMessage(invite({ extra: ['Subject: Grüße — 大停電'] })));
    expect(m.headers.get('Subject')).toBe('Grüße — 大停電');
  });

  it('rejects a header line without a colon, a bad name, or a leading continuation (400)', () => {
    for (const extra of [['NoColonHere'], ['Bad Name: x'], ['[x]: y']]) {
      const r = parseMessage(invite({ extra }));
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.status).toBe(400);
    }
    const r = parseMessage(lines('OPTIONS sip:b@example.com SIP/2.0', ' folded-first: x', '', ''));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.status).toBe(400);
  });
});

describe('parseMessage: body and Content-Length (RFC 3261 §18.3, §20.14)', () => {
  it('counts Content-Length in bytes, with a multi-byte UTF-8 body', () => {
    const body = 'héllo — 世界\r\n';
    expect(Buffer.byteLength(body)).toBeGreaterThan(body.length);
    const m = request(parseMessage(invite({ body })));
    expect(m.body.toString('utf8')).toBe(body);
    expect(m.body.length).toBe(Buffer.byteLength(body));
  });

  it('keeps non-UTF-8 body bytes intact', () => {
    const bin = Buffer.from([0x00, 0xff, 0xfe, 0x0d, 0x0a, 0x80, 0x00]);
    const head = invite({ body: '', contentLength: bin.length });
    const m = request(parseMessage(Buffer.concat([head, bin])));
    expect(m.body.equals(bin)).toBe(true);
  });

  it('truncates a datagram body longer than Content-Length', () => {
    const m = request(parseMessage(Buffer.concat([invite(), Buffer.from('trailing junk')])));
    expect(m.body.toString()).toBe(SDP);
  });

  it('answers 400 when Content-Length is larger than the datagram', () => {
    const r = parseMessage(invite({ contentLength: Buffer.byteLength(SDP) + 1 }));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.status).toBe(400);
  });

  it('takes the rest of the datagram when Content-Length is missing', () => {
    expect(request(parseMessage(invite({ contentLength: null }))).body.toString()).toBe(SDP);
  });

  it('accepts a message whose headers end without the empty line as having no body', () => {
    const m = request(parseMessage(lines('OPTIONS sip:b@example.com SIP/2.0', 'Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1', 'From: <sip:a@example.com>;tag=1', 'To: <sip:b@example.com>', 'Call-ID: x', 'CSeq: 1 OPTIONS')));
    expect(m.body.length).toBe(0);
  });

  it('does not share memory with the datagram', () => {
    const buf = invite();
    const m = request(parseMessage(buf));
    buf.fill(0x41);
    expect(m.body.toString()).toBe(SDP);
  });
});

describe('parseMessage: mandatory headers (RFC 3261 §8.1.1, §8.2)', () => {
  const requestWithout = (drop: string): Buffer =>
    Buffer.from(
      invite()
        .toString('latin1')
        .split('\r\n')
        .filter((l) => !l.startsWith(`${drop}:`))
        .join('\r\n'),
      'latin1',
    );

  it.each(['Via', 'From', 'To', 'Call-ID', 'CSeq'])('answers 400 to a request without %s, with the partial headers', (name) => {
    const r = parseMessage(requestWithout(name));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.status).toBe(400);
    expect(r.reason).toContain(name);
    expect(r.partial?.isRequest).toBe(true);
    expect(r.partial?.method).toBe('INVITE');
    expect(r.partial?.headers.has(name)).toBe(false);
    expect(r.partial?.headers.has('Content-Type')).toBe(true);
  });

  it('accepts a request without Max-Forwards (a SHOULD, RFC 3261 §8.1.1.6)', () => {
    expect(request(parseMessage(requestWithout('Max-Forwards'))).method).toBe('INVITE');
  });

  it('Max-Forwards must be 0..255 in digits (RFC 3261 §20.22): 400 otherwise, answered with the headers', () => {
    const withMf = (v: string): ParseResult => parseMessage(Buffer.from(invite().toString('latin1').replace('Max-Forwards: 70', `Max-Forwards: ${v}`), 'latin1'));
    for (const good of ['0', '1', '70', '255', '0068']) expect(withMf(good).ok, good).toBe(true);
    for (const bad of ['-1', '256', '100000000000000000000', 'abc', '7 0', '', '0x10', '+5']) {
      const r = withMf(bad);
      expect(r.ok, bad).toBe(false);
      if (r.ok) continue;
      expect(r.status, bad).toBe(400);
      expect(r.reason).toBe('Max-Forwards must be 0 to 255');
      expect(r.partial?.headers.get('CSeq')).toBe('314159 INVITE');
    }
  });

  it('two Max-Forwards that disagree are 400; a repeated equal one is harmless', () => {
    expect(parseMessage(invite({ extra: ['Max-Forwards: 70'] })).ok).toBe(true);
    const r = parseMessage(invite({ extra: ['Max-Forwards: 69'] }));
    expect(!r.ok && r.reason).toContain('Max-Forwards');
  });

  it('an Expires beyond 2^32-1 is 400 (RFC 3261 §20.19); a non-numeric one is left to the registrar (treated as 3600)', () => {
    expect(parseMessage(invite({ extra: ['Expires: 4294967295'] })).ok).toBe(true);
    expect(parseMessage(invite({ extra: ['Expires: 0004294967295'] })).ok).toBe(true);
    expect(parseMessage(invite({ extra: ['Expires: Thu, 01 Dec 2040 16:00:00 GMT'] })).ok).toBe(true);
    for (const bad of ['4294967296', '10000000000000000000000000']) {
      const r = parseMessage(invite({ extra: [`Expires: ${bad}`] }));
      expect(!r.ok && r.status, bad).toBe(400);
      expect(!r.ok && r.reason).toBe('Expires larger than 2^32-1');
    }
  });

  it('a CSeq number of 2^31 or more is 400 (RFC 3261 §8.1.1.5)', () => {
    for (const v of ['2147483648', '4294967296', '36893488147419103232']) {
      const r = parseMessage(Buffer.from(invite().toString('latin1').replace('CSeq: 314159 INVITE', `CSeq: ${v} INVITE`), 'latin1'));
      expect(!r.ok && r.status, v).toBe(400);
    }
  });

  it('answers 400 when the CSeq method does not match the request method', () => {
    const r = parseMessage(Buffer.from(invite().toString('latin1').replace('CSeq: 314159 INVITE', 'CSeq: 314159 BYE'), 'latin1'));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.status).toBe(400);
  });

  it('drops a response without CSeq (status null)', () => {
    const r = parseMessage(lines('SIP/2.0 200 OK', 'Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1', 'From: <sip:a@example.com>;tag=1', 'To: <sip:b@example.com>', 'Call-ID: x', '', ''));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.status).toBeNull();
  });
});

describe('parseMessage: limits', () => {
  it('answers 513 to a request over maxMessageBytes, with partial headers', () => {
    const big = invite({ body: 'x'.repeat(DEFAULT_LIMITS.maxMessageBytes) });
    const r = parseMessage(big);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.status).toBe(513);
    expect(r.partial?.headers.get('Call-ID')).toBe('a84b4c76e66710@pc33.atlanta.example.com');
    const small = parseMessage(invite(), { ...DEFAULT_LIMITS, maxMessageBytes: 200 });
    expect(small.ok).toBe(false);
    if (!small.ok) expect(small.status).toBe(513);
  });

  it('answers 400 to more than maxHeaders header fields', () => {
    const extra = Array.from({ length: 92 }, (_, i) => `X-Filler-${i}: ${i}`);
    const hundredOne = parseMessage(invite({ extra }));
    expect(hundredOne.ok).toBe(false);
    if (hundredOne.ok) return;
    expect(hundredOne.status).toBe(400);
    expect(hundredOne.reason).toContain('100');
    expect(hundredOne.partial?.headers.entries()).toHaveLength(100);
    // exactly 100 is fine
    expect(parseMessage(invite({ extra: extra.slice(1) })).ok).toBe(true);
  });

  it('answers 400 to a 9000-byte header line, and to a folded one that unfolds too long', () => {
    const r = parseMessage(invite({ extra: [`X-Long: ${'a'.repeat(9000)}`] }));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.status).toBe(400);
    expect(r.reason).toContain('8192');
    const folded = Array.from({ length: 3 }, () => ` ${'b'.repeat(3000)}`);
    const f = parseMessage(invite({ extra: ['X-Folded: start', ...folded] }));
    expect(f.ok).toBe(false);
    if (!f.ok) expect(f.status).toBe(400);
  });

  it('bounds the start line too: 414 for a long Request-URI (RFC 3261 §21.4.12), drop for a long status line', () => {
    const longReq = parseMessage(Buffer.from(`INVITE sip:${'a'.repeat(9000)}@example.com SIP/2.0\r\n\r\n`));
    expect(!longReq.ok && longReq.status).toBe(414);
    const longResp = parseMessage(Buffer.from(`SIP/2.0 200 ${'O'.repeat(9000)}\r\n\r\n`));
    expect(!longResp.ok && longResp.status).toBeNull();
  });

  it('a 40 KB Request-URI is 414 with the headers read, so the request can be answered', () => {
    const big = Buffer.from(invite().toString('latin1').replace('sip:bob@biloxi.example.com SIP/2.0', `sip:${'b'.repeat(40_000)}@biloxi.example.com SIP/2.0`), 'latin1');
    const r = parseMessage(big);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.status).toBe(414);
    expect(r.reason).toContain('Request-URI');
    expect(r.partial?.method).toBe('INVITE');
    expect(r.partial?.headers.get('Call-ID')).toBe('a84b4c76e66710@pc33.atlanta.example.com');
    // Over maxMessageBytes the message is too large as a whole: 513.
    const huge = parseMessage(Buffer.concat([big, Buffer.alloc(30_000, 0x61)]));
    expect(!huge.ok && huge.status).toBe(513);
  });

  it('a long start line whose long part is the method is a malformed line: 400', () => {
    const r = parseMessage(Buffer.from(`${'M'.repeat(9000)} sip:a@example.com SIP/2.0\r\n\r\n`));
    expect(!r.ok && r.status).toBe(400);
  });

  it('never throws on 2,000 random mutations of a valid INVITE (seeded)', () => {
    let seed = 0x5eed1234;
    const rand = (n: number): number => {
      // xorshift32: deterministic, so a failure reproduces
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const base = invite();
    const interesting = [0x00, 0x0d, 0x0a, 0x20, 0x09, 0x3a, 0x3b, 0x2c, 0x22, 0x3c, 0x3e, 0x5c, 0x25, 0x40, 0xff, 0x80];
    let okCount = 0;
    for (let n = 0; n < 2000; n++) {
      let b = Buffer.from(base);
      const edits = 1 + rand(4);
      for (let e = 0; e < edits; e++) {
        const at = rand(b.length + 1);
        const byte = rand(2) === 0 ? interesting[rand(interesting.length)]! : rand(256);
        switch (rand(4)) {
          case 0:
            if (at < b.length) b[at] = byte;
            break;
          case 1:
            b = b.subarray(0, at);
            break;
          case 2:
            b = Buffer.concat([b.subarray(0, at), Buffer.from([byte]), b.subarray(at)]);
            break;
          default:
            b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + rand(8)))]);
        }
      }
      let r: ParseResult | undefined;
      expect(() => (r = parseMessage(b))).not.toThrow();
      if (r!.ok) okCount++;
      else expect([400, 414, 505, 513, null]).toContain(r!.status);
    }
    expect(okCount).toBeGreaterThan(0);
  });
});

/**
 * RFC 4475 torture tests (fixtures written out from RFC 4475 §3 with CRLF line ends; mpart01's
 * binary part is a same-shaped reconstruction). For each invalid message the comment says what
 * RFC 4475 expects and how tollgate, a user agent / B2BUA rather than a proxy, meets it.
 */
describe('RFC 4475 §3.1.1: valid messages parse', () => {
  it('wsinv (§3.1.1.1): folding, LWS everywhere, escapes in quotes, empty Subject, mixed short/long forms', () => {
    const m = request(parseMessage(fixture('wsinv')));
    expect(m.method).toBe('INVITE');
    expect(parseUri(m.uri)?.params.has('unknownparam')).toBe(true);
    const to = parseNameAddr(m.headers.get('To')!);
    expect(to?.uri.user).toBe('vivekg');
    expect(to?.params.get('tag')).toBe('1918181833n');
    const from = parseNameAddr(m.headers.get('From')!);
    expect(from?.displayName).toBe('J Rosenberg \\"');
    expect(from?.params.get('tag')).toBe('98asjd8');
    expect(m.headers.get('Max-Forwards')).toBe('0068');
    expect(parseCSeq(m.headers.get('CSeq')!)).toEqual({ seq: 9, method: 'INVITE' });
    expect(m.headers.get('Subject')).toBe('');
    expect(m.headers.get('NewFangledHeader')).toBe('newfangled value continued newfangled value');
    expect(m.headers.get('UnknownHeaderWithUnusualValue')).toBe(';;,,;;,;');
    const vias = m.headers.getAll('Via').map((v) => parseVia(v));
    expect(vias.map((v) => [v?.transport, v?.host, v?.params.get('branch')])).toEqual([
      ['UDP', '192.0.2.2', '390skdjuw'],
      ['TCP', 'spindle.example.com', 'z9hG4bK9ikj8'],
      ['UDP', '192.168.255.111', 'z9hG4bK30239'],
    ]);
    const contact = parseNameAddr(m.headers.get('Contact')!);
    expect(contact?.displayName).toBe('Quoted string ""');
    expect(contact?.params.get('q')).toBe('0.33');
    expect(contact?.params.get('newparam')).toBe('newvalue');
    expect(contact?.params.get('secondparam')).toBeNull();
    expect(parseNameAddr(m.headers.get('Route')!)?.uri.params.get('unknownwith')).toBe('value');
    expect(m.body.length).toBe(150);
  });

  it('intmeth (§3.1.1.2): unusual method, URI, branch, quoted NUL, token display name, UTF-8', () => {
    const m = request(parseMessage(fixture('intmeth')));
    expect(m.method).toBe("!interesting-Method0123456789_*+`.%indeed'~");
    const uri = parseUri(m.uri);
    expect(uri?.user).toBe("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    expect(uri?.password).toBe("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
    expect(parseVia(m.headers.get('Via')!)?.params.get('branch')).toBe("z9hG4bK-.!%66*_+`'~");
    expect(parseNameAddr(m.headers.get('To')!)?.displayName).toBe('BEL:\x07 NUL:\x00 DEL:\x7f');
    const from = parseNameAddr(m.headers.get('From')!);
    expect(from?.displayName).toBe("token1~` token2'+_ token3*%!.-");
    expect(from?.params.get("fromparam''~+*_!.-%")).toBe('"работающий"');
    expect(from?.params.get('tag')).toBe("_token~1'+`*%!-.");
    expect(m.headers.get('Call-ID')).toBe('intmeth.word%ZK-!.*_+\'@word`~)(><:\\/"][?}{');
    expect(m.headers.get("extensionHeader-!.%*+_`'~")).toBe('\uFEFF大停電');
  });

  it('esc01 (§3.1.1.3): %HEX escapes in Request-URI, From, To and Contact params kept as written', () => {
    const m = request(parseMessage(fixture('esc01')));
    expect(parseUri(m.uri)?.user).toBe('sips%3Auser%40example.com');
    expect(parseUri(m.uri)?.host).toBe('example.net');
    expect(parseNameAddr(m.headers.get('To')!)?.uri.user).toBe('%75se%72');
    expect(parseNameAddr(m.headers.get('From')!)?.uri.user).toBe('I%20have%20spaces');
    const contact = parseNameAddr(m.headers.get('Contact')!);
    expect(contact?.uri.user).toBe('cal%6Cer');
    expect(contact?.uri.params.get('n%61me')).toBe('v%61lue%25%34%31');
    expect(m.headers.get('Content-Type')).toBe('application/sdp');
  });

  it('escnull (§3.1.1.4): escaped NULs in user parts, two Contact headers', () => {
    const m = request(parseMessage(fixture('escnull')));
    expect(parseNameAddr(m.headers.get('To')!)?.uri.user).toBe('null-%00-null');
    expect(m.headers.getAll('Contact').map((c) => parseNameAddr(c)?.uri.user)).toEqual(['%00', '%00%00']);
  });

  it('esc02 (§3.1.1.5): % is not an escape in methods, display names and header names', () => {
    const m = request(parseMessage(fixture('esc02')));
    expect(m.method).toBe('RE%47IST%45R');
    expect(parseNameAddr(m.headers.get('To')!)?.displayName).toBe('%Z%45');
    expect(m.headers.getAll('Contact')).toEqual(['<sip:alias1@host1.example.com>', '<sip:alias3@host3.example.com>']);
    expect(m.headers.get('C%6Fntact')).toBe('<sip:alias2@host2.example.com>');
    expect(parseVia(m.headers.get('Via')!)?.params.get('branch')).toBe('z9hG4bK209%fzsnel234');
  });

  it('lwsdisp (§3.1.1.6): no LWS between display name and "<"', () => {
    const m = request(parseMessage(fixture('lwsdisp')));
    expect(parseNameAddr(m.headers.get('From')!)?.displayName).toBe('caller');
  });

  it('longreq (§3.1.1.7): long values and 34 Vias in mixed spellings', () => {
    const m = request(parseMessage(fixture('longreq')));
    const vias = m.headers.getAll('Via');
    expect(vias).toHaveLength(34);
    expect(parseVia(vias[0]!)?.host).toBe('sip33.example.com');
    expect(parseVia(vias[33]!)?.params.get('received')).toBe('192.0.2.5');
    expect(m.headers.entries().filter((h) => h.name === 'Via')).toHaveLength(34);
    const to = parseNameAddr(m.headers.get('To')!);
    expect(to?.uri.port).toBe(6000);
    expect(to?.uri.params.size).toBe(3);
    expect(parseNameAddr(m.headers.get('From')!)?.params.get('tag')).toMatch(/^12(982)+424$/);
    expect(m.body.length).toBe(150);
  });

  it('dblreq (§3.1.1.8): bytes after Content-Length in a datagram are ignored', () => {
    const m = request(parseMessage(fixture('dblreq')));
    expect(m.method).toBe('REGISTER');
    expect(m.body.length).toBe(0);
  });

  it('semiuri (§3.1.1.9): ";" in the Request-URI user part', () => {
    const m = request(parseMessage(fixture('semiuri')));
    expect(parseUri(m.uri)?.user).toBe('user;par=u%40example.net');
    expect(parseUri(m.uri)?.params.size).toBe(0);
    expect(m.headers.getAll('Accept')).toHaveLength(6);
  });

  it('transports (§3.1.1.10): every transport, including an unknown one', () => {
    const m = request(parseMessage(fixture('transports')));
    expect(m.headers.getAll('Via').map((v) => parseVia(v)?.transport)).toEqual(['UDP', 'SCTP', 'TLS', 'UNKNOWN', 'TCP']);
    expect(m.headers.get('Call-ID')).toBe('transports.kijh4akdnaqjkwendsasfdj');
  });

  it('mpart01 (§3.1.1.11): a multipart body with NUL bytes is framed by Content-Length', () => {
    const raw = fixture('mpart01');
    const m = request(parseMessage(raw));
    expect(m.body.length).toBe(Number(m.headers.get('Content-Length')));
    expect(m.body.includes(0)).toBe(true);
    expect(m.body.toString('latin1').endsWith('--7a9cbec02ceef655--\r\n')).toBe(true);
    expect(m.headers.get('Identity')).toMatch(/^r5mwre/);
  });

  it('unreason (§3.1.1.12): a UTF-8 reason phrase', () => {
    const r = response(parseMessage(fixture('unreason')));
    expect(r.status).toBe(200);
    expect(r.reason).toBe('= 2**3 * 5**2 но сто девяносто девять - простое');
  });

  it('noreason (§3.1.1.13): an empty reason phrase', () => {
    const r = response(parseMessage(fixture('noreason')));
    expect(r.status).toBe(100);
    expect(r.reason).toBe('');
  });
});

describe('RFC 4475 §3.1.2: invalid messages', () => {
  // "An element receiving this request should respond with a 400 Bad Request error."
  it.each([
    ['badinv01', '§3.1.2.1: empty Via and Contact params — respond 400', 'Via'],
    ['clerr', '§3.1.2.2: Content-Length larger than the datagram — respond 400 (UDP)', 'Content-Length'],
    ['ncl', '§3.1.2.3: negative Content-Length — respond with an error', 'Content-Length'],
    ['scalar02', '§3.1.2.4: CSeq ≥ 2^32 — respond 400 "due to the CSeq error"', 'CSeq'],
    ['quotbal', '§3.1.2.6: unterminated quote in To — respond 400', 'To'],
    ['ltgtruri', '§3.1.2.7: Request-URI in <> — "reasonable always to reject" with 400', 'Request-URI'],
    ['lwsruri', '§3.1.2.8: LWS in the Request-URI — respond 400', 'Request-Line'],
    ['lwsstart', '§3.1.2.9: several SP between start-line elements — "acceptable to reject"', 'Request-Line'],
    ['trws', '§3.1.2.10: SP after SIP-Version — "acceptable to reject"', 'Request-Line'],
    ['escruri', '§3.1.2.11: escaped headers in the Request-URI — "acceptable to reject" with 400', 'Request-URI'],
    ['badaspec', '§3.1.2.14: spaces inside <> in To — "reasonable to reject" with 400', 'To'],
    ['baddn', '§3.1.2.15: unquoted non-token display name — "reasonable always to reject" with 400', 'From'],
    ['mismatch01', '§3.1.2.17: CSeq method differs from the start line — "will respond with a 400"', 'CSeq'],
    ['mismatch02', '§3.1.2.18: unknown method, CSeq mismatch — 501 preferred, "400 is also acceptable"; we cannot tell 501 from 400 before the CSeq check', 'CSeq'],
  ])('%s (%s) fails with 400', (name, _expectation, reasonWord) => {
    const r = parseMessage(fixture(name));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.status).toBe(400);
    expect(r.reason).toContain(reasonWord);
    expect(r.partial?.isRequest).toBe(true);
  });

  it('badvers (§3.1.2.16): SIP/7.0 is answered 505 Version Not Supported', () => {
    const r = parseMessage(fixture('badvers'));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.status).toBe(505);
    expect(r.reason).toBe('Version Not Supported');
  });

  it('scalarlg (§3.1.2.5): response with CSeq ≥ 2^32 — "will simply discard it"', () => {
    const r = parseMessage(fixture('scalarlg'));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.status).toBeNull();
  });

  it('bigcode (§3.1.2.19): status code > 699 — "should simply drop it"', () => {
    const r = parseMessage(fixture('bigcode'));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.status).toBeNull();
  });

  it('baddate (§3.1.2.12): non-GMT Date — reject only if Date matters, so it parses and Date stays raw', () => {
    const m = request(parseMessage(fixture('baddate')));
    expect(m.headers.get('Date')).toBe('Fri, 01 Jan 2010 16:00:00 EST');
  });

  it('regbadct (§3.1.2.13): Contact addr-spec with escaped headers — parses; the Contact accessor returns null (a registrar answers 400)', () => {
    const m = request(parseMessage(fixture('regbadct')));
    expect(parseNameAddr(m.headers.get('Contact')!)).toBeNull();
  });
});

describe('RFC 4475 §3.2–3.4: transaction and application layer cases', () => {
  it('badbranch (§3.2.1): "z9hG4bK" alone parses; the transaction layer sees the bare cookie', () => {
    const m = request(parseMessage(fixture('badbranch')));
    expect(parseVia(m.headers.get('Via')!)?.params.get('branch')).toBe('z9hG4bK');
  });

  it('insuf (§3.3.1): missing To, From, Call-ID — "ideally, it will respond with a 400"; Via and CSeq were read', () => {
    const r = parseMessage(fixture('insuf'));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.status).toBe(400);
    expect(r.partial?.headers.has('From')).toBe(false);
    expect(r.partial?.headers.get('Via')).toBe('SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf');
    expect(r.partial?.headers.get('CSeq')).toBe('193942 INVITE');
  });

  it('unkscm (§3.3.2) and novelsc (§3.3.3): other URI schemes parse; parseUri returns null (the UA answers 416)', () => {
    for (const name of ['unkscm', 'novelsc']) {
      const m = request(parseMessage(fixture(name)));
      expect(parseUri(m.uri)).toBeNull();
    }
    expect(request(parseMessage(fixture('novelsc'))).uri).toBe('soap.beep://192.0.2.103:3002');
  });

  it('unksm2 (§3.3.4): non-SIP URIs in From/To — "a registrar would reject this request with a 400"; tollgate is a UA that needs SIP/tel From and To, so the parser answers 400', () => {
    const r = parseMessage(fixture('unksm2'));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.status).toBe(400);
  });

  it('bext01 (§3.3.5): unknown Require/Proxy-Require parse; the UA answers 420', () => {
    const m = request(parseMessage(fixture('bext01')));
    expect(m.headers.getAll('Require')).toEqual(['nothingSupportsThis', 'nothingSupportsThisEither']);
  });

  it('invut (§3.3.6): unknown Content-Type parses; the UA answers 415', () => {
    const m = request(parseMessage(fixture('invut')));
    expect(m.headers.get('Content-Type')).toBe('application/unknownformat');
    expect(m.body.length).toBe(40);
  });

  it('regaut01 (§3.3.7): unknown Authorization scheme parses', () => {
    const m = request(parseMessage(fixture('regaut01')));
    expect(parseAuthParams(m.headers.get('Authorization')!)).toEqual({ scheme: 'NoOneKnowsThisScheme', params: new Map([['opaque-data', 'here']]) });
  });

  it('multi01 (§3.3.8): several To/From/Call-ID/CSeq — respond 400', () => {
    const r = parseMessage(fixture('multi01'));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.status).toBe(400);
  });

  it('mcl01 (§3.3.9): conflicting Content-Length values — respond 400', () => {
    const r = parseMessage(fixture('mcl01'));
    expect(r.ok).toBe(false);
    if (!r.ok) expect([r.status, r.reason]).toEqual([400, 'Multiple Content-Length header fields']);
  });

  it('bcast (§3.3.10): a broadcast address in the second Via parses; the element must not send there', () => {
    const m = response(parseMessage(fixture('bcast')));
    expect(parseVia(m.headers.getAll('Via')[1]!)?.host).toBe('255.255.255.255');
  });

  it('zeromf (§3.3.11): Max-Forwards 0 parses (a UAS still answers OPTIONS)', () => {
    expect(request(parseMessage(fixture('zeromf'))).headers.get('Max-Forwards')).toBe('0');
  });

  it('cparam01 (§3.3.12) and cparam02 (§3.3.13): header vs URI parameter on Contact', () => {
    const c1 = parseNameAddr(request(parseMessage(fixture('cparam01'))).headers.get('Contact')!);
    expect(c1?.params.has('unknownparam')).toBe(true);
    expect(c1?.uri.params.has('unknownparam')).toBe(false);
    const c2 = parseNameAddr(request(parseMessage(fixture('cparam02'))).headers.get('Contact')!);
    expect(c2?.params.has('unknownparam')).toBe(false);
    expect(c2?.uri.params.has('unknownparam')).toBe(true);
  });

  it('regescrt (§3.3.14): escaped Route header in a Contact URI parses; a registrar must reject it', () => {
    const m = request(parseMessage(fixture('regescrt')));
    expect(parseNameAddr(m.headers.get('Contact')!)?.uri.headers.get('Route')).toBe('%3Csip:sip.example.com%3E');
  });

  it('sdp01 (§3.3.15): an unacceptable Accept parses; the UA answers 406', () => {
    expect(request(parseMessage(fixture('sdp01'))).headers.get('Accept')).toBe('text/nobodyKnowsThis');
  });

  it('inv2543 (§3.4.1): RFC 2543 syntax (no branch, tag, Max-Forwards or Content-Length) parses', () => {
    const m = request(parseMessage(fixture('inv2543')));
    expect(parseVia(m.headers.get('Via')!)?.params.has('branch')).toBe(false);
    expect(m.body.toString('latin1').endsWith('m=audio 49217 RTP/AVP 0\r\n')).toBe(true);
  });
});
