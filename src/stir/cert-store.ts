import { createHash, createPrivateKey, type KeyObject, type X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import type { Config } from '../config/index.js';
import { ConfigError, isTollgateError } from '../errors/index.js';
import { hasTnAuthList, parseCertificates, tnAuthListSpcs } from './certificate-chain.js';
import { assertX5u, PassportSigner, type Attestation, type PassportClaims } from './passport.js';

/**
 * The signing side's key material (ATIS-1000080): an EC P-256 key, its SHAKEN certificate and
 * the chain toward the STI-CA root, from stir.keyFile/certFile/chainFile or, when those are
 * empty, the development files `tollgate certs dev` writes under <dataDir>/stir.
 */

/** Where `tollgate certs dev` writes, and where an unconfigured gateway looks. */
export function devStirDir(config: Pick<Config, 'dataDir'>): string {
  return join(config.dataDir, 'stir');
}

export const DEV_FILES = { ca: 'ca.pem', caKey: 'ca-key.pem', cert: 'cert.pem', key: 'key.pem', chain: 'chain.pem' } as const;

/** Minimal logger (pino's Logger fits). */
export interface StirLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface StirSigning {
  /** 'config' = stir.keyFile/certFile; 'dev' = <dataDir>/stir from `tollgate certs dev`. */
  readonly source: 'config' | 'dev';
  readonly files: { readonly key: string; readonly cert: string; readonly chain: string | null };
  readonly certificate: X509Certificate;
  /** Service provider codes in the certificate's TNAuthList (empty when it has none). */
  readonly spcs: readonly string[];
  readonly x5u: string;
  readonly signer: PassportSigner;
  /** The Identity header value for these claims (RFC 8224 §4.1). */
  identity(claims: PassportClaims): string;
  /** The certificate and its chain as served at the x5u (`/v1/stir/cert.pem`), with a strong ETag. */
  certificatePem(): { pem: string; etag: string };
}

/**
 * The signing key and certificate, checked and loaded, before the x5u they are served at is
 * known (the default x5u is the gateway's own HTTP address, known once it listens). Everything
 * that can be wrong is found here, so `serve` refuses to start before any listener binds.
 */
export interface StirSigningMaterial {
  readonly source: 'config' | 'dev';
  readonly files: { readonly key: string; readonly cert: string; readonly chain: string | null };
  readonly certificate: X509Certificate;
  readonly spcs: readonly string[];
  /** The signer for this x5u; logs that signing is on, and warns when the x5u is plain http. */
  withX5u(x5u: string): StirSigning;
}

const abs = (p: string, cwd: string): string => (isAbsolute(p) ? p : resolve(cwd, p));

/**
 * Reads a configured file. Only a regular file is read: a FIFO (or a device) would block the
 * start for ever, a directory is a mistake; either is a ConfigError naming the field.
 */
function readFile(field: string, path: string): string {
  try {
    if (!statSync(path).isFile()) throw Object.assign(new Error(`${path} is not a regular file`), { code: 'ENOTFILE' });
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    const why = code === 'ENOTFILE' ? 'not a regular file' : code;
    throw new ConfigError(`invalid configuration: ${field}: cannot read ${path} (${why})`, { cause: err });
  }
}

/** A configured x5u (or the base it is built from) is checked at start, not at the first call. */
function configuredX5u(field: string, x5u: string): void {
  try {
    assertX5u(x5u);
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${field}: the x5u ${JSON.stringify(x5u)} is not a usable http(s) URL (no spaces, quotes or angle brackets)`, { cause: err });
  }
}

function readCerts(field: string, path: string): X509Certificate[] {
  const text = readFile(field, path);
  try {
    return parseCertificates(text);
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${field}: ${path} holds no readable PEM certificate`, { cause: err });
  }
}

/**
 * The x5u to sign with: stir.x5u, else `<agents.publicUrl or baseUrl>/v1/stir/cert.pem`, where
 * tollgate serves the certificate. `baseUrl` is the gateway's own HTTP URL.
 */
export function stirX5u(config: Pick<Config, 'stir' | 'agents'>, baseUrl: string): string {
  if (config.stir.x5u) return config.stir.x5u;
  const base = (config.agents.publicUrl || baseUrl).replace(/\/+$/, '');
  return `${base}/v1/stir/cert.pem`;
}

/**
 * Loads the signing key and certificate: null (with a warning: outbound calls go unsigned)
 * when signing is off or there is nothing to sign with; otherwise the checked material, or a
 * ConfigError naming the field when a file is missing, unreadable or not a regular file, the
 * key is not EC P-256, the certificate is a CA certificate, has no TNAuthList, does not belong
 * to the key, is not yet valid or has expired, or a configured x5u is unusable. An expired
 * development certificate (`tollgate certs dev`) is a warning and null instead, like none.
 */
export function loadStirSigningMaterial(config: Config, opts: { cwd?: string; log?: StirLog; now?: number } = {}): StirSigningMaterial | null {
  const s = config.stir;
  const log = opts.log;
  if (!s.sign) {
    log?.warn({ stir: 'off' }, 'STIR signing off (stir.sign is false): outbound calls go unsigned');
    return null;
  }
  if (s.x5u) configuredX5u('stir.x5u', s.x5u);
  else if (config.agents.publicUrl) configuredX5u('agents.publicUrl', stirX5u(config, ''));
  const cwd = opts.cwd ?? process.cwd();
  let source: 'config' | 'dev';
  let files: { key: string; cert: string; chain: string | null };
  if (s.keyFile || s.certFile || s.chainFile) {
    if (!s.keyFile || !s.certFile) throw new ConfigError('invalid configuration: stir.keyFile and stir.certFile must be given together (stir.chainFile needs both)');
    source = 'config';
    files = { key: abs(s.keyFile, cwd), cert: abs(s.certFile, cwd), chain: s.chainFile ? abs(s.chainFile, cwd) : null };
  } else {
    const dir = devStirDir(config);
    const key = join(dir, DEV_FILES.key);
    const cert = join(dir, DEV_FILES.cert);
    if (!existsSync(key) || !existsSync(cert)) {
      log?.warn({ stir: 'unsigned', dir }, 'STIR signing unavailable: no stir.keyFile/certFile and no development certificate (tollgate certs dev); outbound calls go unsigned');
      return null;
    }
    const chain = join(dir, DEV_FILES.chain);
    source = 'dev';
    files = { key, cert, chain: existsSync(chain) ? chain : null };
  }
  const field = (name: 'keyFile' | 'certFile' | 'chainFile'): string => (source === 'config' ? `stir.${name}` : `${devStirDir(config)} (tollgate certs dev)`);

  let key: KeyObject;
  try {
    key = createPrivateKey(readFile(field('keyFile'), files.key));
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`invalid configuration: ${field('keyFile')}: ${files.key} is not a readable private key (PEM)`, { cause: err });
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new ConfigError(`invalid configuration: ${field('keyFile')}: ${files.key} must be an EC P-256 key (ES256, ATIS-1000074)`);
  }
  const certificate = readCerts(field('certFile'), files.cert)[0]!;
  // ATIS-1000080 §6.4.1: PASSporTs are signed with the SHAKEN end-entity certificate the STI-CA
  // issued (CA:FALSE), never with a CA certificate, and that certificate names the service
  // provider code it may sign for in its TNAuthList (RFC 8226 §9).
  if (certificate.ca) {
    throw new ConfigError(`invalid configuration: ${field('certFile')}: ${files.cert} is a CA certificate (CA:TRUE); sign with the SHAKEN end-entity certificate the STI-CA issued, not with the CA (ATIS-1000080 §6.4.1)`);
  }
  if (!certificate.checkPrivateKey(key)) {
    throw new ConfigError(`invalid configuration: ${field('certFile')}: ${files.cert} does not belong to the key in ${files.key}`);
  }
  if (!hasTnAuthList(certificate)) {
    throw new ConfigError(`invalid configuration: ${field('certFile')}: ${files.cert} has no TNAuthList extension (OID 1.3.6.1.5.5.7.1.26, RFC 8226 §9): it is not a SHAKEN certificate`);
  }
  const chain = files.chain ? readCerts(field('chainFile'), files.chain) : [];
  const now = opts.now ?? Date.now();
  if (now < Date.parse(certificate.validFrom)) {
    throw new ConfigError(`invalid configuration: ${field('certFile')}: ${files.cert} is not valid before ${certificate.validFrom}`);
  }
  if (now > Date.parse(certificate.validTo)) {
    if (source === 'dev') {
      log?.warn({ stir: 'unsigned', cert: files.cert, validTo: certificate.validTo }, 'STIR development certificate expired (tollgate certs dev --force makes a new one); outbound calls go unsigned');
      return null;
    }
    throw new ConfigError(`invalid configuration: stir.certFile: ${files.cert} expired on ${certificate.validTo}`);
  }

  // Served bundle: the signing certificate first, then the chain, each certificate once.
  const seen = new Set<string>();
  const pem = [certificate, ...chain]
    .filter((c) => (seen.has(c.fingerprint256) ? false : (seen.add(c.fingerprint256), true)))
    .map((c) => c.toString().trim() + '\n')
    .join('');
  const etag = `"${createHash('sha256').update(pem).digest('base64url')}"`;
  const spcs = tnAuthListSpcs(certificate);
  return {
    source,
    files,
    certificate,
    spcs,
    withX5u(x5u: string): StirSigning {
      let signer: PassportSigner;
      try {
        signer = new PassportSigner(key, x5u);
      } catch (err) {
        if (isTollgateError(err) && err.code === 'VALIDATION_FAILED') throw new ConfigError(`invalid configuration: the STIR x5u ${JSON.stringify(x5u)} is not a usable http(s) URL`, { cause: err });
        throw err;
      }
      log?.info({ stir: 'signing', source, cert: files.cert, x5u, spcs, validTo: certificate.validTo }, 'STIR signing on');
      // RFC 8224 §6.2.3 / ATIS-1000074: verifiers fetch the x5u over https; tollgate's own
      // verifier and most carriers refuse http (tollgate's only with stir.verify.allowHttpX5u).
      if (x5u.slice(0, 5).toLowerCase() === 'http:') {
        log?.warn({ stir: 'http-x5u', x5u }, 'STIR x5u is plain http: verifiers refuse it; serve the certificate over https (stir.x5u, or agents.publicUrl behind a TLS proxy)');
      }
      return {
        source,
        files,
        certificate,
        spcs,
        x5u,
        signer,
        identity: (claims) => signer.identity(claims),
        certificatePem: () => ({ pem, etag }),
      };
    },
  };
}

/** loadStirSigningMaterial, then withX5u(x5u): the signing side for a known x5u, or null (unsigned). */
export function loadStirSigning(
  config: Config,
  opts: { x5u: string; cwd?: string; log?: StirLog; now?: number },
): StirSigning | null {
  const { x5u, ...rest } = opts;
  return loadStirSigningMaterial(config, rest)?.withX5u(x5u) ?? null;
}

/**
 * Trust anchors for verification: stir.verify.trustFile (relative to the working directory),
 * else <dataDir>/stir/ca.pem when `tollgate certs dev` made one, else none.
 */
export function loadTrustAnchors(config: Config, cwd: string = process.cwd()): { anchors: X509Certificate[]; file: string | null } {
  const f = config.stir.verify.trustFile;
  if (f) {
    const file = abs(f, cwd);
    return { anchors: readCerts('stir.verify.trustFile', file), file };
  }
  const dev = join(devStirDir(config), DEV_FILES.ca);
  if (!existsSync(dev)) return { anchors: [], file: null };
  return { anchors: readCerts(`${dev} (tollgate certs dev)`, dev), file: dev };
}

/**
 * Attestation level (ATIS-1000074 §5.2.3, RFC 8588 §4): an explicit override wins; A (full)
 * when the caller is known and owns the calling number; B (partial) when the caller is a known
 * customer but the number is not theirs; otherwise the configured default (C, gateway).
 */
export function attestationFor(input: {
  ownsNumber: boolean;
  knownCustomer: boolean;
  override?: Attestation | null;
  defaultAttestation: Attestation;
}): Attestation {
  if (input.override) return input.override;
  if (input.ownsNumber) return 'A';
  if (input.knownCustomer) return 'B';
  return input.defaultAttestation;
}
