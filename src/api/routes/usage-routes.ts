import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ApiContext, AuthContext } from '../context.js';
import { TollgateError } from '../../errors/index.js';
import { authenticate } from '../authenticate.js';
import { parseInput } from '../../util/parse-input.js';

const isoDate = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO 8601 date or date-time').transform((s) => new Date(s).toISOString());

const usageQuery = z.strictObject({
  keyId: z.string().max(64).optional(),
  from: isoDate.optional(),
  to: isoDate.optional(),
  format: z.enum(['json', 'csv']).default('json'),
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
});

/** Quotes a CSV field when needed (RFC 4180). */
const csvField = (v: string | number): string => {
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
};

/**
 * GET /v1/usage (scope usage:read): metered seconds and cost per key in a time range, as JSON
 * or CSV. A key sees its own usage; keys:admin may name any key or all keys.
 */
export function registerUsageRoutes(app: FastifyInstance, ctx: AuthContext & Pick<ApiContext, 'store'>): void {
  app.get('/v1/usage', async (req, reply) => {
    const p = await authenticate(ctx, req, reply, 'usage:read');
    if (!p) return reply;
    const q = parseInput(usageQuery, req.query);
    const admin = p.scopes.has('keys:admin');
    if (q.keyId && q.keyId !== p.key.id && !admin) throw new TollgateError('FORBIDDEN', 'only keys:admin may read another key\'s usage');
    const keyId = q.keyId ?? (admin ? undefined : p.key.id);
    const now = new Date();
    const from = q.from ?? new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString();
    const to = q.to ?? new Date(now.getTime() + 1000).toISOString();
    if (from >= to) throw new TollgateError('VALIDATION_FAILED', 'from: must be before to', { details: { field: 'from' } });
    const records = await ctx.store.listUsage({ keyId, fromIso: from, toIso: to, limit: q.limit });
    if (q.format === 'csv') {
      const lines = ['id,key_id,call_id,direction,seconds,amount,created_at'];
      for (const r of records) lines.push([r.id, r.keyId, r.callId, r.direction, r.seconds, r.amount, r.createdAt].map(csvField).join(','));
      return reply.header('content-type', 'text/csv; charset=utf-8').header('content-disposition', 'attachment; filename="usage.csv"').send(lines.join('\r\n') + '\r\n');
    }
    const totals = records.reduce((t, r) => ({ seconds: t.seconds + r.seconds, amount: t.amount + r.amount, calls: t.calls + 1 }), { seconds: 0, amount: 0, calls: 0 });
    return { from, to, keyId: keyId ?? null, totals, records, truncated: records.length === q.limit };
  });
}
