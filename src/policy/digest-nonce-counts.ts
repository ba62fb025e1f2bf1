import type { Counters } from './counters.js';

/**
 * The digest nonce-count memory of the SIP layer (sip/ defines the interface it needs:
 * `NonceCountStore` in sip/call-policy.ts) kept in the counters backend, so every node of a
 * cluster sharing Redis refuses a (nonce, nc) pair another node has already accepted
 * (RFC 7616 §3.4.5: a repeated nc is a replay). With in-memory counters it covers one node.
 */
export class DigestNonceCounts {
  constructor(
    private readonly counters: Counters,
    /** Most nonce counts remembered per nonce; a client that sends more is challenged afresh. */
    private readonly maxPerNonce = 1000,
  ) {}

  /** True the first time `nc` is used with `nonce`; remembered for `ttlMs` from the nonce's first use. */
  claim(nonce: string, nc: number, ttlMs: number): Promise<boolean> {
    return this.counters.claimOnce(`digest-nc:${nonce}`, nc.toString(16), ttlMs, this.maxPerNonce);
  }
}
