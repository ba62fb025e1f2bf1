import { describe, it, expect } from 'vitest';
import { generateKeyPairSync, verify } from 'node:crypto';
import { PassportSigner, canonicalTn, passportClaimsJson, signPassport, type PassportClaims } from './passport.js';

// RFC 8225 §5 / RFC 8588 §7 example values.
const X5U = 'https://cert.example.org/passport.cer';
const CLAIMS: PassportClaims = { attest: 'A', origTn: '12155551212', destTn: ['12155551213'], iat: 1443208345, origid: '123e4567-e89b-12d3-a456-426655440000' };
// Computed independently (Python base64.urlsafe_b64encode of the RFC 8225 §9 deterministic JSON).
const HEADER_B64 = 'eyJhbGciOiJFUzI1NiIsInBwdCI6InNoYWtlbiIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cHM6Ly9jZXJ0LmV4YW1wbGUub3JnL3Bhc3Nwb3J0LmNlciJ9';
const CLAIMS_B64 = 'eyJhdHRlc3QiOiJBIiwiZGVzdCI6eyJ0biI6WyIxMjE1NTU1MTIxMyJdfSwiaWF0IjoxNDQzMjA4MzQ1LCJvcmlnIjp7InRuIjoiMTIxNTU1NTEyMTIifSwib3JpZ2lkIjoiMTIzZTQ1NjctZTg5Yi0xMmQzLWE0NTYtNDI2NjU1NDQwMDAwIn0';

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const decode = (seg: string): string => Buffer.from(seg, 'base64url').toString('utf8');

describe('SHAKEN PASSporT signing (RFC 8225, RFC 8588)', () => {
  it('the header and claims segments are deterministic JSON: lexicographic keys, no whitespace, base64url without padding (RFC 8225 §9)', () => {
    const [h, c, s] = signPassport(privateKey, X5U, CLAIMS).split('.');
    expect(h).toBe(HEADER_B64);
    expect(c).toBe(CLAIMS_B64);
    expect(decode(h!)).toBe('{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"https://cert.example.org/passport.cer"}');
    expect(decode(c!)).toBe('{"attest":"A","dest":{"tn":["12155551213"]},"iat":1443208345,"orig":{"tn":"12155551212"},"origid":"123e4567-e89b-12d3-a456-426655440000"}');
    expect(s).toMatch(/^[A-Za-z0-9_-]{86}$/);
  });

  it('the signature is a raw 64-byte ES256 r||s over header.claims that node:crypto verifies (RFC 7518 §3.4)', () => {
    const jws = signPassport(privateKey, X5U, CLAIMS);
    const [h, c, s] = jws.split('.') as [string, string, string];
    const sig = Buffer.from(s, 'base64url');
    expect(sig.length).toBe(64);
    expect(verify('sha256', Buffer.from(`${h}.${c}`), { key: publicKey, dsaEncoding: 'ieee-p1363' }, sig)).toBe(true);
    const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey;
    expect(verify('sha256', Buffer.from(`${h}.${c}`), { key: other, dsaEncoding: 'ieee-p1363' }, sig)).toBe(false);
    expect(verify('sha256', Buffer.from(`${h}.${c}x`), { key: publicKey, dsaEncoding: 'ieee-p1363' }, sig)).toBe(false);
  });

  it('signs canonical telephone numbers whatever their visual form (RFC 8224 §8.3)', () => {
    const c = decode(signPassport(privateKey, X5U, { ...CLAIMS, origTn: '+1 (215) 555-1212', destTn: ['+1-215-555.1213', '442071838750'] }).split('.')[1]!);
    expect(JSON.parse(c)).toEqual({ attest: 'A', dest: { tn: ['12155551213', '442071838750'] }, iat: 1443208345, orig: { tn: '12155551212' }, origid: CLAIMS.origid });
  });

  it('escapes origid as JSON requires and nothing more', () => {
    const json = passportClaimsJson({ ...CLAIMS, origid: 'a"b\\c' });
    expect(json.endsWith('"origid":"a\\"b\\\\c"}')).toBe(true);
    expect(JSON.parse(json).origid).toBe('a"b\\c');
  });

  it('a PassportSigner gives the same segments as signPassport and the full Identity header (RFC 8224 §4.1)', () => {
    const signer = new PassportSigner(privateKey, X5U);
    const jws = signer.sign(CLAIMS);
    expect(jws.split('.').slice(0, 2)).toEqual([HEADER_B64, CLAIMS_B64]);
    const identity = signer.identity({ ...CLAIMS, attest: 'B' });
    expect(identity).toMatch(new RegExp(`^${HEADER_B64}\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]{86};info=<${X5U.replace(/\./g, '\\.')}>;alg=ES256;ppt=shaken$`));
  });

  it('refuses claims it must not sign', () => {
    const bad: [Partial<PassportClaims>, string][] = [
      [{ attest: 'X' as never }, 'attest'],
      [{ origTn: 'alice' }, 'origTn'],
      [{ origTn: '' }, 'origTn'],
      [{ destTn: [] }, 'destTn'],
      [{ destTn: ['12155551213', 'bob'] }, 'destTn'],
      [{ iat: 1.5 }, 'iat'],
      [{ iat: -1 }, 'iat'],
      [{ origid: '' }, 'origid'],
    ];
    for (const [patch, field] of bad) {
      expect(() => signPassport(privateKey, X5U, { ...CLAIMS, ...patch }), field).toThrow(expect.objectContaining({ code: 'VALIDATION_FAILED', details: { field } }));
    }
  });

  it('refuses an x5u that could break the JSON or the info=<…> parameter, and keys that are not P-256 private keys', () => {
    for (const x5u of ['https://a.example/x>;info=<https://evil', 'https://a.example/a b', 'ftp://a.example/c.pem', 'https://a.example/"x', 'https://a.example/\r\nVia: x']) {
      expect(() => new PassportSigner(privateKey, x5u), x5u).toThrow(expect.objectContaining({ code: 'VALIDATION_FAILED' }));
    }
    expect(() => new PassportSigner(publicKey, X5U)).toThrow(/EC P-256 private key/);
    expect(() => new PassportSigner(generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey, X5U)).toThrow(/EC P-256/);
    expect(() => new PassportSigner(generateKeyPairSync('ed25519').privateKey, X5U)).toThrow(/EC P-256/);
  });
});

describe('canonicalTn (RFC 8224 §8.3)', () => {
  it.each([
    ['12155551212', '12155551212'],
    ['+12155551212', '12155551212'],
    ['+1 (215) 555-1212', '12155551212'],
    ['1.215.555.1212', '12155551212'],
    [' +44 20 7183 8750 ', '442071838750'],
    ['+12155551212;npdi;rn=+12155550000', '12155551212'],
    ['911', '911'],
  ])('%j → %j', (input, out) => expect(canonicalTn(input)).toBe(out));

  it.each([['alice'], [''], ['+'], ['12a45'], ['++1215'], ['1+215'], ['*67'], ['1234567890123456'], ['tel:+12155551212']])('%j is not a telephone number', (input) => {
    expect(canonicalTn(input)).toBeNull();
  });
});
