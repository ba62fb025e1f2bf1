import type { Role, Scope } from './scopes.js';

export type KeyMode = 'live' | 'test';
export type KeyStatus = 'active' | 'expired' | 'revoked' | 'quarantined';
export type BudgetPeriod = 'day' | 'month' | 'total';

export interface Budget {
  /** Amount per period in the smallest currency unit (e.g. cents). */
  readonly amount: number;
  readonly period: BudgetPeriod;
  readonly currency: string;
}

/** An API key's policy and state. Never holds the secret. */
export interface KeyRecord {
  readonly id: string;
  readonly name: string;
  readonly mode: KeyMode;
  readonly status: KeyStatus;
  readonly role: Role | null;
  readonly scopes: readonly Scope[];
  /** Allowed source addresses, IPv4 and IPv6 CIDRs; empty = any source. */
  readonly allowedCidrs: readonly string[];
  /** ISO 3166-1 alpha-2 countries this key may dial; empty = none. */
  readonly allowedCountries: readonly string[];
  /** E.164 prefixes this key may never dial, on top of the global list. */
  readonly blockedPrefixes: readonly string[];
  readonly callsPerSecond: number;
  readonly cpsBurst: number;
  readonly maxConcurrentCalls: number;
  readonly budget: Budget | null;
  readonly maxCallDurationSec: number;
  /** E.164 numbers this key owns (caller IDs it may present). */
  readonly callerIds: readonly string[];
  /** SIP trunks of this key must use TLS. */
  readonly requireTls: boolean;
  /** STIR/SHAKEN attestation of this key's outbound calls; null = automatic (A for its own numbers). */
  readonly attestation: 'A' | 'B' | 'C' | null;
  /** Shown in listings to recognise a key without revealing it: "tg_live_AbCd…wxyz". */
  readonly hint: string;
  readonly expiresAt: string | null;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly updatedAt: string;
  readonly lastUsedAt: string | null;
  readonly revokedAt: string | null;
}

/** One secret of a key. A key has one current secret and, during a rotation's grace period, older ones. */
export interface SecretRecord {
  readonly id: string;
  readonly keyId: string;
  /** Hex HMAC-SHA256(pepper, secret). */
  readonly hash: string;
  /** AES-256-GCM sealed realm-bound HA1 values for SIP digest (RFC 7616). */
  readonly ha1Md5: string;
  readonly ha1Sha256: string;
  readonly createdAt: string;
  /** When this secret stops working (set when the key is rotated); null = no end of its own. */
  readonly expiresAt: string | null;
}

export type KeyPatch = Partial<
  Pick<
    KeyRecord,
    | 'name'
    | 'status'
    | 'role'
    | 'scopes'
    | 'allowedCidrs'
    | 'allowedCountries'
    | 'blockedPrefixes'
    | 'callsPerSecond'
    | 'cpsBurst'
    | 'maxConcurrentCalls'
    | 'budget'
    | 'maxCallDurationSec'
    | 'callerIds'
    | 'requireTls'
    | 'attestation'
    | 'expiresAt'
    | 'lastUsedAt'
    | 'revokedAt'
    | 'hint'
  >
>;
