import { randomInt } from 'node:crypto';
import type { Logger } from 'pino';
import type { CallHandler, EndReason, InboundCall, OfferResult } from '../sip/sip-server.js';
import type { MediaEngine } from '../media/media-engine.js';
import type { Codec, MediaApp, MediaSpec, SrtpSuite } from '../media/media-protocol.js';
import { buildAnswer, isParseError, isRejection, negotiate, parseOffer, type NegotiatedMedia } from '../sdp/index.js';
import type { InboundGrant } from './inbound-call-policy.js';

export interface MediaCallHandlerOptions {
  codecs: readonly Codec[];
  /** SDES suites we accept (the offerer's first supported line wins). */
  suites: readonly SrtpSuite[];
}

interface Live {
  readonly call: InboundCall<InboundGrant>;
  readonly local: { address: string; port: number; sessionId: number };
  sessionVersion: number;
  localKey: { suite: SrtpSuite; keySalt: Buffer } | null;
  app: MediaApp;
}

/** The media worker's view of a negotiated stream. */
function toSpec(m: NegotiatedMedia, app: MediaApp): MediaSpec {
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
  };
}

/**
 * Joins the SIP side of a call to its media: answers the caller's SDP (src/sdp: RFC 3264 with
 * SDES-SRTP) with a port pair on a media worker, configures the worker with the negotiated
 * codec, keys and application (echo or tone), and releases the media when the call ends.
 * Media timeouts and worker crashes come back as hang-ups.
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
      if (l) void l.call.hangup('media-lost');
    }
  }

  /** Negotiates an offer against our options; the answer SDP and the spec, or a 488 reason. */
  private answer(l: Live, sdp: Buffer): { ok: true; sdp: string; spec: MediaSpec } | { ok: false; reason: string } {
    const offer = parseOffer(sdp);
    if (isParseError(offer)) return { ok: false, reason: offer.reason };
    const plan = negotiate(offer, {
      codecs: this.opts.codecs,
      srtp: l.call.grant.srtp,
      suites: this.opts.suites,
      telephoneEvent: true,
      localKey: l.localKey,
    });
    if (isRejection(plan)) return { ok: false, reason: plan.reason };
    l.sessionVersion++;
    l.localKey = plan.srtp ? { suite: plan.srtp.suite, keySalt: plan.srtp.localKeySalt } : null;
    const text = buildAnswer(plan, { address: l.local.address, port: l.local.port, sessionId: l.local.sessionId, sessionVersion: l.sessionVersion, username: 'tollgate' });
    return { ok: true, sdp: text, spec: toSpec(plan, l.app) };
  }

  async offer(call: InboundCall<InboundGrant>, sdp: Buffer): Promise<OfferResult> {
    let local: { address: string; port: number };
    try {
      local = await this.media.open(call.id);
    } catch (err) {
      this.log.error({ err, callId: call.id }, 'no media port for the call');
      return { ok: false, code: 'MEDIA_UNAVAILABLE', message: 'no media capacity' };
    }
    const l: Live = { call, local: { ...local, sessionId: randomInt(1, 2 ** 31) }, sessionVersion: 0, localKey: null, app: call.target as MediaApp };
    const result = this.answer(l, sdp);
    if (!result.ok) {
      await this.media.close(call.id);
      return { ok: false, code: 'SDP_NOT_ACCEPTABLE', message: result.reason };
    }
    this.media.configure(call.id, result.spec);
    this.live.set(call.id, l);
    return { ok: true, sdp: Buffer.from(result.sdp) };
  }

  reoffer(call: InboundCall<InboundGrant>, sdp: Buffer): Promise<OfferResult> {
    const l = this.live.get(call.id);
    if (!l) return Promise.resolve({ ok: false, code: 'SDP_NOT_ACCEPTABLE', message: 'no media for this call' });
    const result = this.answer(l, sdp);
    if (!result.ok) return Promise.resolve({ ok: false, code: 'SDP_NOT_ACCEPTABLE', message: result.reason });
    this.media.configure(call.id, result.spec);
    return Promise.resolve({ ok: true, sdp: Buffer.from(result.sdp) });
  }

  ended(call: InboundCall<InboundGrant>, reason: EndReason): void {
    this.live.delete(call.id);
    void this.media.close(call.id).then((stats) => {
      if (stats) this.log.info({ callId: call.id, reason, media: stats }, 'call media closed');
    });
  }
}
