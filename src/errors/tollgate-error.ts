/**
 * Typed errors with stable codes (STYLE.md §5). Decisions are data (verdicts); only faults and
 * bad input that must abort an operation throw. Every code here is documented in docs/errors.md,
 * and errors/error-codes.test.ts fails when one is missing there.
 */
export const ERROR_CODES = {
  CONFIG_INVALID: { httpStatus: 500, retryable: false },
  STORE_UNAVAILABLE: { httpStatus: 503, retryable: true },
  COUNTERS_UNAVAILABLE: { httpStatus: 503, retryable: true },
  VALIDATION_FAILED: { httpStatus: 400, retryable: false },
  NOT_FOUND: { httpStatus: 404, retryable: false },
  CONFLICT: { httpStatus: 409, retryable: false },
  UNAUTHENTICATED: { httpStatus: 401, retryable: false },
  KEY_REVOKED: { httpStatus: 401, retryable: false },
  KEY_EXPIRED: { httpStatus: 401, retryable: false },
  KEY_QUARANTINED: { httpStatus: 401, retryable: false },
  TOKEN_INVALID: { httpStatus: 401, retryable: false },
  TOKEN_REPLAYED: { httpStatus: 401, retryable: false },
  FORBIDDEN: { httpStatus: 403, retryable: false },
  SCOPE_NOT_GRANTED: { httpStatus: 403, retryable: false },
  SOURCE_IP_NOT_ALLOWED: { httpStatus: 403, retryable: false },
  MODE_MISMATCH: { httpStatus: 403, retryable: false },
  DESTINATION_INVALID: { httpStatus: 400, retryable: false },
  DESTINATION_NOT_ALLOWED: { httpStatus: 403, retryable: false },
  DESTINATION_BLOCKED: { httpStatus: 403, retryable: false },
  CALLER_ID_NOT_OWNED: { httpStatus: 403, retryable: false },
  TLS_REQUIRED: { httpStatus: 403, retryable: false },
  EGRESS_REFUSED: { httpStatus: 403, retryable: false },
  RATE_LIMITED: { httpStatus: 429, retryable: true },
  CONCURRENCY_LIMITED: { httpStatus: 429, retryable: true },
  BUDGET_EXHAUSTED: { httpStatus: 402, retryable: false },
  DURATION_INVALID: { httpStatus: 400, retryable: false },
  SCAN_FAILED: { httpStatus: 500, retryable: false },
  NO_ROUTE: { httpStatus: 503, retryable: true },
  RECORDING_UNAVAILABLE: { httpStatus: 501, retryable: false },
  DRAINING: { httpStatus: 503, retryable: true },
  INTERNAL: { httpStatus: 500, retryable: false },
} as const satisfies Record<string, { httpStatus: number; retryable: boolean }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class TollgateError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly httpStatus: number;
  /** Extra, non-secret facts for the client (e.g. the invalid field). */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TollgateError';
    this.code = code;
    this.retryable = ERROR_CODES[code].retryable;
    this.httpStatus = ERROR_CODES[code].httpStatus;
    this.details = options?.details;
  }
}

export class ConfigError extends TollgateError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super('CONFIG_INVALID', message, options);
    this.name = 'ConfigError';
  }
}

export class StoreError extends TollgateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('STORE_UNAVAILABLE', message, options);
    this.name = 'StoreError';
  }
}

export class CountersError extends TollgateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('COUNTERS_UNAVAILABLE', message, options);
    this.name = 'CountersError';
  }
}

export function isTollgateError(err: unknown): err is TollgateError {
  return err instanceof TollgateError;
}
