import { z } from 'zod';
import { keyCreateSchema, keyUpdateSchema, rotateSchema, revokeSchema } from '../keys/key-input.js';
import { mintSchema } from '../keys/token-service.js';
import { numberInputSchema } from '../calls/number-service.js';
import { webhookCreateSchema } from './routes/webhooks-routes.js';

const schema = (s: z.ZodType): Record<string, unknown> => z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' });

const errorResponse = {
  description: 'Error',
  content: {
    'application/json': {
      schema: {
        type: 'object',
        required: ['error'],
        properties: {
          error: {
            type: 'object',
            required: ['code', 'message'],
            properties: {
              code: { type: 'string', description: 'Stable code, listed in docs/errors.md' },
              message: { type: 'string' },
              details: { type: 'object' },
              retryAfterMs: { type: 'integer' },
            },
          },
        },
      },
    },
  },
};

const ok = (description: string) => ({ description, content: { 'application/json': { schema: { type: 'object' } } } });
const errors = { '400': errorResponse, '401': errorResponse, '403': errorResponse, '429': errorResponse };
const idParam = [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }];
const body = (s: z.ZodType) => ({ required: true, content: { 'application/json': { schema: schema(s) } } });
const secured = [{ bearer: [] }];

/** OpenAPI 3.1 description of the REST API, served at /openapi.json. */
export function openApiDocument(version: string): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: { title: 'tollgate', version, description: 'Operator and agent API of the tollgate voice gateway. Authenticate with Authorization: Bearer <API key or token>.' },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'tg_live_… / tg_test_… API key, or a short-lived token' } } },
    paths: {
      '/healthz': { get: { summary: 'Liveness', responses: { '200': ok('Alive') } } },
      '/readyz': { get: { summary: 'Readiness (store and counters reachable, not draining)', responses: { '200': ok('Ready'), '503': errorResponse } } },
      '/metrics': { get: { summary: 'Prometheus metrics', responses: { '200': { description: 'text/plain exposition format' } } } },
      '/v1/keys': {
        post: { summary: 'Create a key (keys:admin). The secret is returned once.', security: secured, requestBody: body(keyCreateSchema), responses: { '201': ok('Created'), ...errors } },
        get: {
          summary: 'List keys (keys:admin)',
          security: secured,
          parameters: [
            { name: 'status', in: 'query', schema: { type: 'string', enum: ['active', 'expired', 'revoked', 'quarantined'] } },
            { name: 'mode', in: 'query', schema: { type: 'string', enum: ['live', 'test'] } },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000 } },
            { name: 'after', in: 'query', schema: { type: 'string' } },
          ],
          responses: { '200': ok('Keys'), ...errors },
        },
      },
      '/v1/keys/{id}': {
        get: { summary: 'Get a key (keys:admin, or the key itself)', security: secured, parameters: idParam, responses: { '200': ok('Key'), '404': errorResponse, ...errors } },
        patch: { summary: 'Update a key\'s policy (keys:admin)', security: secured, parameters: idParam, requestBody: body(keyUpdateSchema), responses: { '200': ok('Key'), '404': errorResponse, '409': errorResponse, ...errors } },
      },
      '/v1/keys/{id}/rotate': {
        post: { summary: 'Issue a new secret; the old one works for graceSec more (keys:admin)', security: secured, parameters: idParam, requestBody: body(rotateSchema), responses: { '201': ok('Rotated'), '404': errorResponse, '409': errorResponse, ...errors } },
      },
      '/v1/keys/{id}/revoke': {
        post: { summary: 'Revoke a key at once (keys:admin, or the key itself)', security: secured, parameters: idParam, requestBody: body(revokeSchema), responses: { '200': ok('Revoked'), '404': errorResponse, ...errors } },
      },
      '/v1/tokens': {
        post: { summary: 'Mint a short-lived single-use token (tokens:mint)', security: secured, requestBody: body(mintSchema), responses: { '201': ok('Token'), ...errors } },
      },
      '/v1/audit': {
        get: {
          summary: 'List audit entries (audit:read)',
          security: secured,
          parameters: [
            { name: 'limit', in: 'query', schema: { type: 'integer' } },
            { name: 'afterSeq', in: 'query', schema: { type: 'integer' } },
            { name: 'target', in: 'query', schema: { type: 'string' } },
            { name: 'order', in: 'query', schema: { type: 'string', enum: ['asc', 'desc'] } },
          ],
          responses: { '200': ok('Entries'), ...errors },
        },
      },
      '/v1/audit/verify': { get: { summary: 'Verify the hash chain (audit:read)', security: secured, responses: { '200': ok('Chain verdict'), ...errors } } },
      '/v1/usage': {
        get: {
          summary: 'Metered usage (usage:read); JSON or CSV',
          security: secured,
          parameters: [
            { name: 'keyId', in: 'query', schema: { type: 'string' } },
            { name: 'from', in: 'query', schema: { type: 'string', format: 'date-time' } },
            { name: 'to', in: 'query', schema: { type: 'string', format: 'date-time' } },
            { name: 'format', in: 'query', schema: { type: 'string', enum: ['json', 'csv'] } },
          ],
          responses: { '200': ok('Usage'), ...errors },
        },
      },
      '/v1/numbers': {
        post: { summary: 'Route a dialled number to a target, owned by a key (keys:admin)', security: secured, requestBody: body(numberInputSchema), responses: { '201': ok('Created'), ...errors } },
        get: { summary: 'List numbers (calls:read: own; keys:admin: any)', security: secured, responses: { '200': ok('Numbers'), ...errors } },
      },
      '/v1/numbers/{number}': {
        delete: { summary: 'Remove a number (keys:admin); the + is written %2B', security: secured, parameters: [{ name: 'number', in: 'path', required: true, schema: { type: 'string' } }], responses: { '204': { description: 'Removed' }, '404': errorResponse, ...errors } },
      },
      '/v1/webhooks': {
        post: { summary: 'Add a webhook endpoint (docs/webhooks.md): a key for itself; keyId of another key, or null (account-wide), needs keys:admin', security: secured, requestBody: body(webhookCreateSchema), responses: { '201': ok('Endpoint'), '409': errorResponse, ...errors } },
        get: {
          summary: 'List webhook endpoints (a key: its own; keys:admin: all, or one key\'s)',
          security: secured,
          parameters: [
            { name: 'keyId', in: 'query', schema: { type: 'string' } },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000 } },
            { name: 'after', in: 'query', schema: { type: 'string' } },
          ],
          responses: { '200': ok('Endpoints'), ...errors },
        },
      },
      '/v1/webhooks/{id}': {
        delete: { summary: 'Remove a webhook endpoint; its pending deliveries end failed (its owner key, or keys:admin)', security: secured, parameters: idParam, responses: { '204': { description: 'Removed' }, '404': errorResponse, ...errors } },
      },
      '/v1/webhooks/signing-secret': {
        get: { summary: 'The secret account-wide endpoints\' deliveries are signed with (keys:admin)', security: secured, responses: { '200': ok('Signing secret'), ...errors } },
      },
      '/v1/webhooks/deliveries': {
        get: {
          summary: 'The delivery log, newest first (a key: its endpoints\'; keys:admin: all)',
          security: secured,
          parameters: [
            { name: 'status', in: 'query', schema: { type: 'string', enum: ['pending', 'delivered', 'failed'] } },
            { name: 'endpointId', in: 'query', schema: { type: 'string' } },
            { name: 'keyId', in: 'query', schema: { type: 'string' } },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000 } },
            { name: 'before', in: 'query', schema: { type: 'string' }, description: 'the next cursor of the previous page, or a date-time' },
          ],
          responses: { '200': ok('Deliveries'), ...errors },
        },
      },
      '/v1/webhooks/deliveries/{id}/retry': {
        post: { summary: 'Send a failed or delivered delivery again, now (its owner key, or keys:admin)', security: secured, parameters: idParam, responses: { '202': ok('Queued'), '404': errorResponse, '409': errorResponse, ...errors } },
      },
      '/v1/calls': {
        get: {
          summary: 'Call detail records, newest first (calls:read: own; keys:admin: any)',
          security: secured,
          parameters: [
            { name: 'keyId', in: 'query', schema: { type: 'string' } },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000 } },
            { name: 'before', in: 'query', schema: { type: 'string', format: 'date-time' } },
          ],
          responses: { '200': ok('Calls'), ...errors },
        },
      },
      '/v1/calls/{id}': {
        get: { summary: 'One call record: status, times, billable seconds, who ended it and why (calls:read)', security: secured, parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }], responses: { '200': ok('Call'), '404': errorResponse, ...errors } },
      },
      '/v1/keys/{id}/signing-secret': {
        get: { summary: 'The key\'s account SID and the secret tollgate signs its agent upgrades and webhooks with (the key itself or keys:admin)', security: secured, parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }], responses: { '200': ok('Signing secret'), '404': errorResponse, ...errors } },
      },
      '/v1/stream': {
        get: { summary: 'WebSocket: an agent attaches to a call (docs/agents.md). Authorization: Bearer <key or token>, or subprotocol tollgate.auth.<credential>', security: secured, responses: { '101': { description: 'Switching Protocols' } } },
      },
      '/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json': {
        post: { summary: 'Twilio-compatible hang-up: form body Status=completed, Basic auth AccountSid:<key or token>', parameters: [{ name: 'AccountSid', in: 'path', required: true, schema: { type: 'string' } }, { name: 'CallSid', in: 'path', required: true, schema: { type: 'string' } }], responses: { '200': ok('Call resource (Twilio shape)'), '401': { description: 'Twilio error 20003' }, '404': { description: 'Twilio error 20404: no such live call' } } },
      },
      '/v1/authorizations': {
        post: { summary: 'Ask the policy engine whether a call may start; reserves concurrency and budget at the rate table\'s price, in the key\'s mode (calls:inbound / calls:outbound)', security: secured, responses: { '201': ok('Granted'), '402': errorResponse, ...errors } },
      },
      '/v1/authorizations/{callId}/renew': { post: { summary: 'Keep a granted call\'s lease alive', security: secured, responses: { '200': ok('Renewed'), '404': errorResponse, ...errors } } },
      '/v1/authorizations/{callId}/complete': { post: { summary: 'Settle a granted call\'s real seconds', security: secured, responses: { '200': ok('Settled'), '404': errorResponse, ...errors } } },
    },
  };
}
