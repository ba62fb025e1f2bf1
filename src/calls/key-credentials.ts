import type { KeyService } from '../keys/key-service.js';
import type { SipCredentials } from '../sip/call-policy.js';
import type { DigestAlgorithm } from '../sip/digest-auth.js';

/**
 * Digest credentials for the SIP layer: the username is a key id, the password its secret
 * (docs/sip.md). Revoked or expired keys still authenticate here, so the policy can say why it
 * refuses the call (403) instead of challenging again.
 */
export class KeyCredentials implements SipCredentials {
  constructor(private readonly keys: Pick<KeyService, 'getCurrent' | 'digestHa1'>) {}

  async ha1(username: string, algorithm: DigestAlgorithm): Promise<string[] | null> {
    if (!/^key_[0-9A-Za-z]{1,40}$/.test(username)) return null;
    const key = await this.keys.getCurrent(username);
    if (!key) return null;
    const ha1s = await this.keys.digestHa1(key.id, algorithm);
    return ha1s.length ? ha1s : null;
  }
}
