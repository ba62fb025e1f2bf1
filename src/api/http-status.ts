import type { CredentialFailure, RefusalCode } from '../policy/credentials.js';

/**
 * The one mapping from a refusal to an HTTP status (STYLE.md §4). The `never` check makes the
 * compiler name any verdict added later and not mapped here.
 */
export function httpStatusFor(code: RefusalCode): number {
  switch (code) {
    case 'UNAUTHENTICATED':
    case 'KEY_REVOKED':
    case 'KEY_EXPIRED':
    case 'KEY_QUARANTINED':
    case 'TOKEN_INVALID':
    case 'TOKEN_REPLAYED':
      return 401;
    case 'SCOPE_NOT_GRANTED':
    case 'SOURCE_IP_NOT_ALLOWED':
    case 'TLS_REQUIRED':
    case 'MODE_MISMATCH':
    case 'DESTINATION_NOT_ALLOWED':
    case 'DESTINATION_BLOCKED':
    case 'CALLER_ID_NOT_OWNED':
      return 403;
    case 'DESTINATION_INVALID':
    case 'DURATION_INVALID':
      return 400;
    case 'BUDGET_EXHAUSTED':
      return 402;
    case 'RATE_LIMITED':
    case 'CONCURRENCY_LIMITED':
      return 429;
    default: {
      const unmapped: never = code;
      throw new Error(`no HTTP status for ${String(unmapped)}`);
    }
  }
}

/** Public messages for authentication failures: never say which part of a credential was wrong. */
export function authMessage(code: CredentialFailure): string {
  switch (code) {
    case 'UNAUTHENTICATED':
      return 'invalid credentials';
    case 'KEY_REVOKED':
      return 'the key has been revoked';
    case 'KEY_EXPIRED':
      return 'the key has expired';
    case 'KEY_QUARANTINED':
      return 'the key is quarantined until it is rotated';
    case 'TOKEN_INVALID':
      return 'invalid credentials';
    case 'TOKEN_REPLAYED':
      return 'the token has already been used';
    default: {
      const unmapped: never = code;
      throw new Error(`no message for ${String(unmapped)}`);
    }
  }
}

export interface ErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown>; retryAfterMs?: number };
}

export function errorBody(code: string, message: string, extra: { details?: Record<string, unknown> | undefined; retryAfterMs?: number | undefined } = {}): ErrorBody {
  return {
    error: {
      code,
      message,
      ...(extra.details ? { details: extra.details } : {}),
      ...(extra.retryAfterMs !== undefined ? { retryAfterMs: extra.retryAfterMs } : {}),
    },
  };
}
