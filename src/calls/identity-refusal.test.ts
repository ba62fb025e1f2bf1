import { describe, it, expect } from 'vitest';
import { sipRefusalFor } from '../sip/call-policy.js';
import { STIR_FAILURES, sipResponseFor } from '../stir/index.js';
import { identityRefusal } from './identity-refusal.js';

describe('a call refused for its Identity gets the RFC 8224 §6.2.2 response of the failure', () => {
  it.each(STIR_FAILURES)('%s', (failure) => {
    const r = sipRefusalFor(identityRefusal(failure));
    expect({ status: r.status, reason: r.reason }).toEqual(sipResponseFor(failure));
  });

  it('stale is 403 Stale Date, x5u-unavailable 436, untrusted-certificate 437, bad-signature 438', () => {
    expect(identityRefusal('stale')).toBe('IDENTITY_STALE');
    expect(identityRefusal('x5u-unavailable')).toBe('X5U_UNAVAILABLE');
    expect(identityRefusal('untrusted-certificate')).toBe('CREDENTIAL_UNSUPPORTED');
    expect(identityRefusal('bad-signature')).toBe('IDENTITY_INVALID');
  });
});
