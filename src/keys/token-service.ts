import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';
import { z } from 'zod';
import { TollgateError } from '../errors/index.js';
import type { Store } from '../store/store.js';
import { systemClock, toIso, type Clock } from '../util/time.js';
import { newId } from './key-format.js';
import type { KeyRecord } from '../store/key-record.js';
import { isE164 } from './key-input.js';
import { parseInput } from '../util/parse-input.js';
import { ALL_SCOPES, effectiveScopes, type Scope } from '../store/scopes.js';

/** Scopes a short-lived token may never carry: a token cannot mint tokens or administer keys. */
const NEVER_DELEGATED: ReadonlySet<Scope> = new Set(['keys:admin', 'tokens:mint']);
const TOKEN_TYPE = 'tollgate-call+jwt';
const AUDIENCE = 'tollgate';

export const mintSchema = z.strictObject({
  scopes: z.array(z.enum(ALL_SCOPES)).min(1).max(ALL_SCOPES.length).optional(),
  ttlSec: z.number().int().min(1).optional(),
  callId: z.string().trim().min(1).max(128).optional(),
  destination: z.string().refine(isE164, 'must be a valid E.164 number such as +12025550100').optional(),
});
export type MintInput = z.input<typeof mintSchema>;

export interface TokenClaims {
  readonly jti: string;
  readonly keyId: string;
  readonly scopes: readonly Scope[];
  readonly callId: string | null;
  readonly destination: string | null;
  readonly expiresAt: string;
}

export type TokenVerifyResult =
  | { readonly ok: true; readonly claims: TokenClaims; readonly key: KeyRecord }
  | { readonly ok: false; readonly code: 'TOKEN_INVALID' | 'TOKEN_REPLAYED' | 'KEY_REVOKED' | 'KEY_EXPIRED' | 'KEY_QUARANTINED'; readonly keyId?: string };

/** What the token service reads of parent keys (KeyService fits). */
export interface TokenParents {
  /** The key as it is now (status, scopes), null when it does not exist. */
  getCurrent(id: string): Promise<KeyRecord | null>;
  /** Ids of the key's working secrets, newest first. */
  liveSecretIds(id: string): Promise<readonly string[]>;
}

export interface TokenServiceOptions {
  signingKeyPem: string;
  issuer: string;
  defaultTtlSec: number;
  maxTtlSec: number;
}

/**
 * Short-lived single-call tokens for client apps (EdDSA/Ed25519 JWTs via jose). Bound to the
 * parent key (sub) and to the parent's secret it was minted from (`sec`, a secret id), carrying
 * a subset of its scopes and optionally one call id or destination. Single use: the jti is
 * recorded in the store at first use and refused after. A token dies with its parent key and
 * with its parent secret: both are re-read at every verification, so a rotation with no grace
 * (the "secret leaked" path) ends the tokens minted before it at once, and a rotation with
 * grace ends them when the old secret stops working.
 */
export class TokenService {
  private readonly privateKey: KeyObject;
  private readonly publicKey: KeyObject;

  constructor(
    private readonly store: Store,
    private readonly parents: TokenParents,
    private readonly opts: TokenServiceOptions,
    private readonly clock: Clock = systemClock,
  ) {
    this.privateKey = createPrivateKey(opts.signingKeyPem);
    if (this.privateKey.asymmetricKeyType !== 'ed25519') throw new TollgateError('CONFIG_INVALID', 'secrets.tokenSigningKey must be an Ed25519 key');
    this.publicKey = createPublicKey(this.privateKey);
  }

  /**
   * Mints a token for `parent`. `from.secretId` is the secret the request presented (REST);
   * without one (the CLI, the gateway's own attach webhooks) the token is bound to the key's
   * newest working secret.
   */
  async mint(parent: KeyRecord, input: MintInput, from: { secretId?: string | null } = {}): Promise<{ token: string; claims: TokenClaims }> {
    const p = parseInput(mintSchema, input);
    const ttl = p.ttlSec ?? this.opts.defaultTtlSec;
    if (ttl > this.opts.maxTtlSec) {
      throw new TollgateError('VALIDATION_FAILED', `ttlSec: must be at most ${this.opts.maxTtlSec}`, { details: { field: 'ttlSec' } });
    }
    const held = effectiveScopes(parent.scopes, parent.role);
    const delegable = [...held].filter((s) => !NEVER_DELEGATED.has(s));
    const scopes = p.scopes ?? delegable;
    const notHeld = scopes.filter((s) => !held.has(s) || NEVER_DELEGATED.has(s));
    if (notHeld.length > 0) {
      throw new TollgateError('SCOPE_NOT_GRANTED', `a token cannot carry ${notHeld.join(', ')}: the parent key does not hold it or it cannot be delegated`);
    }
    if (scopes.length === 0) throw new TollgateError('SCOPE_NOT_GRANTED', 'the parent key holds no scope a token can carry');
    const secretId = from.secretId ?? (await this.parents.liveSecretIds(parent.id))[0];
    if (!secretId) throw new TollgateError('KEY_EXPIRED', 'the parent key has no working secret to mint a token from');
    const nowSec = Math.floor(this.clock() / 1000);
    const jti = newId('tok');
    const claims: TokenClaims = {
      jti,
      keyId: parent.id,
      scopes,
      callId: p.callId ?? null,
      destination: p.destination ?? null,
      expiresAt: toIso((nowSec + ttl) * 1000),
    };
    const token = await new SignJWT({ scope: scopes.join(' '), sec: secretId, ...(claims.callId ? { cid: claims.callId } : {}), ...(claims.destination ? { dst: claims.destination } : {}) })
      .setProtectedHeader({ alg: 'EdDSA', typ: TOKEN_TYPE })
      .setIssuer(this.opts.issuer)
      .setAudience(AUDIENCE)
      .setSubject(parent.id)
      .setJti(jti)
      .setIssuedAt(nowSec)
      .setExpirationTime(nowSec + ttl)
      .sign(this.privateKey);
    return { token, claims };
  }

  /** True when the text has the shape of a JWT; cheap pre-check before the crypto. */
  static looksLikeToken(text: string): boolean {
    return text.length < 4096 && /^eyJ[0-9A-Za-z_-]*\.[0-9A-Za-z_-]+\.[0-9A-Za-z_-]+$/.test(text);
  }

  /** Verifies signature, issuer, audience, expiry, parent key and parent secret, then consumes the jti once. */
  async verify(token: string): Promise<TokenVerifyResult> {
    if (!TokenService.looksLikeToken(token)) return { ok: false, code: 'TOKEN_INVALID' };
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.publicKey, {
        algorithms: ['EdDSA'],
        issuer: this.opts.issuer,
        audience: AUDIENCE,
        typ: TOKEN_TYPE,
        currentDate: new Date(this.clock()),
        clockTolerance: 0,
        requiredClaims: ['jti', 'sub', 'exp', 'iat'],
      }));
    } catch (err) {
      if (err instanceof joseErrors.JOSEError) return { ok: false, code: 'TOKEN_INVALID' };
      throw err;
    }
    const keyId = String(payload.sub);
    const jti = String(payload.jti);
    const exp = Number(payload.exp);
    const iat = Number(payload.iat);
    if (!Number.isFinite(exp) || !Number.isFinite(iat) || exp - iat > this.opts.maxTtlSec) return { ok: false, code: 'TOKEN_INVALID' };
    const scopes = (typeof payload.scope === 'string' ? payload.scope : '').split(' ').filter((s): s is Scope => (ALL_SCOPES as readonly string[]).includes(s));
    const key = await this.parents.getCurrent(keyId);
    if (!key) return { ok: false, code: 'TOKEN_INVALID' };
    if (key.status === 'revoked') return { ok: false, code: 'KEY_REVOKED', keyId };
    if (key.status === 'quarantined') return { ok: false, code: 'KEY_QUARANTINED', keyId };
    if (key.status === 'expired' || (key.expiresAt && Date.parse(key.expiresAt) <= this.clock())) return { ok: false, code: 'KEY_EXPIRED', keyId };
    // The secret it was minted from must still work: gone after `rotate --grace 0`, or at the
    // end of a rotation's grace. A token without the binding cannot be checked, so it is refused.
    const sec = payload.sec;
    if (typeof sec !== 'string' || !(await this.parents.liveSecretIds(keyId)).includes(sec)) return { ok: false, code: 'TOKEN_INVALID', keyId };
    // A scope the parent lost after minting is lost by the token too.
    const held = effectiveScopes(key.scopes, key.role);
    const kept = scopes.filter((s) => held.has(s));
    if (!(await this.store.consumeTokenId(jti, toIso(exp * 1000)))) return { ok: false, code: 'TOKEN_REPLAYED', keyId };
    return {
      ok: true,
      key,
      claims: {
        jti,
        keyId,
        scopes: kept,
        callId: typeof payload.cid === 'string' ? payload.cid : null,
        destination: typeof payload.dst === 'string' ? payload.dst : null,
        expiresAt: toIso(exp * 1000),
      },
    };
  }
}
