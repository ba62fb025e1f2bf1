import type { Logger } from 'pino';
import type { CallPatch, CallRecord, Store } from '../store/store.js';

/**
 * Call detail records: inserted before a call is answered (a call that cannot be recorded is
 * refused), completed when it ends. Completion is retried a few times so a brief store outage
 * does not lose the end of a record; a record left unfinished still shows the call started.
 */
export class CallRecords {
  constructor(
    private readonly store: Store,
    private readonly log: Logger,
  ) {}

  async start(rec: CallRecord): Promise<boolean> {
    try {
      await this.store.insertCall(rec);
      return true;
    } catch (err) {
      this.log.error({ err, callSid: rec.id }, 'could not write the call record; refusing the call');
      return false;
    }
  }

  update(id: string, patch: CallPatch): Promise<void> {
    return this.retry(id, patch, 0);
  }

  private async retry(id: string, patch: CallPatch, attempt: number): Promise<void> {
    try {
      await this.store.updateCall(id, patch);
    } catch (err) {
      if (attempt >= 4) {
        this.log.error({ err, callSid: id, patch }, 'could not complete the call record');
        return;
      }
      await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
      return this.retry(id, patch, attempt + 1);
    }
  }
}
