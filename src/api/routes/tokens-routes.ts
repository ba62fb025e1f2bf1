import type { FastifyInstance } from 'fastify';
import type { ApiContext, AuthContext } from '../context.js';
import { actorOf } from '../../policy/principal.js';
import { authenticate } from '../authenticate.js';

/** POST /v1/tokens: a key with tokens:mint mints a short-lived single-use token for a client app. */
export function registerTokenRoutes(app: FastifyInstance, ctx: AuthContext & Pick<ApiContext, 'audit' | 'tokens'>): void {
  app.post('/v1/tokens', async (req, reply) => {
    const p = await authenticate(ctx, req, reply, 'tokens:mint');
    if (!p) return reply;
    // Bound to the secret this request presented: rotating it out ends the token too.
    const { token, claims } = await ctx.tokens.mint(p.key, (req.body ?? {}), { secretId: p.secretId });
    await ctx.audit.append({
      actor: actorOf(p),
      action: 'token.minted',
      target: p.key.id,
      details: { jti: claims.jti, scopes: claims.scopes, callId: claims.callId, destination: claims.destination, expiresAt: claims.expiresAt },
    });
    return reply.code(201).send({ token, ...claims });
  });
}
