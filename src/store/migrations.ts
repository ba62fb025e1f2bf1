/**
 * Schema migrations, applied in order and recorded in schema_migrations. Never edit a released
 * migration: add a new one. The two dialects keep the same tables and columns.
 */
export interface Migration {
  readonly version: number;
  readonly sql: string;
}

export const SQLITE_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  mode TEXT NOT NULL CHECK (mode IN ('live','test')),
  status TEXT NOT NULL CHECK (status IN ('active','expired','revoked','quarantined')),
  role TEXT,
  scopes TEXT NOT NULL,
  allowed_cidrs TEXT NOT NULL,
  allowed_countries TEXT NOT NULL,
  blocked_prefixes TEXT NOT NULL,
  calls_per_second REAL NOT NULL,
  cps_burst INTEGER NOT NULL,
  max_concurrent_calls INTEGER NOT NULL,
  budget TEXT,
  max_call_duration_sec INTEGER NOT NULL,
  caller_ids TEXT NOT NULL,
  require_tls INTEGER NOT NULL,
  hint TEXT NOT NULL,
  expires_at TEXT,
  created_at TEXT NOT NULL,
  created_by TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  last_used_at TEXT,
  revoked_at TEXT
);
CREATE TABLE key_secrets (
  id TEXT PRIMARY KEY,
  key_id TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
  hash TEXT NOT NULL UNIQUE,
  ha1_md5 TEXT NOT NULL,
  ha1_sha256 TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT
);
CREATE INDEX key_secrets_key_id ON key_secrets(key_id);
CREATE TABLE audit_log (
  seq INTEGER PRIMARY KEY,
  ts TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT,
  details TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE INDEX audit_log_target ON audit_log(target);
CREATE TABLE usage_records (
  id TEXT PRIMARY KEY,
  key_id TEXT NOT NULL,
  call_id TEXT NOT NULL,
  direction TEXT NOT NULL,
  seconds INTEGER NOT NULL,
  amount INTEGER NOT NULL,
  created_at TEXT NOT NULL
);
CREATE INDEX usage_records_key_time ON usage_records(key_id, created_at);
CREATE TABLE used_token_ids (
  jti TEXT PRIMARY KEY,
  expires_at TEXT NOT NULL
);
`,
  },
  { version: 2, sql: `
CREATE TABLE numbers (
  number TEXT PRIMARY KEY,
  target TEXT NOT NULL,
  key_id TEXT NOT NULL REFERENCES api_keys(id),
  srtp TEXT NOT NULL CHECK (srtp IN ('required','optional','off')),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX numbers_key_id ON numbers(key_id);
` },
  { version: 3, sql: `
ALTER TABLE numbers ADD COLUMN agent TEXT;
CREATE TABLE calls (
  id TEXT PRIMARY KEY,
  key_id TEXT NOT NULL,
  direction TEXT NOT NULL CHECK (direction IN ('inbound','outbound')),
  from_number TEXT NOT NULL,
  to_number TEXT NOT NULL,
  target TEXT NOT NULL,
  sip_call_id TEXT,
  status TEXT NOT NULL CHECK (status IN ('ringing','answered','ended','failed')),
  started_at TEXT NOT NULL,
  answered_at TEXT,
  ended_at TEXT,
  end_reason TEXT,
  ended_by TEXT CHECK (ended_by IN ('caller','agent','gateway','policy','callee')),
  billable_seconds REAL NOT NULL,
  details TEXT NOT NULL
);
CREATE INDEX calls_key_started ON calls(key_id, started_at);
CREATE INDEX calls_started ON calls(started_at);
` },
  { version: 4, sql: `
CREATE TABLE trunks (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  host TEXT NOT NULL,
  port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
  transport TEXT NOT NULL CHECK (transport IN ('udp','tcp','tls')),
  srtp TEXT NOT NULL CHECK (srtp IN ('required','optional','off')),
  username TEXT,
  password_sealed TEXT,
  codecs TEXT NOT NULL,
  max_cps REAL NOT NULL,
  prefixes TEXT NOT NULL,
  priority INTEGER NOT NULL,
  enabled INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE webhook_endpoints (
  id TEXT PRIMARY KEY,
  key_id TEXT REFERENCES api_keys(id) ON DELETE CASCADE,
  url TEXT NOT NULL,
  events TEXT NOT NULL,
  enabled INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX webhook_endpoints_key_id ON webhook_endpoints(key_id);
-- payload is TEXT in both dialects: the exact bytes that were signed (JSONB would reorder them).
-- No foreign key to webhook_endpoints: the delivery log outlives a removed endpoint.
CREATE TABLE webhook_deliveries (
  id TEXT PRIMARY KEY,
  endpoint_id TEXT NOT NULL,
  key_id TEXT,
  event_id TEXT NOT NULL,
  event_type TEXT NOT NULL,
  payload TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending','delivered','failed')),
  attempts INTEGER NOT NULL,
  next_attempt_at TEXT,
  last_status INTEGER,
  last_error TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  delivered_at TEXT,
  UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_created ON webhook_deliveries(created_at, id);
CREATE INDEX webhook_deliveries_key_created ON webhook_deliveries(key_id, created_at);
CREATE INDEX webhook_deliveries_endpoint_created ON webhook_deliveries(endpoint_id, created_at);
` },
  { version: 5, sql: `
ALTER TABLE api_keys ADD COLUMN attestation TEXT CHECK (attestation IN ('A','B','C'));
` },
  // The key change feed: one row per key write, in the writer's transaction. AUTOINCREMENT so a
  // seq is never reused (pruning always keeps the newest row as well). No foreign key: the feed
  // only names keys.
  { version: 6, sql: `
CREATE TABLE key_changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  key_id TEXT NOT NULL,
  at TEXT NOT NULL
);
` },
  { version: 7, sql: `
-- A call can be ended by the API caller (DELETE /v1/calls/{id}): widen the ended_by check.
-- SQLite cannot alter a CHECK constraint, so the table is rebuilt.
CREATE TABLE calls_v7 (
  id TEXT PRIMARY KEY,
  key_id TEXT NOT NULL,
  direction TEXT NOT NULL CHECK (direction IN ('inbound','outbound')),
  from_number TEXT NOT NULL,
  to_number TEXT NOT NULL,
  target TEXT NOT NULL,
  sip_call_id TEXT,
  status TEXT NOT NULL CHECK (status IN ('ringing','answered','ended','failed')),
  started_at TEXT NOT NULL,
  answered_at TEXT,
  ended_at TEXT,
  end_reason TEXT,
  ended_by TEXT CHECK (ended_by IN ('caller','agent','gateway','policy','callee','api')),
  billable_seconds REAL NOT NULL,
  details TEXT NOT NULL
);
INSERT INTO calls_v7 SELECT id, key_id, direction, from_number, to_number, target, sip_call_id, status, started_at, answered_at, ended_at, end_reason, ended_by, billable_seconds, details FROM calls;
DROP TABLE calls;
ALTER TABLE calls_v7 RENAME TO calls;
CREATE INDEX calls_key_started ON calls(key_id, started_at);
CREATE INDEX calls_started ON calls(started_at);
` },
];

export const POSTGRES_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  mode TEXT NOT NULL CHECK (mode IN ('live','test')),
  status TEXT NOT NULL CHECK (status IN ('active','expired','revoked','quarantined')),
  role TEXT,
  scopes JSONB NOT NULL,
  allowed_cidrs JSONB NOT NULL,
  allowed_countries JSONB NOT NULL,
  blocked_prefixes JSONB NOT NULL,
  calls_per_second DOUBLE PRECISION NOT NULL,
  cps_burst INTEGER NOT NULL,
  max_concurrent_calls INTEGER NOT NULL,
  budget JSONB,
  max_call_duration_sec INTEGER NOT NULL,
  caller_ids JSONB NOT NULL,
  require_tls BOOLEAN NOT NULL,
  hint TEXT NOT NULL,
  expires_at TEXT,
  created_at TEXT NOT NULL,
  created_by TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  last_used_at TEXT,
  revoked_at TEXT
);
CREATE TABLE key_secrets (
  id TEXT PRIMARY KEY,
  key_id TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
  hash TEXT NOT NULL UNIQUE,
  ha1_md5 TEXT NOT NULL,
  ha1_sha256 TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT
);
CREATE INDEX key_secrets_key_id ON key_secrets(key_id);
CREATE TABLE audit_log (
  seq BIGINT PRIMARY KEY,
  ts TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT,
  details JSONB NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE INDEX audit_log_target ON audit_log(target);
CREATE TABLE usage_records (
  id TEXT PRIMARY KEY,
  key_id TEXT NOT NULL,
  call_id TEXT NOT NULL,
  direction TEXT NOT NULL,
  seconds BIGINT NOT NULL,
  amount BIGINT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE INDEX usage_records_key_time ON usage_records(key_id, created_at);
CREATE TABLE used_token_ids (
  jti TEXT PRIMARY KEY,
  expires_at TEXT NOT NULL
);
`,
  },
  { version: 2, sql: `
CREATE TABLE numbers (
  number TEXT PRIMARY KEY,
  target TEXT NOT NULL,
  key_id TEXT NOT NULL REFERENCES api_keys(id),
  srtp TEXT NOT NULL CHECK (srtp IN ('required','optional','off')),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX numbers_key_id ON numbers(key_id);
` },
  { version: 3, sql: `
ALTER TABLE numbers ADD COLUMN agent JSONB;
CREATE TABLE calls (
  id TEXT PRIMARY KEY,
  key_id TEXT NOT NULL,
  direction TEXT NOT NULL CHECK (direction IN ('inbound','outbound')),
  from_number TEXT NOT NULL,
  to_number TEXT NOT NULL,
  target TEXT NOT NULL,
  sip_call_id TEXT,
  status TEXT NOT NULL CHECK (status IN ('ringing','answered','ended','failed')),
  started_at TEXT NOT NULL,
  answered_at TEXT,
  ended_at TEXT,
  end_reason TEXT,
  ended_by TEXT CHECK (ended_by IN ('caller','agent','gateway','policy','callee')),
  billable_seconds DOUBLE PRECISION NOT NULL,
  details JSONB NOT NULL
);
CREATE INDEX calls_key_started ON calls(key_id, started_at);
CREATE INDEX calls_started ON calls(started_at);
` },
  { version: 4, sql: `
CREATE TABLE trunks (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  host TEXT NOT NULL,
  port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
  transport TEXT NOT NULL CHECK (transport IN ('udp','tcp','tls')),
  srtp TEXT NOT NULL CHECK (srtp IN ('required','optional','off')),
  username TEXT,
  password_sealed TEXT,
  codecs JSONB NOT NULL,
  max_cps DOUBLE PRECISION NOT NULL,
  prefixes JSONB NOT NULL,
  priority INTEGER NOT NULL,
  enabled BOOLEAN NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE webhook_endpoints (
  id TEXT PRIMARY KEY,
  key_id TEXT REFERENCES api_keys(id) ON DELETE CASCADE,
  url TEXT NOT NULL,
  events JSONB NOT NULL,
  enabled BOOLEAN NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX webhook_endpoints_key_id ON webhook_endpoints(key_id);
-- payload is TEXT in both dialects: the exact bytes that were signed (JSONB would reorder them).
-- No foreign key to webhook_endpoints: the delivery log outlives a removed endpoint.
CREATE TABLE webhook_deliveries (
  id TEXT PRIMARY KEY,
  endpoint_id TEXT NOT NULL,
  key_id TEXT,
  event_id TEXT NOT NULL,
  event_type TEXT NOT NULL,
  payload TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending','delivered','failed')),
  attempts INTEGER NOT NULL,
  next_attempt_at TEXT,
  last_status INTEGER,
  last_error TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  delivered_at TEXT,
  UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_created ON webhook_deliveries(created_at, id);
CREATE INDEX webhook_deliveries_key_created ON webhook_deliveries(key_id, created_at);
CREATE INDEX webhook_deliveries_endpoint_created ON webhook_deliveries(endpoint_id, created_at);
` },
  { version: 5, sql: `
ALTER TABLE api_keys ADD COLUMN attestation TEXT CHECK (attestation IN ('A','B','C'));
` },
  // Writers take an advisory lock before inserting, so seq order is commit order (see
  // PostgresStore.recordKeyChange): a reader that has seen seq n has seen every change below n.
  { version: 6, sql: `
CREATE TABLE key_changes (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  key_id TEXT NOT NULL,
  at TEXT NOT NULL
);
` },
  { version: 7, sql: `
-- A call can be ended by the API caller (DELETE /v1/calls/{id}).
ALTER TABLE calls DROP CONSTRAINT IF EXISTS calls_ended_by_check;
ALTER TABLE calls ADD CONSTRAINT calls_ended_by_check CHECK (ended_by IN ('caller','agent','gateway','policy','callee','api'));
` },
];
