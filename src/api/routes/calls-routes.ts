import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Gateway } from '../../main.js';
import { TollgateError } from '../../errors/index.js';
import { parseInput } from '../../util/parse-input.js';
import { authenticate } from '../authenticate.js';

const listQuery = z.strictObject({
  keyId: z.string().max(64).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  /** The `next` of the previous page: `<startedAt>~<id>`, or a date-time. */
  before: z.string().max(128).regex(/^[0-9T:.+Z-]+(~CA[0-9a-f]{32})?$/, 'a date-time, or the next cursor of the previous page').optional(),
});

/**
 * /v1/calls: call detail records (CDRs), newest first. A key with calls:read sees its own
 * calls; keys:admin sees every key's.
 */
export function registerCallRoutes(app: FastifyInstance, gw: Gateway): void {
  app.get('/v1/calls', async (req, reply) => {
    const p = await authenticate(gw, req, reply, 'calls:read');
    if (!p) return reply;
    const q = parseInput(listQuery, req.query);
    const admin = p.scopes.has('keys:admin');
    if (q.keyId && q.keyId !== p.key.id && !admin) throw new TollgateError('FORBIDDEN', 'only keys:admin may list another key\'s calls');
    const [before, beforeId] = q.before ? q.before.split('~') : [];
    if (before !== undefined && Number.isNaN(Date.parse(before))) throw new TollgateError('VALIDATION_FAILED', 'before: not a date-time', { details: { field: 'before' } });
    const calls = await gw.store.listCalls({ keyId: q.keyId ?? (admin ? undefined : p.key.id), limit: q.limit, before, beforeId });
    const last = calls.at(-1);
    return { calls, next: calls.length === q.limit && last ? `${last.startedAt}~${last.id}` : null };
  });

  app.get<{ Params: { id: string } }>('/v1/calls/:id', async (req, reply) => {
    const p = await authenticate(gw, req, reply, 'calls:read');
    if (!p) return reply;
    const call = await gw.store.getCall(req.params.id);
    // Another key's call answers like a missing one: call ids cannot be probed.
    if (!call || (call.keyId !== p.key.id && !p.scopes.has('keys:admin'))) throw new TollgateError('NOT_FOUND', `no call ${req.params.id}`);
    return { call };
  });
}
