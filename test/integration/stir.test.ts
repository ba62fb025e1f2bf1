import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { createPrivateKey, sign, type KeyObject } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { registerCertsCommands } from '../../src/cli/certs-command.js';
import { reportError } from '../../src/cli/output.js';
import { loadConfig, type Config } from '../../src/config/index.js';
import { createStirVerifier, loadStirSigning, StirVerifier, parseCertificates, type CertFetcher, type StirSigning } from '../../src/stir/index.js';
import { gatewayEnv, rememberSecret, ROOT, runCli } from '../helpers/gateway-process.js';

/**
 * Interoperability with secsipidx 1.2.0 (../shared/PEERS.md), an independent STIR/SHAKEN
 * implementation: what tollgate signs, secsipidx verifies (offline, with the certificate file,
 * and with the x5u URL through its cache directory and a CA check); what secsipidx signs,
 * tollgate verifies; and what secsipidx accepts but RFC 8224/8588 forbid, tollgate refuses.
 */

const X5U = 'https://certs.tollgate.test/stir/cert.pem';
const ORIG = '12155551212';
const DEST = '12155551213';

interface Run {
  code: number;
  out: string;
}
function secsipidx(args: string[]): Promise<Run> {
  return new Promise((res) => {
    execFile('secsipidx', args, { timeout: 10_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      res({ code, out: `${stdout}${stderr}` });
    });
  });
}
const check = (identity: string, ...extra: string[]): Promise<Run> => secsipidx(['-c', '-expire', '60', ...extra, '-identity', identity]);
const isOk = (r: Run): boolean => r.code === 0 && /^ok$/m.test(r.out);

let root: string;
let dataDir: string;
let stirDir: string;
let config: Config;
let signing: StirSigning;
let key: KeyObject;

/** Files under stirDir, served for the x5u without a network. */
const fileFetcher = (map: Record<string, string>): CertFetcher => (url) => {
  const file = map[url];
  return file ? Promise.resolve(readFileSync(file)) : Promise.reject(new Error(`HTTP 404 for ${url}`));
};

/** secsipidx's URL cache: file named after the URL, fresh mtime (older than -cache-expire is deleted). */
function cacheDirWith(pem: string, url = X5U): string {
  const dir = mkdtempSync(join(root, 'cache-'));
  const file = join(dir, url.replace('://', '_').replace(/\//g, '_'));
  writeFileSync(file, pem);
  const now = new Date();
  utimesSync(file, now, now);
  return dir;
}

/** Runs `tollgate <args>` in process, with the certs command registered as index.ts will. */
async function runInProcess(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const program = new Command('tollgate').option('--json').exitOverride().configureOutput({ writeOut: (s) => (stdout += s), writeErr: (s) => (stderr += s) });
  const json = () => !!program.opts<{ json?: boolean }>().json;
  registerCertsCommands(program, { json, loadConfig: () => loadConfig({ env: { TOLLGATE_DATA_DIR: dataDir }, cwd: root }) });
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => ((stdout += String(s)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => ((stderr += String(s)), true));
  let code: number;
  try {
    await program.parseAsync(['node', 'tollgate', ...args]);
    code = 0;
  } catch (e) {
    code = e instanceof CommanderError ? (e.code === 'commander.helpDisplayed' ? 0 : 2) : reportError(e, json());
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
  return { code, stdout, stderr };
}

/** Any PASSporT with raw JSON, signed with the tollgate key: for what secsipidx fails to check. */
function craft(claims: Record<string, unknown>, params = `;info=<${X5U}>;alg=ES256;ppt=shaken`): string {
  const h = Buffer.from(JSON.stringify({ alg: 'ES256', ppt: 'shaken', typ: 'passport', x5u: X5U })).toString('base64url');
  const c = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const s = sign('sha256', Buffer.from(`${h}.${c}`), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  return `${h}.${c}.${s}${params}`;
}
const nowSec = (): number => Math.floor(Date.now() / 1000);
const passport = (over: Record<string, unknown> = {}) => ({ attest: 'A', dest: { tn: [DEST] }, iat: nowSec(), orig: { tn: ORIG }, origid: '0f6a1c2e-9d7b-4c1e-8f3a-2b5d6e7f8a9b', ...over });

beforeAll(async () => {
  const probe = spawnSync('secsipidx', ['-version'], { timeout: 10_000 });
  if (probe.error && (probe.error as NodeJS.ErrnoException).code === 'ENOENT') {
    throw new Error('secsipidx is not installed: apt-get install -y secsipidx (.ci/run installs it)');
  }
  root = mkdtempSync(join(tmpdir(), 'tollgate-stir-it-'));
  dataDir = join(root, 'data');
  stirDir = join(dataDir, 'stir');
  // The development PKI, made through the command exactly as an operator would.
  const r = await runInProcess(['certs', 'dev', '--json']);
  expect(r.code, r.stderr).toBe(0);
  config = loadConfig({ env: { TOLLGATE_DATA_DIR: dataDir }, cwd: root });
  signing = loadStirSigning(config, { x5u: X5U })!;
  expect(signing?.source).toBe('dev');
  const keyPem = readFileSync(join(stirDir, 'key.pem'), 'utf8');
  key = createPrivateKey(keyPem);
  rememberSecret(...keyPem.split('\n').filter((l) => !l.startsWith('-----')));
});
afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

const claims = () => ({ attest: 'A' as const, origTn: `+${ORIG}`, destTn: [DEST], iat: nowSec(), origid: '5d0c9f1e-3b2a-4c5d-8e7f-112233445566' });

describe('tollgate signs, secsipidx verifies', () => {
  it('offline with the certificate file (secsipidx -c -p cert.pem)', async () => {
    const identity = signing.identity(claims());
    const r = await check(identity, '-p', join(stirDir, 'cert.pem'));
    expect(isOk(r), r.out).toBe(true);
    // The same check fails for a flipped signature byte: the test can fail.
    const semi = identity.indexOf(';');
    const sig = Buffer.from(identity.slice(identity.lastIndexOf('.', semi) + 1, semi), 'base64url');
    sig[10] = sig[10]! ^ 1;
    const broken = identity.slice(0, identity.lastIndexOf('.', semi) + 1) + sig.toString('base64url') + identity.slice(semi);
    expect(isOk(await check(broken, '-p', join(stirDir, 'cert.pem')))).toBe(false);
  });

  it('by x5u URL through its cache dir, checking validity dates and the chain to the development STI-CA (-cert-verify 5)', async () => {
    const identity = signing.identity(claims());
    const cache = cacheDirWith(signing.certificatePem().pem);
    const r = await check(identity, '-p', X5U, '-cache-dir', cache, '-cert-verify', '5', '-ca-file', join(stirDir, 'ca.pem'));
    expect(isOk(r), r.out).toBe(true);
    // Against a CA that did not issue the certificate, secsipidx refuses it.
    const otherCa = join(root, 'other');
    mkdirSync(otherCa);
    expect((await runInProcess(['certs', 'dev', '--dir', otherCa])).code).toBe(0);
    const refused = await check(identity, '-p', X5U, '-cache-dir', cacheDirWith(signing.certificatePem().pem), '-cert-verify', '5', '-ca-file', join(otherCa, 'ca.pem'));
    expect(isOk(refused), refused.out).toBe(false);
    expect(refused.out).toMatch(/unknown authority/);
  });
});

describe('secsipidx signs, tollgate verifies', () => {
  const verifier = (fetcher = fileFetcher({ [X5U]: join(stirDir, 'cert.pem') })) => createStirVerifier(config, { fetcher });

  it.each(['A', 'B', 'C'])('attestation %s passes, with the numbers in any visual form', async (attest) => {
    const r = await secsipidx(['-S', '-k', join(stirDir, 'key.pem'), '-x5u', X5U, '-a', attest, '-o', ORIG, '-d', DEST]);
    expect(r.code, r.out).toBe(0);
    const identity = r.out.trim();
    const v = await verifier().verify({ identity, from: '+1 (215) 555-1212', to: '+1-215-555-1213' });
    expect(v, JSON.stringify(v)).toMatchObject({ verstat: 'TN-Validation-Passed', reason: null, attest, x5u: X5U });
    expect(v.origid).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('fails a header secsipidx signed with a key the x5u certificate does not hold, or for other numbers', async () => {
    const other = join(root, 'wrong-key');
    mkdirSync(other);
    expect((await runInProcess(['certs', 'dev', '--dir', other])).code).toBe(0);
    const r = await secsipidx(['-S', '-k', join(other, 'key.pem'), '-x5u', X5U, '-a', 'A', '-o', ORIG, '-d', DEST]);
    expect(await verifier().verify({ identity: r.out.trim(), from: ORIG, to: DEST })).toMatchObject({ verstat: 'TN-Validation-Failed', failure: 'bad-signature' });
    // Served its own certificate, that key's chain leads to a CA tollgate does not trust.
    const own = verifier(fileFetcher({ [X5U]: join(other, 'cert.pem') }));
    expect(await own.verify({ identity: r.out.trim(), from: ORIG, to: DEST })).toMatchObject({ verstat: 'TN-Validation-Failed', failure: 'untrusted-certificate' });
    const good = await secsipidx(['-S', '-k', join(stirDir, 'key.pem'), '-x5u', X5U, '-a', 'A', '-o', ORIG, '-d', DEST]);
    expect(await verifier().verify({ identity: good.out.trim(), from: ORIG, to: '12155550000' })).toMatchObject({ verstat: 'TN-Validation-Failed', failure: 'tn-mismatch' });
  });
});

describe('what secsipidx accepts but tollgate must refuse (RFC 8224 §6.2, RFC 8588)', () => {
  const cases: [string, () => string, string, RegExp][] = [
    ['iat in the future', () => craft(passport({ iat: nowSec() + 600 })), 'stale', /in the future/],
    ["attest 'X'", () => craft(passport({ attest: 'X' })), 'malformed', /attest/],
    ['orig.tn that is not the calling number', () => craft(passport({ orig: { tn: '12155559999' } })), 'tn-mismatch', /orig\.tn/],
    ['no ppt parameter on the Identity header', () => craft(passport(), `;info=<${X5U}>;alg=ES256`), 'malformed', /ppt parameter missing/],
  ];
  it.each(cases)('%s', async (_name, make, failure, reason) => {
    const identity = make();
    const theirs = await check(identity, '-p', join(stirDir, 'cert.pem'));
    expect(isOk(theirs), `secsipidx now refuses this (${theirs.out}); update docs/stir.md`).toBe(true);
    const ours = await createStirVerifier(config, { fetcher: fileFetcher({ [X5U]: join(stirDir, 'cert.pem') }) }).verify({ identity, from: ORIG, to: DEST });
    expect(ours.verstat).toBe('TN-Validation-Failed');
    expect(ours.failure).toBe(failure);
    expect(ours.reason).toMatch(reason);
  });

  it('the crafted control with nothing wrong passes both', async () => {
    const identity = craft(passport());
    expect(isOk(await check(identity, '-p', join(stirDir, 'cert.pem')))).toBe(true);
    const v = new StirVerifier({
      trustAnchors: parseCertificates(readFileSync(join(stirDir, 'ca.pem'), 'utf8')),
      maxAgeSec: 60, fetchTimeoutMs: 1000, cacheTtlSec: 60, cacheMaxEntries: 10, allowHttpX5u: false,
      fetcher: fileFetcher({ [X5U]: join(stirDir, 'cert.pem') }),
    });
    expect((await v.verify({ identity, from: ORIG, to: DEST })).verstat).toBe('TN-Validation-Passed');
  });
});

describe('tollgate certs dev', () => {
  it('writes the development PKI under <dataDir>/stir with keys 0600, and reports it as JSON', async () => {
    for (const f of ['ca.pem', 'ca-key.pem', 'cert.pem', 'key.pem', 'chain.pem']) expect(statSync(join(stirDir, f)).isFile(), f).toBe(true);
    expect(statSync(join(stirDir, 'key.pem')).mode & 0o777).toBe(0o600);
    expect(statSync(join(stirDir, 'ca-key.pem')).mode & 0o777).toBe(0o600);
    const again = await runInProcess(['certs', 'dev', '--json']);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ created: false, dir: stirDir, spcs: ['1234'], files: { cert: join(stirDir, 'cert.pem') } });
  });

  it('--dir and --spc: openssl shows the TNAuthList extension (1.3.6.1.5.5.7.1.26) with the SPC, and secsipidx verifies against its CA', async () => {
    const dir = join(root, 'cli-dir');
    const r = await runInProcess(['certs', 'dev', '--dir', dir, '--spc', '5678']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`created in ${dir}`);
    expect(r.stdout).toContain('SPC 5678');
    const text = spawnSync('openssl', ['x509', '-in', join(dir, 'cert.pem'), '-noout', '-text'], { timeout: 10_000, encoding: 'utf8' }).stdout;
    expect(text).toMatch(/1\.3\.6\.1\.5\.5\.7\.1\.26:\s*\n\s*0.*5678/);
    expect(text).toContain('CA:FALSE');
    const der = spawnSync('openssl', ['asn1parse', '-in', join(dir, 'cert.pem')], { timeout: 10_000, encoding: 'utf8' }).stdout;
    expect(der).toMatch(/OBJECT\s*:1\.3\.6\.1\.5\.5\.7\.1\.26/);

    const cfg = loadConfig({ env: { TOLLGATE_DATA_DIR: join(root, 'unused') }, cwd: root, overrides: { stir: { ...config.stir, keyFile: join(dir, 'key.pem'), certFile: join(dir, 'cert.pem'), chainFile: join(dir, 'chain.pem') } } });
    const s = loadStirSigning(cfg, { x5u: X5U })!;
    const identity = s.identity(claims());
    const ok = await check(identity, '-p', X5U, '-cache-dir', cacheDirWith(s.certificatePem().pem), '-cert-verify', '5', '-ca-file', join(dir, 'ca.pem'));
    expect(isOk(ok), ok.out).toBe(true);
  });

  it('exits 2 for bad usage and 1 when files are in the way', async () => {
    const badSpc = await runInProcess(['certs', 'dev', '--dir', join(root, 'bad'), '--spc', 'no spaces', '--json']);
    expect(badSpc.code).toBe(2);
    expect(JSON.parse(badSpc.stderr).error).toMatchObject({ code: 'VALIDATION_FAILED', details: { field: 'spc' } });
    expect((await runInProcess(['certs', 'dev', '--colour', 'red'])).code).toBe(2);
    const partial = join(root, 'partial');
    mkdirSync(partial);
    writeFileSync(join(partial, 'cert.pem'), 'x');
    const conflict = await runInProcess(['certs', 'dev', '--dir', partial]);
    expect(conflict.code).toBe(1);
    expect(conflict.stderr).toMatch(/CONFLICT: .*--force/);
  });

  // Once src/cli/index.ts registers the command, the real executable is exercised too.
  const wired = readFileSync(join(ROOT, 'src/cli/index.ts'), 'utf8').includes('registerCertsCommands');
  it.runIf(wired)('works through the tollgate executable', async () => {
    const d = mkdtempSync(join(root, 'exe-'));
    const env = gatewayEnv({ dataDir: d });
    const r = await runCli(['certs', 'dev', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ created: true, dir: join(d, 'stir'), spcs: ['1234'] });
    rememberSecret(...readFileSync(join(d, 'stir', 'key.pem'), 'utf8').split('\n').filter((l) => !l.startsWith('-----')));
    expect((await runCli(['certs', 'dev', '--spc', '!'], env)).code).toBe(2);
  });
});
