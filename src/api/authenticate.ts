import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AuthContext } from './context.js';
import type { Scope } from '../store/scopes.js';
import type { Principal } from '../policy/principal.js';
import { CREDENTIAL_PARAMS } from '../policy/credentials.js';
import { authMessage, errorBody, httpStatusFor } from './http-status.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}


export function sendRefusal(reply: FastifyReply, code: Parameters<typeof httpStatusFor>[0], message: string, retryAfterMs?: number): FastifyReply {
  const status = httpStatusFor(code);
  if (retryAfterMs !== undefined) reply.header('retry-after', String(Math.max(1, Math.ceil(retryAfterMs / 1000))));
  if (status === 401) reply.header('www-authenticate', 'Bearer realm="tollgate"');
  return reply.code(status).send(errorBody(code, message, { retryAfterMs }));
}

/**
 * Resolves `Authorization: Bearer <key or token>` to a principal, then asks the policy engine
 * whether it may use `scope` from this address. Credentials are accepted only in the header.
 * Returns null after sending the refusal.
 */
export async function authenticate(ctx: AuthContext, req: FastifyRequest, reply: FastifyReply, scope: Scope): Promise<Principal | null> {
  const principal = await identify(ctx, req, reply);
  return principal && permit(ctx, req, reply, principal, scope);
}

/**
 * Like authenticate, for routes where a key may act on itself: admins (keys:admin) act on any
 * key, any other key only on `keyId`. The allowlist and status checks apply either way.
 */
export async function authenticateSelfOrAdmin(ctx: AuthContext, req: FastifyRequest, reply: FastifyReply, keyId: string): Promise<Principal | null> {
  const principal = await identify(ctx, req, reply);
  if (!principal) return null;
  const self = principal.via === 'key' && principal.key.id === keyId && !principal.scopes.has('keys:admin');
  return permit(ctx, req, reply, principal, self ? null : 'keys:admin');
}

/** Resolves the credential to a principal, or sends 401 and returns null. */
export async function identify(ctx: AuthContext, req: FastifyRequest, reply: FastifyReply): Promise<Principal | null> {
  const q = req.query as Record<string, unknown> | undefined;
  if (q && CREDENTIAL_PARAMS.some((p) => p in q)) {
    reply.code(400).send(errorBody('VALIDATION_FAILED', 'credentials must be sent in the Authorization header, never in the URL'));
    return null;
  }
  const header = req.headers.authorization;
  const m = typeof header === 'string' ? /^Bearer[ ]+(\S+)\s*$/i.exec(header) : null;
  if (!m) {
    sendRefusal(reply, 'UNAUTHENTICATED', 'send an API key or token as Authorization: Bearer <credential>');
    return null;
  }
  const v = await ctx.credentials.verify(m[1]!, req.ip);
  if (!v.ok) {
    sendRefusal(reply, v.code, authMessage(v.code));
    return null;
  }
  return v.principal;
}

/** Asks the policy engine whether the principal may use `scope` (null: no scope needed) from this address. */
export async function permit(ctx: AuthContext, req: FastifyRequest, reply: FastifyReply, principal: Principal, scope: Scope | null): Promise<Principal | null> {
  const verdict = await ctx.policy.authorize({
    principal,
    action: 'api',
    scope,
    sourceIp: req.ip,
    transport: req.protocol === 'https' ? 'https' : 'http',
  });
  if (!verdict.ok) {
    sendRefusal(reply, verdict.code, verdict.message, verdict.retryAfterMs);
    return null;
  }
  req.principal = principal;
  return principal;
}
