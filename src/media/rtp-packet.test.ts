import { describe, it, expect } from 'vitest';
import {
  RtpHeader, RtpReceiveStats, isRtcpPacket, ntpFromUnixMs, ntpMiddle32, parseRtcp, parseRtpHeader, rtpHeaderLength,
  writeBye, writeReceiverReport, writeRtpHeader, writeSdesCname, writeSenderReport, type ReportBlock,
} from './rtp-packet.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function emptyBlock(): ReportBlock {
  return { ssrc: 0, fractionLost: 0, cumulativeLost: 0, extendedHighestSeq: 0, jitter: 0, lsr: 0, dlsr: 0 };
}

describe('RTP header (RFC 3550 §5.1)', () => {
  it('parses a minimal PCMU header: V=2, M, PT 0, seq, timestamp, SSRC, payload after 12 octets', () => {
    const pkt = hex('80 80 1234 0000a0b0 deadbeef' + 'ff'.repeat(160));
    const h = new RtpHeader();
    expect(parseRtpHeader(pkt, h)).toBe('ok');
    expect(h).toMatchObject({ version: 2, padding: false, extension: false, csrcCount: 0, marker: true, payloadType: 0, sequenceNumber: 0x1234, timestamp: 0xa0b0, ssrc: 0xdeadbeef, headerLength: 12, payloadLength: 160 });
    expect(h.payloadOffset).toBe(12);
  });

  it('skips CSRCs and a header extension, and subtracts padding counted by the last octet', () => {
    // V=2 P=1 X=1 CC=2; PT 8; ext profile 0xBEDE, 1 word; 4 payload octets; 3 padding octets.
    const pkt = hex('b2 08 0001 00000010 00000001 00000002 00000003 bede0001 10ff0000 01020304 000003');
    const h = new RtpHeader();
    expect(parseRtpHeader(pkt, h)).toBe('ok');
    expect([h.padding, h.extension, h.csrcCount, h.payloadType]).toEqual([true, true, 2, 8]);
    expect([...h.csrcs.subarray(0, 2)]).toEqual([2, 3]);
    expect([h.extensionProfile, h.extensionOffset, h.extensionLength]).toEqual([0xbede, 24, 4]);
    expect([h.headerLength, h.payloadLength, h.paddingLength]).toEqual([28, 4, 3]);
    expect(rtpHeaderLength(pkt)).toBe(28);
  });

  it('rejects packets that are not valid RTP (Appendix A.1 checks)', () => {
    const h = new RtpHeader();
    expect(parseRtpHeader(hex('8000'), h)).toBe('TOO_SHORT');
    expect(parseRtpHeader(hex('40 00 0001 00000000 00000001'), h)).toBe('BAD_VERSION');
    expect(parseRtpHeader(hex('83 00 0001 00000000 00000001 00000002'), h)).toBe('BAD_HEADER_LENGTH'); // CC=3, one CSRC present
    expect(parseRtpHeader(hex('90 00 0001 00000000 00000001 bede0002 00000000'), h)).toBe('BAD_HEADER_LENGTH'); // ext says 2 words, 1 present
    expect(parseRtpHeader(hex('a0 00 0001 00000000 00000001 0102 00'), h)).toBe('BAD_PADDING'); // padding count 0
    expect(parseRtpHeader(hex('a0 00 0001 00000000 00000001 0102 09'), h)).toBe('BAD_PADDING'); // more padding than payload
    expect(rtpHeaderLength(hex('90 00 0001 00000000 00000001 bede0002 00000000'))).toBe(-1);
  });

  it('writes a header into a preallocated buffer and parses it back', () => {
    const buf = Buffer.alloc(12 + 8 + 160);
    const len = writeRtpHeader(buf, 0, { marker: true, payloadType: 8, sequenceNumber: 65535, timestamp: 0xfffffff0, ssrc: 0x01020304, csrcs: [7, 8] });
    expect(len).toBe(20);
    expect(buf.subarray(0, 20).toString('hex')).toBe('8288ffff' + 'fffffff0' + '01020304' + '00000007' + '00000008');
    const h = new RtpHeader();
    expect(parseRtpHeader(buf, h)).toBe('ok');
    expect([h.marker, h.payloadType, h.sequenceNumber, h.timestamp, h.ssrc, h.payloadLength]).toEqual([true, 8, 65535, 0xfffffff0, 0x01020304, 160]);
  });

  it('takes sequence number and timestamp modulo 2^16 and 2^32', () => {
    const buf = Buffer.alloc(12);
    writeRtpHeader(buf, 0, { marker: false, payloadType: 0, sequenceNumber: 65536 + 5, timestamp: 2 ** 32 + 160, ssrc: 1 });
    expect(buf.toString('hex')).toBe('80000005' + '000000a0' + '00000001');
  });

  it('tells RTCP from RTP on a muxed port by packet type 192–223 (RFC 5761 §4)', () => {
    expect(isRtcpPacket(hex('80c8 0006 00000001'))).toBe(true);
    expect(isRtcpPacket(hex('81c9 0007 00000001'))).toBe(true);
    expect(isRtcpPacket(hex('8000 0001 00000000 00000001'))).toBe(false);
    expect(isRtcpPacket(hex('8080 0001 00000000 00000001'))).toBe(false);
  });
});

describe('RTCP (RFC 3550 §6)', () => {
  const block: ReportBlock = { ssrc: 0xcafebabe, fractionLost: 64, cumulativeLost: 1000, extendedHighestSeq: 0x00012345, jitter: 37, lsr: 0x12345678, dlsr: 0x00018000 };

  it('builds an SR with one report block, octet for octet', () => {
    const buf = Buffer.alloc(64);
    const len = writeSenderReport(buf, 0, { ssrc: 0x11111111, ntpSeconds: 0xe9000000, ntpFraction: 0x80000000, rtpTimestamp: 160_000, packetCount: 1000, octetCount: 160_000 }, [block]);
    expect(len).toBe(52);
    expect(buf.subarray(0, len).toString('hex')).toBe(
      '81c8000c' + '11111111' + 'e9000000' + '80000000' + '00027100' + '000003e8' + '00027100' +
      'cafebabe' + '400003e8' + '00012345' + '00000025' + '12345678' + '00018000',
    );
  });

  it('builds an RR with one block; a negative cumulative loss is a signed 24-bit field', () => {
    const buf = Buffer.alloc(32);
    const len = writeReceiverReport(buf, 0, 0x22222222, [{ ...block, fractionLost: 0, cumulativeLost: -2 }]);
    expect(len).toBe(32);
    expect(buf.subarray(0, 12).toString('hex')).toBe('81c90007' + '22222222' + 'cafebabe');
    expect(buf.subarray(12, 16).toString('hex')).toBe('00fffffe');
  });

  it('parses SR, RR, SDES and BYE out of one compound packet', () => {
    const buf = Buffer.alloc(256);
    let off = writeSenderReport(buf, 0, { ssrc: 1, ntpSeconds: 2, ntpFraction: 3, rtpTimestamp: 4, packetCount: 5, octetCount: 6 }, [block]);
    off += writeSdesCname(buf, off, 1, 'tollgate@example');
    off += writeReceiverReport(buf, off, 9, [block, { ...block, ssrc: 10, cumulativeLost: -1 }]);
    off += writeBye(buf, off, [1, 9], 'call ended');
    const r = parseRtcp(buf, off);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.packets).toEqual([
      { type: 'sr', ssrc: 1, ntpSeconds: 2, ntpFraction: 3, rtpTimestamp: 4, packetCount: 5, octetCount: 6, reports: [block] },
      { type: 'sdes', chunks: [{ ssrc: 1, cname: 'tollgate@example' }] },
      { type: 'rr', ssrc: 9, reports: [block, { ...block, ssrc: 10, cumulativeLost: -1 }] },
      { type: 'bye', ssrcs: [1, 9], reason: 'call ended' },
    ]);
  });

  it('parses a hand-built RR + BYE without reason, and passes unknown types through', () => {
    const pkt = hex('80c9 0001 00000005' + '81cb 0001 00000005' + '80cc 0002 00000005 6e616d65');
    const r = parseRtcp(pkt);
    expect(r).toEqual({ ok: true, packets: [
      { type: 'rr', ssrc: 5, reports: [] },
      { type: 'bye', ssrcs: [5], reason: null },
      { type: 'other', packetType: 204, count: 0, offset: 16, length: 12 },
    ] });
  });

  it('rejects bad version, a length past the end, and padding on a packet that is not last (Appendix A.2)', () => {
    expect(parseRtcp(hex('40c9 0001 00000005'))).toEqual({ ok: false, code: 'BAD_VERSION' });
    expect(parseRtcp(hex('80c9 0002 00000005'))).toEqual({ ok: false, code: 'BAD_LENGTH' });
    expect(parseRtcp(hex('81c9 0001 00000005'))).toEqual({ ok: false, code: 'BAD_LENGTH' }); // RC=1, no block
    expect(parseRtcp(hex('a0c9 0002 00000005 00000004' + '80cb 0000'))).toEqual({ ok: false, code: 'BAD_PADDING' });
    expect(parseRtcp(hex('a0c9 0002 00000005 00000004')).ok).toBe(true); // padded last packet
    expect(parseRtcp(hex('80'))).toEqual({ ok: false, code: 'TOO_SHORT' });
  });

  it('converts Unix time to NTP and takes the middle 32 bits for LSR', () => {
    expect(ntpFromUnixMs(0)).toEqual([2_208_988_800, 0]);
    expect(ntpFromUnixMs(1500)).toEqual([2_208_988_801, 0x80000000]);
    expect(ntpMiddle32(0xaabbccdd, 0x11223344)).toBe(0xccdd1122);
  });
});

describe('RtpReceiveStats (RFC 3550 Appendix A.1, A.3, A.8)', () => {
  it('keeps a new source in probation until MIN_SEQUENTIAL (2) packets arrive in sequence', () => {
    const s = new RtpReceiveStats(1);
    expect(s.update(100, 0, 0)).toBe(false);
    expect(s.valid).toBe(false);
    expect(s.fillReportBlock(0, emptyBlock())).toBeNull();
    expect(s.update(101, 160, 20)).toBe(true);
    expect([s.valid, s.received, s.expected, s.lost]).toEqual([true, 1, 1, 0]);
  });

  it('restarts probation when a packet arrives out of sequence during it', () => {
    const s = new RtpReceiveStats(1);
    expect(s.update(100, 0, 0)).toBe(false);
    expect(s.update(105, 0, 0)).toBe(false);
    expect(s.update(106, 0, 0)).toBe(true);
    expect(s.expected).toBe(1);
  });

  it('counts the extended sequence number across the 65535 → 0 wrap', () => {
    const s = new RtpReceiveStats(1, { minSequential: 0 });
    for (let i = 0; i < 10; i++) s.update((65530 + i) & 0xffff, i * 160, i * 20);
    expect(s.extendedHighestSeq).toBe(65536 + 3);
    expect([s.received, s.expected, s.lost]).toEqual([10, 10, 0]);
  });

  it('reports cumulative and fraction lost per interval (A.3)', () => {
    const s = new RtpReceiveStats(7, { minSequential: 0 });
    for (let seq = 0; seq < 100; seq++) if (seq % 4 !== 3) s.update(seq, seq * 160, seq * 20);
    const b = s.fillReportBlock(2000, emptyBlock())!;
    // 99 expected (0..98 — 99 is lost after the last received 98), 75 received.
    expect([b.ssrc, b.extendedHighestSeq, b.cumulativeLost, b.fractionLost]).toEqual([7, 98, 24, Math.floor((24 * 256) / 99)]);
    for (let seq = 100; seq < 200; seq++) s.update(seq, seq * 160, seq * 20);
    const b2 = s.fillReportBlock(4000, emptyBlock())!;
    expect([b2.cumulativeLost, b2.fractionLost]).toEqual([25, Math.floor((1 * 256) / 101)]);
  });

  it('counts duplicates as received, which can make cumulative loss negative (§6.4.1)', () => {
    const s = new RtpReceiveStats(1, { minSequential: 0 });
    s.update(1, 0, 0);
    s.update(2, 160, 20);
    s.update(2, 160, 21);
    expect(s.lost).toBe(-1);
    expect(s.fillReportBlock(100, emptyBlock())!.fractionLost).toBe(0);
  });

  it('treats a big jump as a possible restart: resynchronises only on two sequential packets', () => {
    const s = new RtpReceiveStats(1, { minSequential: 0 });
    for (let seq = 10; seq < 20; seq++) s.update(seq, 0, 0);
    expect(s.update(30000, 0, 0)).toBe(false);
    expect(s.extendedHighestSeq).toBe(19);
    expect(s.update(30001, 0, 0)).toBe(true);
    expect([s.extendedHighestSeq, s.received, s.expected]).toEqual([30001, 1, 1]);
  });

  it('keeps misordered packets within MAX_MISORDER and does not count them as wrap', () => {
    const s = new RtpReceiveStats(1, { minSequential: 0 });
    s.update(0, 0, 0);
    s.update(2, 320, 40);
    expect(s.update(1, 160, 41)).toBe(true);
    expect([s.extendedHighestSeq, s.lost]).toEqual([2, 0]);
  });

  it('jitter is zero for perfectly paced packets and follows J += (|D| - J)/16 (A.8)', () => {
    const s = new RtpReceiveStats(1, { minSequential: 0 });
    for (let i = 0; i < 50; i++) s.update(i, i * 160, i * 20);
    expect(s.jitter).toBe(0);
    // Alternate 0 / +10 ms arrival offsets: |D| = 80 timestamp units each packet.
    const t = new RtpReceiveStats(2, { minSequential: 0 });
    let j = 0;
    for (let i = 0; i < 400; i++) {
      t.update(i, i * 160, i * 20 + (i % 2) * 10);
      if (i > 0) j += (80 - j) / 16;
    }
    expect(Math.abs(t.jitter - j)).toBeLessThanOrEqual(1);
    expect(t.jitter).toBeGreaterThanOrEqual(78);
  });

  it('jitter survives the RTP timestamp wrapping past 2^32', () => {
    const s = new RtpReceiveStats(1, { minSequential: 0 });
    const base = 2 ** 32 - 800;
    for (let i = 0; i < 20; i++) s.update(i, (base + i * 160) >>> 0, i * 20);
    expect(s.jitter).toBe(0);
  });

  it('fills LSR from the last SR and DLSR in 1/65536 s since it arrived', () => {
    const s = new RtpReceiveStats(1, { minSequential: 0 });
    s.update(1, 0, 0);
    s.onSenderReport(0xaabbccdd, 0x11223344, 1000);
    const b = s.fillReportBlock(1500, emptyBlock())!;
    expect([b.lsr, b.dlsr]).toEqual([0xccdd1122, 32768]);
  });
});
