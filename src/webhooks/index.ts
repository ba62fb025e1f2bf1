export { WebhookService, endpointTrust, webhookEndpointInputSchema, MAX_ENDPOINTS_PER_OWNER, ACCOUNT_SIGNER } from './webhook-service.js';
export type { WebhookServiceOptions, WebhookServiceDeps, WebhookEndpointInput, DeliveryListOptions } from './webhook-service.js';
export { WEBHOOK_EVENT_TYPES, isWebhookEventType, buildEvent } from './webhook-events.js';
export type { WebhookEventType, WebhookEvent } from './webhook-events.js';
export { backoffMs, JITTER } from '../util/backoff.js';
export { guardedSender } from './webhook-sender.js';
export type { WebhookSender, WebhookRequest, WebhookOutcome } from './webhook-sender.js';
export { checkWebhookUrl, urlForLog, urlForAudit } from './webhook-url.js';
