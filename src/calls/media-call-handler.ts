import type { Logger } from 'pino';
import type { CallHandler, EndReason, InboundCall, OfferResult } from '../sip/sip-server.js';
import type { MediaEngine } from '../media/media-engine.js';
import type { Codec, MediaApp, MediaSpec } from '../media/media-protocol.js';
import type { InboundGrant } from './inbound-call-policy.js';
import { answerOffer, type SdpSession } from './sdp-answerer.js';

export interface MediaCallHandlerOptions {
  codecs: readonly Codec[];
}

interface Live {
  readonly call: InboundCall<InboundGrant>;
  readonly sdp: SdpSession;
  spec: MediaSpec;
}

/**
 * Joins the SIP side of a call to its media: answers the caller's SDP with a port pair on a
 * media worker, configures the worker with the negotiated codec, SRTP keys and application
 * (echo or tone), and releases the media when the call ends. Media timeouts and worker crashes
 * come back as hang-ups.
 */
export class MediaCallHandler implements CallHandler<InboundGrant> {
  private readonly live = new Map<string, Live>();

  constructor(
    private readonly media: MediaEngine,
    private readonly opts: MediaCallHandlerOptions,
    private readonly log: Logger,
  ) {}

  get activeCalls(): number {
    return this.live.size;
  }

  /** A media worker reported no RTP for the timeout: hang up. */
  onMediaTimeout(callId: string): void {
    const l = this.live.get(callId);
    if (l) void l.call.hangup('media-timeout');
  }

  /** A media worker died: its calls are over (BYE, CDR), other workers' calls go on. */
  onMediaLost(callIds: readonly string[]): void {
    for (const id of callIds) {
      const l = this.live.get(id);
      if (l) void l.call.hangup('media-timeout');
    }
  }

  async offer(call: InboundCall<InboundGrant>, sdp: Buffer): Promise<OfferResult> {
    let local: { address: string; port: number };
    try {
      local = await this.media.open(call.id);
    } catch (err) {
      this.log.error({ err, callId: call.id }, 'no media port for the call');
      return { ok: false, code: 'MEDIA_UNAVAILABLE', message: 'no media capacity' };
    }
    const app = call.target as MediaApp;
    const result = answerOffer(sdp, { address: local.address, port: local.port, codecs: this.opts.codecs, srtp: call.grant.srtp }, null);
    if (!result.ok) {
      await this.media.close(call.id);
      return { ok: false, code: 'SDP_NOT_ACCEPTABLE', message: result.reason };
    }
    const spec: MediaSpec = { ...result.spec, app };
    this.media.configure(call.id, spec);
    this.live.set(call.id, { call, sdp: result.session, spec });
    return { ok: true, sdp: Buffer.from(result.sdp) };
  }

  reoffer(call: InboundCall<InboundGrant>, sdp: Buffer): Promise<OfferResult> {
    const l = this.live.get(call.id);
    if (!l) return Promise.resolve({ ok: false, code: 'SDP_NOT_ACCEPTABLE', message: 'no media for this call' });
    const result = answerOffer(sdp, { address: l.sdp.address, port: l.sdp.port, codecs: this.opts.codecs, srtp: call.grant.srtp }, l.sdp);
    if (!result.ok) return Promise.resolve({ ok: false, code: 'SDP_NOT_ACCEPTABLE', message: result.reason });
    l.spec = { ...result.spec, app: l.spec.app };
    this.media.configure(call.id, l.spec);
    return Promise.resolve({ ok: true, sdp: Buffer.from(result.sdp) });
  }

  ended(call: InboundCall<InboundGrant>, reason: EndReason): void {
    this.live.delete(call.id);
    void this.media.close(call.id).then((stats) => {
      if (stats) this.log.info({ callId: call.id, reason, media: stats }, 'call media closed');
    });
  }
}
