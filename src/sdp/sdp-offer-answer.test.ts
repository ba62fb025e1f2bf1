import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import * as sdpTransform from 'sdp-transform';
import { TollgateError } from '../errors/index.js';
import { prng } from '../testing/prng.js';
import {
  buildAnswer,
  buildOffer,
  negotiate,
  parseAnswer,
  parseOffer,
  type AnswerPlan,
  type LocalMediaOptions,
  type LocalSdpIdentity,
  type NegotiatedMedia,
  type ParsedOffer,
} from './sdp-offer-answer.js';

const FIXTURES = resolve(import.meta.dirname, '../../test/fixtures/sdp');
const fixture = (name: string): string => readFileSync(resolve(FIXTURES, name), 'utf8');
const FIXTURE_NAMES = ['sipp-uac.sdp', 'baresip-srtp.sdp', 'linphone.sdp', 'cisco-srtp.sdp', 'polycom.sdp', 'cisco-hold-legacy.sdp', 'webrtc-chrome.sdp'];

const LOCAL: LocalMediaOptions = {
  codecs: ['PCMU', 'PCMA'],
  srtp: 'optional',
  suites: ['AES_CM_128_HMAC_SHA1_80', 'AES_CM_128_HMAC_SHA1_32', 'AEAD_AES_128_GCM'],
  telephoneEvent: true,
};
const US: LocalSdpIdentity = { address: '198.51.100.10', port: 40000, sessionId: 8_765_432_109_876_543_210n, sessionVersion: 1 };
const key30 = (): string => randomBytes(30).toString('base64');

const crlf = (s: string): string => s.replace(/\r?\n/g, '\r\n');

/** A minimal offer; `audio` is the m=audio line and what follows it. */
function offerSdp(audio: string, session = 'c=IN IP4 192.0.2.1'): string {
  return crlf(`v=0\no=- 42 1 IN IP4 192.0.2.1\ns=-\n${session}\nt=0 0\n${audio.trim()}\n`);
}

function mustParse(sdp: string | Buffer): ParsedOffer {
  const r = parseOffer(sdp);
  if ('error' in r) throw new Error(`expected an offer, got ${r.error}: ${r.reason}`);
  return r;
}

function mustPlan(sdp: string, local: LocalMediaOptions = LOCAL): AnswerPlan {
  const r = negotiate(mustParse(sdp), local);
  if ('reject' in r) throw new Error(`expected a plan, got 488: ${r.reason}`);
  return r;
}

function rejectionOf(sdp: string, local: LocalMediaOptions = LOCAL): string {
  const r = negotiate(mustParse(sdp), local);
  if (!('reject' in r)) throw new Error('expected a 488');
  expect(r.reject).toBe(488);
  return r.reason;
}

/** The answer, read back with sdp-transform, says exactly what the plan says and nothing more. */
function expectAnswerMatchesPlan(sdp: string, plan: AnswerPlan, local: LocalSdpIdentity): void {
  expect(sdp.endsWith('\r\n')).toBe(true);
  expect(sdp.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);
  const a = sdpTransform.parse(sdp);
  const ipVer = local.address.includes(':') ? 6 : 4;
  expect(a.version).toBe(0);
  expect(a.origin).toMatchObject({ username: local.username ?? '-', netType: 'IN', ipVer, address: local.address });
  expect(String(a.origin.sessionId)).toBe(String(local.sessionId));
  expect(Number(a.origin.sessionVersion)).toBe(local.sessionVersion);
  expect(a.name).toBe('-');
  expect(a.connection).toEqual({ version: ipVer, ip: local.address });
  expect(a.timing).toEqual({ start: 0, stop: 0 });
  expect(a.media).toHaveLength(plan.mLines.length);
  a.media.forEach((m, i) => {
    const offered = plan.mLines[i]!;
    expect(m.type).toBe(offered.type);
    if (i !== plan.accepted) {
      // RFC 3264 §6: a refused stream keeps its m-line with port 0 and its format list.
      expect(m.port).toBe(0);
      expect(m.protocol).toBe(offered.protocol);
      expect(String(m.payloads)).toBe(offered.formats);
      expect(m.rtp).toEqual([]);
      expect(m.crypto).toBeUndefined();
      return;
    }
    expect(m.port).toBe(local.port);
    expect(m.protocol).toBe(plan.protocol);
    const te = plan.telephoneEvent;
    expect(String(m.payloads)).toBe(te ? `${plan.payloadType} ${te.payloadType}` : `${plan.payloadType}`);
    expect(m.rtp).toEqual([
      { payload: plan.payloadType, codec: plan.codec, rate: 8000 },
      ...(te ? [{ payload: te.payloadType, codec: 'telephone-event', rate: 8000 }] : []),
    ]);
    expect(m.fmtp.map((f) => ({ payload: f.payload, config: String(f.config) }))).toEqual(te ? [{ payload: te.payloadType, config: te.events }] : []);
    expect(m.ptime).toBe(plan.ptime);
    expect(m.direction).toBe(plan.direction);
    expect(m.rtcpMux !== undefined).toBe(plan.rtcpMux);
    if (plan.srtp) {
      expect(m.crypto).toHaveLength(1);
      const c = m.crypto![0]!;
      expect([c.id, c.suite, c.sessionConfig]).toEqual([plan.srtp.tag, plan.srtp.suite, undefined]);
      expect(Buffer.from(c.config.replace(/^inline:/, ''), 'base64').equals(plan.srtp.localKeySalt)).toBe(true);
    } else {
      expect(m.crypto).toBeUndefined();
    }
    expect(m.connection).toBeUndefined();
    expect(m.rtcp).toBeUndefined();
  });
}

describe('parseOffer: what an offer says (RFC 4566, RFC 3264 §5)', () => {
  it('SIPp uac: one audio stream, PCMA and telephone-event with fmtp 0-11,16', () => {
    const o = mustParse(fixture('sipp-uac.sdp'));
    expect(o.origin).toEqual({ username: 'user1', sessionId: '53655765', sessionVersion: '2353687637', address: '127.0.0.1' });
    expect(o.audio).toHaveLength(1);
    const s = o.audio[0]!;
    expect(s).toMatchObject({ index: 0, port: 6000, protocol: 'RTP/AVP', transport: 'RTP/AVP', dtls: false, sdes: false, direction: 'sendrecv', onHold: false, rtcpMux: false, rtcp: null, ptime: null, maxptime: null });
    expect(s.connection).toEqual({ address: '127.0.0.1', ipVersion: 4 });
    expect(s.payloads).toEqual([
      { pt: 8, encoding: 'PCMA', clockRate: 8000, channels: 1, fmtp: null },
      { pt: 101, encoding: 'telephone-event', clockRate: 8000, channels: 1, fmtp: '0-11,16' },
    ]);
  });

  it('static payload types 0 and 8 are PCMU/8000 and PCMA/8000 without a=rtpmap (RFC 3551 §6)', () => {
    const s = mustParse(offerSdp('m=audio 4000 RTP/AVP 0 8 18')).audio[0]!;
    expect(s.payloads.map((p) => [p.pt, p.encoding, p.clockRate])).toEqual([[0, 'PCMU', 8000], [8, 'PCMA', 8000], [18, 'G729', 8000]]);
  });

  it('a dynamic payload type without a=rtpmap is listed with an unknown encoding', () => {
    const s = mustParse(offerSdp('m=audio 4000 RTP/AVP 96 0')).audio[0]!;
    expect(s.payloads[0]).toEqual({ pt: 96, encoding: null, clockRate: null, channels: 1, fmtp: null });
  });

  it('a media-level c= overrides the session-level one (RFC 4566 §5.7)', () => {
    const s = mustParse(offerSdp('m=audio 4000 RTP/AVP 0\nc=IN IP4 203.0.113.9', 'c=IN IP4 192.0.2.1')).audio[0]!;
    expect(s.connection).toEqual({ address: '203.0.113.9', ipVersion: 4 });
    expect(mustParse(fixture('cisco-srtp.sdp')).audio[0]!.connection.address).toBe('10.1.1.50');
  });

  it('reads IPv6 connection addresses, session-level and media-level', () => {
    expect(mustParse(offerSdp('m=audio 4000 RTP/AVP 0', 'c=IN IP6 2001:db8::7')).audio[0]!.connection).toEqual({ address: '2001:db8::7', ipVersion: 6 });
    expect(mustParse(offerSdp('m=audio 4000 RTP/AVP 0\nc=IN IP6 fe80::1', 'c=IN IP4 192.0.2.1')).audio[0]!.connection).toEqual({ address: 'fe80::1', ipVersion: 6 });
  });

  it('direction: media level, else session level, else sendrecv (RFC 3264 §5.1)', () => {
    expect(mustParse(offerSdp('m=audio 4000 RTP/AVP 0')).audio[0]!.direction).toBe('sendrecv');
    expect(mustParse(offerSdp('m=audio 4000 RTP/AVP 0', 'c=IN IP4 192.0.2.1\na=recvonly')).audio[0]!.direction).toBe('recvonly');
    expect(mustParse(offerSdp('m=audio 4000 RTP/AVP 0\na=inactive', 'c=IN IP4 192.0.2.1\na=recvonly')).audio[0]!.direction).toBe('inactive');
    expect(mustParse(fixture('polycom.sdp')).audio[0]!.direction).toBe('sendrecv');
  });

  it('hold (RFC 3264 §8.4): c=0.0.0.0, sendonly or inactive; recvonly is not hold', () => {
    const legacy = mustParse(fixture('cisco-hold-legacy.sdp')).audio[0]!;
    expect([legacy.nullAddress, legacy.onHold, legacy.direction]).toEqual([true, true, 'sendrecv']);
    expect(mustParse(offerSdp('m=audio 4000 RTP/AVP 0\na=sendonly')).audio[0]!.onHold).toBe(true);
    expect(mustParse(offerSdp('m=audio 4000 RTP/AVP 0\na=inactive')).audio[0]!.onHold).toBe(true);
    expect(mustParse(offerSdp('m=audio 4000 RTP/AVP 0\na=recvonly')).audio[0]!.onHold).toBe(false);
    expect(mustParse(offerSdp('m=audio 4000 RTP/AVP 0', 'c=IN IP6 ::')).audio[0]!.onHold).toBe(true);
  });

  it('reads ptime and maxptime', () => {
    const s = mustParse(offerSdp('m=audio 4000 RTP/AVP 0\na=ptime:30\na=maxptime:60')).audio[0]!;
    expect([s.ptime, s.maxptime]).toEqual([30, 60]);
    expect(mustParse(fixture('cisco-srtp.sdp')).audio[0]!.ptime).toBe(30);
  });

  it('reads a=rtcp with and without an address (RFC 3605) and a=rtcp-mux (RFC 5761)', () => {
    expect(mustParse(fixture('linphone.sdp')).audio[0]!.rtcp).toEqual({ port: 7079, connection: null });
    const s = mustParse(offerSdp('m=audio 4000 RTP/AVP 0\na=rtcp:4005 IN IP4 192.0.2.99\na=rtcp-mux')).audio[0]!;
    expect(s.rtcp).toEqual({ port: 4005, connection: { address: '192.0.2.99', ipVersion: 4 } });
    expect(s.rtcpMux).toBe(true);
  });

  it('keeps usable a=crypto lines in order and says why the others were skipped (baresip)', () => {
    const s = mustParse(fixture('baresip-srtp.sdp')).audio[0]!;
    expect([s.transport, s.sdes]).toEqual(['RTP/SAVP', true]);
    expect(s.crypto.map((c) => [c.tag, c.suite, c.keySalt.length])).toEqual([
      [2, 'AEAD_AES_128_GCM', 28],
      [3, 'AES_CM_128_HMAC_SHA1_80', 30],
      [4, 'AES_CM_128_HMAC_SHA1_32', 30],
    ]);
    expect(s.skippedCrypto).toEqual([{ tag: 1, suite: 'AEAD_AES_256_GCM', reason: 'crypto suite AEAD_AES_256_GCM is not supported' }]);
  });

  it('reads the key lifetime (Cisco |2^31)', () => {
    expect(mustParse(fixture('cisco-srtp.sdp')).audio[0]!.crypto.map((c) => c.lifetime)).toEqual([2 ** 31, 2 ** 31]);
  });

  it('recognises DTLS-SRTP (a WebRTC browser) and its fingerprint', () => {
    const s = mustParse(fixture('webrtc-chrome.sdp')).audio[0]!;
    expect([s.transport, s.dtls, s.sdes, s.rtcpMux]).toEqual(['UDP/TLS/RTP/SAVPF', true, false, true]);
    expect(s.fingerprint?.hash).toBe('sha-256');
    expect(s.rtcp).toEqual({ port: 9, connection: { address: '0.0.0.0', ipVersion: 4 } });
  });

  it('a=ssrc and other attributes we do not use are ignored', () => {
    const s = mustParse(fixture('baresip-srtp.sdp')).audio[0]!;
    expect(Object.keys(s)).not.toContain('ssrcs');
  });

  it('accepts bare LF line endings and Buffer bodies', () => {
    const lf = fixture('sipp-uac.sdp').replace(/\r\n/g, '\n');
    expect(mustParse(lf).audio[0]!.port).toBe(6000);
    expect(mustParse(Buffer.from(fixture('sipp-uac.sdp'))).audio[0]!.port).toBe(6000);
  });

  it('refuses empty bodies, and bodies over 16 KiB, before parsing them', () => {
    for (const e of ['', '   \r\n', Buffer.alloc(0)]) expect(parseOffer(e)).toMatchObject({ error: 'empty' });
    const valid = offerSdp('m=audio 4000 RTP/AVP 0');
    const pad = (total: number): string => {
      const filler = total - Buffer.byteLength(valid) - 'a=x-pad:\r\n'.length;
      return `${valid}a=x-pad:${'x'.repeat(filler)}\r\n`;
    };
    expect(Buffer.byteLength(pad(16 * 1024))).toBe(16384);
    expect('error' in parseOffer(pad(16 * 1024))).toBe(false);
    expect(parseOffer(pad(16 * 1024 + 1))).toMatchObject({ error: 'too-large' });
    expect(parseOffer(Buffer.from(pad(16 * 1024 + 1)))).toMatchObject({ error: 'too-large' });
    expect(parseOffer('v=0\r\n'.repeat(1_000_000))).toMatchObject({ error: 'too-large' });
    expect(parseOffer(valid, { maxBytes: 64 })).toMatchObject({ error: 'too-large' });
  });

  it('refuses what is not SDP (RFC 4566 §5: v=0 first, o= present, <type>=<value> lines)', () => {
    const cases: string[] = [
      'hello',
      'INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n',
      '{"sdp":"v=0"}',
      crlf('o=- 1 1 IN IP4 192.0.2.1\nv=0\nm=audio 4000 RTP/AVP 0'),
      crlf('v=1\no=- 1 1 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0'),
      crlf('v=0\ns=-\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0'),
      crlf('v=0\no=- x 1 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0'),
      offerSdp('m=audio 70000 RTP/AVP 0'),
      offerSdp('m=audio 4000 RTP/AVP'),
      offerSdp('m=audio -1 RTP/AVP 0'),
      offerSdp('m=audio 4000 RTP/AVP 0\nthis is not a line'),
      offerSdp('m=audio 4000 RTP/AVP 0\na=ptime:20\u0000'),
      offerSdp('m=audio 4000 RTP/AVP 0', 'c=IN IP4'),
      offerSdp('m=audio 4000 RTP/AVP 0', 'c=IN IP4 2001:db8::1'),
      offerSdp('m=audio 4000 RTP/AVP 0', 'c=ATM NSAP 47.0005'),
    ];
    for (const c of cases) expect(parseOffer(c), JSON.stringify(c)).toMatchObject({ error: 'malformed' });
  });

  it('an audio m-line needs a connection address, at media or session level (RFC 4566 §5.7)', () => {
    expect(parseOffer(offerSdp('m=audio 4000 RTP/AVP 0', 's=x'))).toMatchObject({ error: 'malformed', reason: expect.stringContaining('no c= line') });
  });

  it('refuses connection addresses we cannot send to: FQDN and multicast', () => {
    expect(parseOffer(offerSdp('m=audio 4000 RTP/AVP 0', 'c=IN IP4 pbx.example.com'))).toMatchObject({ error: 'unsupported-address' });
    expect(parseOffer(offerSdp('m=audio 4000 RTP/AVP 0', 'c=IN IP4 224.2.1.1/127'))).toMatchObject({ error: 'unsupported-address' });
    // A media-level address we can use wins over a session-level one we cannot.
    expect(mustParse(offerSdp('m=audio 4000 RTP/AVP 0\nc=IN IP4 192.0.2.5', 'c=IN IP4 pbx.example.com')).audio[0]!.connection.address).toBe('192.0.2.5');
  });

  it('no audio m-line with a non-zero port is "no-audio"', () => {
    expect(parseOffer(offerSdp('m=video 5000 RTP/AVP 96\na=rtpmap:96 VP8/90000'))).toMatchObject({ error: 'no-audio' });
    expect(parseOffer(offerSdp('m=audio 0 RTP/AVP 0'))).toMatchObject({ error: 'no-audio' });
    expect(parseOffer(crlf('v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n'))).toMatchObject({ error: 'no-audio' });
  });

  it('never throws, whatever it is given', () => {
    const inputs: unknown[] = [undefined, null, 42, {}, [], Symbol('x'), randomBytes(4096), Buffer.from([0xff, 0xfe, 0x00]), 'v=0', 'v=0\r\nm=audio', '\r\n\r\n', 'v=0\r\no=\r\nm=\r\nc=\r\na=crypto:\r\n'];
    for (const input of inputs) {
      const r = parseOffer(input as string);
      expect('error' in r).toBe(true);
    }
  });
});

describe('negotiate: the answer we give (RFC 3264 §6)', () => {
  it('takes the first offered codec we support, in the offerer\'s order (§6.1), whatever our own preference', () => {
    expect(mustPlan(fixture('polycom.sdp'), { ...LOCAL, codecs: ['PCMU', 'PCMA'] })).toMatchObject({ codec: 'PCMA', payloadType: 8 });
    expect(mustPlan(fixture('baresip-srtp.sdp'))).toMatchObject({ codec: 'PCMU', payloadType: 0 });
    expect(mustPlan(fixture('linphone.sdp'))).toMatchObject({ codec: 'PCMU', payloadType: 0 });
    expect(mustPlan(fixture('polycom.sdp'), { ...LOCAL, codecs: ['PCMU'] })).toMatchObject({ codec: 'PCMU', payloadType: 0 });
  });

  it('keeps a dynamic PT that names a codec we run', () => {
    expect(mustPlan(offerSdp('m=audio 4000 RTP/AVP 97 0\na=rtpmap:97 pcma/8000'))).toMatchObject({ codec: 'PCMA', payloadType: 97 });
  });

  it('G.711 at another clock rate or in stereo is not G.711 we run', () => {
    expect(mustPlan(offerSdp('m=audio 4000 RTP/AVP 96 97 8\na=rtpmap:96 PCMU/16000\na=rtpmap:97 PCMU/8000/2'))).toMatchObject({ codec: 'PCMA', payloadType: 8 });
  });

  it('no codec in common is a 488 that says what was offered', () => {
    const reason = rejectionOf(fixture('sipp-uac.sdp'), { ...LOCAL, codecs: ['PCMU'] });
    expect(reason).toContain('no offered codec is supported');
    expect(reason).toContain('PCMA');
    expect(reason).not.toContain('"');
    expect(rejectionOf(offerSdp('m=audio 4000 RTP/AVP 9 18'))).toContain('G722, G729');
  });

  it('keeps telephone-event with the offerer\'s payload type (RFC 4733 §7.1.1)', () => {
    expect(mustPlan(fixture('sipp-uac.sdp')).telephoneEvent).toEqual({ payloadType: 101, events: '0-11,16' });
    expect(mustPlan(fixture('polycom.sdp')).telephoneEvent).toEqual({ payloadType: 127, events: '0-15' });
    expect(mustPlan(fixture('cisco-srtp.sdp')).telephoneEvent).toEqual({ payloadType: 101, events: '0-15' });
    expect(mustPlan(offerSdp('m=audio 4000 RTP/AVP 0 96\na=rtpmap:96 telephone-event/8000\na=fmtp:96 0-16')).telephoneEvent).toEqual({ payloadType: 96, events: '0-16' });
  });

  it('takes the 8000 Hz telephone-event when several rates are offered (Linphone, WebRTC)', () => {
    expect(mustPlan(fixture('linphone.sdp')).telephoneEvent).toEqual({ payloadType: 100, events: '0-15' });
  });

  it('answers with the events we handle, 0-16, of those offered', () => {
    expect(mustPlan(offerSdp('m=audio 4000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-255')).telephoneEvent?.events).toBe('0-16');
    expect(mustPlan(offerSdp('m=audio 4000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=fmtp:101 32-40')).telephoneEvent).toBeNull();
    expect(mustPlan(offerSdp('m=audio 4000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-99999999999')).telephoneEvent).toBeNull();
  });

  it('leaves telephone-event out when it is switched off, or not offered', () => {
    expect(mustPlan(fixture('sipp-uac.sdp'), { ...LOCAL, telephoneEvent: false }).telephoneEvent).toBeNull();
    expect(mustPlan(offerSdp('m=audio 4000 RTP/AVP 0')).telephoneEvent).toBeNull();
  });

  describe('SRTP policy (RFC 4568)', () => {
    const plain = fixture('polycom.sdp');
    const sdes = fixture('cisco-srtp.sdp');
    const cases = [
      { offer: 'RTP/AVP', srtp: 'required', expect: 'SRTP is required' },
      { offer: 'RTP/AVP', srtp: 'optional', expect: 'RTP/AVP' },
      { offer: 'RTP/AVP', srtp: 'off', expect: 'RTP/AVP' },
      { offer: 'RTP/SAVP', srtp: 'required', expect: 'RTP/SAVP' },
      { offer: 'RTP/SAVP', srtp: 'optional', expect: 'RTP/SAVP' },
      { offer: 'RTP/SAVP', srtp: 'off', expect: 'SRTP is switched off' },
    ] as const;
    for (const c of cases) {
      it(`an ${c.offer} offer with srtp '${c.srtp}' → ${c.expect}`, () => {
        const r = negotiate(mustParse(c.offer === 'RTP/AVP' ? plain : sdes), { ...LOCAL, srtp: c.srtp });
        if (c.expect.startsWith('RTP/')) {
          expect('reject' in r).toBe(false);
          if (!('reject' in r)) expect([r.protocol, r.srtp !== null]).toEqual([c.expect, c.expect === 'RTP/SAVP']);
        } else {
          expect(r).toMatchObject({ reject: 488, reason: expect.stringContaining(c.expect) });
        }
      });
    }

    it('takes the first offered crypto line whose suite we support, and answers under its tag (§7.1.2)', () => {
      expect(mustPlan(sdes).srtp).toMatchObject({ tag: 1, suite: 'AES_CM_128_HMAC_SHA1_32' });
      expect(mustPlan(sdes, { ...LOCAL, suites: ['AES_CM_128_HMAC_SHA1_80'] }).srtp).toMatchObject({ tag: 2, suite: 'AES_CM_128_HMAC_SHA1_80' });
      expect(mustPlan(fixture('baresip-srtp.sdp')).srtp).toMatchObject({ tag: 2, suite: 'AEAD_AES_128_GCM' });
      expect(mustPlan(fixture('baresip-srtp.sdp'), { ...LOCAL, suites: ['AES_CM_128_HMAC_SHA1_32', 'AES_CM_128_HMAC_SHA1_80'] }).srtp).toMatchObject({ tag: 3, suite: 'AES_CM_128_HMAC_SHA1_80' });
    });

    it('draws a fresh key of our own, of the suite\'s length, for each answer (§6.1)', () => {
      const a = mustPlan(sdes).srtp!;
      const b = mustPlan(sdes).srtp!;
      const offered = mustParse(sdes).audio[0]!.crypto[0]!.keySalt;
      expect(a.localKeySalt.length).toBe(30);
      expect(a.remoteKeySalt.equals(offered)).toBe(true);
      expect(a.localKeySalt.equals(offered)).toBe(false);
      expect(a.localKeySalt.equals(b.localKeySalt)).toBe(false);
      expect(mustPlan(fixture('baresip-srtp.sdp')).srtp!.localKeySalt.length).toBe(28);
    });

    it('keeps our key across a re-INVITE when the suite stays the same', () => {
      const first = mustPlan(sdes).srtp!;
      const again = mustPlan(sdes, { ...LOCAL, localKey: { suite: first.suite, keySalt: first.localKeySalt } }).srtp!;
      expect(again.localKeySalt.equals(first.localKeySalt)).toBe(true);
      const other = mustPlan(sdes, { ...LOCAL, suites: ['AES_CM_128_HMAC_SHA1_80'], localKey: { suite: first.suite, keySalt: first.localKeySalt } }).srtp!;
      expect(other.localKeySalt.equals(first.localKeySalt)).toBe(false);
    });

    it('a crypto line with a key of the wrong length is skipped, and the next one used', () => {
      const short = randomBytes(20).toString('base64');
      const offer = offerSdp(`m=audio 4000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:${short}\na=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:${key30()}`);
      expect(mustPlan(offer).srtp?.tag).toBe(2);
    });

    it('an SRTP offer with no usable crypto line is a 488 that says why', () => {
      const wrongLength = offerSdp(`m=audio 4000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:${randomBytes(28).toString('base64')}`);
      expect(rejectionOf(wrongLength)).toContain('needs a 30-octet inline key');
      const mki = offerSdp(`m=audio 4000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:${key30()}|2^20|1:4`);
      expect(rejectionOf(mki)).toContain('MKI');
      const unsupported = offerSdp(`m=audio 4000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:${key30()}`);
      expect(rejectionOf(unsupported, { ...LOCAL, suites: ['AES_CM_128_HMAC_SHA1_32'] })).toContain('we support AES_CM_128_HMAC_SHA1_32');
      expect(rejectionOf(offerSdp('m=audio 4000 RTP/SAVP 0'))).toContain('no usable a=crypto');
    });

    it('a=crypto in a plain RTP/AVP offer is not SRTP (RFC 4568 §5)', () => {
      const offer = offerSdp(`m=audio 4000 RTP/AVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:${key30()}`);
      expect(mustPlan(offer).srtp).toBeNull();
      expect(rejectionOf(offer, { ...LOCAL, srtp: 'required' })).toContain('SRTP is required');
    });

    it('a WebRTC offer (UDP/TLS/RTP/SAVPF, DTLS fingerprint) is a 488 saying DTLS-SRTP is not supported', () => {
      for (const srtp of ['required', 'optional', 'off'] as const) {
        const reason = rejectionOf(fixture('webrtc-chrome.sdp'), { ...LOCAL, srtp });
        expect(reason).toContain('DTLS-SRTP (UDP/TLS/RTP/SAVPF) is not supported');
      }
    });

    it('an unknown transport is a 488', () => {
      expect(rejectionOf(offerSdp('m=audio 4000 TCP/RTP/AVP 0'))).toContain('TCP/RTP/AVP is not supported');
    });
  });

  it('answers AVPF and SAVPF offers with the same profile (RFC 3264 §6: same transport)', () => {
    expect(mustPlan(offerSdp('m=audio 4000 RTP/AVPF 0')).protocol).toBe('RTP/AVPF');
    expect(mustPlan(offerSdp(`m=audio 4000 RTP/SAVPF 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:${key30()}`)).protocol).toBe('RTP/SAVPF');
  });

  describe('direction (RFC 3264 §6.1)', () => {
    const cases = [
      ['sendrecv', 'sendrecv'],
      ['sendonly', 'recvonly'],
      ['recvonly', 'sendonly'],
      ['inactive', 'inactive'],
    ] as const;
    for (const [offered, answered] of cases) {
      it(`an offer marked ${offered} is answered ${answered}`, () => {
        expect(mustPlan(offerSdp(`m=audio 4000 RTP/AVP 0\na=${offered}`)).direction).toBe(answered);
        expect(mustPlan(offerSdp('m=audio 4000 RTP/AVP 0', `c=IN IP4 192.0.2.1\na=${offered}`)).direction).toBe(answered);
      });
    }

    it('legacy hold with c=0.0.0.0: we send nothing, so sendrecv becomes recvonly and recvonly inactive (§8.4)', () => {
      const plan = mustPlan(fixture('cisco-hold-legacy.sdp'));
      expect([plan.direction, plan.onHold, plan.remote.address]).toEqual(['recvonly', true, '0.0.0.0']);
      expect(mustPlan(offerSdp('m=audio 4000 RTP/AVP 0\nc=IN IP4 0.0.0.0\na=recvonly')).direction).toBe('inactive');
    });

    it('a hold (sendonly) sets onHold; resume (sendrecv) clears it', () => {
      expect(mustPlan(offerSdp('m=audio 4000 RTP/AVP 0\na=sendonly')).onHold).toBe(true);
      expect(mustPlan(offerSdp('m=audio 4000 RTP/AVP 0\na=sendrecv')).onHold).toBe(false);
    });

    it('our own direction limits the answer (we hold: sendonly)', () => {
      expect(mustPlan(offerSdp('m=audio 4000 RTP/AVP 0'), { ...LOCAL, direction: 'sendonly' }).direction).toBe('sendonly');
      expect(mustPlan(offerSdp('m=audio 4000 RTP/AVP 0\na=sendonly'), { ...LOCAL, direction: 'sendonly' }).direction).toBe('inactive');
    });
  });

  it('ptime: 20 unless the offer asks for a whole 10..60 ms, within maxptime', () => {
    const p = (attrs: string): number => mustPlan(offerSdp(`m=audio 4000 RTP/AVP 0\n${attrs}`)).ptime;
    expect(p('')).toBe(20);
    expect(p('a=ptime:30')).toBe(30);
    expect(p('a=ptime:10')).toBe(10);
    expect(p('a=ptime:60')).toBe(60);
    expect(p('a=ptime:5')).toBe(20);
    expect(p('a=ptime:80')).toBe(20);
    expect(p('a=ptime:22.5')).toBe(20);
    expect(p('a=maxptime:10')).toBe(10);
    expect(p('a=maxptime:40')).toBe(20);
    expect(mustPlan(fixture('cisco-srtp.sdp')).ptime).toBe(30);
  });

  it('echoes rtcp-mux when offered, and sends RTCP to a=rtcp, the RTP port (muxed) or port + 1', () => {
    const muxed = mustPlan(offerSdp('m=audio 4000 RTP/AVP 0\na=rtcp-mux'));
    expect([muxed.rtcpMux, muxed.remote.rtcpPort]).toEqual([true, 4000]);
    const plain = mustPlan(offerSdp('m=audio 4000 RTP/AVP 0'));
    expect([plain.rtcpMux, plain.remote]).toEqual([false, { address: '192.0.2.1', ipVersion: 4, port: 4000, rtcpPort: 4001, rtcpAddress: '192.0.2.1' }]);
    expect(mustPlan(fixture('linphone.sdp')).remote).toEqual({ address: '192.168.0.12', ipVersion: 4, port: 7078, rtcpPort: 7079, rtcpAddress: '192.168.0.12' });
    expect(mustPlan(offerSdp('m=audio 4000 RTP/AVP 0\na=rtcp:5001 IN IP4 192.0.2.99')).remote).toMatchObject({ rtcpPort: 5001, rtcpAddress: '192.0.2.99' });
    expect(mustPlan(offerSdp('m=audio 4000 RTP/AVP 0\na=rtcp:4001\na=rtcp-mux')).remote).toMatchObject({ rtcpPort: 4000, rtcpAddress: '192.0.2.1' });
  });

  it('the remote address and port are the accepted stream\'s, IPv6 included', () => {
    expect(mustPlan(offerSdp('m=audio 4000 RTP/AVP 0', 'c=IN IP6 2001:db8::7')).remote).toMatchObject({ address: '2001:db8::7', ipVersion: 6, port: 4000 });
  });

  describe('several m-lines (RFC 3264 §6: every one is answered, refused ones with port 0)', () => {
    it('Linphone audio + video: audio taken, video refused', () => {
      const plan = mustPlan(fixture('linphone.sdp'));
      expect(plan.accepted).toBe(0);
      expect(plan.mLines.map((m) => m.type)).toEqual(['audio', 'video']);
    });

    it('only the first audio stream is taken; a second one is refused', () => {
      const plan = mustPlan(offerSdp('m=audio 4000 RTP/AVP 8\nm=audio 4002 RTP/AVP 0'));
      expect([plan.accepted, plan.codec, plan.remote.port]).toEqual([0, 'PCMA', 4000]);
    });

    it('an audio stream already refused (port 0) is skipped for the next one', () => {
      const plan = mustPlan(offerSdp('m=video 0 RTP/AVP 96\nm=audio 0 RTP/AVP 8\nm=audio 4002 RTP/AVP 0'));
      expect([plan.accepted, plan.codec]).toEqual([2, 'PCMU']);
    });
  });
});

describe('buildAnswer (RFC 3264 §6)', () => {
  const answerable = FIXTURE_NAMES.filter((n) => n !== 'webrtc-chrome.sdp');
  for (const name of answerable) {
    it(`answers ${name} with exactly what the plan says, readable by sdp-transform`, () => {
      const plan = mustPlan(fixture(name));
      const sdp = buildAnswer(plan, US);
      expectAnswerMatchesPlan(sdp, plan, US);
    });
  }

  it('writes the whole SDP in RFC 4566 order with CRLF', () => {
    const plan = mustPlan(fixture('cisco-srtp.sdp'), { ...LOCAL, suites: ['AES_CM_128_HMAC_SHA1_80'] });
    const sdp = buildAnswer(plan, { ...US, sessionId: 1234, sessionVersion: 7, username: 'tollgate' });
    const key = plan.srtp!.localKeySalt.toString('base64');
    expect(sdp).toBe(
      [
        'v=0',
        'o=tollgate 1234 7 IN IP4 198.51.100.10',
        's=-',
        'c=IN IP4 198.51.100.10',
        't=0 0',
        'm=audio 40000 RTP/SAVP 0 101',
        'a=rtpmap:0 PCMU/8000',
        'a=rtpmap:101 telephone-event/8000',
        'a=fmtp:101 0-15',
        `a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:${key}`,
        'a=ptime:30',
        'a=sendrecv',
        '',
      ].join('\r\n'),
    );
  });

  it('refused m-lines keep their type, protocol and format list, with port 0', () => {
    const sdp = buildAnswer(mustPlan(fixture('linphone.sdp')), US);
    expect(sdp).toContain('\r\nm=video 0 RTP/AVP 96 97\r\n');
    expect(sdp).not.toContain('VP8');
    const two = buildAnswer(mustPlan(offerSdp('m=audio 4000 RTP/AVP 8\nm=audio 4002 RTP/AVP 0 101\nm=application 5000 UDP/BFCP *')), US);
    expect(two).toContain('\r\nm=audio 0 RTP/AVP 0 101\r\nm=application 0 UDP/BFCP *\r\n');
  });

  it('writes IN IP6 for an IPv6 local address', () => {
    const local = { ...US, address: '2001:db8::10' };
    const plan = mustPlan(offerSdp('m=audio 4000 RTP/AVP 0', 'c=IN IP6 2001:db8::7'));
    const sdp = buildAnswer(plan, local);
    expect(sdp).toContain('o=- 8765432109876543210 1 IN IP6 2001:db8::10\r\n');
    expect(sdp).toContain('c=IN IP6 2001:db8::10\r\n');
    expectAnswerMatchesPlan(sdp, plan, local);
  });

  it('writes rtcp-mux only when agreed, and the hold direction', () => {
    const muxed = buildAnswer(mustPlan(offerSdp('m=audio 4000 RTP/AVP 0\na=rtcp-mux\na=sendonly')), US);
    expect(muxed).toContain('a=rtcp-mux\r\n');
    expect(muxed).toContain('a=recvonly\r\n');
    expect(buildAnswer(mustPlan(offerSdp('m=audio 4000 RTP/AVP 0')), US)).not.toContain('rtcp-mux');
  });

  it('our answer is itself an SDP we read back the same way', () => {
    const plan = mustPlan(fixture('baresip-srtp.sdp'));
    const back = mustParse(buildAnswer(plan, US)).audio[0]!;
    expect(back.crypto).toEqual([{ tag: 2, suite: 'AEAD_AES_128_GCM', keySalt: plan.srtp!.localKeySalt, lifetime: null }]);
    expect(back.payloads.map((p) => p.pt)).toEqual([0, 101]);
  });

  it('a local address that is not an IP literal is a programming fault, thrown as TollgateError', () => {
    const plan = mustPlan(offerSdp('m=audio 4000 RTP/AVP 0'));
    expect(() => buildAnswer(plan, { ...US, address: 'gateway.example.com' })).toThrow(TollgateError);
    expect(() => buildAnswer(plan, { ...US, port: 0 })).toThrow(TollgateError);
  });
});

describe('buildOffer and parseAnswer (our outbound calls, RFC 3264 §5, §7)', () => {
  it('offers PCMU, PCMA and telephone-event 101 over RTP/AVP by default', () => {
    const o = buildOffer(US);
    const p = sdpTransform.parse(o.sdp);
    expect(p.media).toHaveLength(1);
    const m = p.media[0]!;
    expect([m.type, m.port, m.protocol, String(m.payloads), m.ptime, m.direction]).toEqual(['audio', 40000, 'RTP/AVP', '0 8 101', 20, 'sendrecv']);
    expect(m.rtp.map((r) => `${r.payload} ${r.codec}/${r.rate}`)).toEqual(['0 PCMU/8000', '8 PCMA/8000', '101 telephone-event/8000']);
    expect(m.fmtp).toEqual([{ payload: 101, config: '0-16' }]);
    expect(m.crypto).toBeUndefined();
    expect(o).toMatchObject({ protocol: 'RTP/AVP', telephoneEventPt: 101, direction: 'sendrecv', ptime: 20, rtcpMux: false, crypto: [], sessionVersion: 1 });
    expect(o.sdp.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);
  });

  it('with SRTP, offers RTP/SAVP with a fresh key per AES_CM suite, tags 1 and 2', () => {
    const o = buildOffer(US, { srtp: true });
    const m = sdpTransform.parse(o.sdp).media[0]!;
    expect(m.protocol).toBe('RTP/SAVP');
    expect(m.crypto!.map((c) => [c.id, c.suite])).toEqual([[1, 'AES_CM_128_HMAC_SHA1_80'], [2, 'AES_CM_128_HMAC_SHA1_32']]);
    expect(o.crypto.map((c) => c.keySalt.length)).toEqual([30, 30]);
    expect(o.crypto[0]!.keySalt.equals(o.crypto[1]!.keySalt)).toBe(false);
    expect(Buffer.from(m.crypto![0]!.config.slice('inline:'.length), 'base64').equals(o.crypto[0]!.keySalt)).toBe(true);
  });

  it('hold and resume are re-offers with a direction and the next session version, keeping the keys (RFC 3264 §8.4)', () => {
    const first = buildOffer(US, { srtp: true });
    const hold = buildOffer({ ...US, sessionVersion: 2 }, { srtp: true, direction: 'sendonly', previous: first });
    const resume = buildOffer({ ...US, sessionVersion: 3 }, { srtp: true, previous: hold });
    expect(hold.sdp).toContain('o=- 8765432109876543210 2 IN IP4');
    expect(hold.sdp).toContain('a=sendonly\r\n');
    expect(resume.sdp).toContain('a=sendrecv\r\n');
    expect(resume.crypto).toEqual(first.crypto);
    expect(() => buildOffer({ ...US, sessionVersion: 1 }, { previous: first })).toThrow(TollgateError);
  });

  it('offer options: codecs, no telephone-event, rtcp-mux, ptime, GCM', () => {
    const o = buildOffer(US, { codecs: ['PCMA'], telephoneEvent: false, rtcpMux: true, ptime: 30, srtp: true, suites: ['AEAD_AES_128_GCM'] });
    const m = sdpTransform.parse(o.sdp).media[0]!;
    expect([String(m.payloads), m.ptime, m.rtcpMux]).toEqual(['8', 30, 'rtcp-mux']);
    expect(o.crypto.map((c) => [c.suite, c.keySalt.length])).toEqual([['AEAD_AES_128_GCM', 28]]);
  });

  /** Our offer, answered by our own answerer: each side ends with the other's key. */
  function selfCall(offerOpts: Parameters<typeof buildOffer>[1], local: LocalMediaOptions = LOCAL): { offered: ReturnType<typeof buildOffer>; plan: AnswerPlan; answer: NegotiatedMedia } {
    const offered = buildOffer(US, offerOpts);
    const plan = mustPlan(offered.sdp, local);
    const them: LocalSdpIdentity = { address: '203.0.113.50', port: 20000, sessionId: 99, sessionVersion: 1 };
    const answer = parseAnswer(buildAnswer(plan, them), offered);
    if ('error' in answer) throw new Error(answer.reason);
    return { offered, plan, answer };
  }

  it('reads an answer: codec, telephone-event, where to send, and the keys both ways', () => {
    const { plan, answer } = selfCall({ srtp: true, rtcpMux: true });
    expect(answer).toMatchObject({ protocol: 'RTP/SAVP', codec: 'PCMU', payloadType: 0, telephoneEvent: { payloadType: 101, events: '0-16' }, ptime: 20, direction: 'sendrecv', rtcpMux: true, onHold: false });
    expect(answer.remote).toEqual({ address: '203.0.113.50', ipVersion: 4, port: 20000, rtcpPort: 20000, rtcpAddress: '203.0.113.50' });
    expect(answer.srtp!.tag).toBe(1);
    expect(answer.srtp!.remoteKeySalt.equals(plan.srtp!.localKeySalt)).toBe(true);
    expect(answer.srtp!.localKeySalt.equals(plan.srtp!.remoteKeySalt)).toBe(true);
  });

  it('the answer may take our second suite: its tag picks our key', () => {
    const { offered, answer } = selfCall({ srtp: true }, { ...LOCAL, suites: ['AES_CM_128_HMAC_SHA1_32'] });
    expect(answer.srtp).toMatchObject({ tag: 2, suite: 'AES_CM_128_HMAC_SHA1_32' });
    expect(answer.srtp!.localKeySalt.equals(offered.crypto[1]!.keySalt)).toBe(true);
  });

  it('our hold re-offer (sendonly) is answered recvonly, so we only send', () => {
    const { answer } = selfCall({ direction: 'sendonly' });
    expect(answer.direction).toBe('sendonly');
  });

  it('the peer holding us in its answer (sendonly) leaves us receiving only', () => {
    const offered = buildOffer(US);
    const answer = parseAnswer(offerSdp('m=audio 5000 RTP/AVP 8 101\na=rtpmap:101 telephone-event/8000\na=sendonly'), offered);
    expect(answer).toMatchObject({ direction: 'recvonly', onHold: true, codec: 'PCMA', payloadType: 8, telephoneEvent: { payloadType: 101, events: '0-15' } });
  });

  it('uses the answer\'s own payload type numbers to send with', () => {
    const offered = buildOffer(US);
    const answer = parseAnswer(offerSdp('m=audio 5000 RTP/AVP 97 96\na=rtpmap:97 PCMU/8000\na=rtpmap:96 telephone-event/8000'), offered);
    expect(answer).toMatchObject({ codec: 'PCMU', payloadType: 97, telephoneEvent: { payloadType: 96 } });
  });

  it('answers we cannot use are errors, never throws', () => {
    const plain = buildOffer(US);
    const secure = buildOffer(US, { srtp: true });
    const k = key30();
    expect(parseAnswer(offerSdp('m=audio 0 RTP/AVP 0'), plain)).toMatchObject({ error: 'rejected' });
    expect(parseAnswer(offerSdp('m=video 5000 RTP/AVP 96'), plain)).toMatchObject({ error: 'no-audio' });
    expect(parseAnswer(offerSdp('m=audio 5000 RTP/SAVP 0'), plain)).toMatchObject({ error: 'protocol-mismatch' });
    expect(parseAnswer(offerSdp('m=audio 5000 RTP/AVP 18'), plain)).toMatchObject({ error: 'no-codec' });
    expect(parseAnswer(offerSdp('m=audio 5000 RTP/SAVP 0'), secure)).toMatchObject({ error: 'no-crypto' });
    expect(parseAnswer(offerSdp(`m=audio 5000 RTP/SAVP 0\na=crypto:9 AES_CM_128_HMAC_SHA1_80 inline:${k}`), secure)).toMatchObject({ error: 'no-crypto' });
    expect(parseAnswer(offerSdp(`m=audio 5000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:${k}`), secure)).toMatchObject({ error: 'no-crypto' });
    expect(parseAnswer('', plain)).toMatchObject({ error: 'empty' });
    expect(parseAnswer(randomBytes(500), plain)).toMatchObject({ error: 'malformed' });
  });

  it('telephone-event in an answer is ignored when we did not offer it', () => {
    const offered = buildOffer(US, { telephoneEvent: false });
    const answer = parseAnswer(offerSdp('m=audio 5000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000'), offered);
    expect(answer).toMatchObject({ telephoneEvent: null });
  });
});

describe('robustness', () => {
  const NASTY = [
    'a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA',
    `a=crypto:2 AEAD_AES_128_GCM inline:${randomBytes(28).toString('base64')}|2^48|`,
    'a=crypto:',
    'a=crypto:99999999999 AES_CM_128_HMAC_SHA1_32 inline:====',
    'a=rtpmap:',
    'a=rtpmap:0 ',
    'a=rtpmap:99999 PCMU/8000/999',
    'a=fmtp:101 0-99999999999',
    'a=fmtp:101 ,,,-,',
    'a=ptime:99999999999999999999',
    'a=ptime:.',
    'a=maxptime:-1',
    'a=rtcp:70000 IN IP4 x',
    'a=rtcp:0',
    'a=rtcp-mux',
    'a=sendonly',
    'a=inactive',
    'c=IN IP4 0.0.0.0',
    'c=IN IP6 ::',
    'c=IN IP6 999::zz',
    'c=IN IP4 224.0.0.1/1',
    'm=audio 0 RTP/AVP 0',
    'm=audio 1 RTP/SAVP 0 8',
    'm=audio 65535/2 UDP/TLS/RTP/SAVPF 0',
    'm=video 9 RTP/AVP 96',
    'o=- 1 1 IN IP4 1.2.3.4',
    'v=0',
    'a=fingerprint:sha-256',
    'a=ssrc:1 cname:x',
    '\u0000',
    '\r',
    '\u00ff\u00fe',
    '=',
  ];

  function mutate(base: string, rnd: () => number): string {
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    let lines = base.split('\r\n');
    const steps = 1 + Math.floor(rnd() * 4);
    for (let s = 0; s < steps; s++) {
      const i = Math.floor(rnd() * lines.length);
      switch (Math.floor(rnd() * 8)) {
        case 0:
          lines.splice(i, 1);
          break;
        case 1:
          lines.splice(i, 0, lines[i] ?? '');
          break;
        case 2: {
          const j = Math.floor(rnd() * lines.length);
          [lines[i], lines[j]] = [lines[j] ?? '', lines[i] ?? ''];
          break;
        }
        case 3: {
          const l = lines[i] ?? '';
          const at = Math.floor(rnd() * (l.length + 1));
          lines[i] = l.slice(0, at) + String.fromCharCode(Math.floor(rnd() * 256)) + l.slice(at + 1);
          break;
        }
        case 4:
          lines.splice(i, 0, pick(NASTY));
          break;
        case 5: {
          const text = lines.join('\r\n');
          lines = text.slice(0, Math.floor(rnd() * text.length)).split('\r\n');
          break;
        }
        case 6:
          lines[i] = (lines[i] ?? '').replace(/\d+/, () => pick(['0', '-1', '65536', '4294967296', '99999999999999999999', '1.5', '']));
          break;
        default:
          lines[i] = (lines[i] ?? '').replace(/ /, pick(['', '  ', '\t', ' / ']));
      }
    }
    return lines.join('\r\n');
  }

  it('garbage, huge and empty bodies never throw, anywhere in the chain', () => {
    const offered = buildOffer(US, { srtp: true });
    const inputs = ['', ' ', '\r\n', 'v=0', 'v=0\r\n'.repeat(20000), 'x'.repeat(1 << 20), '\u0000'.repeat(100), randomBytes(16000).toString('latin1'), '🎉'.repeat(1000), fixture('sipp-uac.sdp').repeat(3)];
    for (const input of inputs) {
      expect(() => {
        const r = parseOffer(input);
        if (!('error' in r)) {
          const plan = negotiate(r, LOCAL);
          if (!('reject' in plan)) buildAnswer(plan, US);
        }
        parseAnswer(input, offered);
        parseOffer(Buffer.from(input, 'latin1'));
      }).not.toThrow();
    }
  });

  it('1,000 seeded random mutations of valid offers never throw, and every answer made parses back', () => {
    const rnd = prng(0x5d9_2024);
    const bases = FIXTURE_NAMES.map(fixture);
    const offered = buildOffer(US, { srtp: true });
    const tally = { error: 0, rejected: 0, answered: 0 };
    for (let n = 0; n < 1000; n++) {
      const input = mutate(bases[n % bases.length]!, rnd);
      let answer: string | null = null;
      let plan: AnswerPlan | null = null;
      try {
        const r = parseOffer(input);
        if ('error' in r) tally.error++;
        else {
          const p = negotiate(r, { ...LOCAL, srtp: n % 3 === 0 ? 'required' : 'optional' });
          if ('reject' in p) tally.rejected++;
          else {
            tally.answered++;
            plan = p;
            answer = buildAnswer(p, US);
          }
        }
        parseAnswer(input, offered);
      } catch (e) {
        throw new Error(`mutation ${n} threw on ${JSON.stringify(input)}`, { cause: e });
      }
      if (answer !== null && plan !== null) {
        const back = sdpTransform.parse(answer);
        expect(back.media).toHaveLength(plan.mLines.length);
        expect(back.media[plan.accepted]!.port).toBe(US.port);
        expect('error' in parseOffer(answer)).toBe(false);
      }
    }
    // The mutations reach every outcome, so the run exercises more than the first check.
    expect(tally.error).toBeGreaterThan(50);
    expect(tally.rejected).toBeGreaterThan(50);
    expect(tally.answered).toBeGreaterThan(50);
  });
});
