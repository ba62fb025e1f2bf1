import { describe, it, expect } from 'vitest';
import { identityHeader, parseIdentityHeader } from './identity-header.js';

const JWS = 'eyJhbGciOiJFUzI1NiJ9.eyJhdHRlc3QiOiJBIn0.c2lnbmF0dXJl';
const X5U = 'https://cert.example.org/passport.cer';

const ok = (v: string) => {
  const p = parseIdentityHeader(v);
  if (!p.ok) throw new Error(`expected ${v} to parse: ${p.reason}`);
  return p;
};
const reason = (v: string | null) => {
  const p = parseIdentityHeader(v);
  if (p.ok) throw new Error(`expected ${v} to be refused`);
  return p.reason;
};

describe('the Identity header (RFC 8224 §4.1)', () => {
  it('is written as <jws>;info=<x5u>;alg=ES256;ppt=shaken', () => {
    expect(identityHeader(JWS, X5U)).toBe(`${JWS};info=<${X5U}>;alg=ES256;ppt=shaken`);
  });

  it('refuses to write a malformed JWS or an x5u that would break out of the angle brackets', () => {
    expect(() => identityHeader('not a jws', X5U)).toThrow(expect.objectContaining({ code: 'VALIDATION_FAILED' }));
    expect(() => identityHeader(`${JWS};x=1`, X5U)).toThrow(expect.objectContaining({ code: 'VALIDATION_FAILED' }));
    expect(() => identityHeader(JWS, 'https://a.example/x>;ppt=evil')).toThrow(expect.objectContaining({ code: 'VALIDATION_FAILED' }));
  });

  it('parses what it writes', () => {
    expect(ok(identityHeader(JWS, X5U))).toEqual({ ok: true, jws: JWS, info: X5U, alg: 'ES256', ppt: 'shaken', params: { info: X5U, alg: 'ES256', ppt: 'shaken' } });
  });

  it('tolerates whitespace around ; and = (LWS, RFC 3261 §25.1), any parameter-name case, and a quoted ppt', () => {
    const p = ok(`  ${JWS} ;\tINFO = <${X5U}> ;  Alg=ES256 ; ppt = "shaken"  `);
    expect([p.jws, p.info, p.alg, p.ppt]).toEqual([JWS, X5U, 'ES256', 'shaken']);
  });

  it('keeps ; and = inside the angle-bracketed info URI, and keeps extension parameters', () => {
    const p = ok(`${JWS};info=<https://c.example/a;b=c?d=e>;ppt=shaken;foo=bar;flag`);
    expect(p.info).toBe('https://c.example/a;b=c?d=e');
    expect(p.params).toMatchObject({ foo: 'bar', flag: '' });
    expect(p.alg).toBeNull();
  });

  it.each([
    [null, /no Identity header/],
    ['', /no signed-identity-digest/],
    [`${JWS}`, /no info parameter/],
    [`${JWS};alg=ES256;ppt=shaken`, /no info parameter/],
    [`${JWS};info=${X5U};ppt=shaken`, /angle brackets/],
    [`${JWS};info="${X5U}";ppt=shaken`, /angle brackets/],
    [`${JWS};info=<${X5U};ppt=shaken`, /unterminated </],
    [`${JWS};info=<>;ppt=shaken`, /empty/],
    [`${JWS};info=<${X5U}>;ppt="shaken`, /unterminated quoted/],
    [`${JWS};info=<${X5U}>;info=<https://other.example/c>`, /duplicate info/],
    [`${JWS};info=<${X5U}>;;ppt=shaken`, /empty parameter/],
    [`${JWS};info=<${X5U}>;ppt=`, /empty value/],
    [`${JWS};info=<${X5U}> x`, /unexpected character/],
    [`eyJhbGciOiJFUzI1NiJ9..c2lnbmF0dXJl;info=<${X5U}>`, /compact form/],
    [`eyJhbGciOiJFUzI1NiJ9.c2lnbmF0dXJl;info=<${X5U}>`, /three base64url parts/],
    [`eyJhbGci+OiJFUzI1NiJ9.eyJhdHRlc3QiOiJBIn0.c2ln/bmF0dXJl;info=<${X5U}>`, /outside base64url/],
    [`${JWS};info=<${X5U}>;x=${'a'.repeat(9000)}`, /longer than/],
  ])('refuses a bad header with a reason: %#', (value, why) => {
    expect(reason(value)).toMatch(why);
  });
});
