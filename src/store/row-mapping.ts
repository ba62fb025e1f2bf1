import type { KeyRecord, SecretRecord, Budget } from '../keys/key-record.js';
import type { AuditEntry, NumberRecord, UsageRecord } from './store.js';

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
] as const;

/** KeyPatch field → column. */
export const PATCH_COLUMNS: Record<string, string> = {
  name: 'name', status: 'status', role: 'role', scopes: 'scopes', allowedCidrs: 'allowed_cidrs',
  allowedCountries: 'allowed_countries', blockedPrefixes: 'blocked_prefixes', callsPerSecond: 'calls_per_second',
  cpsBurst: 'cps_burst', maxConcurrentCalls: 'max_concurrent_calls', budget: 'budget',
  maxCallDurationSec: 'max_call_duration_sec', callerIds: 'caller_ids', requireTls: 'require_tls',
  expiresAt: 'expires_at', lastUsedAt: 'last_used_at', revokedAt: 'revoked_at', hint: 'hint',
};
export const JSON_COLUMNS = new Set(['scopes', 'allowed_cidrs', 'allowed_countries', 'blocked_prefixes', 'budget', 'caller_ids']);

const json = <T>(v: unknown): T => (typeof v === 'string' ? (JSON.parse(v) as T) : (v as T));
export const iso = (v: string | Date): string => (v instanceof Date ? v.toISOString() : v);
export const isoOrNull = (v: string | Date | null): string | null => (v == null ? null : iso(v));

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
  created_at: string | Date;
  updated_at: string | Date;
}

export const rowToNumber = (r: NumberRow): NumberRecord => ({
  number: r.number,
  target: r.target,
  keyId: r.key_id,
  srtp: r.srtp as NumberRecord['srtp'],
  createdAt: iso(r.created_at),
  updatedAt: iso(r.updated_at),
});
