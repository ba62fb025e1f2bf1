import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasTnAuthList, parseCertificates, tnAuthListSpcs, verifyChain } from './certificate-chain.js';
import { createDevStirCertificates, type DevStirCertificates } from './dev-certs.js';
import { hasCommand } from '../testing/system-tools.js';

let root: string;
let made: DevStirCertificates;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'tollgate-stir-dev-'));
  made = await createDevStirCertificates({ dir: join(root, 'stir'), spc: '7A9B' });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(!hasCommand('openssl', ['version']))('development STIR certificates (tollgate certs dev; skipped without openssl)', () => {
  it('writes an STI-CA, a SHAKEN certificate with TNAuthList, its key and the chain; keys are 0600', () => {
    expect(made.created).toBe(true);
    expect(made.spcs).toEqual(['7A9B']);
    const ca = new X509Certificate(readFileSync(made.files.ca));
    const cert = new X509Certificate(readFileSync(made.files.cert));
    expect(ca.ca).toBe(true);
    expect(cert.ca).toBe(false);
    expect(cert.subject).toContain('CN=SHAKEN 7A9B');
    expect(cert.checkIssued(ca) && cert.verify(ca.publicKey)).toBe(true);
    expect(cert.checkPrivateKey(createPrivateKey(readFileSync(made.files.key)))).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(hasTnAuthList(cert)).toBe(true);
    expect(hasTnAuthList(ca)).toBe(false);
    expect(parseCertificates(readFileSync(made.files.chain, 'utf8')).map((c) => c.fingerprint256)).toEqual([ca.fingerprint256]);
    for (const f of [made.files.key, made.files.caKey]) expect(statSync(f).mode & 0o777, f).toBe(0o600);
    expect(Date.parse(made.notAfter) - Date.now()).toBeGreaterThan(360 * 86_400_000);
  });

  it('verifyChain builds leaf → STI-CA from the served bundle and reports the validity window', () => {
    const bundle = parseCertificates(readFileSync(made.files.cert, 'utf8') + readFileSync(made.files.chain, 'utf8'));
    const anchors = parseCertificates(readFileSync(made.files.ca, 'utf8'));
    const v = verifyChain(bundle, anchors);
    expect(v).toMatchObject({ ok: true, tnAuthList: true, depth: 2 });
    if (v.ok) expect(v.notAfter).toBe(Date.parse(bundle[0]!.validTo));
    // The root in the bundle is not trusted because it is served: only configured anchors count.
    expect(verifyChain(bundle, [])).toEqual({ ok: false, reason: 'certificate does not chain to a trusted STI-CA root' });
    expect(verifyChain([], anchors)).toMatchObject({ ok: false });
  });

  it('reads DER as well as PEM and caps the bundle size', () => {
    const cert = new X509Certificate(readFileSync(made.files.cert));
    expect(parseCertificates(cert.raw)[0]!.fingerprint256).toBe(cert.fingerprint256);
    expect(tnAuthListSpcs(parseCertificates(cert.raw)[0]!)).toEqual(['7A9B']);
    expect(() => parseCertificates(cert.toString().repeat(11))).toThrow(/more than 10/);
    expect(() => parseCertificates('nothing here')).toThrow(/no PEM/);
  });

  it('leaves complete files alone unless --force, and replaces them with it', async () => {
    const again = await createDevStirCertificates({ dir: made.dir });
    expect(again.created).toBe(false);
    expect(again.fingerprint).toBe(made.fingerprint);
    const dir = join(root, 'forced');
    const first = await createDevStirCertificates({ dir });
    const forced = await createDevStirCertificates({ dir, force: true, spc: '5678' });
    expect(forced.created).toBe(true);
    expect(forced.fingerprint).not.toBe(first.fingerprint);
    expect(forced.spcs).toEqual(['5678']);
  });

  it('refuses to mix with a partial set of files, and refuses bad SPCs (no config injection)', async () => {
    const dir = join(root, 'partial');
    mkdirSync(dir);
    writeFileSync(join(dir, 'key.pem'), 'x');
    await expect(createDevStirCertificates({ dir })).rejects.toMatchObject({ code: 'CONFLICT' });
    for (const spc of ['', '12 34', '1234\n[ext]', 'x'.repeat(17)]) {
      await expect(createDevStirCertificates({ dir: join(root, 'bad'), spc }), spc).rejects.toMatchObject({ code: 'VALIDATION_FAILED', details: { field: 'spc' } });
    }
  });
});
