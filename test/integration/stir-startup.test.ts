import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { api, gatewayEnv, rememberSecret, runCli, startGateway, type CliResult } from '../helpers/gateway-process.js';

/**
 * Every STIR/SHAKEN signing or trust misconfiguration stops `tollgate serve` with exit 2 and
 * CONFIG_INVALID before any listener binds (docs/stir.md#startup). Each case starts the real
 * CLI with fixed ports that the test itself holds: a gateway that got as far as binding would
 * fail on those ports instead ("cannot listen"), so the STIR message proves the order. After
 * the exit the ports are bound again to show nothing was left behind.
 */

/** A port free for both TCP and UDP on 127.0.0.1. */
async function freePort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const srv = createServer();
    const port = await new Promise<number>((res, rej) => {
      srv.once('error', rej);
      srv.listen(0, '127.0.0.1', () => res((srv.address() as { port: number }).port));
    });
    await new Promise<void>((res) => srv.close(() => res()));
    if (await canBindUdp(port)) return port;
  }
  throw new Error('no port free for both TCP and UDP');
}

function canBindUdp(port: number): Promise<boolean> {
  const sock = createSocket('udp4');
  return new Promise((res) => {
    sock.once('error', () => res(false));
    sock.bind(port, '127.0.0.1', () => sock.close(() => res(true)));
  });
}

function canBindTcp(port: number): Promise<boolean> {
  const srv = createServer();
  return new Promise((res) => {
    srv.once('error', () => res(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => res(true)));
  });
}

/** Holds `port` on TCP and UDP until release() (nothing else can bind it meanwhile). */
async function hold(port: number): Promise<() => Promise<void>> {
  const srv = createServer();
  await new Promise<void>((res, rej) => {
    srv.once('error', rej);
    srv.listen(port, '127.0.0.1', () => res());
  });
  const sock = createSocket('udp4');
  await new Promise<void>((res, rej) => {
    sock.once('error', rej);
    sock.bind(port, '127.0.0.1', () => res());
  });
  return async () => {
    await new Promise<void>((res) => srv.close(() => res()));
    await new Promise<void>((res) => sock.close(() => res()));
  };
}

const openssl = (args: string[], cwd?: string) => execFileSync('openssl', args, { stdio: 'pipe', ...(cwd ? { cwd } : {}) });

describe('STIR/SHAKEN misconfiguration stops serve before any listener binds', () => {
  let root: string;
  let pki: string;
  let other: string;
  let expired: { key: string; cert: string };
  let plain: { key: string; cert: string };

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'tollgate-stir-startup-'));
    pki = join(root, 'pki');
    other = join(root, 'other');
    for (const dir of [pki, other]) {
      const r = await runCli(['certs', 'dev', '--dir', dir], gatewayEnv({ dataDir: join(root, 'data-certs') }));
      expect(r.code, r.stderr).toBe(0);
    }
    // A SHAKEN certificate (TNAuthList and all) that expired in 2020, from the same CA.
    const ca = join(root, 'ca');
    mkdirSync(ca);
    writeFileSync(join(ca, 'index.txt'), '');
    writeFileSync(join(ca, 'serial'), '1000\n');
    writeFileSync(join(ca, 'ca.cnf'), [
      '[ca]', 'default_ca = dev',
      '[dev]', `dir = ${ca}`, `database = ${join(ca, 'index.txt')}`, `new_certs_dir = ${ca}`, `serial = ${join(ca, 'serial')}`,
      'default_md = sha256', 'policy = any', 'unique_subject = no',
      '[any]', 'commonName = supplied',
      '[shaken]', 'basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature',
      '1.3.6.1.5.5.7.1.26 = ASN1:SEQUENCE:tnauthlist',
      '[tnauthlist]', 'spc = EXPLICIT:0,IA5STRING:1234',
      '[plain]', 'basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature', '',
    ].join('\n'));
    const leaf = (name: string, ext: string, dates: string[]) => {
      const key = join(root, `${name}-key.pem`);
      const cert = join(root, `${name}.pem`);
      openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key]);
      openssl(['req', '-new', '-key', key, '-subj', `/CN=${name}`, '-out', join(root, `${name}.csr`)]);
      openssl(['ca', '-batch', '-notext', '-config', join(ca, 'ca.cnf'), '-cert', join(pki, 'ca.pem'), '-keyfile', join(pki, 'ca-key.pem'), '-extensions', ext, '-in', join(root, `${name}.csr`), '-out', cert, ...dates]);
      return { key, cert };
    };
    expired = leaf('expired', 'shaken', ['-startdate', '20200101000000Z', '-enddate', '20200201000000Z']);
    plain = leaf('plain', 'plain', ['-days', '30']);
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  /** Starts serve with `stir` settings on held ports; returns its result once it exits. */
  async function serveWith(stir: Record<string, string>): Promise<CliResult & { httpPort: number; sipPort: number }> {
    const [httpPort, sipPort] = [await freePort(), await freePort()];
    const env = gatewayEnv({
      env: {
        TOLLGATE_SIP__TRANSPORTS: '[udp, tcp]',
        TOLLGATE_SIP__UDP_PORT: String(sipPort),
        TOLLGATE_SIP__TCP_PORT: String(sipPort),
        TOLLGATE_MEDIA__WORKERS: '1',
        ...stir,
      },
    });
    const release = await hold(httpPort);
    const releaseSip = await hold(sipPort);
    let r: CliResult;
    try {
      // Bounded: a start that hangs (as an unreadable trust file once made it) fails here.
      r = await runCli(['serve', '--port', String(httpPort), '--host', '127.0.0.1'], env, { timeoutMs: 30_000 });
    } finally {
      await release();
      await releaseSip();
    }
    // Nothing of the gateway is left holding them.
    expect(await canBindTcp(httpPort)).toBe(true);
    expect(await canBindTcp(sipPort)).toBe(true);
    expect(await canBindUdp(sipPort)).toBe(true);
    return { ...r, httpPort, sipPort };
  }

  const refusedBeforeBinding = (r: CliResult, message: RegExp) => {
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/tollgate: CONFIG_INVALID: /);
    expect(r.stderr).toMatch(message);
    // Had it reached a listener, the held ports would have been the error.
    expect(r.stderr).not.toContain('cannot listen');
    expect(r.stdout).not.toContain('SIP listening');
    expect(r.stdout).not.toContain('tollgate listening');
  };

  it('an expired signing certificate', async () => {
    refusedBeforeBinding(await serveWith({ TOLLGATE_STIR__KEY_FILE: expired.key, TOLLGATE_STIR__CERT_FILE: expired.cert }), /stir\.certFile: .*expired\.pem expired on/);
  });

  it('a certificate that does not belong to the key', async () => {
    refusedBeforeBinding(await serveWith({ TOLLGATE_STIR__KEY_FILE: join(other, 'key.pem'), TOLLGATE_STIR__CERT_FILE: join(pki, 'cert.pem') }), /does not belong to the key/);
  });

  it('a missing key file', async () => {
    refusedBeforeBinding(await serveWith({ TOLLGATE_STIR__KEY_FILE: join(root, 'nope.pem'), TOLLGATE_STIR__CERT_FILE: join(pki, 'cert.pem') }), /stir\.keyFile: cannot read .*nope\.pem \(ENOENT\)/);
  });

  it('a CA certificate as the signer', async () => {
    refusedBeforeBinding(await serveWith({ TOLLGATE_STIR__KEY_FILE: join(pki, 'ca-key.pem'), TOLLGATE_STIR__CERT_FILE: join(pki, 'ca.pem') }), /is a CA certificate/);
  });

  it('a certificate without TNAuthList', async () => {
    refusedBeforeBinding(await serveWith({ TOLLGATE_STIR__KEY_FILE: plain.key, TOLLGATE_STIR__CERT_FILE: plain.cert }), /has no TNAuthList extension/);
  });

  it('an unreadable trust file: a directory, and a FIFO nobody writes (which used to hang the start)', async () => {
    refusedBeforeBinding(await serveWith({ TOLLGATE_STIR__VERIFY__TRUST_FILE: pki }), /stir\.verify\.trustFile: cannot read .* \(not a regular file\)/);
    const fifo = join(root, 'trust.fifo');
    execFileSync('mkfifo', [fifo]);
    refusedBeforeBinding(await serveWith({ TOLLGATE_STIR__VERIFY__TRUST_FILE: fifo }), /stir\.verify\.trustFile: cannot read .*trust\.fifo \(not a regular file\)/);
  });

  it('a trust file that holds no certificate', async () => {
    const junk = join(root, 'junk.pem');
    writeFileSync(junk, 'not a certificate\n');
    refusedBeforeBinding(await serveWith({ TOLLGATE_STIR__VERIFY__TRUST_FILE: junk }), /stir\.verify\.trustFile: .* holds no readable PEM certificate/);
  });

  it('control: a good certificate starts (and warns that its default x5u is plain http)', async () => {
    // Not through serveWith: a gateway that starts keeps running; this one is stopped by SIGTERM.
    const gw = await startGateway({ env: { TOLLGATE_STIR__KEY_FILE: join(pki, 'key.pem'), TOLLGATE_STIR__CERT_FILE: join(pki, 'cert.pem'), TOLLGATE_MEDIA__WORKERS: '1' } });
    try {
      expect(gw.logs()).toContain('STIR signing on');
      expect(gw.logs()).toContain('STIR x5u is plain http');
      expect((await fetch(`${gw.url}/v1/stir/cert.pem`)).status).toBe(200);
      const k = await runCli(['keys', 'create', '--name', 'root', '--role', 'admin', '--json'], gw.env);
      const secret = JSON.parse(k.stdout).secret as string;
      rememberSecret(secret);
      expect((await api(gw, 'GET', '/readyz', { auth: secret })).body).toEqual({ status: 'ready' });
    } finally {
      expect(await gw.stop()).toBe(0);
    }
  });
});
