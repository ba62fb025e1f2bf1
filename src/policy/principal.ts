import type { KeyRecord } from '../store/key-record.js';
import { effectiveScopes, type Scope } from '../store/scopes.js';
import type { TokenClaims } from '../keys/token-service.js';

/** Who is acting: an API key, or a short-lived token standing in for its parent key. */
export interface Principal {
  readonly key: KeyRecord;
  readonly scopes: ReadonlySet<Scope>;
  readonly via: 'key' | 'token';
  readonly token: TokenClaims | null;
  /** The key secret the request presented (null for tokens, SIP and the local operator): tokens it mints are bound to it. */
  readonly secretId: string | null;
}

export function keyPrincipal(key: KeyRecord, secretId: string | null = null): Principal {
  return { key, scopes: effectiveScopes(key.scopes, key.role), via: 'key', token: null, secretId };
}

export function tokenPrincipal(key: KeyRecord, claims: TokenClaims): Principal {
  return { key, scopes: new Set(claims.scopes), via: 'token', token: claims, secretId: null };
}

/** Audit actor label: never the secret, only ids. */
export function actorOf(p: Principal): string {
  return p.via === 'key' ? `key:${p.key.id}` : `token:${p.token?.jti ?? '?'}@key:${p.key.id}`;
}
