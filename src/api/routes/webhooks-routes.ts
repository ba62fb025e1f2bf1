import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { ApiContext, AuthContext } from '../context.js';
import { TollgateError } from '../../errors/index.js';
import { actorOf, type Principal } from '../../policy/principal.js';
import { parseInput } from '../../util/parse-input.js';
import { identify, permit } from '../authenticate.js';
import { webhookEndpointInputSchema } from '../../webhooks/index.js';

/** The owning key defaults to the caller; null = account-wide. Another key, or null, needs keys:admin. */
export const webhookCreateSchema = webhookEndpointInputSchema.extend({ keyId: z.string().min(1).max(64).nullable().optional() });

const endpointListQuery = z.strictObject({
  keyId: z.string().max(64).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  after: z.string().max(64).optional(),
});

const deliveryListQuery = z.strictObject({
  keyId: z.string().max(64).optional(),
  endpointId: z.string().max(64).optional(),
  status: z.enum(['pending', 'delivered', 'failed']).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  /** The `next` of the previous page: `<createdAt>~<id>`, or a date-time. */
  before: z.string().max(128).regex(/^[0-9T:.+Z-]+(~whd_[0-9A-Za-z]+)?$/, 'a date-time, or the next cursor of the previous page').optional(),
});

interface Caller {
  readonly principal: Principal;
  /** Holds keys:admin: manages every key's endpoints and the account-wide ones. */
  readonly admin: boolean;
}

/**
 * Scope of the webhook routes: an API key manages its own endpoints and reads its own delivery
 * log with no scope needed (like reading or revoking itself); keys:admin manages every key's and
 * the account-wide ones. A token acts for a client app, not its key's owner: it needs keys:admin.
 * The key's status, allowlist and TLS rules apply either way (policy engine).
 */
async function caller(ctx: AuthContext & Pick<ApiContext, 'webhooks'>, req: FastifyRequest, reply: FastifyReply): Promise<Caller | null> {
  const principal = await identify(ctx, req, reply);
  if (!principal) return null;
  const admin = principal.scopes.has('keys:admin');
  const p = await permit(ctx, req, reply, principal, admin || principal.via !== 'key' ? 'keys:admin' : null);
  return p && { principal: p, admin };
}

/** Whether the caller may act for `keyId` (null = account-wide). */
const mayActFor = (c: Caller, keyId: string | null): boolean => c.admin || (keyId !== null && keyId === c.principal.key.id);

/**
 * /v1/webhooks: signed event deliveries to the key owner's systems (docs/webhooks.md). Another
 * key's endpoints and deliveries answer like missing ones, so their ids cannot be probed.
 */
export function registerWebhookRoutes(app: FastifyInstance, ctx: AuthContext & Pick<ApiContext, 'webhooks'>): void {
  app.post('/v1/webhooks', async (req, reply) => {
    const c = await caller(ctx, req, reply);
    if (!c) return reply;
    const body = parseInput(webhookCreateSchema, req.body);
    const keyId = body.keyId === undefined ? c.principal.key.id : body.keyId;
    if (!mayActFor(c, keyId)) {
      throw new TollgateError('FORBIDDEN', keyId === null ? 'only keys:admin may add account-wide webhook endpoints' : 'only keys:admin may add another key\'s webhook endpoints');
    }
    const endpoint = await ctx.webhooks.addEndpoint({ url: body.url, events: body.events, keyId }, actorOf(c.principal));
    return reply.code(201).send({ endpoint });
  });

  app.get('/v1/webhooks', async (req, reply) => {
    const c = await caller(ctx, req, reply);
    if (!c) return reply;
    const q = parseInput(endpointListQuery, req.query);
    if (q.keyId && !mayActFor(c, q.keyId)) throw new TollgateError('FORBIDDEN', 'only keys:admin may list another key\'s webhook endpoints');
    const endpoints = await ctx.webhooks.listEndpoints({ keyId: q.keyId ?? (c.admin ? undefined : c.principal.key.id), limit: q.limit, after: q.after });
    return { endpoints, next: endpoints.length === q.limit ? endpoints[endpoints.length - 1]!.id : null };
  });

  // The secret account-wide endpoints' deliveries are signed with (a key's own endpoints use the
  // key's signing secret: GET /v1/keys/{id}/signing-secret).
  app.get('/v1/webhooks/signing-secret', async (req, reply) => {
    const c = await caller(ctx, req, reply);
    if (!c) return reply;
    if (!c.admin) throw new TollgateError('FORBIDDEN', 'only keys:admin may read the account signing secret; a key\'s own is at /v1/keys/{id}/signing-secret');
    reply.header('cache-control', 'no-store');
    return { scope: 'account', signingSecret: ctx.webhooks.signingSecret(null) };
  });

  app.get('/v1/webhooks/deliveries', async (req, reply) => {
    const c = await caller(ctx, req, reply);
    if (!c) return reply;
    const q = parseInput(deliveryListQuery, req.query);
    if (q.keyId && !mayActFor(c, q.keyId)) throw new TollgateError('FORBIDDEN', 'only keys:admin may list another key\'s deliveries');
    const [before, beforeId] = q.before ? q.before.split('~') : [];
    if (before !== undefined && Number.isNaN(Date.parse(before))) throw new TollgateError('VALIDATION_FAILED', 'before: not a date-time', { details: { field: 'before' } });
    const deliveries = await ctx.webhooks.listDeliveries({
      keyId: q.keyId ?? (c.admin ? undefined : c.principal.key.id),
      endpointId: q.endpointId,
      status: q.status,
      limit: q.limit,
      before,
      beforeId,
    });
    const last = deliveries.at(-1);
    return { deliveries, next: deliveries.length === q.limit && last ? `${last.createdAt}~${last.id}` : null };
  });

  app.post<{ Params: { id: string } }>('/v1/webhooks/deliveries/:id/retry', async (req, reply) => {
    const c = await caller(ctx, req, reply);
    if (!c) return reply;
    const d = await ctx.webhooks.getDelivery(req.params.id);
    if (!d || !mayActFor(c, d.keyId)) throw new TollgateError('NOT_FOUND', `no webhook delivery ${req.params.id}`);
    return reply.code(202).send({ delivery: await ctx.webhooks.retry(d.id, actorOf(c.principal)) });
  });

  app.delete<{ Params: { id: string } }>('/v1/webhooks/:id', async (req, reply) => {
    const c = await caller(ctx, req, reply);
    if (!c) return reply;
    const e = await ctx.webhooks.getEndpoint(req.params.id);
    if (!e || !mayActFor(c, e.keyId)) throw new TollgateError('NOT_FOUND', `no webhook endpoint ${req.params.id}`);
    await ctx.webhooks.removeEndpoint(e.id, actorOf(c.principal));
    return reply.code(204).send();
  });
}
