import { z } from 'zod';
import { TollgateError } from '../errors/index.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { AgentRoute, NumberRecord, Store } from '../store/store.js';
import { isE164 } from '../keys/key-input.js';
import { parseInput } from '../util/parse-input.js';
import { LruCache } from '../util/lru-cache.js';
import { systemClock, toIso, type Clock } from '../util/time.js';

/**
 * What answers a number: echo and tone (tests, line checks), agent (tollgate dials the agent's
 * WebSocket URL) and attach (a webhook is told, and an agent attaches over /v1/stream).
 */
export const NUMBER_TARGETS = ['echo', 'tone', 'agent', 'attach'] as const;

/** A URL with a scheme from `schemes` and no user:password part (credentials do not go in URLs). */
const urlOf = (schemes: readonly string[], what: string) =>
  z.string().max(2048).refine((v) => {
    try {
      const u = new URL(v);
      return schemes.includes(u.protocol) && !u.username && !u.password && u.hostname.length > 0;
    } catch {
      return false;
    }
  }, `must be a ${what} URL (${schemes.map((x) => x.replace(':', '://')).join(' or ')}) without user:password`);

export const agentRouteSchema = z.strictObject({
  url: urlOf(['ws:', 'wss:'], 'WebSocket').optional(),
  webhookUrl: urlOf(['http:', 'https:'], 'webhook').optional(),
  protocol: z.enum(['twilio', 'native']).default('twilio'),
  sampleRate: z.union([z.literal(0), z.literal(8000), z.literal(16000), z.literal(24000), z.literal(48000)]).default(0),
  parameters: z.record(z.string().min(1).max(64).regex(/^[A-Za-z0-9_.-]+$/, 'parameter names: letters, digits, _ . -'), z.string().max(1024))
    .refine((p) => Object.keys(p).length <= 32, 'at most 32 parameters')
    .default({}),
  fallback: z.enum(['tone', '480', '503']).default('480'),
});

export const numberInputSchema = z.strictObject({
  number: z.string().refine(isE164, 'must be a valid E.164 number such as +14155550100'),
  target: z.enum(NUMBER_TARGETS),
  keyId: z.string().min(1).max(64),
  srtp: z.enum(['required', 'optional', 'off']).default('optional'),
  agent: agentRouteSchema.optional(),
}).superRefine((n, ctx) => {
  if (n.target === 'agent' && !n.agent?.url) ctx.addIssue({ code: 'custom', path: ['agent', 'url'], message: 'is required for target agent (the ws:// or wss:// URL tollgate dials)' });
  if (n.target === 'attach' && !n.agent?.webhookUrl) ctx.addIssue({ code: 'custom', path: ['agent', 'webhookUrl'], message: 'is required for target attach (the URL told about incoming calls)' });
  if ((n.target === 'echo' || n.target === 'tone') && n.agent) ctx.addIssue({ code: 'custom', path: ['agent'], message: `is only for targets agent and attach, not ${n.target}` });
  if (n.agent?.protocol === 'twilio' && n.agent.sampleRate !== 0 && n.agent.sampleRate !== 8000) ctx.addIssue({ code: 'custom', path: ['agent', 'sampleRate'], message: 'Twilio mode is 8 kHz µ-law; PCM16 rates need protocol native' });
});
export type NumberInput = z.input<typeof numberInputSchema>;

/**
 * The table of dialled numbers (E.164) → target and owning key. Only the owning key's trunk
 * may receive calls to a number. Lookups are cached briefly (numbers change rarely; a change on
 * this node drops the cached entry at once).
 */
export class NumberService {
  private readonly cache = new LruCache<string, NumberRecord | null>(10_000, 5_000);

  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
    private readonly clock: Clock = systemClock,
  ) {}

  async add(input: NumberInput, actor: string): Promise<NumberRecord> {
    const p = parseInput(numberInputSchema, input);
    const key = await this.store.getKey(p.keyId);
    if (!key) throw new TollgateError('VALIDATION_FAILED', `keyId: no key with id ${p.keyId}`, { details: { field: 'keyId' } });
    if (key.status === 'revoked') throw new TollgateError('CONFLICT', `key ${p.keyId} is revoked`);
    const now = toIso(this.clock());
    const existing = await this.store.getNumber(p.number);
    const agent: AgentRoute | null = p.agent
      ? { url: p.agent.url ?? null, webhookUrl: p.agent.webhookUrl ?? null, protocol: p.agent.protocol, sampleRate: p.agent.sampleRate, parameters: p.agent.parameters, fallback: p.agent.fallback }
      : null;
    const rec: NumberRecord = { number: p.number, target: p.target, keyId: p.keyId, srtp: p.srtp, agent, createdAt: existing?.createdAt ?? now, updatedAt: now };
    await this.store.upsertNumber(rec);
    this.cache.delete(rec.number);
    await this.audit.append({ actor, action: existing ? 'number.updated' : 'number.added', target: p.keyId, details: { number: rec.number, target: rec.target, srtp: rec.srtp, ...(agent ? { agentUrl: withoutQuery(agent.url), webhookUrl: withoutQuery(agent.webhookUrl), protocol: agent.protocol } : {}) } });
    return rec;
  }

  async remove(number: string, actor: string): Promise<void> {
    const existing = await this.store.getNumber(number);
    if (!existing || !(await this.store.deleteNumber(number))) throw new TollgateError('NOT_FOUND', `no number ${number}`);
    this.cache.delete(number);
    await this.audit.append({ actor, action: 'number.removed', target: existing.keyId, details: { number } });
  }

  list(opts: { keyId?: string | undefined; limit: number; after?: string | undefined }): Promise<NumberRecord[]> {
    return this.store.listNumbers(opts);
  }

  async lookup(number: string): Promise<NumberRecord | null> {
    const cached = this.cache.get(number);
    if (cached !== undefined) return cached;
    const rec = await this.store.getNumber(number);
    this.cache.set(number, rec);
    return rec;
  }
}

/** A URL as the audit log and logs show it: no query string (it may carry the owner's tokens). */
export function withoutQuery(url: string | null): string | null {
  if (!url) return url;
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname}${u.search ? '?…' : ''}`;
}

/**
 * The dialled number from a Request-URI user part: "+14155550100", "14155550100" and
 * "tel:+1-415-555-0100" style visual separators all give "+14155550100"; anything else is
 * returned as written (and will not match a number).
 */
export function normaliseDialled(user: string): string {
  const stripped = decodeURIComponent(user.split(';')[0] ?? '').replace(/[-.() ]/g, '');
  if (/^\+[1-9][0-9]{6,14}$/.test(stripped)) return stripped;
  if (/^[1-9][0-9]{6,14}$/.test(stripped)) return '+' + stripped;
  return stripped;
}
