import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, sign as signBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { api, callRecord, gatewayEnv, rememberSecret, runCli, startGateway, type RunningGateway } from '../helpers/gateway-process.js';
import { runSipp } from '../helpers/sipp.js';
import { writeRtpPcap } from '../helpers/pcap.js';
import { NativeAgent } from '../helpers/agents.js';
import { RawUac } from '../helpers/raw-uac.js';

/**
 * Inbound STIR/SHAKEN: a carrier (SIPp) sends INVITEs with Identity headers signed by
 * secsipidx with the gateway's development certificate; tollgate verifies them (RFC 8224),
 * tells the agent in `start`, records the result in the CDR, and with
 * stir.verify.rejectFailed refuses a failed one with the RFC 8224 response of its failure
 * (403 Stale Date, 436, 437, 438). Every Identity header of an INVITE is examined: a foreign or
 * broken one in front of a valid one does not fail the call.
 */
const CALLER = '+12025550123';

async function stirGateway(rejectFailed: boolean): Promise<{ gw: RunningGateway; dataDir: string; admin: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'tollgate-gw-'));
  const env = {
    TOLLGATE_SIP__DIGEST_ALGORITHMS: '[MD5, SHA-256]',
    // The x5u is the gateway's own http:// URL here (no TLS on the test listener).
    TOLLGATE_STIR__VERIFY__ALLOW_HTTP_X5U: 'true',
    // ...on 127.0.0.1, which an x5u (always the caller's URL) reaches only through egress.allow.
    TOLLGATE_EGRESS__ALLOW: '[127.0.0.1/32]',
    TOLLGATE_STIR__VERIFY__REJECT_FAILED: String(rejectFailed),
  };
  const certs = await runCli(['certs', 'dev'], gatewayEnv({ dataDir, env }));
  expect(certs.code, certs.stderr).toBe(0);
  const gw = await startGateway({ dataDir, env });
  const r = await runCli(['keys', 'create', '--name', 'root', '--role', 'admin', '--json'], gw.env);
  const admin = JSON.parse(r.stdout).secret as string;
  rememberSecret(admin);
  return { gw, dataDir, admin };
}

/** An Identity header for orig → dest, signed by secsipidx with the gateway's dev key. */
function sign(dataDir: string, gw: RunningGateway, orig: string, dest: string): string {
  return execFileSync('secsipidx', ['-S', '-k', join(dataDir, 'stir', 'key.pem'), '-x5u', `${gw.url}/v1/stir/cert.pem`, '-a', 'A', '-o', orig.slice(1), '-d', dest.slice(1)], { encoding: 'utf8' }).trim();
}

describe('inbound Identity verification', () => {
  let g: Awaited<ReturnType<typeof stirGateway>>;
  let pcap: string;
  beforeAll(async () => {
    g = await stirGateway(false);
    pcap = writeRtpPcap(join(mkdtempSync(join(tmpdir(), 'tollgate-pcap-')), 'caller.pcap'), { seconds: 1, toneHz: 440 }).file;
  });
  afterAll(async () => {
    expect(await g?.gw.stop()).toBe(0);
  });

  const route = async (number: string, server: { url: string }) => {
    const k = await api(g.gw, 'POST', '/v1/keys', { auth: g.admin, body: { name: 'trunk', scopes: ['calls:inbound', 'calls:read'], callsPerSecond: 50, cpsBurst: 50, maxConcurrentCalls: 10 } });
    rememberSecret(k.body.secret);
    const n = await api(g.gw, 'POST', '/v1/numbers', { auth: g.admin, body: { number, target: 'agent', keyId: k.body.key.id, agent: { url: `${server.url}/bot`, protocol: 'native', sampleRate: 8000 } } });
    expect(n.status, n.text).toBe(201);
    return { id: k.body.key.id as string, secret: k.body.secret as string };
  };

  it('a valid Identity (signed by secsipidx) reaches the agent as TN-Validation-Passed; a mismatched one as Failed; none as No-TN-Validation', async () => {
    const server = await NativeAgent.listen();
    try {
      const number = '+16285550101';
      const k = await route(number, server);
      const cases: [string, (readonly [string, string])[], string][] = [
        ['TN-Validation-Passed', [['P-Asserted-Identity', `<sip:${CALLER}@127.0.0.1>`], ['Identity', sign(g.dataDir, g.gw, CALLER, number)]], 'A'],
        // Signed for another calling number than the one asserted.
        ['TN-Validation-Failed', [['P-Asserted-Identity', `<sip:+12025550199@127.0.0.1>`], ['Identity', sign(g.dataDir, g.gw, CALLER, number)]], ''],
        ['No-TN-Validation', [], ''],
      ];
      for (const [i, [verstat, headers, attest]] of cases.entries()) {
        const sipp = runSipp({ scenario: 'uac-auth-pcap', target: g.gw.sip.udp!, transport: 'udp', dialled: number, username: k.id, password: k.secret, pcapFile: pcap, holdMs: 800, headers });
        const agent = await server.agent(i, 8000);
        const start = await agent.waitForStart();
        expect(start.identity).toMatchObject({ verstat });
        const r = await sipp;
        expect(r.code, r.errors || r.stdout.slice(-1500)).toBe(0);
        const rec = await callRecord(g.gw, k.secret, start.callId);
        expect(rec.details.identity).toMatchObject({ verstat, ...(attest ? { attest } : {}) });
      }
    } finally {
      await server.close();
    }
  });
});

/** A PASSporT crafted with node:crypto (to break one rule at a time), signed with `keyFile`. */
function craft(keyFile: string, x5u: string, claims: Record<string, unknown>, opts: { ppt?: string } = {}): string {
  const ppt = opts.ppt ?? 'shaken';
  const h = Buffer.from(JSON.stringify({ alg: 'ES256', ppt, typ: 'passport', x5u })).toString('base64url');
  const c = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const sig = signBytes('sha256', Buffer.from(`${h}.${c}`), { key: createPrivateKey(readFileSync(keyFile)), dsaEncoding: 'ieee-p1363' }).toString('base64url');
  return `${h}.${c}.${sig};info=<${x5u}>;alg=ES256;ppt=${ppt}`;
}

describe('stir.verify.rejectFailed', () => {
  let g: Awaited<ReturnType<typeof stirGateway>>;
  beforeAll(async () => {
    g = await stirGateway(true);
  });
  afterAll(async () => {
    expect(await g?.gw.stop()).toBe(0);
  });

  it('refuses a call whose Identity fails with 438 and records why; a valid one is answered', async () => {
    const number = '+16285550102';
    const k = await api(g.gw, 'POST', '/v1/keys', { auth: g.admin, body: { name: 'trunk', scopes: ['calls:inbound', 'calls:read'], callsPerSecond: 50, cpsBurst: 50 } });
    rememberSecret(k.body.secret);
    await api(g.gw, 'POST', '/v1/numbers', { auth: g.admin, body: { number, target: 'echo', keyId: k.body.key.id } });
    const good = sign(g.dataDir, g.gw, CALLER, number);
    // Tampered: the signature no longer matches the claims.
    const [h, p, s] = good.split(';')[0]!.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    claims.orig.tn = '12025550100';
    const tampered = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}${good.slice(good.indexOf(';'))}`;
    const call = (identity: string, expect: number) => runSipp({ scenario: 'uac-auth-expect', expect, target: g.gw.sip.udp!, transport: 'udp', dialled: number, username: k.body.key.id, password: k.body.secret, headers: [['P-Asserted-Identity', `<sip:${CALLER}@127.0.0.1>`], ['Identity', identity]] });
    const refused = await call(tampered, 438);
    expect(refused.code, refused.errors || refused.stdout.slice(-1500)).toBe(0);
    const calls = await api(g.gw, 'GET', '/v1/calls', { auth: k.body.secret });
    expect(calls.body.calls[0]).toMatchObject({ status: 'failed', endReason: 'identity-invalid', details: { identity: { verstat: 'TN-Validation-Failed' } } });
    const answered = await call(good, 200);
    expect(answered.code, answered.errors || answered.stdout.slice(-1500)).toBe(0);
  });

  describe('with RawUac: every Identity header, and the RFC 8224 response of each failure', () => {
    const number = '+16285550103';
    let k: { id: string; secret: string };
    let uac: RawUac;
    let foreign: Server;
    let foreignUrl: string;
    let otherPki: string;
    beforeAll(async () => {
      const key = await api(g.gw, 'POST', '/v1/keys', { auth: g.admin, body: { name: 'trunk', scopes: ['calls:inbound', 'calls:read'], callsPerSecond: 50, cpsBurst: 50, maxConcurrentCalls: 10 } });
      rememberSecret(key.body.secret);
      k = { id: key.body.key.id, secret: key.body.secret };
      await api(g.gw, 'POST', '/v1/numbers', { auth: g.admin, body: { number, target: 'echo', keyId: k.id } });
      uac = await RawUac.open({ transport: 'udp', server: g.gw.sip.udp! });
      // A certificate from a CA the gateway does not trust, served at an x5u of its own.
      otherPki = mkdtempSync(join(tmpdir(), 'tollgate-other-pki-'));
      const certs = await runCli(['certs', 'dev', '--dir', otherPki], g.gw.env);
      expect(certs.code, certs.stderr).toBe(0);
      const pem = readFileSync(join(otherPki, 'cert.pem'));
      foreign = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/x-pem-file' }).end(pem));
      await new Promise<void>((res) => foreign.listen(0, '127.0.0.1', () => res()));
      foreignUrl = `http://127.0.0.1:${(foreign.address() as { port: number }).port}/cert.pem`;
    });
    afterAll(async () => {
      await uac?.close();
      await new Promise<void>((res) => (foreign ? foreign.close(() => res()) : res()));
    });

    const claims = (over: Record<string, unknown> = {}) => ({ attest: 'A', dest: { tn: [number.slice(1)] }, iat: Math.floor(Date.now() / 1000), orig: { tn: CALLER.slice(1) }, origid: 'c1b2a3d4-0000-4000-8000-000000000042', ...over });
    const devKey = () => join(g.dataDir, 'stir', 'key.pem');
    const ownX5u = () => `${g.gw.url}/v1/stir/cert.pem`;
    const invite = async (identities: string[]) => {
      const call = uac.call({ dialled: number, credentials: { username: k.id, password: k.secret }, headers: [['P-Asserted-Identity', `<sip:${CALLER}@127.0.0.1>`], ...identities.map((i) => ['Identity', i] as const)] });
      await call.start();
      const res = await call.finalResponse(10_000);
      if (res.status === 200) {
        call.ack();
        await call.bye();
      }
      return { status: res.status, reason: res.reason, reasonHeader: res.headers.get('Reason') ?? '' };
    };

    it('two Identity headers, the first not SHAKEN or broken, the second valid (secsipidx): the call is answered', async () => {
      const good = sign(g.dataDir, g.gw, CALLER, number);
      const div = craft(devKey(), ownX5u(), claims(), { ppt: 'div' });
      const broken = good.replace(/^[^.]+\.[^.]+\./, (m) => m.slice(0, -2) + 'x.');
      for (const first of [div, broken, 'garbage;info=<https://x.example/c.pem>']) {
        expect((await invite([first, good])).status).toBe(200);
      }
      const calls = await api(g.gw, 'GET', '/v1/calls', { auth: k.secret });
      expect(calls.body.calls[0].details.identity).toMatchObject({ verstat: 'TN-Validation-Passed', attest: 'A', header: 2, examined: 2 });
      // The same headers in the other order pass too; the valid one alone as well.
      expect((await invite([good, div])).status).toBe(200);
    });

    it('each failure class is refused with its RFC 8224 response and refusal code', async () => {
      const cases: [string, string[], number, string, string][] = [
        ['stale', [craft(devKey(), ownX5u(), claims({ iat: Math.floor(Date.now() / 1000) - 600 }))], 403, 'Stale Date', 'IDENTITY_STALE'],
        ['x5u-unavailable', [craft(devKey(), `${g.gw.url}/v1/stir/missing.pem`, claims())], 436, 'Bad Identity Info', 'X5U_UNAVAILABLE'],
        ['untrusted-certificate', [craft(join(otherPki, 'key.pem'), foreignUrl, claims())], 437, 'Unsupported Credential', 'CREDENTIAL_UNSUPPORTED'],
        ['unsupported (only a non-SHAKEN header)', [craft(devKey(), ownX5u(), claims(), { ppt: 'div' })], 437, 'Unsupported Credential', 'CREDENTIAL_UNSUPPORTED'],
        ['malformed', ['garbage;info=<https://x.example/c.pem>'], 438, 'Invalid Identity Header', 'IDENTITY_INVALID'],
        ['tn-mismatch', [sign(g.dataDir, g.gw, '+12025550100', number)], 438, 'Invalid Identity Header', 'IDENTITY_INVALID'],
        ['bad-signature', [craft(join(otherPki, 'key.pem'), ownX5u(), claims())], 438, 'Invalid Identity Header', 'IDENTITY_INVALID'],
      ];
      for (const [label, identities, status, reason, code] of cases) {
        const r = await invite(identities);
        expect([label, r.status, r.reason]).toEqual([label, status, reason]);
        expect(r.reasonHeader, label).toBe(`SIP;cause=${status};text="${code}"`);
      }
      // With several failing headers, the first SHAKEN header's failure decides.
      const stale = craft(devKey(), ownX5u(), claims({ iat: Math.floor(Date.now() / 1000) - 600 }));
      const r = await invite([craft(devKey(), ownX5u(), claims(), { ppt: 'div' }), stale, 'garbage;info=<https://x.example/c.pem>']);
      expect([r.status, r.reason]).toEqual([403, 'Stale Date']);
    });
  });
});
