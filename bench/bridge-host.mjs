// Child process for bench/bridge.ts: the gateway side of the agent bridge, from the compiled
// build (dist/). One MediaEngine with one media worker (SDES-SRTP towards the carrier) and, on
// this process's main thread, one AgentSession per call on a WebSocket this process dials to
// the agent, as src/agents/agent-bridge.ts does. Driven over IPC ('advanced' serialization, so
// typed arrays travel as they are). Instrumentation on the hot path is a few array writes:
// - the AgentSession hook onForwarded (RTP arrival at the worker → WebSocket send);
// - for echo frames (payload marked by the generator: 0xA5 0x5A, then the send index), the
//   arrival time at the worker and the time the echoed audio reached engine.play().
// Clocks: performance.timeOrigin + performance.now() (ms), the same clock the worker stamps.
import { readFileSync, readdirSync } from 'node:fs';
import { WebSocket } from 'ws';
import { MediaEngine } from '../dist/media/media-engine.js';
import { AgentSession } from '../dist/agents/agent-session.js';
import { TwilioProtocol } from '../dist/agents/protocols.js';
import { createLogger } from '../dist/observability/logger.js';

const init = JSON.parse(process.argv[2]);
const log = createLogger({ level: 'warn' });
const CLK_TCK = 100; // Linux USER_HZ
const compactPlay = process.env.BRIDGE_COMPACT_PLAY === '1';
const abs = () => performance.timeOrigin + performance.now();

/** CPU seconds (user + system) of each thread of this process, from /proc/self/task. */
function threadCpu() {
  const out = new Map();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), (Number(f[11]) + Number(f[12])) / CLK_TCK);
    } catch {
      // the thread ended between readdir and read
    }
  }
  return out;
}

let timeouts = 0;
let lost = 0;
/** callId → per-call state. */
const calls = new Map();
/** Measurement window in this process's clock: frames that arrived inside it are counted. */
let w0 = Infinity;
let w1 = -Infinity;
let inWindow = false;
let forwardMs = new Float64Array(1 << 16);
let forwardN = 0;
let droppedBackpressure = 0;
/** A flush (engine.clear on every echo call) waiting for its `cleared` answers. */
let flushing = null;
let flushed = [];

const engine = new MediaEngine(init.engine, {
  onTimeout: () => timeouts++,
  onLost: () => lost++,
  onAgent: (m) => {
    const c = calls.get(m.callId);
    if (!c || !c.session) return;
    if (m.type === 'cleared' && flushing) {
      flushed.push(m.discardedMs);
      if (flushed.length === flushing.count) flushing.done();
    }
    if (m.type === 'audio') {
      const at = m.arrivedAt;
      inWindow = at !== null && at >= w0 && at < w1;
      const a = m.audio;
      if (at !== null && a[0] === 0xa5 && a[1] === 0x5a) {
        const k = ((a[2] << 24) | (a[3] << 16) | (a[4] << 8) | a[5]) >>> 0;
        if (k < c.arrived.length) c.arrived[k] = at;
      }
    }
    c.session.onMedia(m);
    inWindow = false;
  },
}, log);

const tidsBefore = new Set(threadCpu().keys());
await engine.start();
// The media worker's thread is the one engine.start() created.
const newTids = [...threadCpu().keys()].filter((t) => !tidsBefore.has(t));
let workerTid = newTids.length === 1 ? newTids[0] : null;

function onForwarded(ms) {
  if (!inWindow) return;
  if (forwardN === forwardMs.length) {
    const grown = new Float64Array(forwardMs.length * 2);
    grown.set(forwardMs);
    forwardMs = grown;
  }
  forwardMs[forwardN++] = ms;
}

/** Opens the agent WebSocket for one call (dial-out, as AgentBridge does) and starts the session. */
function dial(callId, index, url, frames) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, [], { perMessageDeflate: false, handshakeTimeout: 10_000, followRedirects: false });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`agent connect timeout for ${callId}`));
    }, 15_000);
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    ws.once('open', () => {
      clearTimeout(timer);
      const c = { index, ws, session: null, arrived: new Float64Array(frames), played: new Float64Array(frames) };
      const callSid = 'CA' + String(index).padStart(32, '0');
      c.session = new AgentSession(ws, new TwilioProtocol(), {
        play: (audio) => {
          if (audio.length >= 6 && audio[0] === 0xa5 && audio[1] === 0x5a) {
            const k = ((audio[2] << 24) | (audio[3] << 16) | (audio[4] << 8) | audio[5]) >>> 0;
            if (k < c.played.length) c.played[k] = abs();
          }
          // BRIDGE_COMPACT_PLAY=1 (experiment only, not the gateway's behaviour): hand the worker a
          // copy that owns exactly its bytes instead of a view of Buffer's 8 KB pool slab, which
          // postMessage clones whole.
          engine.play(callId, compactPlay ? new Uint8Array(audio) : audio);
        },
        mark: (name) => engine.mark(callId, name),
        clear: () => engine.clear(callId),
        sendDtmf: (digit, ms) => engine.sendDtmf(callId, digit, ms),
        agentHangup: () => {},
      }, log, { onForwarded, onDropped: () => droppedBackpressure++ });
      calls.set(callId, c);
      c.session.start({
        callSid,
        streamSid: callSid.replace(/^CA/, 'MZ'),
        accountSid: 'AC' + '0'.repeat(32),
        from: '+14155550100',
        to: '+14155550199',
        direction: 'inbound',
        parameters: {},
        verstat: 'No-TN-Validation',
        format: { encoding: 'PCMU', sampleRate: 8000 },
      });
      resolve();
    });
  });
}

async function usage(gc) {
  if (gc) globalThis.gc?.();
  const cpu = process.cpuUsage();
  const mem = process.memoryUsage();
  const threads = threadCpu();
  if (workerTid === null) {
    // Several threads appeared during start: the busiest new one is the worker.
    let best = -1;
    for (const t of newTids) if ((threads.get(t) ?? 0) > best) { best = threads.get(t) ?? 0; workerTid = t; }
  }
  let other = 0;
  for (const [tid, s] of threads) if (tid !== process.pid && tid !== workerTid) other += s;
  // An overloaded worker may not answer within the engine's 5 s: then no worker heap figure.
  const ws = await engine.stats().catch(() => [{ heapUsed: NaN }]);
  let framesSent = 0;
  let framesDropped = 0;
  for (const c of calls.values()) {
    framesSent += c.session.framesSent;
    framesDropped += c.session.framesDropped;
  }
  return {
    cpuUs: cpu.user + cpu.system, userUs: cpu.user, systemUs: cpu.system,
    mainThreadSec: threads.get(process.pid) ?? 0, workerThreadSec: workerTid === null ? 0 : threads.get(workerTid) ?? 0, otherThreadsSec: other,
    rss: mem.rss, heapMain: mem.heapUsed, heapWorker: ws.reduce((a, s) => a + s.heapUsed, 0), external: mem.external, arrayBuffers: mem.arrayBuffers,
    timeouts, lost, framesSent, framesDropped, droppedBackpressure,
  };
}

process.on('message', async (m) => {
  try {
    if (m.type === 'ping') {
      process.send({ type: 'pong', t: abs() });
    } else if (m.type === 'open') {
      const ports = [];
      for (const id of m.ids) ports.push((await engine.open(id)).port);
      process.send({ type: 'opened', ports });
    } else if (m.type === 'configure') {
      // m.items: [callId, spec, agentUrl][]; dial in batches (bounded, like real call arrivals).
      // Calls start at random moments in real life, so their 20 ms playout clocks (set at
      // configure) have random phases: configured over 20 ms here, not all in one go.
      const per = Math.ceil(m.items.length / 20);
      for (let i = 0; i < m.items.length; i += per) {
        for (const [id, spec] of m.items.slice(i, i + per)) engine.configure(id, spec);
        await new Promise((r) => setTimeout(r, 1));
      }
      for (let i = 0; i < m.items.length; i += 50) {
        await Promise.all(m.items.slice(i, i + 50).map(([id, , url], j) => dial(id, i + j, url, m.frames)));
      }
      process.send({ type: 'configured' });
    } else if (m.type === 'window') {
      w0 = m.from;
      w1 = m.to;
      process.send({ type: 'window-set' });
    } else if (m.type === 'flush') {
      // What an agent's `clear` does: empties each call's playout queue (see bench/bridge.ts).
      flushed = [];
      await new Promise((res) => {
        const timer = setTimeout(res, 2000);
        flushing = { count: m.ids.length, done: () => { clearTimeout(timer); res(); } };
        for (const id of m.ids) engine.clear(id);
      });
      flushing = null;
      process.send({ type: 'flushed', discardedMs: flushed });
    } else if (m.type === 'usage') {
      process.send({ type: 'usage', ...(await usage(m.gc === true)) });
    } else if (m.type === 'results') {
      const arrived = [];
      const played = [];
      for (const id of m.ids) {
        const c = calls.get(id);
        arrived.push(c ? c.arrived : new Float64Array(0));
        played.push(c ? c.played : new Float64Array(0));
      }
      process.send({ type: 'results', forwardMs: forwardMs.slice(0, forwardN), arrived, played, workerTidFound: workerTid !== null });
    } else if (m.type === 'stop') {
      for (const c of calls.values()) c.session.stop('bench over');
      await engine.stop();
      process.send({ type: 'stopped' });
      setTimeout(() => process.exit(0), 100);
    }
  } catch (err) {
    process.send({ type: 'error', message: String(err?.stack ?? err) });
  }
});
process.send({ type: 'ready' });
