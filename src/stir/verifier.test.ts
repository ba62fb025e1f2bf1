import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDevStirCertificates } from './dev-certs.js';
import { PassportSigner } from './passport.js';
import { MAX_IDENTITY_HEADERS, StirVerifier, sipResponseFor, type StirVerifierOptions } from './verifier.js';
import { X5uFetchError, type CertFetcher } from './x5u-fetcher.js';
import { hasCommand } from '../testing/system-tools.js';

const X5U = 'https://certs.example.net/stir/cert.pem';
const FROM = '+1 (215) 555-1212';
const TO = '12155551213';

let dir: string;
let key: KeyObject;
let certPem: string;
let anchors: X509Certificate[];
let otherKey: KeyObject;
let otherCertPem: string;
let notAfter: number;
let notBefore: number;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tollgate-stir-verify-'));
  const pki = await createDevStirCertificates({ dir: join(dir, 'trusted') });
  key = createPrivateKey(readFileSync(pki.files.key));
  certPem = readFileSync(pki.files.cert, 'utf8');
  anchors = [new X509Certificate(readFileSync(pki.files.ca))];
  const cert = new X509Certificate(certPem);
  notAfter = Date.parse(cert.validTo);
  notBefore = Date.parse(cert.validFrom);
  const other = await createDevStirCertificates({ dir: join(dir, 'untrusted') });
  otherKey = createPrivateKey(readFileSync(other.files.key));
  otherCertPem = readFileSync(other.files.cert, 'utf8');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A fetcher serving fixed bodies by URL, counting calls. */
function mapFetcher(map: Record<string, string | Uint8Array>): CertFetcher & { calls: string[] } {
  const calls: string[] = [];
  const f: CertFetcher = (url) => {
    calls.push(url);
    const body = map[url];
    if (body === undefined) return Promise.reject(new Error(`HTTP 404 for ${url}`));
    return Promise.resolve(typeof body === 'string' ? Buffer.from(body) : body);
  };
  return Object.assign(f, { calls });
}

function verifier(opts: Partial<StirVerifierOptions> = {}): StirVerifier {
  return new StirVerifier({
    trustAnchors: anchors,
    maxAgeSec: 60,
    fetchTimeoutMs: 2000,
    cacheTtlSec: 3600,
    cacheMaxEntries: 100,
    allowHttpX5u: false,
    fetcher: mapFetcher({ [X5U]: certPem }),
    ...opts,
  });
}

const nowSec = (): number => Math.floor(Date.now() / 1000);
const claims = (over: Record<string, unknown> = {}) => ({ attest: 'A', dest: { tn: [TO] }, iat: nowSec(), orig: { tn: '12155551212' }, origid: 'c1b2a3d4-0000-4000-8000-000000000001', ...over });
const header = (over: Record<string, unknown> = {}) => ({ alg: 'ES256', ppt: 'shaken', typ: 'passport', x5u: X5U, ...over });

/** Any PASSporT, signed with `k` (crafted JSON, so the tests can break each rule). */
function craft(opts: { header?: Record<string, unknown>; claims?: Record<string, unknown>; params?: string; key?: KeyObject } = {}): string {
  const h = Buffer.from(JSON.stringify(opts.header ?? header())).toString('base64url');
  const c = Buffer.from(JSON.stringify(opts.claims ?? claims())).toString('base64url');
  const s = sign('sha256', Buffer.from(`${h}.${c}`), { key: opts.key ?? key, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  return `${h}.${c}.${s}${opts.params ?? `;info=<${X5U}>;alg=ES256;ppt=shaken`}`;
}

const good = () => new PassportSigner(key, X5U).identity({ attest: 'A', origTn: '12155551212', destTn: [TO], iat: nowSec(), origid: 'c1b2a3d4-0000-4000-8000-000000000001' });

describe.skipIf(!hasCommand('openssl', ['version']))('STIR verification (RFC 8224 §6.2, ATIS-1000074 §5.3.2; skipped without openssl, which makes its certificates)', () => {
  it('a well-formed, fresh, correctly signed SHAKEN PASSporT from a trusted certificate passes', async () => {
    const v = await verifier().verify({ identity: good(), from: FROM, to: TO });
    expect(v).toEqual({ verstat: 'TN-Validation-Passed', reason: null, attest: 'A', origid: 'c1b2a3d4-0000-4000-8000-000000000001', x5u: X5U });
  });

  it('no Identity header → No-TN-Validation', async () => {
    expect(await verifier().verify({ identity: null, from: FROM, to: TO })).toEqual({ verstat: 'No-TN-Validation', reason: 'no Identity header' });
    expect((await verifier().verify({ identity: '  ', from: FROM, to: TO })).verstat).toBe('No-TN-Validation');
  });

  it('without trust anchors, or when disabled, nothing is validated → No-TN-Validation', async () => {
    expect(await verifier({ trustAnchors: [] }).verify({ identity: good(), from: FROM, to: TO })).toMatchObject({ verstat: 'No-TN-Validation', reason: /no trusted STI-CA roots/ });
    expect(await verifier({ disabled: true }).verify({ identity: good(), from: FROM, to: TO })).toMatchObject({ verstat: 'No-TN-Validation', reason: /disabled/ });
  });

  const failsWith = async (identity: string, failure: string, reason: RegExp, v = verifier(), io: { from?: string; to?: string; now?: number } = {}) => {
    const r = await v.verify({ identity, from: io.from ?? FROM, to: io.to ?? TO, ...(io.now !== undefined ? { now: io.now } : {}) });
    expect(r.verstat).toBe('TN-Validation-Failed');
    expect(r.failure).toBe(failure);
    expect(r.reason).toMatch(reason);
    expect(r.attest).toBeUndefined();
    return r;
  };

  it('a tampered payload fails the signature', async () => {
    const id = good();
    const semi = id.indexOf(';');
    const [h, , s] = id.slice(0, semi).split('.') as [string, string, string];
    const forged = Buffer.from(JSON.stringify(claims({ attest: 'A', dest: { tn: [TO, '19005550000'] } }))).toString('base64url');
    await failsWith(`${h}.${forged}.${s}${id.slice(semi)}`, 'bad-signature', /does not verify/);
  });

  it('a signature by another key fails even though its x5u certificate is trusted', async () => {
    await failsWith(craft({ key: otherKey }), 'bad-signature', /does not verify/);
  });

  it('a signature that is not 64 bytes of r||s fails', async () => {
    const [h, c] = good().split(';')[0]!.split('.') as [string, string];
    await failsWith(`${h}.${c}.${Buffer.alloc(70, 1).toString('base64url')};info=<${X5U}>;alg=ES256;ppt=shaken`, 'bad-signature', /64-byte/);
  });

  it('iat older than maxAgeSec is stale (RFC 8224 §6.2.2: 403 Stale Date); exactly maxAgeSec is still fresh', async () => {
    const now = Date.now();
    const t = Math.floor(now / 1000);
    await failsWith(craft({ claims: claims({ iat: t - 61 }) }), 'stale', /61 s old/, verifier(), { now });
    expect((await verifier().verify({ identity: craft({ claims: claims({ iat: t - 60 }) }), from: FROM, to: TO, now })).verstat).toBe('TN-Validation-Passed');
  });

  it('iat in the future beyond maxAgeSec is refused too (secsipidx does not check this)', async () => {
    const now = Date.now();
    const t = Math.floor(now / 1000);
    await failsWith(craft({ claims: claims({ iat: t + 61 }) }), 'stale', /61 s in the future/, verifier(), { now });
    expect((await verifier().verify({ identity: craft({ claims: claims({ iat: t + 60 }) }), from: FROM, to: TO, now })).verstat).toBe('TN-Validation-Passed');
  });

  it('the PASSporT x5u must equal the info parameter', async () => {
    await failsWith(craft({ header: header({ x5u: 'https://elsewhere.example/cert.pem' }) }), 'malformed', /x5u differs from the Identity info/);
    await failsWith(craft({ header: header({ x5u: undefined }) }), 'malformed', /no x5u/);
  });

  it('alg must be ES256 in the PASSporT header and the alg parameter (absent parameter = ES256)', async () => {
    await failsWith(craft({ header: header({ alg: 'ES384' }) }), 'unsupported', /header alg/);
    await failsWith(craft({ params: `;info=<${X5U}>;alg=RS256;ppt=shaken` }), 'unsupported', /alg parameter/);
    expect((await verifier().verify({ identity: craft({ params: `;info=<${X5U}>;ppt=shaken` }), from: FROM, to: TO })).verstat).toBe('TN-Validation-Passed');
  });

  it('ppt must be shaken in the PASSporT header and present as shaken in the parameters (RFC 8225 §8.1)', async () => {
    await failsWith(craft({ header: header({ ppt: 'div' }) }), 'unsupported', /header ppt/);
    await failsWith(craft({ params: `;info=<${X5U}>;alg=ES256` }), 'malformed', /ppt parameter missing/);
    await failsWith(craft({ params: `;info=<${X5U}>;alg=ES256;ppt=div` }), 'unsupported', /ppt parameter is not shaken/);
    expect((await verifier().verify({ identity: craft({ params: `;info=<${X5U}>;alg=ES256;ppt="shaken"` }), from: FROM, to: TO })).verstat).toBe('TN-Validation-Passed');
  });

  it('typ must be passport', async () => {
    await failsWith(craft({ header: header({ typ: 'JWT' }) }), 'malformed', /typ/);
  });

  it('attest must be A, B or C, and origid must be present (RFC 8588 §4, §5)', async () => {
    await failsWith(craft({ claims: claims({ attest: 'X' }) }), 'malformed', /attest/);
    await failsWith(craft({ claims: claims({ attest: undefined }) }), 'malformed', /attest/);
    await failsWith(craft({ claims: claims({ origid: undefined }) }), 'malformed', /origid/);
    await failsWith(craft({ claims: claims({ origid: '' }) }), 'malformed', /origid/);
    for (const a of ['A', 'B', 'C']) expect((await verifier().verify({ identity: craft({ claims: claims({ attest: a }) }), from: FROM, to: TO })).attest).toBe(a);
  });

  it('orig.tn must be the calling number and dest.tn must contain the called number, compared canonically', async () => {
    await failsWith(good(), 'tn-mismatch', /orig\.tn/, verifier(), { from: '+12155559999' });
    await failsWith(good(), 'tn-mismatch', /dest\.tn/, verifier(), { to: '+12155559999' });
    await failsWith(good(), 'tn-mismatch', /calling party is not a telephone number/, verifier(), { from: 'anonymous' });
    await failsWith(craft({ claims: claims({ orig: { uri: 'sip:alice@example.com' } }) }), 'malformed', /orig\.tn/);
    await failsWith(craft({ claims: claims({ dest: { tn: [] } }) }), 'malformed', /dest\.tn/);
    const multi = craft({ claims: claims({ dest: { tn: ['+1 215 555 0000', '1-215-555-1213'] } }) });
    expect((await verifier().verify({ identity: multi, from: '12155551212', to: '+1 (215) 555-1213' })).verstat).toBe('TN-Validation-Passed');
  });

  it('a certificate that does not chain to a trusted root fails (RFC 8224 §6.2.2: 437)', async () => {
    const v = verifier({ fetcher: mapFetcher({ [X5U]: otherCertPem }) });
    await failsWith(craft({ key: otherKey }), 'untrusted-certificate', /does not chain to a trusted STI-CA root/, v);
  });

  it('an expired or not-yet-valid certificate fails even with a fresh iat', async () => {
    const later = notAfter + 86_400_000;
    await failsWith(craft({ claims: claims({ iat: Math.floor(later / 1000) }) }), 'untrusted-certificate', /expired/, verifier(), { now: later });
    const earlier = notBefore - 86_400_000;
    await failsWith(craft({ claims: claims({ iat: Math.floor(earlier / 1000) }) }), 'untrusted-certificate', /not yet valid/, verifier(), { now: earlier });
  });

  it('builds the path through intermediates the x5u serves, and fails without them', async () => {
    const d = mkdtempSync(join(dir, 'inter-'));
    const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: d, stdio: 'pipe', timeout: 15_000 });
    const caFiles = join(dir, 'trusted');
    ossl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'int-key.pem');
    ossl('req', '-new', '-key', 'int-key.pem', '-subj', '/CN=intermediate', '-out', 'int.csr');
    writeFileSync(join(d, 'ext.cnf'), '[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n[ee]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n');
    ossl('x509', '-req', '-in', 'int.csr', '-CA', join(caFiles, 'ca.pem'), '-CAkey', join(caFiles, 'ca-key.pem'), '-set_serial', '7', '-days', '30', '-extfile', 'ext.cnf', '-extensions', 'ca', '-out', 'int.pem');
    ossl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'ee-key.pem');
    ossl('req', '-new', '-key', 'ee-key.pem', '-subj', '/CN=SHAKEN 9999', '-out', 'ee.csr');
    ossl('x509', '-req', '-in', 'ee.csr', '-CA', 'int.pem', '-CAkey', 'int-key.pem', '-set_serial', '8', '-days', '30', '-extfile', 'ext.cnf', '-extensions', 'ee', '-out', 'ee.pem');
    const eeKey = createPrivateKey(readFileSync(join(d, 'ee-key.pem')));
    const ee = readFileSync(join(d, 'ee.pem'), 'utf8');
    const int = readFileSync(join(d, 'int.pem'), 'utf8');
    const id = craft({ key: eeKey });
    expect((await verifier({ fetcher: mapFetcher({ [X5U]: ee + int }) }).verify({ identity: id, from: FROM, to: TO })).verstat).toBe('TN-Validation-Passed');
    await failsWith(id, 'untrusted-certificate', /does not chain/, verifier({ fetcher: mapFetcher({ [X5U]: ee }) }));
    // That leaf has no TNAuthList: accepted by default, refused when required (RFC 8226 §9).
    await failsWith(id, 'untrusted-certificate', /TNAuthList/, verifier({ fetcher: mapFetcher({ [X5U]: ee + int }), requireTnAuthList: true }));
    expect((await verifier({ requireTnAuthList: true }).verify({ identity: good(), from: FROM, to: TO })).verstat).toBe('TN-Validation-Passed');
  });

  it('a fetch that outlasts fetchTimeoutMs fails with a reason, even if the fetcher ignores the abort signal', async () => {
    let aborted = false;
    let fetching!: () => void;
    const started = new Promise<void>((r) => (fetching = r));
    const hang: CertFetcher = (_url, { signal }) => {
      signal.addEventListener('abort', () => (aborted = true));
      fetching();
      return new Promise<Uint8Array>(() => undefined);
    };
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      let settled = false;
      const failed = failsWith(good(), 'x5u-unavailable', /^x5u certificate could not be fetched$/, verifier({ fetcher: hang, fetchTimeoutMs: 150 })).finally(() => (settled = true));
      await started;
      await vi.advanceTimersByTimeAsync(149);
      expect([settled, aborted]).toEqual([false, false]);
      await vi.advanceTimersByTimeAsync(1);
      await failed;
      expect(aborted).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a certificate body over the size cap fails', async () => {
    await failsWith(good(), 'x5u-unavailable', /^x5u certificate could not be fetched$/, verifier({ fetcher: mapFetcher({ [X5U]: certPem + ' '.repeat(65_536) }) }));
  });

  it('an http x5u is refused without fetching unless allowHttpX5u is set', async () => {
    const url = 'http://certs.example.net/stir/cert.pem';
    const fetcher = mapFetcher({ [url]: certPem });
    const id = new PassportSigner(key, url).identity({ attest: 'A', origTn: '12155551212', destTn: [TO], iat: nowSec(), origid: 'x' });
    await failsWith(id, 'x5u-unavailable', /only https/, verifier({ fetcher }));
    expect(fetcher.calls).toEqual([]);
    expect((await verifier({ fetcher, allowHttpX5u: true }).verify({ identity: id, from: FROM, to: TO })).verstat).toBe('TN-Validation-Passed');
  });

  it('a failed fetch fails the call and is not cached; garbage bodies fail as unreadable', async () => {
    const fetcher = mapFetcher({});
    const v = verifier({ fetcher });
    // The reason says the fetch failed, never how (the calling side reads it in the call record).
    await failsWith(good(), 'x5u-unavailable', /^x5u certificate could not be fetched$/, v);
    await failsWith(good(), 'x5u-unavailable', /^x5u certificate could not be fetched$/, v);
    expect(fetcher.calls.length).toBe(2);
    await failsWith(good(), 'untrusted-certificate', /readable certificate/, verifier({ fetcher: mapFetcher({ [X5U]: 'not a certificate' }) }));
  });

  it('an x5u the egress guard refuses fails as "x5u destination not allowed"; the default fetcher refuses loopback without connecting', async () => {
    const refusing: CertFetcher = () => Promise.reject(new X5uFetchError('refused', 'x5u fetch failed: destination not allowed'));
    await failsWith(good(), 'x5u-unavailable', /^x5u destination not allowed$/, verifier({ fetcher: refusing }));
    const loop = 'https://127.0.0.1:1/cert.pem';
    const id = new PassportSigner(key, loop).identity({ attest: 'A', origTn: '12155551212', destTn: [TO], iat: nowSec(), origid: 'x' });
    await failsWith(id, 'x5u-unavailable', /^x5u destination not allowed$/, new StirVerifier({ trustAnchors: anchors, maxAgeSec: 60, fetchTimeoutMs: 2000, cacheTtlSec: 0, cacheMaxEntries: 10, allowHttpX5u: false }));
  });

  it('fetches nothing for a header that fails any cheaper check (malformed, stale, numbers that do not match)', async () => {
    const fetcher = mapFetcher({ [X5U]: certPem });
    const v = verifier({ fetcher });
    const signer = new PassportSigner(key, X5U);
    await failsWith(signer.identity({ attest: 'A', origTn: '12155551212', destTn: [TO], iat: nowSec() - 3600, origid: 'x' }), 'stale', /old/, v);
    await failsWith(signer.identity({ attest: 'A', origTn: '12155550000', destTn: [TO], iat: nowSec(), origid: 'x' }), 'tn-mismatch', /orig/, v);
    await failsWith('not.a.jws;info=<https://certs.example.net/stir/cert.pem>;alg=ES256;ppt=shaken', 'malformed', /./, v);
    expect(fetcher.calls).toEqual([]);
  });

  it('a cached certificate avoids a second fetch until its TTL passes; concurrent calls share one fetch', async () => {
    let clock = 1_000_000;
    const fetcher = mapFetcher({ [X5U]: certPem });
    const v = verifier({ fetcher, cacheTtlSec: 10, clock: () => clock });
    const all = await Promise.all([1, 2, 3].map(() => v.verify({ identity: good(), from: FROM, to: TO })));
    expect(all.map((r) => r.verstat)).toEqual(['TN-Validation-Passed', 'TN-Validation-Passed', 'TN-Validation-Passed']);
    expect(fetcher.calls.length).toBe(1);
    await v.verify({ identity: good(), from: FROM, to: TO });
    expect(fetcher.calls.length).toBe(1);
    clock += 10_001;
    await v.verify({ identity: good(), from: FROM, to: TO });
    expect(fetcher.calls.length).toBe(2);
  });

  it('the certificate cache is bounded: the least recently used x5u is evicted', async () => {
    const urls = ['https://a.example/c.pem', 'https://b.example/c.pem', 'https://c.example/c.pem'];
    const fetcher = mapFetcher(Object.fromEntries(urls.map((u) => [u, certPem])));
    const v = verifier({ fetcher, cacheMaxEntries: 2 });
    const idFor = (u: string) => new PassportSigner(key, u).identity({ attest: 'A', origTn: '12155551212', destTn: [TO], iat: nowSec(), origid: 'x' });
    for (const u of urls) expect((await v.verify({ identity: idFor(u), from: FROM, to: TO })).verstat).toBe('TN-Validation-Passed');
    expect(v.cacheSize).toBe(2);
    await v.verify({ identity: idFor(urls[2]!), from: FROM, to: TO }); // still cached
    expect(fetcher.calls.length).toBe(3);
    await v.verify({ identity: idFor(urls[0]!), from: FROM, to: TO }); // evicted: fetched again
    expect(fetcher.calls).toEqual([...urls, urls[0]]);
  });

  it('never throws on bad input', async () => {
    const v = verifier();
    const inputs: unknown[] = ['x', '...', 'a.b.c;info=<https://x>;ppt=shaken', `${good()}\0`, 'e30.e30.e30;info=<https://x.example/c>;ppt=shaken', 'bnVsbA.bnVsbA.AA;info=<https://x>;ppt=shaken', 42, {}, ';;;'];
    for (const identity of inputs) {
      const r = await v.verify({ identity: identity as string, from: FROM, to: TO });
      expect(r.verstat, String(identity)).toBe('TN-Validation-Failed');
      expect(typeof r.reason).toBe('string');
    }
    expect((await v.verify({ identity: good(), from: undefined as never, to: null as never })).verstat).toBe('TN-Validation-Failed');
  });

  it('maps each failure to the SIP response RFC 8224 registers for it', () => {
    expect(sipResponseFor('stale')).toEqual({ status: 403, reason: 'Stale Date' });
    expect(sipResponseFor('x5u-unavailable')).toEqual({ status: 436, reason: 'Bad Identity Info' });
    expect(sipResponseFor('untrusted-certificate').status).toBe(437);
    expect(sipResponseFor('unsupported').status).toBe(437);
    for (const f of ['malformed', 'tn-mismatch', 'bad-signature'] as const) expect(sipResponseFor(f)).toEqual({ status: 438, reason: 'Invalid Identity Header' });
  });
});

describe('every Identity header of a request (RFC 8224 §6.2, RFC 8588)', () => {
  const signed = (attest: 'A' | 'B' | 'C') => new PassportSigner(key, X5U).identity({ attest, origTn: '12155551212', destTn: [TO], iat: nowSec(), origid: `o-${attest}` });
  const div = () => craft({ params: `;info=<${X5U}>;alg=ES256;ppt=div` });

  it('a non-SHAKEN header before a valid one: the call passes on the valid one', async () => {
    const v = await verifier().verifyAll({ identities: [div(), good()], from: FROM, to: TO });
    expect(v).toMatchObject({ verstat: 'TN-Validation-Passed', attest: 'A', header: 2, examined: 2 });
  });

  it('a broken SHAKEN header before a valid one: the call passes on the valid one', async () => {
    const tampered = craft({ key: otherKey });
    const v = await verifier().verifyAll({ identities: ['not a header', tampered, good()], from: FROM, to: TO });
    expect(v).toMatchObject({ verstat: 'TN-Validation-Passed', header: 3 });
  });

  it('the best attestation wins: A over B over C, whatever the order; the first A ends the search', async () => {
    const fetcher = mapFetcher({ [X5U]: certPem });
    expect(await verifier({ fetcher }).verifyAll({ identities: [signed('C'), signed('A'), signed('B')], from: FROM, to: TO })).toMatchObject({ attest: 'A', header: 2 });
    expect(await verifier().verifyAll({ identities: [signed('C'), signed('B')], from: FROM, to: TO })).toMatchObject({ attest: 'B', header: 2 });
  });

  it('none passes: the first SHAKEN header\'s failure decides; a foreign type only when no SHAKEN header is there', async () => {
    const stale = craft({ claims: claims({ iat: nowSec() - 600 }) });
    const wrongKey = craft({ key: otherKey });
    expect(await verifier().verifyAll({ identities: [div(), stale, wrongKey], from: FROM, to: TO })).toMatchObject({ verstat: 'TN-Validation-Failed', failure: 'stale', header: 2 });
    expect(await verifier().verifyAll({ identities: [div()], from: FROM, to: TO })).toMatchObject({ verstat: 'TN-Validation-Failed', failure: 'unsupported', header: 1 });
  });

  it('no header → No-TN-Validation; at most MAX_IDENTITY_HEADERS are examined', async () => {
    expect(await verifier().verifyAll({ identities: [], from: FROM, to: TO })).toMatchObject({ verstat: 'No-TN-Validation' });
    const many = [...Array.from({ length: MAX_IDENTITY_HEADERS }, () => div()), good()];
    expect(await verifier().verifyAll({ identities: many, from: FROM, to: TO })).toMatchObject({ verstat: 'TN-Validation-Failed', examined: MAX_IDENTITY_HEADERS });
  });
});
