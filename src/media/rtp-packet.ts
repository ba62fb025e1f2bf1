/**
 * RTP and RTCP packets (RFC 3550): header parse into a reusable view, header write into a
 * caller-owned buffer, RTCP SR/RR/SDES/BYE build and compound parse, and per-source receive
 * statistics (RFC 3550 Appendix A.1, A.3, A.8) for receiver reports.
 *
 * The RTP functions are on the per-packet path and allocate nothing: parse results are
 * interned strings, the view is reused. RTCP runs every few seconds, so its parser returns
 * plain objects.
 */

/** RTP header, RFC 3550 §5.1:
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * |V=2|P|X|  CC   |M|     PT      |       sequence number         |
 * |                           timestamp                           |
 * |           synchronization source (SSRC) identifier            |
 * |            contributing source (CSRC) identifiers             | × CC
 * |  defined by profile (X=1)     |           length              |
 * |                        header extension                       | × length
 * ```
 */
export const RTP_HEADER_MIN = 12;
export const RTP_VERSION = 2;

export type RtpParseResult = 'ok' | 'TOO_SHORT' | 'BAD_VERSION' | 'BAD_HEADER_LENGTH' | 'BAD_PADDING';

/** A parsed RTP header. One instance is reused for every packet; `parseRtpHeader` overwrites it. */
export class RtpHeader {
  version = 0;
  padding = false;
  extension = false;
  csrcCount = 0;
  marker = false;
  payloadType = 0;
  sequenceNumber = 0;
  timestamp = 0;
  ssrc = 0;
  /** The first `csrcCount` entries are valid. */
  readonly csrcs = new Uint32Array(15);
  /** The 16-bit "defined by profile" field of the extension (0xBEDE for RFC 8285 one-byte). */
  extensionProfile = 0;
  /** Offset of the extension data (after its 4-byte header), and its length in bytes. */
  extensionOffset = 0;
  extensionLength = 0;
  /** Fixed header + CSRCs + extension: where the payload starts. */
  headerLength = 0;
  payloadLength = 0;
  /** Padding octets at the end of the packet (counted by the last octet when P is set). */
  paddingLength = 0;

  get payloadOffset(): number {
    return this.headerLength;
  }
}

/**
 * Parses the RTP header of `buf[0, length)` into `out`. Returns 'ok' or why the packet is not
 * valid RTP (RFC 3550 Appendix A.1 header validity checks, except the payload type, which the
 * caller knows).
 */
export function parseRtpHeader(buf: Uint8Array, out: RtpHeader, length: number = buf.length): RtpParseResult {
  if (length < RTP_HEADER_MIN) return 'TOO_SHORT';
  const b0 = buf[0]!;
  const b1 = buf[1]!;
  const version = b0 >> 6;
  if (version !== RTP_VERSION) return 'BAD_VERSION';
  const cc = b0 & 0x0f;
  let off = RTP_HEADER_MIN + cc * 4;
  if (off > length) return 'BAD_HEADER_LENGTH';
  out.version = version;
  out.padding = (b0 & 0x20) !== 0;
  out.extension = (b0 & 0x10) !== 0;
  out.csrcCount = cc;
  out.marker = (b1 & 0x80) !== 0;
  out.payloadType = b1 & 0x7f;
  out.sequenceNumber = (buf[2]! << 8) | buf[3]!;
  out.timestamp = readU32(buf, 4);
  out.ssrc = readU32(buf, 8);
  for (let i = 0; i < cc; i++) out.csrcs[i] = readU32(buf, 12 + i * 4);
  if (out.extension) {
    if (off + 4 > length) return 'BAD_HEADER_LENGTH';
    out.extensionProfile = (buf[off]! << 8) | buf[off + 1]!;
    out.extensionLength = ((buf[off + 2]! << 8) | buf[off + 3]!) * 4;
    out.extensionOffset = off + 4;
    off += 4 + out.extensionLength;
    if (off > length) return 'BAD_HEADER_LENGTH';
  } else {
    out.extensionProfile = 0;
    out.extensionOffset = 0;
    out.extensionLength = 0;
  }
  out.headerLength = off;
  let pad = 0;
  if (out.padding) {
    // RFC 3550 §5.1: the last octet counts the padding, itself included; 0 is invalid.
    pad = buf[length - 1]!;
    if (pad === 0 || off + pad > length) return 'BAD_PADDING';
  }
  out.paddingLength = pad;
  out.payloadLength = length - off - pad;
  return 'ok';
}

/**
 * Length of the RTP header (fixed part, CSRCs and extension) of `buf[0, length)`, or -1 when it
 * is not a well-formed version 2 header. The SRTP path uses this instead of a full parse.
 */
export function rtpHeaderLength(buf: Uint8Array, length: number = buf.length): number {
  if (length < RTP_HEADER_MIN || buf[0]! >> 6 !== RTP_VERSION) return -1;
  let off = RTP_HEADER_MIN + (buf[0]! & 0x0f) * 4;
  if (buf[0]! & 0x10) {
    if (off + 4 > length) return -1;
    off += 4 + ((buf[off + 2]! << 8) | buf[off + 3]!) * 4;
  }
  return off > length ? -1 : off;
}

/**
 * RFC 5761 §4 demultiplexing when RTP and RTCP share a port: RTCP packet types 192–223 fall
 * where RTP would have marker + payload types 64–95, which RFC 5761 forbids for RTP.
 */
export function isRtcpPacket(buf: Uint8Array, length: number = buf.length): boolean {
  if (length < 8 || buf[0]! >> 6 !== RTP_VERSION) return false;
  const pt = buf[1]!;
  return pt >= 192 && pt <= 223;
}

/** Fields to write into an RTP header. Keep one mutable instance per stream. */
export interface RtpHeaderFields {
  marker: boolean;
  payloadType: number;
  sequenceNumber: number;
  timestamp: number;
  ssrc: number;
  /** Default none. */
  csrcs?: ArrayLike<number>;
}

/**
 * Writes a version 2 RTP header (no padding, no extension) at `offset` and returns its length
 * (12 + 4 × CSRC count). Sequence number and timestamp are taken modulo 2^16 and 2^32.
 */
export function writeRtpHeader(buf: Uint8Array, offset: number, h: RtpHeaderFields): number {
  const cc = h.csrcs ? h.csrcs.length : 0;
  if (cc > 15) throw new RangeError('RTP: at most 15 CSRCs');
  const len = RTP_HEADER_MIN + cc * 4;
  if (offset + len > buf.length) throw new RangeError('RTP: buffer too small for the header');
  buf[offset] = (RTP_VERSION << 6) | cc;
  buf[offset + 1] = (h.marker ? 0x80 : 0) | (h.payloadType & 0x7f);
  buf[offset + 2] = (h.sequenceNumber >> 8) & 0xff;
  buf[offset + 3] = h.sequenceNumber & 0xff;
  writeU32(buf, offset + 4, h.timestamp);
  writeU32(buf, offset + 8, h.ssrc);
  for (let i = 0; i < cc; i++) writeU32(buf, offset + 12 + i * 4, h.csrcs![i]!);
  return len;
}

// ---------------------------------------------------------------------------------------------
// RTCP (RFC 3550 §6)

export const RTCP_SR = 200;
export const RTCP_RR = 201;
export const RTCP_SDES = 202;
export const RTCP_BYE = 203;
export const RTCP_APP = 204;

/** One reception report block (RFC 3550 §6.4.1). */
export interface ReportBlock {
  ssrc: number;
  /** Fraction lost since the previous report, in 1/256 (0–255). */
  fractionLost: number;
  /** Cumulative packets lost, signed 24-bit (duplicates can make it negative). */
  cumulativeLost: number;
  /** Cycles × 65536 + highest sequence number received. */
  extendedHighestSeq: number;
  /** Interarrival jitter in timestamp units. */
  jitter: number;
  /** Middle 32 bits of the NTP timestamp of the last SR received (0 if none). */
  lsr: number;
  /** Delay since that SR in 1/65536 s (0 if none). */
  dlsr: number;
}

/** The sender information of an SR (RFC 3550 §6.4.1). */
export interface SenderInfo {
  ssrc: number;
  ntpSeconds: number;
  ntpFraction: number;
  rtpTimestamp: number;
  packetCount: number;
  octetCount: number;
}

export type RtcpPacket =
  | ({ type: 'sr'; reports: ReportBlock[] } & SenderInfo)
  | { type: 'rr'; ssrc: number; reports: ReportBlock[] }
  | { type: 'sdes'; chunks: { ssrc: number; cname: string | null }[] }
  | { type: 'bye'; ssrcs: number[]; reason: string | null }
  | { type: 'other'; packetType: number; count: number; offset: number; length: number };

export type RtcpParseResult =
  | { ok: true; packets: RtcpPacket[] }
  | { ok: false; code: 'TOO_SHORT' | 'BAD_VERSION' | 'BAD_LENGTH' | 'BAD_PADDING' };

const REPORT_BLOCK_LEN = 24;
const NTP_UNIX_OFFSET = 2_208_988_800; // seconds from 1900-01-01 to 1970-01-01

function rtcpHeader(buf: Uint8Array, offset: number, count: number, pt: number, totalLen: number): void {
  buf[offset] = (RTP_VERSION << 6) | count;
  buf[offset + 1] = pt;
  const words = totalLen / 4 - 1; // RFC 3550 §6.4.1: length in 32-bit words minus one
  buf[offset + 2] = words >> 8;
  buf[offset + 3] = words & 0xff;
}

function writeReportBlock(buf: Uint8Array, off: number, r: ReportBlock): void {
  writeU32(buf, off, r.ssrc);
  const lost = Math.max(-0x800000, Math.min(0x7fffff, r.cumulativeLost)) & 0xffffff;
  writeU32(buf, off + 4, ((r.fractionLost & 0xff) << 24) | lost);
  writeU32(buf, off + 8, r.extendedHighestSeq);
  writeU32(buf, off + 12, r.jitter);
  writeU32(buf, off + 16, r.lsr);
  writeU32(buf, off + 20, r.dlsr);
}

function readReportBlocks(buf: Uint8Array, off: number, count: number): ReportBlock[] {
  const out: ReportBlock[] = [];
  for (let i = 0; i < count; i++, off += REPORT_BLOCK_LEN) {
    const word = readU32(buf, off + 4);
    out.push({
      ssrc: readU32(buf, off),
      fractionLost: word >>> 24,
      cumulativeLost: ((word & 0xffffff) << 8) >> 8,
      extendedHighestSeq: readU32(buf, off + 8),
      jitter: readU32(buf, off + 12),
      lsr: readU32(buf, off + 16),
      dlsr: readU32(buf, off + 20),
    });
  }
  return out;
}

function checkBlocks(buf: Uint8Array, offset: number, len: number, blocks: readonly ReportBlock[]): void {
  if (blocks.length > 31) throw new RangeError('RTCP: at most 31 report blocks per packet');
  if (offset + len > buf.length) throw new RangeError('RTCP: buffer too small');
}

/** Writes a Sender Report (RFC 3550 §6.4.1) at `offset`; returns its length (28 + 24 × blocks). */
export function writeSenderReport(buf: Uint8Array, offset: number, info: SenderInfo, blocks: readonly ReportBlock[] = []): number {
  const len = 28 + blocks.length * REPORT_BLOCK_LEN;
  checkBlocks(buf, offset, len, blocks);
  rtcpHeader(buf, offset, blocks.length, RTCP_SR, len);
  writeU32(buf, offset + 4, info.ssrc);
  writeU32(buf, offset + 8, info.ntpSeconds);
  writeU32(buf, offset + 12, info.ntpFraction);
  writeU32(buf, offset + 16, info.rtpTimestamp);
  writeU32(buf, offset + 20, info.packetCount);
  writeU32(buf, offset + 24, info.octetCount);
  for (let i = 0; i < blocks.length; i++) writeReportBlock(buf, offset + 28 + i * REPORT_BLOCK_LEN, blocks[i]!);
  return len;
}

/** Writes a Receiver Report (RFC 3550 §6.4.2) at `offset`; returns its length (8 + 24 × blocks). */
export function writeReceiverReport(buf: Uint8Array, offset: number, ssrc: number, blocks: readonly ReportBlock[] = []): number {
  const len = 8 + blocks.length * REPORT_BLOCK_LEN;
  checkBlocks(buf, offset, len, blocks);
  rtcpHeader(buf, offset, blocks.length, RTCP_RR, len);
  writeU32(buf, offset + 4, ssrc);
  for (let i = 0; i < blocks.length; i++) writeReportBlock(buf, offset + 8 + i * REPORT_BLOCK_LEN, blocks[i]!);
  return len;
}

/**
 * Writes an SDES packet with one chunk holding a CNAME item (RFC 3550 §6.5.1), which every
 * compound RTCP packet must carry (§6.1). Returns its length.
 */
export function writeSdesCname(buf: Uint8Array, offset: number, ssrc: number, cname: string): number {
  const text = Buffer.from(cname, 'utf8');
  if (text.length > 255) throw new RangeError('RTCP: CNAME longer than 255 octets');
  // SSRC + type + length + text + at least one null octet ending the item list, padded to 32 bits.
  const chunk = (4 + 2 + text.length + 1 + 3) & ~3;
  const len = 4 + chunk;
  if (offset + len > buf.length) throw new RangeError('RTCP: buffer too small');
  rtcpHeader(buf, offset, 1, RTCP_SDES, len);
  writeU32(buf, offset + 4, ssrc);
  buf[offset + 8] = 1; // CNAME
  buf[offset + 9] = text.length;
  buf.set(text, offset + 10);
  buf.fill(0, offset + 10 + text.length, offset + len);
  return len;
}

/** Writes a BYE (RFC 3550 §6.6) for `ssrcs` with an optional reason; returns its length. */
export function writeBye(buf: Uint8Array, offset: number, ssrcs: readonly number[], reason?: string): number {
  if (ssrcs.length > 31) throw new RangeError('RTCP: at most 31 SSRCs in a BYE');
  const text = reason === undefined ? null : Buffer.from(reason, 'utf8');
  if (text && text.length > 255) throw new RangeError('RTCP: BYE reason longer than 255 octets');
  const body = 4 + ssrcs.length * 4;
  const len = text ? (body + 1 + text.length + 3) & ~3 : body;
  if (offset + len > buf.length) throw new RangeError('RTCP: buffer too small');
  rtcpHeader(buf, offset, ssrcs.length, RTCP_BYE, len);
  for (let i = 0; i < ssrcs.length; i++) writeU32(buf, offset + 4 + i * 4, ssrcs[i]!);
  if (text) {
    buf[offset + body] = text.length;
    buf.set(text, offset + body + 1);
    buf.fill(0, offset + body + 1 + text.length, offset + len);
  }
  return len;
}

/**
 * Parses a compound RTCP packet (RFC 3550 §6.1). Checks each packet's version and length, and
 * that only the last one is padded (Appendix A.2). The first-packet-is-SR/RR check of A.2 is
 * left out so reduced-size RTCP (RFC 5506) parses too.
 */
export function parseRtcp(buf: Uint8Array, length: number = buf.length): RtcpParseResult {
  if (length < 4) return { ok: false, code: 'TOO_SHORT' };
  const packets: RtcpPacket[] = [];
  let off = 0;
  while (off < length) {
    if (off + 4 > length) return { ok: false, code: 'BAD_LENGTH' };
    const b0 = buf[off]!;
    if (b0 >> 6 !== RTP_VERSION) return { ok: false, code: 'BAD_VERSION' };
    const count = b0 & 0x1f;
    const pt = buf[off + 1]!;
    const len = (((buf[off + 2]! << 8) | buf[off + 3]!) + 1) * 4;
    const end = off + len;
    if (end > length) return { ok: false, code: 'BAD_LENGTH' };
    let contentEnd = end;
    if (b0 & 0x20) {
      const pad = buf[end - 1]!;
      if (end !== length || pad === 0 || pad > len - 4) return { ok: false, code: 'BAD_PADDING' };
      contentEnd = end - pad;
    }
    const bodyLen = contentEnd - off;
    switch (pt) {
      case RTCP_SR: {
        if (bodyLen < 28 + count * REPORT_BLOCK_LEN) return { ok: false, code: 'BAD_LENGTH' };
        packets.push({
          type: 'sr',
          ssrc: readU32(buf, off + 4),
          ntpSeconds: readU32(buf, off + 8),
          ntpFraction: readU32(buf, off + 12),
          rtpTimestamp: readU32(buf, off + 16),
          packetCount: readU32(buf, off + 20),
          octetCount: readU32(buf, off + 24),
          reports: readReportBlocks(buf, off + 28, count),
        });
        break;
      }
      case RTCP_RR: {
        if (bodyLen < 8 + count * REPORT_BLOCK_LEN) return { ok: false, code: 'BAD_LENGTH' };
        packets.push({ type: 'rr', ssrc: readU32(buf, off + 4), reports: readReportBlocks(buf, off + 8, count) });
        break;
      }
      case RTCP_BYE: {
        if (bodyLen < 4 + count * 4) return { ok: false, code: 'BAD_LENGTH' };
        const ssrcs: number[] = [];
        for (let i = 0; i < count; i++) ssrcs.push(readU32(buf, off + 4 + i * 4));
        let reason: string | null = null;
        const r = off + 4 + count * 4;
        if (r < contentEnd) {
          const n = buf[r]!;
          if (r + 1 + n > contentEnd) return { ok: false, code: 'BAD_LENGTH' };
          reason = Buffer.from(buf.buffer, buf.byteOffset + r + 1, n).toString('utf8');
        }
        packets.push({ type: 'bye', ssrcs, reason });
        break;
      }
      case RTCP_SDES: {
        const chunks = parseSdes(buf, off + 4, contentEnd, count);
        if (!chunks) return { ok: false, code: 'BAD_LENGTH' };
        packets.push({ type: 'sdes', chunks });
        break;
      }
      default:
        packets.push({ type: 'other', packetType: pt, count, offset: off, length: len });
    }
    off = end;
  }
  return { ok: true, packets };
}

function parseSdes(buf: Uint8Array, off: number, end: number, count: number): { ssrc: number; cname: string | null }[] | null {
  const chunks: { ssrc: number; cname: string | null }[] = [];
  for (let c = 0; c < count; c++) {
    if (off + 4 > end) return null;
    const ssrc = readU32(buf, off);
    off += 4;
    let cname: string | null = null;
    for (;;) {
      if (off >= end) return null;
      const type = buf[off]!;
      if (type === 0) break;
      if (off + 2 > end) return null;
      const n = buf[off + 1]!;
      if (off + 2 + n > end) return null;
      if (type === 1) cname = Buffer.from(buf.buffer, buf.byteOffset + off + 2, n).toString('utf8');
      off += 2 + n;
    }
    // The item list ends with one or more nulls up to the next 32-bit boundary (§6.5).
    off = (off + 4) & ~3;
    chunks.push({ ssrc, cname });
  }
  return chunks;
}

/** Writes the 64-bit NTP timestamp (RFC 3550 §4) of `unixMs` into `out` as [seconds, fraction]. */
export function ntpFromUnixMs(unixMs: number, out: [number, number] = [0, 0]): [number, number] {
  const sec = Math.floor(unixMs / 1000);
  out[0] = (sec + NTP_UNIX_OFFSET) >>> 0;
  out[1] = Math.floor(((unixMs - sec * 1000) / 1000) * 0x1_0000_0000) >>> 0;
  return out;
}

/** The middle 32 bits of an NTP timestamp: the LSR field of a report block (§6.4.1). */
export function ntpMiddle32(ntpSeconds: number, ntpFraction: number): number {
  return (((ntpSeconds & 0xffff) << 16) | (ntpFraction >>> 16)) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Receive statistics (RFC 3550 Appendix A.1, A.3, A.8)

const RTP_SEQ_MOD = 1 << 16;
/** A.1 defaults: a jump of ≥ 3000 ahead or > 100 behind is a restart, not loss or misorder. */
const MAX_DROPOUT = 3000;
const MAX_MISORDER = 100;

export interface RtpReceiveStatsOptions {
  /** RTP clock rate for jitter (A.8). Default 8000 (G.711). */
  clockRate?: number;
  /**
   * Sequential packets needed before a source is valid (A.1 MIN_SEQUENTIAL). Default 2;
   * 0 or 1 accepts the first packet, which suits SRTP where packets are already authenticated.
   */
  minSequential?: number;
}

/**
 * Per-SSRC reception state for receiver reports: sequence tracking with wrap, probation and
 * restart detection (A.1), loss and fraction lost (A.3), interarrival jitter (A.8), LSR/DLSR.
 */
export class RtpReceiveStats {
  private readonly clockRate: number;
  private readonly minSequential: number;
  private started = false;
  private maxSeq = 0;
  private cycles = 0;
  private baseSeq = 0;
  private badSeq = RTP_SEQ_MOD + 1;
  private probation = 0;
  private receivedCount = 0;
  private expectedPrior = 0;
  private receivedPrior = 0;
  /** Jitter × 16, the integer form of A.8. */
  private jitter16 = 0;
  private transit = 0;
  private haveTransit = false;
  private lastSr = 0;
  private lastSrArrivalMs = -1;

  constructor(
    readonly ssrc: number,
    opts: RtpReceiveStatsOptions = {},
  ) {
    this.clockRate = opts.clockRate ?? 8000;
    this.minSequential = opts.minSequential ?? 2;
  }

  /**
   * Accounts one RTP packet. `arrivalMs` is the receive time on any monotonic millisecond clock.
   * Returns true when the packet belongs to a valid source (false during probation and for a
   * jump that may be a restart, A.1 update_seq).
   */
  update(seq: number, rtpTimestamp: number, arrivalMs: number): boolean {
    seq &= 0xffff;
    if (!this.started) {
      this.started = true;
      if (this.minSequential <= 1) {
        this.initSeq(seq);
        this.receivedCount = 1;
        this.updateJitter(rtpTimestamp, arrivalMs);
        return true;
      }
      this.initSeq(seq);
      this.maxSeq = (seq - 1) & 0xffff;
      this.probation = this.minSequential;
    }
    if (!this.updateSeq(seq)) return false;
    this.updateJitter(rtpTimestamp, arrivalMs);
    return true;
  }

  /** Records an SR from this source for the LSR/DLSR fields (§6.4.1). */
  onSenderReport(ntpSeconds: number, ntpFraction: number, arrivalMs: number): void {
    this.lastSr = ntpMiddle32(ntpSeconds, ntpFraction);
    this.lastSrArrivalMs = arrivalMs;
  }

  /** True once the source has passed probation. */
  get valid(): boolean {
    return this.started && this.probation === 0;
  }

  get received(): number {
    return this.receivedCount;
  }

  get extendedHighestSeq(): number {
    return this.cycles + this.maxSeq;
  }

  /** A.3: packets expected since the base sequence number. */
  get expected(): number {
    return this.valid ? this.extendedHighestSeq - this.baseSeq + 1 : 0;
  }

  /** A.3: cumulative lost, clamped to the signed 24-bit field. */
  get lost(): number {
    return Math.max(-0x800000, Math.min(0x7fffff, this.expected - this.receivedCount));
  }

  /** A.8: interarrival jitter in timestamp units. */
  get jitter(): number {
    return this.jitter16 >> 4;
  }

  /**
   * Fills a report block for this source at `nowMs` (same clock as `update`) and starts a new
   * fraction-lost interval (A.3). Returns null while the source is still in probation.
   */
  fillReportBlock(nowMs: number, out: ReportBlock): ReportBlock | null {
    if (!this.valid) return null;
    const expected = this.expected;
    const expectedInterval = expected - this.expectedPrior;
    this.expectedPrior = expected;
    const receivedInterval = this.receivedCount - this.receivedPrior;
    this.receivedPrior = this.receivedCount;
    const lostInterval = expectedInterval - receivedInterval;
    out.ssrc = this.ssrc;
    out.fractionLost = expectedInterval === 0 || lostInterval <= 0 ? 0 : Math.floor((lostInterval * 256) / expectedInterval);
    out.cumulativeLost = this.lost;
    out.extendedHighestSeq = this.extendedHighestSeq >>> 0;
    out.jitter = this.jitter;
    if (this.lastSrArrivalMs < 0) {
      out.lsr = 0;
      out.dlsr = 0;
    } else {
      out.lsr = this.lastSr;
      out.dlsr = Math.max(0, Math.round(((nowMs - this.lastSrArrivalMs) * 65536) / 1000)) >>> 0;
    }
    return out;
  }

  private initSeq(seq: number): void {
    this.baseSeq = seq;
    this.maxSeq = seq;
    this.badSeq = RTP_SEQ_MOD + 1; // so seq === badSeq is false
    this.cycles = 0;
    this.receivedCount = 0;
    this.receivedPrior = 0;
    this.expectedPrior = 0;
    this.haveTransit = false;
  }

  /** A.1 update_seq. */
  private updateSeq(seq: number): boolean {
    const udelta = (seq - this.maxSeq) & 0xffff;
    if (this.probation > 0) {
      // Packets must arrive in sequence to pass probation.
      if (seq === ((this.maxSeq + 1) & 0xffff)) {
        this.probation--;
        this.maxSeq = seq;
        if (this.probation === 0) {
          this.initSeq(seq);
          this.receivedCount++;
          return true;
        }
      } else {
        this.probation = this.minSequential - 1;
        this.maxSeq = seq;
      }
      return false;
    } else if (udelta < MAX_DROPOUT) {
      // In order, with permissible gap.
      if (seq < this.maxSeq) this.cycles += RTP_SEQ_MOD; // wrapped
      this.maxSeq = seq;
    } else if (udelta <= RTP_SEQ_MOD - MAX_MISORDER) {
      // A very large jump: two sequential packets in a row mean the other side restarted.
      if (seq === this.badSeq) {
        this.initSeq(seq);
      } else {
        this.badSeq = (seq + 1) & 0xffff;
        return false;
      }
    }
    // Otherwise a duplicate or reordered packet: counted as received.
    this.receivedCount++;
    return true;
  }

  /** A.8: J += (|D| - J) / 16, in the integer form scaled by 16. */
  private updateJitter(rtpTimestamp: number, arrivalMs: number): void {
    const arrival = Math.round((arrivalMs * this.clockRate) / 1000);
    const transit = (arrival - rtpTimestamp) | 0; // modulo 2^32, as the timestamp wraps
    if (this.haveTransit) {
      let d = (transit - this.transit) | 0;
      if (d < 0) d = -d;
      this.jitter16 += d - ((this.jitter16 + 8) >> 4);
    }
    this.transit = transit;
    this.haveTransit = true;
  }
}

// ---------------------------------------------------------------------------------------------

/** Big-endian unsigned 32-bit read. */
export function readU32(buf: Uint8Array, off: number): number {
  return ((buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!) >>> 0;
}

/** Big-endian 32-bit write of `v` modulo 2^32. */
export function writeU32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v >>> 24;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}
