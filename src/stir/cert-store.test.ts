import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, verify } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type Config } from '../config/index.js';
import { attestationFor, loadStirSigning, loadStirSigningMaterial, loadTrustAnchors, stirX5u, type StirLog } from './cert-store.js';
import { createDevStirCertificates, type DevStirCertificates } from './dev-certs.js';
import { hasCommand } from '../testing/system-tools.js';

/** The development PKI these tests stand on is made with the system's openssl. */
const openssl = hasCommand('openssl', ['version']);

let root: string;
let pki: DevStirCertificates;
const X5U = 'https://gw.example.com/v1/stir/cert.pem';

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'tollgate-stir-store-'));
  pki = await createDevStirCertificates({ dir: join(root, 'pki') });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function config(stir: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Config {
  const dataDir = mkdtempSync(join(root, 'data-'));
  return loadConfig({ env: {}, cwd: root, overrides: { dataDir, stir, ...extra } });
}
function logger(): StirLog & { lines: string[] } {
  const lines: string[] = [];
  return { lines, info: (_o, m) => lines.push(`info ${m}`), warn: (_o, m) => lines.push(`warn ${m}`) };
}
const claims = { attest: 'A' as const, origTn: '12155551212', destTn: ['12155551213'], iat: 1_800_000_000, origid: 'o' };

describe.skipIf(!openssl)('the STIR signing key and certificate (skipped without openssl)', () => {
  it('signing off, or nothing to sign with → null, and the log says why (outbound calls go unsigned)', () => {
    const log = logger();
    expect(loadStirSigning(config({ sign: false }), { x5u: X5U, log })).toBeNull();
    expect(loadStirSigning(config(), { x5u: X5U, log })).toBeNull();
    expect(log.lines).toEqual([expect.stringMatching(/stir\.sign is false/), expect.stringMatching(/tollgate certs dev/)]);
  });

  it('uses the development files under <dataDir>/stir when the config names none', () => {
    const c = config();
    mkdirSync(join(c.dataDir, 'stir'));
    for (const f of ['key.pem', 'cert.pem', 'chain.pem', 'ca.pem']) copyFileSync(join(pki.dir, f), join(c.dataDir, 'stir', f));
    const s = loadStirSigning(c, { x5u: X5U })!;
    expect(s.source).toBe('dev');
    expect(s.spcs).toEqual(['1234']);
    const id = s.identity(claims);
    expect(id.endsWith(`;info=<${X5U}>;alg=ES256;ppt=shaken`)).toBe(true);
    const [h, cl, sig] = id.split(';')[0]!.split('.') as [string, string, string];
    expect(verify('sha256', Buffer.from(`${h}.${cl}`), { key: s.certificate.publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig, 'base64url'))).toBe(true);
    // Served at the x5u: the signing certificate first, then the chain; a strong, stable ETag.
    const { pem, etag } = s.certificatePem();
    expect(pem.match(/BEGIN CERTIFICATE/g)!.length).toBe(2);
    expect(pem.startsWith(readFileSync(pki.files.cert, 'utf8').trim())).toBe(true);
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    expect(s.certificatePem().etag).toBe(etag);
    expect(loadTrustAnchors(c).file).toBe(join(c.dataDir, 'stir', 'ca.pem'));
  });

  it('uses stir.keyFile/certFile/chainFile, relative to the working directory', () => {
    const s = loadStirSigning(config({ keyFile: 'pki/key.pem', certFile: 'pki/cert.pem', chainFile: 'pki/chain.pem' }), { x5u: X5U, cwd: root })!;
    expect(s.source).toBe('config');
    expect(s.files).toEqual({ key: pki.files.key, cert: pki.files.cert, chain: pki.files.chain });
    expect(loadStirSigning(config({ keyFile: pki.files.key, certFile: pki.files.cert }), { x5u: X5U })!.certificatePem().pem.match(/BEGIN CERTIFICATE/g)!.length).toBe(1);
  });

  it('refuses broken configuration with a ConfigError that names the field', () => {
    const bad = (stir: Record<string, unknown>, why: RegExp, now?: number) =>
      expect(() => loadStirSigning(config(stir), { x5u: X5U, cwd: root, ...(now !== undefined ? { now } : {}) })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringMatching(why) }));
    bad({ keyFile: 'pki/key.pem' }, /keyFile and stir\.certFile must be given together/);
    bad({ chainFile: 'pki/chain.pem' }, /given together/);
    bad({ keyFile: 'pki/nope.pem', certFile: 'pki/cert.pem' }, /stir\.keyFile: cannot read .*nope\.pem \(ENOENT\)/);
    bad({ keyFile: 'pki/key.pem', certFile: 'pki/ca-key.pem' }, /stir\.certFile: .* no readable PEM certificate/);
    bad({ keyFile: 'pki/ca-key.pem', certFile: 'pki/cert.pem' }, /does not belong to the key/);
    const p384 = join(root, 'p384.pem');
    writeFileSync(p384, generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    bad({ keyFile: p384, certFile: 'pki/cert.pem' }, /must be an EC P-256 key/);
    bad({ keyFile: 'pki/key.pem', certFile: 'pki/cert.pem' }, /expired/, Date.parse(pki.notAfter) + 1000);
  });

  it('refuses a CA certificate, and a certificate without TNAuthList, as the signer', () => {
    // The development STI-CA itself: CA:TRUE.
    expect(() => loadStirSigning(config({ keyFile: pki.files.caKey, certFile: pki.files.ca }), { x5u: X5U })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringMatching(/stir\.certFile: .*ca\.pem is a CA certificate/) }),
    );
    // An end-entity certificate for the right key, issued by the same CA, but without TNAuthList.
    const csr = join(root, 'plain.csr');
    const plain = join(root, 'plain.pem');
    const ext = join(root, 'plain.cnf');
    writeFileSync(ext, '[plain]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n');
    execFileSync('openssl', ['req', '-new', '-key', pki.files.key, '-subj', '/CN=no TNAuthList', '-out', csr], { stdio: 'pipe' });
    execFileSync('openssl', ['x509', '-req', '-in', csr, '-CA', pki.files.ca, '-CAkey', pki.files.caKey, '-set_serial', '7', '-days', '30', '-extfile', ext, '-extensions', 'plain', '-out', plain], { stdio: 'pipe' });
    expect(() => loadStirSigning(config({ keyFile: pki.files.key, certFile: plain }), { x5u: X5U })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringMatching(/stir\.certFile: .*plain\.pem has no TNAuthList extension/) }),
    );
  });

  it('refuses a certificate that is not valid yet, a file that is not a regular file, and an unusable configured x5u', () => {
    expect(() => loadStirSigning(config({ keyFile: pki.files.key, certFile: pki.files.cert }), { x5u: X5U, now: Date.parse('2000-01-01T00:00:00Z') })).toThrow(/is not valid before/);
    expect(() => loadStirSigning(config({ keyFile: pki.files.key, certFile: pki.dir }), { x5u: X5U })).toThrow(/stir\.certFile: cannot read .* \(not a regular file\)/);
    const fifo = join(root, 'key.fifo');
    execFileSync('mkfifo', [fifo]);
    // Reading a FIFO with no writer would block the start for ever: it is refused without opening it.
    expect(() => loadStirSigning(config({ keyFile: fifo, certFile: pki.files.cert }), { x5u: X5U })).toThrow(/stir\.keyFile: cannot read .* \(not a regular file\)/);
    expect(() => loadStirSigningMaterial(config({ keyFile: pki.files.key, certFile: pki.files.cert, x5u: 'https://cdn.example/a b.pem' }))).toThrow(/stir\.x5u/);
  });

  it('warns when the x5u is plain http (verifiers refuse it) and when outbound calls go unsigned', () => {
    const log = logger();
    const material = loadStirSigningMaterial(config({ keyFile: pki.files.key, certFile: pki.files.cert }), { log })!;
    material.withX5u('http://127.0.0.1:8080/v1/stir/cert.pem');
    expect(log.lines).toEqual(['info STIR signing on', expect.stringMatching(/^warn STIR x5u is plain http/)]);
    log.lines.length = 0;
    material.withX5u(X5U);
    expect(log.lines).toEqual(['info STIR signing on']);
    log.lines.length = 0;
    expect(loadStirSigningMaterial(config(), { log })).toBeNull();
    expect(log.lines).toEqual([expect.stringMatching(/^warn STIR signing unavailable/)]);
  });

  it('an expired development certificate is ignored with a warning (unsigned), not a startup failure', () => {
    const c = config();
    mkdirSync(join(c.dataDir, 'stir'));
    for (const f of ['key.pem', 'cert.pem']) copyFileSync(join(pki.dir, f), join(c.dataDir, 'stir', f));
    const log = logger();
    expect(loadStirSigning(c, { x5u: X5U, log, now: Date.parse(pki.notAfter) + 1000 })).toBeNull();
    expect(log.lines).toEqual([expect.stringMatching(/^warn STIR development certificate expired/)]);
  });

  it('trust anchors come from stir.verify.trustFile, else the development CA, else none', () => {
    expect(loadTrustAnchors(config({ verify: { ...config().stir.verify, trustFile: 'pki/ca.pem' } }), root).anchors.length).toBe(1);
    expect(loadTrustAnchors(config())).toEqual({ anchors: [], file: null });
    expect(() => loadTrustAnchors(config({ verify: { ...config().stir.verify, trustFile: 'pki/none.pem' } }), root)).toThrow(/stir\.verify\.trustFile/);
    expect(() => loadTrustAnchors(config({ verify: { ...config().stir.verify, trustFile: 'pki' } }), root)).toThrow(/stir\.verify\.trustFile: cannot read .* \(not a regular file\)/);
    const fifo = join(root, 'trust.fifo');
    execFileSync('mkfifo', [fifo]);
    expect(() => loadTrustAnchors(config({ verify: { ...config().stir.verify, trustFile: fifo } }), root)).toThrow(/\(not a regular file\)/);
  });

  it('the x5u is stir.x5u, else <publicUrl or the gateway URL>/v1/stir/cert.pem', () => {
    expect(stirX5u(config({ x5u: 'https://cdn.example/c.pem' }), 'http://127.0.0.1:8080')).toBe('https://cdn.example/c.pem');
    expect(stirX5u(config(), 'http://127.0.0.1:8080/')).toBe('http://127.0.0.1:8080/v1/stir/cert.pem');
    expect(stirX5u(config({}, { agents: { ...config().agents, publicUrl: 'https://gw.example.com/' } }), 'http://127.0.0.1:8080')).toBe('https://gw.example.com/v1/stir/cert.pem');
  });
});

describe.skipIf(!openssl)('attestation (ATIS-1000074 §5.2.3; skipped without openssl)', () => {
  it.each([
    [{ ownsNumber: true, knownCustomer: true }, 'A'],
    [{ ownsNumber: false, knownCustomer: true }, 'B'],
    [{ ownsNumber: false, knownCustomer: false }, 'C'],
    [{ ownsNumber: true, knownCustomer: true, override: 'C' as const }, 'C'],
    [{ ownsNumber: false, knownCustomer: false, override: 'B' as const }, 'B'],
    [{ ownsNumber: false, knownCustomer: false, override: null }, 'C'],
  ])('%j → %s', (input, expected) => {
    expect(attestationFor({ ...input, defaultAttestation: 'C' })).toBe(expected);
  });

  it('the configured default applies only when the caller is neither owner nor known customer', () => {
    expect(attestationFor({ ownsNumber: false, knownCustomer: false, defaultAttestation: 'B' })).toBe('B');
    expect(attestationFor({ ownsNumber: false, knownCustomer: true, defaultAttestation: 'C' })).toBe('B');
  });
});
