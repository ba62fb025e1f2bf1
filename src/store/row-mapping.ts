import type { KeyRecord, SecretRecord, Budget } from './key-record.js';
import type { AgentRoute, AuditEntry, CallRecord, NumberRecord, TrunkRecord, UsageRecord, WebhookDelivery, WebhookEndpoint } from './store.js';

/** Row shapes shared by the SQLite and PostgreSQL stores (snake_case columns). */
export interface KeyRow {
  id: string;
  name: string;
  mode: string;
  status: string;
  role: string | null;
  scopes: unknown;
  allowed_cidrs: unknown;
  allowed_countries: unknown;
  blocked_prefixes: unknown;
  calls_per_second: number | string;
  cps_burst: number | string;
  max_concurrent_calls: number | string;
  budget: unknown;
  max_call_duration_sec: number | string;
  caller_ids: unknown;
  require_tls: number | boolean;
  attestation: string | null;
  hint: string;
  expires_at: string | Date | null;
  created_at: string | Date;
  created_by: string;
  updated_at: string | Date;
  last_used_at: string | Date | null;
  revoked_at: string | Date | null;
}

export const KEY_COLUMNS = [
  'id', 'name', 'mode', 'status', 'role', 'scopes', 'allowed_cidrs', 'allowed_countries', 'blocked_prefixes',
  'calls_per_second', 'cps_burst', 'max_concurrent_calls', 'budget', 'max_call_duration_sec', 'caller_ids',
  'require_tls', 'hint', 'expires_at', 'created_at', 'created_by', 'updated_at', 'last_used_at', 'revoked_at',
  'attestation',
] as const;

/** KeyPatch field → column. */
export const PATCH_COLUMNS: Record<string, string> = {
  name: 'name', status: 'status', role: 'role', scopes: 'scopes', allowedCidrs: 'allowed_cidrs',
  allowedCountries: 'allowed_countries', blockedPrefixes: 'blocked_prefixes', callsPerSecond: 'calls_per_second',
  cpsBurst: 'cps_burst', maxConcurrentCalls: 'max_concurrent_calls', budget: 'budget',
  maxCallDurationSec: 'max_call_duration_sec', callerIds: 'caller_ids', requireTls: 'require_tls', attestation: 'attestation',
  expiresAt: 'expires_at', lastUsedAt: 'last_used_at', revokedAt: 'revoked_at', hint: 'hint',
};
export const JSON_COLUMNS = new Set(['scopes', 'allowed_cidrs', 'allowed_countries', 'blocked_prefixes', 'budget', 'caller_ids']);

const json = <T>(v: unknown): T => (typeof v === 'string' ? (JSON.parse(v) as T) : (v as T));
export const iso = (v: string | Date): string => (v instanceof Date ? v.toISOString() : v);
export const isoOrNull = (v: string | Date | null): string | null => (v == null ? null : iso(v));
/**
 * A timestamp cursor in the stored form (toISOString: UTC, milliseconds), so a text comparison
 * with stored values is a time comparison even when the caller wrote "+02:00" or no milliseconds.
 * Unparseable input is passed through unchanged.
 */
export const isoCursor = (v: string): string => {
  const t = Date.parse(v);
  return Number.isNaN(t) ? v : new Date(t).toISOString();
};

/**
 * The WHERE condition of newest-first keyset paging on `column` (ordered `column DESC, id DESC`):
 * rows strictly after the cursor `(before, beforeId)`, ties on `column` broken by id; `before`
 * alone pages by time. `arg` adds a parameter and returns its placeholder (? or $n). Null: no cursor.
 */
export function olderThan(column: 'started_at' | 'created_at', before: string | undefined, beforeId: string | undefined, arg: (v: unknown) => string): string | null {
  if (!before) return null;
  if (!beforeId) return `${column} < ${arg(isoCursor(before))}`;
  return `(${column} < ${arg(isoCursor(before))} OR (${column} = ${arg(isoCursor(before))} AND id < ${arg(beforeId)}))`;
}

export function rowToKey(r: KeyRow): KeyRecord {
  return {
    id: r.id,
    name: r.name,
    mode: r.mode as KeyRecord['mode'],
    status: r.status as KeyRecord['status'],
    role: r.role as KeyRecord['role'],
    scopes: json<KeyRecord['scopes']>(r.scopes),
    allowedCidrs: json<string[]>(r.allowed_cidrs),
    allowedCountries: json<string[]>(r.allowed_countries),
    blockedPrefixes: json<string[]>(r.blocked_prefixes),
    callsPerSecond: Number(r.calls_per_second),
    cpsBurst: Number(r.cps_burst),
    maxConcurrentCalls: Number(r.max_concurrent_calls),
    budget: json<Budget | null>(r.budget),
    maxCallDurationSec: Number(r.max_call_duration_sec),
    callerIds: json<string[]>(r.caller_ids),
    requireTls: Boolean(r.require_tls),
    attestation: (r.attestation ?? null) as KeyRecord['attestation'],
    hint: r.hint,
    expiresAt: isoOrNull(r.expires_at),
    createdAt: iso(r.created_at),
    createdBy: r.created_by,
    updatedAt: iso(r.updated_at),
    lastUsedAt: isoOrNull(r.last_used_at),
    revokedAt: isoOrNull(r.revoked_at),
  };
}

/** Column values for an insert, JSON columns serialised, booleans as the driver wants them. */
export function keyToValues(k: KeyRecord, bool: (b: boolean) => unknown): unknown[] {
  return [
    k.id, k.name, k.mode, k.status, k.role, JSON.stringify(k.scopes), JSON.stringify(k.allowedCidrs),
    JSON.stringify(k.allowedCountries), JSON.stringify(k.blockedPrefixes), k.callsPerSecond, k.cpsBurst,
    k.maxConcurrentCalls, JSON.stringify(k.budget), k.maxCallDurationSec, JSON.stringify(k.callerIds),
    bool(k.requireTls), k.hint, k.expiresAt, k.createdAt, k.createdBy, k.updatedAt, k.lastUsedAt, k.revokedAt,
    k.attestation,
  ];
}

export function patchValue(column: string, v: unknown, bool: (b: boolean) => unknown): unknown {
  if (JSON_COLUMNS.has(column)) return JSON.stringify(v ?? null);
  if (typeof v === 'boolean') return bool(v);
  return v;
}

export interface SecretRow {
  id: string;
  key_id: string;
  hash: string;
  ha1_md5: string;
  ha1_sha256: string;
  created_at: string | Date;
  expires_at: string | Date | null;
}

export const rowToSecret = (r: SecretRow): SecretRecord => ({
  id: r.id,
  keyId: r.key_id,
  hash: r.hash,
  ha1Md5: r.ha1_md5,
  ha1Sha256: r.ha1_sha256,
  createdAt: iso(r.created_at),
  expiresAt: isoOrNull(r.expires_at),
});

export interface AuditRow {
  seq: number | string;
  ts: string | Date;
  actor: string;
  action: string;
  target: string | null;
  details: unknown;
  prev_hash: string;
  hash: string;
}

export const rowToAudit = (r: AuditRow): AuditEntry => ({
  seq: Number(r.seq),
  // The timestamp is part of the hashed content: keep it as the exact string that was written.
  ts: typeof r.ts === 'string' ? r.ts : r.ts.toISOString(),
  actor: r.actor,
  action: r.action,
  target: r.target,
  details: json<Record<string, unknown>>(r.details),
  prevHash: r.prev_hash,
  hash: r.hash,
});

export interface UsageRow {
  id: string;
  key_id: string;
  call_id: string;
  direction: string;
  seconds: number | string;
  amount: number | string;
  created_at: string | Date;
}

export const rowToUsage = (r: UsageRow): UsageRecord => ({
  id: r.id,
  keyId: r.key_id,
  callId: r.call_id,
  direction: r.direction as UsageRecord['direction'],
  seconds: Number(r.seconds),
  amount: Number(r.amount),
  createdAt: iso(r.created_at),
});

export interface NumberRow {
  number: string;
  target: string;
  key_id: string;
  srtp: string;
  /** JSON text (SQLite) or a parsed object (PostgreSQL JSONB); null for echo/tone numbers. */
  agent: string | AgentRoute | null;
  created_at: string | Date;
  updated_at: string | Date;
}

export const rowToNumber = (r: NumberRow): NumberRecord => ({
  number: r.number,
  target: r.target,
  keyId: r.key_id,
  srtp: r.srtp as NumberRecord['srtp'],
  agent: r.agent == null ? null : json<AgentRoute>(r.agent),
  createdAt: iso(r.created_at),
  updatedAt: iso(r.updated_at),
});

export interface CallRow {
  id: string;
  key_id: string;
  direction: string;
  from_number: string;
  to_number: string;
  target: string;
  sip_call_id: string | null;
  status: string;
  started_at: string;
  answered_at: string | null;
  ended_at: string | null;
  end_reason: string | null;
  ended_by: string | null;
  billable_seconds: number | string;
  details: string | Record<string, unknown>;
}

export const rowToCall = (r: CallRow): CallRecord => ({
  id: r.id,
  keyId: r.key_id,
  direction: r.direction as CallRecord['direction'],
  from: r.from_number,
  to: r.to_number,
  target: r.target,
  sipCallId: r.sip_call_id,
  status: r.status as CallRecord['status'],
  startedAt: r.started_at,
  answeredAt: r.answered_at,
  endedAt: r.ended_at,
  endReason: r.end_reason,
  endedBy: r.ended_by as CallRecord['endedBy'],
  billableSeconds: Number(r.billable_seconds),
  details: json<Record<string, unknown>>(r.details),
});

/** CallRecord fields → columns, in insert order. */
export const CALL_COLUMNS = ['id', 'key_id', 'direction', 'from_number', 'to_number', 'target', 'sip_call_id', 'status', 'started_at', 'answered_at', 'ended_at', 'end_reason', 'ended_by', 'billable_seconds', 'details'] as const;

export function callToValues(c: CallRecord): unknown[] {
  return [c.id, c.keyId, c.direction, c.from, c.to, c.target, c.sipCallId, c.status, c.startedAt, c.answeredAt, c.endedAt, c.endReason, c.endedBy, c.billableSeconds, JSON.stringify(c.details)];
}

/** CallPatch fields → columns (details as JSON text). */
export function callPatchColumns(patch: Record<string, unknown>): { column: string; value: unknown }[] {
  const map: Record<string, string> = { status: 'status', answeredAt: 'answered_at', endedAt: 'ended_at', endReason: 'end_reason', endedBy: 'ended_by', billableSeconds: 'billable_seconds', details: 'details' };
  const out: { column: string; value: unknown }[] = [];
  for (const [k, v] of Object.entries(patch)) {
    const column = map[k];
    if (column && v !== undefined) out.push({ column, value: k === 'details' ? JSON.stringify(v) : v });
  }
  return out;
}


/** A patch object → `{ column, value }` pairs by a field → column map (unknown and undefined fields skipped). */
function patchColumns(
  patch: Record<string, unknown>,
  map: Readonly<Record<string, string>>,
  encode: (field: string, v: unknown) => unknown = (_f, v) => v,
): { column: string; value: unknown }[] {
  const out: { column: string; value: unknown }[] = [];
  for (const [k, v] of Object.entries(patch)) {
    const column = map[k];
    if (column && v !== undefined) out.push({ column, value: encode(k, v) });
  }
  return out;
}

export interface TrunkRow {
  id: string;
  name: string;
  host: string;
  port: number | string;
  transport: string;
  srtp: string;
  username: string | null;
  password_sealed: string | null;
  /** JSON text (SQLite) or parsed JSONB (PostgreSQL). */
  codecs: unknown;
  max_cps: number | string;
  prefixes: unknown;
  priority: number | string;
  enabled: number | boolean;
  created_at: string;
  updated_at: string;
}

export const TRUNK_COLUMNS = ['id', 'name', 'host', 'port', 'transport', 'srtp', 'username', 'password_sealed', 'codecs', 'max_cps', 'prefixes', 'priority', 'enabled', 'created_at', 'updated_at'] as const;

export const rowToTrunk = (r: TrunkRow): TrunkRecord => ({
  id: r.id,
  name: r.name,
  host: r.host,
  port: Number(r.port),
  transport: r.transport as TrunkRecord['transport'],
  srtp: r.srtp as TrunkRecord['srtp'],
  username: r.username,
  passwordSealed: r.password_sealed,
  codecs: json<TrunkRecord['codecs']>(r.codecs),
  maxCps: Number(r.max_cps),
  prefixes: json<string[]>(r.prefixes),
  priority: Number(r.priority),
  enabled: Boolean(r.enabled),
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export function trunkToValues(t: TrunkRecord, bool: (b: boolean) => unknown): unknown[] {
  return [t.id, t.name, t.host, t.port, t.transport, t.srtp, t.username, t.passwordSealed, JSON.stringify(t.codecs), t.maxCps, JSON.stringify(t.prefixes), t.priority, bool(t.enabled), t.createdAt, t.updatedAt];
}

const TRUNK_PATCH: Readonly<Record<string, string>> = {
  name: 'name', host: 'host', port: 'port', transport: 'transport', srtp: 'srtp', username: 'username', passwordSealed: 'password_sealed',
  codecs: 'codecs', maxCps: 'max_cps', prefixes: 'prefixes', priority: 'priority', enabled: 'enabled', updatedAt: 'updated_at',
};

/** TrunkPatch fields → columns (lists as JSON text, booleans as the driver wants them). */
export function trunkPatchColumns(patch: Record<string, unknown>, bool: (b: boolean) => unknown): { column: string; value: unknown }[] {
  return patchColumns(patch, TRUNK_PATCH, (f, v) => (f === 'codecs' || f === 'prefixes' ? JSON.stringify(v) : typeof v === 'boolean' ? bool(v) : v));
}

export interface WebhookEndpointRow {
  id: string;
  key_id: string | null;
  url: string;
  events: unknown;
  enabled: number | boolean;
  created_at: string;
  updated_at: string;
}

export const WEBHOOK_ENDPOINT_COLUMNS = ['id', 'key_id', 'url', 'events', 'enabled', 'created_at', 'updated_at'] as const;

export const rowToWebhookEndpoint = (r: WebhookEndpointRow): WebhookEndpoint => ({
  id: r.id,
  keyId: r.key_id,
  url: r.url,
  events: json<string[]>(r.events),
  enabled: Boolean(r.enabled),
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export function webhookEndpointToValues(e: WebhookEndpoint, bool: (b: boolean) => unknown): unknown[] {
  return [e.id, e.keyId, e.url, JSON.stringify(e.events), bool(e.enabled), e.createdAt, e.updatedAt];
}

/** True when an endpoint's subscription list covers the event type. */
export const subscribes = (e: WebhookEndpoint, eventType: string): boolean => e.events.includes(eventType) || e.events.includes('*');

export interface WebhookDeliveryRow {
  id: string;
  endpoint_id: string;
  key_id: string | null;
  event_id: string;
  event_type: string;
  payload: string;
  status: string;
  attempts: number | string;
  next_attempt_at: string | null;
  last_status: number | string | null;
  last_error: string | null;
  created_at: string;
  updated_at: string;
  delivered_at: string | null;
}

export const WEBHOOK_DELIVERY_COLUMNS = [
  'id', 'endpoint_id', 'key_id', 'event_id', 'event_type', 'payload', 'status', 'attempts', 'next_attempt_at', 'last_status', 'last_error', 'created_at', 'updated_at', 'delivered_at',
] as const;

export const rowToWebhookDelivery = (r: WebhookDeliveryRow): WebhookDelivery => ({
  id: r.id,
  endpointId: r.endpoint_id,
  keyId: r.key_id,
  eventId: r.event_id,
  eventType: r.event_type,
  payload: r.payload,
  status: r.status as WebhookDelivery['status'],
  attempts: Number(r.attempts),
  nextAttemptAt: r.next_attempt_at,
  lastStatus: r.last_status == null ? null : Number(r.last_status),
  lastError: r.last_error,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  deliveredAt: r.delivered_at,
});

export function webhookDeliveryToValues(d: WebhookDelivery): unknown[] {
  return [d.id, d.endpointId, d.keyId, d.eventId, d.eventType, d.payload, d.status, d.attempts, d.nextAttemptAt, d.lastStatus, d.lastError, d.createdAt, d.updatedAt, d.deliveredAt];
}

const DELIVERY_PATCH: Readonly<Record<string, string>> = {
  status: 'status', attempts: 'attempts', nextAttemptAt: 'next_attempt_at', lastStatus: 'last_status', lastError: 'last_error', updatedAt: 'updated_at', deliveredAt: 'delivered_at',
};

/** WebhookDeliveryPatch fields → columns. */
export function deliveryPatchColumns(patch: Record<string, unknown>): { column: string; value: unknown }[] {
  return patchColumns(patch, DELIVERY_PATCH);
}

/** The error pending deliveries are settled with when their endpoint is removed. */
export const ENDPOINT_REMOVED = 'endpoint removed';
