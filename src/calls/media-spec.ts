import type { AgentAudio, MediaApp, MediaSpec } from '../media/media-protocol.js';
import type { NegotiatedMedia } from '../sdp/index.js';

/** Who may receive a call's media before the caller's first packet shows where it is. */
export interface MediaTrust {
  /** The SIP peer's address (the carrier or caller the signalling came from). */
  readonly signallingAddress: string | null;
  /** Send to the SDP address at once even when it differs from the signalling address. */
  readonly trustSdp: boolean;
}

/** The media worker's view of a negotiated stream. */
export function toSpec(m: NegotiatedMedia, app: MediaApp, agent: AgentAudio | undefined, trust: MediaTrust): MediaSpec {
  return {
    app,
    codec: m.codec,
    payloadType: m.payloadType,
    telephoneEventPt: m.telephoneEvent?.payloadType ?? null,
    ptimeMs: m.ptime,
    remote: { address: m.remote.address, port: m.remote.port, rtcpPort: m.remote.rtcpPort },
    signallingAddress: trust.signallingAddress,
    trustSdp: trust.trustSdp,
    rtcpMux: m.rtcpMux,
    srtp: m.srtp
      ? { send: { suite: m.srtp.suite, keySalt: m.srtp.localKeySalt.toString('base64') }, recv: { suite: m.srtp.suite, keySalt: m.srtp.remoteKeySalt.toString('base64') } }
      : null,
    direction: m.direction,
    ...(agent ? { agent } : {}),
  };
}
