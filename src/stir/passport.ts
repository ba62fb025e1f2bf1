import { sign, type KeyObject } from 'node:crypto';
import { TollgateError } from '../errors/index.js';

/**
 * SHAKEN PASSporT signing (RFC 8225, RFC 8588, ATIS-1000074).
 *
 * The signed bytes are built by hand rather than through JSON.stringify of an object: RFC 8225
 * §9 asks for deterministic JSON (keys in lexicographic order, no whitespace), and the SHAKEN
 * claim set is fixed, so the order below *is* the canonical order and every verifier that
 * re-serialises the claims (or compares bytes) sees exactly what we signed. ES256 signatures
 * are the raw 64-byte r‖s of RFC 7518 §3.4, which node:crypto gives with
 * `dsaEncoding: 'ieee-p1363'`. jose would produce the same bytes, but signs through WebCrypto
 * (one promise per signature, ~3× slower here); node:crypto signs synchronously.
 */

export type Attestation = 'A' | 'B' | 'C';

export const ATTESTATIONS: readonly Attestation[] = ['A', 'B', 'C'];

export interface PassportClaims {
  attest: Attestation;
  /** Calling number; canonicalised (RFC 8224 §8.3) before signing. */
  origTn: string;
  /** Called numbers; canonicalised before signing. At least one. */
  destTn: string[];
  /** Seconds since the epoch. */
  iat: number;
  /** Opaque origination identifier (RFC 8588 §4: a UUID in practice). */
  origid: string;
}

const MAX_TN_DIGITS = 15; // E.164 §6.1

/**
 * Canonical telephone number (RFC 8224 §8.3): drops a tel:/sip: user part's parameters
 * (";npdi", ";rn=…"), the leading '+', and visual separators (RFC 3966: '-', '.', '(', ')',
 * and spaces); what is left must be 1–15 digits. Returns null when `s` is not a telephone
 * number (e.g. "alice", "12ab", "+").
 */
export function canonicalTn(s: string): string | null {
  if (typeof s !== 'string') return null;
  const semi = s.indexOf(';');
  const t = (semi >= 0 ? s.slice(0, semi) : s).trim();
  let out = '';
  for (let i = t.charCodeAt(0) === 43 /* + */ ? 1 : 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c >= 48 && c <= 57) out += t[i];
    else if (!isSeparator(c)) return null;
  }
  return out.length >= 1 && out.length <= MAX_TN_DIGITS ? out : null;
}

function isSeparator(c: number): boolean {
  // '-', '.', '(', ')', space, tab
  return c === 45 || c === 46 || c === 40 || c === 41 || c === 32 || c === 9;
}

/** Characters RFC 3986 allows in a URI, minus the ones that would break `info=<…>` or JSON. */
const SAFE_URL = /^https?:\/\/[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]+$/;

/** Throws VALIDATION_FAILED unless `x5u` is an http(s) URL safe to put in JSON and in `info=<…>`. */
export function assertX5u(x5u: string): void {
  if (typeof x5u !== 'string' || x5u.length > 2048 || !SAFE_URL.test(x5u)) {
    throw new TollgateError('VALIDATION_FAILED', 'x5u must be an http(s) URL without spaces, quotes or angle brackets', { details: { field: 'x5u' } });
  }
}

function assertSigningKey(key: KeyObject): void {
  if (key?.type !== 'private' || key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new TollgateError('VALIDATION_FAILED', 'the PASSporT signing key must be an EC P-256 private key (ES256)', { details: { field: 'key' } });
  }
}

function tnOrThrow(s: string, field: string): string {
  const tn = canonicalTn(s);
  if (tn === null) throw new TollgateError('VALIDATION_FAILED', `${field} is not a telephone number`, { details: { field } });
  return tn;
}

/** The claims segment's JSON, keys in lexicographic order and no whitespace (RFC 8225 §9). */
export function passportClaimsJson(claims: PassportClaims): string {
  if (claims.attest !== 'A' && claims.attest !== 'B' && claims.attest !== 'C') {
    throw new TollgateError('VALIDATION_FAILED', 'attest must be A, B or C (RFC 8588 §4)', { details: { field: 'attest' } });
  }
  if (!Number.isSafeInteger(claims.iat) || claims.iat < 0) {
    throw new TollgateError('VALIDATION_FAILED', 'iat must be a non-negative integer (seconds)', { details: { field: 'iat' } });
  }
  if (typeof claims.origid !== 'string' || claims.origid.length === 0 || claims.origid.length > 256) {
    throw new TollgateError('VALIDATION_FAILED', 'origid must be a non-empty string (RFC 8588 §4)', { details: { field: 'origid' } });
  }
  if (!Array.isArray(claims.destTn) || claims.destTn.length === 0) {
    throw new TollgateError('VALIDATION_FAILED', 'destTn needs at least one number', { details: { field: 'destTn' } });
  }
  const orig = tnOrThrow(claims.origTn, 'origTn');
  // Canonical TNs are digits only, so they need no JSON escaping.
  let dest = '';
  for (let i = 0; i < claims.destTn.length; i++) dest += (i ? ',"' : '"') + tnOrThrow(claims.destTn[i]!, 'destTn') + '"';
  return `{"attest":"${claims.attest}","dest":{"tn":[${dest}]},"iat":${claims.iat},"orig":{"tn":"${orig}"},"origid":${JSON.stringify(claims.origid)}}`;
}

/** The protected header's JSON: exactly these four members, in this order (RFC 8588 §3). */
export function passportHeaderJson(x5u: string): string {
  assertX5u(x5u);
  return `{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":${JSON.stringify(x5u)}}`;
}

const b64url = (s: string): string => Buffer.from(s, 'utf8').toString('base64url');

/**
 * Signs SHAKEN PASSporTs with one key and one x5u. Holds the KeyObject (parsed once) and the
 * encoded header, so each signature costs one claims encoding and one ECDSA operation.
 */
export class PassportSigner {
  private readonly headerB64: string;
  private readonly infoSuffix: string;

  constructor(
    private readonly key: KeyObject,
    readonly x5u: string,
  ) {
    assertSigningKey(key);
    this.headerB64 = b64url(passportHeaderJson(x5u));
    this.infoSuffix = `;info=<${x5u}>;alg=ES256;ppt=shaken`;
  }

  /** The compact JWS (header.claims.signature, base64url without padding). */
  sign(claims: PassportClaims): string {
    const input = this.headerB64 + '.' + b64url(passportClaimsJson(claims));
    const sig = sign('sha256', Buffer.from(input, 'latin1'), { key: this.key, dsaEncoding: 'ieee-p1363' });
    return input + '.' + sig.toString('base64url');
  }

  /** The full Identity header value (RFC 8224 §4.1) for these claims. */
  identity(claims: PassportClaims): string {
    return this.sign(claims) + this.infoSuffix;
  }
}

/** Signs one SHAKEN PASSporT; returns the compact JWS. Prefer a PassportSigner for many. */
export function signPassport(key: KeyObject, x5u: string, claims: PassportClaims): string {
  return new PassportSigner(key, x5u).sign(claims);
}
