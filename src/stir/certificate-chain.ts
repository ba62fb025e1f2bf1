import { X509Certificate, type KeyObject } from 'node:crypto';

/**
 * Certificate handling for STIR/SHAKEN (ATIS-1000080, RFC 8226): parsing the PEM an x5u URL
 * serves, building the path from the signing certificate to a trusted STI-CA root, and reading
 * the TNAuthList extension (RFC 8226 §9, OID 1.3.6.1.5.5.7.1.26), which node:crypto does not
 * expose.
 */

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;
/** A SHAKEN x5u serves the end-entity certificate and a few intermediates, never dozens. */
export const MAX_CERTS_PER_BUNDLE = 10;
const MAX_PATH_LENGTH = 6;

/**
 * Parses a PEM bundle (or a single DER certificate) into certificates, first = end entity.
 * Throws on unparsable input: callers at a boundary turn that into a verdict or a ConfigError.
 */
export function parseCertificates(data: Uint8Array | string): X509Certificate[] {
  const text = typeof data === 'string' ? data : Buffer.from(data).toString('latin1');
  const blocks = text.match(PEM_BLOCK);
  if (!blocks) {
    if (typeof data === 'string') throw new Error('no PEM certificate found');
    return [new X509Certificate(Buffer.from(data))]; // application/pkix-cert (DER)
  }
  if (blocks.length > MAX_CERTS_PER_BUNDLE) throw new Error(`more than ${MAX_CERTS_PER_BUNDLE} certificates`);
  return blocks.map((b) => new X509Certificate(b));
}

export type ChainVerdict =
  | {
      ok: true;
      /** Public key of the end-entity certificate (the PASSporT signer). */
      publicKey: KeyObject;
      /** The latest notBefore and earliest notAfter over the path (ms since the epoch). */
      notBefore: number;
      notAfter: number;
      /** Whether the end-entity certificate carries a TNAuthList extension. */
      tnAuthList: boolean;
      /** Path length including the trust anchor. */
      depth: number;
    }
  | { ok: false; reason: string };

const isP256 = (k: KeyObject): boolean => k.asymmetricKeyType === 'ec' && k.asymmetricKeyDetails?.namedCurve === 'prime256v1';

function issuedBy(child: X509Certificate, parent: X509Certificate): boolean {
  try {
    return child.checkIssued(parent) && child.verify(parent.publicKey);
  } catch {
    return false;
  }
}

/**
 * Builds and checks the path leaf → intermediates (from the same bundle) → a trust anchor:
 * every signature, CA:TRUE on every issuer, and a P-256 key on the leaf (ES256). Validity dates
 * are returned as a window rather than checked here, so a cached verdict stays correct as time
 * passes; the caller compares them with its clock.
 */
export function verifyChain(bundle: readonly X509Certificate[], anchors: readonly X509Certificate[]): ChainVerdict {
  const leaf = bundle[0];
  if (!leaf) return { ok: false, reason: 'x5u served no certificate' };
  if (!isP256(leaf.publicKey)) return { ok: false, reason: 'signing certificate key is not EC P-256 (ES256)' };
  const path: X509Certificate[] = [leaf];
  const pool = bundle.slice(1);
  let current = leaf;
  for (;;) {
    // The leaf itself may be a configured anchor (pinned certificate).
    let anchor = anchors.find((a) => a.fingerprint256 === current.fingerprint256) ?? null;
    if (!anchor) anchor = anchors.find((a) => a.ca && issuedBy(current, a)) ?? null;
    if (anchor) {
      if (anchor !== current) path.push(anchor);
      let notBefore = -Infinity;
      let notAfter = Infinity;
      for (const c of path) {
        notBefore = Math.max(notBefore, Date.parse(c.validFrom));
        notAfter = Math.min(notAfter, Date.parse(c.validTo));
      }
      if (!Number.isFinite(notBefore) || !Number.isFinite(notAfter)) return { ok: false, reason: 'certificate validity dates are unreadable' };
      return { ok: true, publicKey: leaf.publicKey, notBefore, notAfter, tnAuthList: hasTnAuthList(leaf), depth: path.length };
    }
    if (path.length >= MAX_PATH_LENGTH) return { ok: false, reason: 'certificate path too long' };
    const next = pool.find((c) => c.ca && !path.includes(c) && issuedBy(current, c));
    if (!next) return { ok: false, reason: 'certificate does not chain to a trusted STI-CA root' };
    path.push(next);
    current = next;
  }
}

// --- Minimal DER reading: just enough to find one extension in a certificate. ---

interface Tlv {
  tag: number;
  start: number; // first content byte
  end: number; // one past the last content byte
}

function readTlv(buf: Uint8Array, pos: number, limit: number): Tlv | null {
  if (pos + 2 > limit) return null;
  const tag = buf[pos]!;
  if ((tag & 0x1f) === 0x1f) return null; // high tag numbers do not occur in X.509 structure
  let len = buf[pos + 1]!;
  let p = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || p + n > limit) return null;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p + i]!;
    p += n;
  }
  if (p + len > limit) return null;
  return { tag, start: p, end: p + len };
}

function children(buf: Uint8Array, t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let p = t.start;
  while (p < t.end) {
    const c = readTlv(buf, p, t.end);
    if (!c) return out;
    out.push(c);
    p = c.end;
  }
  return out;
}

/** DER of OID 1.3.6.1.5.5.7.1.26 (id-pe-TNAuthList, RFC 8226 §9). */
const TN_AUTH_LIST_OID = Buffer.from([0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1a]);

/** The extnValue content of the TNAuthList extension, or null when the certificate has none. */
function tnAuthListValue(cert: X509Certificate): { der: Uint8Array; value: Tlv } | null {
  const der = cert.raw;
  const certSeq = readTlv(der, 0, der.length);
  if (!certSeq || certSeq.tag !== 0x30) return null;
  const tbs = children(der, certSeq)[0];
  if (!tbs || tbs.tag !== 0x30) return null;
  const extsWrapper = children(der, tbs).find((c) => c.tag === 0xa3); // [3] EXPLICIT Extensions
  if (!extsWrapper) return null;
  const exts = children(der, extsWrapper)[0];
  if (!exts || exts.tag !== 0x30) return null;
  for (const ext of children(der, exts)) {
    const parts = children(der, ext);
    const oid = parts[0];
    if (!oid || oid.tag !== 0x06) continue;
    if (Buffer.compare(Buffer.from(der.subarray(oid.start, oid.end)), TN_AUTH_LIST_OID) !== 0) continue;
    const value = parts.find((p) => p.tag === 0x04); // extnValue OCTET STRING (after the optional critical BOOLEAN)
    return value ? { der, value } : null;
  }
  return null;
}

export function hasTnAuthList(cert: X509Certificate): boolean {
  return tnAuthListValue(cert) !== null;
}

/** Service provider codes in the TNAuthList (TNEntry spc [0] EXPLICIT IA5String), RFC 8226 §9. */
export function tnAuthListSpcs(cert: X509Certificate): string[] {
  const found = tnAuthListValue(cert);
  if (!found) return [];
  const { der, value } = found;
  const list = readTlv(der, value.start, value.end);
  if (!list || list.tag !== 0x30) return [];
  const out: string[] = [];
  for (const entry of children(der, list)) {
    if (entry.tag !== 0xa0) continue;
    const inner = readTlv(der, entry.start, entry.end);
    if (inner && inner.tag === 0x16) out.push(Buffer.from(der.subarray(inner.start, inner.end)).toString('latin1'));
  }
  return out;
}
