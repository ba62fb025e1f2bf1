import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ApiContext, AuthContext } from '../context.js';
import { authenticate } from '../authenticate.js';
import { parseInput } from '../../util/parse-input.js';

const listQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  afterSeq: z.coerce.number().int().min(0).optional(),
  target: z.string().max(128).optional(),
  order: z.enum(['asc', 'desc']).default('desc'),
});

/** GET /v1/audit and GET /v1/audit/verify (scope audit:read; the chain, then its signed checkpoints). */
export function registerAuditRoutes(app: FastifyInstance, ctx: AuthContext & Pick<ApiContext, 'audit' | 'checkpoints'>): void {
  app.get('/v1/audit', async (req, reply) => {
    if (!(await authenticate(ctx, req, reply, 'audit:read'))) return reply;
    const q = parseInput(listQuery, req.query);
    const entries = await ctx.audit.list({ limit: q.limit, afterSeq: q.afterSeq, target: q.target, descending: q.order === 'desc' });
    return { entries, next: entries.length === q.limit ? entries[entries.length - 1]!.seq : null };
  });

  app.get('/v1/audit/verify', async (req, reply) => {
    if (!(await authenticate(ctx, req, reply, 'audit:read'))) return reply;
    // Against this node's checkpoint file when it has a checkpoint key (docs/audit.md).
    return ctx.checkpoints ? ctx.checkpoints.verify() : ctx.audit.verify();
  });
}
