/**
 * What the SIP layer asks of the rest of the gateway (ARCHITECTURE.md: sip/ never imports
 * keys/ or policy/): digest credentials, and the refusal codes the calls/ layer answers with.
 */
import type { DigestAlgorithm } from './digest-auth.js';

export type CallDenyCode =
  | 'KEY_REVOKED'
  | 'KEY_EXPIRED'
  | 'KEY_QUARANTINED'
  | 'SCOPE_NOT_GRANTED'
  | 'SOURCE_IP_NOT_ALLOWED'
  | 'TLS_REQUIRED'
  | 'MODE_MISMATCH'
  | 'DESTINATION_INVALID'
  | 'DESTINATION_NOT_ALLOWED'
  | 'DESTINATION_BLOCKED'
  | 'CALLER_ID_NOT_OWNED'
  | 'DURATION_INVALID'
  | 'RATE_LIMITED'
  | 'CONCURRENCY_LIMITED'
  | 'BUDGET_EXHAUSTED'
  | 'NUMBER_NOT_FOUND'
  | 'NUMBER_NOT_OWNED'
  | 'MEDIA_UNAVAILABLE'
  /** The number's agent could not be reached (fallback 480). */
  | 'AGENT_UNAVAILABLE'
  /** The number's agent could not be reached (fallback 503). */
  | 'AGENT_SERVICE_UNAVAILABLE'
  /** The call record could not be written: no call runs unrecorded. */
  | 'RECORD_UNAVAILABLE'
  /**
   * The call's Identity failed verification and stir.verify.rejectFailed is on: one code per
   * RFC 8224 §6.2.2 response (§13.2 registers 436–438). IDENTITY_STALE: the PASSporT's iat is
   * outside the freshness window (403 Stale Date); X5U_UNAVAILABLE: the certificate at the x5u
   * could not be fetched (436); CREDENTIAL_UNSUPPORTED: the certificate or the PASSporT type is
   * not one we accept (437); IDENTITY_INVALID: the header is malformed, its numbers do not match
   * the call, or its signature does not verify (438).
   */
  | 'IDENTITY_STALE'
  | 'X5U_UNAVAILABLE'
  | 'CREDENTIAL_UNSUPPORTED'
  | 'IDENTITY_INVALID'
  /** The call ended on our side before it was answered (no more specific reason to give). */
  | 'TEMPORARILY_UNAVAILABLE'
  /** The node is overloaded (event-loop delay, INVITEs in progress or media load over its threshold). */
  | 'OVERLOADED'
  | 'DRAINING';

/** Where the SIP layer gets digest credentials: a key's HA1 values (calls/ implements it with the key service). */
export interface SipCredentials {
  /** HA1 values of a digest username (a key id); null for an unknown or unusable user. */
  ha1(username: string, algorithm: DigestAlgorithm): Promise<string[] | null>;
}

/**
 * The digest nonce-count memory (policy/ implements it on the counters backend, so with Redis
 * every node of a cluster sees what the others accepted). A fault (Redis down) rejects, and
 * the request is refused: replay protection fails closed.
 */
export interface NonceCountStore {
  /** True the first time `nc` is used with `nonce` (RFC 7616 §3.4.5); false for a replay. */
  claim(nonce: string, nc: number, ttlMs: number): Promise<boolean>;
}

/** Whether the node can take a new call now, or is overloaded (and which signal said so). */
export type LoadVerdict =
  | { readonly ok: true }
  | { readonly ok: false; readonly signal: string; readonly retryAfterSec: number };

/**
 * How loaded the node is, asked before each new INVITE, before any digest work (the
 * composition root implements it from the event-loop delay, the INVITEs in progress and the
 * media workers' load). Must answer synchronously and cheaply: it runs for every INVITE.
 */
export interface LoadMonitor {
  admit(): LoadVerdict;
}

export interface SipRefusal {
  readonly status: number;
  readonly reason: string;
  readonly retryAfterSec?: number;
}

/**
 * The one mapping from a refusal to a SIP response (STYLE.md §4). The response carries a
 * `Reason: SIP;cause=<status>;text="<CODE>"` header (RFC 3326) so a carrier can tell why.
 */
export function sipRefusalFor(code: CallDenyCode, retryAfterMs?: number): SipRefusal {
  switch (code) {
    case 'KEY_REVOKED':
    case 'KEY_EXPIRED':
    case 'KEY_QUARANTINED':
    case 'SCOPE_NOT_GRANTED':
    case 'SOURCE_IP_NOT_ALLOWED':
    case 'TLS_REQUIRED':
    case 'MODE_MISMATCH':
    case 'DESTINATION_NOT_ALLOWED':
    case 'DESTINATION_BLOCKED':
    case 'CALLER_ID_NOT_OWNED':
    case 'BUDGET_EXHAUSTED':
      return { status: 403, reason: 'Forbidden' };
    // A number owned by another key answers like an unknown one: no enumeration of numbers.
    case 'NUMBER_NOT_OWNED':
    case 'NUMBER_NOT_FOUND':
      return { status: 404, reason: 'Not Found' };
    case 'DESTINATION_INVALID':
      return { status: 484, reason: 'Address Incomplete' };
    case 'DURATION_INVALID':
      return { status: 400, reason: 'Bad Request' };
    case 'CONCURRENCY_LIMITED':
      return { status: 486, reason: 'Busy Here' };
    case 'RATE_LIMITED':
      return { status: 503, reason: 'Service Unavailable', retryAfterSec: Math.max(1, Math.ceil((retryAfterMs ?? 1000) / 1000)) };
    case 'MEDIA_UNAVAILABLE':
    case 'AGENT_UNAVAILABLE':
    case 'TEMPORARILY_UNAVAILABLE':
      return { status: 480, reason: 'Temporarily Unavailable' };
    case 'AGENT_SERVICE_UNAVAILABLE':
    case 'RECORD_UNAVAILABLE':
      return { status: 503, reason: 'Service Unavailable' };
    // RFC 8224 §6.2.2: the verifier's failure responses.
    case 'IDENTITY_STALE':
      return { status: 403, reason: 'Stale Date' };
    case 'X5U_UNAVAILABLE':
      return { status: 436, reason: 'Bad Identity Info' };
    case 'CREDENTIAL_UNSUPPORTED':
      return { status: 437, reason: 'Unsupported Credential' };
    case 'IDENTITY_INVALID':
      return { status: 438, reason: 'Invalid Identity Header' };
    case 'DRAINING':
      return { status: 503, reason: 'Service Unavailable', retryAfterSec: 30 };
    // RFC 3261 §21.5.4: a 503 with Retry-After tells the client (or the carrier's proxy) to
    // try another node or come back later, not to give the call up.
    case 'OVERLOADED':
      return { status: 503, reason: 'Service Unavailable', retryAfterSec: Math.max(1, Math.ceil((retryAfterMs ?? 5000) / 1000)) };
    default: {
      const unmapped: never = code;
      throw new Error(`no SIP response for ${String(unmapped)}`);
    }
  }
}
