/**
 * SDES key transport: the `a=crypto` attribute of RFC 4568, for the suites the media layer
 * implements (media/srtp.ts): AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32 (RFC 4568 §6.2)
 * and AEAD_AES_128_GCM (RFC 7714 §14.2).
 *
 *   a=crypto:<tag> <crypto-suite> inline:<base64(master key ‖ master salt)>[|<lifetime>][|<MKI>:<length>] [<session-param> ...]
 *
 * What is accepted: one `inline:` key whose decoded length is exactly the suite's key + salt
 * (30 octets for AES_CM_128, 28 for AEAD_AES_128_GCM), an optional lifetime (recorded; we do
 * not re-key, RFC 4568 §6.1 leaves that to the offerer), and the WSH session parameter, which
 * is only a hint (§6.3.6). What is refused, so the caller skips that crypto line and looks at
 * the next one: MKI and several keys (§6.1; media/srtp.ts has no MKI), KDR (§6.3.1: any value
 * asks for repeated key derivation), UNENCRYPTED_SRTP/SRTCP, UNAUTHENTICATED_SRTP (§6.3.2-4),
 * FEC_ORDER/FEC_KEY (§6.3.5) and any unknown parameter (§6.3.7: unknown ones must not be
 * ignored), and every other suite.
 *
 * A refusal never quotes the key: reasons go to logs and to SIP Warning headers (STYLE.md §13).
 */
import { randomBytes } from 'node:crypto';
import { SRTP_PROFILES, type SrtpProfile } from '../media/srtp.js';

/** An SDES crypto suite we can run (media/srtp.ts). */
export type CryptoSuite = SrtpProfile;

export const CRYPTO_SUITES: readonly CryptoSuite[] = Object.freeze(['AES_CM_128_HMAC_SHA1_80', 'AES_CM_128_HMAC_SHA1_32', 'AEAD_AES_128_GCM']);

/** One usable `a=crypto` line. */
export interface SdesCrypto {
  readonly tag: number;
  readonly suite: CryptoSuite;
  /** Master key ‖ master salt as sent: 30 octets for AES_CM_128, 28 for AEAD_AES_128_GCM. */
  readonly keySalt: Buffer;
  /** Key lifetime in packets (`|2^31` or `|1048576`); null when the line has none. */
  readonly lifetime: number | null;
}

/** A crypto line we skipped, and why (the key itself is never kept). */
export interface SkippedCrypto {
  readonly tag: number | null;
  readonly suite: string | null;
  readonly reason: string;
}

export type CryptoParseResult = { readonly ok: true; readonly crypto: SdesCrypto } | ({ readonly ok: false } & SkippedCrypto);

/** RFC 4648 §4 base64, padding optional (some stacks leave it off). */
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const TAG = /^\d{1,9}$/;
/** A suite name as the RFC 4568 grammar allows it (§9.2); only used to echo it safely in reasons. */
const SUITE_TOKEN = /^[A-Za-z0-9_]{1,64}$/;
/** Lifetimes above 2^48 packets cannot happen in SRTP (RFC 3711 §9.2). */
const MAX_LIFETIME_EXPONENT = 48;

export function isCryptoSuite(s: string): s is CryptoSuite {
  return (CRYPTO_SUITES as readonly string[]).includes(s);
}

/** Octets of master key ‖ master salt for a suite. */
export function keySaltLength(suite: CryptoSuite): number {
  const p = SRTP_PROFILES[suite];
  return p.keyLength + p.saltLength;
}

/** A fresh master key ‖ salt for our side (RFC 4568 §6.1: each direction has its own key). */
export function generateKeySalt(suite: CryptoSuite): Buffer {
  return randomBytes(keySaltLength(suite));
}

/** The attribute value after `a=crypto:`; our own lines carry neither lifetime nor MKI. */
export function formatCrypto(tag: number, suite: CryptoSuite, keySalt: Uint8Array): string {
  return `${tag} ${suite} inline:${Buffer.from(keySalt).toString('base64')}`;
}

/**
 * Parses the value of one `a=crypto:` attribute (what follows the colon). Never throws: a line
 * we cannot use comes back with the reason, for the caller to skip it (RFC 4568 §7.1.2: the
 * answerer picks one acceptable line and ignores the others).
 */
export function parseCrypto(value: string): CryptoParseResult {
  const tokens = value.trim().split(/\s+/);
  const [tagToken, suiteToken, keyParams, ...sessionParams] = tokens;
  const tag = tagToken !== undefined && TAG.test(tagToken) ? Number(tagToken) : null;
  const suite = suiteToken !== undefined && SUITE_TOKEN.test(suiteToken) ? suiteToken : null;
  const skip = (reason: string): CryptoParseResult => ({ ok: false, tag, suite, reason });

  if (tag === null) return skip('a=crypto has no valid tag');
  if (suite === null || keyParams === undefined) return skip('a=crypto is incomplete');
  if (!isCryptoSuite(suite)) return skip(`crypto suite ${suite} is not supported`);
  if (keyParams.includes(';')) return skip('several keys in one a=crypto line (MKI) are not supported');
  if (!/^inline:/i.test(keyParams)) return skip('only the inline: key method is defined (RFC 4568 §6.1)');

  const [keyB64 = '', ...extras] = keyParams.slice('inline:'.length).split('|');
  if (extras.length > 2) return skip('a=crypto key has too many |-separated fields');
  let lifetime: number | null = null;
  for (const field of extras) {
    if (field.includes(':')) return skip('MKI is not supported');
    const m = /^(2\^)?(\d{1,15})$/.exec(field);
    if (!m || lifetime !== null) return skip('a=crypto key lifetime is not valid');
    const n = Number(m[2]);
    if (m[1] !== undefined) {
      if (n > MAX_LIFETIME_EXPONENT) return skip('a=crypto key lifetime is not valid');
      lifetime = 2 ** n;
    } else {
      if (n === 0) return skip('a=crypto key lifetime is not valid');
      lifetime = n;
    }
  }

  if (!BASE64.test(keyB64)) return skip('a=crypto inline key is not base64');
  const keySalt = Buffer.from(keyB64, 'base64');
  const want = keySaltLength(suite);
  if (keySalt.length !== want) return skip(`${suite} needs a ${want}-octet inline key and salt, got ${keySalt.length}`);

  for (const p of sessionParams) {
    // WSH (window size hint, §6.3.6) is advice about the receiver's replay window: safe to ignore.
    if (/^WSH=\d{1,9}$/.test(p)) continue;
    const name = /^[A-Za-z0-9_-]{1,32}/.exec(p)?.[0] ?? 'unknown';
    return skip(`SRTP session parameter ${name} is not supported`);
  }
  return { ok: true, crypto: { tag, suite, keySalt, lifetime } };
}
