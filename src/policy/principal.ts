import type { KeyRecord } from '../store/key-record.js';
import { effectiveScopes, type Scope } from '../store/scopes.js';
import type { TokenClaims } from '../keys/token-service.js';

/** Who is acting: an API key, or a short-lived token standing in for its parent key. */
export interface Principal {
  readonly key: KeyRecord;
  readonly scopes: ReadonlySet<Scope>;
  readonly via: 'key' | 'token';
  readonly token: TokenClaims | null;
}

export function keyPrincipal(key: KeyRecord): Principal {
  return { key, scopes: effectiveScopes(key.scopes, key.role), via: 'key', token: null };
}

export function tokenPrincipal(key: KeyRecord, claims: TokenClaims): Principal {
  return { key, scopes: new Set(claims.scopes), via: 'token', token: claims };
}

/** Audit actor label: never the secret, only ids. */
export function actorOf(p: Principal): string {
  return p.via === 'key' ? `key:${p.key.id}` : `token:${p.token?.jti ?? '?'}@key:${p.key.id}`;
}
