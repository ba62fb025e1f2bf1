/**
 * npm run bench:media — N concurrent SDES-SRTP echo calls on ONE media worker (one core), from
 * a bundled generator on the other core. The generator sends AES_CM_128_HMAC_SHA1_80 PCMU
 * packets every 20 ms per stream (staggered), the worker authenticates, decrypts, re-stamps,
 * encrypts and sends each frame back; the generator counts echoes (loss) and times them
 * (round trip through the gateway on loopback = the added one-way latency of the relay).
 * Gateway CPU and memory come from its own process (IPC child running dist/).
 * Targets: ≥ 500 streams per core with 0 loss and p99 ≤ 5 ms; ≤ 150 KB per active call.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { resolve } from 'node:path';
import { SrtpContext } from '../src/media/srtp.js';
import { writeRtpHeader } from '../src/media/rtp-packet.js';
import type { MediaSpec } from '../src/media/media-protocol.js';
import { summarise } from './stats.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const counts = quick ? [100] : [250, 500, 750];
const seconds = quick ? 4 : 10;
const playoutRun = !quick;

interface Host {
  child: ChildProcess;
  call<T>(msg: Record<string, unknown>, reply: string): Promise<T>;
}

async function startHost(jitterTargetMs: number, base: number): Promise<Host> {
  const init = { host: '127.0.0.1', advertisedAddress: '', portMin: base, portMax: base + 3999, workers: 1, timeoutMs: 60_000, jitterTargetMs };
  const child = fork(resolve(import.meta.dirname, 'media-host.mjs'), [JSON.stringify(init)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: process.env.TOLLGATE_BENCH_PROFILE ? ['--cpu-prof', '--cpu-prof-dir=' + process.env.TOLLGATE_BENCH_PROFILE] : [] });
  const [ready] = (await once(child, 'message')) as [{ type: string }];
  if (ready.type !== 'ready') throw new Error('media host did not start');
  return {
    child,
    call<T>(msg: Record<string, unknown>, reply: string): Promise<T> {
      return new Promise((res, rej) => {
        const on = (m: { type: string; message?: string }) => {
          if (m.type === reply) {
            child.off('message', on);
            res(m as T);
          } else if (m.type === 'error') {
            child.off('message', on);
            rej(new Error(m.message));
          }
        };
        child.on('message', on);
        child.send(msg);
      });
    },
  };
}

async function run(streams: number, jitterTargetMs: number, base: number) {
  const host = await startHost(jitterTargetMs, base);
  const before = await host.call<{ rss: number; cpuUs: number }>({ type: 'usage' }, 'usage');
  const ids = Array.from({ length: streams }, (_, i) => `call-${i}`);
  const { ports } = await host.call<{ ports: number[] }>({ type: 'open', ids }, 'opened');

  // Generator side: one socket and one SRTP sender per stream, packets protected up front.
  const frames = seconds * 50;
  const payload = Buffer.alloc(160, 0xff);
  const socks: Socket[] = [];
  const packets: Buffer[][] = [];
  const items: [string, MediaSpec][] = [];
  for (let i = 0; i < streams; i++) {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    socks.push(s);
    const callerKey = randomBytes(30);
    const gatewayKey = randomBytes(30);
    const tx = SrtpContext.fromKeySalt('AES_CM_128_HMAC_SHA1_80', callerKey);
    const ssrc = randomBytes(4).readUInt32BE(0);
    const list: Buffer[] = [];
    for (let k = 0; k < frames; k++) {
      const buf = Buffer.alloc(12 + 160);
      writeRtpHeader(buf, 0, { marker: k === 0, payloadType: 0, sequenceNumber: k, timestamp: k * 160, ssrc });
      payload.copy(buf, 12);
      list.push(tx.protectRtp(buf)!);
    }
    packets.push(list);
    items.push([ids[i]!, {
      app: 'echo', codec: 'PCMU', payloadType: 0, telephoneEventPt: null, ptimeMs: 20,
      remote: { address: '127.0.0.1', port: s.address().port, rtcpPort: s.address().port + 1 }, rtcpMux: false, signallingAddress: '127.0.0.1', trustSdp: false,
      srtp: { send: { suite: 'AES_CM_128_HMAC_SHA1_80', keySalt: gatewayKey.toString('base64') }, recv: { suite: 'AES_CM_128_HMAC_SHA1_80', keySalt: callerKey.toString('base64') } },
      direction: 'sendrecv',
    }]);
  }
  await host.call({ type: 'configure', items }, 'configured');
  const configured = await host.call<{ rss: number; cpuUs: number }>({ type: 'usage' }, 'usage');

  const sentAt: Float64Array[] = packets.map(() => new Float64Array(frames));
  const received = new Int32Array(streams);
  const latencies: number[] = [];
  socks.forEach((s, i) => {
    s.on('message', (m: Buffer) => {
      // RTCP reports (payload type byte 200-204) are not echoes: the generator's sockets sit on
      // ephemeral ports, so one stream's RTCP port can be another stream's RTP socket.
      if (m.length > 1 && m[1]! >= 200 && m[1]! <= 204) return;
      const r = received[i]!++;
      if (r < frames && r >= 50) latencies.push((performance.now() - sentAt[i]![r]!) * 1e6); // skip the first second (warm-up)
    });
  });

  // Stagger: stream i sends at i/N of each 20 ms period.
  const start = performance.now() + 50;
  const u0 = await host.call<{ cpuUs: number; userUs: number; systemUs: number }>({ type: 'usage' }, 'usage');
  const cpu0 = u0.cpuUs;
  const next = new Int32Array(streams);
  await new Promise<void>((done) => {
    const tick = () => {
      const t = performance.now();
      let remaining = false;
      for (let i = 0; i < streams; i++) {
        const k = next[i]!;
        if (k >= frames) continue;
        remaining = true;
        const due = start + k * 20 + (i * 20) / streams;
        if (due > t) continue;
        sentAt[i]![k] = performance.now();
        socks[i]!.send(packets[i]![k]!, ports[i], '127.0.0.1');
        next[i] = k + 1;
      }
      if (remaining) setImmediate(tick);
      else done();
    };
    setTimeout(tick, 50);
  });
  const elapsed = (performance.now() - start) / 1000;
  await new Promise((r) => setTimeout(r, 300 + jitterTargetMs * 3));
  const after = await host.call<{ rss: number; cpuUs: number; userUs: number; systemUs: number; timeouts: number }>({ type: 'usage' }, 'usage');
  await host.call({ type: 'stop' }, 'stopped');
  for (const s of socks) s.close();

  const sent = streams * frames;
  const got = received.reduce((a, b) => a + Math.min(b, frames), 0);
  const lat = summarise(latencies);
  const cpuCore = (after.cpuUs - cpu0) / 1e6 / elapsed;
  return {
    streams,
    playoutBufferMs: jitterTargetMs,
    seconds: Math.round(elapsed * 10) / 10,
    packetsSent: sent,
    packetsEchoed: got,
    lossPercent: Math.round(((sent - got) / sent) * 10000) / 100,
    // With a playout buffer the worker sends a frame every 20 ms whatever arrives (silence while
    // buffering), so echoes cannot be paired with sends by order: no latency figure then.
    latencyMs: jitterTargetMs === 0 ? { p50: Math.round(lat.p50Us) / 1000, p99: Math.round(lat.p99Us) / 1000, max: Math.round(lat.maxUs) / 1000 } : null,
    workerProcessCpuPercentOfOneCore: Math.round(cpuCore * 1000) / 10,
    userVsKernelPercent: [Math.round(((after.userUs - u0.userUs) / 1e6 / elapsed) * 1000) / 10, Math.round(((after.systemUs - u0.systemUs) / 1e6 / elapsed) * 1000) / 10],
    cpuPercentPer1000Streams: Math.round((cpuCore / streams) * 1000 * 1000) / 10,
    memoryKBPerCall: Math.round((configured.rss - before.rss) / streams / 1024),
  };
}

const results = [];
let base = 40_000;
for (const n of counts) {
  results.push(await run(n, 0, base));
  base += 4000;
}
if (playoutRun) results.push(await run(500, 40, base));
process.stdout.write(JSON.stringify({ bench: 'media', profile: 'AES_CM_128_HMAC_SHA1_80', codec: 'PCMU 20 ms', workers: 1, targets: { streamsPerCore: 500, loss: 0, p99Ms: 5, memoryKBPerCall: 150 }, results }, null, 2) + '\n');
