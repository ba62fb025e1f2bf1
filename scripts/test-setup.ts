/**
 * What `npm test` needs beyond npm, made ready before anything else runs (README "Two commands",
 * docs/testing.md). The list below is the one place these requirements are written in code.
 *
 *   tsx scripts/test-setup.ts           check; as root on Debian, install what is missing with
 *                                       apt-get and start the local PostgreSQL and Redis; check again
 *   tsx scripts/test-setup.ts --check   check only: change nothing (also TOLLGATE_TEST_SETUP=check,
 *                                       for machines whose peers are managed by hand)
 *
 * Exits 0 when everything is there. Otherwise prints what is missing and how to get it (the exact
 * apt-get line, the services to start) and exits 1, so the suite never starts only to fail deep
 * inside an integration test.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { Redis } from 'ioredis';
import { until } from '../src/testing/wait.js';

/** Node versions the project supports (package.json "engines"). */
export const NODE_RANGE = '>=20.15 <21 || >=22';
export const DEFAULT_PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

export interface Tool {
  /** What the tests run, as the user knows it. */
  readonly name: string;
  /** Debian packages that provide it. */
  readonly packages: readonly string[];
  /** Which tests use it. */
  readonly usedBy: string;
  readonly present: () => boolean;
}

const onPath = (cmd: string) => () => which(cmd) !== null;

/** The system tools the suite runs, and the Debian packages they come from. */
export const TOOLS: readonly Tool[] = [
  { name: 'SIPp', packages: ['sip-tester'], usedBy: 'SIP calls, digest and load (test/integration)', present: onPath('sipp') },
  { name: 'baresip', packages: ['baresip-core'], usedBy: 'calls over TLS with SDES-SRTP (test/integration)', present: onPath('baresip') },
  { name: 'sox', packages: ['sox'], usedBy: 'tones in and out of calls', present: onPath('sox') },
  { name: 'secsipidx', packages: ['secsipidx'], usedBy: 'STIR/SHAKEN interop', present: onPath('secsipidx') },
  { name: 'openssl', packages: ['openssl'], usedBy: 'development certificates', present: onPath('openssl') },
  { name: 'git', packages: ['git'], usedBy: 'the leaked-key scanner', present: onPath('git') },
  {
    name: 'a C compiler linking libsrtp2',
    packages: ['gcc', 'libc6-dev', 'libsrtp2-dev'],
    usedBy: 'SRTP interop with libsrtp (src/media/srtp.test.ts)',
    present: () => which('cc') !== null && compilesAgainstLibsrtp(),
  },
  // The server packages also bring what this script uses to start them (pg_ctlcluster, psql, redis-cli).
  { name: 'PostgreSQL server', packages: ['postgresql'], usedBy: 'the PostgreSQL store', present: onPath('pg_ctlcluster') },
  { name: 'Redis server', packages: ['redis-server'], usedBy: 'the Redis counters', present: onPath('redis-server') },
];

/** System folders a user's PATH may lack, searched for the system's own tools (apt-get, getcap). */
const SBIN = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];

/** Finds `cmd` in PATH, then in `extra`. */
export function which(cmd: string, path = process.env.PATH ?? '', extra: readonly string[] = []): string | null {
  for (const dir of [...path.split(delimiter), ...extra]) {
    if (!dir) continue;
    const f = join(dir, cmd);
    try {
      accessSync(f, constants.X_OK);
      return f;
    } catch {
      // not here
    }
  }
  return null;
}

/** What src/media/srtp.test.ts does: compile and link a program against libsrtp2. */
function compilesAgainstLibsrtp(): boolean {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-setup-'));
  try {
    const src = join(dir, 'probe.c');
    writeFileSync(src, '#include <srtp2/srtp.h>\nint main(void) { return srtp_init() == srtp_err_status_ok ? 0 : 1; }\n');
    return spawnSync('cc', ['-o', join(dir, 'probe'), src, '-lsrtp2'], { stdio: 'ignore', timeout: 60_000 }).status === 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Whether `version` (e.g. "20.15.1") is in NODE_RANGE. */
export function nodeSupported(version: string): boolean {
  const [major = 0, minor = 0] = version.replace(/^v/, '').split('.').map(Number);
  return (major === 20 && minor >= 15) || major >= 22;
}

/** A URL as it may be printed: without its password. */
export function printable(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(an unparsable URL)';
  }
}

const isLocal = (host: string) => ['127.0.0.1', 'localhost', '::1', '[::1]'].includes(host);

interface ServiceStatus {
  ok: boolean;
  /** Why not, when not ok. */
  error?: string;
  /** PostgreSQL: the server answers but the database does not exist. */
  noDatabase?: boolean;
  /** PostgreSQL: the server refused the credentials. */
  authFailed?: boolean;
}

async function postgresStatus(url: string, database?: string): Promise<ServiceStatus> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000, ...(database ? { database } : {}) });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('select 1');
    return { ok: true };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    // 3D000 invalid_catalog_name; 28P01 invalid_password; 28000 invalid_authorization_specification (no
    // pg_hba line). A server that wants a password the URL lacks fails in the client, without a code.
    const authFailed = e.code === '28P01' || e.code === '28000' || (!e.code && /SASL|password/i.test(e.message ?? ''));
    return { ok: false, error: e.message ?? String(err), noDatabase: e.code === '3D000', authFailed };
  } finally {
    await client.end().catch(() => {});
  }
}

async function redisStatus(url: string): Promise<ServiceStatus> {
  const r = new Redis(url, { lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  // connect() rejects with "Connection is closed."; the socket's own error says why.
  let cause: string | undefined;
  r.on('error', (err: Error) => (cause ??= err.message));
  try {
    await r.connect();
    await r.ping();
    return { ok: true };
  } catch (err) {
    return { ok: false, error: cause ?? (err as Error).message };
  } finally {
    r.disconnect();
  }
}

export interface Findings {
  nodeOk: boolean;
  missingTools: Tool[];
  /** Not root and SIPp cannot open the raw socket its pcap play needs. */
  sippNeedsRawSocket: boolean;
  pg: ServiceStatus;
  redis: ServiceStatus;
}

export interface Context {
  pgUrl: string;
  redisUrl: string;
  root: boolean;
  /** A Debian system with apt-get. */
  debian: boolean;
}

async function inspect(ctx: Context): Promise<Findings> {
  const sipp = which('sipp');
  let sippNeedsRawSocket = false;
  if (!ctx.root) {
    // SIPp replays pcap files through a raw socket (test/helpers/pcap.ts): root or CAP_NET_RAW.
    const getcap = which('getcap', process.env.PATH, SBIN);
    const caps = sipp && getcap ? spawnSync(getcap, [sipp], { encoding: 'utf8' }).stdout : '';
    sippNeedsRawSocket = !/cap_net_raw/.test(caps ?? '');
  }
  return {
    nodeOk: nodeSupported(process.versions.node),
    missingTools: TOOLS.filter((t) => !t.present()),
    sippNeedsRawSocket,
    pg: await postgresStatus(ctx.pgUrl),
    redis: await redisStatus(ctx.redisUrl),
  };
}

export const ready = (f: Findings): boolean => f.nodeOk && f.missingTools.length === 0 && !f.sippNeedsRawSocket && f.pg.ok && f.redis.ok;

/** The message for a machine that is not ready: what is missing and the commands that fix it. */
export function report(f: Findings, ctx: Context): string {
  const sudo = ctx.root ? '' : 'sudo ';
  const lines = ['tollgate test set-up: this machine is missing what the suite needs, so no test was run.', ''];
  if (!f.nodeOk) lines.push(`- Node.js ${process.versions.node}: the project supports ${NODE_RANGE} (https://nodejs.org, or NodeSource's Debian packages).`);
  for (const t of f.missingTools) lines.push(`- ${t.name}, for ${t.usedBy}: Debian package${t.packages.length > 1 ? 's' : ''} ${t.packages.join(' ')}`);
  if (f.sippNeedsRawSocket) {
    lines.push('- SIPp may not open a raw socket (it replays RTP from pcap files with one): run the suite as root, or once:');
    lines.push(`    sudo setcap cap_net_raw+ep ${which('sipp') ?? '/usr/bin/sipp'}      # getcap and setcap: Debian package libcap2-bin`);
  }
  if (!f.pg.ok) lines.push(`- PostgreSQL at ${printable(ctx.pgUrl)} (TOLLGATE_TEST_PG_URL): ${f.pg.error ?? 'not reachable'}`);
  if (!f.redis.ok) lines.push(`- Redis at ${printable(ctx.redisUrl)} (TOLLGATE_TEST_REDIS_URL): ${f.redis.error ?? 'not reachable'}`);
  lines.push('');

  const packages = [...new Set(f.missingTools.flatMap((t) => t.packages))];
  if (packages.length > 0) {
    if (ctx.debian) {
      lines.push(ctx.root ? 'Install them (`npm test` does this itself unless TOLLGATE_TEST_SETUP=check):' : 'Install them as root:');
      lines.push(`  ${sudo}apt-get update && ${sudo}apt-get install -y --no-install-recommends ${packages.join(' ')}`);
    } else {
      lines.push('This is not a Debian system, so nothing can be installed for you. Install the equivalents of these Debian packages:');
      lines.push(`  ${packages.join(' ')}`);
      lines.push('(SIPp 3.6 with pcap play, baresip 1.0 with its srtp module, secsipidx 1.2; see docs/testing.md.)');
    }
    lines.push('');
  }
  if (!f.pg.ok || !f.redis.ok) {
    lines.push('Start the services, or point the URLs at servers you run:');
    if (!f.pg.ok) {
      const c = localCluster(portOf(ctx.pgUrl, 5432));
      if (f.pg.noDatabase) lines.push(`  psql "${printable(withDatabase(ctx.pgUrl, 'postgres'))}" -c 'create database ${databaseOf(ctx.pgUrl)}'`);
      else if (f.pg.authFailed) lines.push(`  PostgreSQL refused ${printable(ctx.pgUrl)}: allow it in pg_hba.conf (\`npm test\` as root adds "host all all 127.0.0.1/32 trust") or put a password in the URL`);
      else if (c) lines.push(`  ${sudo}pg_ctlcluster ${c.version} ${c.name} start        # then: createdb ${databaseOf(ctx.pgUrl)}, as a role that may`);
      else lines.push(`  a PostgreSQL server on port ${portOf(ctx.pgUrl, 5432)}, with a database ${databaseOf(ctx.pgUrl)}`);
    }
    if (!f.redis.ok) lines.push(`  redis-server --daemonize yes --bind 127.0.0.1 --port ${portOf(ctx.redisUrl, 6379)} --save "" --appendonly no`);
    lines.push('  export TOLLGATE_TEST_PG_URL=postgres://USER:PASSWORD@HOST:5432/DB TOLLGATE_TEST_REDIS_URL=redis://HOST:6379');
    lines.push('');
  }
  if (ctx.root && ctx.debian) lines.push('As root on Debian, `npm test` installs the packages and starts the local services itself (unless TOLLGATE_TEST_SETUP=check).');
  else if (ctx.debian) lines.push('Or run `npm test` as root: on Debian it installs the packages and starts the local services itself.');
  lines.push('The unit tests need none of this: npm run test:unit');
  return lines.join('\n');
}

function portOf(url: string, dflt: number): number {
  try {
    return Number(new URL(url).port) || dflt;
  } catch {
    return dflt;
  }
}

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

function databaseOf(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice(1)) || 'postgres';
}

interface PgCluster {
  version: string;
  name: string;
  port: number;
  online: boolean;
}

/** This machine's PostgreSQL cluster on `port` (Debian's pg_lsclusters), if there is one. */
function localCluster(port: number): PgCluster | null {
  if (!which('pg_lsclusters')) return null;
  const r = spawnSync('pg_lsclusters', ['-h'], { encoding: 'utf8' });
  for (const line of (r.stdout ?? '').split('\n')) {
    const [version, name, p, status] = line.trim().split(/\s+/);
    if (version && name && Number(p) === port) return { version, name, port, online: status === 'online' };
  }
  return null;
}

/** psql as the postgres superuser over the cluster's local socket. */
function psqlAsPostgres(c: PgCluster, sql: string): string {
  return execFileSync('su', ['postgres', '-c', `psql -p ${c.port} -Atc "${sql}"`], { encoding: 'utf8' }).trim();
}

function run(cmd: string, args: string[]): void {
  process.stdout.write(`+ ${cmd} ${args.map((a) => a || '""').join(' ')}\n`);
  execFileSync(cmd, args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

/** As root on Debian: install missing packages, start local PostgreSQL and Redis, make the test database. */
async function prepare(f: Findings, ctx: Context): Promise<void> {
  const packages = [...new Set(f.missingTools.flatMap((t) => t.packages))];
  if (packages.length > 0 && ctx.root && ctx.debian) {
    run('apt-get', ['update']);
    run('apt-get', ['install', '-y', '--no-install-recommends', ...packages]);
  }

  // PostgreSQL: this machine's cluster on the URL's port (Debian's pg_ctlcluster), started if down.
  const cluster = isLocal(new URL(ctx.pgUrl).hostname) ? localCluster(portOf(ctx.pgUrl, 5432)) : null;
  if (!f.pg.ok && ctx.root && cluster) {
    const admin = withDatabase(ctx.pgUrl, 'postgres');
    if (!cluster.online) {
      // In containers the systemd redirect fails; start the cluster directly.
      try {
        run('pg_ctlcluster', ['--skip-systemctl-redirect', cluster.version, cluster.name, 'start']);
      } catch {
        run('pg_ctlcluster', [cluster.version, cluster.name, 'start']);
      }
    }
    let st: ServiceStatus = { ok: false };
    await until('PostgreSQL to accept connections', async () => {
      st = await postgresStatus(admin);
      return st.ok || st.authFailed === true || st.noDatabase === true;
    }, 30_000, 250);
    if (st.authFailed) {
      // A fresh cluster asks for passwords on TCP: trust loopback, for this test machine only.
      const hba = psqlAsPostgres(cluster, 'show hba_file');
      process.stdout.write(`+ trust 127.0.0.1/32 and ::1/128 in ${hba}\n`);
      writeFileSync(hba, `host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n${readFileSync(hba, 'utf8')}`);
      psqlAsPostgres(cluster, 'select pg_reload_conf()');
      await until('PostgreSQL to trust loopback', async () => (st = await postgresStatus(admin)).ok, 10_000, 250);
    }
  }
  // The database itself, on any server we may connect to.
  const pgNow = await postgresStatus(ctx.pgUrl);
  if (pgNow.noDatabase) {
    const c = new pg.Client({ connectionString: withDatabase(ctx.pgUrl, 'postgres'), connectionTimeoutMillis: 3000 });
    await c.connect();
    try {
      process.stdout.write(`+ create database ${databaseOf(ctx.pgUrl)}\n`);
      await c.query(`create database "${databaseOf(ctx.pgUrl).replaceAll('"', '""')}"`);
    } finally {
      await c.end();
    }
  }

  // Redis needs no root: start a throwaway local one that keeps nothing on disk.
  const ru = new URL(ctx.redisUrl);
  if (!f.redis.ok && isLocal(ru.hostname) && which('redis-server')) {
    run('redis-server', ['--daemonize', 'yes', '--bind', '127.0.0.1', '--port', String(portOf(ctx.redisUrl, 6379)), '--save', '', '--appendonly', 'no']);
    await until('Redis to answer', async () => (await redisStatus(ctx.redisUrl)).ok, 30_000, 250);
  }
}

export async function main(argv: string[]): Promise<number> {
  const checkOnly = argv.includes('--check') || process.env.TOLLGATE_TEST_SETUP === 'check';
  const ctx: Context = {
    pgUrl: process.env.TOLLGATE_TEST_PG_URL ?? DEFAULT_PG_URL,
    redisUrl: process.env.TOLLGATE_TEST_REDIS_URL ?? DEFAULT_REDIS_URL,
    root: process.getuid?.() === 0,
    debian: existsSync('/etc/debian_version') && which('apt-get', process.env.PATH, SBIN) !== null,
  };
  let f = await inspect(ctx);
  if (!ready(f) && !checkOnly) {
    await prepare(f, ctx);
    f = await inspect(ctx);
  }
  if (!ready(f)) {
    process.stderr.write(`${report(f, ctx)}\n`);
    return 1;
  }
  process.stdout.write(`tollgate test set-up: Node ${process.versions.node}, ${TOOLS.length} tools, PostgreSQL at ${printable(ctx.pgUrl)} and Redis at ${printable(ctx.redisUrl)}: ready\n`);
  return 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`tollgate test set-up failed: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
