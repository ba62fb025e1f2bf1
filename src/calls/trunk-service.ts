import { randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { z } from 'zod';
import type { Logger } from 'pino';
import { TollgateError } from '../errors/index.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Store, TrunkRecord } from '../store/store.js';
import type { Counters } from '../policy/counters.js';
import { open, seal } from '../keys/secret-crypto.js';
import { parseInput } from '../util/parse-input.js';
import { systemClock, toIso, type Clock } from '../util/time.js';

const e164Prefix = z.string().regex(/^\+[0-9]{1,15}$/, 'an E.164 prefix such as +1 or +4420');
const hostSchema = z.string().min(1).max(253).regex(/^(\[[0-9a-fA-F:.]+\]|[0-9a-fA-F:.]+|[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)$/, 'an IP address or a DNS name');

export const trunkInputSchema = z.strictObject({
  name: z.string().trim().min(1).max(100),
  host: hostSchema,
  port: z.number().int().min(1).max(65535).optional(),
  transport: z.enum(['udp', 'tcp', 'tls']).default('tls'),
  srtp: z.enum(['required', 'optional', 'off']).default('optional'),
  username: z.string().min(1).max(128).optional(),
  password: z.string().min(1).max(256).optional(),
  codecs: z.array(z.enum(['PCMU', 'PCMA'])).min(1).max(2).default(['PCMU', 'PCMA']),
  maxCps: z.number().positive().max(10_000).default(10),
  prefixes: z.array(e164Prefix).max(1000).default([]),
  priority: z.number().int().min(0).max(1000).default(100),
  enabled: z.boolean().default(true),
}).refine((t) => Boolean(t.username) === Boolean(t.password), { message: 'username and password go together', path: ['password'] });
export type TrunkInput = z.input<typeof trunkInputSchema>;

/** A trunk as the API shows it: never the password, sealed or not. */
export type PublicTrunk = Omit<TrunkRecord, 'passwordSealed'> & { readonly hasPassword: boolean; readonly health: TrunkHealth };

export interface TrunkHealth {
  readonly status: 'unknown' | 'up' | 'down';
  readonly checkedAt: string | null;
  readonly lastStatus: number | null;
}

/** How a call reaches a trunk. */
export interface TrunkRoute {
  readonly trunk: TrunkRecord;
  readonly peer: { protocol: 'udp' | 'tcp' | 'tls'; address: string; port: number; serverName?: string };
  readonly credentials: { username: string; password: string } | null;
}

const aadOf = (id: string): string => `trunk:${id}`;

/** How long another node's trunk change can go unseen by this node's routing. */
const ROUTES_TTL_MS = 5000;

/**
 * Carrier trunks for termination: where outbound calls leave. Digest passwords towards the
 * carrier are sealed with the master key (AES-256-GCM, bound to the trunk id). A trunk is
 * chosen by the longest destination prefix it serves, then priority; disabled, unhealthy
 * (OPTIONS) and trunks at their carrier CPS ceiling are skipped.
 */
export class TrunkService {
  private readonly health = new Map<string, TrunkHealth>();
  /**
   * The trunk table for routing, read at most every ROUTES_TTL_MS rather than once per call;
   * a change made on this node drops it at once (like the number table's cache).
   */
  private routes: { at: number; trunks: Promise<TrunkRecord[]> } | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
    private readonly counters: Counters,
    private readonly masterKey: Buffer,
    private readonly log: Logger,
    private readonly clock: Clock = systemClock,
  ) {}

  private toPublic(t: TrunkRecord): PublicTrunk {
    const { passwordSealed, ...rest } = t;
    return { ...rest, hasPassword: passwordSealed !== null, health: this.health.get(t.id) ?? { status: 'unknown', checkedAt: null, lastStatus: null } };
  }

  async add(input: TrunkInput, actor: string): Promise<PublicTrunk> {
    const p = parseInput(trunkInputSchema, input);
    const id = `trk_${randomBytes(9).toString('base64url').replace(/[-_]/g, 'x')}`;
    const now = toIso(this.clock());
    const rec: TrunkRecord = {
      id,
      name: p.name,
      host: p.host,
      port: p.port ?? (p.transport === 'tls' ? 5061 : 5060),
      transport: p.transport,
      srtp: p.srtp,
      username: p.username ?? null,
      passwordSealed: p.password ? seal(this.masterKey, p.password, aadOf(id)) : null,
      codecs: p.codecs,
      maxCps: p.maxCps,
      prefixes: p.prefixes,
      priority: p.priority,
      enabled: p.enabled,
      createdAt: now,
      updatedAt: now,
    };
    await this.store.insertTrunk(rec);
    this.routes = null;
    await this.audit.append({ actor, action: 'trunk.added', target: id, details: { name: rec.name, host: rec.host, port: rec.port, transport: rec.transport, prefixes: rec.prefixes } });
    return this.toPublic(rec);
  }

  async list(opts: { limit: number; after?: string | undefined }): Promise<PublicTrunk[]> {
    return (await this.store.listTrunks(opts)).map((t) => this.toPublic(t));
  }

  async remove(id: string, actor: string): Promise<void> {
    if (!(await this.store.deleteTrunk(id))) throw new TollgateError('NOT_FOUND', `no trunk ${id}`);
    this.routes = null;
    this.health.delete(id);
    await this.audit.append({ actor, action: 'trunk.removed', target: id, details: {} });
  }

  async setEnabled(id: string, enabled: boolean, actor: string): Promise<PublicTrunk> {
    const t = await this.store.updateTrunk(id, { enabled, updatedAt: toIso(this.clock()) });
    this.routes = null;
    if (!t) throw new TollgateError('NOT_FOUND', `no trunk ${id}`);
    await this.audit.append({ actor, action: enabled ? 'trunk.enabled' : 'trunk.disabled', target: id, details: {} });
    return this.toPublic(t);
  }

  /**
   * The trunk for a destination, with its address resolved and its credentials opened; null
   * when none can take the call now. Counts against the trunk's CPS ceiling.
   */
  async route(destination: string): Promise<TrunkRoute | null> {
    const all = await this.routingTable();
    const match = (t: TrunkRecord): number => (t.prefixes.length === 0 ? 0 : Math.max(-1, ...t.prefixes.map((p) => (destination.startsWith(p) ? p.length : -1))));
    const candidates = all
      .filter((t) => t.enabled && match(t) >= 0 && this.health.get(t.id)?.status !== 'down')
      .sort((a, b) => match(b) - match(a) || a.priority - b.priority);
    for (const t of candidates) {
      const cps = await this.counters.rateLimit(`trunk-cps:${t.id}`, t.maxCps, Math.max(1, Math.ceil(t.maxCps)));
      if (!cps.allowed) continue;
      const address = await this.resolve(t.host);
      if (!address) continue;
      let credentials: TrunkRoute['credentials'] = null;
      if (t.username && t.passwordSealed) credentials = { username: t.username, password: open(this.masterKey, t.passwordSealed, aadOf(t.id)) };
      // Over TLS the carrier's certificate is checked against its DNS name, not the resolved address.
      const serverName = t.transport === 'tls' && !isIP(t.host.replace(/^\[|\]$/g, '')) ? t.host : undefined;
      return { trunk: t, peer: { protocol: t.transport, address, port: t.port, ...(serverName ? { serverName } : {}) }, credentials };
    }
    return null;
  }

  private routingTable(): Promise<TrunkRecord[]> {
    const now = this.clock();
    if (!this.routes || now - this.routes.at > ROUTES_TTL_MS) {
      const trunks = this.store.listTrunks({ limit: 1000 });
      this.routes = { at: now, trunks };
      trunks.catch(() => (this.routes = null));
    }
    return this.routes.trunks;
  }

  private async resolve(host: string): Promise<string | null> {
    const bare = host.replace(/^\[|\]$/g, '');
    if (isIP(bare)) return bare;
    try {
      return (await lookup(bare)).address;
    } catch (err) {
      this.log.warn({ err, host }, 'trunk host does not resolve');
      return null;
    }
  }

  /** Health checks: `ping(peer)` answers the OPTIONS status or null (no answer). */
  startHealthChecks(ping: (peer: TrunkRoute['peer']) => Promise<number | null>, everyMs = 30_000): void {
    const run = async (): Promise<void> => {
      for (const t of await this.store.listTrunks({ limit: 1000 }).catch(() => [] as TrunkRecord[])) {
        if (!t.enabled) continue;
        const address = await this.resolve(t.host);
        const status = address ? await ping({ protocol: t.transport, address, port: t.port }).catch(() => null) : null;
        const before = this.health.get(t.id)?.status;
        // Any answer means the carrier is there (some answer OPTIONS with 403/404/405).
        const now: TrunkHealth = { status: status === null ? 'down' : 'up', checkedAt: toIso(this.clock()), lastStatus: status };
        this.health.set(t.id, now);
        if (before !== now.status) this.log.info({ trunk: t.id, status: now.status, sip: status }, 'trunk health');
      }
    };
    this.timer = setInterval(() => void run().catch((err: unknown) => this.log.warn({ err }, 'trunk health check failed')), everyMs);
    this.timer.unref();
    void run().catch(() => {});
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
