import { describe, it, expect } from 'vitest';
import { RtpLatch, type LatchOptions } from './rtp-latch.js';

const SDP = { address: '198.51.100.10', port: 40_000 };
const base: LatchOptions = { sdp: SDP, signallingAddress: '198.51.100.10', trustSdp: false, authenticated: false, learningMs: 2000, probation: 4 };

describe('RtpLatch: symmetric RTP that one spoofed packet cannot steal (RFC 4961)', () => {
  it('plain RTP from the SDP address latches at once, and a later packet from anywhere else is dropped', () => {
    const l = new RtpLatch(base, 0);
    expect(l.accept('198.51.100.10', 40_002, 7, 100, 10)).toBe(true);
    expect(l.target).toEqual({ address: '198.51.100.10', port: 40_002 });
    // A spoofed packet with the right SSRC and the next sequence number, from another source.
    expect(l.accept('203.0.113.66', 40_002, 7, 101, 20)).toBe(false);
    expect(l.accept('198.51.100.10', 40_004, 7, 101, 20)).toBe(false);
    expect(l.target).toEqual({ address: '198.51.100.10', port: 40_002 });
    expect(l.dropped).toBe(2);
  });

  it('locks to the SSRC: another SSRC from the latched source is dropped until it passes probation (a re-anchored stream)', () => {
    const l = new RtpLatch(base, 0);
    l.accept('198.51.100.10', 40_000, 7, 1, 0);
    expect(l.accept('198.51.100.10', 40_000, 8, 500, 10)).toBe(false);
    expect(l.accept('198.51.100.10', 40_000, 7, 2, 20)).toBe(true);
    // 500 … 503: four in sequence (the old stream's packet in between does not break it).
    expect([501, 502, 503].map((seq, i) => l.accept('198.51.100.10', 40_000, 8, seq, 30 + i))).toEqual([false, false, true]);
    expect(l.ssrc).toBe(8);
    // The old SSRC is now the stranger.
    expect(l.accept('198.51.100.10', 40_000, 7, 3, 50)).toBe(false);
  });

  it('a caller behind NAT (another address than its SDP and signalling) is learnt after probation in sequence, within the window', () => {
    const l = new RtpLatch(base, 0);
    const nat = '192.0.2.50';
    expect(l.accept(nat, 5000, 9, 10, 20)).toBe(false);
    expect(l.accept(nat, 5000, 9, 11, 40)).toBe(false);
    expect(l.accept(nat, 5000, 9, 12, 60)).toBe(false);
    expect(l.accept(nat, 5000, 9, 13, 80)).toBe(true);
    expect(l.target).toEqual({ address: nat, port: 5000 });
  });

  it('a lone spoofed packet, or interleaved sources, never pass probation', () => {
    const l = new RtpLatch(base, 0);
    // The interleaved packet restarts the probation of the real source: it needs 4 in a row again.
    for (let i = 0; i < 10; i++) {
      expect(l.accept('192.0.2.50', 5000, 9, 10 + i, i * 20)).toBe(i >= 4);
      if (i === 0) expect(l.accept('203.0.113.66', 6000, 9, 11, 1)).toBe(false);
    }
    const l2 = new RtpLatch(base, 0);
    for (let i = 0; i < 20; i++) {
      expect(l2.accept(i % 2 ? '192.0.2.50' : '203.0.113.66', 5000, 9, 10 + i, i * 20)).toBe(false);
    }
    expect(l2.isLatched).toBe(false);
  });

  it('after the learning window only the SDP or signalling address can latch', () => {
    const l = new RtpLatch(base, 0);
    for (let i = 0; i < 10; i++) expect(l.accept('192.0.2.50', 5000, 9, 10 + i, 3000 + i * 20)).toBe(false);
    expect(l.accept('198.51.100.10', 40_000, 3, 1, 4000)).toBe(true);
  });

  it('before the first packet, media goes to the SDP address only when the signalling came from it or the SDP is trusted', () => {
    expect(new RtpLatch(base, 0).target).toEqual(SDP);
    // An authenticated caller naming someone else's address in its SDP gets nothing sent there.
    const aimed = new RtpLatch({ ...base, sdp: { address: '203.0.113.99', port: 9 } }, 0);
    expect(aimed.target).toBeNull();
    expect(new RtpLatch({ ...base, sdp: { address: '203.0.113.99', port: 9 }, trustSdp: true }, 0).target).toEqual({ address: '203.0.113.99', port: 9 });
    // The caller's own packets then show where it is.
    aimed.accept('198.51.100.10', 7000, 1, 1, 10);
    expect(aimed.target).toEqual({ address: '198.51.100.10', port: 7000 });
  });

  it('SRTP latches to the first authenticated packet, wherever it comes from, then locks', () => {
    const l = new RtpLatch({ ...base, authenticated: true, signallingAddress: '198.51.100.1' }, 0);
    expect(l.accept('192.0.2.77', 1234, 5, 1, 5000)).toBe(true);
    expect(l.accept('192.0.2.78', 1234, 5, 2, 5020)).toBe(false);
  });

  it('RTCP is taken only from the latched (or trusted SDP) address', () => {
    const l = new RtpLatch({ ...base, sdp: { address: '203.0.113.99', port: 9 } }, 0);
    expect(l.rtcpAllowedFrom('203.0.113.99')).toBe(false);
    l.accept('198.51.100.10', 7000, 1, 1, 10);
    expect(l.rtcpAllowedFrom('198.51.100.10')).toBe(true);
    expect(l.rtcpAllowedFrom('203.0.113.66')).toBe(false);
  });

  it('a re-INVITE with new media learns again', () => {
    const l = new RtpLatch(base, 0);
    l.accept('198.51.100.10', 40_000, 7, 1, 0);
    l.reset({ ...base, sdp: { address: '198.51.100.20', port: 41_000 }, signallingAddress: '198.51.100.10' }, 10_000);
    expect(l.isLatched).toBe(false);
    expect(l.accept('198.51.100.20', 41_000, 7, 2, 10_010)).toBe(true);
  });
});
