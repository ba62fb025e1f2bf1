import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Gateway } from '../main.js';
import type { Scope } from '../keys/scopes.js';
import { parseKeySecret } from '../keys/key-format.js';
import { TokenService } from '../keys/token-service.js';
import { keyPrincipal, tokenPrincipal, type Principal } from '../policy/principal.js';
import { authMessage, errorBody, httpStatusFor } from './http-status.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** Query parameters that would put a credential in a URL (and so in proxy and access logs). */
export const CREDENTIAL_PARAMS = ['key', 'api_key', 'apikey', 'token', 'access_token', 'secret', 'auth'];

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
export async function authenticate(gw: Gateway, req: FastifyRequest, reply: FastifyReply, scope: Scope): Promise<Principal | null> {
  const principal = await identify(gw, req, reply);
  return principal && permit(gw, req, reply, principal, scope);
}

/**
 * Like authenticate, for routes where a key may act on itself: admins (keys:admin) act on any
 * key, any other key only on `keyId`. The allowlist and status checks apply either way.
 */
export async function authenticateSelfOrAdmin(gw: Gateway, req: FastifyRequest, reply: FastifyReply, keyId: string): Promise<Principal | null> {
  const principal = await identify(gw, req, reply);
  if (!principal) return null;
  const self = principal.via === 'key' && principal.key.id === keyId && !principal.scopes.has('keys:admin');
  return permit(gw, req, reply, principal, self ? null : 'keys:admin');
}

/** Resolves the credential to a principal, or sends 401 and returns null. */
export async function identify(gw: Gateway, req: FastifyRequest, reply: FastifyReply): Promise<Principal | null> {
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
  const v = await verifyCredential(gw, m[1]!, req.ip);
  if (!v.ok) {
    sendRefusal(reply, v.code, authMessage(v.code));
    return null;
  }
  return v.principal;
}

export type CredentialResult =
  | { readonly ok: true; readonly principal: Principal }
  /** wellFormed: false when the credential is neither an API key nor a token in shape. */
  | { readonly ok: false; readonly code: Parameters<typeof authMessage>[0]; readonly wellFormed: boolean };

/**
 * Resolves an API key or a short-lived token to a principal: the one check behind every
 * surface that takes a credential (REST, /v1/stream, Twilio-style Basic auth). Refusals of
 * well-formed credentials are logged with ids only.
 */
export async function verifyCredential(gw: Gateway, credential: string, ip: string): Promise<CredentialResult> {
  if (parseKeySecret(credential)) {
    const v = await gw.keys.verify(credential);
    if (v.ok) return { ok: true, principal: keyPrincipal(v.key) };
    gw.log.info({ code: v.code, keyId: v.keyId, ip }, 'authentication refused');
    return { ok: false, code: v.code, wellFormed: true };
  }
  if (TokenService.looksLikeToken(credential)) {
    const v = await gw.tokens.verify(credential);
    if (v.ok) return { ok: true, principal: tokenPrincipal(v.key, v.claims) };
    gw.log.info({ code: v.code, keyId: v.keyId, ip }, 'authentication refused');
    return { ok: false, code: v.code, wellFormed: true };
  }
  return { ok: false, code: 'UNAUTHENTICATED', wellFormed: false };
}

/** Asks the policy engine whether the principal may use `scope` (null: no scope needed) from this address. */
export async function permit(gw: Gateway, req: FastifyRequest, reply: FastifyReply, principal: Principal, scope: Scope | null): Promise<Principal | null> {
  const verdict = await gw.policy.authorize({
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
