import { describe, it, expect } from 'vitest';
import { sipRefusalFor, type CallDenyCode } from './call-policy.js';

/** The documented table (docs/sip.md): every refusal code and its SIP status. */
const EXPECTED: Record<CallDenyCode, number> = {
  KEY_REVOKED: 403,
  KEY_EXPIRED: 403,
  KEY_QUARANTINED: 403,
  SCOPE_NOT_GRANTED: 403,
  SOURCE_IP_NOT_ALLOWED: 403,
  TLS_REQUIRED: 403,
  MODE_MISMATCH: 403,
  DESTINATION_INVALID: 484,
  DESTINATION_NOT_ALLOWED: 403,
  DESTINATION_BLOCKED: 403,
  CALLER_ID_NOT_OWNED: 403,
  DURATION_INVALID: 400,
  RATE_LIMITED: 503,
  CONCURRENCY_LIMITED: 486,
  BUDGET_EXHAUSTED: 403,
  NUMBER_NOT_FOUND: 404,
  NUMBER_NOT_OWNED: 404,
  MEDIA_UNAVAILABLE: 480,
  AGENT_UNAVAILABLE: 480,
  AGENT_SERVICE_UNAVAILABLE: 503,
  RECORD_UNAVAILABLE: 503,
  IDENTITY_STALE: 403,
  X5U_UNAVAILABLE: 436,
  CREDENTIAL_UNSUPPORTED: 437,
  IDENTITY_INVALID: 438,
  TEMPORARILY_UNAVAILABLE: 480,
  OVERLOADED: 503,
  DRAINING: 503,
};

describe('the one mapping from a call refusal to a SIP response', () => {
  it.each(Object.entries(EXPECTED))('%s → %i', (code, status) => {
    expect(sipRefusalFor(code as CallDenyCode).status).toBe(status);
  });

  it('a rate limit carries Retry-After in whole seconds, at least 1', () => {
    expect(sipRefusalFor('RATE_LIMITED', 1).retryAfterSec).toBe(1);
    expect(sipRefusalFor('RATE_LIMITED', 2500).retryAfterSec).toBe(3);
    expect(sipRefusalFor('DRAINING').retryAfterSec).toBe(30);
    expect(sipRefusalFor('OVERLOADED', 10_000).retryAfterSec).toBe(10);
    expect(sipRefusalFor('KEY_REVOKED').retryAfterSec).toBeUndefined();
  });

  it('STIR/SHAKEN refusals carry the reason phrases of RFC 8224 §6.2.2', () => {
    expect(sipRefusalFor('IDENTITY_STALE')).toEqual({ status: 403, reason: 'Stale Date' });
    expect(sipRefusalFor('X5U_UNAVAILABLE')).toEqual({ status: 436, reason: 'Bad Identity Info' });
    expect(sipRefusalFor('CREDENTIAL_UNSUPPORTED')).toEqual({ status: 437, reason: 'Unsupported Credential' });
    expect(sipRefusalFor('IDENTITY_INVALID')).toEqual({ status: 438, reason: 'Invalid Identity Header' });
  });

  it('numbers owned by another key answer exactly like unknown ones (no enumeration)', () => {
    expect(sipRefusalFor('NUMBER_NOT_OWNED')).toEqual(sipRefusalFor('NUMBER_NOT_FOUND'));
  });
});
