import { accountSidFor } from '../keys/key-identity.js';
import { newId } from '../keys/key-format.js';

/**
 * Event types tollgate sends to webhook endpoints (docs/webhooks.md lists each one's `data`).
 * An endpoint subscribes to some of them, or to '*' for all, including types added later.
 */
export const WEBHOOK_EVENT_TYPES = [
  'call.started',
  'call.answered',
  'call.ended',
  'key.rotated',
  'key.revoked',
  'limit.exceeded',
  'identity.failed',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

export const isWebhookEventType = (s: string): s is WebhookEventType => (WEBHOOK_EVENT_TYPES as readonly string[]).includes(s);

/** The JSON body of every delivery. Receivers deduplicate on `id`: a delivery may arrive more than once. */
export interface WebhookEvent {
  /** 'evt_' + random; the same on every attempt and every endpoint. */
  readonly id: string;
  readonly type: WebhookEventType;
  readonly createdAt: string;
  /** The key's account SID (Twilio-shaped); absent for account events that concern no key. */
  readonly accountSid?: string;
  /** The key the event is about, or null. */
  readonly keyId: string | null;
  readonly data: Readonly<Record<string, unknown>>;
}

export function buildEvent(type: WebhookEventType, keyId: string | null, data: Record<string, unknown>, createdAt: string, id: string = newId('evt')): WebhookEvent {
  return { id, type, createdAt, ...(keyId !== null ? { accountSid: accountSidFor(keyId) } : {}), keyId, data };
}
