import { execFile } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TollgateError } from '../errors/index.js';

const run = promisify(execFile);

/**
 * Makes a self-signed development certificate (EC P-256, 825 days, SAN localhost, 127.0.0.1
 * and ::1) under `dir` with the system's openssl, unless one is already there. For local
 * trials only: production configures tls.certFile/keyFile.
 */
export async function ensureDevCertificate(dir: string): Promise<{ certFile: string; keyFile: string; created: boolean }> {
  const certFile = join(dir, 'dev-cert.pem');
  const keyFile = join(dir, 'dev-key.pem');
  if (existsSync(certFile) && existsSync(keyFile)) return { certFile, keyFile, created: false };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  try {
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyFile, '-out', certFile, '-days', '825', '-subj', '/CN=tollgate development',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
    ], { timeout: 15_000 });
  } catch (err) {
    throw new TollgateError('CONFIG_INVALID', 'could not create a development TLS certificate with openssl; install openssl or set tls.certFile and tls.keyFile', { cause: err });
  }
  return { certFile, keyFile, created: true };
}
