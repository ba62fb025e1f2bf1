/**
 * Outbound call setup rate through policy + STIR signing to a SIPp UAS (part of npm run bench:stir).
 *
 * One gateway (compiled build, dist/) with development STIR certificates in its data dir, so
 * every outbound INVITE carries an Identity header. For each offered rate this process POSTs
 * /v1/calls (keep-alive fetch) on a fixed schedule for a bounded number of seconds: each 201
 * means policy (scope, geofence, caller ID, CPS, concurrency, budget) → trunk routing → a media
 * port on a worker → SDP offer → PASSporT signed → INVITE sent. A fresh SIPp UAS per rate
 * (its own trunk) answers each INVITE with 100/180/200+SDP, takes the ACK and answers
 * tollgate's BYE, which comes at the call's maximum duration (1 s; target echo). SIPp's
 * -trace_counts/-trace_stat files give how many INVITEs it received and answered. Gateway CPU is
 * user+system of the gateway process (all threads) from /proc/PID/stat over the offering window.
 * Every process started here is stopped in `finally`, on errors too.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { api, gatewayEnv, runCli } from '../test/helpers/gateway-process.js';

const CLK_TCK = 100; // Linux USER_HZ
const FROM = '+14155550100';
const TO = '+12025550123';
/** A rate counts as sustained only while the 99th percentile of POST /v1/calls stays under this. */
const SUSTAINED_P99_MS = 1000;

export interface OutboundRun {
  offeredCps: number;
  seconds: number;
  /** POSTs sent (fewer than offeredCps × seconds when the run stopped early). */
  offered: number;
  /** 201 Created: the INVITE was on its way. */
  placed: number;
  /** Every other outcome (HTTP error codes, timeouts, network errors). */
  refused: number;
  refusedByCode: Record<string, number>;
  /** 201s per second over the offering window (first POST to last response). */
  achievedCps: number;
  /** Latency of the 201 responses (policy + routing + media + signing + INVITE sent + HTTP). */
  httpP50Ms: number;
  httpP99Ms: number;
  httpMaxMs: number;
  invitesReceived: number;
  answered: number;
  /** BYEs from tollgate (at the 1 s maximum duration) that SIPp answered. */
  byesAnswered: number;
  /** Calls SIPp saw through to the end of its scenario (BYE answered, then its 500 ms time-wait). */
  completed: number;
  /** SIPp's failure counters that are not zero (e.g. FailedTimeoutOnRecv), retransmissions, and how it exited. */
  sipp: { failures: Record<string, number>; exit: string; firstError?: string };
  /** Gateway process, user+system, % of one core, over the offering window. */
  gatewayCpuPct: number;
  /** Same window: SIPp and this bench process (% of one core each), the whole machine (% of all cores, others' work included). */
  loadCpuPct: { sipp: number; bench: number; machine: number };
  stoppedEarly: boolean;
  /** Why: refusals above 10 % (after 20), or 1,000 POSTs waiting for an answer at once. */
  stopReason?: 'refusals' | 'backlog';
}

export interface OutboundSetupFigures {
  signed: { invitesWithIdentity: number; invitesChecked: number; attest: string | null };
  runs: OutboundRun[];
  maxSustainedCps: number | null;
  /** false: every rate run was sustained, so the ceiling lies above the highest one. */
  ceilingFound: boolean;
  note: string;
}

/** user+system seconds of a process, all threads: fields 14 and 15 of /proc/PID/stat (0 once it is gone). */
function cpuSeconds(pid: number): number {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return 0;
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

interface Gateway {
  readonly url: string;
  readonly env: Record<string, string>;
  readonly pid: number;
  /** The last lines it logged (for error messages). */
  tail(): string;
  /** SIGTERM, then wait for exit (SIGKILL after 10 s). */
  stop(): Promise<void>;
}

/**
 * `tollgate serve` from dist/ on 127.0.0.1 (HTTP and SIP on free ports), as startGateway in
 * test/helpers/gateway-process.ts does, but keeping only the last chunks of its log: that helper
 * keeps the whole log and re-reads it on every chunk, which at hundreds of calls per second
 * would cost this process (sharing the machine with the gateway) more CPU than the load itself.
 */
async function startBuiltGateway(env: Record<string, string>): Promise<Gateway> {
  const cli = resolve(import.meta.dirname, '../dist/tollgate.js');
  if (!existsSync(cli)) throw new Error('dist/ is missing: run npm run build first');
  const child = spawn(process.execPath, [cli, 'serve', '--port', '0', '--host', '127.0.0.1'], { cwd: resolve(import.meta.dirname, '..'), env, stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks: string[] = [];
  const keep = (d: Buffer): void => {
    chunks.push(d.toString());
    if (chunks.length > 40) chunks.shift();
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  };
  try {
    const url = await new Promise<string>((res, rej) => {
      let buf = '';
      const timer = setTimeout(() => rej(new Error('gateway did not start in 30 s')), 30_000);
      const onData = (d: Buffer): void => {
        buf += d.toString();
        const line = buf.split('\n').find((l) => l.includes('tollgate listening'));
        if (!line) return;
        clearTimeout(timer);
        child.stdout.off('data', onData);
        res((JSON.parse(line) as { url: string }).url);
      };
      child.stdout.on('data', onData);
      void exited.then(() => {
        clearTimeout(timer);
        rej(new Error('gateway exited before listening'));
      });
    });
    return { url, env, pid: child.pid!, tail: () => chunks.join('').slice(-4000), stop };
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}: ${chunks.join('').slice(-2000)}`);
  }
}

function isSustained(r: OutboundRun): boolean {
  return !r.stoppedEarly && r.placed >= 0.99 * r.offeredCps * r.seconds && r.achievedCps >= 0.95 * r.offeredCps
    && r.answered >= r.placed && r.byesAnswered >= 0.99 * r.placed && r.httpP99Ms <= SUSTAINED_P99_MS;
}

/** Busy and total jiffies of the whole machine (/proc/stat, all cores). */
function machineJiffies(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - f[4]!, total };
}

function bindable(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createSocket('udp4');
    s.once('error', () => res(false));
    s.bind(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

/**
 * `count` consecutive free UDP ports on 127.0.0.1, from TOLLGATE_BENCH_SIPP_PORT (or a pid-derived
 * base in 21000–30999: above the gateway's media range 10000–20000, below Linux's ephemeral
 * ports) upwards. SIPp binds them itself right after, so a race is unlikely but possible.
 */
let nextPort = Number(process.env.TOLLGATE_BENCH_SIPP_PORT) || 21_000 + ((process.pid * 37) % 10_000);
async function freePorts(count: number): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const base = nextPort;
    nextPort += count;
    if (nextPort > 32_000) nextPort = 21_000;
    let ok = true;
    for (let p = base; p < base + count && ok; p++) ok = await bindable(p);
    if (ok) return base;
  }
  throw new Error('no free UDP ports for SIPp');
}

/**
 * A carrier UAS for many calls: 100, 180, 200 with SDP, ACK, then answers tollgate's BYE. It
 * also answers the trunk health check (an OPTIONS every 30 s): unanswered, it would mark the
 * trunk down and every later call would be refused with NO_ROUTE.
 */
const UAS_SCENARIO = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="tollgate bench carrier UAS">
  <recv request="OPTIONS" optional="true" next="options"/>
  <recv request="INVITE" crlf="true" rrs="true"/>
  <send>
    <![CDATA[
      SIP/2.0 100 Trying
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:carrier@[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:carrier@[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=carrier 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20
      a=sendrecv
    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE" timeout="15000"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <nop hide="true" next="done"/>
  <label id="options"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag02[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="done"/>
  <timewait milliseconds="500"/>
</scenario>
`;

interface SippCounts {
  invitesReceived: number;
  answered: number;
  byesAnswered: number;
  optionsAnswered: number;
  /** SIPp's cumulative Failed…(C) counters that are not zero, and its retransmissions. */
  failures: Record<string, number>;
  successful: number;
  failed: number;
}

interface SippUas {
  readonly port: number;
  readonly child: ChildProcess;
  /** Stop taking new calls, let the ongoing ones end, wait for the exit (bounded); then the counts. */
  finish(graceMs: number): Promise<SippCounts & { exit: string; tail: string; messages: string; firstError: string | null }>;
  kill(): void;
}

async function startUas(o: { calls: number; limit: number; timeoutSec: number; traceMsg?: boolean }): Promise<SippUas> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-bench-uas-'));
  const sf = join(dir, 'uas.xml');
  writeFileSync(sf, UAS_SCENARIO);
  const port = await freePorts(1);
  const media = await freePorts(4);
  const args = [
    '-sf', sf, '-t', 'u1', '-i', '127.0.0.1', '-p', String(port), '-mi', '127.0.0.1', '-mp', String(media),
    '-m', String(o.calls + 10), '-l', String(o.limit), '-nostdin', '-timeout', `${o.timeoutSec}s`,
    '-trace_stat', '-stf', join(dir, 'stat.csv'), '-trace_counts', '-fd', '1', '-trace_err', '-max_recv_loops', '1000',
    ...(o.traceMsg ? ['-trace_msg'] : []),
  ];
  const child = spawn('sipp', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  const keep = (d: Buffer): void => {
    tail = (tail + d.toString()).slice(-4000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<string>((res) => {
    child.once('error', (err) => res(`error ${err.message}`));
    child.once('exit', (code, signal) => res(signal ?? `code ${code}`));
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), (o.timeoutSec + 15) * 1000);
  void exited.then(() => clearTimeout(killer));
  // SIPp is listening once its stat file exists (or it has exited already).
  const deadline = Date.now() + 5000;
  while (!existsSync(join(dir, 'stat.csv')) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (child.exitCode !== null) throw new Error(`sipp exited with ${child.exitCode}: ${tail}`);
  const readCounts = (): SippCounts => {
    const files = readdirSync(dir);
    const lastRow = (file: string | undefined): Record<string, string> => {
      if (!file) return {};
      const lines = readFileSync(join(dir, file), 'utf8').trim().split('\n');
      const head = lines[0]!.split(';');
      const last = lines[lines.length - 1]!.split(';');
      return Object.fromEntries(head.map((h, i) => [h, last[i] ?? '']));
    };
    const counts = lastRow(files.find((f) => f.endsWith('_counts.csv')));
    const stat = lastRow('stat.csv');
    // Counts columns are "<message index>_<message>_<what>", cumulative: the first 200 sent answers the INVITE.
    const first = (re: RegExp): number => Number(Object.entries(counts).find(([h]) => re.test(h))?.[1] ?? 0);
    return {
      invitesReceived: first(/^\d+_INVITE_Recv$/),
      answered: first(/^\d+_200_Sent$/),
      byesAnswered: first(/^\d+_BYE_Recv$/),
      optionsAnswered: first(/^\d+_OPTIONS_Recv$/),
      failures: Object.fromEntries(
        Object.entries(stat)
          .filter(([h, v]) => /^(Failed(?!Call\()\w+|Retransmissions|DeadCallMsgs)\(C\)$/.test(h) && Number(v) > 0)
          .map(([h, v]) => [h.slice(0, -3), Number(v)]),
      ),
      // Health-check OPTIONS end as successful "calls" of the scenario too.
      successful: Number(stat['SuccessfulCall(C)'] ?? 0) - first(/^\d+_OPTIONS_Recv$/),
      failed: Number(stat['FailedCall(C)'] ?? 0),
    };
  };
  return {
    port,
    child,
    async finish(graceMs: number) {
      await new Promise((r) => setTimeout(r, graceMs));
      if (child.exitCode === null) child.kill('SIGUSR1'); // SIPp: no new calls, exit when the ongoing ones end
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const exit = await exited;
      clearTimeout(t);
      const files = readdirSync(dir);
      const msgFile = files.find((f) => f.endsWith('_messages.log'));
      const errFile = files.find((f) => f.endsWith('_errors.log'));
      const firstError = errFile ? readFileSync(join(dir, errFile), 'utf8').split('\n').find((l) => l.trim() && !l.startsWith('The following events'))?.replace(/\s+/g, ' ').slice(0, 300) ?? null : null;
      const result = { ...readCounts(), exit, tail, firstError, messages: msgFile ? readFileSync(join(dir, msgFile), 'utf8') : '' };
      rmSync(dir, { recursive: true, force: true });
      return result;
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const pct = (sorted: number[], q: number): number => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : 0);
const r1 = (v: number): number => Math.round(v * 10) / 10;
const r2 = (v: number): number => Math.round(v * 100) / 100;

/** Offers POST /v1/calls at `rate` for `seconds` (bounded), stopping early when refusals pile up. */
async function offer(gw: Gateway, secret: string, rate: number, seconds: number): Promise<Omit<OutboundRun, 'invitesReceived' | 'answered' | 'byesAnswered' | 'completed' | 'sipp' | 'gatewayCpuPct' | 'loadCpuPct'> & { wallSec: number }> {
  const total = Math.round(rate * seconds);
  const body = JSON.stringify({ to: TO, from: FROM, target: 'echo', maxDurationSec: 1, ringTimeoutSec: 10 });
  const headers = { authorization: `Bearer ${secret}`, 'content-type': 'application/json' };
  const latencies: number[] = [];
  const refusedByCode: Record<string, number> = {};
  let placed = 0;
  let refused = 0;
  let sent = 0;
  let inflight = 0;
  let stopReason: OutboundRun['stopReason'];
  const pending: Promise<void>[] = [];
  const one = async (): Promise<void> => {
    const t0 = performance.now();
    try {
      const r = await fetch(`${gw.url}/v1/calls`, { method: 'POST', headers, body, signal: AbortSignal.timeout(10_000) });
      const text = await r.text();
      if (r.status === 201) {
        placed++;
        latencies.push(performance.now() - t0);
        return;
      }
      let code = `HTTP_${r.status}`;
      try {
        code = (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? code;
      } catch {
        // not JSON: keep the status
      }
      refused++;
      refusedByCode[code] = (refusedByCode[code] ?? 0) + 1;
    } catch (err) {
      const code = err instanceof Error && err.name === 'TimeoutError' ? 'TIMEOUT' : 'NETWORK';
      refused++;
      refusedByCode[code] = (refusedByCode[code] ?? 0) + 1;
    } finally {
      inflight--;
    }
  };
  const interval = 1000 / rate;
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const wait = start + i * interval - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    if (refused > 20 && refused > sent * 0.1) {
      stopReason = 'refusals';
      break;
    }
    if (inflight >= 1000) {
      stopReason = 'backlog'; // the gateway is not keeping up at all
      break;
    }
    sent++;
    inflight++;
    pending.push(one());
  }
  await Promise.all(pending);
  const wallSec = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    offeredCps: rate,
    seconds,
    offered: sent,
    placed,
    refused,
    refusedByCode,
    achievedCps: r1(placed / wallSec),
    httpP50Ms: r2(pct(latencies, 0.5)),
    httpP99Ms: r2(pct(latencies, 0.99)),
    httpMaxMs: r2(latencies.at(-1) ?? 0),
    stoppedEarly: stopReason !== undefined,
    ...(stopReason ? { stopReason } : {}),
    wallSec,
  };
}

export function sippAvailable(): boolean {
  const r = spawnSync('sipp', ['-v'], { stdio: 'ignore' });
  return !r.error;
}

export async function outboundSetupFigures(opts: { quick?: boolean; rates?: number[]; seconds?: number } = {}): Promise<OutboundSetupFigures> {
  const rates = opts.rates ?? (opts.quick ? [20, 50] : [20, 50, 100, 200, 400]);
  const seconds = opts.seconds ?? (opts.quick ? 3 : 10);
  const dataDir = mkdtempSync(join(tmpdir(), 'tollgate-bench-outbound-'));
  const env = { TOLLGATE_MEDIA__WORKERS: '2', TOLLGATE_LOG__LEVEL: 'info' };
  let gw: Gateway | null = null;
  let uas: SippUas | null = null;
  try {
    // Development STI-CA + SHAKEN certificate in the data dir before start: outbound INVITEs are signed.
    const certs = await runCli(['certs', 'dev'], gatewayEnv({ dataDir, env }));
    if (certs.code !== 0) throw new Error(`tollgate certs dev failed: ${certs.stderr}`);
    gw = await startBuiltGateway(gatewayEnv({ dataDir, env }));
    const adminRun = await runCli(['keys', 'create', '--name', 'bench-admin', '--role', 'admin', '--json'], gw.env);
    if (adminRun.code !== 0) throw new Error(`keys create failed: ${adminRun.stderr}`);
    const admin = (JSON.parse(adminRun.stdout) as { secret: string }).secret;
    const k = await api(gw, 'POST', '/v1/keys', {
      auth: admin,
      body: { name: 'bench-outbound', scopes: ['calls:outbound', 'calls:read'], allowedCountries: ['US'], callerIds: [FROM], callsPerSecond: 10_000, cpsBurst: 10_000, maxConcurrentCalls: 100_000 },
    });
    if (k.status !== 201) throw new Error(`key create: ${k.status} ${k.text}`);
    const secret = k.body.secret as string;
    const pid = gw.pid;

    let trunkId: string | null = null;
    const useUas = async (calls: number, rate: number, traceMsg = false): Promise<SippUas> => {
      const u = await startUas({ calls, limit: Math.max(100, rate * 4), timeoutSec: seconds + 40, traceMsg });
      try {
        // One trunk at a time, to this run's SIPp; maxCps high (the default, 10, would be the limit).
        if (trunkId) await api(gw!, 'DELETE', `/v1/trunks/${trunkId}`, { auth: admin });
        const t = await api(gw!, 'POST', '/v1/trunks', { auth: admin, body: { name: `bench-carrier-${u.port}`, host: '127.0.0.1', port: u.port, transport: 'udp', srtp: 'off', prefixes: ['+1'], maxCps: 10_000 } });
        if (t.status !== 201) throw new Error(`trunk add: ${t.status} ${t.text}`);
        trunkId = t.body.trunk.id as string;
        return u;
      } catch (err) {
        u.kill();
        throw err;
      }
    };

    // Warm-up (not reported): JIT for every path; every INVITE traced to check it is signed.
    const warm = { rate: 20, seconds: opts.quick ? 1 : 2 };
    uas = await useUas(warm.rate * warm.seconds, warm.rate, true);
    const w = await offer(gw, secret, warm.rate, warm.seconds);
    const wr = await uas.finish(300);
    uas = null;
    if (w.placed === 0) throw new Error(`warm-up placed no calls: ${JSON.stringify(w.refusedByCode)}; gateway log: ${gw.tail()}`);
    const invites = wr.messages.split(/-{10,}/).filter((m) => /^INVITE sip:/m.test(m));
    const identities = invites.filter((m) => /^Identity: [\w-]+\.[\w-]+\.[\w-]+;info=<[^>]+>;alg=ES256;ppt=shaken\s*$/m.test(m)).length;
    const calls = await api(gw, 'GET', '/v1/calls?limit=1', { auth: secret });
    const attest = (calls.body?.calls?.[0]?.details?.identity?.attest as string | undefined) ?? null;

    const runs: OutboundRun[] = [];
    for (const rate of rates) {
      uas = await useUas(rate * seconds, rate);
      const sippPid = uas.child.pid!;
      const [cpu0, sipp0, bench0, machine0] = [cpuSeconds(pid), cpuSeconds(sippPid), process.cpuUsage(), machineJiffies()];
      const o = await offer(gw, secret, rate, seconds);
      const cpu = cpuSeconds(pid) - cpu0;
      const sippCpu = cpuSeconds(sippPid) - sipp0;
      const benchUs = process.cpuUsage(bench0);
      const machine1 = machineJiffies();
      // Calls last 1 s after the answer: SIPp exits once the last BYE is answered.
      const s = await uas.finish(300);
      uas = null;
      const { wallSec, ...run } = o;
      runs.push({
        ...run,
        invitesReceived: s.invitesReceived,
        answered: s.answered,
        byesAnswered: s.byesAnswered,
        completed: s.successful,
        sipp: { failures: s.failures, exit: s.exit, ...(s.firstError ? { firstError: s.firstError } : {}) },
        gatewayCpuPct: r1((cpu / wallSec) * 100),
        loadCpuPct: {
          sipp: r1((sippCpu / wallSec) * 100),
          bench: r1(((benchUs.user + benchUs.system) / 1e6 / wallSec) * 100),
          machine: r1(((machine1.busy - machine0.busy) / Math.max(1, machine1.total - machine0.total)) * 100),
        },
      });
      if (!isSustained(runs.at(-1)!)) break; // higher rates would only fail harder
    }
    const sustained = runs.filter(isSustained);
    return {
      signed: { invitesWithIdentity: identities, invitesChecked: invites.length, attest },
      runs,
      maxSustainedCps: sustained.length ? Math.max(...sustained.map((r) => r.offeredCps)) : null,
      ceilingFound: sustained.length < runs.length,
      note:
        'One gateway (dist/, 2 media workers, SQLite, log level info) with development STIR certificates, a fresh SIPp UAS (UDP, 127.0.0.1) per rate, and this bench process '
        + 'offering POST /v1/calls (keep-alive fetch, on a fixed schedule) all share one 2-core machine. Each call: policy → trunk route → media port → SDP offer → ES256 PASSporT → '
        + 'INVITE; SIPp answers 100/180/200+SDP, ACK, and tollgate hangs up after maxDurationSec 1 (target echo), so each run also carries about offeredCps calls in progress. '
        + 'httpP50Ms/httpP99Ms: 201 responses only. invitesReceived/answered/completed: SIPp -trace_counts/-trace_stat. gatewayCpuPct: gateway process user+system (all threads) '
        + 'over the offering window, % of one core; loadCpuPct: SIPp and this process (% of one core each) and the whole machine (% of all cores, anything else running included). '
        + 'Under overload, tollgate retransmits INVITEs (no 100 Trying handled within T1) and this UAS, already waiting for the ACK, aborts those calls: sipp.failures FailedUnexpectedMessage. maxSustainedCps: highest offered rate with ≥ 99 % placed, ≥ 95 % of the rate achieved, every placed call answered by SIPp, ≥ 99 % hung up by tollgate and answered, '
        + `and HTTP p99 ≤ ${SUSTAINED_P99_MS} ms; rates stop rising after the first that is not sustained.`,
    };
  } finally {
    uas?.kill();
    if (gw) await gw.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
