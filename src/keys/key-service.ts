import type { Logger } from 'pino';
import { TollgateError } from '../errors/index.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { RevocationBus } from './revocation-bus.js';
import type { KeyListFilter, Store } from '../store/store.js';
import { LruCache } from '../util/lru-cache.js';
import { systemClock, toIso, type Clock } from '../util/time.js';
import { generateKeySecret, keyHint, newId, parseKeySecret } from './key-format.js';
import type { KeyPatch, KeyRecord, SecretRecord } from '../store/key-record.js';
import { keyCreateSchema, keyUpdateSchema, type KeyCreateInput, type KeyUpdateInput } from './key-input.js';
import { parseInput } from '../util/parse-input.js';
import { computeHa1, digestsEqual, hashSecret, open, seal } from './secret-crypto.js';
import type { Scope } from '../store/scopes.js';
import { KeyChangeFeed } from './key-change-feed.js';

export interface KeyServiceOptions {
  pepper: Buffer;
  masterKey: Buffer;
  realm: string;
  rotationGraceSec: number;
  cache: { maxEntries: number; ttlMs: number };
  defaults: {
    scopes: readonly Scope[];
    callsPerSecond: number;
    cpsBurst: number;
    maxConcurrentCalls: number;
    maxCallDurationSec: number;
    allowedCountries: readonly string[];
  };
  /**
   * Told after a key is rotated or revoked (main.ts passes it on to the webhook service). Awaited;
   * a failure is logged and does not undo the change.
   */
  onEvent?: (type: KeyEventType, keyId: string, data: Record<string, unknown>) => Promise<void> | void;
  /** The store's key change feed, followed once start() has run (see KeyChangeFeed). */
  changeFeed?: { pollIntervalMs: number };
}

export type KeyEventType = 'key.rotated' | 'key.revoked';

export type VerifyFailure = 'UNAUTHENTICATED' | 'KEY_REVOKED' | 'KEY_EXPIRED' | 'KEY_QUARANTINED';
export type VerifyResult =
  | { readonly ok: true; readonly key: KeyRecord; readonly secretId: string }
  | { readonly ok: false; readonly code: VerifyFailure; readonly keyId?: string };

interface CacheEntry {
  readonly secret: SecretRecord | null;
  readonly key: KeyRecord | null;
}

/** Writes of last_used_at are throttled to one per key per minute. */
const LAST_USED_INTERVAL_MS = 60_000;

/**
 * Creates, verifies, rotates and revokes API keys. The secret exists in clear only in the
 * value returned by create/rotate; the store keeps HMAC-SHA256(pepper, secret) and AES-GCM
 * sealed digest HA1 values. Verification is cached (LRU + TTL) by secret hash. A cached entry
 * is dropped when its key changes, whoever changed it:
 * - this process: at once, before the write's promise resolves;
 * - another node: the revocation bus (Redis pub/sub) says so right after the write;
 * - any process on the same store (the CLI above all): the store's key change feed, which a
 *   serving gateway follows after start(). On SQLite every cached lookup checks it first
 *   (PRAGMA data_version, ~1 µs), so the very next request sees the change; on PostgreSQL it is
 *   polled (keys.changeFeed.pollIntervalMs) besides the bus.
 * onChange() listeners hear of each change once, whatever its source.
 */
export class KeyService {
  private readonly cache: LruCache<string, CacheEntry>;
  private readonly lastUsedWritten = new LruCache<string, number>(100_000, LAST_USED_INTERVAL_MS);
  /** Key records by id for the call path (SIP digest, tokens), dropped on every change. */
  private readonly byId: LruCache<string, KeyRecord | null>;
  /** Opened HA1 values by key and algorithm, dropped with the key's other cache entries. */
  private readonly ha1Cache: LruCache<string, { values: string[]; until: number }>;
  /** Ids of each key's working secrets, newest first, dropped with the key's other cache entries. */
  private readonly secretIds: LruCache<string, { ids: readonly string[]; until: number }>;
  private readonly unsubscribe: () => void;
  /** Keys being revoked on this node right now: refused before the store write lands. */
  private readonly revoking = new Set<string>();
  private readonly feed: KeyChangeFeed;
  private readonly listeners = new Set<(keyId: string) => void>();

  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
    private readonly bus: RevocationBus,
    private readonly opts: KeyServiceOptions,
    private readonly log: Logger,
    private readonly clock: Clock = systemClock,
    private readonly onVerify: (result: string) => void = () => {},
  ) {
    this.cache = new LruCache(opts.cache.maxEntries, opts.cache.ttlMs, clock);
    this.ha1Cache = new LruCache(opts.cache.maxEntries, opts.cache.ttlMs, clock);
    this.byId = new LruCache(opts.cache.maxEntries, opts.cache.ttlMs, clock);
    this.secretIds = new LruCache(opts.cache.maxEntries, opts.cache.ttlMs, clock);
    this.feed = new KeyChangeFeed(
      store,
      { pollIntervalMs: opts.changeFeed?.pollIntervalMs ?? 100 },
      {
        changed: (c) => {
          this.forget(c.keyId);
          this.log.debug({ keyId: c.keyId, seq: c.seq, at: c.at }, 'key change seen');
          this.emit(c.keyId);
        },
        lost: (reason) => {
          this.forgetAll();
          this.log.warn({ reason }, 'key changes may have been missed: dropped every cached key');
        },
      },
      log,
      clock,
    );
    this.unsubscribe = bus.subscribe((keyId) => {
      // Drop the entry at once; the feed then says what changed (and tells listeners once).
      this.forget(keyId);
      void this.catchUp();
    });
  }

  /**
   * Follows the store's key change feed from its current head: from now on changes written by
   * any process on the store drop cached entries and reach onChange listeners. Serving gateways
   * call it; one-shot CLI commands do not. Idempotent.
   */
  start(): Promise<void> {
    return this.feed.start();
  }

  close(): void {
    this.feed.close();
    this.unsubscribe();
    this.forgetAll();
    this.listeners.clear();
  }

  /**
   * Calls `listener` with a key's id once for every change to that key this process learns of,
   * once start() has run: a change made here (after its write is committed), one announced on
   * the revocation bus by another node, or one read from the store's feed (e.g. the CLI). A
   * listener that throws is logged and does not stop the others. Returns the unsubscribe.
   */
  onChange(listener: (keyId: string) => void): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  private emit(keyId: string): void {
    for (const l of this.listeners) {
      try {
        l(keyId);
      } catch (err) {
        this.log.warn({ err, keyId }, 'key change listener failed');
      }
    }
  }

  /** Drops every cached entry of a key (called for local and remote changes). */
  forget(keyId: string): void {
    this.cache.deleteWhere((e) => e.key?.id === keyId);
    this.byId.delete(keyId);
    this.ha1Cache.delete(`${keyId}:MD5`);
    this.ha1Cache.delete(`${keyId}:SHA-256`);
    this.secretIds.delete(keyId);
  }

  private forgetAll(): void {
    this.cache.clear();
    this.byId.clear();
    this.ha1Cache.clear();
    this.secretIds.clear();
  }

  /** Applies the feed now; a failure is logged (the poll retries) and never fails the caller. */
  private catchUp(): Promise<void> {
    return this.feed.catchUp().catch((err: unknown) => {
      this.log.warn({ err }, 'could not read the key change feed');
    });
  }

  /**
   * After a committed write: drop the key here, read the feed (which holds this write, so
   * listeners hear of it exactly once) and tell the other nodes.
   */
  private async changed(keyId: string): Promise<void> {
    this.forget(keyId);
    await Promise.all([this.catchUp(), this.bus.publish(keyId)]);
  }

  private makeSecret(keyId: string, secret: string, expiresAt: string | null): SecretRecord {
    const id = newId('sec');
    const { realm, masterKey, pepper } = this.opts;
    return {
      id,
      keyId,
      hash: hashSecret(pepper, secret),
      ha1Md5: seal(masterKey, computeHa1('MD5', keyId, realm, secret), `${keyId}:${id}:MD5`),
      ha1Sha256: seal(masterKey, computeHa1('SHA-256', keyId, realm, secret), `${keyId}:${id}:SHA-256`),
      createdAt: toIso(this.clock()),
      expiresAt,
    };
  }

  async create(input: KeyCreateInput, actor: string): Promise<{ key: KeyRecord; secret: string }> {
    const p = parseInput(keyCreateSchema, input);
    const d = this.opts.defaults;
    const now = toIso(this.clock());
    const id = newId('key');
    const secret = generateKeySecret(p.mode);
    const key: KeyRecord = {
      id,
      name: p.name,
      mode: p.mode,
      status: 'active',
      role: p.role ?? null,
      scopes: p.scopes ?? (p.role ? [] : [...d.scopes]),
      allowedCidrs: p.allowedCidrs ?? [],
      allowedCountries: p.allowedCountries ?? [...d.allowedCountries],
      blockedPrefixes: p.blockedPrefixes ?? [],
      callsPerSecond: p.callsPerSecond ?? d.callsPerSecond,
      cpsBurst: p.cpsBurst ?? d.cpsBurst,
      maxConcurrentCalls: p.maxConcurrentCalls ?? d.maxConcurrentCalls,
      budget: p.budget ?? null,
      maxCallDurationSec: p.maxCallDurationSec ?? d.maxCallDurationSec,
      callerIds: p.callerIds ?? [],
      requireTls: p.requireTls ?? false,
      attestation: p.attestation ?? null,
      hint: keyHint(secret),
      expiresAt: p.expiresAt ?? null,
      createdAt: now,
      createdBy: actor,
      updatedAt: now,
      lastUsedAt: null,
      revokedAt: null,
    };
    await this.store.insertKey(key, this.makeSecret(id, secret, null));
    await this.changed(id);
    await this.audit.append({ actor, action: 'key.created', target: id, details: publicPolicy(key) });
    this.log.info({ keyId: id, hint: key.hint, mode: key.mode, actor }, 'key created');
    return { key, secret };
  }

  get(id: string): Promise<KeyRecord | null> {
    return this.store.getKey(id);
  }

  async require(id: string): Promise<KeyRecord> {
    const k = await this.store.getKey(id);
    if (!k) throw new TollgateError('NOT_FOUND', `no key with id ${id}`);
    return k;
  }

  list(filter: KeyListFilter): Promise<KeyRecord[]> {
    return this.store.listKeys(filter);
  }

  async update(id: string, input: KeyUpdateInput, actor: string): Promise<KeyRecord> {
    const patch = parseInput(keyUpdateSchema, input) as KeyPatch;
    const before = await this.require(id);
    if (before.status === 'revoked') throw new TollgateError('CONFLICT', `key ${id} is revoked and cannot be changed`);
    const updated = await this.store.updateKey(id, patch, toIso(this.clock()));
    if (!updated) throw new TollgateError('NOT_FOUND', `no key with id ${id}`);
    await this.changed(id);
    await this.audit.append({ actor, action: 'key.updated', target: id, details: { changed: patch } });
    return updated;
  }

  /**
   * Issues a new secret. The old ones keep working for `graceSec` (default from config; 0 =
   * stop at once). Rotating a quarantined key ends the quarantine with no grace: its old
   * secret is presumed leaked.
   */
  async rotate(id: string, graceSec: number | undefined, actor: string): Promise<{ key: KeyRecord; secret: string; oldSecretsExpireAt: string }> {
    const key = await this.require(id);
    if (key.status === 'revoked') throw new TollgateError('CONFLICT', `key ${id} is revoked and cannot be rotated`);
    const grace = key.status === 'quarantined' ? 0 : graceSec ?? this.opts.rotationGraceSec;
    const nowMs = this.clock();
    const oldSecretsExpireAt = toIso(nowMs + grace * 1000);
    const secret = generateKeySecret(key.mode);
    const patch: KeyPatch = { hint: keyHint(secret), ...(key.status === 'quarantined' ? { status: 'active' as const } : {}) };
    const withHint = await this.store.rotateSecret(this.makeSecret(id, secret, null), oldSecretsExpireAt, patch, toIso(nowMs));
    if (!withHint) throw new TollgateError('NOT_FOUND', `no key with id ${id}`);
    await this.changed(id);
    await this.audit.append({ actor, action: 'key.rotated', target: id, details: { graceSec: grace, oldSecretsExpireAt, wasQuarantined: key.status === 'quarantined' } });
    this.log.info({ keyId: id, graceSec: grace, actor }, 'key rotated');
    await this.announce('key.rotated', id, { keyId: id, hint: withHint.hint, graceSec: grace, oldSecretsExpireAt, wasQuarantined: key.status === 'quarantined' });
    return { key: withHint, secret, oldSecretsExpireAt };
  }

  /**
   * Revocation is immediate and final for every later check on every node. On this node the
   * key is refused from the moment revoke() is called (fail closed while the store write is in
   * flight); other nodes drop it when the revocation bus tells them, right after the write, or
   * at their next read of the store's key change feed (SQLite: their next lookup; PostgreSQL:
   * within keys.changeFeed.pollIntervalMs).
   */
  async revoke(id: string, reason: string | undefined, actor: string): Promise<KeyRecord> {
    this.revoking.add(id);
    try {
      const key = await this.require(id);
      if (key.status === 'revoked') return key;
      const now = toIso(this.clock());
      const updated = await this.store.updateKey(id, { status: 'revoked', revokedAt: now }, now);
      await this.changed(id);
      await this.audit.append({ actor, action: 'key.revoked', target: id, details: { reason: reason ?? null } });
      this.log.warn({ keyId: id, actor }, 'key revoked');
      await this.announce('key.revoked', id, { keyId: id, revokedAt: updated?.revokedAt ?? now, reason: reason ?? null });
      return updated ?? key;
    } finally {
      this.revoking.delete(id);
    }
  }

  private async announce(type: KeyEventType, keyId: string, data: Record<string, unknown>): Promise<void> {
    try {
      await this.opts.onEvent?.(type, keyId, data);
    } catch (err) {
      this.log.warn({ err, keyId, event: type }, 'key event hook failed');
    }
  }

  /** Suspends a key whose secret may have leaked (e.g. found by the scanner) until it is rotated. */
  async quarantine(id: string, reason: string, actor: string): Promise<KeyRecord> {
    const key = await this.require(id);
    if (key.status === 'revoked' || key.status === 'quarantined') return key;
    const updated = await this.store.updateKey(id, { status: 'quarantined' }, toIso(this.clock()));
    await this.changed(id);
    await this.audit.append({ actor, action: 'key.quarantined', target: id, details: { reason } });
    this.log.warn({ keyId: id, actor }, 'key quarantined');
    return updated ?? key;
  }

  /** Verifies a presented secret. Never throws for bad input; store faults propagate. */
  async verify(presented: string): Promise<VerifyResult> {
    const result = await this.verifyInner(presented);
    this.onVerify(result.ok ? 'ok' : result.code);
    return result;
  }

  private async verifyInner(presented: string): Promise<VerifyResult> {
    if (presented.length > 128 || !parseKeySecret(presented)) return { ok: false, code: 'UNAUTHENTICATED' };
    const hash = hashSecret(this.opts.pepper, presented);
    this.feed.check();
    let entry = this.cache.get(hash);
    if (!entry) {
      const secret = await this.store.findSecretByHash(hash);
      const key = secret ? await this.store.getKey(secret.keyId) : null;
      entry = { secret, key };
      this.cache.set(hash, entry);
    }
    const { secret, key } = entry;
    if (!secret || !key || !digestsEqual(secret.hash, hash)) return { ok: false, code: 'UNAUTHENTICATED' };
    const now = this.clock();
    const fail = (code: VerifyFailure): VerifyResult => ({ ok: false, code, keyId: key.id });
    if (key.status === 'revoked' || this.revoking.has(key.id)) return fail('KEY_REVOKED');
    if (key.status === 'quarantined') return fail('KEY_QUARANTINED');
    if (key.status === 'expired' || (key.expiresAt && Date.parse(key.expiresAt) <= now)) return fail('KEY_EXPIRED');
    if (secret.expiresAt && Date.parse(secret.expiresAt) <= now) return fail('KEY_EXPIRED');
    this.touch(key, now);
    return { ok: true, key, secretId: secret.id };
  }

  /**
   * A key by id through the cache (SIP digest, token parents): as fresh as verify(), since every
   * change by any process drops it (revocation bus, key change feed), and a key being revoked
   * here is refused.
   */
  async getCurrent(id: string): Promise<KeyRecord | null> {
    this.feed.check();
    let key = this.byId.get(id);
    if (key === undefined) {
      key = await this.store.getKey(id);
      this.byId.set(id, key);
    }
    return key && this.revoking.has(id) ? { ...key, status: 'revoked' } : key;
  }

  /** Records last use (not a policy change: updatedAt stays). */
  private touch(key: KeyRecord, now: number): void {
    if (this.lastUsedWritten.get(key.id) !== undefined) return;
    this.lastUsedWritten.set(key.id, now);
    this.store.recordKeyUse(key.id, toIso(now)).catch((err: unknown) => {
      this.log.warn({ err, keyId: key.id }, 'could not record last use of key');
    });
  }

  /**
   * HA1 values of a key's live secrets for SIP digest (RFC 7616): more than one during a
   * rotation's grace period. Opened from their AES-256-GCM seal only here.
   */
  async digestHa1(keyId: string, algorithm: 'MD5' | 'SHA-256'): Promise<string[]> {
    const now = this.clock();
    const cacheKey = `${keyId}:${algorithm}`;
    this.feed.check();
    const hit = this.ha1Cache.get(cacheKey);
    // A cached set is good until the first of its secrets stops working (rotation grace end).
    if (hit && hit.until > now) return hit.values;
    const secrets = await this.store.listLiveSecrets(keyId, toIso(now));
    const values = secrets.map((s) => open(this.opts.masterKey, algorithm === 'MD5' ? s.ha1Md5 : s.ha1Sha256, `${keyId}:${s.id}:${algorithm}`));
    const until = Math.min(Infinity, ...secrets.map((s) => (s.expiresAt ? Date.parse(s.expiresAt) : Infinity)));
    this.ha1Cache.set(cacheKey, { values, until });
    return values;
  }

  /**
   * Ids of the key's working secrets, newest first: the current one and, during a rotation's
   * grace period, the older ones. Short-lived tokens are bound to one of them (TokenService):
   * a token stops working when the secret it was minted from does, so `rotate --grace 0`
   * (a leaked secret) kills the tokens minted from it too. As fresh as verify().
   */
  async liveSecretIds(keyId: string): Promise<readonly string[]> {
    const now = this.clock();
    this.feed.check();
    const hit = this.secretIds.get(keyId);
    if (hit && hit.until > now) return hit.ids;
    const secrets = await this.store.listLiveSecrets(keyId, toIso(now));
    const ids = secrets.map((s) => s.id);
    const until = Math.min(Infinity, ...secrets.map((s) => (s.expiresAt ? Date.parse(s.expiresAt) : Infinity)));
    this.secretIds.set(keyId, { ids, until });
    return ids;
  }
}

/** The key's policy without anything secret, for audit details and API output. */
export function publicPolicy(k: KeyRecord): Record<string, unknown> {
  return {
    name: k.name,
    mode: k.mode,
    role: k.role,
    scopes: k.scopes,
    allowedCidrs: k.allowedCidrs,
    allowedCountries: k.allowedCountries,
    blockedPrefixes: k.blockedPrefixes,
    callsPerSecond: k.callsPerSecond,
    cpsBurst: k.cpsBurst,
    maxConcurrentCalls: k.maxConcurrentCalls,
    budget: k.budget,
    maxCallDurationSec: k.maxCallDurationSec,
    callerIds: k.callerIds,
    requireTls: k.requireTls,
    attestation: k.attestation,
    expiresAt: k.expiresAt,
  };
}
