import type { AgentAudio, MediaApp, MediaSpec } from '../media/media-protocol.js';
import type { NegotiatedMedia } from '../sdp/index.js';

/** The media worker's view of a negotiated stream. */
export function toSpec(m: NegotiatedMedia, app: MediaApp, agent: AgentAudio | undefined): MediaSpec {
  return {
    app,
    codec: m.codec,
    payloadType: m.payloadType,
    telephoneEventPt: m.telephoneEvent?.payloadType ?? null,
    ptimeMs: m.ptime,
    remote: { address: m.remote.address, port: m.remote.port, rtcpPort: m.remote.rtcpPort },
    rtcpMux: m.rtcpMux,
    srtp: m.srtp
      ? { send: { suite: m.srtp.suite, keySalt: m.srtp.localKeySalt.toString('base64') }, recv: { suite: m.srtp.suite, keySalt: m.srtp.remoteKeySalt.toString('base64') } }
      : null,
    direction: m.direction,
    ...(agent ? { agent } : {}),
  };
}
