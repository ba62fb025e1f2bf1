import { z } from 'zod';
import { TollgateError } from '../errors/index.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { NumberRecord, Store } from '../store/store.js';
import { isE164 } from '../keys/key-input.js';
import { parseInput } from '../util/parse-input.js';
import { LruCache } from '../util/lru-cache.js';
import { systemClock, toIso, type Clock } from '../util/time.js';

/** Targets a number can route to now; agent targets arrive with the agent bridge. */
export const NUMBER_TARGETS = ['echo', 'tone'] as const;

export const numberInputSchema = z.strictObject({
  number: z.string().refine(isE164, 'must be a valid E.164 number such as +14155550100'),
  target: z.enum(NUMBER_TARGETS),
  keyId: z.string().min(1).max(64),
  srtp: z.enum(['required', 'optional', 'off']).default('optional'),
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
    const rec: NumberRecord = { number: p.number, target: p.target, keyId: p.keyId, srtp: p.srtp, createdAt: existing?.createdAt ?? now, updatedAt: now };
    await this.store.upsertNumber(rec);
    this.cache.delete(rec.number);
    await this.audit.append({ actor, action: existing ? 'number.updated' : 'number.added', target: p.keyId, details: { number: rec.number, target: rec.target, srtp: rec.srtp } });
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
