import type { FastifyInstance } from 'fastify';
import type { ApiContext, AuthContext } from '../context.js';
import { rotateSchema, revokeSchema } from '../../keys/key-input.js';
import { actorOf } from '../../policy/principal.js';
import { authenticate, authenticateSelfOrAdmin } from '../authenticate.js';
import { parseInput } from '../../util/parse-input.js';
import { z } from 'zod';
import { accountSidFor, signingSecretFor } from '../../keys/key-identity.js';

const listQuery = z.strictObject({
  status: z.enum(['active', 'expired', 'revoked', 'quarantined']).optional(),
  mode: z.enum(['live', 'test']).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  after: z.string().max(64).optional(),
});


/** /v1/keys: create, list, get, update, rotate, revoke. Admin scope, except a key may read or revoke itself. */
export function registerKeyRoutes(app: FastifyInstance, ctx: AuthContext & Pick<ApiContext, 'config' | 'keys'>): void {
  app.post('/v1/keys', async (req, reply) => {
    const p = await authenticate(ctx, req, reply, 'keys:admin');
    if (!p) return reply;
    const { key, secret } = await ctx.keys.create(req.body as never, actorOf(p));
    return reply.code(201).send({ key, secret, notice: 'Store the secret now: tollgate keeps only its hash and cannot show it again.' });
  });

  app.get('/v1/keys', async (req, reply) => {
    const p = await authenticate(ctx, req, reply, 'keys:admin');
    if (!p) return reply;
    const q = parseInput(listQuery, req.query);
    const keys = await ctx.keys.list(q);
    return { keys, next: keys.length === q.limit ? keys[keys.length - 1]!.id : null };
  });

  app.get<{ Params: { id: string } }>('/v1/keys/:id', async (req, reply) => {
    const p = await authenticateSelfOrAdmin(ctx, req, reply, req.params.id);
    if (!p) return reply;
    return { key: await ctx.keys.require(req.params.id) };
  });

  // The secret tollgate signs the key owner's agent upgrades and webhooks with, and the key's
  // account SID (the Twilio-shaped name agents use in REST calls).
  app.get<{ Params: { id: string } }>('/v1/keys/:id/signing-secret', async (req, reply) => {
    const p = await authenticateSelfOrAdmin(ctx, req, reply, req.params.id);
    if (!p) return reply;
    const key = await ctx.keys.require(req.params.id);
    reply.header('cache-control', 'no-store');
    return { keyId: key.id, accountSid: accountSidFor(key.id), signingSecret: signingSecretFor(ctx.config.secrets.masterKey, key.id) };
  });

  app.patch<{ Params: { id: string } }>('/v1/keys/:id', async (req, reply) => {
    const p = await authenticate(ctx, req, reply, 'keys:admin');
    if (!p) return reply;
    return { key: await ctx.keys.update(req.params.id, req.body as never, actorOf(p)) };
  });

  app.post<{ Params: { id: string } }>('/v1/keys/:id/rotate', async (req, reply) => {
    const p = await authenticate(ctx, req, reply, 'keys:admin');
    if (!p) return reply;
    const body = parseInput(rotateSchema, req.body);
    const r = await ctx.keys.rotate(req.params.id, body.graceSec, actorOf(p));
    return reply.code(201).send({
      key: r.key,
      secret: r.secret,
      oldSecretsExpireAt: r.oldSecretsExpireAt,
      notice: 'Store the new secret now: it is not shown again. The old secret stops working at oldSecretsExpireAt.',
    });
  });

  app.post<{ Params: { id: string } }>('/v1/keys/:id/revoke', async (req, reply) => {
    const p = await authenticateSelfOrAdmin(ctx, req, reply, req.params.id);
    if (!p) return reply;
    const body = parseInput(revokeSchema, req.body);
    return { key: await ctx.keys.revoke(req.params.id, body.reason, actorOf(p)) };
  });
}
