import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { api, callRecord, gatewayEnv, rememberSecret, runCli, startGateway, type RunningGateway } from '../helpers/gateway-process.js';
import { runSipp } from '../helpers/sipp.js';
import { writeRtpPcap } from '../helpers/pcap.js';
import { NativeAgent } from '../helpers/agents.js';

/**
 * Inbound STIR/SHAKEN: a carrier (SIPp) sends INVITEs with Identity headers signed by
 * secsipidx with the gateway's development certificate; tollgate verifies them (RFC 8224),
 * tells the agent in `start`, records the result in the CDR, and with
 * stir.verify.rejectFailed refuses a failed one with 438.
 */
const CALLER = '+12025550123';

async function stirGateway(rejectFailed: boolean): Promise<{ gw: RunningGateway; dataDir: string; admin: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'tollgate-gw-'));
  const env = {
    TOLLGATE_SIP__DIGEST_ALGORITHMS: '[MD5, SHA-256]',
    // The x5u is the gateway's own http:// URL here (no TLS on the test listener).
    TOLLGATE_STIR__VERIFY__ALLOW_HTTP_X5U: 'true',
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
});
