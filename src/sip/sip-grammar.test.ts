import { describe, it, expect } from 'vitest';
import {
  formatNameAddr,
  formatUri,
  formatVia,
  isToken,
  parseAuthParams,
  parseCSeq,
  parseNameAddr,
  parseParams,
  parseUri,
  parseVia,
  quote,
  unquote,
} from './sip-grammar.js';

describe('parseUri (RFC 3261 §19.1)', () => {
  it('parses user, password, host, port, params and headers of a SIP URI', () => {
    const u = parseUri('sip:alice:secret@atlanta.example.com:5070;transport=TCP;LR?Subject=hi&Priority=urgent');
    expect(u).toEqual({
      scheme: 'sip',
      user: 'alice',
      password: 'secret',
      host: 'atlanta.example.com',
      port: 5070,
      params: new Map([
        ['transport', 'TCP'],
        ['lr', null],
      ]),
      headers: new Map([
        ['Subject', 'hi'],
        ['Priority', 'urgent'],
      ]),
    });
  });

  it('accepts sips:, an IPv4 host and no user part', () => {
    const u = parseUri('SIPS:192.0.2.4');
    expect(u?.scheme).toBe('sips');
    expect(u?.user).toBeNull();
    expect(u?.host).toBe('192.0.2.4');
    expect(u?.port).toBeNull();
  });

  it('keeps IPv6 references in brackets (RFC 5118)', () => {
    const u = parseUri('sip:[2001:db8::10]:5070;maddr=[2001:db8::20]');
    expect(u?.host).toBe('[2001:db8::10]');
    expect(u?.port).toBe(5070);
    expect(u?.params.get('maddr')).toBe('[2001:db8::20]');
    expect(parseUri('sip:[2001:db8::zz]')).toBeNull();
    expect(parseUri('sip:[2001:db8::1')).toBeNull();
  });

  it('keeps %HEX escapes as written and rejects broken ones (RFC 4475 §3.1.1.3)', () => {
    expect(parseUri('sip:sips%3Auser%40example.com@example.net')?.user).toBe('sips%3Auser%40example.com');
    expect(parseUri('sip:%75se%72@example.com')?.user).toBe('%75se%72');
    expect(parseUri('sip:a%4@example.com')).toBeNull();
    expect(parseUri('sip:a%ZZ@example.com')).toBeNull();
  });

  it('lets the user part carry ";", "?", "," and "/" (RFC 4475 §3.1.1.2, §3.1.1.9)', () => {
    const u = parseUri("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com");
    expect(u?.user).toBe("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    expect(u?.password).toBe("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
    expect(u?.host).toBe('example.com');
    expect(parseUri('sip:user;par=u%40example.net@example.com')?.user).toBe('user;par=u%40example.net');
  });

  it('lower-cases parameter names and gives valueless parameters null', () => {
    const u = parseUri('sip:host.example.com;Transport=udp;LR;%6C%72;n%61me=v%61lue%25%34%31');
    expect([...(u?.params ?? [])]).toEqual([
      ['transport', 'udp'],
      ['lr', null],
      ['%6c%72', null],
      ['n%61me', 'v%61lue%25%34%31'],
    ]);
  });

  it('accepts ports 1–65535 only', () => {
    expect(parseUri('sip:h.example.com:1')?.port).toBe(1);
    expect(parseUri('sip:h.example.com:65535')?.port).toBe(65535);
    expect(parseUri('sip:h.example.com:0')).toBeNull();
    expect(parseUri('sip:h.example.com:65536')).toBeNull();
    expect(parseUri('sip:h.example.com:')).toBeNull();
    expect(parseUri('sip:h.example.com:50x')).toBeNull();
  });

  it('parses tel: URIs (RFC 3966), number in user and no host', () => {
    const u = parseUri('tel:+1-201-555-0123;phone-context=example.com;ext=42');
    expect(u?.scheme).toBe('tel');
    expect(u?.user).toBe('+1-201-555-0123');
    expect(u?.host).toBe('');
    expect(u?.params.get('phone-context')).toBe('example.com');
    expect(parseUri('tel:7042;phone-context=+1-555')?.user).toBe('7042');
    expect(parseUri('tel:+')).toBeNull();
    expect(parseUri('tel:+1555?x=y')).toBeNull();
  });

  it.each([
    ['empty', ''],
    ['no scheme', 'user@example.com'],
    ['unknown scheme', 'http://example.com/'],
    ['unknown scheme with opaque part', 'nobodyKnowsThisScheme:totallyopaquecontent'],
    ['LWS inside (RFC 4475 §3.1.2.8)', 'sip:user@example.com; lr'],
    ['surrounding white space', ' sip:user@example.com'],
    ['angle brackets (RFC 4475 §3.1.2.7)', '<sip:user@example.com>'],
    ['empty user', 'sip:@example.com'],
    ['empty host', 'sip:user@'],
    ['bad IPv4', 'sip:192.0.2.256'],
    ['hostname with bad label', 'sip:-bad.example.com'],
    ['numeric top label', 'sip:host.123'],
    ['empty param name', 'sip:example.com;;lr'],
    ['empty param value', 'sip:example.com;transport='],
    ['header without =', 'sip:example.com?Subject'],
    ['trailing garbage', 'sip:example.com>'],
  ])('rejects %s', (_label, text) => {
    expect(parseUri(text)).toBeNull();
  });

  it('round-trips through formatUri', () => {
    for (const text of [
      'sip:alice:secret@atlanta.example.com:5070;transport=tcp;lr?Subject=hi&Priority=urgent',
      'sips:[2001:db8::10]:5061',
      'sip:%00%00@host5.example.com',
      'tel:+1-201-555-0123;phone-context=example.com',
      'sip:user@example.com?Route=%3Csip:example.com%3E',
    ]) {
      const u = parseUri(text);
      expect(u).not.toBeNull();
      expect(formatUri(u!)).toBe(text);
      expect(parseUri(formatUri(u!))).toEqual(u);
    }
  });
});

describe('parseNameAddr (RFC 3261 §20.10, §25.1)', () => {
  it('parses a quoted display name with escapes, the URI and header params', () => {
    const n = parseNameAddr('"Quoted \\"Name\\"" <sip:a@b.example.com;transport=tcp>;tag=x');
    expect(n?.displayName).toBe('Quoted "Name"');
    expect(n?.uri.user).toBe('a');
    expect(n?.uri.params.get('transport')).toBe('tcp');
    expect(n?.params.get('tag')).toBe('x');
  });

  it('parses token display names, including no LWS before "<" (RFC 4475 §3.1.1.6)', () => {
    expect(parseNameAddr('caller<sip:caller@example.com>;tag=323')?.displayName).toBe('caller');
    expect(parseNameAddr("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>")?.displayName).toBe("token1~` token2'+_ token3*%!.-");
    expect(parseNameAddr('A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe')?.displayName).toBe('A. Bell');
  });

  it('parses <uri> without display name', () => {
    const n = parseNameAddr('  <sip:alice@atlanta.example.com> ');
    expect(n?.displayName).toBeNull();
    expect(n?.uri.host).toBe('atlanta.example.com');
    expect(n?.params.size).toBe(0);
  });

  it('gives parameters after an addr-spec without <> to the header, not the URI (RFC 3261 §20.10)', () => {
    const n = parseNameAddr('sip:+19725552222@gw1.example.net;unknownparam');
    expect(n?.uri.params.size).toBe(0);
    expect(n?.params.has('unknownparam')).toBe(true);
    const m = parseNameAddr('sip:a@b.example.com;tag=x');
    expect(m?.uri.params.size).toBe(0);
    expect(m?.params.get('tag')).toBe('x');
    // …while inside <> they belong to the URI (RFC 4475 §3.3.13)
    expect(parseNameAddr('<sip:+19725552222@gw1.example.net;unknownparam>')?.uri.params.has('unknownparam')).toBe(true);
  });

  it('tolerates LWS around ";" and "=" in header params (RFC 4475 §3.1.1.1)', () => {
    const n = parseNameAddr('sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n');
    expect(n?.uri.host).toBe('chair-dnrc.example.com');
    expect(n?.params.get('tag')).toBe('1918181833n');
    const c = parseNameAddr('"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam = newvalue ; secondparam ; q = 0.33');
    expect(c?.displayName).toBe('Quoted string ""');
    expect([...(c?.params ?? [])]).toEqual([
      ['newparam', 'newvalue'],
      ['secondparam', null],
      ['q', '0.33'],
    ]);
  });

  it('keeps quoted parameter values quoted', () => {
    const n = parseNameAddr('<sip:a@b.example.com>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>";reg-id=1');
    expect(n?.params.get('+sip.instance')).toBe('"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"');
    expect(unquote(n!.params.get('+sip.instance')!)).toBe('<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>');
  });

  it('accepts tel: URIs', () => {
    expect(parseNameAddr('<tel:+14155550123>;tag=1')?.uri.user).toBe('+14155550123');
  });

  it.each([
    ['an unterminated quote (RFC 4475 §3.1.2.6)', '"Mr. J. User <sip:j.user@example.com>'],
    ['spaces inside <> (RFC 4475 §3.1.2.14)', '"Watson, Thomas" < sip:t.watson@example.org >'],
    ['a non-token unquoted display name (RFC 4475 §3.1.2.15)', 'Bell, Alexander <sip:a.g.bell@example.com>;tag=43'],
    ['escaped headers in an addr-spec (RFC 4475 §3.1.2.13)', 'sip:user@example.com?Route=%3Csip:sip.example.com%3E'],
    ['a comma in an addr-spec', 'sip:a@b.example.com,sip:c@d.example.com'],
    ['empty params (RFC 4475 §3.1.2.1)', '"Joe" <sip:joe@example.org>;;;;'],
    ['an unknown scheme (RFC 4475 §3.3.4)', '<http://www.example.com>;tag=3234233'],
    ['a missing ">"', '<sip:a@b.example.com'],
    ['garbage after ">"', '<sip:a@b.example.com>x'],
    ['empty input', '   '],
    ['a quoted name without URI', '"Alice"'],
  ])('rejects %s', (_label, text) => {
    expect(parseNameAddr(text)).toBeNull();
  });

  it('round-trips through formatNameAddr', () => {
    for (const text of [
      '"Quoted \\"Name\\" \\\\ x" <sip:a@b.example.com;transport=tcp>;tag=x;lr',
      '<sip:alice@atlanta.example.com>',
      'Bob <sips:bob@biloxi.example.com>;tag=a6c85cf',
      'sip:+19725552222@gw1.example.net;unknownparam',
    ]) {
      const n = parseNameAddr(text)!;
      expect(n).not.toBeNull();
      expect(parseNameAddr(formatNameAddr(n))).toEqual(n);
    }
    expect(formatNameAddr(parseNameAddr('"A \\"B\\"" <sip:a@b.example.com>;tag=1')!)).toBe('"A \\"B\\"" <sip:a@b.example.com>;tag=1');
  });

  it('cannot be made to write a CR or LF (header injection)', () => {
    const n = parseNameAddr('<sip:a@b.example.com>')!;
    const s = formatNameAddr({ ...n, displayName: 'Evil\r\nVia: SIP/2.0/UDP attacker' });
    expect(s).not.toMatch(/[\r\n]/);
  });
});

describe('parseVia (RFC 3261 §20.42)', () => {
  it('parses transport, host, port and params', () => {
    const v = parseVia('SIP/2.0/udp pc33.atlanta.example.com:5066;branch=z9hG4bK776asdhds;rport;received=192.0.2.1');
    expect(v).toEqual({
      transport: 'UDP',
      host: 'pc33.atlanta.example.com',
      port: 5066,
      params: new Map<string, string | null>([
        ['branch', 'z9hG4bK776asdhds'],
        ['rport', null],
        ['received', '192.0.2.1'],
      ]),
    });
  });

  it('tolerates LWS around "/", ":" and ";" (RFC 4475 §3.1.1.1)', () => {
    const v = parseVia('SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw');
    expect(v?.transport).toBe('UDP');
    expect(v?.host).toBe('192.0.2.2');
    const w = parseVia('SIP  / 2.0  / TCP     spindle.example.com :  5060 ; branch  =   z9hG4bK9ikj8');
    expect(w?.host).toBe('spindle.example.com');
    expect(w?.port).toBe(5060);
    expect(w?.params.get('branch')).toBe('z9hG4bK9ikj8');
  });

  it('accepts IPv6 in brackets, also in received', () => {
    const v = parseVia('SIP/2.0/TCP [2001:db8::9:1]:5060;branch=z9hG4bKas3-111;received=[2001:db8::9:255]');
    expect(v?.host).toBe('[2001:db8::9:1]');
    expect(v?.port).toBe(5060);
    expect(v?.params.get('received')).toBe('[2001:db8::9:255]');
  });

  it('accepts unknown transports (RFC 4475 §3.1.1.10)', () => {
    expect(parseVia('SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en')?.transport).toBe('UNKNOWN');
  });

  it.each([
    ['empty params (RFC 4475 §3.1.2.1)', 'SIP/2.0/UDP 192.0.2.15;;'],
    ['another version (RFC 4475 §3.1.2.16)', 'SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw'],
    ['no sent-by', 'SIP/2.0/UDP'],
    ['no LWS before sent-by', 'SIP/2.0/UDP;branch=x'],
    ['port 0', 'SIP/2.0/UDP host.example.com:0'],
    ['a bad host', 'SIP/2.0/UDP bad_host.example.com'],
    ['not a Via', 'HTTP/1.1 200 OK'],
  ])('rejects %s', (_label, text) => {
    expect(parseVia(text)).toBeNull();
  });

  it('round-trips through formatVia', () => {
    const text = 'SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bK-1;rport=5061;received=192.0.2.9';
    const v = parseVia(text)!;
    expect(formatVia(v)).toBe(text);
  });
});

describe('parseCSeq (RFC 3261 §20.16)', () => {
  it('parses number and method, allowing leading zeros and folding LWS', () => {
    expect(parseCSeq('314159 INVITE')).toEqual({ seq: 314159, method: 'INVITE' });
    expect(parseCSeq('0009 \r\n  INVITE')).toEqual({ seq: 9, method: 'INVITE' });
    expect(parseCSeq('0 ACK')).toEqual({ seq: 0, method: 'ACK' });
    expect(parseCSeq('2147483647 RE%47IST%45R')).toEqual({ seq: 2147483647, method: 'RE%47IST%45R' });
  });

  it('rejects numbers ≥ 2^31 (RFC 3261 §8.1.1.5, RFC 4475 §3.1.2.4) and malformed values', () => {
    expect(parseCSeq('2147483648 INVITE')).toBeNull();
    expect(parseCSeq('36893488147419103232 REGISTER')).toBeNull();
    expect(parseCSeq('INVITE')).toBeNull();
    expect(parseCSeq('1INVITE')).toBeNull();
    expect(parseCSeq('-1 INVITE')).toBeNull();
    expect(parseCSeq('1 INVITE extra')).toBeNull();
    expect(parseCSeq('1 INV"ITE')).toBeNull();
  });
});

describe('parseParams, unquote, quote, isToken', () => {
  it('parses header params with or without a leading ";"', () => {
    expect([...parseParams(';tag=a ; lr ;Q = 0.5')!]).toEqual([
      ['tag', 'a'],
      ['lr', null],
      ['q', '0.5'],
    ]);
    expect([...parseParams('expires=3600;foo="a;b"')!]).toEqual([
      ['expires', '3600'],
      ['foo', '"a;b"'],
    ]);
    expect(parseParams('')!.size).toBe(0);
    expect(parseParams(';')).toBeNull();
    expect(parseParams(';a=')).toBeNull();
    expect(parseParams(';a="unterminated')).toBeNull();
  });

  it('unquotes quoted strings with backslash escapes', () => {
    expect(unquote('"J Rosenberg \\\\\\""')).toBe('J Rosenberg \\"');
    expect(unquote(' "a,b" ')).toBe('a,b');
    expect(unquote('token')).toBe('token');
    expect(unquote('"unterminated')).toBeNull();
    expect(unquote('"a" trailing')).toBeNull();
  });

  it('quote() escapes what unquote() unescapes', () => {
    for (const v of ['plain', 'with "quotes"', 'back\\slash', '']) expect(unquote(quote(v))).toBe(v);
  });

  it('recognises tokens', () => {
    expect(isToken("!interesting-Method0123456789_*+`.%indeed'~")).toBe(true);
    expect(isToken('')).toBe(false);
    expect(isToken('IN VITE')).toBe(false);
    expect(isToken('a:b')).toBe(false);
  });
});

describe('parseAuthParams (RFC 3261 §25.1, RFC 7616)', () => {
  it('parses a Digest challenge, unquoting values and lower-casing names', () => {
    const r = parseAuthParams('Digest realm="atlanta.example.com", NONCE="84a4cc6f3082121f32b42a2187831a9e,x", qop="auth, auth-int", algorithm=SHA-256, stale=FALSE');
    expect(r?.scheme).toBe('Digest');
    expect([...r!.params]).toEqual([
      ['realm', 'atlanta.example.com'],
      ['nonce', '84a4cc6f3082121f32b42a2187831a9e,x'],
      ['qop', 'auth, auth-int'],
      ['algorithm', 'SHA-256'],
      ['stale', 'FALSE'],
    ]);
  });

  it('parses Digest credentials with a quoted uri and escapes', () => {
    const r = parseAuthParams('Digest username="bob\\"s", realm="biloxi.example.com", uri="sip:bob@biloxi.example.com;transport=tcp", response="dfe56131d1958046689d83306477ecc", nc=00000001, cnonce="0a4f113b"');
    expect(r?.params.get('username')).toBe('bob"s');
    expect(r?.params.get('uri')).toBe('sip:bob@biloxi.example.com;transport=tcp');
    expect(r?.params.get('nc')).toBe('00000001');
  });

  it('accepts an unknown scheme (RFC 4475 §3.3.7) and a bare scheme', () => {
    const r = parseAuthParams('NoOneKnowsThisScheme opaque-data=here');
    expect(r?.scheme).toBe('NoOneKnowsThisScheme');
    expect(r?.params.get('opaque-data')).toBe('here');
    expect(parseAuthParams('Digest')?.params.size).toBe(0);
  });

  it('rejects malformed input', () => {
    expect(parseAuthParams('')).toBeNull();
    expect(parseAuthParams('Digest realm="x')).toBeNull();
    expect(parseAuthParams('Digest realm')).toBeNull();
    expect(parseAuthParams('Digest realm="a" nonce="b"')).toBeNull();
    expect(parseAuthParams('Digest realm="a", realm="b"')).toBeNull();
    expect(parseAuthParams('"Digest" realm=a')).toBeNull();
  });
});
