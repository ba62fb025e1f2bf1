/**
 * npm run bench:sip — signalling load with digest auth over UDP, SIPp as the load generator.
 * For each offered rate: calls attempted/successful/failed, and the gateway process's CPU
 * (user+system from /proc/PID/stat, all threads) per 100 CPS. Target: ≤ 10 % of one core
 * per 100 CPS, 0 failed calls. Every call: INVITE → 407 → INVITE with credentials → policy →
 * media port on a worker → 200 with SDP → ACK → BYE → 200, usage record written. A warm-up
 * round runs first and is not measured.
 */
import { readFileSync } from 'node:fs';
import { api, runCli, startGateway } from '../test/helpers/gateway-process.js';
import { runSipp } from '../test/helpers/sipp.js';

const quick = process.argv.includes('--quick');
const rates = quick ? [50] : [50, 100, 200, 400];
const seconds = quick ? 5 : 10;
const CLK_TCK = 100; // Linux USER_HZ

function cpuSeconds(pid: number): number {
  // Fields 14 and 15 of /proc/PID/stat (utime, stime), after the ")" that ends the command name.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

const gw = await startGateway({ built: true, env: { TOLLGATE_SIP__DIGEST_ALGORITHMS: '[MD5, SHA-256]', TOLLGATE_MEDIA__WORKERS: '2', TOLLGATE_LOG__LEVEL: 'info' } });
const results: Record<string, unknown>[] = [];
try {
  const adminRun = await runCli(['keys', 'create', '--name', 'bench-admin', '--role', 'admin', '--json'], gw.env);
  const admin = (JSON.parse(adminRun.stdout) as { secret: string }).secret;
  const k = await api(gw, 'POST', '/v1/keys', { auth: admin, body: { name: 'bench-trunk', scopes: ['calls:inbound'], callsPerSecond: 10_000, cpsBurst: 10_000, maxConcurrentCalls: 100_000 } });
  const trunk = { id: k.body.key.id as string, secret: k.body.secret as string };
  await api(gw, 'POST', '/v1/numbers', { auth: admin, body: { number: '+14155550100', target: 'echo', keyId: trunk.id } });
  const pid = gw.process.pid!;
  // Warm-up (not measured): JIT compilation of every path runs on V8's background threads and
  // would otherwise be charged to the first rate.
  await runSipp({ scenario: 'uac-auth-call', target: gw.sip.udp!, transport: 'udp', dialled: '+14155550100', username: trunk.id, password: trunk.secret, calls: quick ? 100 : 400, rate: 50, limit: 100, holdMs: 200, timeoutSec: 30 });
  for (const rate of rates) {
    const calls = rate * seconds;
    const cpu0 = cpuSeconds(pid);
    const t0 = performance.now();
    const r = await runSipp({
      scenario: 'uac-auth-call',
      target: gw.sip.udp!,
      transport: 'udp',
      dialled: '+14155550100',
      username: trunk.id,
      password: trunk.secret,
      calls,
      rate,
      limit: rate * 2,
      holdMs: 200,
      timeoutSec: seconds + 30,
    });
    const wall = (performance.now() - t0) / 1000;
    const cpu = cpuSeconds(pid) - cpu0;
    const achievedCps = r.successful / wall;
    results.push({
      offeredCps: rate,
      calls,
      successful: r.successful,
      failed: r.failed,
      wallSec: Math.round(wall * 10) / 10,
      achievedCps: Math.round(achievedCps * 10) / 10,
      gatewayCpuSec: Math.round(cpu * 100) / 100,
      cpuPercentOfOneCore: Math.round((cpu / wall) * 1000) / 10,
      cpuPercentPer100Cps: Math.round(((cpu / wall) * 100 * 100) / Math.max(achievedCps, 1) * 10) / 10,
      targetPercentPer100Cps: 10,
    });
  }
} finally {
  await gw.stop();
}
process.stdout.write(JSON.stringify({ bench: 'sip', transport: 'udp', digest: 'MD5 (SIPp 3.6)', seconds, results }, null, 2) + '\n');
