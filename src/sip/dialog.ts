import type { Peer } from '../transport/sip-transport.js';
import type { SipRequest } from './sip-message.js';

/**
 * A dialog (RFC 3261 §12) seen from the UAS side of an inbound call leg: identified by
 * Call-ID, our tag (the To tag we chose) and the caller's tag (its From tag).
 *
 *   early (INVITE received, not answered) ─200─▶ confirmed-wait (2xx resent until ACK)
 *   confirmed-wait ─ACK─▶ confirmed ─BYE either way─▶ terminated
 */
export type DialogState = 'early' | 'answered' | 'confirmed' | 'terminated';

export interface Dialog {
  readonly callId: string;
  readonly localTag: string;
  readonly remoteTag: string;
  state: DialogState;
  /** The caller's Contact URI: where in-dialog requests go (§12.1.1). */
  remoteTarget: string;
  /** Record-Route of the INVITE, in order (the UAS route set, §12.1.1). */
  readonly routeSet: readonly string[];
  /** Our From/To header values for requests we send in this dialog. */
  readonly localUri: string;
  readonly remoteUri: string;
  localCseq: number;
  remoteCseq: number;
  /** Where the INVITE came from: in-dialog requests go back the same way (flow reuse, RFC 5626). */
  readonly peer: Peer;
  readonly invite: SipRequest;
}

export function dialogKey(callId: string, localTag: string, remoteTag: string): string {
  return `${callId}|${localTag}|${remoteTag}`;
}
