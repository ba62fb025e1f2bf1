/** Scopes a key can carry, and the operator roles that map to scope sets (RBAC). */
export const ALL_SCOPES = [
  'calls:inbound',
  'calls:outbound',
  'calls:read',
  'recordings:read',
  'usage:read',
  'keys:admin',
  'tokens:mint',
  'audit:read',
] as const;

export type Scope = (typeof ALL_SCOPES)[number];

export const ROLES = ['admin', 'developer', 'support', 'billing'] as const;
export type Role = (typeof ROLES)[number];

/**
 * admin: everything. developer: build and run agents (calls, tokens, usage).
 * support: read calls, recordings and the audit log to answer customers.
 * billing: read usage and calls.
 */
export const ROLE_SCOPES: Readonly<Record<Role, readonly Scope[]>> = Object.freeze({
  admin: ALL_SCOPES,
  developer: ['calls:inbound', 'calls:outbound', 'calls:read', 'recordings:read', 'usage:read', 'tokens:mint'],
  support: ['calls:read', 'recordings:read', 'audit:read'],
  billing: ['usage:read', 'calls:read'],
});

export function isScope(s: string): s is Scope {
  return (ALL_SCOPES as readonly string[]).includes(s);
}

export function isRole(s: string): s is Role {
  return (ROLES as readonly string[]).includes(s);
}

/** The scopes a key effectively holds: its own plus those of its role. */
export function effectiveScopes(scopes: readonly Scope[], role: Role | null): Set<Scope> {
  const out = new Set<Scope>(scopes);
  if (role) for (const s of ROLE_SCOPES[role]) out.add(s);
  return out;
}
