import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyInstance, type FastifyError } from 'fastify';
import type { ApiContext } from './context.js';
import { isTollgateError } from '../errors/index.js';
import { errorBody } from './http-status.js';
import { openApiDocument } from './openapi.js';
import { registerKeyRoutes } from './routes/keys-routes.js';
import { registerTokenRoutes } from './routes/tokens-routes.js';
import { registerAuditRoutes } from './routes/audit-routes.js';
import { registerUsageRoutes } from './routes/usage-routes.js';
import { registerAuthorizationRoutes } from './routes/authorizations-routes.js';
import { registerNumberRoutes } from './routes/numbers-routes.js';
import { registerTwilioRoutes } from './routes/twilio-routes.js';
import { registerCallRoutes } from './routes/calls-routes.js';
import { registerWebhookRoutes } from './routes/webhooks-routes.js';
import type { CallRegistry } from '../calls/call-registry.js';
import type { StirSigning } from '../stir/index.js';
import type { OutboundCalls } from '../calls/outbound-calls.js';
import type { TrunkService } from '../calls/trunk-service.js';

/** The package version, read once from package.json (two levels up from src/api or dist/api). */
export const VERSION: string = (JSON.parse(readFileSync(resolve(dirname(fileURLToPath(import.meta.url)), '../../package.json'), 'utf8')) as { version: string }).version;

export interface HttpServer {
  readonly app: FastifyInstance;
  /** Stop taking new work: /readyz answers 503 so load balancers drain this node. */
  drain(): void;
}

/**
 * The REST API (fastify). Request logs carry method, route, status and time only: never the
 * query string or headers, so a credential misplaced in a URL is not written anywhere.
 */
export function buildHttpServer(ctx: ApiContext, opts: { calls?: CallRegistry | null; outbound?: OutboundCalls | null; trunks?: TrunkService | null; stir?: { readonly current: StirSigning | null } } = {}): HttpServer {
  const app = Fastify({
    logger: false,
    bodyLimit: ctx.config.http.bodyLimitBytes,
    trustProxy: ctx.config.http.trustProxy,
    return503OnClosing: true,
    requestTimeout: 30_000,
    connectionTimeout: 60_000,
  });
  let draining = false;
  app.decorateRequest('principal', null);

  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unknown';
    ctx.metrics.httpRequests.inc({ method: req.method, route, status: String(reply.statusCode) });
    ctx.metrics.httpDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
    ctx.log.info(
      { method: req.method, route, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10, keyId: req.principal?.key.id, ip: req.ip },
      'http request',
    );
    done();
  });

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (isTollgateError(err)) {
      if (err.httpStatus >= 500) ctx.log.error({ err, route: req.routeOptions.url }, 'request failed');
      return reply.code(err.httpStatus).send(errorBody(err.code, err.message, { details: err.details }));
    }
    const status = err.statusCode ?? 500;
    if (status === 413) return reply.code(413).send(errorBody('VALIDATION_FAILED', `the body is larger than ${ctx.config.http.bodyLimitBytes} bytes`));
    if (status === 415) return reply.code(415).send(errorBody('VALIDATION_FAILED', 'send the body as application/json'));
    if (status >= 400 && status < 500) return reply.code(status).send(errorBody('VALIDATION_FAILED', err.message.replace(/^Body /, 'body ')));
    ctx.log.error({ err, route: req.routeOptions.url }, 'request failed');
    return reply.code(500).send(errorBody('INTERNAL', 'internal error'));
  });

  app.setNotFoundHandler((req, reply) => reply.code(404).send(errorBody('NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`)));

  app.get('/healthz', () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    if (draining) return reply.code(503).send(errorBody('STORE_UNAVAILABLE', 'draining'));
    try {
      await ctx.store.ping();
      await ctx.counters.countLeases('readyz');
    } catch {
      return reply.code(503).send(errorBody('STORE_UNAVAILABLE', 'store or counters unreachable'));
    }
    return { status: 'ready' };
  });
  app.get('/metrics', async (_req, reply) => reply.header('content-type', ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics()));
  const doc = openApiDocument(VERSION);
  app.get('/openapi.json', () => doc);

  registerKeyRoutes(app, ctx);
  registerTokenRoutes(app, ctx);
  registerAuditRoutes(app, ctx);
  registerUsageRoutes(app, ctx);
  registerAuthorizationRoutes(app, ctx);
  registerNumberRoutes(app, ctx);
  registerWebhookRoutes(app, ctx);
  registerCallRoutes(app, ctx, opts.outbound ?? null, opts.trunks ?? null, opts.calls ?? null);
  // The STIR/SHAKEN certificate chain at the x5u of tollgate's Identity headers (public, like any x5u).
  app.get('/v1/stir/cert.pem', (req, reply) => {
    const stir = opts.stir?.current;
    if (!stir) return reply.code(404).send(errorBody('NOT_FOUND', 'no STIR/SHAKEN certificate is configured'));
    const { pem, etag } = stir.certificatePem();
    reply.header('etag', etag).header('cache-control', 'public, max-age=3600');
    if (req.headers['if-none-match'] === etag) return reply.code(304).send();
    return reply.header('content-type', 'application/pem-certificate-chain').send(pem);
  });
  registerTwilioRoutes(app, ctx, opts.calls ?? null);

  return { app, drain: () => void (draining = true) };
}
