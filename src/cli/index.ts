import { userInfo } from 'node:os';
import { Command, CommanderError, Option } from 'commander';
import { loadConfig, type Config } from '../config/index.js';
import { VERSION } from '../api/server.js';
import type { CliApp, CliServices } from './app.js';
import { withoutQuery } from '../calls/number-service.js';
import { TrunkService } from '../calls/trunk-service.js';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { checkpointPublicKey, verifyAgainstCheckpoints, type ChainVerdict, type CheckpointedVerdict } from '../audit/index.js';
import { accountSidFor, signingSecretFor } from '../keys/key-identity.js';

import { registerCertsCommands } from './certs-command.js';
import { registerWebhooksCommands } from './webhooks-command.js';
import { TollgateError } from '../errors/index.js';
import type { KeyRecord } from '../store/key-record.js';
import { scanGit, scanPaths, type Finding } from '../keys/leak-scanner.js';
import { hashSecret } from '../keys/secret-crypto.js';
import { keyPrincipal } from '../policy/principal.js';
import { EXIT, makeOut, reportError, table } from './output.js';

/** A file named by an option, or a VALIDATION_FAILED naming the option. */
function readOption(option: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new TollgateError('VALIDATION_FAILED', `${option}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
}

const list = (v: string): string[] => v.split(',').map((s) => s.trim()).filter(Boolean);
const num = (v: string): number => (v.trim() === '' ? Number.NaN : Number(v));
function budget(v: string): { amount: number; period: string; currency: string } | 'none' {
  if (v === 'none') return 'none';
  const [amount, period = 'month', currency = 'USD'] = v.split('/');
  return { amount: num(amount ?? ''), period, currency: currency.toUpperCase() };
}

const actor = (): string => {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return 'cli';
  }
};

interface GlobalOpts {
  config?: string;
  json?: boolean;
}

/** Key policy flags shared by `keys create` and `keys update`. */
function withPolicyOptions(cmd: Command): Command {
  return cmd
    .option('--name <name>', 'human name of the key')
    .addOption(new Option('--role <role>', 'operator role whose scopes the key gets').choices(['admin', 'developer', 'support', 'billing', 'none']))
    .option('--scopes <list>', 'comma-separated scopes, e.g. calls:inbound,calls:outbound', list)
    .option('--cidrs <list>', 'allowed source CIDRs (IPv4/IPv6); empty = any', list)
    .option('--countries <list>', 'ISO country codes the key may dial, e.g. US,CA', list)
    .option('--blocked-prefixes <list>', 'E.164 prefixes the key may never dial, e.g. +4470', list)
    .option('--cps <n>', 'calls per second', num)
    .option('--burst <n>', 'calls admitted at once above the CPS pace (1 = strictly spaced)', num)
    .option('--max-concurrent <n>', 'maximum concurrent calls', num)
    .option('--budget <amount/period/currency>', 'budget in the smallest currency unit, e.g. 5000/month/USD, or none', budget)
    .option('--max-duration <sec>', 'maximum call duration in seconds', num)
    .option('--caller-ids <list>', 'E.164 numbers the key owns', list)
    .option('--attestation <level>', 'STIR/SHAKEN attestation of its outbound calls: A, B, C, or auto (A for its own numbers)')
    .option('--require-tls', 'SIP trunks of this key must use TLS')
    .option('--no-require-tls', 'allow SIP trunks of this key without TLS')
    .option('--expires <iso>', 'expiry date-time (ISO 8601), or none');
}

function policyFrom(o: Record<string, unknown>): Record<string, unknown> {
  const map: Record<string, string> = {
    name: 'name', scopes: 'scopes', cidrs: 'allowedCidrs', countries: 'allowedCountries', blockedPrefixes: 'blockedPrefixes',
    cps: 'callsPerSecond', burst: 'cpsBurst', maxConcurrent: 'maxConcurrentCalls', budget: 'budget',
    maxDuration: 'maxCallDurationSec', callerIds: 'callerIds', requireTls: 'requireTls',
  };
  const out: Record<string, unknown> = {};
  for (const [flag, field] of Object.entries(map)) if (o[flag] !== undefined) out[field] = o[flag];
  if (o.role !== undefined) out.role = o.role === 'none' ? null : o.role;
  if (o.budget === 'none') out.budget = null;
  if (o.expires !== undefined) out.expiresAt = o.expires === 'none' ? null : o.expires;
  if (typeof o.attestation === 'string') out.attestation = o.attestation === 'auto' ? null : o.attestation.toUpperCase();
  return out;
}

const KEY_COLUMNS = ['id', 'name', 'mode', 'status', 'role', 'hint', 'scopes', 'callsPerSecond', 'maxConcurrentCalls', 'lastUsedAt'];

function describeKey(k: KeyRecord): string {
  const lines = Object.entries(k).map(([f, v]) => `${f.padEnd(20)} ${v === null ? '-' : Array.isArray(v) ? v.join(', ') || '-' : typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
  return lines.join('\n');
}

export function buildProgram(app: CliApp): Command {
  const program = new Command('tollgate')
    .description('tollgate: a voice gateway for AI agents, where every call is authorised, limited and metered by an API key')
    .version(VERSION)
    .option('-c, --config <file>', 'YAML config file layered over config/default.yaml (also TOLLGATE_CONFIG)')
    .option('--json', 'machine-readable JSON output')
    .showHelpAfterError()
    .exitOverride();

  const g = (): GlobalOpts => program.opts<GlobalOpts>();
  const config = (overrides?: Record<string, unknown>): Config => {
    const c = loadConfig({ configFile: g().config, overrides });
    // Not refusals: say them once on stderr, where they do not mix with a command's output.
    for (const w of c.warnings) process.stderr.write(`tollgate: warning: ${w}\n`);
    return c;
  };

  /** Runs a one-shot command against the configured store, and always closes it. */
  async function withGateway<T>(fn: (gw: CliServices) => Promise<T>): Promise<T> {
    const gw = await app.open(config());
    try {
      return await fn(gw);
    } finally {
      await gw.close();
    }
  }

  program
    .command('serve')
    .description('run the gateway: REST API, agent streams, SIP and media (drains on SIGTERM)')
    .option('--host <host>', 'HTTP listen address (default from config: 127.0.0.1)')
    .option('--port <port>', 'HTTP port (0 = any free port)', num)
    .action(async (o: { host?: string; port?: number }) => {
      const overrides: Record<string, unknown> = {};
      if (o.host !== undefined || o.port !== undefined) overrides.http = { ...(o.host !== undefined ? { host: o.host } : {}), ...(o.port !== undefined ? { port: o.port } : {}) };
      await app.serve(config(overrides));
    });

  const keys = program.command('keys').description('create and manage API keys');
  withPolicyOptions(
    keys
      .command('create')
      .description('create a key; its secret is printed once and never stored')
      .addOption(new Option('--mode <mode>', 'live or test').choices(['live', 'test']).default('live')),
  ).action(async (o: Record<string, unknown>) => {
    await withGateway(async (gw) => {
      const { key, secret } = await gw.keys.create({ ...policyFrom(o), mode: o.mode as 'live' | 'test', name: (o.name as string | undefined) ?? '' }, actor());
      makeOut(!!g().json).print(
        `${describeKey(key)}\n\nsecret               ${secret}\n\nStore the secret now: tollgate keeps only its hash and cannot show it again.`,
        { key, secret },
      );
    });
  });

  keys
    .command('list')
    .description('list keys')
    .addOption(new Option('--status <status>').choices(['active', 'expired', 'revoked', 'quarantined']))
    .addOption(new Option('--mode <mode>').choices(['live', 'test']))
    .option('--limit <n>', 'at most this many', num, 100)
    .option('--after <id>', 'continue after this key id')
    .action(async (o: { status?: KeyRecord['status']; mode?: KeyRecord['mode']; limit: number; after?: string }) => {
      await withGateway(async (gw) => {
        const rows = await gw.keys.list(o);
        makeOut(!!g().json).print(table(rows as unknown as Record<string, unknown>[], KEY_COLUMNS), { keys: rows });
      });
    });

  keys
    .command('show <id>')
    .description('show one key')
    .action(async (id: string) => {
      await withGateway(async (gw) => {
        const k = await gw.keys.require(id);
        makeOut(!!g().json).print(describeKey(k), { key: k });
      });
    });

  withPolicyOptions(keys.command('update <id>').description('change a key\'s policy')).action(async (id: string, o: Record<string, unknown>) => {
    await withGateway(async (gw) => {
      const k = await gw.keys.update(id, policyFrom(o), actor());
      makeOut(!!g().json).print(describeKey(k), { key: k });
    });
  });

  keys
    .command('rotate <id>')
    .description('issue a new secret; the old one keeps working for the grace period')
    .option('--grace <sec>', 'seconds the old secret keeps working (default keys.rotationGraceSec; 0 = stop now)', num)
    .action(async (id: string, o: { grace?: number }) => {
      await withGateway(async (gw) => {
        if (o.grace !== undefined && (!Number.isInteger(o.grace) || o.grace < 0)) throw new TollgateError('VALIDATION_FAILED', 'grace: must be a whole number of seconds, 0 or more');
        const r = await gw.keys.rotate(id, o.grace, actor());
        makeOut(!!g().json).print(
          `key ${r.key.id} rotated\nnew secret           ${r.secret}\nold secret ends      ${r.oldSecretsExpireAt}\n\nStore the new secret now: it is not shown again.`,
          { key: r.key, secret: r.secret, oldSecretsExpireAt: r.oldSecretsExpireAt },
        );
      });
    });

  keys
    .command('revoke <id>')
    .description('revoke a key at once, everywhere')
    .option('--reason <text>', 'why (kept in the audit log)')
    .action(async (id: string, o: { reason?: string }) => {
      await withGateway(async (gw) => {
        const k = await gw.keys.revoke(id, o.reason, actor());
        makeOut(!!g().json).print(`key ${k.id} revoked at ${k.revokedAt ?? '-'}`, { key: k });
      });
    });

  keys
    .command('signing-secret <id>')
    .description('show the secret tollgate signs this key\'s agent upgrades and webhooks with (Tollgate-Signature), and its account SID')
    .action(async (id: string) => {
      await withGateway(async (gw) => {
        const k = await gw.keys.require(id);
        const secret = signingSecretFor(gw.config.secrets.masterKey, k.id);
        makeOut(!!g().json).print(`account SID    ${accountSidFor(k.id)}\nsigning secret ${secret}`, { keyId: k.id, accountSid: accountSidFor(k.id), signingSecret: secret });
      });
    });

  program
    .command('tokens')
    .description('short-lived single-use tokens for client apps')
    .command('mint')
    .description('mint a token for a key that holds tokens:mint')
    .requiredOption('--key-id <id>', 'the parent key')
    .option('--scopes <list>', 'a subset of the parent\'s scopes', list)
    .option('--ttl <sec>', 'lifetime in seconds (default tokens.defaultTtlSec, at most tokens.maxTtlSec)', num)
    .option('--call-id <id>', 'bind the token to one call')
    .option('--destination <e164>', 'bind the token to one destination number')
    .action(async (o: { keyId: string; scopes?: string[]; ttl?: number; callId?: string; destination?: string }) => {
      await withGateway(async (gw) => {
        const parent = await gw.keys.require(o.keyId);
        const v = await gw.policy.authorize({
          principal: keyPrincipal(parent),
          action: 'api',
          scope: 'tokens:mint',
          sourceIp: null,
        });
        if (!v.ok) throw new TollgateError(v.code, v.message);
        const { token, claims } = await gw.tokens.mint(parent, {
          ...(o.scopes ? { scopes: o.scopes as never } : {}),
          ...(o.ttl !== undefined ? { ttlSec: o.ttl } : {}),
          ...(o.callId ? { callId: o.callId } : {}),
          ...(o.destination ? { destination: o.destination } : {}),
        });
        await gw.audit.append({ actor: actor(), action: 'token.minted', target: parent.id, details: { jti: claims.jti, scopes: claims.scopes, expiresAt: claims.expiresAt } });
        makeOut(!!g().json).print(`${token}\n(expires ${claims.expiresAt}; single use)`, { token, ...claims });
      });
    });

  registerCertsCommands(program, { json: () => !!g().json, loadConfig: () => config() });
  registerWebhooksCommands(program, { json: () => !!g().json, withGateway, actor });

  const trunkService = (gw: CliServices): TrunkService => new TrunkService(gw.store, gw.audit, gw.counters, gw.config.secrets.masterKey, gw.log);
  const trunks = program.command('trunks').description('carrier trunks outbound calls leave through');
  trunks
    .command('add <name>')
    .description('add a carrier trunk (its digest password is stored sealed under the master key)')
    .requiredOption('--host <host>', 'carrier address or DNS name')
    .option('--port <port>', 'SIP port (default 5061 for tls, else 5060)', num)
    .addOption(new Option('--transport <t>', 'SIP transport towards the carrier').choices(['udp', 'tcp', 'tls']).default('tls'))
    .addOption(new Option('--srtp <mode>', 'SRTP towards the carrier').choices(['required', 'optional', 'off']).default('optional'))
    .option('--username <user>', 'digest username towards the carrier')
    .option('--password-file <file>', 'file holding the digest password (never a flag: shells keep history)')
    .option('--codecs <list>', 'PCMU,PCMA', list)
    .option('--max-cps <n>', 'the carrier\'s calls-per-second ceiling', num)
    .option('--prefixes <list>', 'destination E.164 prefixes this trunk serves (default: all)', list)
    .option('--priority <n>', 'lower wins among trunks with the same prefix length', num)
    .action(async (name: string, o: { host: string; port?: number; transport: 'udp' | 'tcp' | 'tls'; srtp: 'required' | 'optional' | 'off'; username?: string; passwordFile?: string; codecs?: string[]; maxCps?: number; prefixes?: string[]; priority?: number }) => {
      const password = o.passwordFile ? readFileSync(o.passwordFile, 'utf8').trim() : undefined;
      await withGateway(async (gw) => {
        const t = await trunkService(gw).add({
          name, host: o.host, transport: o.transport, srtp: o.srtp,
          ...(o.port !== undefined ? { port: o.port } : {}), ...(o.username ? { username: o.username } : {}), ...(password ? { password } : {}),
          ...(o.codecs ? { codecs: o.codecs as ('PCMU' | 'PCMA')[] } : {}), ...(o.maxCps !== undefined ? { maxCps: o.maxCps } : {}),
          ...(o.prefixes ? { prefixes: o.prefixes } : {}), ...(o.priority !== undefined ? { priority: o.priority } : {}),
        }, actor());
        makeOut(!!g().json).print(`trunk ${t.id} → ${t.transport} ${t.host}:${t.port} (${t.prefixes.join(', ') || 'all destinations'})`, { trunk: t });
      });
    });
  trunks
    .command('list')
    .description('list trunks')
    .action(async () => {
      await withGateway(async (gw) => {
        const all = await trunkService(gw).list({ limit: 1000 });
        makeOut(!!g().json).print(table(all.map((t) => ({ id: t.id, name: t.name, target: `${t.transport} ${t.host}:${t.port}`, prefixes: t.prefixes.join(',') || '*', enabled: t.enabled, auth: t.hasPassword })), ['id', 'name', 'target', 'prefixes', 'enabled', 'auth']), { trunks: all });
      });
    });
  trunks
    .command('remove <id>')
    .description('remove a trunk')
    .action(async (id: string) => {
      await withGateway(async (gw) => {
        await trunkService(gw).remove(id, actor());
        makeOut(!!g().json).print(`trunk ${id} removed`, { removed: id });
      });
    });
  for (const [cmd, enabled] of [['enable', true], ['disable', false]] as const) {
    trunks
      .command(`${cmd} <id>`)
      .description(`${cmd} a trunk`)
      .action(async (id: string) => {
        await withGateway(async (gw) => {
          const t = await trunkService(gw).setEnabled(id, enabled, actor());
          makeOut(!!g().json).print(`trunk ${t.id} ${enabled ? 'enabled' : 'disabled'}`, { trunk: t });
        });
      });
  }

  const calls = program.command('calls').description('call detail records');
  calls
    .command('list')
    .description('newest calls first')
    .option('--key-id <id>', 'only this key\'s calls')
    .option('--limit <n>', 'at most this many', num, 50)
    .action(async (o: { keyId?: string; limit: number }) => {
      await withGateway(async (gw) => {
        const rows = await gw.store.listCalls({ keyId: o.keyId, limit: o.limit });
        makeOut(!!g().json).print(table(rows.map((c) => ({ id: c.id, dir: c.direction, from: c.from, to: c.to, status: c.status, started: c.startedAt, seconds: c.billableSeconds, ended: c.endReason ?? '-', by: c.endedBy ?? '-' })), ['id', 'dir', 'from', 'to', 'status', 'started', 'seconds', 'ended', 'by']), { calls: rows });
      });
    });
  calls
    .command('show <id>')
    .description('one call record')
    .action(async (id: string) => {
      await withGateway(async (gw) => {
        const c = await gw.store.getCall(id);
        if (!c) throw new TollgateError('NOT_FOUND', `no call ${id}`);
        makeOut(!!g().json).print(Object.entries(c).map(([k, v]) => `${k.padEnd(16)} ${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v ?? '-')}`).join('\n'), { call: c });
      });
    });

  program
    .command('usage')
    .description('metered usage per key for a period (default: this UTC month)')
    .option('--key-id <id>', 'one key (default: all)')
    .option('--from <iso>', 'start (inclusive)')
    .option('--to <iso>', 'end (exclusive)')
    .option('--csv', 'CSV on stdout')
    .action(async (o: { keyId?: string; from?: string; to?: string; csv?: boolean }) => {
      const now = new Date();
      const iso = (v: string, flag: string): string => {
        const t = Date.parse(v);
        if (Number.isNaN(t)) throw new TollgateError('VALIDATION_FAILED', `${flag}: not an ISO 8601 date`);
        return new Date(t).toISOString();
      };
      const from = o.from ? iso(o.from, '--from') : new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString();
      const to = o.to ? iso(o.to, '--to') : new Date(now.getTime() + 1000).toISOString();
      await withGateway(async (gw) => {
        const rows = await gw.store.listUsage({ keyId: o.keyId, fromIso: from, toIso: to, limit: 100_000 });
        if (o.csv) {
          process.stdout.write(['id,key_id,call_id,direction,seconds,amount,created_at', ...rows.map((r) => [r.id, r.keyId, r.callId, r.direction, r.seconds, r.amount, r.createdAt].join(','))].join('\r\n') + '\r\n');
          return;
        }
        const perKey = new Map<string, { keyId: string; calls: number; seconds: number; amount: number }>();
        for (const r of rows) {
          const t = perKey.get(r.keyId) ?? { keyId: r.keyId, calls: 0, seconds: 0, amount: 0 };
          t.calls++;
          t.seconds += r.seconds;
          t.amount += r.amount;
          perKey.set(r.keyId, t);
        }
        const totals = [...perKey.values()];
        makeOut(!!g().json).print(totals.length ? table(totals, ['keyId', 'calls', 'seconds', 'amount']) : `no usage from ${from} to ${to}`, { from, to, totals });
      });
    });

  const numbers = program.command('numbers').description('the dialled-number table: number → target, owned by a key');
  numbers
    .command('add <number>')
    .description('route an E.164 number to a target (adds or replaces)')
    .addOption(new Option('--target <target>', 'what answers: echo, tone, agent (tollgate dials --agent-url) or attach (--webhook-url is told; an agent attaches over /v1/stream)').choices(['echo', 'tone', 'agent', 'attach']).makeOptionMandatory())
    .requiredOption('--key-id <id>', 'the key whose SIP trunk receives calls to this number')
    .addOption(new Option('--srtp <mode>', 'SRTP for calls to this number').choices(['required', 'optional', 'off']).default('optional'))
    .option('--agent-url <url>', 'target agent: the ws:// or wss:// URL of the agent')
    .option('--webhook-url <url>', 'target attach: the http(s) URL told about each incoming call')
    .addOption(new Option('--protocol <protocol>', 'wire protocol towards the agent').choices(['twilio', 'native']))
    .addOption(new Option('--sample-rate <hz>', 'native protocol: PCM16 rate (0 = PCMU 8 kHz)').choices(['0', '8000', '16000', '24000', '48000']))
    .option('--param <name=value>', 'custom parameter passed to the agent in start (repeatable)', (v: string, acc: string[] = []) => [...acc, v])
    .addOption(new Option('--fallback <what>', 'when the agent cannot be reached: tone then hang-up, or refuse with 480 / 503').choices(['tone', '480', '503']))
    .action(async (number: string, o: { target: 'echo' | 'tone' | 'agent' | 'attach'; keyId: string; srtp: 'required' | 'optional' | 'off'; agentUrl?: string; webhookUrl?: string; protocol?: 'twilio' | 'native'; sampleRate?: string; param?: string[]; fallback?: 'tone' | '480' | '503' }) => {
      const agentFlags = o.agentUrl ?? o.webhookUrl ?? o.protocol ?? o.sampleRate ?? o.param ?? o.fallback;
      let agent: Record<string, unknown> | undefined;
      if (agentFlags !== undefined) {
        const parameters: Record<string, string> = {};
        for (const p of o.param ?? []) {
          const i = p.indexOf('=');
          if (i <= 0) throw new TollgateError('VALIDATION_FAILED', `--param ${p}: expected name=value`);
          parameters[p.slice(0, i)] = p.slice(i + 1);
        }
        agent = {
          ...(o.agentUrl ? { url: o.agentUrl } : {}),
          ...(o.webhookUrl ? { webhookUrl: o.webhookUrl } : {}),
          ...(o.protocol ? { protocol: o.protocol } : {}),
          ...(o.sampleRate ? { sampleRate: Number(o.sampleRate) } : {}),
          ...(o.fallback ? { fallback: o.fallback } : {}),
          parameters,
        };
      }
      await withGateway(async (gw) => {
        const n = await gw.numbers.add({ number, target: o.target, keyId: o.keyId, srtp: o.srtp, ...(agent ? { agent: agent } : {}) }, actor());
        const via = n.agent ? ` via ${n.agent.protocol} ${withoutQuery(n.agent.url ?? n.agent.webhookUrl)}` : '';
        makeOut(!!g().json).print(`${n.number} → ${n.target}${via} (key ${n.keyId}, srtp ${n.srtp})`, { number: n });
      });
    });
  numbers
    .command('list')
    .description('list numbers')
    .option('--key-id <id>', 'only this key\'s numbers')
    .option('--limit <n>', 'at most this many', num, 100)
    .action(async (o: { keyId?: string; limit: number }) => {
      await withGateway(async (gw) => {
        const rows = await gw.numbers.list({ keyId: o.keyId, limit: o.limit });
        makeOut(!!g().json).print(table(rows as unknown as Record<string, unknown>[], ['number', 'target', 'keyId', 'srtp', 'updatedAt']), { numbers: rows });
      });
    });
  numbers
    .command('remove <number>')
    .description('remove a number')
    .action(async (number: string) => {
      await withGateway(async (gw) => {
        await gw.numbers.remove(number, actor());
        makeOut(!!g().json).print(`${number} removed`, { removed: number });
      });
    });

  const audit = program.command('audit').description('the tamper-evident audit log');
  audit
    .command('list')
    .description('newest entries first')
    .option('--limit <n>', 'at most this many', num, 50)
    .option('--target <id>', 'entries about one key')
    .action(async (o: { limit: number; target?: string }) => {
      await withGateway(async (gw) => {
        const entries = await gw.audit.list({ limit: o.limit, target: o.target, descending: true });
        makeOut(!!g().json).print(table(entries as unknown as Record<string, unknown>[], ['seq', 'ts', 'actor', 'action', 'target', 'details']), { entries });
      });
    });
  audit
    .command('verify')
    .description('check the whole hash chain, then the signed checkpoints of its head; names the first entry edited, deleted or reordered, and entries cut from the end')
    .option('--checkpoint <file>', 'check against this checkpoint file (a copy kept away from the database); default audit.checkpointFile; it must exist')
    .option('--public-key <file>', 'the checkpoint public key (SPKI PEM, from `audit checkpoint --json`) when this host has not the private key')
    .action(async (o: { checkpoint?: string; publicKey?: string }) => {
      await withGateway(async (gw) => {
        const publicKey = o.publicKey ? checkpointPublicKey(readOption('--public-key', o.publicKey)) : gw.checkpoints?.publicKey ?? null;
        if (o.checkpoint && !publicKey) {
          throw new TollgateError('CONFIG_INVALID', '--checkpoint needs the checkpoint key: configure audit.checkpointKey(File) or pass --public-key');
        }
        let v: ChainVerdict;
        let cps: CheckpointedVerdict['checkpoints'] | null = null;
        if (publicKey) {
          const checked = await verifyAgainstCheckpoints(gw.audit, { file: o.checkpoint ? resolve(o.checkpoint) : gw.config.audit.checkpointFile, publicKey, required: !!o.checkpoint });
          v = checked;
          cps = checked.checkpoints;
        } else v = await gw.audit.verify();
        const against = cps === null
          ? '\n(no checkpoint key: the end of the chain is not checked; docs/audit.md)'
          : cps.latest
            ? `\nchecked against ${cps.count} signed checkpoint(s) in ${cps.file}, the latest of entry ${cps.latest.seq} at ${cps.latest.at}`
            : `\nno checkpoint in ${cps.file} yet: entries cut from the end cannot be detected`;
        makeOut(!!g().json).print(
          v.ok ? `audit chain intact: ${v.entries} entries, head ${v.headSeq} ${v.headHash}${against}` : `audit chain BROKEN at entry ${v.seq}: ${v.message}`,
          v,
        );
        if (!v.ok) process.exitCode = EXIT.FAILED;
      });
    });
  audit
    .command('checkpoint')
    .description('sign a checkpoint of the chain\'s head now and append it to audit.checkpointFile (a serving gateway also does so every audit.checkpointIntervalSec)')
    .action(async () => {
      await withGateway(async (gw) => {
        if (!gw.checkpoints) throw new TollgateError('CONFIG_INVALID', 'no audit checkpoint key: set audit.checkpointKeyFile (or TOLLGATE_AUDIT__CHECKPOINT_KEY_FILE)');
        const r = await gw.checkpoints.checkpoint();
        if (!r.ok) {
          makeOut(!!g().json).print(`audit checkpoint REFUSED: ${r.message}`, r);
          process.exitCode = EXIT.FAILED;
          return;
        }
        const data = { ...r, file: gw.checkpoints.file, keyId: gw.checkpoints.keyId, publicKey: gw.checkpoints.publicKeyPem() };
        makeOut(!!g().json).print(
          r.checkpoint
            ? `${r.written ? 'checkpoint written' : 'head unchanged since the last checkpoint'}: entry ${r.checkpoint.seq} ${r.checkpoint.headHash} (${gw.checkpoints.file}, key ${gw.checkpoints.keyId})`
            : 'the audit log is empty: nothing to checkpoint',
          data,
        );
      });
    });

  program
    .command('scan [paths...]')
    .description('find tollgate keys in files or git history (prefix + checksum); exits 1 when it finds one')
    .option('--git', 'scan every commit of the repository in the current directory')
    .option('--staged', 'scan what is staged for commit (for a pre-commit hook)')
    .option('--quarantine', 'quarantine every found key that exists in the configured store')
    .action(async (paths: string[], o: { git?: boolean; staged?: boolean; quarantine?: boolean }) => {
      const findings: Finding[] = [];
      const errors: string[] = [];
      const git = async (mode: 'history' | 'staged'): Promise<Finding[]> => {
        try {
          return await scanGit(process.cwd(), mode);
        } catch (err) {
          throw new TollgateError('SCAN_FAILED', (err as Error).message, { cause: err });
        }
      };
      if (o.git) findings.push(...(await git('history')));
      if (o.staged) findings.push(...(await git('staged')));
      if (paths.length > 0 || (!o.git && !o.staged)) {
        findings.push(...(await scanPaths(paths.length ? paths : ['.'], (p, err) => errors.push(`${p}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`))));
      }
      const quarantined: string[] = [];
      if (o.quarantine && findings.length > 0) {
        await withGateway(async (gw) => {
          for (const f of findings) {
            const s = await gw.store.findSecretByHash(hashSecret(gw.config.secrets.pepper, f.secret));
            if (s && !quarantined.includes(s.keyId)) {
              await gw.keys.quarantine(s.keyId, `found by scan in ${f.commit ? `${f.commit.slice(0, 12)}:` : ''}${f.file}:${f.line}`, actor());
              quarantined.push(s.keyId);
            }
          }
        });
      }
      const shown = findings.map(({ secret: _secret, ...rest }) => rest);
      const human = shown.length === 0
        ? 'no tollgate keys found'
        : shown.map((f) => `${f.commit ? f.commit.slice(0, 12) + ':' : ''}${f.file}:${f.line}:${f.column}: ${f.mode} key ${f.hint}`).join('\n') +
          `\n${shown.length} key(s) found` + (quarantined.length ? `; quarantined ${quarantined.join(', ')}` : '');
      makeOut(!!g().json).print(human, { findings: shown, quarantined, errors });
      for (const e of errors) process.stderr.write(`tollgate scan: cannot read ${e}\n`);
      if (findings.length > 0) process.exitCode = EXIT.FAILED;
    });

  return program;
}

export async function main(argv: string[], app: CliApp): Promise<number> {
  const program = buildProgram(app);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT.OK;
      return EXIT.USAGE;
    }
    return reportError(err, !!program.opts<GlobalOpts>().json);
  }
}
