/**
 * npm run bench:stir — STIR/SHAKEN figures, printed as JSON. Single-threaded, in this process.
 * Targets: PASSporT signing ≥ 10,000/s per core; verification with a cached certificate
 * ≥ 5,000/s per core. `signing` is PassportSigner.identity (KeyObject and encoded header held
 * once, as the gateway signs); `signPassportFunction` is signPassport(key, x5u, claims), which
 * re-checks the key and re-encodes the header per call. Verification runs the full rule set
 * (header parse, JSON decode, TN canonicalisation, LRU cache hit, chain-validity window, ES256
 * verify) against a development PKI made with openssl. Every loop is bounded in count.
 *
 * Other modules extend the output through stirFigures() (e.g. outbound call setup rate with
 * signing on), keeping `signing` and `verification` as they are.
 *
 * `outboundSetup` (bench/outbound-setup.ts): outbound call setup rate through policy + signing
 * to a SIPp UAS, against the compiled gateway (needs dist/: the script runs npm run build
 * first) and SIPp. `--quick` runs fewer, shorter rounds; `--rates 400,800` and `--seconds 5`
 * choose the offered rates and the length of each; `--no-outbound` skips it.
 */
import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createDevStirCertificates } from '../src/stir/dev-certs.js';
import { PassportSigner, signPassport, type PassportClaims } from '../src/stir/passport.js';
import { parseCertificates } from '../src/stir/certificate-chain.js';
import { StirVerifier } from '../src/stir/verifier.js';
import { summarise, timeOps } from './stats.js';
import { outboundSetupFigures, sippAvailable } from './outbound-setup.js';

const X5U = 'https://certs.tollgate.test/stir/cert.pem';
const SIGN_TARGET = 10_000;
const VERIFY_TARGET = 5_000;

interface Figure {
  opsPerSec: number;
  p50Us: number;
  p99Us: number;
  n: number;
}

/** Times `n` synchronous calls one by one (hrtime around each). */
function timeSync(n: number, op: (i: number) => unknown): Figure {
  const samples = new Array<number>(n);
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    op(i);
    samples[i] = Number(process.hrtime.bigint() - t0);
  }
  const totalNs = Number(process.hrtime.bigint() - start);
  const s = summarise(samples);
  return { opsPerSec: Math.round(n / (totalNs / 1e9)), p50Us: s.p50Us, p99Us: s.p99Us, n };
}

export interface StirFigures {
  signing: Figure & { targetOpsPerSec: number; met: boolean };
  signPassportFunction: Figure;
  verification: Figure & { targetOpsPerSec: number; met: boolean; certificateFetches: number };
}

export async function stirFigures(opts: { quick?: boolean } = {}): Promise<StirFigures> {
  const n = opts.quick ? 5_000 : 50_000;
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-bench-stir-'));
  try {
    const pki = await createDevStirCertificates({ dir });
    const key = createPrivateKey(readFileSync(pki.files.key));
    const certPem = readFileSync(pki.files.cert);
    const signer = new PassportSigner(key, X5U);
    const iat = Math.floor(Date.now() / 1000);
    const claims = (i: number): PassportClaims => ({ attest: 'A', origTn: '+12155551212', destTn: ['+12155551213'], iat, origid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}` });

    for (let i = 0; i < 2000; i++) signer.identity(claims(i)); // warm up
    const signing = timeSync(n, (i) => signer.identity(claims(i)));
    const signPassportFunction = timeSync(Math.ceil(n / 5), (i) => signPassport(key, X5U, claims(i)));

    let fetches = 0;
    const verifier = new StirVerifier({
      trustAnchors: parseCertificates(readFileSync(pki.files.ca, 'utf8')),
      maxAgeSec: 60,
      fetchTimeoutMs: 2000,
      cacheTtlSec: 3600,
      cacheMaxEntries: 1000,
      allowHttpX5u: false,
      fetcher: () => {
        fetches++;
        return Promise.resolve(certPem);
      },
    });
    const pool = Array.from({ length: 1000 }, (_, i) => signer.identity(claims(i)));
    const now = iat * 1000; // fixed: the run may outlast maxAgeSec
    for (let i = 0; i < 2000; i++) {
      const v = await verifier.verify({ identity: pool[i % pool.length]!, from: '12155551212', to: '12155551213', now });
      if (v.verstat !== 'TN-Validation-Passed') throw new Error(`bench identity failed verification: ${v.reason}`);
    }
    const t = await timeOps(Math.ceil(n / 2), (i) => verifier.verify({ identity: pool[i % pool.length]!, from: '12155551212', to: '12155551213', now }));
    const verification = { opsPerSec: t.opsPerSec, p50Us: t.latency.p50Us, p99Us: t.latency.p99Us, n: t.latency.n };

    return {
      signing: { ...signing, targetOpsPerSec: SIGN_TARGET, met: signing.opsPerSec >= SIGN_TARGET },
      signPassportFunction,
      verification: { ...verification, targetOpsPerSec: VERIFY_TARGET, met: verification.opsPerSec >= VERIFY_TARGET, certificateFetches: fetches },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  const arg = (name: string): string | undefined => {
    const i = process.argv.indexOf(name);
    return i >= 0 ? process.argv[i + 1] : undefined;
  };
  const rates = arg('--rates')?.split(',').map(Number).filter((n) => n > 0);
  const seconds = Number(arg('--seconds')) || undefined;
  const figures = await stirFigures({ quick });
  // Signing and verification ran single-threaded in this process; the outbound round is multi-process.
  const outboundSetup = process.argv.includes('--no-outbound')
    ? { skipped: '--no-outbound' }
    : sippAvailable()
      ? await outboundSetupFigures({ quick, ...(rates?.length ? { rates } : {}), ...(seconds ? { seconds } : {}) })
      : { skipped: 'sipp is not installed (Debian: sip-tester)' };
  process.stdout.write(JSON.stringify({ node: process.version, singleThreaded: true, ...figures, outboundSetup }, null, 2) + '\n');
}
