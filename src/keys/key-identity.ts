import { createHash, hkdfSync } from 'node:crypto';

/**
 * The account SID of a key: a stable, non-secret name for the key in Twilio's shape (agents
 * put it in REST URLs and Basic auth, the way they use a Twilio AccountSid).
 */
export function accountSidFor(keyId: string): string {
  return 'AC' + createHash('sha256').update(`tollgate account ${keyId}`).digest('hex').slice(0, 32);
}

/**
 * A key's signing secret for requests tollgate makes to the key owner's systems (agent
 * WebSocket upgrades, webhooks). Derived from the master key, so every node computes the same
 * secret and nothing more is stored; `tollgate keys signing-secret <id>` shows it to the owner.
 */
export function signingSecretFor(masterKey: Buffer, keyId: string): string {
  const raw = Buffer.from(hkdfSync('sha256', masterKey, Buffer.from(keyId), 'tollgate signing secret v1', 32));
  return 'whsec_' + raw.toString('base64url');
}
