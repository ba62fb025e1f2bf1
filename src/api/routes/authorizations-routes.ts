import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ApiContext, AuthContext } from '../context.js';
import { TollgateError } from '../../errors/index.js';
import type { CallGrant } from '../../policy/policy-engine.js';
import { LruCache } from '../../util/lru-cache.js';
import { authenticate, identify, permit, sendRefusal } from '../authenticate.js';
import { parseInput } from '../../util/parse-input.js';

const authorizeBody = z.strictObject({
  direction: z.enum(['inbound', 'outbound']),
  destination: z.string().max(32).optional(),
  callerId: z.string().max(32).optional(),
  callId: z.string().trim().min(1).max(128).optional(),
  maxDurationSec: z.number().int().optional(),
  /** Optional: when given it must be the key's own mode (MODE_MISMATCH otherwise); the grant always carries the key's mode. */
  mode: z.enum(['live', 'test']).optional(),
});

/**
 * Fields a caller may not set because the gateway decides them: the price comes from the rate
 * table (docs/rates.md), never from the request.
 */
const SERVER_SIDE = { ratePerMinute: 'the price of a call comes from the gateway\'s rate table (policy.rateTableFile), not from the request' } as const;

const completeBody = z.strictObject({ billableSeconds: z.number().min(0).max(86_400 * 2) });

/**
 * /v1/authorizations: the policy engine as a decision point for call controllers outside
 * tollgate (an SBC, a PBX dial plan). POST asks whether a call may start and reserves its
 * concurrency slot and budget, at the gateway's price for the destination and in the key's
 * mode (neither is the caller's to choose); /renew keeps a long call's lease alive; /complete settles the
 * real seconds. Grants live on the node that made them; an abandoned grant frees itself when
 * its lease expires (policy.leaseTtlSec).
 */
export function registerAuthorizationRoutes(app: FastifyInstance, ctx: AuthContext & Pick<ApiContext, 'config' | 'policy'>): void {
  const grants = new LruCache<string, CallGrant>(100_000, 2 * 86_400_000);

  app.post('/v1/authorizations', async (req, reply) => {
    for (const [field, why] of Object.entries(SERVER_SIDE)) {
      if (req.body !== null && typeof req.body === 'object' && Object.hasOwn(req.body, field)) {
        throw new TollgateError('VALIDATION_FAILED', `${field}: not accepted: ${why}`, { details: { field } });
      }
    }
    const body = parseInput(authorizeBody, req.body);
    const scope = body.direction === 'inbound' ? 'calls:inbound' : 'calls:outbound';
    const p = await authenticate(ctx, req, reply, scope);
    if (!p) return reply;
    if (body.direction === 'outbound' && !body.destination) {
      throw new TollgateError('VALIDATION_FAILED', 'destination: is required for outbound calls', { details: { field: 'destination' } });
    }
    const v = await ctx.policy.authorize({
      principal: p,
      action: body.direction === 'inbound' ? 'call.inbound' : 'call.outbound',
      scope,
      sourceIp: req.ip,
      ...(body.destination !== undefined ? { destination: body.destination } : {}),
      ...(body.callerId !== undefined ? { callerId: body.callerId } : {}),
      ...(body.callId !== undefined ? { callId: body.callId } : {}),
      ...(body.maxDurationSec !== undefined ? { requestedMaxDurationSec: body.maxDurationSec } : {}),
      // The key decides the environment: a mode in the request may only repeat it.
      ...(body.mode !== undefined ? { targetMode: body.mode } : {}),
    });
    if (!v.ok) return sendRefusal(reply, v.code, v.message, v.retryAfterMs);
    const grant = v.grant!;
    if (grants.get(grant.callId)) {
      throw new TollgateError('CONFLICT', `call ${grant.callId} is already authorised`);
    }
    grants.set(grant.callId, grant);
    return reply.code(201).send({
      callId: grant.callId,
      maxDurationSec: grant.maxDurationSec,
      limitedBy: grant.limitedBy,
      mode: grant.mode,
      ratePerMinute: grant.ratePerMinute,
      reserved: grant.budget?.reserved ?? 0,
      leaseTtlSec: ctx.config.policy.leaseTtlSec,
    });
  });

  const owned = (keyId: string, callId: string): CallGrant => {
    const g = grants.get(callId);
    if (!g || g.keyId !== keyId) throw new TollgateError('NOT_FOUND', `no open authorization ${callId} for this key`);
    return g;
  };

  app.post<{ Params: { callId: string } }>('/v1/authorizations/:callId/renew', async (req, reply) => {
    const p = await ownerOnly(ctx, req, reply);
    if (!p) return reply;
    const g = owned(p.key.id, req.params.callId);
    if (!(await ctx.policy.renew(g))) {
      grants.delete(g.callId);
      throw new TollgateError('NOT_FOUND', `authorization ${g.callId} has expired`);
    }
    return { callId: g.callId, renewed: true };
  });

  app.post<{ Params: { callId: string } }>('/v1/authorizations/:callId/complete', async (req, reply) => {
    const p = await ownerOnly(ctx, req, reply);
    if (!p) return reply;
    const body = parseInput(completeBody, req.body);
    const g = owned(p.key.id, req.params.callId);
    const seconds = Math.min(body.billableSeconds, g.maxDurationSec);
    const { cost } = await ctx.policy.complete(g, seconds);
    grants.delete(g.callId);
    return { callId: g.callId, billableSeconds: Math.ceil(seconds), cost };
  });
}

/** Renew and complete act on the caller's own grant: no extra scope, but status and allowlist still apply. */
async function ownerOnly(ctx: AuthContext & Pick<ApiContext, 'config' | 'policy'>, req: Parameters<typeof identify>[1], reply: Parameters<typeof identify>[2]) {
  const p = await identify(ctx, req, reply);
  return p && permit(ctx, req, reply, p, null);
}
