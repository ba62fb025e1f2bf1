import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ApiContext, AuthContext } from '../context.js';
import { TollgateError } from '../../errors/index.js';
import { parseInput } from '../../util/parse-input.js';
import { authenticate, identify, permit, sendRefusal } from '../authenticate.js';
import type { OutboundCalls } from '../../calls/outbound-calls.js';
import type { TrunkService } from '../../calls/trunk-service.js';
import type { CallRegistry } from '../../calls/call-registry.js';
import { isTollgateError } from '../../errors/index.js';
import { actorOf } from '../../policy/principal.js';

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
export function registerCallRoutes(app: FastifyInstance, ctx: AuthContext & Pick<ApiContext, 'store'>, outbound: OutboundCalls | null = null, trunks: TrunkService | null = null, calls: CallRegistry | null = null): void {
  // Outbound calls: the policy engine decides inside place() (scope calls:outbound, geofence,
  // blocked prefixes, caller ID, CPS, concurrency, budget); a refusal sends nothing to a carrier.
  app.post('/v1/calls', async (req, reply) => {
    const p = await identify(ctx, req, reply);
    if (!p) return reply;
    req.principal = p;
    if (!outbound) throw new TollgateError('NO_ROUTE', 'outbound calls are not running on this node');
    try {
      const placed = await outbound.place(p, req.body, { ip: req.ip, transport: req.protocol === 'https' ? 'https' : 'http' });
      return reply.code(201).send({ call: { id: placed.callSid, progress: placed.progress, maxDurationSec: placed.maxDurationSec, trunk: placed.trunk } });
    } catch (err) {
      if (isTollgateError(err) && err.code === 'RATE_LIMITED') return sendRefusal(reply, err.code, err.message, (err.details as { retryAfterMs?: number } | undefined)?.retryAfterMs);
      throw err;
    }
  });

  // Hangs up a live call of the key, inbound or outbound (it needs the scope of its direction).
  // The record says the API ended it. Another key's call answers like a missing one.
  app.delete<{ Params: { id: string } }>('/v1/calls/:id', async (req, reply) => {
    const p = await identify(ctx, req, reply);
    if (!p) return reply;
    const call = calls?.getOwned(req.params.id, p.key.id) ?? null;
    if (!(await permit(ctx, req, reply, p, call?.direction === 'inbound' ? 'calls:inbound' : 'calls:outbound'))) return reply;
    if (!call || call.ended) throw new TollgateError('NOT_FOUND', `no live call ${req.params.id}`);
    call.end('api-hangup', 'api');
    return reply.code(204).send();
  });

  if (trunks) {
    app.post('/v1/trunks', async (req, reply) => {
      const p = await authenticate(ctx, req, reply, 'keys:admin');
      if (!p) return reply;
      return reply.code(201).send({ trunk: await trunks.add(req.body as never, actorOf(p)) });
    });
    app.get('/v1/trunks', async (req, reply) => {
      const p = await authenticate(ctx, req, reply, 'keys:admin');
      if (!p) return reply;
      const q = parseInput(z.strictObject({ limit: z.coerce.number().int().min(1).max(1000).default(100), after: z.string().max(64).optional() }), req.query);
      return { trunks: await trunks.list(q) };
    });
    app.patch<{ Params: { id: string } }>('/v1/trunks/:id', async (req, reply) => {
      const p = await authenticate(ctx, req, reply, 'keys:admin');
      if (!p) return reply;
      const b = parseInput(z.strictObject({ enabled: z.boolean() }), req.body);
      return { trunk: await trunks.setEnabled(req.params.id, b.enabled, actorOf(p)) };
    });
    app.delete<{ Params: { id: string } }>('/v1/trunks/:id', async (req, reply) => {
      const p = await authenticate(ctx, req, reply, 'keys:admin');
      if (!p) return reply;
      await trunks.remove(req.params.id, actorOf(p));
      return reply.code(204).send();
    });
  }

  app.get('/v1/calls', async (req, reply) => {
    const p = await authenticate(ctx, req, reply, 'calls:read');
    if (!p) return reply;
    const q = parseInput(listQuery, req.query);
    const admin = p.scopes.has('keys:admin');
    if (q.keyId && q.keyId !== p.key.id && !admin) throw new TollgateError('FORBIDDEN', 'only keys:admin may list another key\'s calls');
    const [before, beforeId] = q.before ? q.before.split('~') : [];
    if (before !== undefined && Number.isNaN(Date.parse(before))) throw new TollgateError('VALIDATION_FAILED', 'before: not a date-time', { details: { field: 'before' } });
    const calls = await ctx.store.listCalls({ keyId: q.keyId ?? (admin ? undefined : p.key.id), limit: q.limit, before, beforeId });
    const last = calls.at(-1);
    return { calls, next: calls.length === q.limit && last ? `${last.startedAt}~${last.id}` : null };
  });

  app.get<{ Params: { id: string } }>('/v1/calls/:id', async (req, reply) => {
    const p = await authenticate(ctx, req, reply, 'calls:read');
    if (!p) return reply;
    const call = await ctx.store.getCall(req.params.id);
    // Another key's call answers like a missing one: call ids cannot be probed.
    if (!call || (call.keyId !== p.key.id && !p.scopes.has('keys:admin'))) throw new TollgateError('NOT_FOUND', `no call ${req.params.id}`);
    return { call: { ...call, progress: calls?.get(call.id)?.progress ?? progressOf(call) } };
  });
}

/** A finished or inbound call's progress from its record. */
function progressOf(c: { status: string; endReason: string | null; details: Readonly<Record<string, unknown>> }): string {
  if (c.status === 'ended') return 'ended';
  if (c.status === 'failed') return c.endReason === 'busy' || c.endReason === 'no-answer' ? c.endReason : 'failed';
  if (c.status === 'answered') return 'answered';
  return typeof c.details.progress === 'string' ? c.details.progress : 'ringing';
}
