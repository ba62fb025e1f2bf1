/**
 * Symmetric RTP (RFC 4961) done safely: where a call's media is sent, and which packets are the
 * caller's.
 *
 * A caller behind NAT sends from another address than its SDP names, so the worker answers to
 * where the caller's packets really come from. Done naively — follow any valid-looking packet —
 * one spoofed packet steals the call's audio, and an authenticated caller can aim our media at
 * any address by naming it in its SDP. So:
 *
 * - Before the first packet, media goes to the SDP address only when it is trusted: it is the
 *   address the signalling came from, or the leg's SDP is trusted (an outbound carrier we chose,
 *   or `media.sendBeforeLatch: always` for carriers whose media and signalling addresses differ).
 *   Otherwise nothing is sent until the caller's own packets show where it is.
 * - The source is latched once, early:
 *   - SRTP: to the first packet that authenticates (only a key holder can make one; replayed
 *     packets fail the replay check);
 *   - plain RTP: at once to a packet from the SDP or the signalling address; from any other
 *     address only within the learning window after the media starts, and only after
 *     `probation` packets in sequence with one SSRC from that one source (a lone spoofed
 *     packet cannot win).
 * - Once latched, packets from any other source are dropped (and counted), and so are packets
 *   of another SSRC from the locked source until that SSRC passes probation too (a stream the
 *   endpoint re-anchored). RTCP follows the latched address.
 *
 *   learning ──(authentic SRTP | plain RTP from the SDP/signalling address | probation passed in the window)──▶ latched
 *   learning ──window over, nothing trusted seen──▶ learning (only the SDP/signalling address can latch now)
 *   any ──re-INVITE with new media (reset)──▶ learning
 */
export interface LatchOptions {
  /** Where the SDP says to send. */
  readonly sdp: { readonly address: string; readonly port: number };
  /** The address the call's signalling came from (the SIP peer); null when unknown. */
  readonly signallingAddress: string | null;
  /** Send to the SDP address before anything is latched even when it is not the signalling address. */
  readonly trustSdp: boolean;
  /** SRTP: a packet that reached the latch has been authenticated. */
  readonly authenticated: boolean;
  /** How long after the media starts a plain-RTP source other than the SDP/signalling address may be learnt. */
  readonly learningMs: number;
  /** Packets in sequence, one SSRC, one source, before such a source is latched. */
  readonly probation: number;
}

export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

interface Candidate {
  address: string;
  port: number;
  ssrc: number;
  lastSeq: number;
  count: number;
}

export class RtpLatch {
  private opts: LatchOptions;
  private startedAt: number;
  /** The latched source (the object target returns: no allocation per packet sent). */
  private latched: Endpoint | null = null;
  private latchedSsrc = 0;
  private candidate: Candidate | null = null;
  /** Packets dropped because they came from a source other than the latched one (or failed probation). */
  dropped = 0;

  constructor(opts: LatchOptions, now: number) {
    this.opts = opts;
    this.startedAt = now;
  }

  /** New SDP (re-INVITE): learn again from scratch. */
  reset(opts: LatchOptions, now: number): void {
    this.opts = opts;
    this.startedAt = now;
    this.latched = null;
    this.latchedSsrc = 0;
    this.candidate = null;
  }

  get isLatched(): boolean {
    return this.latched !== null;
  }

  /** Where RTP goes now; null: nothing may be sent yet. */
  get target(): Endpoint | null {
    if (this.latched) return this.latched;
    const { sdp, signallingAddress, trustSdp } = this.opts;
    return trustSdp || sdp.address === signallingAddress ? sdp : null;
  }

  /** Where RTCP may go: the latched address (any port), else the trusted SDP address. */
  rtcpAllowedFrom(address: string): boolean {
    const t = this.target;
    return t !== null && t.address === address;
  }

  /**
   * An RTP packet (SRTP: already authenticated) from `address:port`: true when it is the
   * caller's and should be used, false to drop it.
   */
  accept(address: string, port: number, ssrc: number, seq: number, now: number): boolean {
    const l = this.latched;
    if (l) {
      if (l.address !== address || l.port !== port) {
        this.dropped++;
        return false;
      }
      if (ssrc === this.latchedSsrc) return true;
      // Locked to the SSRC: a new one from the same source (a re-anchored stream) must pass
      // probation too, so one packet with a guessed address cannot switch the stream.
      return this.probe(address, port, ssrc, seq);
    }
    const { sdp, signallingAddress, authenticated, learningMs } = this.opts;
    if (authenticated || address === sdp.address || address === signallingAddress) return this.latch(address, port, ssrc);
    if (now - this.startedAt > learningMs) {
      this.dropped++;
      return false;
    }
    return this.probe(address, port, ssrc, seq);
  }

  /** Counts packets in sequence from one source and SSRC; latches at `probation`. */
  private probe(address: string, port: number, ssrc: number, seq: number): boolean {
    const c = this.candidate;
    if (c !== null && c.address === address && c.port === port && c.ssrc === ssrc && seq === ((c.lastSeq + 1) & 0xffff)) {
      c.lastSeq = seq;
      c.count++;
    } else this.candidate = { address, port, ssrc, lastSeq: seq, count: 1 };
    if (this.candidate!.count >= this.opts.probation) return this.latch(address, port, ssrc);
    this.dropped++;
    return false;
  }

  /** The SSRC the latched source sends now (0 before the latch). */
  get ssrc(): number {
    return this.latchedSsrc;
  }

  private latch(address: string, port: number, ssrc: number): true {
    this.latched = { address, port };
    this.latchedSsrc = ssrc;
    this.candidate = null;
    return true;
  }
}
