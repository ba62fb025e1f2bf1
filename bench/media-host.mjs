// Child process for bench/media.ts: runs the compiled media engine (dist/) so the gateway's CPU
// and memory can be read apart from the load generator. Driven over IPC.
import { MediaEngine } from '../dist/media/media-engine.js';
import { createLogger } from '../dist/observability/logger.js';

const init = JSON.parse(process.argv[2]);
const log = createLogger({ level: 'warn' });
let timeouts = 0;
const engine = new MediaEngine(init, { onTimeout: () => timeouts++, onLost: () => {} }, log);
await engine.start();
process.on('message', async (m) => {
  try {
    if (m.type === 'open') {
      const ports = [];
      for (const id of m.ids) ports.push((await engine.open(id)).port);
      process.send({ type: 'opened', ports });
    } else if (m.type === 'configure') {
      for (const [id, spec] of m.items) engine.configure(id, spec);
      process.send({ type: 'configured' });
    } else if (m.type === 'usage') {
      const cpu = process.cpuUsage();
      process.send({ type: 'usage', cpuUs: cpu.user + cpu.system, userUs: cpu.user, systemUs: cpu.system, rss: process.memoryUsage().rss, timeouts });
    } else if (m.type === 'stop') {
      await engine.stop();
      process.send({ type: 'stopped' });
      process.exit(0);
    }
  } catch (err) {
    process.send({ type: 'error', message: String(err) });
  }
});
process.send({ type: 'ready' });
