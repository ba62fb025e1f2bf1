import type { CallDenyCode } from '../sip/call-policy.js';
import type { StirFailure } from '../stir/index.js';

/**
 * The refusal of a call whose Identity failed verification, when stir.verify.rejectFailed is
 * on: the RFC 8224 §6.2.2 response for the failure class (stir's sipResponseFor says the same
 * statuses; a unit test holds the two tables together).
 */
export function identityRefusal(failure: StirFailure): CallDenyCode {
  switch (failure) {
    case 'stale':
      return 'IDENTITY_STALE';
    case 'x5u-unavailable':
      return 'X5U_UNAVAILABLE';
    case 'unsupported':
    case 'untrusted-certificate':
      return 'CREDENTIAL_UNSUPPORTED';
    case 'malformed':
    case 'tn-mismatch':
    case 'bad-signature':
      return 'IDENTITY_INVALID';
    default: {
      const never: never = failure;
      throw new Error(`unknown STIR failure ${String(never)}`);
    }
  }
}
