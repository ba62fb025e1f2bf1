import type { Logger } from 'pino';
import type { CallEndedBy } from '../store/store.js';
import { Call, type CallInit, type CallResources, type EndReason } from './call.js';

/** Whether a live call may go on under its key as the key is now: null, or why it must end. */
export type StandingCheck = (call: Call) => Promise<EndReason | null>;

export interface CallRegistryOptions {
  /**
   * What a key change does to the key's live calls (policy.liveCalls): 'end' (default) ends
   * those the key no longer allows (revoked, quarantined, expired, scope or allowlist changed)
   * at once; 'finish' lets them run to their end, as admitted.
   */
  readonly onKeyChange: 'end' | 'finish';
}

/**
 * Every live call of this node, inbound and outbound, by the gateway's own call id. It is the
 * one index of live calls: hang-up by API, media events, key revocation, drain and shutdown all
 * find calls here. A call leaves it when it ends; its settlement and record may still be
 * landing (flush() waits for them).
 */
export class CallRegistry {
  private readonly calls = new Map<string, Call>();
  private readonly finishing = new Set<Promise<void>>();
  private drainingSince: number | null = null;

  constructor(
    private readonly res: CallResources,
    private readonly standing: StandingCheck,
    private readonly opts: CallRegistryOptions,
    private readonly log: Logger,
  ) {}

  /** Registers a new call (admitted by policy: it holds a lease and maybe a reservation). */
  create(init: CallInit): Call {
    if (this.calls.has(init.id)) throw new Error(`call id ${init.id} is already live`);
    const call = new Call(init, this.res);
    this.calls.set(call.id, call);
    call.whenEnded(() => {
      this.calls.delete(call.id);
      this.finishing.add(call.finished);
      void call.finished.finally(() => this.finishing.delete(call.finished));
    });
    return call;
  }

  get(id: string): Call | null {
    return this.calls.get(id) ?? null;
  }

  /** A live call of this key (another key's call answers like a missing one). */
  getOwned(id: string, keyId: string): Call | null {
    const c = this.calls.get(id);
    return c && c.keyId === keyId ? c : null;
  }

  get size(): number {
    return this.calls.size;
  }

  ofKey(keyId: string): Call[] {
    return [...this.calls.values()].filter((c) => c.keyId === keyId);
  }

  /** Ends a call by id, if it is live. */
  end(id: string, reason: EndReason, by: CallEndedBy): boolean {
    const c = this.calls.get(id);
    if (!c) return false;
    c.end(reason, by);
    return true;
  }

  /**
   * A key changed (here, on another node, or from the CLI): each of its live calls is checked
   * against the key as it is now and ended when it is no longer allowed (policy.liveCalls).
   */
  async keyChanged(keyId: string): Promise<void> {
    if (this.opts.onKeyChange === 'finish') return;
    const calls = this.ofKey(keyId);
    if (calls.length === 0) return;
    await Promise.all(
      calls.map(async (call) => {
        try {
          const reason = await this.standing(call);
          if (reason && !call.ended) {
            this.log.warn({ callId: call.id, keyId, reason }, 'the key no longer allows this call: ending it');
            call.end(reason, 'policy');
          }
        } catch (err) {
          this.log.error({ err, callId: call.id, keyId }, 'could not check a live call against its changed key');
        }
      }),
    );
  }

  get draining(): boolean {
    return this.drainingSince !== null;
  }

  /** From now on new calls are refused (inbound 503, outbound and dial DRAINING); running calls go on. */
  drain(now = Date.now()): void {
    this.drainingSince ??= now;
  }

  /** Waits until no call is live, or the deadline; true when idle. */
  async idle(deadlineMs: number, pollMs = 100): Promise<boolean> {
    const until = Date.now() + deadlineMs;
    while (this.calls.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, Math.min(pollMs, Math.max(1, until - Date.now()))));
    return this.calls.size === 0;
  }

  /** Ends every live call (shutdown) and waits for their settlements and records. */
  async endAll(reason: EndReason = 'shutdown'): Promise<void> {
    for (const c of [...this.calls.values()]) c.end(reason, 'gateway');
    await this.flush();
  }

  /** Waits for every ended call's settlement and record (before the store closes). */
  async flush(): Promise<void> {
    while (this.finishing.size) await Promise.allSettled([...this.finishing]);
  }
}
