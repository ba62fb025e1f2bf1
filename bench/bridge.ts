/**
 * npm run bench:bridge — the agent bridge under load: N concurrent calls, SDES-SRTP
 * (AES_CM_128_HMAC_SHA1_80, PCMU 20 ms) on the carrier side and a WebSocket agent in Twilio
 * Media Streams mode echoing the audio on the other.
 *
 * Three processes on the 2-core machine (every process's CPU is reported). Two sweeps: unpinned
 * (all share both cores) and pinned (taskset: the gateway process alone on CPU 0, generator and
 * agent on CPU 1 — a literal "calls per core" for the gateway side):
 * - gateway (bench/bridge-host.mjs, compiled dist/): one media worker thread (SRTP, framing,
 *   playout clock) and the main thread (AgentSession per call on a WebSocket it dialled to the
 *   agent, as src/agents/agent-bridge.ts does);
 * - generator (this process): one UDP socket per call sending marked SRTP frames every 20 ms
 *   (staggered across the period), receiving the gateway's SRTP and matching echoes;
 * - agent (this file with --agent, forked): test/helpers/agents.ts EchoAgent for the echo calls,
 *   and a "clear probe" agent for a few calls (5 s of audio queued, then `clear` after 500 ms).
 *
 * Figures: loss; RTP arrival → WebSocket send (the AgentSession hook); round trip through the
 * gateway and its parts; `clear` → first silent frame on the wire; gateway CPU (main thread vs
 * media worker, from /proc) and memory per call. Targets (never enforced, only reported):
 * forward p99 ≤ 1 ms at 200 calls; clear → silence ≤ 20 ms; ≥ 400 calls per core at 0 loss and
 * round trip p99 ≤ 5 ms.
 *
 * Flags: --quick (one 100-call run of 4 s, unpinned); --counts=…, --pinned-counts=…, --seconds=…
 * to override; --no-pinned / --only-pinned to run one sweep. Diagnostics (environment):
 * BRIDGE_COMPACT_PLAY=1 (experiment: the host copies agent audio into its own buffer before
 * engine.play, see bridge-host.mjs), BRIDGE_DEBUG=1 (per-slot spikes on stderr), BRIDGE_TRACE_GC=1
 * (--trace-gc in the gateway), TOLLGATE_BENCH_PROFILE=dir (--cpu-prof in the gateway).
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { resolve } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { SrtpContext } from '../src/media/srtp.js';
import { writeRtpHeader } from '../src/media/rtp-packet.js';
import type { MediaSpec } from '../src/media/media-protocol.js';
import { EchoAgent } from '../test/helpers/agents.js';
import { summarise } from './stats.js';

const args = process.argv.slice(2);
const abs = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const CLK_TCK = 100; // Linux USER_HZ
const MAGIC0 = 0xa5;
const MAGIC1 = 0x5a;
const FRAME = 160;
const PROBES = 20;
const BURST_MS = 5000;
const CLEAR_AFTER_MS = 500;
/** Cores used by processes outside this bench above which a run counts as disturbed. */
const DISTURBED_CORES = 0.15;

// ---------------------------------------------------------------------------------------------
// IPC with a child process: request/reply by message type, every wait bounded.

interface Child {
  proc: ChildProcess;
  call<T>(msg: Record<string, unknown>, reply: string, timeoutMs?: number): Promise<T>;
}

async function startChild(file: string, argv: string[], execArgv: string[] | undefined): Promise<{ child: Child; ready: Record<string, unknown> }> {
  // stdout of children goes to our stderr: the JSON on stdout stays clean.
  const proc = fork(file, argv, { stdio: ['ignore', 2, 2, 'ipc'], serialization: 'advanced', ...(execArgv ? { execArgv } : {}) });
  const readyP = once(proc, 'message') as Promise<[Record<string, unknown>]>;
  const timer = sleep(30_000).then(() => {
    throw new Error(`${file} did not start in 30 s`);
  });
  const [ready] = await Promise.race([readyP, timer]);
  if (ready.type !== 'ready') throw new Error(`${file} did not start: ${JSON.stringify(ready)}`);
  const child: Child = {
    proc,
    call<T>(msg: Record<string, unknown>, reply: string, timeoutMs = 60_000): Promise<T> {
      return new Promise<T>((res, rej) => {
        const timer = setTimeout(() => {
          proc.off('message', on);
          rej(new Error(`${file}: no ${reply} within ${timeoutMs} ms`));
        }, timeoutMs);
        const on = (m: { type: string; message?: string }) => {
          if (m.type === reply) {
            clearTimeout(timer);
            proc.off('message', on);
            res(m as T);
          } else if (m.type === 'error') {
            clearTimeout(timer);
            proc.off('message', on);
            rej(new Error(m.message));
          }
        };
        proc.on('message', on);
        proc.send(msg);
      });
    },
  };
  return { child, ready };
}

async function endChild(c: Child | null, stopMsg: Record<string, unknown>, reply: string): Promise<void> {
  if (!c || c.proc.exitCode !== null || c.proc.signalCode !== null) return;
  const exited = once(c.proc, 'exit');
  try {
    await c.call(stopMsg, reply, 10_000);
  } catch {
    // fall through to the kill below
  }
  await Promise.race([exited, sleep(5000)]);
  if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
}

/** This process's clock minus the child's (ms), from the ping with the shortest round trip. */
async function clockOffset(c: Child): Promise<{ offsetMs: number; rttMs: number }> {
  let best = { offsetMs: 0, rttMs: Infinity };
  for (let i = 0; i < 30; i++) {
    const t1 = abs();
    const { t } = await c.call<{ t: number }>({ type: 'ping' }, 'pong', 5000);
    const t2 = abs();
    if (t2 - t1 < best.rttMs) best = { offsetMs: t - (t1 + t2) / 2, rttMs: t2 - t1 };
  }
  return best;
}

const ALL_CPUS = `0-${cpus().length - 1}`;

/** Sets the CPU affinity of every thread of `pid` (threads created later inherit it). */
function pin(pid: number, list: string): void {
  execFileSync('taskset', ['-a', '-p', '-c', list, String(pid)], { stdio: 'ignore' });
}

function canPin(): boolean {
  if (cpus().length < 2) return false;
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Busy CPU seconds of the whole machine (all cores), from /proc/stat. */
function machineBusySec(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return (total - f[3]! - f[4]!) / CLK_TCK;
}

// ---------------------------------------------------------------------------------------------
// Agent process (--agent): the echo agent and the clear probes.

async function agentMain(): Promise<void> {
  const echo = await EchoAgent.listen('127.0.0.1');
  const http = createServer((_req, res) => res.writeHead(426).end());
  const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
  await new Promise<void>((r, j) => {
    http.once('error', j);
    http.listen(0, '127.0.0.1', () => r());
  });
  const addr = http.address();
  if (!addr || typeof addr === 'string') throw new Error('clear agent: no port');
  const probes: { ws: WebSocket; callSid: string; streamSid: string }[] = [];
  const clears: { callSid: string; burstAt: number; clearAt: number }[] = [];
  const timers = new Set<ReturnType<typeof setTimeout>>();
  // 5 s of non-silent µ-law in 25 messages of 200 ms.
  const chunk = Buffer.alloc(1600);
  for (let i = 0; i < chunk.length; i++) chunk[i] = i % 2 ? 0x2a : 0x55;
  const b64 = chunk.toString('base64');
  wss.on('connection', (ws: WebSocket) => {
    ws.on('error', () => {});
    ws.on('message', (data: Buffer) => {
      const s = data.toString('utf8');
      if (s.startsWith('{"event":"media"')) return;
      try {
        const m = JSON.parse(s) as { event?: string; start?: { callSid?: string; streamSid?: string } };
        if (m.event === 'start' && m.start?.callSid && m.start.streamSid) probes.push({ ws, callSid: m.start.callSid, streamSid: m.start.streamSid });
      } catch {
        // not JSON: ignored, as Twilio would
      }
    });
  });
  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };
  process.on('message', (m: { type: string; spreadMs?: number }) => {
    if (m.type === 'ping') process.send!({ type: 'pong', t: abs() });
    else if (m.type === 'go') {
      // Probe j: burst at 200 + j·spread/P ms, clear 500 ms later; all inside the window.
      const spread = m.spreadMs ?? 1000;
      probes.forEach((p, j) => {
        later(200 + (j * spread) / Math.max(1, probes.length), () => {
          const burstAt = abs();
          for (let k = 0; k < BURST_MS / 200; k++) p.ws.send(`{"event":"media","streamSid":"${p.streamSid}","media":{"payload":"${b64}"}}`);
          later(CLEAR_AFTER_MS, () => {
            const clearAt = abs();
            p.ws.send(`{"event":"clear","streamSid":"${p.streamSid}"}`);
            clears.push({ callSid: p.callSid, burstAt, clearAt });
          });
        });
      });
      process.send!({ type: 'going', probes: probes.length });
    } else if (m.type === 'usage') {
      const c = process.cpuUsage();
      process.send!({ type: 'usage', cpuUs: c.user + c.system });
    } else if (m.type === 'results') {
      process.send!({ type: 'results', clears, echoedFrames: echo.echoedFrames, connections: echo.connections, probes: probes.length });
    } else if (m.type === 'stop') {
      for (const t of timers) clearTimeout(t);
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      http.close();
      void echo.close().finally(() => {
        process.send!({ type: 'stopped' });
        setTimeout(() => process.exit(0), 100);
      });
    }
  });
  process.send!({ type: 'ready', echoUrl: echo.url, clearUrl: `ws://127.0.0.1:${addr.port}` });
}

// ---------------------------------------------------------------------------------------------
// Generator and orchestration.

interface HostUsage {
  cpuUs: number;
  mainThreadSec: number;
  workerThreadSec: number;
  otherThreadsSec: number;
  rss: number;
  heapMain: number;
  heapWorker: number;
  arrayBuffers: number;
  timeouts: number;
  lost: number;
  framesSent: number;
  framesDropped: number;
  droppedBackpressure: number;
}

type Dist = { n: number; p50: number; p99: number; max: number } | null;

function dist(ms: number[]): Dist {
  if (ms.length === 0) return null;
  const s = summarise(ms.map((v) => v * 1e6));
  const r = (us: number) => Math.round(us) / 1000;
  return { n: s.n, p50: r(s.p50Us), p99: r(s.p99Us), max: r(s.maxUs) };
}

const pct = (x: number) => Math.round(x * 1000) / 10;

/**
 * One run of `calls` calls. pinned: the gateway process (worker + main thread) on CPU 0 only,
 * the generator and the agent on CPU 1 — a literal "calls per core" for the gateway side.
 */
async function run(calls: number, seconds: number, warmupSeconds: number, base: number, pinned: boolean) {
  const probes = Math.min(PROBES, Math.floor(calls / 5));
  const echoCalls = calls - probes;
  const frames = (warmupSeconds + seconds) * 50;
  const w0Frame = warmupSeconds * 50;
  let host: Child | null = null;
  let agent: Child | null = null;
  const socks: Socket[] = [];
  try {
    if (pinned) pin(process.pid, '1');
    const a = await startChild(import.meta.filename, ['--agent'], undefined);
    agent = a.child;
    if (pinned) pin(a.child.proc.pid!, '1');
    const echoUrl = a.ready.echoUrl as string;
    const clearUrl = a.ready.clearUrl as string;
    const engine = { host: '127.0.0.1', advertisedAddress: '', portMin: base, portMax: base + 3999, workers: 1, timeoutMs: 60_000, jitterTargetMs: 40 };
    const h = await startChild(resolve(import.meta.dirname, 'bridge-host.mjs'), [JSON.stringify({ engine })], ['--expose-gc', ...(process.env.BRIDGE_TRACE_GC ? ['--trace-gc'] : []), ...(process.env.TOLLGATE_BENCH_PROFILE ? ['--cpu-prof', '--cpu-prof-dir=' + process.env.TOLLGATE_BENCH_PROFILE] : [])]);
    host = h.child;
    if (pinned) pin(h.child.proc.pid!, '0');
    const before = await host.call<HostUsage>({ type: 'usage', gc: true }, 'usage');
    const ids = Array.from({ length: calls }, (_, i) => `call-${i}`);
    const { ports } = await host.call<{ ports: number[] }>({ type: 'open', ids }, 'opened');

    // One socket, one SRTP sender and receiver per call; every packet protected up front into
    // one slab per call (the generator's CPU is not what is measured).
    const PKT = 12 + FRAME + 10;
    const slabs: Buffer[] = [];
    const rx: SrtpContext[] = [];
    const items: [string, MediaSpec, string][] = [];
    const plain = Buffer.alloc(12 + FRAME);
    for (let i = 0; i < calls; i++) {
      const s = createSocket('udp4');
      await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
      socks.push(s);
      const callerKey = randomBytes(30);
      const gatewayKey = randomBytes(30);
      const tx = SrtpContext.fromKeySalt('AES_CM_128_HMAC_SHA1_80', callerKey);
      rx.push(SrtpContext.fromKeySalt('AES_CM_128_HMAC_SHA1_80', gatewayKey));
      const ssrc = randomBytes(4).readUInt32BE(0);
      const slab = Buffer.alloc(frames * PKT);
      for (let k = 0; k < frames; k++) {
        writeRtpHeader(plain, 0, { marker: k === 0, payloadType: 0, sequenceNumber: k, timestamp: k * FRAME, ssrc });
        plain[12] = MAGIC0;
        plain[13] = MAGIC1;
        plain.writeUInt32BE(k, 14);
        for (let b = 18; b < 12 + FRAME; b++) plain[b] = (b * 7 + i) & 0x7f; // never 0xFF (µ-law silence)
        if (tx.protectRtpInto(plain, plain.length, slab.subarray(k * PKT, (k + 1) * PKT)) !== PKT) throw new Error('unexpected SRTP packet length');
      }
      slabs.push(slab);
      const port = s.address().port;
      items.push([ids[i]!, {
        app: 'agent', codec: 'PCMU', payloadType: 0, telephoneEventPt: 101, ptimeMs: 20,
        // RTCP goes to the same socket and is filtered out there.
        remote: { address: '127.0.0.1', port, rtcpPort: port }, rtcpMux: false, signallingAddress: '127.0.0.1', trustSdp: false,
        srtp: { send: { suite: 'AES_CM_128_HMAC_SHA1_80', keySalt: gatewayKey.toString('base64') }, recv: { suite: 'AES_CM_128_HMAC_SHA1_80', keySalt: callerKey.toString('base64') } },
        direction: 'sendrecv',
        agent: { encoding: 'PCMU', sampleRate: 8000, maxQueueMs: 30_000 },
      }, i >= echoCalls ? clearUrl : echoUrl]);
    }
    // Receive (listening before configure: an SRTP receiver that misses the first packets can
    // lose the ROC if the sender's random initial SEQ wraps meanwhile): echo calls record the
    // arrival of each marked frame; probes record every
    // non-silent → silent transition (the first after `clear` is the one that counts).
    const sentAt = Array.from({ length: calls }, () => new Float64Array(frames));
    const recvAt = Array.from({ length: calls }, () => new Float64Array(frames));
    const transitions: number[][] = Array.from({ length: calls }, () => []);
    const lastSilent = new Uint8Array(calls).fill(1);
    let authFailures = 0;
    let foreignSsrc = 0;
    let foreignFromOtherCall = 0;
    const gwSsrc = new Uint32Array(calls);
    const knownSsrc = new Set<number>();
    let received = 0;
    socks.forEach((s, i) => {
      const isProbe = i >= echoCalls;
      s.on('message', (m: Buffer) => {
        const t = abs();
        if (m.length > 1 && m[1]! >= 200 && m[1]! <= 204) return; // RTCP
        const ssrc = m.length >= 12 ? m.readUInt32BE(8) : 0;
        const pkt = rx[i]!.unprotectRtp(m);
        if (!pkt) {
          authFailures++;
          // A packet carrying another call's SSRC arrived on this call's socket: see notes.
          if (gwSsrc[i] !== 0 && ssrc !== gwSsrc[i]) {
            foreignSsrc++;
            if (knownSsrc.has(ssrc)) foreignFromOtherCall++;
          }
          return;
        }
        if (gwSsrc[i] === 0) {
          gwSsrc[i] = ssrc;
          knownSsrc.add(ssrc);
        }
        received++;
        const off = 12 + 4 * (pkt[0]! & 0x0f);
        if (isProbe) {
          let silent = 1;
          for (let b = off; b < pkt.length; b++) {
            if (pkt[b] !== 0xff) {
              silent = 0;
              break;
            }
          }
          if (silent && !lastSilent[i]) transitions[i]!.push(t);
          lastSilent[i] = silent;
          return;
        }
        if (pkt.length >= off + 6 && pkt[off] === MAGIC0 && pkt[off + 1] === MAGIC1) {
          const k = pkt.readUInt32BE(off + 2);
          if (k < frames && recvAt[i]![k] === 0) recvAt[i]![k] = t;
        }
      });
    });

    await host.call({ type: 'configure', items, frames }, 'configured', 120_000);
    const setupDone = await host.call<HostUsage>({ type: 'usage', gc: true }, 'usage');
    const offHost0 = await clockOffset(host);
    const offAgent0 = await clockOffset(agent);

    // Send: call i at i/N of each 20 ms period; a 1 ms timer (not a spin loop: the cores are shared).
    const start = performance.now() + 200;
    const winFrom = performance.timeOrigin + start + w0Frame * 20;
    const winTo = performance.timeOrigin + start + frames * 20;
    await host.call({ type: 'window', from: winFrom + offHost0.offsetMs, to: winTo + offHost0.offsetMs }, 'window-set');
    type Sample = { host: HostUsage; agentUs: number; genUs: number; machine: number; at: number };
    const samples: { u0?: Sample } = {};
    const sample = async (): Promise<Sample> => {
      const genCpu = process.cpuUsage();
      const [hu, au] = await Promise.all([host!.call<HostUsage>({ type: 'usage' }, 'usage'), agent!.call<{ cpuUs: number }>({ type: 'usage' }, 'usage')]);
      return { host: hu, agentUs: au.cpuUs, genUs: genCpu.user + genCpu.system, machine: machineBusySec(), at: performance.now() };
    };
    const sampling: Promise<void>[] = [];
    // 200 ms before the window, every echo call's playout queue is flushed (engine.clear, as an
    // agent's `clear` would): what echoed audio had piled up there during setup (a stall of any
    // thread while 50 frames/s flow both ways leaves a standing queue for the rest of the call)
    // would otherwise be in every round trip. Its size is reported (standingQueueBeforeWindowMs).
    let discardedMs: number[] = [];
    setTimeout(() => {
      sampling.push(host!.call<{ discardedMs: number[] }>({ type: 'flush', ids: ids.slice(0, echoCalls) }, 'flushed').then((f) => void (discardedMs = f.discardedMs)));
    }, Math.max(0, winFrom - 200 - abs()));
    setTimeout(() => {
      sampling.push(sample().then((u) => void (samples.u0 = u)));
      sampling.push(agent!.call({ type: 'go', spreadMs: seconds * 1000 - 1200 }, 'going').then(() => undefined));
    }, Math.max(0, winFrom - abs()));
    const next = new Int32Array(calls);
    const deadline = start + frames * 20 + 10_000;
    await new Promise<void>((done) => {
      const tick = () => {
        const t = performance.now();
        let remaining = false;
        for (let i = 0; i < calls; i++) {
          let k = next[i]!;
          const phase = (i * 20) / calls;
          while (k < frames && start + k * 20 + phase <= t) {
            sentAt[i]![k] = abs();
            socks[i]!.send(slabs[i]!, k * PKT, PKT, ports[i], '127.0.0.1');
            k++;
          }
          next[i] = k;
          if (k < frames) remaining = true;
        }
        if (remaining && t < deadline) setTimeout(tick, 1);
        else done();
      };
      setTimeout(tick, Math.max(0, start - performance.now()));
    });
    const U1 = await sample();
    await Promise.all(sampling);
    await sleep(1000); // drain: echoes still in flight or queued for playout
    // Memory with every call still up, after a main-thread gc (outside the window: a full gc
    // stalls the main thread for tens of ms, which would show up in every figure).
    const final = await host.call<HostUsage>({ type: 'usage', gc: true }, 'usage');
    const offHost1 = await clockOffset(host);
    const offAgent1 = await clockOffset(agent);
    const offHost = (offHost0.offsetMs + offHost1.offsetMs) / 2;
    const offAgent = (offAgent0.offsetMs + offAgent1.offsetMs) / 2;
    const hr = await host.call<{ forwardMs: Float64Array; arrived: Float64Array[]; played: Float64Array[]; workerTidFound: boolean }>({ type: 'results', ids }, 'results', 60_000);
    const ar = await agent.call<{ clears: { callSid: string; burstAt: number; clearAt: number }[]; echoedFrames: number; connections: number; probes: number }>({ type: 'results' }, 'results');
    await endChild(host, { type: 'stop' }, 'stopped');
    host = null;
    await endChild(agent, { type: 'stop' }, 'stopped');
    agent = null;
    const U0 = samples.u0;
    if (!U0) throw new Error('window start was not sampled');

    // Echo calls, frames sent inside the window.
    const rt: number[] = [];
    const toPlay: number[] = [];
    const wait: number[] = [];
    const waitFirst: number[] = [];
    const waitLast: number[] = [];
    const gwPath: number[] = [];
    const inLeg: number[] = [];
    let sent = 0;
    let echoed = 0;
    let lostBeforeAgent = 0;
    let lostAgentPath = 0;
    let lostAfterPlay = 0;
    let behindQueued = 0;
    for (let i = 0; i < echoCalls; i++) {
      const arr = hr.arrived[i]!;
      const pl = hr.played[i]!;
      for (let k = w0Frame; k < frames; k++) {
        const s0 = sentAt[i]![k]!;
        if (s0 === 0) continue;
        sent++;
        const r = recvAt[i]![k]!;
        const arrivedG = arr[k]! ? arr[k]! - offHost : 0;
        const playedG = pl[k]! ? pl[k]! - offHost : 0;
        if (r === 0) {
          if (!arrivedG) lostBeforeAgent++;
          else if (!playedG) lostAgentPath++;
          else lostAfterPlay++;
          continue;
        }
        echoed++;
        rt.push(r - s0);
        if (arrivedG) inLeg.push(arrivedG - s0);
        if (playedG) {
          toPlay.push(playedG - s0);
          wait.push(r - playedG);
          if (k < w0Frame + 50) waitFirst.push(r - playedG);
          else if (k >= frames - 50) waitLast.push(r - playedG);
          if (r - playedG > 25) behindQueued++;
          if (arrivedG) gwPath.push(pl[k]! - arr[k]!);
        }
      }
    }
    if (process.env.BRIDGE_DEBUG) {
      // Spikes in time: per 20 ms slot k, the worst gateway path and forward (arrival→play) across echo calls.
      const spikes: string[] = [];
      for (let k = w0Frame; k < frames; k++) {
        let worst = 0;
        let inWorst = 0;
        let count = 0;
        for (let i = 0; i < echoCalls; i++) {
          const a0 = hr.arrived[i]![k]!;
          const p0 = hr.played[i]![k]!;
          if (a0 && p0 && p0 - a0 > worst) worst = p0 - a0;
          if (a0 && p0 && p0 - a0 > 10) count++;
          const s0 = sentAt[i]![k]!;
          if (a0 && a0 - offHost - s0 > inWorst) inWorst = a0 - offHost - s0;
        }
        if (worst > 10 || inWorst > 5) spikes.push(`${((k - w0Frame) * 20 / 1000).toFixed(2)}s:gw${worst.toFixed(0)}(${count})/in${inWorst.toFixed(0)}`);
      }
      process.stderr.write(`spikes: ${spikes.join(' ')}\n`);
      for (const i of [0, 1, Math.floor(echoCalls / 2)]) {
        const row: string[] = [];
        for (let k = 0; k < frames; k += 10) {
          const r = recvAt[i]![k]!;
          row.push(r ? (r - sentAt[i]![k]!).toFixed(0) : 'x');
        }
        process.stderr.write(`call ${i} rt by k/10: ${row.join(' ')}\n`);
      }
    }
    // Clear probes: first non-silent → silent transition at or after the clear was sent.
    const clearMs: number[] = [];
    let clearMissing = 0;
    for (const c of ar.clears) {
      const i = Number(c.callSid.slice(2));
      const at = c.clearAt - offAgent;
      const tr = transitions[i]?.find((t) => t >= at);
      if (tr === undefined) clearMissing++;
      else clearMs.push(tr - at);
    }
    clearMissing += probes - ar.clears.length;

    const elapsed = (U1.at - U0.at) / 1000;
    const sec = (a: number, b: number) => (b - a) / elapsed;
    const gwCores = (U1.host.cpuUs - U0.host.cpuUs) / 1e6 / elapsed;
    const genCores = (U1.genUs - U0.genUs) / 1e6 / elapsed;
    const agentCores = (U1.agentUs - U0.agentUs) / 1e6 / elapsed;
    const machineCores = sec(U0.machine, U1.machine);
    const lossPercent = sent ? Math.round(((sent - echoed) / sent) * 1e4) / 100 : 100;
    const forward = dist(Array.from(hr.forwardMs));
    const rtD = dist(rt);
    const exD = dist(toPlay);
    const clearD = dist(clearMs);
    return {
      calls,
      attempts: 1,
      disturbedByOtherLoad: false,
      placement: pinned ? 'gateway process on CPU 0 only; generator and agent on CPU 1' : 'no pinning: all three processes share both cores',
      echoCalls,
      clearProbes: probes,
      seconds: Math.round(elapsed * 10) / 10,
      warmupSeconds,
      framesSent: sent,
      framesEchoed: echoed,
      lossPercent,
      lostWhere: { beforeReachingAgentSession: lostBeforeAgent, onAgentPath: lostAgentPath, afterPlay: lostAfterPlay },
      forwardLatencyMs: forward,
      roundTripMs: rtD,
      roundTripExPlayoutMs: exD,
      playoutWaitMs: dist(wait),
      playoutWaitFirstVsLastSecondOfWindowMs: { first: dist(waitFirst), last: dist(waitLast) },
      gatewayPathMs: dist(gwPath),
      generatorToWorkerMs: dist(inLeg),
      standingQueueBeforeWindowMs: dist(discardedMs),
      echoesQueuedBehindOtherAudioPercent: echoed ? pct(behindQueued / echoed) : null,
      clearToSilenceMs: clearD ? { ...clearD, missing: clearMissing } : { n: 0, missing: clearMissing },
      cpuCores: {
        gatewayProcess: Math.round(gwCores * 1000) / 1000,
        gatewayMainThread: Math.round(sec(U0.host.mainThreadSec, U1.host.mainThreadSec) * 1000) / 1000,
        gatewayMediaWorker: hr.workerTidFound ? Math.round(sec(U0.host.workerThreadSec, U1.host.workerThreadSec) * 1000) / 1000 : null,
        gatewayOtherThreads: Math.round(sec(U0.host.otherThreadsSec, U1.host.otherThreadsSec) * 1000) / 1000,
        generator: Math.round(genCores * 1000) / 1000,
        echoAgent: Math.round(agentCores * 1000) / 1000,
        machineBusy: Math.round(machineCores * 1000) / 1000,
        otherProcesses: Math.round(Math.max(0, machineCores - gwCores - genCores - agentCores) * 1000) / 1000,
      },
      gatewayCpuPercentPer100Calls: Math.round(((gwCores * 100) / calls) * 100 * 10) / 10,
      memory: {
        rssKBPerCallAfterSetup: Math.round((setupDone.rss - before.rss) / calls / 1024),
        rssKBPerCallRunning: Math.round((final.rss - before.rss) / calls / 1024),
        heapKBPerCallRunning: Math.round((final.heapMain + final.heapWorker - before.heapMain - before.heapWorker) / calls / 1024),
        heapWorkerKBPerCallRunning: Math.round((final.heapWorker - before.heapWorker) / calls / 1024),
        arrayBuffersKBPerCallRunning: Math.round((final.arrayBuffers - before.arrayBuffers) / calls / 1024),
      },
      gatewayCounters: { framesToAgents: U1.host.framesSent, droppedForBackpressure: U1.host.droppedBackpressure, mediaTimeouts: U1.host.timeouts, workerLost: U1.host.lost },
      generator: {
        packetsReceived: received,
        srtpRejected: authFailures,
        srtpRejectedWhy: rx.reduce((a, c) => ({ authFailures: a.authFailures + c.stats.authFailures, replayed: a.replayed + c.stats.replayed, tooOld: a.tooOld + c.stats.tooOld, malformed: a.malformed + c.stats.malformed }), { authFailures: 0, replayed: 0, tooOld: 0, malformed: 0 }),
        rejectedWithAnotherSsrc: foreignSsrc,
        rejectedWithAnotherCallsSsrc: foreignFromOtherCall,
      },
      agent: { connections: ar.connections, echoedFrames: ar.echoedFrames },
      clockOffsetsMs: { gatewayMinusGenerator: Math.round(offHost * 1000) / 1000, agentMinusGenerator: Math.round(offAgent * 1000) / 1000, drift: Math.round((offHost1.offsetMs - offHost0.offsetMs) * 1000) / 1000, pingRtt: Math.round(Math.max(offHost0.rttMs, offAgent0.rttMs) * 1000) / 1000 },
      targetsMet: {
        forwardP99AtMost1ms: forward ? forward.p99 <= 1 : false,
        clearToSilenceP99AtMost20ms: clearD ? clearD.p99 <= 20 && clearMissing === 0 : false,
        zeroLoss: sent > 0 && echoed === sent,
        roundTripP99AtMost5ms: rtD ? rtD.p99 <= 5 : false,
        roundTripExPlayoutP99AtMost5ms: exD ? exD.p99 <= 5 : false,
      },
    };
  } finally {
    for (const s of socks) s.close();
    await endChild(host, { type: 'stop' }, 'stopped');
    await endChild(agent, { type: 'stop' }, 'stopped');
    if (pinned) pin(process.pid, ALL_CPUS);
  }
}

async function main(): Promise<void> {
  const quick = args.includes('--quick');
  const opt = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
  const seconds = Number(opt('seconds') ?? (quick ? 4 : 10));
  const warmup = quick ? 1 : 2;
  const pinnable = canPin();
  const sweeps: { pinned: boolean; counts: number[] }[] = [
    { pinned: false, counts: opt('counts')?.split(',').map(Number) ?? (quick ? [100] : [100, 200, 300, 400, 600]) },
  ];
  if (!quick && pinnable && !args.includes('--no-pinned')) sweeps.push({ pinned: true, counts: opt('pinned-counts')?.split(',').map(Number) ?? [100, 150, 200, 250, 300] });
  if (args.includes('--only-pinned') && pinnable) sweeps.splice(0, sweeps.length, { pinned: true, counts: opt('pinned-counts')?.split(',').map(Number) ?? [100, 150, 200, 250, 300] });
  type Result = Awaited<ReturnType<typeof run>>;
  const bySweep: Record<'unpinned' | 'pinned', Result[]> = { unpinned: [], pinned: [] };
  const stoppedEarly: string[] = [];
  const failures: { calls: number; pinned: boolean; error: string }[] = [];
  let base = 30_000;
  for (const sw of sweeps) {
    const list = sw.pinned ? bySweep.pinned : bySweep.unpinned;
    for (const n of sw.counts) {
      process.stderr.write(`bench:bridge: ${n} calls, ${seconds} s${sw.pinned ? ', gateway pinned to CPU 0' : ''}\n`);
      // Other engineers' jobs share this machine: a run during which more than 0.15 cores went
      // to other processes is repeated (twice at most, after a pause); the least disturbed is kept.
      let r: Result;
      try {
        r = await run(n, seconds, warmup, base, sw.pinned);
      } catch (err) {
        // An overloaded gateway can miss the bench's own (bounded) waits: record it and stop.
        failures.push({ calls: n, pinned: sw.pinned, error: String((err as Error).message ?? err).slice(0, 300) });
        stoppedEarly.push(`${sw.pinned ? 'pinned' : 'unpinned'} sweep stopped at ${n} calls: the run failed (${String((err as Error).message).slice(0, 120)})`);
        break;
      }
      base = base >= 50_000 ? 30_000 : base + 4000;
      for (let attempt = 2; attempt <= 3 && r.cpuCores.otherProcesses > DISTURBED_CORES; attempt++) {
        process.stderr.write(`bench:bridge: ${r.cpuCores.otherProcesses} cores went to other processes; again in 15 s (attempt ${attempt})\n`);
        await sleep(15_000);
        const again = await run(n, seconds, warmup, base, sw.pinned).catch(() => null);
        if (!again) break;
        base = base >= 50_000 ? 30_000 : base + 4000;
        again.attempts = attempt;
        if (again.cpuCores.otherProcesses < r.cpuCores.otherProcesses) r = again;
        else r.attempts = attempt;
      }
      r.disturbedByOtherLoad = r.cpuCores.otherProcesses > DISTURBED_CORES;
      list.push(r);
      const collapse = r.lossPercent > 2 || (r.roundTripExPlayoutMs?.p99 ?? Infinity) > 200;
      if (collapse) {
        stoppedEarly.push(`${sw.pinned ? 'pinned' : 'unpinned'} sweep stopped after ${n} calls: loss ${r.lossPercent} %, round trip ex playout p99 ${r.roundTripExPlayoutMs?.p99 ?? '-'} ms`);
        break;
      }
    }
  }
  const maxWhere = (rs: Result[], ok: (r: Result) => boolean) => {
    const good = rs.filter(ok);
    const best = good.length ? good.reduce((a, b) => (b.calls > a.calls ? b : a)) : null;
    return best ? { calls: best.calls, gatewayCores: best.cpuCores.gatewayProcess, roundTripExPlayoutP99Ms: best.roundTripExPlayoutMs?.p99 ?? null, forwardP99Ms: best.forwardLatencyMs?.p99 ?? null } : { calls: 0 };
  };
  const strict = (r: Result) => r.targetsMet.zeroLoss && r.targetsMet.roundTripExPlayoutP99AtMost5ms;
  const measured = (r: Result) => r.targetsMet.zeroLoss && r.targetsMet.roundTripP99AtMost5ms;
  const zeroLoss = (r: Result) => r.targetsMet.zeroLoss;
  const at = (rs: Result[], n: number) => rs.find((r) => r.calls === n) ?? null;
  const pinnedStrict = maxWhere(bySweep.pinned, strict);
  const unpinnedStrict = maxWhere(bySweep.unpinned, strict);
  const figAt200 = (r: Result | null) => (r ? {
    forwardP99Ms: r.forwardLatencyMs?.p99 ?? null,
    forwardMet: r.targetsMet.forwardP99AtMost1ms,
    clearToSilenceP99Ms: 'p99' in r.clearToSilenceMs ? r.clearToSilenceMs.p99 : null,
    clearToSilenceMet: r.targetsMet.clearToSilenceP99AtMost20ms,
  } : 'not run');
  const out = {
    bench: 'bridge',
    setup: {
      carrier: 'SDES-SRTP AES_CM_128_HMAC_SHA1_80, PCMU 20 ms, one UDP socket per call, frames staggered over the 20 ms period',
      agent: 'Twilio Media Streams mode (JSON text frames, base64 µ-law), gateway dials out (ws, perMessageDeflate off); EchoAgent sends each media payload back',
      where: {
        gateway: 'child process bench/bridge-host.mjs (dist/): 1 media worker thread (SRTP, framing, playout clock) + main thread (AgentSession per call, ws client)',
        generator: 'bench process (tsx bench/bridge.ts): SRTP packet generator and receiver, echo matching',
        agent: `child process (tsx bench/bridge.ts --agent): EchoAgent for the echo calls + a clear-probe agent for ${PROBES} calls per run`,
        cores: cpus().length,
        unpinnedSweep: 'no CPU pinning: gateway (2 busy threads), generator and agent share both cores',
        pinnedSweep: pinnable ? 'taskset: gateway process (every thread: worker, main, V8/libuv helpers) on CPU 0; generator and agent on CPU 1' : 'not run (taskset unavailable or one core)',
      },
      secondsPerRun: seconds,
      warmupSecondsPerRun: warmup,
      node: process.version,
      clock: 'performance.timeOrigin + performance.now() in every process; cross-process offsets measured by IPC ping (shortest of 30, before and after) and removed',
    },
    targets: { forwardP99MsAt200Calls: 1, clearToSilenceMs: 20, callsPerCoreAtZeroLossAndRoundTripP99Ms5: 400 },
    results: bySweep,
    summary: {
      stoppedEarly,
      failures,
      disturbedRuns: [...bySweep.unpinned, ...bySweep.pinned].filter((r) => r.disturbedByOtherLoad).map((r) => `${r.calls} calls ${r.placement.startsWith('gateway process on') ? 'pinned' : 'unpinned'}: ${r.cpuCores.otherProcesses} cores to other processes`),
      at200CallsUnpinned: figAt200(at(bySweep.unpinned, 200)),
      at200CallsPinned: figAt200(at(bySweep.pinned, 200)),
      clearToSilenceMetInEveryRun: [...bySweep.unpinned, ...bySweep.pinned].every((r) => r.targetsMet.clearToSilenceP99AtMost20ms),
      callsPerCore: {
        meaning: 'the gateway side is ONE media worker thread plus the main thread (agent bridge) in one process. Pinned sweep: that process confined to one core, so its max calls IS calls per core. Unpinned: its two threads may use up to two cores (gatewayCores). Criterion: 0 loss and round trip ex playout p99 ≤ 5 ms (the measured round trip always carries the 0–20 ms playout clock wait). Only the listed N were run.',
        pinnedOneCore: pinnedStrict,
        pinnedOneCoreZeroLossOnly: maxWhere(bySweep.pinned, zeroLoss),
        unpinned: unpinnedStrict,
        unpinnedZeroLossOnly: maxWhere(bySweep.unpinned, zeroLoss),
        unpinnedMeasuredRoundTripP99AtMost5ms: maxWhere(bySweep.unpinned, measured),
        met: bySweep.pinned.length ? pinnedStrict.calls >= 400 : unpinnedStrict.calls >= 400,
      },
      memoryKBPerCallRunning: [...bySweep.unpinned, ...bySweep.pinned].map((r) => ({ calls: r.calls, pinned: r.placement.startsWith('gateway process on'), rssKB: r.memory.rssKBPerCallRunning, heapKB: r.memory.heapKBPerCallRunning })),
    },
    notes: [
      'forwardLatencyMs: RTP arrival at the media worker (its onRtp stamp) → ws.send() of that frame on the main thread (AgentSession onForwarded hook); frames that arrived in the window, all calls.',
      "roundTripMs: generator send → the echoed frame back at the generator (RTP in → worker → main → WS → echo agent → WS → main → worker playout queue → the call's next 20 ms frame slot → SRTP out). It includes waiting for the playout clock: 0–20 ms (+ up to 5 ms tick granularity) by phase, plus 20 ms for every frame of echoed audio already queued ahead (a stall anywhere in the loop leaves such a standing queue for the rest of the call: see standingQueueBeforeWindowMs, playoutWaitFirstVsLastSecondOfWindowMs, echoesQueuedBehindOtherAudioPercent).",
      "Before each window the bench flushes every echo call's playout queue once (engine.clear, what an agent's clear does) so the setup phase's standing queue is not in the figures; standingQueueBeforeWindowMs is what was flushed. Growth after that, inside the window, is kept.",
      'roundTripExPlayoutMs: generator send → echoed audio handed back to the worker (engine.play() on the gateway main thread), cross-process clock: the round trip without the playout wait (the final main → worker post, the queue, SRTP protect and the UDP send are in playoutWaitMs). The ≤ 5 ms criterion for calls per core is applied to this figure.',
      "gatewayPathMs: RTP arrival at the worker → echoed audio at engine.play(), measured inside the gateway process (includes the echo agent's time and both WebSocket hops). generatorToWorkerMs: generator send → worker onRtp stamp (UDP + the worker's event-loop delay, e.g. its GC pauses).",
      "clearToSilenceMs: the agent's ws.send(clear) → the first all-silence (0xFF) RTP frame of that call at the generator, with ~4.5 s of audio still queued. Includes the WebSocket hop, main → worker post and the wait for the call's next 20 ms frame slot (+ tick granularity).",
      'loss: marked frames sent in the window whose echo did not come back within 1 s after the last send; lostWhere: last place seen (worker arrival stamp, engine.play() stamp).',
      'memory: gateway process RSS (main + worker + ws sockets + UDP sockets) minus RSS after start, per call, with every call still up after the run (main-thread gc first); heap = main + worker isolates.',
      `attempts / disturbedByOtherLoad: a run during which processes outside this bench used more than ${DISTURBED_CORES} cores is repeated up to twice and the least disturbed attempt kept; disturbedByOtherLoad true means even that one was.`,
      'generator and agent timings include their own event-loop delays; cpuCores.machineBusy near 2 means the two cores were saturated and every figure includes CPU contention; cpuCores.otherProcesses is load from outside this bench.',
    ],
  };
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
}

if (args.includes('--agent')) await agentMain();
else await main();
