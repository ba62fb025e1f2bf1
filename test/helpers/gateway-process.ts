import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, createWriteStream, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { inject } from 'vitest';
import { until } from '../../src/testing/wait.js';

export const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'src/tollgate.ts');
const TSX = join(ROOT, 'node_modules/tsx/dist/loader.mjs');

let counter = 0;
/** Where logs and recorded secrets go: the integration run's directory, or a temp dir outside vitest. */
let runDir: string | null = null;
function itDir(): string {
  let dir: string;
  try {
    dir = inject('itDir');
  } catch {
    dir = runDir ??= mkdtempSync(join(tmpdir(), 'tollgate-run-'));
  }
  mkdirSync(join(dir, 'logs'), { recursive: true });
  mkdirSync(join(dir, 'secrets'), { recursive: true });
  return dir;
}

/** Records a secret so the suite's teardown can check that no log contains it. */
export function rememberSecret(...secrets: (string | undefined | null)[]): void {
  const lines = secrets.filter((s): s is string => typeof s === 'string' && s.length > 0);
  if (lines.length) appendFileSync(join(itDir(), 'secrets', `${process.pid}.txt`), lines.join('\n') + '\n');
}

const BUILT_CLI = join(ROOT, 'dist/tollgate.js');

export interface GatewayEnv {
  /** Run the compiled CLI from dist/ (what `npm start` and the Docker image run) instead of src/. */
  built?: boolean;
  /** TOLLGATE_* variables for the process (data dir is set per gateway unless given). */
  env?: Record<string, string>;
  dataDir?: string;
}

function logStream(name: string): WriteStream {
  return createWriteStream(join(itDir(), 'logs', `${name}-${process.pid}-${++counter}.log`));
}

/** Environment for a gateway or CLI process: a fresh data dir and generated secrets under it. */
export function gatewayEnv(opts: GatewayEnv = {}): Record<string, string> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'tollgate-gw-'));
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('TOLLGATE_')) base[k] = v;
  // SIP on any free ports, two media workers: several gateways can run side by side.
  const sip = {
    TOLLGATE_SIP__UDP_PORT: '0', TOLLGATE_SIP__TCP_PORT: '0', TOLLGATE_SIP__TLS_PORT: '0', TOLLGATE_SIP__WS_PORT: '0', TOLLGATE_SIP__WSS_PORT: '0',
    TOLLGATE_MEDIA__WORKERS: '2',
    // Calls a test leaves up (e.g. a scenario that ends at the 200) must not hold shutdown for 20 s.
    TOLLGATE_SIP__DRAIN_TIMEOUT_SEC: '2',
  };
  return { ...base, TOLLGATE_DATA_DIR: dataDir, TOLLGATE_LOG__LEVEL: 'debug', ...sip, ...opts.env };
}

export interface RunningGateway {
  readonly url: string;
  /** Bound SIP transports from the "tollgate listening" log line. */
  readonly sip: Partial<Record<'udp' | 'tcp' | 'tls' | 'ws' | 'wss', { address: string; port: number }>>;
  /** The gateway's log so far (JSON lines). */
  logs(): string;
  readonly env: Record<string, string>;
  readonly process: ChildProcess;
  /** SIGTERM, then wait for exit (SIGKILL after 10 s). Resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** Starts `tollgate serve --port 0` as a real process and waits until it listens. */
export async function startGateway(opts: GatewayEnv = {}): Promise<RunningGateway> {
  const env = gatewayEnv(opts);
  if (opts.built && !existsSync(BUILT_CLI)) throw new Error('dist/ is missing: run npm run build first (npm test does)');
  const entry = opts.built ? [BUILT_CLI] : ['--import', TSX, CLI];
  const child = spawn(process.execPath, [...entry, 'serve', '--port', '0', '--host', '127.0.0.1'], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = logStream('gateway-stdout');
  let logText = '';
  child.stdout.on('data', (d: Buffer) => {
    if (logText.length < 50_000_000) logText += d.toString();
  });
  const err = logStream('gateway-stderr');
  child.stdout.pipe(out);
  child.stderr.pipe(err);
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const listening = await new Promise<{ url: string; sip: RunningGateway['sip'] }>((res, rej) => {
    let buf = '';
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`gateway did not start in 30 s: ${stderr.slice(-2000)}`));
    }, 30_000);
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // Only until the listening line: the log keeps growing, and re-splitting all of it on every
    // chunk for the life of the process costs a core at high call rates.
    const onData = (d: Buffer): void => {
      buf += d.toString();
      for (const line of buf.split('\n')) {
        if (!line.includes('tollgate listening')) continue;
        clearTimeout(timer);
        child.stdout.off('data', onData);
        res(JSON.parse(line) as { url: string; sip: RunningGateway['sip'] });
        return;
      }
    };
    child.stdout.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`gateway exited with ${code} before listening: ${stderr.slice(-2000)}`));
    });
  });
  return {
    url: listening.url,
    sip: listening.sip ?? {},
    logs: () => logText,
    env,
    process: child,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

/** Waits (bounded) until the gateway's log holds `count` lines containing `text`; returns them parsed. */
export async function waitForLog(gw: RunningGateway, text: string, count = 1, timeoutMs = 20_000): Promise<Record<string, any>[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lines = gw.logs().split('\n').filter((l) => l.includes(text));
    if (lines.length >= count || Date.now() > deadline) return lines.map((l) => JSON.parse(l) as Record<string, any>);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a `tollgate` CLI command with the gateway's environment (same store and secrets). */
export function runCli(args: string[], env: Record<string, string>, opts: { cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, ['--import', TSX, CLI, ...args], { cwd: opts.cwd ?? ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`tollgate ${args[0] ?? ''} timed out`));
    }, opts.timeoutMs ?? 30_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      // CLI diagnostics are logs too: they join the leak check. Stdout is the command's output
      // (it shows a new secret once, by design) and is not.
      const s = logStream('cli-stderr');
      s.end(stderr);
      res({ code, stdout, stderr });
    });
  });
}

/** JSON fetch against a running gateway. */
export async function api(
  gw: { url: string },
  method: string,
  path: string,
  opts: { auth?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: any; headers: Headers; text: string }> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.auth !== undefined) headers.authorization = `Bearer ${opts.auth}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(gw.url + path, {
    method,
    headers,
    body: opts.body === undefined ? null : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await r.text();
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  return { status: r.status, body, headers: r.headers, text };
}

/** Polls GET /v1/calls/{id} until the call record satisfies `reached` (default: the call has ended), and returns it. */
export function callRecord(
  gw: { url: string },
  secret: string,
  id: string,
  reached: (c: Record<string, any>) => boolean = (c) => Boolean(c.endedAt),
): Promise<Record<string, any>> {
  return until(`call ${id} to reach the expected state`, async () => {
    const r = await api(gw, 'GET', `/v1/calls/${id}`, { auth: secret });
    return r.status === 200 && reached(r.body.call) && (r.body.call as Record<string, any>);
  }, 30_000, 100);
}
