import type { KeyPatch, KeyRecord, KeyStatus, KeyMode, SecretRecord } from './key-record.js';

export interface AuditEntry {
  readonly seq: number;
  readonly ts: string;
  readonly actor: string;
  readonly action: string;
  readonly target: string | null;
  readonly details: Record<string, unknown>;
  readonly prevHash: string;
  readonly hash: string;
}

export type NewAuditEntry = Omit<AuditEntry, 'seq' | 'prevHash' | 'hash'>;

export interface UsageRecord {
  /** The idempotency key: 'use_' + the call id for a settled call (usageIdOf in billing/). */
  readonly id: string;
  readonly keyId: string;
  readonly callId: string;
  readonly direction: 'inbound' | 'outbound';
  readonly seconds: number;
  /** Cost in the smallest currency unit. */
  readonly amount: number;
  readonly createdAt: string;
}

/** Where an agent-routed number's calls go (target 'agent': the gateway dials `url`; target 'attach': `webhookUrl` is told and an agent attaches over /v1/stream). */
export interface AgentRoute {
  readonly url: string | null;
  readonly webhookUrl: string | null;
  /** Wire protocol towards the agent. */
  readonly protocol: 'twilio' | 'native';
  /** Native mode: PCM16 sample rate both ways (8000, 16000, 24000, 48000), or 0 for PCMU 8 kHz. */
  readonly sampleRate: 0 | 8000 | 16000 | 24000 | 48000;
  /** Custom parameters passed to the agent in `start`. */
  readonly parameters: Readonly<Record<string, string>>;
  /** What the caller gets when the agent cannot be reached: a tone then hang-up, or a SIP 480 / 503 refusal. */
  readonly fallback: 'tone' | '480' | '503';
}

/** A dialled number (DID) routed to a target and owned by a key. */
export interface NumberRecord {
  /** E.164, e.g. +14155550100. */
  readonly number: string;
  /** What answers: 'echo', 'tone', 'agent' or 'attach'. */
  readonly target: string;
  /** The key whose SIP trunk may receive calls to this number. */
  readonly keyId: string;
  /** SRTP for calls to this number: required, optional or off. */
  readonly srtp: 'required' | 'optional' | 'off';
  /** The agent route for targets 'agent' and 'attach'; null for the others. */
  readonly agent: AgentRoute | null;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export type CallStatus = 'ringing' | 'answered' | 'ended' | 'failed';
/** Who ended a call: api is the key's owner through DELETE /v1/calls/{id}. */
export type CallEndedBy = 'caller' | 'agent' | 'gateway' | 'policy' | 'callee' | 'api';
/** One call leg's record, written when the call starts and completed when it ends (never lost on restart). */
export interface CallRecord {
  /** Call SID: 'CA' + 32 lowercase hex. */
  readonly id: string;
  readonly keyId: string;
  readonly direction: 'inbound' | 'outbound';
  readonly from: string;
  readonly to: string;
  /** echo | tone | agent | attach | … */
  readonly target: string;
  readonly sipCallId: string | null;
  readonly status: CallStatus;
  readonly startedAt: string;
  readonly answeredAt: string | null;
  readonly endedAt: string | null;
  /** Machine-readable reason, e.g. remote-bye, agent-hangup, max-duration, agent-unavailable. */
  readonly endReason: string | null;
  readonly endedBy: CallEndedBy | null;
  readonly billableSeconds: number;
  /** Free-form extra facts (agent fallback cause, media stats, …). */
  readonly details: Readonly<Record<string, unknown>>;
}
export type CallPatch = Partial<Pick<CallRecord, 'status' | 'answeredAt' | 'endedAt' | 'endReason' | 'endedBy' | 'billableSeconds' | 'details'>>;

/** A carrier SIP trunk for outbound calls. The password is sealed by the caller (AES-256-GCM); the store keeps it opaque. */
export interface TrunkRecord {
  /** 'trk_' + random. */
  readonly id: string;
  readonly name: string;
  /** IP address or DNS name of the carrier's SIP server. */
  readonly host: string;
  readonly port: number;
  readonly transport: 'udp' | 'tcp' | 'tls';
  readonly srtp: 'required' | 'optional' | 'off';
  /** Digest username towards the carrier, or null when the trunk authenticates by IP. */
  readonly username: string | null;
  /** Sealed digest password (opaque text), or null. */
  readonly passwordSealed: string | null;
  readonly codecs: readonly ('PCMU' | 'PCMA')[];
  /** Calls per second the carrier accepts on this trunk. */
  readonly maxCps: number;
  /** E.164 destination prefixes this trunk serves; empty = every destination. */
  readonly prefixes: readonly string[];
  /** Lower is tried first. */
  readonly priority: number;
  readonly enabled: boolean;
  readonly createdAt: string;
  readonly updatedAt: string;
}
/** Fields updateTrunk may change; the caller sets updatedAt. */
export type TrunkPatch = Partial<Omit<TrunkRecord, 'id' | 'createdAt'>>;

/** Where a key's (or the account's) webhook events are POSTed. */
export interface WebhookEndpoint {
  /** 'wh_' + random. */
  readonly id: string;
  /** The owning key, or null for an account-wide endpoint (managed by keys:admin; gets every key's events). */
  readonly keyId: string | null;
  readonly url: string;
  /** Event types (e.g. 'call.ended'), or '*' for every type. */
  readonly events: readonly string[];
  readonly enabled: boolean;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export type WebhookDeliveryStatus = 'pending' | 'delivered' | 'failed';
/** One event sent to one endpoint: the delivery log, and the durable queue the delivery loop works from. */
export interface WebhookDelivery {
  /** 'whd_' + random. */
  readonly id: string;
  readonly endpointId: string;
  /** The endpoint's owner (null = account-wide): whose signing secret signs it and who may see it. */
  readonly keyId: string | null;
  readonly eventId: string;
  readonly eventType: string;
  /** The exact JSON body sent (and signed) on every attempt. */
  readonly payload: string;
  readonly status: WebhookDeliveryStatus;
  readonly attempts: number;
  /** When a pending delivery is due (or until when an attempt in flight holds it); null once settled. */
  readonly nextAttemptAt: string | null;
  /** HTTP status of the last attempt, null when it got no response. */
  readonly lastStatus: number | null;
  /** Why the last attempt failed (never the URL or the body). */
  readonly lastError: string | null;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly deliveredAt: string | null;
}
export type WebhookDeliveryPatch = Partial<Pick<WebhookDelivery, 'status' | 'attempts' | 'nextAttemptAt' | 'lastStatus' | 'lastError' | 'updatedAt' | 'deliveredAt'>>;

/** One change to a key (created, policy or status changed, secrets rotated), in commit order. */
export interface KeyChange {
  /** Increases with every change, in the order the changes were committed. */
  readonly seq: number;
  readonly keyId: string;
  /** When the writing process recorded it (its wall clock). */
  readonly at: string;
}

/** A read of the key change feed: the changes after a cursor and the feed's bounds, seen together. */
export interface KeyChangeBatch {
  /** Changes with seq above the cursor, oldest first. */
  readonly changes: readonly KeyChange[];
  /** The lowest seq still stored (older ones were pruned); 0 when the feed is empty. */
  readonly oldestSeq: number;
  /** The highest seq stored; 0 when the feed is empty. */
  readonly newestSeq: number;
}

/**
 * The key change feed read synchronously, for a store that can tell at almost no cost whether
 * another connection has written since it last asked (SQLite's PRAGMA data_version). A cached
 * key lookup asks on every call, so a change committed by another process (the CLI) is seen by
 * the very next request, with no polling window.
 */
export interface SyncKeyChangeFeed {
  /** Changes whenever another connection commits to the database; this connection's own commits leave it alone. */
  dataVersion(): number;
  keyChangesAfter(afterSeq: number, limit: number): KeyChangeBatch;
}

export interface KeyListFilter {
  status?: KeyStatus | undefined;
  mode?: KeyMode | undefined;
  limit?: number | undefined;
  /** Keyset pagination: ids greater than this. */
  after?: string | undefined;
}

/**
 * Persistence for keys, secrets, audit, usage, numbers, call records, trunks, webhooks and single-use token ids. Two implementations:
 * SqliteStore (embedded default) and PostgresStore (cluster); store/store-contract.ts runs the
 * same tests against both. Methods throw StoreError on faults; "not found" is null, not an error.
 */
export interface Store {
  readonly driver: 'sqlite' | 'postgres';
  migrate(): Promise<void>;
  ping(): Promise<void>;
  close(): Promise<void>;

  /*
   * Every key write below (insertKey, updateKey, rotateSecret) appends one row to the key change
   * feed (key_changes) in the same transaction, so every process on the store can learn of it
   * (KeyChangeFeed). recordKeyUse is not a change and appends nothing.
   */
  insertKey(key: KeyRecord, secret: SecretRecord): Promise<void>;
  getKey(id: string): Promise<KeyRecord | null>;
  listKeys(filter?: KeyListFilter): Promise<KeyRecord[]>;
  countKeys(): Promise<number>;
  updateKey(id: string, patch: KeyPatch, updatedAt: string): Promise<KeyRecord | null>;
  /** Sets last_used_at only (updated_at stays): usage, not a change to the key. */
  recordKeyUse(id: string, lastUsedAt: string): Promise<void>;
  /**
   * Adds a new secret, cuts every other secret of the key that outlives `othersExpireAt` to it,
   * and applies `patch` to the key (new hint, end of quarantine), all in one transaction: one
   * change. Null when there is no such key.
   */
  rotateSecret(secret: SecretRecord, othersExpireAt: string, patch: KeyPatch, updatedAt: string): Promise<KeyRecord | null>;
  findSecretByHash(hash: string): Promise<SecretRecord | null>;
  /** Secrets of a key that have not expired at `now` (for SIP digest during a rotation overlap). */
  listLiveSecrets(keyId: string, now: string): Promise<SecretRecord[]>;

  /**
   * Appends to the hash-chained audit log atomically: `build` receives the current head (or
   * null) and returns the entry to write; concurrent writers (other processes or nodes) are
   * serialised so the chain never forks.
   */
  appendAudit(build: (head: AuditEntry | null) => AuditEntry): Promise<AuditEntry>;
  listAudit(opts: { afterSeq?: number; limit: number; target?: string | undefined; descending?: boolean }): Promise<AuditEntry[]>;

  /**
   * Writes a usage record once: a record whose id is already stored is left as it is (the
   * settlement ledger retries with the same id, derived from the call id). True when written now.
   */
  insertUsage(u: UsageRecord): Promise<boolean>;
  sumUsage(keyId: string, fromIso: string, toIso: string): Promise<{ seconds: number; amount: number; calls: number }>;
  listUsage(opts: { keyId?: string | undefined; fromIso: string; toIso: string; limit: number }): Promise<UsageRecord[]>;

  /** Inserts or replaces a number's route. */
  upsertNumber(n: NumberRecord): Promise<void>;
  getNumber(number: string): Promise<NumberRecord | null>;
  listNumbers(opts: { keyId?: string | undefined; limit: number; after?: string | undefined }): Promise<NumberRecord[]>;
  /** True when a number was removed. */
  deleteNumber(number: string): Promise<boolean>;

  insertCall(c: CallRecord): Promise<void>;
  /** Applies the patch (details replaced as a whole when given); null when there is no such call. */
  updateCall(id: string, patch: CallPatch): Promise<CallRecord | null>;
  getCall(id: string): Promise<CallRecord | null>;
  /**
   * Newest first (started_at DESC, id DESC). Paging: `before` (a startedAt) and `beforeId` (the
   * id of the last call of the previous page) continue exactly after it, ties included; `before`
   * alone pages by time.
   */
  listCalls(opts: { keyId?: string | undefined; limit: number; before?: string | undefined; beforeId?: string | undefined }): Promise<CallRecord[]>;

  insertTrunk(t: TrunkRecord): Promise<void>;
  /** Applies the patch; null when there is no such trunk. */
  updateTrunk(id: string, patch: TrunkPatch): Promise<TrunkRecord | null>;
  getTrunk(id: string): Promise<TrunkRecord | null>;
  /** By id, keyset-paged with `after`. */
  listTrunks(opts: { limit: number; after?: string | undefined }): Promise<TrunkRecord[]>;
  deleteTrunk(id: string): Promise<boolean>;

  insertWebhookEndpoint(e: WebhookEndpoint): Promise<void>;
  /** By id, keyset-paged with `after`. keyId: a key's endpoints; null: account-wide ones only; undefined: all. */
  listWebhookEndpoints(opts: { keyId?: string | null | undefined; limit: number; after?: string | undefined }): Promise<WebhookEndpoint[]>;
  getWebhookEndpoint(id: string): Promise<WebhookEndpoint | null>;
  /** Removes the endpoint and settles its pending deliveries as failed ('endpoint removed'); the log stays. */
  deleteWebhookEndpoint(id: string): Promise<boolean>;
  /**
   * Enabled endpoints that receive `eventType` about `keyId`: the key's own plus the account-wide
   * ones, each subscribed to the type or to '*'. With keyId null, only account-wide endpoints.
   */
  endpointsFor(keyId: string | null, eventType: string): Promise<WebhookEndpoint[]>;

  insertDelivery(d: WebhookDelivery): Promise<void>;
  /** Applies the patch; null when there is no such delivery. */
  updateDelivery(id: string, patch: WebhookDeliveryPatch): Promise<WebhookDelivery | null>;
  getDelivery(id: string): Promise<WebhookDelivery | null>;
  /**
   * Newest first (created_at DESC, id DESC). keyId as in listWebhookEndpoints. Paging: `before`
   * (a createdAt) and `beforeId` (the last id of the previous page) continue exactly after it.
   */
  listDeliveries(opts: {
    keyId?: string | null | undefined;
    endpointId?: string | undefined;
    status?: WebhookDeliveryStatus | undefined;
    limit: number;
    before?: string | undefined;
    beforeId?: string | undefined;
  }): Promise<WebhookDelivery[]>;
  /**
   * Atomically takes up to `limit` pending deliveries due at or before `nowIso` (oldest due
   * first) and moves their next_attempt_at to `leaseUntilIso`, so no other claimer (process or
   * node) gets them until the lease ends. Returns them as claimed (nextAttemptAt = the lease).
   */
  claimDueDeliveries(nowIso: string, limit: number, leaseUntilIso: string): Promise<WebhookDelivery[]>;

  /** Key changes with seq above `afterSeq` (at most `limit`, oldest first) and the feed's bounds, read in one snapshot. */
  keyChangesAfter(afterSeq: number, limit: number): Promise<KeyChangeBatch>;
  /** Deletes key changes recorded before `beforeIso`, always keeping the newest one (so seq never goes back). */
  pruneKeyChanges(beforeIso: string): Promise<number>;
  /** Present on SQLite only: see SyncKeyChangeFeed. */
  readonly syncKeyChanges?: SyncKeyChangeFeed;

  /** Records a single-use token id; false when it was already used. */
  consumeTokenId(jti: string, expiresAt: string): Promise<boolean>;
  purgeExpiredTokenIds(now: string): Promise<number>;
}
