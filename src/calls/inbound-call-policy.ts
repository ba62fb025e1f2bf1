import type { KeyService } from '../keys/key-service.js';
import type { PolicyEngine, CallGrant, DenyCode } from '../policy/policy-engine.js';
import { keyPrincipal } from '../policy/principal.js';
import type { CallDenyCode, CallPolicy, CallVerdict, InboundCallRequest } from '../sip/call-policy.js';
import type { DigestAlgorithm } from '../sip/digest-auth.js';
import type { NumberRecord } from '../store/store.js';
import { normaliseDialled, type NumberService } from './number-service.js';

/** Every policy refusal is a SIP refusal: the compiler checks DenyCode ⊆ CallDenyCode here. */
const asCallDeny = (code: DenyCode): CallDenyCode => code;

export interface InboundGrant {
  readonly policy: CallGrant;
  readonly number: NumberRecord;
  /** SRTP demanded by the number or by a TLS-only key. */
  readonly srtp: 'required' | 'optional' | 'off';
}

/**
 * The SIP layer's CallPolicy, built on the key service, the policy engine and the number
 * table: digest credentials are the key's (username = key id), and an inbound call needs
 * calls:inbound, an allowed source, TLS when the key demands it, CPS/concurrency/budget
 * headroom, and a dialled number owned by the same key.
 */
export class InboundCallPolicy implements CallPolicy<InboundGrant> {
  constructor(
    private readonly keys: KeyService,
    private readonly policy: PolicyEngine,
    private readonly numbers: NumberService,
    /** Queues limit.exceeded webhooks. */
    private readonly notify?: (type: 'limit.exceeded', keyId: string, data: Record<string, unknown>) => void,
  ) {}

  async ha1(username: string, algorithm: DigestAlgorithm): Promise<string[] | null> {
    if (!/^key_[0-9A-Za-z]{1,40}$/.test(username)) return null;
    // Revoked or expired keys still authenticate here, so the policy can say why it refuses (403).
    const key = await this.keys.getCurrent(username);
    if (!key) return null;
    const ha1s = await this.keys.digestHa1(key.id, algorithm);
    return ha1s.length ? ha1s : null;
  }

  async authorizeInbound(req: InboundCallRequest): Promise<CallVerdict<InboundGrant>> {
    const key = await this.keys.getCurrent(req.keyId);
    if (!key) return { ok: false, code: 'KEY_REVOKED', message: 'the key no longer exists' };
    const verdict = await this.policy.authorize({
      principal: keyPrincipal(key),
      action: 'call.inbound',
      scope: 'calls:inbound',
      sourceIp: req.sourceIp,
      transport: req.transport,
      callId: req.callId,
      // Inbound calls are priced on the dialled number (the key's own DID).
      destination: normaliseDialled(req.dialled),
    });
    if (!verdict.ok) {
      if (verdict.code === 'RATE_LIMITED' || verdict.code === 'CONCURRENCY_LIMITED' || verdict.code === 'BUDGET_EXHAUSTED') {
        this.notify?.('limit.exceeded', key.id, { limit: verdict.code, action: 'call.inbound', to: req.dialled, message: verdict.message });
      }
      return { ok: false, code: asCallDeny(verdict.code), message: verdict.message, ...(verdict.retryAfterMs !== undefined ? { retryAfterMs: verdict.retryAfterMs } : {}) };
    }
    const grant = verdict.grant!;
    const number = await this.numbers.lookup(normaliseDialled(req.dialled));
    if (!number || number.keyId !== key.id) {
      await this.policy.release(grant);
      return { ok: false, code: number ? 'NUMBER_NOT_OWNED' : 'NUMBER_NOT_FOUND', message: 'no such number for this trunk' };
    }
    const srtp = key.requireTls ? 'required' : number.srtp;
    return { ok: true, grant: { policy: grant, number, srtp }, target: number.target, maxDurationSec: grant.maxDurationSec, limitedBy: grant.limitedBy };
  }

  async release(grant: InboundGrant): Promise<void> {
    await this.policy.release(grant.policy);
  }

  async complete(grant: InboundGrant, billableSeconds: number): Promise<void> {
    await this.policy.complete(grant.policy, billableSeconds);
  }

  async renew(grant: InboundGrant): Promise<void> {
    await this.policy.renew(grant.policy);
  }
}
