import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ApiContext, AuthContext } from '../context.js';
import { TollgateError } from '../../errors/index.js';
import { actorOf } from '../../policy/principal.js';
import { parseInput } from '../../util/parse-input.js';
import { authenticate } from '../authenticate.js';

const listQuery = z.strictObject({
  keyId: z.string().max(64).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  after: z.string().max(32).optional(),
});

/**
 * /v1/numbers: the dialled-number table. keys:admin manages every number; a key with
 * calls:read lists its own.
 */
export function registerNumberRoutes(app: FastifyInstance, ctx: AuthContext & Pick<ApiContext, 'numbers'>): void {
  app.post('/v1/numbers', async (req, reply) => {
    const p = await authenticate(ctx, req, reply, 'keys:admin');
    if (!p) return reply;
    return reply.code(201).send({ number: await ctx.numbers.add(req.body as never, actorOf(p)) });
  });

  app.get('/v1/numbers', async (req, reply) => {
    const p = await authenticate(ctx, req, reply, 'calls:read');
    if (!p) return reply;
    const q = parseInput(listQuery, req.query);
    const admin = p.scopes.has('keys:admin');
    if (q.keyId && q.keyId !== p.key.id && !admin) throw new TollgateError('FORBIDDEN', 'only keys:admin may list another key\'s numbers');
    const numbers = await ctx.numbers.list({ keyId: q.keyId ?? (admin ? undefined : p.key.id), limit: q.limit, after: q.after });
    return { numbers, next: numbers.length === q.limit ? numbers[numbers.length - 1]!.number : null };
  });

  app.delete<{ Params: { number: string } }>('/v1/numbers/:number', async (req, reply) => {
    const p = await authenticate(ctx, req, reply, 'keys:admin');
    if (!p) return reply;
    await ctx.numbers.remove(req.params.number, actorOf(p));
    return reply.code(204).send();
  });
}
