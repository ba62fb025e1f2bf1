import { writeFileSync } from 'node:fs';
import { dtmfPackets } from '../../src/media/dtmf.js';
import { ULAW_SILENCE } from '../../src/media/g711.js';
import { parseRtpHeader, RtpHeader, RTP_HEADER_MIN, writeRtpHeader } from '../../src/media/rtp-packet.js';
import { sine, ulawEncode } from './audio.js';

/**
 * RTP captures for SIPp's `<exec play_pcap_audio="…"/>`: a classic libpcap file (magic
 * a1b2c3d4, microseconds) of Ethernet/IPv4/UDP frames. SIPp 3.6 reads only Ethernet
 * (LINKTYPE_ETHERNET) and Linux cooked captures, not LINKTYPE_RAW (src/prepare_pcap.c); it
 * keeps each packet's UDP header and payload, replays them at the capture's pace, and rewrites
 * the ports: source to its -mp media port, destination to the port in the far end's SDP
 * (plus the packet's offset from the lowest destination port in the file, so keep every packet
 * on one destination port). The replay uses a raw socket: SIPp must run as root.
 */

const LINKTYPE_ETHERNET = 1;
const ETH_HEADER = 14;
const IPV4_HEADER = 20;
const UDP_HEADER = 8;

export interface PcapPacket {
  /** Capture time from the start of the file, in microseconds. */
  atUs: number;
  /** UDP payload (here an RTP packet). */
  data: Uint8Array;
}

export interface PcapAddressing {
  srcIp?: string;
  dstIp?: string;
  /** Default 6000 / 6000 (SIPp replaces both). */
  srcPort?: number;
  dstPort?: number;
  /** Unix time of the first packet, seconds. Default 1_700_000_000. */
  startSec?: number;
}

function ipv4(addr: string): Buffer {
  const parts = addr.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new RangeError(`not an IPv4 address: ${addr}`);
  return Buffer.from(parts);
}

/** One's-complement sum of 16-bit big-endian words (RFC 1071), not yet inverted. */
function onesSum(buf: Uint8Array, sum = 0): number {
  for (let i = 0; i + 1 < buf.length; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (buf.length & 1) sum += buf[buf.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** An Ethernet II / IPv4 / UDP frame around `payload`, with correct lengths and checksums. */
export function udpFrame(payload: Uint8Array, a: Required<Omit<PcapAddressing, 'startSec'>>, ipId: number): Buffer {
  const src = ipv4(a.srcIp);
  const dst = ipv4(a.dstIp);
  const udpLen = UDP_HEADER + payload.length;
  const frame = Buffer.alloc(ETH_HEADER + IPV4_HEADER + udpLen);
  // Ethernet: locally administered MACs, EtherType IPv4.
  Buffer.from([0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01]).copy(frame, 0);
  frame.writeUInt16BE(0x0800, 12);
  const ip = ETH_HEADER;
  frame[ip] = 0x45; // version 4, IHL 5
  frame[ip + 1] = 0xb8; // DSCP EF, as voice is usually marked
  frame.writeUInt16BE(IPV4_HEADER + udpLen, ip + 2);
  frame.writeUInt16BE(ipId & 0xffff, ip + 4);
  frame.writeUInt16BE(0x4000, ip + 6); // DF
  frame[ip + 8] = 64;
  frame[ip + 9] = 17; // UDP
  src.copy(frame, ip + 12);
  dst.copy(frame, ip + 16);
  frame.writeUInt16BE(~onesSum(frame.subarray(ip, ip + IPV4_HEADER)) & 0xffff, ip + 10);
  const udp = ip + IPV4_HEADER;
  frame.writeUInt16BE(a.srcPort, udp);
  frame.writeUInt16BE(a.dstPort, udp + 2);
  frame.writeUInt16BE(udpLen, udp + 4);
  frame.set(payload, udp + UDP_HEADER);
  // UDP checksum over the pseudo-header (src, dst, 0, 17, length) and the datagram.
  const pseudo = Buffer.alloc(12);
  src.copy(pseudo, 0);
  dst.copy(pseudo, 4);
  pseudo[9] = 17;
  pseudo.writeUInt16BE(udpLen, 10);
  const sum = ~onesSum(frame.subarray(udp, udp + udpLen), onesSum(pseudo)) & 0xffff;
  frame.writeUInt16BE(sum === 0 ? 0xffff : sum, udp + 6);
  return frame;
}

/** A classic libpcap file (LINKTYPE_ETHERNET, µs timestamps) of UDP packets. */
export function buildPcap(packets: readonly PcapPacket[], addressing: PcapAddressing = {}): Buffer {
  const a = { srcIp: addressing.srcIp ?? '127.0.0.1', dstIp: addressing.dstIp ?? '127.0.0.1', srcPort: addressing.srcPort ?? 6000, dstPort: addressing.dstPort ?? 6000 };
  const startSec = addressing.startSec ?? 1_700_000_000;
  const head = Buffer.alloc(24);
  head.writeUInt32LE(0xa1b2c3d4, 0);
  head.writeUInt16LE(2, 4);
  head.writeUInt16LE(4, 6);
  head.writeInt32LE(0, 8); // thiszone
  head.writeUInt32LE(0, 12); // sigfigs
  head.writeUInt32LE(65535, 16); // snaplen
  head.writeUInt32LE(LINKTYPE_ETHERNET, 20);
  const parts: Buffer[] = [head];
  packets.forEach((p, i) => {
    const frame = udpFrame(p.data, a, i + 1);
    const rec = Buffer.alloc(16);
    const us = Math.round(p.atUs);
    rec.writeUInt32LE(startSec + Math.floor(us / 1_000_000), 0);
    rec.writeUInt32LE(us % 1_000_000, 4);
    rec.writeUInt32LE(frame.length, 8); // captured whole: SIPp refuses truncated packets
    rec.writeUInt32LE(frame.length, 12);
    parts.push(rec, frame);
  });
  return Buffer.concat(parts);
}

/** The UDP payloads and capture times of a classic pcap of Ethernet/IPv4/UDP (for checks). */
export function readPcap(buf: Buffer): { linkType: number; packets: (PcapPacket & { srcPort: number; dstPort: number })[] } {
  if (buf.length < 24 || buf.readUInt32LE(0) !== 0xa1b2c3d4) throw new Error('not a little-endian µs libpcap file');
  const linkType = buf.readUInt32LE(20);
  if (linkType !== LINKTYPE_ETHERNET) throw new Error(`link type ${linkType}, expected Ethernet`);
  const packets: (PcapPacket & { srcPort: number; dstPort: number })[] = [];
  let off = 24;
  let t0: number | null = null;
  while (off + 16 <= buf.length) {
    const sec = buf.readUInt32LE(off);
    const usec = buf.readUInt32LE(off + 4);
    const incl = buf.readUInt32LE(off + 8);
    const frame = buf.subarray(off + 16, off + 16 + incl);
    off += 16 + incl;
    if (frame.readUInt16BE(12) !== 0x0800) continue;
    const ihl = (frame[ETH_HEADER]! & 0x0f) * 4;
    if (frame[ETH_HEADER + 9] !== 17) continue;
    const udp = ETH_HEADER + ihl;
    const len = frame.readUInt16BE(udp + 4);
    const at = sec * 1_000_000 + usec;
    t0 ??= at;
    packets.push({ atUs: at - t0, srcPort: frame.readUInt16BE(udp), dstPort: frame.readUInt16BE(udp + 2), data: frame.subarray(udp + UDP_HEADER, udp + len) });
  }
  return { linkType, packets };
}

// ---------------------------------------------------------------------------------------------
// RTP streams

export interface RtpStreamPacket {
  atMs: number;
  payloadType: number;
  marker: boolean;
  sequenceNumber: number;
  timestamp: number;
  ssrc: number;
  payload: Buffer;
}

export interface ToneStreamOptions {
  /** Default 440 Hz. */
  toneHz?: number;
  /** Tone length before the digits. Default 1 s. */
  seconds?: number;
  /** Peak, 16-bit units. Default 8000 (about -12 dBFS). */
  amplitude?: number;
  /** RFC 4733 digits sent after the tone, e.g. '1#'. Default none. */
  digits?: string;
  /** Per digit. Default 100 ms. */
  digitMs?: number;
  /** µ-law silence before the first digit, between digits and after the last. Default 100 ms. */
  gapMs?: number;
  /** Telephone-event update spacing. Default 20 ms (one per ptime, as most gateways send). */
  dtmfIntervalMs?: number;
  /** Default 101, as in test/sipp/*.xml. */
  dtmfPayloadType?: number;
  ssrc?: number;
  firstSequence?: number;
  firstTimestamp?: number;
}

/**
 * An 8 kHz PCMU RTP stream (payload type 0, 20 ms packets, 160 bytes each): a tone for
 * `seconds`, then, for each digit, RFC 4733 telephone-events (payload type 101, from
 * src/media/dtmf.ts) with µ-law silence around them. One SSRC and one clock: the audio
 * timestamp advances 160 per packet, a digit's packets all carry the timestamp of its start,
 * sequence numbers count up by one over all packets, and the first audio packet and each
 * digit's first packet have the marker bit.
 */
export function rtpToneStream(opts: ToneStreamOptions = {}): RtpStreamPacket[] {
  const ssrc = (opts.ssrc ?? 0x5eed1234) >>> 0;
  const ts0 = (opts.firstTimestamp ?? 16000) >>> 0;
  let seq = (opts.firstSequence ?? 1000) & 0xffff;
  const gapMs = opts.gapMs ?? 100;
  const digitMs = opts.digitMs ?? 100;
  const pt101 = opts.dtmfPayloadType ?? 101;
  const out: RtpStreamPacket[] = [];
  const push = (atMs: number, payloadType: number, marker: boolean, tsMs: number, payload: Buffer) => {
    out.push({ atMs, payloadType, marker, sequenceNumber: seq, timestamp: (ts0 + tsMs * 8) >>> 0, ssrc, payload });
    seq = (seq + 1) & 0xffff;
  };
  const tone = ulawEncode(sine(opts.toneHz ?? 440, 8000, (opts.seconds ?? 1) * 1000, opts.amplitude ?? 8000));
  let t = 0;
  for (let off = 0; off + 160 <= tone.length; off += 160, t += 20) push(t, 0, t === 0, t, tone.subarray(off, off + 160));
  const digits = opts.digits ?? '';
  if (digits.length === 0) return out;
  const silence = Buffer.alloc(160, ULAW_SILENCE);
  const pad = (ms: number) => {
    for (let end = t + ms; t < end; t += 20) push(t, 0, false, t, silence);
  };
  for (const d of digits) {
    pad(gapMs);
    const start = t;
    let last = 0;
    for (const p of dtmfPackets(d, { durationMs: digitMs, intervalMs: opts.dtmfIntervalMs ?? 20 })) {
      push(start + p.atMs, pt101, p.marker, start, p.payload);
      last = p.atMs;
    }
    // Audio resumes one ptime after the last end packet, on the same clock.
    t = start + Math.ceil((last + 20) / 20) * 20;
  }
  pad(gapMs);
  return out;
}

/** Serialises stream packets to RTP bytes. */
export function rtpBytes(p: RtpStreamPacket): Buffer {
  const buf = Buffer.alloc(RTP_HEADER_MIN + p.payload.length);
  const n = writeRtpHeader(buf, 0, { marker: p.marker, payloadType: p.payloadType, sequenceNumber: p.sequenceNumber, timestamp: p.timestamp, ssrc: p.ssrc });
  p.payload.copy(buf, n);
  return buf;
}

export interface RtpPcapResult {
  file: string;
  packets: RtpStreamPacket[];
  /** From the first packet to one ptime after the last: how long SIPp takes to play it. */
  durationMs: number;
}

/**
 * Writes `rtpToneStream(opts)` as a pcap SIPp can play with play_pcap_audio. Returns the file,
 * the packets, and the playing time (give the scenario's __HOLD_MS__ at least that).
 */
export function writeRtpPcap(file: string, opts: ToneStreamOptions & PcapAddressing = {}): RtpPcapResult {
  const packets = rtpToneStream(opts);
  writeFileSync(file, buildPcap(packets.map((p) => ({ atUs: p.atMs * 1000, data: rtpBytes(p) })), opts));
  const durationMs = packets.length ? packets[packets.length - 1]!.atMs + 20 : 0;
  return { file, packets, durationMs };
}

/** Parses the RTP packets back out of a pcap written here (for unit tests and debugging). */
export function readRtpPcap(buf: Buffer): { atMs: number; header: RtpHeader; payload: Buffer }[] {
  return readPcap(buf).packets.map((p) => {
    const header = new RtpHeader();
    const r = parseRtpHeader(p.data, header);
    if (r !== 'ok') throw new Error(`bad RTP in pcap: ${r}`);
    return { atMs: p.atUs / 1000, header, payload: Buffer.from(p.data.subarray(header.payloadOffset, header.payloadOffset + header.payloadLength)) };
  });
}
