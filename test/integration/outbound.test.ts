import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ROOT, api, callRecord, gatewayEnv, rememberSecret, runCli, startGateway, type RunningGateway } from '../helpers/gateway-process.js';
import { execFileSync } from 'node:child_process';
import { StirVerifier, parseCertificates } from '../../src/stir/index.js';
import { verifyTollgateSignature } from '../../src/keys/request-signature.js';
import { startSippUas } from '../helpers/sipp.js';
import { NativeAgent, PipecatLikeAgent } from '../helpers/agents.js';
import { detectTone, sine } from '../helpers/audio.js';
import { until } from '../../src/testing/wait.js';

describe('outbound calls through a carrier trunk (SIPp as the carrier)', () => {
  let gw: RunningGateway;
  let admin: string;
  let dataDir: string;
  let seq = 0;

  beforeAll(async () => {
    // The shipped rate table, plus a dear test prefix so a small budget runs out in seconds.
    const shipped = readFileSync(resolve(ROOT, 'config/rates.yaml'), 'utf8');
    const rates = join(mkdtempSync(join(tmpdir(), 'tollgate-rates-')), 'rates.yaml');
    writeFileSync(rates, shipped.replace(/^rates:\n/m, 'rates:\n  - { prefix: "+1505", description: test dear prefix, outbound: 3600, increment: "1/1" }\n'));
    // A development STI-CA and SHAKEN certificate in the data dir, so outbound INVITEs are signed.
    dataDir = mkdtempSync(join(tmpdir(), 'tollgate-gw-'));
    // The agents and webhook receivers here listen on 127.0.0.1: agent.url and a key's webhook
    // endpoints are the caller's, and reach loopback only through egress.allow.
    const env = { TOLLGATE_AGENTS__WARNING_BEFORE_END_SEC: '2', TOLLGATE_POLICY__RATE_TABLE_FILE: rates, TOLLGATE_WEBHOOKS__ALLOW_HTTP: 'true', TOLLGATE_EGRESS__ALLOW: '[127.0.0.1/32]' };
    const certs = await runCli(['certs', 'dev'], gatewayEnv({ dataDir, env }));
    expect(certs.code, certs.stderr).toBe(0);
    gw = await startGateway({ dataDir, env });
    const r = await runCli(['keys', 'create', '--name', 'root', '--role', 'admin', '--json'], gw.env);
    admin = JSON.parse(r.stdout).secret;
    rememberSecret(admin);
  });
  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
  });

  const callerId = () => `+1415555${String(2000 + ++seq).slice(-4)}`;

  /** A key that may place calls from its own number. */
  const caller = async (policy: Record<string, unknown> = {}, mode: 'live' | 'test' = 'live') => {
    const from = callerId();
    const k = await api(gw, 'POST', '/v1/keys', {
      auth: admin,
      body: { name: 'agent', mode, scopes: ['calls:outbound', 'calls:read', 'usage:read'], allowedCountries: ['US', 'CA'], callerIds: [from], callsPerSecond: 50, cpsBurst: 50, maxConcurrentCalls: 10, ...policy },
    });
    expect(k.status, k.text).toBe(201);
    rememberSecret(k.body.secret);
    return { id: k.body.key.id as string, secret: k.body.secret as string, from };
  };

  const trunkTo = async (port: number, extra: Record<string, unknown> = {}) => {
    const t = await api(gw, 'POST', '/v1/trunks', { auth: admin, body: { name: `carrier-${port}`, host: '127.0.0.1', port, transport: 'udp', srtp: 'off', prefixes: ['+1'], priority: seq, ...extra } });
    expect(t.status, t.text).toBe(201);
    if (extra.password) rememberSecret(extra.password as string);
    return t.body.trunk.id as string;
  };

  const record = (secret: string, id: string, reached?: (c: Record<string, any>) => boolean) => callRecord(gw, secret, id, reached);

  it('places a call: INVITE to the trunk, answered, ended at the maximum duration by policy; CDR and usage settle', async () => {
    const uas = startSippUas({ ending: 'wait', holdMs: 15_000 });
    const trunk = await trunkTo(uas.port);
    const k = await caller();
    const placed = await api(gw, 'POST', '/v1/calls', { auth: k.secret, body: { to: '+12025550123', from: k.from, target: 'echo', maxDurationSec: 2 } });
    expect(placed.status, placed.text).toBe(201);
    expect(placed.body.call).toMatchObject({ progress: 'trying', maxDurationSec: 2, trunk });
    const id = placed.body.call.id as string;
    const answered = await record(k.secret, id, (c) => c.progress === 'answered' || Boolean(c.endedAt));
    expect(answered.status).toBe('answered');
    const r = await uas.done;
    expect(r.code, r.errors || r.stdout.slice(-1500)).toBe(0);
    const invite = r.messages.split(/-{10,}/).find((m) => m.includes('INVITE sip:'))!;
    expect(invite).toMatch(/^INVITE sip:\+12025550123@127\.0\.0\.1:\d+ SIP\/2\.0/m);
    expect(invite).toContain(`P-Asserted-Identity: <sip:${k.from}@127.0.0.1>`);
    // The INVITE is signed (RFC 8224/8225/8588): secsipidx verifies it with the certificate…
    const identity = /^Identity: (.+)$/m.exec(invite)?.[1]?.trim();
    expect(identity).toMatch(new RegExp(`^[\\w-]+\\.[\\w-]+\\.[\\w-]+;info=<${gw.url}/v1/stir/cert.pem>;alg=ES256;ppt=shaken$`));
    const certFile = join(dataDir, 'stir', 'cert.pem');
    expect(execFileSync('secsipidx', ['-c', '-expire', '60', '-p', certFile, '-identity', identity!], { encoding: 'utf8' })).toMatch(/^ok$/m);
    // …and tollgate's own verifier accepts it with attestation A, fetching the x5u tollgate serves.
    const served = await fetch(`${gw.url}/v1/stir/cert.pem`);
    expect(served.headers.get('content-type')).toContain('application/pem-certificate-chain');
    const pem = await served.text();
    const verifier = new StirVerifier({ trustAnchors: parseCertificates(readFileSync(join(dataDir, 'stir', 'ca.pem'), 'utf8')), fetcher: () => Promise.resolve(Buffer.from(pem)), maxAgeSec: 60, fetchTimeoutMs: 1000, cacheTtlSec: 60, cacheMaxEntries: 10, allowHttpX5u: true });
    expect(await verifier.verify({ identity: identity!, from: k.from, to: '+12025550123' })).toMatchObject({ verstat: 'TN-Validation-Passed', attest: 'A' });
    expect(await verifier.verify({ identity: identity!, from: k.from, to: '+12025550124' })).toMatchObject({ verstat: 'TN-Validation-Failed' });
    const done = await record(k.secret, id);
    expect(done).toMatchObject({ status: 'ended', endReason: 'max-duration', endedBy: 'policy', direction: 'outbound', progress: 'ended', details: { trunk } });
    expect(done.billableSeconds).toBeGreaterThanOrEqual(1.9);
    expect(done.billableSeconds).toBeLessThan(3);
    const usage = await api(gw, 'GET', '/v1/usage', { auth: k.secret });
    expect(usage.body.totals.calls).toBe(1);
  });

  it('every policy refusal is an HTTP error with its code, audited, and nothing reaches the carrier', async () => {
    const uas = startSippUas({ ending: 'wait', holdMs: 3000, timeoutSec: 4 });
    await trunkTo(uas.port, { prefixes: ['+1202555'] });
    const k = await caller({ callsPerSecond: 1, cpsBurst: 1 });
    const post = (body: Record<string, unknown>, secret = k.secret) => api(gw, 'POST', '/v1/calls', { auth: secret, body: { from: k.from, target: 'echo', ...body } });
    const uk = await post({ to: '+442071838750' });
    expect(uk.body?.error?.code, uk.text).toBe('DESTINATION_NOT_ALLOWED');
    expect((await post({ to: '+19005550100' })).body.error.code).toBe('DESTINATION_BLOCKED');
    expect((await post({ to: '+12025550123', from: '+12125550000' })).body.error.code).toBe('CALLER_ID_NOT_OWNED');
    expect((await post({ to: 'not-a-number' })).status).toBe(400);
    expect((await post({ to: '+12025550123', record: true })).body.error.code).toBe('RECORDING_UNAVAILABLE');
    const noScope = await caller({ scopes: ['calls:read'] });
    expect((await post({ to: '+12025550123', from: noScope.from }, noScope.secret)).body.error.code).toBe('SCOPE_NOT_GRANTED');
    const broke = await caller({ budget: { amount: 0, period: 'month', currency: 'USD' } });
    const b = await post({ to: '+12025550123', from: broke.from, maxDurationSec: 600 }, broke.secret);
    expect([b.status, b.body.error.code]).toEqual([402, 'BUDGET_EXHAUSTED']);
    const r = await uas.done;
    // SIPp saw no INVITE at all (it times out waiting for one).
    expect(r.messages).not.toContain('INVITE sip:');
    const audit = await api(gw, 'GET', `/v1/audit?target=${k.id}&limit=20`, { auth: admin });
    expect(audit.body.entries.filter((e: { action: string }) => e.action === 'call.refused').length).toBeGreaterThanOrEqual(3);
  });

  it('CPS and concurrency limits refuse with 429 and Retry-After', async () => {
    // One call per 10 s: the second, placed right after, is refused however slow the machine.
    const k = await caller({ callsPerSecond: 0.1, cpsBurst: 1, maxConcurrentCalls: 1 }, 'test');
    const first = await api(gw, 'POST', '/v1/calls', { auth: k.secret, body: { to: '+12025550408', from: k.from, target: 'echo' } });
    expect(first.status, first.text).toBe(201);
    const fast = await api(gw, 'POST', '/v1/calls', { auth: k.secret, body: { to: '+12025550408', from: k.from, target: 'echo' } });
    expect([fast.status, fast.body.error.code]).toEqual([429, 'RATE_LIMITED']);
    expect(Number(fast.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // Plenty of CPS, one call at a time: the second call waits for no bucket and finds the first still up.
    const k2 = await caller({ callsPerSecond: 100, cpsBurst: 100, maxConcurrentCalls: 1 }, 'test');
    const up = await api(gw, 'POST', '/v1/calls', { auth: k2.secret, body: { to: '+12025550408', from: k2.from, target: 'echo' } });
    expect(up.status, up.text).toBe(201);
    const busy = await api(gw, 'POST', '/v1/calls', { auth: k2.secret, body: { to: '+12025550408', from: k2.from, target: 'echo' } });
    expect([busy.status, busy.body.error.code]).toEqual([429, 'CONCURRENCY_LIMITED']);
    expect((await api(gw, 'DELETE', `/v1/calls/${up.body.call.id}`, { auth: k2.secret })).status).toBe(204);
    expect((await api(gw, 'DELETE', `/v1/calls/${first.body.call.id}`, { auth: k.secret })).status).toBe(204);
    const ended = await record(k.secret, first.body.call.id);
    expect(ended).toMatchObject({ status: 'failed', endReason: 'api-hangup', endedBy: 'api', details: { trunk: 'test-sink' } });
    expect((await api(gw, 'DELETE', `/v1/calls/${first.body.call.id}`, { auth: k.secret })).status).toBe(404);
  });

  it('busy and carrier hang-up are told apart in the CDR; digest towards the carrier works', async () => {
    const busyUas = startSippUas({ ending: 486 });
    const busyTrunk = await trunkTo(busyUas.port, { prefixes: ['+1303'] });
    // This key's calls are signed with attestation C whatever the number (a per-key override).
    const k = await caller({ attestation: 'C' });
    const busy = await api(gw, 'POST', '/v1/calls', { auth: k.secret, body: { to: '+13035550100', from: k.from, target: 'echo' } });
    expect(busy.status, busy.text).toBe(201);
    expect(await record(k.secret, busy.body.call.id)).toMatchObject({ status: 'failed', endReason: 'busy', endedBy: 'callee', progress: 'busy', details: { sipStatus: 486, trunk: busyTrunk } });
    const busyRun = await busyUas.done;
    expect(busyRun.code).toBe(0);
    const jws = /^Identity: ([^;]+);/m.exec(busyRun.messages)?.[1];
    expect(JSON.parse(Buffer.from(jws!.split('.')[1]!, 'base64url').toString())).toMatchObject({ attest: 'C', orig: { tn: k.from.slice(1) }, dest: { tn: ['13035550100'] } });

    const password = 'carrier-secret-0123456789';
    const authUas = startSippUas({ ending: 'bye', holdMs: 1000, auth: { username: 'tollgate', password } });
    await trunkTo(authUas.port, { prefixes: ['+1404'], username: 'tollgate', password });
    const placed = await api(gw, 'POST', '/v1/calls', { auth: k.secret, body: { to: '+14045550100', from: k.from, target: 'echo' } });
    expect(placed.status, placed.text).toBe(201);
    const r = await authUas.done;
    expect(r.code, r.errors || r.stdout.slice(-1500)).toBe(0);
    expect(r.messages).toMatch(/Authorization: Digest username="tollgate"/);
    expect(await record(k.secret, placed.body.call.id)).toMatchObject({ status: 'ended', endReason: 'remote-bye', endedBy: 'callee' });
    // The trunk's password is never shown.
    const trunks = await api(gw, 'GET', '/v1/trunks', { auth: admin });
    expect(trunks.text).not.toContain(password);
    expect(trunks.body.trunks.find((t: { prefixes: string[] }) => t.prefixes.includes('+1404'))).toMatchObject({ hasPassword: true, username: 'tollgate' });
  });

  it('a test-mode key reaches the built-in test sink; an agent placed on the call hears itself (the sink echoes) and hangs up by REST', async () => {
    const server = await PipecatLikeAgent.listen();
    try {
      const k = await caller({}, 'test');
      const placed = await api(gw, 'POST', '/v1/calls', { auth: k.secret, body: { to: '+12025550123', from: k.from, agent: { url: `${server.url}/outbound`, parameters: { campaign: 'renewals' } } } });
      expect(placed.status, placed.text).toBe(201);
      expect(placed.body.call.trunk).toBe('test-sink');
      const agent = await server.agent(0, 8000);
      const start = await agent.waitForStart();
      expect(start).toMatchObject({ callSid: placed.body.call.id, customParameters: { campaign: 'renewals', from_number: k.from, to_number: '+12025550123' } });
      await agent.speak(sine(1000, 8000, 1500), { chunkMs: 40 });
      await agent.waitForAudio(400);
      // The sink echoed the agent's 1000 Hz back through the call.
      expect(detectTone(agent.inboundPcm(), 8000, 1000).present).toBe(true);
      const hang = await agent.hangupViaRest(gw.url, agent.accountSid, k.secret);
      expect(hang.status, hang.text).toBe(200);
      await agent.waitForEvent('stop', 3000);
      expect(await record(k.secret, placed.body.call.id)).toMatchObject({ status: 'ended', endReason: 'agent-hangup', endedBy: 'agent' });
    } finally {
      await server.close();
    }
  });

  it('an agent dials from its own stream (native, 16 kHz): dialing, then start when the test sink answers; it hears its own voice back', async () => {
    const k = await caller({}, 'test');
    const agent = await new NativeAgent().dial(`${gw.url.replace('http', 'ws')}/v1/stream`, { headers: { authorization: `Bearer ${k.secret}` } });
    try {
      agent.send({ type: 'dial', to: '+12025550123', from: k.from, maxDurationSec: 30, audio: { encoding: 'L16', sampleRate: 16000 } });
      const dialing = await agent.waitForEvent('dialing', 5000);
      const start = await agent.waitForStart(5000);
      expect(start).toMatchObject({ callId: dialing.callId, direction: 'outbound', from: k.from, to: '+12025550123', audio: { toAgent: { encoding: 'L16', sampleRate: 16000 } } });
      await agent.speak(sine(1000, 16000, 1000), { chunkMs: 20 });
      await agent.waitForFrames(40, 3000);
      expect(detectTone(agent.inboundPcm(), 16000, 1000).present).toBe(true);
      expect(agent.badFrameSizes).toBe(0);
      agent.hangup();
      expect((await agent.waitForEvent('stop', 3000)).reason).toBe('agent-hangup');
      expect(await record(k.secret, start.callId)).toMatchObject({ status: 'ended', endedBy: 'agent', direction: 'outbound' });
    } finally {
      await agent.close();
    }
  });

  it('a dial refused by policy closes the stream with the refusal; a busy callee ends it with stop', async () => {
    const k = await caller({}, 'test');
    const url = `${gw.url.replace('http', 'ws')}/v1/stream`;
    const refused = await new NativeAgent().dial(url, { headers: { authorization: `Bearer ${k.secret}` } });
    refused.send({ type: 'dial', to: '+442071838750', from: k.from });
    expect((await refused.waitForClose()).code).toBe(4403);
    expect(refused.errors[0]?.message).toMatch(/DESTINATION_NOT_ALLOWED/);
    const busy = await new NativeAgent().dial(url, { headers: { authorization: `Bearer ${k.secret}` } });
    busy.send({ type: 'dial', to: '+12025550486', from: k.from });
    await busy.waitForEvent('dialing', 5000);
    expect((await busy.waitForEvent('stop', 5000)).reason).toBe('busy');
    expect((await busy.waitForClose()).code).toBe(1000);
  });

  it('a call the budget covers only partly is admitted for what it covers, warned, and hung up within 1 s of the limit', async () => {
    const server = await PipecatLikeAgent.listen();
    try {
      // 600 at 3600/min (1 per second) covers 10 s of the 60 asked.
      const k = await caller({ budget: { amount: 600, period: 'month' } }, 'test');
      const placed = await api(gw, 'POST', '/v1/calls', { auth: k.secret, body: { to: '+15055550123', from: k.from, maxDurationSec: 60, agent: { url: `${server.url}/budget` } } });
      expect(placed.status, placed.text).toBe(201);
      expect(placed.body.call.maxDurationSec).toBe(10);
      const agent = await server.agent(0, 8000);
      await agent.waitForStart();
      const warning = await agent.waitForEvent('warning', 12_000);
      expect(warning).toMatchObject({ warning: { reason: 'budget', remainingMs: 2000 } });
      await agent.waitForEvent('stop', 5000);
      const done = await record(k.secret, placed.body.call.id);
      expect(done).toMatchObject({ status: 'ended', endReason: 'budget-exhausted', endedBy: 'policy' });
      expect(done.billableSeconds).toBeGreaterThan(9);
      expect(done.billableSeconds).toBeLessThanOrEqual(11);
      // All of it was spent: the next call is refused before anything is sent.
      const next = await api(gw, 'POST', '/v1/calls', { auth: k.secret, body: { to: '+15055550123', from: k.from, target: 'echo' } });
      expect([next.status, next.body.error.code]).toEqual([402, 'BUDGET_EXHAUSTED']);
    } finally {
      await server.close();
    }
  });

  it('the key\'s webhook endpoint receives call.started, call.answered and call.ended, signed with its signing secret', async () => {
    const { createServer } = await import('node:http');
    const got: { body: string; signature: string; type: string }[] = [];
    const hook = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        got.push({ body, signature: String(req.headers['tollgate-signature']), type: String(req.headers['tollgate-event']) });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()));
    try {
      const k = await caller({}, 'test');
      const endpoint = await api(gw, 'POST', '/v1/webhooks', { auth: k.secret, body: { url: `http://127.0.0.1:${(hook.address() as { port: number }).port}/events`, events: ['call.started', 'call.answered', 'call.ended'] } });
      expect(endpoint.status, endpoint.text).toBe(201);
      const placed = await api(gw, 'POST', '/v1/calls', { auth: k.secret, body: { to: '+12025550123', from: k.from, target: 'echo', maxDurationSec: 1 } });
      expect(placed.status, placed.text).toBe(201);
      await until('3 webhook events', () => got.length >= 3, 30_000);
      expect(got.map((g) => g.type)).toEqual(['call.started', 'call.answered', 'call.ended']);
      const secret = (await api(gw, 'GET', `/v1/keys/${k.id}/signing-secret`, { auth: k.secret })).body.signingSecret as string;
      rememberSecret(secret);
      for (const g of got) expect(verifyTollgateSignature(secret, g.signature, g.body)).toBe(true);
      const ended = JSON.parse(got[2]!.body);
      expect(ended).toMatchObject({ type: 'call.ended', keyId: k.id, data: { callId: placed.body.call.id, direction: 'outbound', endReason: 'max-duration', endedBy: 'policy' } });
    } finally {
      await new Promise<void>((r) => hook.close(() => r()));
    }
  });
});
