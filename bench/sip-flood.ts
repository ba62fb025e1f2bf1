/**
 * npm run bench:sip-flood — what a flood of INVITEs without credentials from one address costs.
 *
 * 1. In process (precise memory): a SipServer with a counting transport takes 40,000
 *    unauthenticated INVITEs from one address, once with the default per-source limits
 *    (sip.challenges) and once with the limit lifted (the cost of the stateless challenge
 *    alone). Printed: challenges sent, not answered (over the rate), dropped (source blocked),
 *    server transactions held afterwards, heap growth after a full GC (total and per INVITE),
 *    and CPU per INVITE. Run with --expose-gc (the npm script does).
 * 2. A gateway process (what operators see): 40,000 INVITEs from 127.0.0.2 at about 4,000/s
 *    (the reported attack), while nothing else runs. Printed: the gateway's RSS before, at the
 *    end of the flood and 5 s later, its CPU seconds, 407s the flooder received, and the
 *    gateway's own counters (tollgate_sip_challenges_total, dropped requests, blocks,
 *    transactions held).
 *
 * `--quick` floods 10,000. Tests never assert these figures (docs/benchmarks.md has them).
 */
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { SipServer, type CallHandler } from '../src/sip/sip-server.js';
import type { Peer, SipTransport } from '../src/transport/sip-transport.js';
import { createLogger } from '../src/observability/logger.js';
import { api, startGateway } from '../test/helpers/gateway-process.js';

const quick = process.argv.includes('--quick');
const N = quick ? 10_000 : 40_000;
const gc = (globalThis as { gc?: () => void }).gc;

function invite(i: number, host: string, port: number, target: string): Buffer {
  return Buffer.from([
    `INVITE sip:+14155550100@${target} SIP/2.0`,
    `Via: SIP/2.0/UDP ${host}:${port};branch=z9hG4bKflood${i};rport`,
    'Max-Forwards: 70',
    `From: <sip:flood@${host}>;tag=f${i}`,
    `To: <sip:+14155550100@${target}>`,
    `Call-ID: flood-${i}-${host}`,
    `CSeq: 1 INVITE`,
    `Contact: <sip:flood@${host}:${port}>`,
    'Content-Type: application/sdp',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n'));
}

class CountingTransport implements SipTransport {
  readonly protocol = 'udp' as const;
  sent = 0;
  address() {
    return { address: '127.0.0.1', port: 5060 };
  }
  send(): Promise<void> {
    this.sent++;
    return Promise.resolve();
  }
  close() {
    return Promise.resolve();
  }
}

function heapAfterGc(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
}

async function inProcess(limits: { ratePerSec: number; burst: number; floodThreshold: number; blockMs: number }) {
  const t = new CountingTransport();
  const counts = { limited: 0, dropped: 0, blocked: 0 };
  const handler: CallHandler = { invite: () => Promise.resolve() };
  const server = new SipServer(
    { realm: 'tollgate', nonceKey: randomBytes(32), nonceTtlMs: 30_000, digestAlgorithms: ['MD5', 'SHA-256'], userAgent: 'tollgate', bruteForce: { maxFailures: 10, windowMs: 60_000, blockMs: 300_000, maxUsernamesPerSource: 10 }, challenges: limits },
    {
      credentials: { ha1: () => Promise.resolve(null) },
      nonceCounts: { claim: () => Promise.resolve(true) },
      handler,
      log: createLogger({ level: 'silent' }),
      events: {
        onChallenge: (o) => {
          if (o === 'rate-limited') counts.limited++;
        },
        onDropped: () => counts.dropped++,
        onBlocked: () => counts.blocked++,
      },
    },
  );
  server.addTransport(t);
  const peer: Peer = { protocol: 'udp', address: '192.0.2.66', port: 5062 };
  const messages = Array.from({ length: N }, (_, i) => invite(i, peer.address, peer.port, '127.0.0.1'));
  // Warm-up from another address (JIT), not counted.
  for (let i = 0; i < 2000; i++) server.handle({ data: invite(i, '192.0.2.1', 5062, '127.0.0.1'), peer: { ...peer, address: `198.51.100.${i % 250}` }, local: { address: '127.0.0.1', port: 5060 } });
  await sleep(50);
  const sentBefore = t.sent;
  const heap0 = heapAfterGc();
  const cpu0 = process.cpuUsage();
  for (const data of messages) server.handle({ data, peer, local: { address: '127.0.0.1', port: 5060 } });
  const cpu = process.cpuUsage(cpu0);
  await sleep(50);
  const held = server.transactions.servers;
  const heap1 = heapAfterGc();
  await server.close();
  return {
    // Read after heap1, so the flood's own buffers stay alive across both measurements.
    invites: messages.length,
    challengesSent: t.sent - sentBefore,
    notAnsweredOverRate: counts.limited,
    droppedSourceBlocked: counts.dropped,
    blocks: counts.blocked,
    serverTransactionsHeld: held,
    heapGrowthBytes: heap1 - heap0,
    heapBytesPerInvite: Math.round(((heap1 - heap0) / N) * 10) / 10,
    cpuUsPerInvite: Math.round(((cpu.user + cpu.system) / N) * 10) / 10,
  };
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function metricValues(url: string): Promise<Record<string, number>> {
  const text = (await api({ url }, 'GET', '/metrics')).text;
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith('tollgate_sip_challenges_total') && !line.startsWith('tollgate_sip_dropped_requests_total') && !line.startsWith('tollgate_sip_blocked_sources_total') && !line.startsWith('tollgate_sip_transactions')) continue;
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

async function gatewayProcess() {
  const gw = await startGateway({ built: true, env: { TOLLGATE_LOG__LEVEL: 'info', TOLLGATE_SIP__OVERLOAD__SAMPLE_MS: '500' } });
  try {
    const pid = gw.process.pid!;
    const { address, port } = gw.sip.udp!;
    await sleep(2000);
    const rss0 = rssBytes(pid);
    const cpu0 = cpuSeconds(pid);
    const sock = createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.2', () => r()));
    let challenged = 0;
    sock.on('message', (m) => {
      if (m.subarray(0, 12).toString() === 'SIP/2.0 407 ') challenged++;
    });
    const local = sock.address().port;
    const t0 = performance.now();
    // About 4,000/s: 200 every 50 ms.
    for (let sent = 0; sent < N;) {
      for (let j = 0; j < 200 && sent < N; j++) sock.send(invite(sent++, '127.0.0.2', local, `${address}:${port}`), port, address);
      await sleep(50);
    }
    const floodSec = (performance.now() - t0) / 1000;
    await sleep(600);
    const rssEnd = rssBytes(pid);
    const cpu = cpuSeconds(pid) - cpu0;
    const counters = await metricValues(gw.url);
    await sleep(5000);
    const rssLater = rssBytes(pid);
    sock.close();
    return {
      invites: N,
      floodSec: Math.round(floodSec * 10) / 10,
      challengesReceivedByFlooder: challenged,
      gatewayCounters: counters,
      gatewayCpuSec: Math.round(cpu * 100) / 100,
      rssBeforeMiB: Math.round((rss0 / 1048576) * 10) / 10,
      rssAfterFloodMiB: Math.round((rssEnd / 1048576) * 10) / 10,
      rss5sLaterMiB: Math.round((rssLater / 1048576) * 10) / 10,
      rssGrowthBytesPerInvite: Math.round((rssEnd - rss0) / N),
    };
  } finally {
    await gw.stop();
  }
}

if (!gc) process.stderr.write('note: run with --expose-gc for heap figures after a full GC (npm run bench:sip-flood does)\n');
const defaults = { ratePerSec: 200, burst: 400, floodThreshold: 2000, blockMs: 60_000 };
const result = {
  bench: 'sip-flood',
  machine: 'shared 2-core VM; compare ratios',
  inProcess: {
    defaults: await inProcess(defaults),
    noPerSourceLimit: await inProcess({ ratePerSec: 1e9, burst: 1e9, floodThreshold: 1e9, blockMs: 1 }),
  },
  gatewayProcess: await gatewayProcess(),
};
process.stdout.write(JSON.stringify(result, null, 2) + '\n');
