import { execFile } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TollgateError } from '../errors/index.js';
import { tnAuthListSpcs } from './certificate-chain.js';
import { DEV_FILES } from './cert-store.js';

const run = promisify(execFile);

/**
 * A development STIR/SHAKEN PKI made with the system's openssl (like transport/dev-certificate):
 * a self-signed STI-CA (EC P-256, CA:TRUE) and a SHAKEN end-entity certificate it signs, with
 * the TNAuthList extension (RFC 8226 §9) holding one service provider code. For labs and tests:
 * real traffic needs a certificate from an STI-CA approved by the STI-PA (ATIS-1000080).
 */

export interface DevStirCertificates {
  dir: string;
  /** false when every file was already there and --force was not given. */
  created: boolean;
  files: { ca: string; caKey: string; cert: string; key: string; chain: string };
  spcs: string[];
  notAfter: string;
  /** SHA-256 fingerprint of the signing certificate. */
  fingerprint: string;
}

/** A service provider code as the OCN-style SPCs ATIS-1000080 uses: 1–16 letters or digits. */
const SPC = /^[0-9A-Za-z]{1,16}$/;

const OPENSSL_TIMEOUT_MS = 15_000;

export async function createDevStirCertificates(opts: { dir: string; spc?: string; force?: boolean; days?: number }): Promise<DevStirCertificates> {
  const spc = opts.spc ?? '1234';
  if (!SPC.test(spc)) throw new TollgateError('VALIDATION_FAILED', 'spc must be 1–16 letters or digits, e.g. 1234', { details: { field: 'spc' } });
  const days = opts.days ?? 365;
  if (!Number.isInteger(days) || days < 1 || days > 3650) throw new TollgateError('VALIDATION_FAILED', 'days must be 1–3650', { details: { field: 'days' } });
  const dir = opts.dir;
  const files = {
    ca: join(dir, DEV_FILES.ca),
    caKey: join(dir, DEV_FILES.caKey),
    cert: join(dir, DEV_FILES.cert),
    key: join(dir, DEV_FILES.key),
    chain: join(dir, DEV_FILES.chain),
  };
  const present = Object.values(files).filter((f) => existsSync(f));
  if (!opts.force && present.length === Object.keys(files).length) return describe(dir, files, false);
  if (!opts.force && present.length > 0) {
    throw new TollgateError('CONFLICT', `${dir} already holds some STIR files (${present.map((p) => p.slice(dir.length + 1)).join(', ')}); pass --force to replace them`);
  }

  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = mkdtempSync(join(dir, '.certs-dev-'));
  const t = (name: string): string => join(tmp, name);
  try {
    await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', t(DEV_FILES.caKey)]);
    await openssl([
      'req', '-x509', '-new', '-key', t(DEV_FILES.caKey), '-sha256', '-days', String(Math.max(days, 3650)),
      '-subj', '/O=tollgate development/CN=tollgate development STI-CA',
      '-addext', 'basicConstraints=critical,CA:TRUE',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-addext', 'subjectKeyIdentifier=hash',
      '-out', t(DEV_FILES.ca),
    ]);
    await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', t(DEV_FILES.key)]);
    await openssl(['req', '-new', '-key', t(DEV_FILES.key), '-subj', `/C=US/O=tollgate development/CN=SHAKEN ${spc}`, '-out', t('cert.csr')]);
    // ATIS-1000080 §6.4.1 end-entity profile; TNAuthList as PEERS.md (secsipidx) writes it.
    writeFileSync(
      t('ext.cnf'),
      [
        '[shaken]',
        'basicConstraints = critical,CA:FALSE',
        'keyUsage = critical,digitalSignature',
        'subjectKeyIdentifier = hash',
        'authorityKeyIdentifier = keyid:always',
        '1.3.6.1.5.5.7.1.26 = ASN1:SEQUENCE:tnauthlist',
        '[tnauthlist]',
        `spc = EXPLICIT:0,IA5STRING:${spc}`,
        '',
      ].join('\n'),
    );
    await openssl([
      'x509', '-req', '-in', t('cert.csr'), '-CA', t(DEV_FILES.ca), '-CAkey', t(DEV_FILES.caKey),
      '-set_serial', '0x' + positiveSerial(),
      '-days', String(days), '-sha256', '-extfile', t('ext.cnf'), '-extensions', 'shaken', '-out', t(DEV_FILES.cert),
    ]);
    // No intermediates in this PKI: the chain is the root, so a verifier can build the path from
    // the served bundle alone (it still has to trust the root itself).
    writeFileSync(t(DEV_FILES.chain), readFileSync(t(DEV_FILES.ca)));
    chmodSync(t(DEV_FILES.key), 0o600);
    chmodSync(t(DEV_FILES.caKey), 0o600);
    for (const f of [DEV_FILES.ca, DEV_FILES.cert, DEV_FILES.chain]) chmodSync(t(f), 0o644);
    // Keys last: a crash part-way leaves no key without its certificate.
    for (const f of [DEV_FILES.ca, DEV_FILES.chain, DEV_FILES.cert, DEV_FILES.caKey, DEV_FILES.key]) renameSync(t(f), join(dir, f));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return describe(dir, files, true);
}

/** 16 random bytes with the top bit clear: a positive INTEGER (RFC 5280 §4.1.2.2). */
function positiveSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: OPENSSL_TIMEOUT_MS });
  } catch (err) {
    const raw = (err as { stderr?: unknown }).stderr;
    const stderr = (typeof raw === 'string' ? raw : Buffer.isBuffer(raw) ? raw.toString() : '').trim().split('\n')[0] ?? '';
    throw new TollgateError('INTERNAL', `could not create the STIR development certificates with openssl (openssl ${args[0]}: ${stderr || (err as Error).message}); is openssl installed?`, { cause: err });
  }
}

function describe(dir: string, files: DevStirCertificates['files'], created: boolean): DevStirCertificates {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(readFileSync(files.cert));
  } catch (err) {
    throw new TollgateError('CONFLICT', `${files.cert} is not a readable certificate; pass --force to replace the STIR files`, { cause: err });
  }
  return { dir, created, files, spcs: tnAuthListSpcs(cert), notAfter: new Date(Date.parse(cert.validTo)).toISOString(), fingerprint: cert.fingerprint256 };
}
