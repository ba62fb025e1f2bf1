import { TollgateError } from '../errors/index.js';
import { assertX5u } from './passport.js';

/**
 * The SIP Identity header (RFC 8224 §4.1):
 *
 *   Identity = "Identity" HCOLON signed-identity-digest SEMI ident-info *( SEMI ident-info-params )
 *   ident-info = "info" EQUAL ident-info-uri ; ident-info-uri = LAQUOT absoluteURI RAQUOT
 *   ident-info-params = "alg" EQUAL token / "ppt" EQUAL token / generic-param
 *
 * SHAKEN (ATIS-1000074 §5.3.1) uses the full form: the digest is the whole compact JWS.
 */

const JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** `<jws>;info=<x5u>;alg=ES256;ppt=shaken`. Throws VALIDATION_FAILED for a malformed JWS or x5u. */
export function identityHeader(jws: string, x5u: string): string {
  if (typeof jws !== 'string' || !JWS.test(jws)) {
    throw new TollgateError('VALIDATION_FAILED', 'jws must be a compact JWS (header.claims.signature, base64url)', { details: { field: 'jws' } });
  }
  assertX5u(x5u);
  return `${jws};info=<${x5u}>;alg=ES256;ppt=shaken`;
}

export type ParsedIdentity =
  | {
      ok: true;
      /** The compact JWS (full form). */
      jws: string;
      /** The info URI without its angle brackets. */
      info: string;
      /** The alg parameter, or null when absent. */
      alg: string | null;
      /** The ppt parameter (quotes removed), or null when absent. */
      ppt: string | null;
      /** Every parameter by lower-case name (info without brackets). */
      params: Readonly<Record<string, string>>;
    }
  | { ok: false; reason: string };

/** Longer than any real SHAKEN Identity (~600–900 bytes); stops pathological input early. */
const MAX_IDENTITY_LENGTH = 8192;
const TOKEN_CHAR = /[A-Za-z0-9\-.!%*_+`'~]/;

const fail = (reason: string): ParsedIdentity => ({ ok: false, reason });

/**
 * Parses one Identity header value. Tolerates whitespace around ';' and '=' (LWS, RFC 3261
 * §25.1), parameter names in any case, and a quoted alg/ppt (`ppt="shaken"`, seen in the
 * wild); requires the info URI in angle brackets. Never throws.
 */
export function parseIdentityHeader(value: string | null | undefined): ParsedIdentity {
  if (typeof value !== 'string') return fail('no Identity header');
  if (value.length > MAX_IDENTITY_LENGTH) return fail(`Identity header longer than ${MAX_IDENTITY_LENGTH} bytes`);
  const v = value.trim();
  const semi = v.indexOf(';');
  const digest = (semi < 0 ? v : v.slice(0, semi)).trim();
  if (digest.length === 0) return fail('Identity header has no signed-identity-digest');
  const parts = digest.split('.');
  if (parts.length !== 3) return fail('signed-identity-digest is not a compact JWS (three base64url parts)');
  if (parts[1] === '') return fail('compact form PASSporT (empty claims) is not supported: SHAKEN uses the full form (ATIS-1000074 §5.3.1)');
  if (!JWS.test(digest)) return fail('signed-identity-digest has characters outside base64url');
  if (semi < 0) return fail('Identity header has no info parameter (RFC 8224 §4.1)');

  const params: Record<string, string> = {};
  let i = semi;
  const n = v.length;
  const skipWs = (): void => {
    while (i < n && (v[i] === ' ' || v[i] === '\t' || v[i] === '\r' || v[i] === '\n')) i++;
  };
  while (i < n) {
    skipWs();
    if (i >= n) break;
    if (v[i] !== ';') return fail(`unexpected character at position ${i} of the Identity header`);
    i++;
    skipWs();
    const nameStart = i;
    while (i < n && TOKEN_CHAR.test(v[i]!)) i++;
    const name = v.slice(nameStart, i).toLowerCase();
    if (name.length === 0) return fail('empty parameter in the Identity header');
    skipWs();
    let val = '';
    if (v[i] === '=') {
      i++;
      skipWs();
      if (v[i] === '<') {
        const close = v.indexOf('>', i + 1);
        if (close < 0) return fail(`${name} parameter has an unterminated <`);
        val = '<' + v.slice(i + 1, close) + '>';
        i = close + 1;
      } else if (v[i] === '"') {
        let j = i + 1;
        let out = '';
        while (j < n && v[j] !== '"') {
          if (v[j] === '\\' && j + 1 < n) j++;
          out += v[j];
          j++;
        }
        if (j >= n) return fail(`${name} parameter has an unterminated quoted string`);
        val = out;
        i = j + 1;
      } else {
        // A token (or, tolerated, an unbracketed URI: refused below with a clearer reason for info).
        const start = i;
        while (i < n && v[i] !== ';' && v[i] !== ' ' && v[i] !== '\t' && v[i] !== '\r' && v[i] !== '\n') i++;
        val = v.slice(start, i);
        if (val.length === 0) return fail(`${name} parameter has an empty value`);
      }
    }
    if (Object.hasOwn(params, name)) return fail(`duplicate ${name} parameter in the Identity header`);
    params[name] = val;
  }

  const rawInfo = params.info;
  if (rawInfo === undefined) return fail('Identity header has no info parameter (RFC 8224 §4.1)');
  if (!rawInfo.startsWith('<') || !rawInfo.endsWith('>')) return fail('info parameter must be an absolute URI in angle brackets, info=<…> (RFC 8224 §4.1)');
  const info = rawInfo.slice(1, -1).trim();
  if (info.length === 0 || /\s/.test(info)) return fail('info parameter URI is empty or contains whitespace');
  params.info = info;
  return { ok: true, jws: digest, info, alg: params.alg ?? null, ppt: params.ppt ?? null, params };
}
