/**
 * SDP offer/answer (RFC 3264) for the gateway's own media, audio only: G.711 (PCMU/PCMA,
 * RFC 3551), telephone-event (RFC 4733), and plain RTP or SDES-keyed SRTP (RFC 4568).
 *
 * Answering side:  parseOffer → negotiate → buildAnswer
 *   - parseOffer reads what the offer says, per audio m-line, and never throws: a body we cannot
 *     read is `{ error, reason }`.
 *   - negotiate applies our policy and returns an AnswerPlan (every choice made, our SRTP key
 *     drawn) or `{ reject: 488, reason }`; the reason is safe to put in a SIP Warning header.
 *   - buildAnswer writes the plan out; it chooses nothing.
 * Offering side (outbound calls, and our re-offers for hold and resume): buildOffer → parseAnswer.
 *
 * sdp-transform reads the attributes; the lines whose exact syntax matters (v=, o=, m=, c= and
 * a=crypto, which sdp-transform reads only partly) are also checked here line by line, and
 * every value sdp-transform returns is type-checked again: it returns numbers or strings as
 * the text happens to look, whatever its type declarations say.
 *
 * Not supported (refused with a clear reason, never half-used): DTLS-SRTP (UDP/TLS/RTP/SAVP(F),
 * RFC 5763) and ICE, which is what a WebRTC browser offers; multicast and FQDN connection
 * addresses; MKI and SRTP session parameters other than WSH (sdp-crypto.ts); more than one
 * audio stream (the others are refused with port 0, RFC 3264 §6).
 */
import { isIPv4, isIPv6 } from 'node:net';
import * as sdpTransform from 'sdp-transform';
import { TollgateError } from '../errors/index.js';
import type { Codec } from '../media/media-protocol.js';
import { formatCrypto, generateKeySalt, keySaltLength, parseCrypto, type CryptoSuite, type SdesCrypto, type SkippedCrypto } from './sdp-crypto.js';

export type { Codec } from '../media/media-protocol.js';

export type Direction = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';
/** RTP profiles we run: AVP (RFC 3551), SAVP (RFC 3711), and their feedback variants (RFC 4585, 5124). */
export type RtpProtocol = 'RTP/AVP' | 'RTP/SAVP' | 'RTP/AVPF' | 'RTP/SAVPF';
/** DTLS-SRTP (RFC 5764 §8): recognised, not supported yet. */
export type DtlsProtocol = 'UDP/TLS/RTP/SAVP' | 'UDP/TLS/RTP/SAVPF';
export type MediaProtocol = RtpProtocol | DtlsProtocol;

/** Largest SDP body read, in bytes (default of ParseOptions.maxBytes). */
export const MAX_SDP_BYTES = 16 * 1024;
/** Packetization we answer with when the offer does not ask for another (RFC 3551 §4.5: 20 ms). */
export const DEFAULT_PTIME_MS = 20;
const MIN_PTIME_MS = 10;
const MAX_PTIME_MS = 60;
/** telephone-event events we handle: DTMF 0-15 and flash 16 (RFC 4733 §3.2, media/dtmf.ts). */
const MAX_EVENT = 16;
/** The dynamic PT of telephone-event in our offers (the common choice). */
export const OFFER_TELEPHONE_EVENT_PT = 101;

/** Static payload types (RFC 3551 §6) that audio offers commonly list without an a=rtpmap. */
const STATIC_AUDIO: Readonly<Record<number, { encoding: string; clockRate: number }>> = {
  0: { encoding: 'PCMU', clockRate: 8000 },
  3: { encoding: 'GSM', clockRate: 8000 },
  4: { encoding: 'G723', clockRate: 8000 },
  8: { encoding: 'PCMA', clockRate: 8000 },
  9: { encoding: 'G722', clockRate: 8000 },
  13: { encoding: 'CN', clockRate: 8000 },
  18: { encoding: 'G729', clockRate: 8000 },
};
const STATIC_PT: Readonly<Record<Codec, number>> = { PCMU: 0, PCMA: 8 };

const RTP_PROTOCOLS: readonly string[] = ['RTP/AVP', 'RTP/SAVP', 'RTP/AVPF', 'RTP/SAVPF'];
const DTLS_PROTOCOLS: readonly string[] = ['UDP/TLS/RTP/SAVP', 'UDP/TLS/RTP/SAVPF'];
const DIRECTIONS: readonly string[] = ['sendrecv', 'sendonly', 'recvonly', 'inactive'];

// ---------------------------------------------------------------------------------------------
// Parsed descriptions

export interface ConnectionAddress {
  readonly address: string;
  readonly ipVersion: 4 | 6;
}

/** One entry of an m-line's format list, with what a=rtpmap / a=fmtp say about it. */
export interface PayloadFormat {
  readonly pt: number;
  /** Encoding name as written in a=rtpmap, or the static assignment (RFC 3551 §6); null if unknown. */
  readonly encoding: string | null;
  readonly clockRate: number | null;
  /** Audio channels (a=rtpmap's encoding parameter); 1 when absent (RFC 4566 §6). */
  readonly channels: number;
  readonly fmtp: string | null;
}

/** Every m-line as written (the answer repeats each one, RFC 3264 §6). */
export interface MLine {
  readonly index: number;
  readonly type: string;
  readonly port: number;
  readonly protocol: string;
  /** The format list as written, e.g. `0 8 101` or `webrtc-datachannel`. */
  readonly formats: string;
}

/** What the other side says about one audio m-line with a non-zero port. */
export interface AudioStream {
  /** Position among all m-lines. */
  readonly index: number;
  readonly port: number;
  /** The protocol as written. */
  readonly protocol: string;
  /** The protocol if we recognise it, else null. */
  readonly transport: MediaProtocol | null;
  /** UDP/TLS/RTP/SAVP(F): keyed by DTLS (RFC 5763), which we do not support yet. */
  readonly dtls: boolean;
  /** RTP/SAVP or RTP/SAVPF: keyed by a=crypto (RFC 4568). */
  readonly sdes: boolean;
  /** Media-level c= if present, else session-level (RFC 4566 §5.7). */
  readonly connection: ConnectionAddress;
  /** In the order of the m-line (the offerer's preference, RFC 3264 §5.1). */
  readonly payloads: readonly PayloadFormat[];
  readonly ptime: number | null;
  readonly maxptime: number | null;
  /** Media-level attribute, else session-level, else sendrecv (RFC 4566 §6; RFC 3264 §5.1). */
  readonly direction: Direction;
  /** Usable a=crypto lines in the order written. */
  readonly crypto: readonly SdesCrypto[];
  /** a=crypto lines we cannot use, and why. */
  readonly skippedCrypto: readonly SkippedCrypto[];
  /** a=rtcp (RFC 3605); null when absent (RTCP then goes to port + 1). */
  readonly rtcp: { readonly port: number; readonly connection: ConnectionAddress | null } | null;
  readonly rtcpMux: boolean;
  /** c=0.0.0.0 (RFC 3264 §8.4, and :: from some IPv6 stacks): send no RTP or RTCP there. */
  readonly nullAddress: boolean;
  /** On hold: a null address, sendonly or inactive (RFC 3264 §8.4). */
  readonly onHold: boolean;
  /** a=fingerprint (RFC 8122), media-level else session-level; only DTLS offers carry one. */
  readonly fingerprint: { readonly hash: string; readonly value: string } | null;
}

export interface SdpOrigin {
  readonly username: string;
  readonly sessionId: string;
  /** Kept as text: some stacks use 64-bit values. */
  readonly sessionVersion: string;
  readonly address: string;
}

export interface ParsedOffer {
  readonly origin: SdpOrigin;
  readonly mLines: readonly MLine[];
  /** Audio m-lines with a usable port, in order; never empty in a ParsedOffer. */
  readonly audio: readonly AudioStream[];
}

export type ParseErrorCode = 'empty' | 'too-large' | 'malformed' | 'unsupported-address' | 'no-audio';

export interface ParseError {
  readonly error: ParseErrorCode;
  readonly reason: string;
}

export interface ParseOptions {
  /** Largest body accepted, in bytes. Default MAX_SDP_BYTES (16 KiB). */
  readonly maxBytes?: number;
}

// ---------------------------------------------------------------------------------------------
// Negotiation

export interface LocalMediaOptions {
  /** Codecs we run, in our order of preference (used for our offers; an answer follows the offerer's order). */
  readonly codecs: readonly Codec[];
  /** 'required': plain RTP gets 488; 'optional': either; 'off': RTP/SAVP-only offers get 488. */
  readonly srtp: 'required' | 'optional' | 'off';
  /** SDES suites we run, in our order of preference (our offers); an answer takes the offerer's first line among them (RFC 4568 §7.1.2). */
  readonly suites: readonly CryptoSuite[];
  /** Accept telephone-event (RFC 4733) when offered. */
  readonly telephoneEvent: boolean;
  /** What we want ourselves; default sendrecv. The answer is this ∩ the complement of the offer. */
  readonly direction?: Direction;
  /**
   * Our current sending key (re-INVITE): reused when the chosen suite is the same, so a
   * re-offer does not re-key the stream. Default: a fresh key.
   */
  readonly localKey?: { readonly suite: CryptoSuite; readonly keySalt: Uint8Array } | null;
}

/** The SRTP keys of one negotiated stream. */
export interface SrtpAgreement {
  readonly tag: number;
  readonly suite: CryptoSuite;
  /** Our master key ‖ salt: what we protect with. */
  readonly localKeySalt: Buffer;
  /** The peer's master key ‖ salt: what we unprotect with. */
  readonly remoteKeySalt: Buffer;
}

/** Where the peer receives RTP and RTCP. */
export interface RemoteMedia {
  readonly address: string;
  readonly ipVersion: 4 | 6;
  readonly port: number;
  /** The RTP port when muxed (RFC 5761), else a=rtcp if given (RFC 3605), else port + 1 (RFC 3550 §11). */
  readonly rtcpPort: number;
  readonly rtcpAddress: string;
}

/** What both sides agreed for the audio stream: what the media layer needs. */
export interface NegotiatedMedia {
  readonly protocol: RtpProtocol;
  readonly codec: Codec;
  /** The payload type of the codec. */
  readonly payloadType: number;
  readonly telephoneEvent: { readonly payloadType: number; readonly events: string } | null;
  readonly ptime: number;
  /** Our direction: answering, the one we write in the answer. */
  readonly direction: Direction;
  readonly rtcpMux: boolean;
  readonly remote: RemoteMedia;
  readonly srtp: SrtpAgreement | null;
  /** The peer has put us on hold (RFC 3264 §8.4). */
  readonly onHold: boolean;
}

export interface AnswerPlan extends NegotiatedMedia {
  /** Index of the accepted m-line; every other m-line is answered with port 0. */
  readonly accepted: number;
  readonly mLines: readonly MLine[];
}

export interface Rejection {
  readonly reject: 488;
  readonly reason: string;
}

export interface LocalSdpIdentity {
  /** IPv4 or IPv6 literal, written in o= and c=. */
  readonly address: string;
  readonly port: number;
  readonly sessionId: bigint | number;
  /** RFC 3264 §8: one more than in our previous SDP of this session. */
  readonly sessionVersion: number;
  /** o= username; default `-` (RFC 4566 §5.2). */
  readonly username?: string;
}

// ---------------------------------------------------------------------------------------------
// Offering

export interface OfferOptions {
  /** Default ['PCMU', 'PCMA'] (static PTs 0 and 8). */
  readonly codecs?: readonly Codec[];
  /** Offer telephone-event/8000 with PT 101 and events 0-16. Default true. */
  readonly telephoneEvent?: boolean;
  /** Offer RTP/SAVP with one a=crypto line per suite. Default false (RTP/AVP). */
  readonly srtp?: boolean;
  /** Default AES_CM_128_HMAC_SHA1_80 then AES_CM_128_HMAC_SHA1_32. */
  readonly suites?: readonly CryptoSuite[];
  /** Default sendrecv; sendonly to hold (RFC 3264 §8.4), sendrecv again to resume. */
  readonly direction?: Direction;
  /** Default 20 ms. */
  readonly ptime?: number;
  /** Offer a=rtcp-mux (RFC 5761). Default false. */
  readonly rtcpMux?: boolean;
  /** Our previous offer in this session: its keys are kept (a hold is not a re-key). */
  readonly previous?: LocalOffer;
}

export interface LocalOffer {
  readonly sdp: string;
  readonly sessionVersion: number;
  readonly protocol: 'RTP/AVP' | 'RTP/SAVP';
  readonly codecs: readonly { readonly codec: Codec; readonly payloadType: number }[];
  readonly telephoneEventPt: number | null;
  readonly direction: Direction;
  readonly ptime: number;
  readonly rtcpMux: boolean;
  readonly crypto: readonly { readonly tag: number; readonly suite: CryptoSuite; readonly keySalt: Buffer }[];
}

export type AnswerErrorCode = ParseErrorCode | 'rejected' | 'protocol-mismatch' | 'no-codec' | 'no-crypto';

export interface AnswerError {
  readonly error: AnswerErrorCode;
  readonly reason: string;
}

// ---------------------------------------------------------------------------------------------
// Reading

interface Section {
  connection: ConnectionAddress | null;
  /** c= was present but not an IP literal we can send to; the reason why. */
  badConnection: string | null;
  crypto: string[];
}

interface Description {
  readonly origin: SdpOrigin;
  readonly mLines: readonly MLine[];
  readonly audio: readonly AudioStream[];
}

const fail = (error: ParseErrorCode, reason: string): ParseError => ({ error, reason });

/** A JS number from sdp-transform's `number | string | undefined`. */
function num(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string' && /^\d+(\.\d+)?$/.test(v.trim())) return Number(v);
  return null;
}

function int(v: unknown): number | null {
  const n = num(v);
  return n !== null && Number.isInteger(n) ? n : null;
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : null;
}

function isDirection(v: unknown): v is Direction {
  return typeof v === 'string' && DIRECTIONS.includes(v);
}

/** `c=` value: `IN IP4 192.0.2.1` (RFC 4566 §5.7). */
function readConnection(value: string, section: Section): string | null {
  const t = value.trim().split(/\s+/);
  if (t.length !== 3 || t[0] !== 'IN' || (t[1] !== 'IP4' && t[1] !== 'IP6')) return `c=${value} is not IN IP4/IP6 <address>`;
  const address = t[2]!;
  const ipVersion = t[1] === 'IP4' ? 4 : 6;
  section.connection = null;
  section.badConnection = null;
  if (address.includes('/')) section.badConnection = 'multicast connection addresses are not supported';
  else if (ipVersion === 4 ? isIPv4(address) : isIPv6(address)) section.connection = { address, ipVersion };
  else if (isIPv4(address) || isIPv6(address)) return `c= says IP${ipVersion} but carries an IPv${ipVersion === 4 ? 6 : 4} address`;
  else section.badConnection = 'connection addresses must be IP literals (FQDNs are not supported)';
  return null;
}

/** `o=<username> <sess-id> <sess-version> IN IP4|IP6 <address>` (RFC 4566 §5.2). */
function readOrigin(value: string): SdpOrigin | null {
  const t = value.trim().split(/\s+/);
  if (t.length !== 6 || t[3] !== 'IN' || (t[4] !== 'IP4' && t[4] !== 'IP6')) return null;
  if (!/^\d{1,20}$/.test(t[1]!) || !/^\d{1,20}$/.test(t[2]!)) return null;
  return { username: t[0]!, sessionId: t[1]!, sessionVersion: t[2]!, address: t[5]! };
}

/** `m=<media> <port>[/<number of ports>] <proto> <fmt> ...` (RFC 4566 §5.14). */
function readMLine(index: number, value: string): MLine | null {
  const t = value.trim().split(/\s+/);
  if (t.length < 4) return null;
  const [type, portToken, protocol] = t as [string, string, string];
  const pm = /^(\d{1,5})(?:\/(\d{1,5}))?$/.exec(portToken);
  const port = pm ? Number(pm[1]) : NaN;
  if (!/^[a-z][a-z0-9_-]{0,31}$/i.test(type) || !(port >= 0 && port <= 65535)) return null;
  if (!/^[A-Za-z0-9/_.-]{1,64}$/.test(protocol)) return null;
  return { index, type: type.toLowerCase(), port, protocol, formats: t.slice(3).join(' ') };
}

function isNullAddress(c: ConnectionAddress): boolean {
  return c.address === '0.0.0.0' || (c.ipVersion === 6 && /^[0:]+$/.test(c.address));
}

/**
 * Shared reader for offers and answers: the structure checks and every audio m-line with a
 * non-zero port. Never throws.
 */
function readDescription(sdp: unknown, opts: ParseOptions | undefined): Description | ParseError {
  const maxBytes = opts?.maxBytes ?? MAX_SDP_BYTES;
  const tooLarge = fail('too-large', `the SDP body is over ${maxBytes} bytes`);
  let buf: Buffer;
  if (typeof sdp === 'string') {
    // A string has at least as many UTF-8 bytes as UTF-16 units: refuse a long one before copying it.
    if (sdp.length > maxBytes) return tooLarge;
    buf = Buffer.from(sdp, 'utf8');
  } else if (Buffer.isBuffer(sdp)) {
    buf = sdp;
  } else {
    return fail('malformed', 'the SDP body is neither text nor bytes');
  }
  if (buf.length > maxBytes) return tooLarge;
  const text = buf.toString('utf8');
  if (text.trim() === '') return fail('empty', 'the SDP body is empty');

  // RFC 4566 §5: `<type>=<value>` lines ended by CRLF; a lone LF is tolerated, as most stacks do.
  const lines = text.split(/\r\n|\r|\n/).filter((l) => l.trim() !== '');
  if (lines[0] !== 'v=0') return fail('malformed', 'the SDP does not start with v=0');
  let origin: SdpOrigin | null = null;
  const mLines: MLine[] = [];
  const session: Section = { connection: null, badConnection: null, crypto: [] };
  const media: Section[] = [];
  let current = session;
  for (const line of lines) {
    // eslint-disable-next-line no-control-regex -- control characters are what this rejects
    if (!/^[a-z]=/.test(line) || /[\x00-\x08\x0b-\x1f\x7f]/.test(line)) return fail('malformed', 'the SDP has a line that is not <type>=<value>');
    const type = line[0];
    const value = line.slice(2);
    if (type === 'o' && current === session) {
      if (origin !== null) return fail('malformed', 'the SDP has more than one o= line');
      origin = readOrigin(value);
      if (origin === null) return fail('malformed', 'the o= line is not valid');
    } else if (type === 'm') {
      const m = readMLine(mLines.length, value);
      if (m === null) return fail('malformed', `m-line ${mLines.length} is not valid`);
      mLines.push(m);
      current = { connection: null, badConnection: null, crypto: [] };
      media.push(current);
    } else if (type === 'c') {
      const bad = readConnection(value, current);
      if (bad !== null) return fail('malformed', bad);
    } else if (type === 'a' && value.startsWith('crypto:') && current !== session) {
      current.crypto.push(value.slice('crypto:'.length));
    }
  }
  if (origin === null) return fail('malformed', 'the SDP has no o= line');

  let parsed: sdpTransform.SessionDescription;
  try {
    parsed = sdpTransform.parse(text);
  } catch (cause) {
    // sdp-transform does not throw on text that got this far; if it ever does, it is a bad body.
    return fail('malformed', `the SDP does not parse (${cause instanceof Error ? cause.name : 'error'})`);
  }
  const parsedMedia: unknown[] = Array.isArray(parsed.media) ? parsed.media : [];
  if (parsedMedia.length !== mLines.length) return fail('malformed', 'the SDP m-lines do not parse');

  const sessionDirection = isDirection(parsed.direction) ? parsed.direction : 'sendrecv';
  const sessionFingerprint = readFingerprint(parsed.fingerprint);
  const audio: AudioStream[] = [];
  for (const m of mLines) {
    if (m.type !== 'audio' || m.port === 0) continue;
    const section = media[m.index]!;
    const pm = parsedMedia[m.index] as sdpTransform.MediaDescription;
    const connection = section.connection ?? (section.badConnection === null ? session.connection : null);
    const bad = section.badConnection ?? (section.connection === null ? session.badConnection : null);
    if (bad !== null) return fail('unsupported-address', bad);
    if (connection === null) return fail('malformed', `audio m-line ${m.index} has no c= line, nor has the session (RFC 4566 §5.7)`);
    audio.push(readAudio(m, pm, section, connection, sessionDirection, sessionFingerprint));
  }
  return { origin, mLines, audio };
}

function readFingerprint(v: unknown): AudioStream['fingerprint'] {
  if (typeof v !== 'object' || v === null) return null;
  const f = v as { type?: unknown; hash?: unknown };
  const hash = str(f.type);
  const value = str(f.hash);
  return hash !== null && value !== null ? { hash, value } : null;
}

function readAudio(m: MLine, pm: sdpTransform.MediaDescription, section: Section, connection: ConnectionAddress, sessionDirection: Direction, sessionFingerprint: AudioStream['fingerprint']): AudioStream {
  const rtpmaps = new Map<number, { encoding: string; clockRate: number | null; channels: number }>();
  for (const r of Array.isArray(pm.rtp) ? (pm.rtp as unknown[]) : []) {
    const e = r as { payload?: unknown; codec?: unknown; rate?: unknown; encoding?: unknown };
    const pt = int(e.payload);
    const encoding = str(e.codec);
    if (pt === null || encoding === null || encoding === '' || rtpmaps.has(pt)) continue;
    rtpmaps.set(pt, { encoding, clockRate: int(e.rate), channels: int(e.encoding) ?? 1 });
  }
  const fmtps = new Map<number, string>();
  for (const f of Array.isArray(pm.fmtp) ? (pm.fmtp as unknown[]) : []) {
    const e = f as { payload?: unknown; config?: unknown };
    const pt = int(e.payload);
    const config = str(e.config);
    if (pt !== null && config !== null && !fmtps.has(pt)) fmtps.set(pt, config.trim());
  }
  const payloads: PayloadFormat[] = [];
  for (const token of m.formats.split(' ')) {
    if (!/^\d{1,3}$/.test(token)) continue;
    const pt = Number(token);
    if (pt > 127 || payloads.some((p) => p.pt === pt)) continue;
    const map = rtpmaps.get(pt);
    const fixed = pt < 96 ? STATIC_AUDIO[pt] : undefined;
    payloads.push({
      pt,
      encoding: map?.encoding ?? fixed?.encoding ?? null,
      clockRate: map ? map.clockRate : (fixed?.clockRate ?? null),
      channels: map?.channels ?? 1,
      fmtp: fmtps.get(pt) ?? null,
    });
  }

  const crypto: SdesCrypto[] = [];
  const skippedCrypto: SkippedCrypto[] = [];
  for (const value of section.crypto) {
    const r = parseCrypto(value);
    if (r.ok) crypto.push(r.crypto);
    else skippedCrypto.push({ tag: r.tag, suite: r.suite, reason: r.reason });
  }

  let rtcp: AudioStream['rtcp'] = null;
  if (typeof pm.rtcp === 'object' && pm.rtcp !== null) {
    const port = int(pm.rtcp.port);
    const address = str(pm.rtcp.address);
    const ipVer = int(pm.rtcp.ipVer);
    if (port !== null && port > 0 && port <= 65535) {
      const c: ConnectionAddress | null =
        address !== null && ipVer === 4 && isIPv4(address) ? { address, ipVersion: 4 } : address !== null && ipVer === 6 && isIPv6(address) ? { address, ipVersion: 6 } : null;
      rtcp = { port, connection: c };
    }
  }

  const ptime = num(pm.ptime);
  const maxptime = num(pm.maxptime);
  const direction = isDirection(pm.direction) ? pm.direction : sessionDirection;
  const nullAddress = isNullAddress(connection);
  const protocol = m.protocol.toUpperCase();
  const transport = RTP_PROTOCOLS.includes(protocol) || DTLS_PROTOCOLS.includes(protocol) ? (protocol as MediaProtocol) : null;
  return {
    index: m.index,
    port: m.port,
    protocol: m.protocol,
    transport,
    dtls: transport !== null && DTLS_PROTOCOLS.includes(transport),
    sdes: transport === 'RTP/SAVP' || transport === 'RTP/SAVPF',
    connection,
    payloads,
    ptime: ptime !== null && ptime > 0 ? ptime : null,
    maxptime: maxptime !== null && maxptime > 0 ? maxptime : null,
    direction,
    crypto,
    skippedCrypto,
    rtcp,
    rtcpMux: pm.rtcpMux !== undefined,
    nullAddress,
    onHold: nullAddress || direction === 'sendonly' || direction === 'inactive',
    fingerprint: readFingerprint(pm.fingerprint) ?? sessionFingerprint,
  };
}

/**
 * Reads an SDP offer (RFC 3264 §5). Never throws: what we cannot read comes back as
 * `{ error, reason }` (empty, over 16 KiB, malformed, a connection address we cannot send to,
 * or no audio m-line with a non-zero port).
 */
export function parseOffer(sdp: string | Buffer, opts?: ParseOptions): ParsedOffer | ParseError {
  const d = readDescription(sdp, opts);
  if ('error' in d) return d;
  if (d.audio.length === 0) return fail('no-audio', 'the offer has no audio stream (an m=audio line with a non-zero port)');
  return d;
}

export function isParseError(v: ParsedOffer | ParseError): v is ParseError {
  return 'error' in v;
}

// ---------------------------------------------------------------------------------------------
// Negotiation

interface Flags {
  send: boolean;
  recv: boolean;
}

const flagsOf = (d: Direction): Flags => ({ send: d === 'sendrecv' || d === 'sendonly', recv: d === 'sendrecv' || d === 'recvonly' });
const directionOf = (f: Flags): Direction => (f.send ? (f.recv ? 'sendrecv' : 'sendonly') : f.recv ? 'recvonly' : 'inactive');

/**
 * Our direction given theirs (RFC 3264 §6.1): we send only if they receive, and receive only if
 * they send, limited by what we want. A null connection address means they receive nothing
 * (RFC 3264 §8.4: neither RTP nor RTCP is sent to it).
 */
function complement(theirs: Direction, nullAddress: boolean, ours: Direction): Direction {
  const t = flagsOf(theirs);
  const o = flagsOf(ours);
  return directionOf({ send: o.send && t.recv && !nullAddress, recv: o.recv && t.send });
}

const rejection = (reason: string): Rejection => ({ reject: 488, reason });

function codecOf(p: PayloadFormat): Codec | null {
  const name = p.encoding?.toUpperCase();
  if ((name !== 'PCMU' && name !== 'PCMA') || p.clockRate !== 8000 || p.channels !== 1) return null;
  return name;
}

function isTelephoneEvent(p: PayloadFormat): boolean {
  return p.encoding?.toLowerCase() === 'telephone-event' && p.clockRate === 8000;
}

/**
 * The events of a telephone-event fmtp (`0-15`, `0-16`, `0-11,16`) we also handle, as a range
 * list; RFC 4733 §7.1.1: no fmtp means 0-15. Null when nothing is left.
 */
function agreedEvents(fmtp: string | null): string | null {
  const offered = new Set<number>();
  const spec = fmtp === null || fmtp.trim() === '' ? '0-15' : fmtp.trim();
  for (const part of spec.split(',')) {
    const m = /^\s*(\d{1,9})(?:\s*-\s*(\d{1,9}))?\s*$/.exec(part);
    if (!m) continue;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    for (let e = lo; e <= Math.min(hi, MAX_EVENT); e++) offered.add(e);
  }
  const ranges: string[] = [];
  for (let e = 0; e <= MAX_EVENT; e++) {
    if (!offered.has(e) || offered.has(e - 1)) continue;
    let end = e;
    while (offered.has(end + 1)) end++;
    ranges.push(end === e ? `${e}` : `${e}-${end}`);
  }
  return ranges.length > 0 ? ranges.join(',') : null;
}

/** a=ptime we answer with: the offer's if it is whole and within 10..60 ms, else 20 capped by maxptime. */
function agreedPtime(ptime: number | null, maxptime: number | null): number {
  if (ptime !== null && Number.isInteger(ptime) && ptime >= MIN_PTIME_MS && ptime <= MAX_PTIME_MS) return ptime;
  if (maxptime !== null && Number.isInteger(maxptime) && maxptime >= MIN_PTIME_MS && maxptime < DEFAULT_PTIME_MS) return maxptime;
  return DEFAULT_PTIME_MS;
}

function remoteOf(s: AudioStream, rtcpMux: boolean): RemoteMedia {
  // Muxed, RTCP shares the RTP port whatever a=rtcp says (RFC 5761 §5.1.3; WebRTC writes a=rtcp:9).
  const rtcp = rtcpMux ? null : s.rtcp;
  return {
    address: s.connection.address,
    ipVersion: s.connection.ipVersion,
    port: s.port,
    rtcpPort: rtcp?.port ?? (rtcpMux ? s.port : s.port + 1),
    rtcpAddress: rtcp?.connection?.address ?? s.connection.address,
  };
}

/**
 * Applies our policy to an offer (RFC 3264 §6). The first audio m-line is the one we take;
 * every other m-line is refused with port 0 in the answer. Returns the whole plan, our SRTP key
 * included, or a 488 with a reason fit for a Warning header.
 */
export function negotiate(offer: ParsedOffer, local: LocalMediaOptions): AnswerPlan | Rejection {
  const s = offer.audio[0];
  if (s === undefined) return rejection('the offer has no audio stream');

  if (s.dtls) return rejection(`DTLS-SRTP (${s.protocol}) is not supported yet: offer RTP/SAVP with a=crypto (SDES) or RTP/AVP`);
  if (s.transport === null) return rejection(`media transport ${s.protocol} is not supported (RTP/AVP, RTP/SAVP, RTP/AVPF or RTP/SAVPF)`);
  const protocol = s.transport as RtpProtocol;
  if (s.sdes && local.srtp === 'off') return rejection('SRTP is switched off here: offer RTP/AVP');
  if (!s.sdes && local.srtp === 'required') return rejection('SRTP is required here: offer RTP/SAVP with a=crypto (RFC 4568)');

  let srtp: SrtpAgreement | null = null;
  if (s.sdes) {
    // RFC 4568 §7.1.2: the answerer picks one offered line it supports, in the offerer's order.
    const chosen = s.crypto.find((c) => local.suites.includes(c.suite));
    if (chosen === undefined) {
      const why = s.skippedCrypto.length > 0 ? ` (${s.skippedCrypto.map((c) => c.reason).join('; ')})` : '';
      return rejection(`no usable a=crypto line: we support ${local.suites.join(', ') || 'no suite'}${why}`.slice(0, 300));
    }
    const previous = local.localKey;
    const reuse = previous && previous.suite === chosen.suite && previous.keySalt.length === keySaltLength(chosen.suite) ? previous.keySalt : null;
    srtp = {
      tag: chosen.tag,
      suite: chosen.suite,
      localKeySalt: reuse ? Buffer.from(reuse) : generateKeySalt(chosen.suite),
      remoteKeySalt: chosen.keySalt,
    };
  }

  // RFC 3264 §6.1: the offerer's order is its preference; take the first format we run.
  let chosen: { codec: Codec; pt: number } | null = null;
  for (const p of s.payloads) {
    const codec = codecOf(p);
    if (codec !== null && local.codecs.includes(codec)) {
      chosen = { codec, pt: p.pt };
      break;
    }
  }
  if (chosen === null) {
    const offered = [...new Set(s.payloads.map((p) => p.encoding ?? `PT ${p.pt}`))].join(', ').slice(0, 120);
    return rejection(`no offered codec is supported (offered: ${offered || 'none'}; we take ${local.codecs.join(', ') || 'none'})`);
  }

  let telephoneEvent: NegotiatedMedia['telephoneEvent'] = null;
  if (local.telephoneEvent) {
    const te = s.payloads.find(isTelephoneEvent);
    const events = te ? agreedEvents(te.fmtp) : null;
    if (te && events !== null) telephoneEvent = { payloadType: te.pt, events };
  }

  const rtcpMux = s.rtcpMux;
  return {
    accepted: s.index,
    mLines: offer.mLines,
    protocol,
    codec: chosen.codec,
    payloadType: chosen.pt,
    telephoneEvent,
    ptime: agreedPtime(s.ptime, s.maxptime),
    direction: complement(s.direction, s.nullAddress, local.direction ?? 'sendrecv'),
    rtcpMux,
    remote: remoteOf(s, rtcpMux),
    srtp,
    onHold: s.onHold,
  };
}

export function isRejection(v: AnswerPlan | Rejection): v is Rejection {
  return 'reject' in v;
}

// ---------------------------------------------------------------------------------------------
// Writing

function ipVersionOf(address: string): 4 | 6 {
  if (isIPv4(address)) return 4;
  if (isIPv6(address)) return 6;
  // Local addresses come from validated config; a bad one here is a programming fault.
  throw new TollgateError('INTERNAL', `local media address ${JSON.stringify(address)} is not an IP literal`);
}

function sessionOf(local: LocalSdpIdentity, media: sdpTransform.MediaDescription[]): sdpTransform.SessionDescription {
  if (!Number.isInteger(local.port) || local.port < 1 || local.port > 65535) throw new TollgateError('INTERNAL', `local media port ${local.port} is not valid`);
  const ipVer = ipVersionOf(local.address);
  return {
    version: 0,
    origin: {
      username: local.username !== undefined && /^\S+$/.test(local.username) ? local.username : '-',
      sessionId: String(local.sessionId),
      sessionVersion: local.sessionVersion,
      netType: 'IN',
      ipVer,
      address: local.address,
    },
    name: '-',
    connection: { version: ipVer, ip: local.address },
    timing: { start: 0, stop: 0 },
    media,
  };
}

/**
 * Writes the answer an AnswerPlan describes (RFC 3264 §6): as many m-lines as the offer, the
 * accepted one with our port, the chosen codec, telephone-event, ptime, our direction, our
 * crypto line under the offer's tag and rtcp-mux if agreed; the others with port 0 and their
 * format list unchanged. CRLF line endings.
 */
export function buildAnswer(plan: AnswerPlan, local: LocalSdpIdentity): string {
  const media = plan.mLines.map((m): sdpTransform.MediaDescription => {
    if (m.index !== plan.accepted) return { type: m.type, port: 0, protocol: m.protocol, payloads: m.formats, rtp: [], fmtp: [] };
    const pts = [plan.payloadType, ...(plan.telephoneEvent ? [plan.telephoneEvent.payloadType] : [])];
    const audio: sdpTransform.MediaDescription = {
      type: 'audio',
      port: local.port,
      protocol: plan.protocol,
      payloads: pts.join(' '),
      rtp: [{ payload: plan.payloadType, codec: plan.codec, rate: 8000 }],
      fmtp: [],
      ptime: plan.ptime,
      direction: plan.direction,
    };
    if (plan.telephoneEvent) {
      audio.rtp.push({ payload: plan.telephoneEvent.payloadType, codec: 'telephone-event', rate: 8000 });
      audio.fmtp.push({ payload: plan.telephoneEvent.payloadType, config: plan.telephoneEvent.events });
    }
    if (plan.srtp) audio.crypto = [cryptoLine(plan.srtp.tag, plan.srtp.suite, plan.srtp.localKeySalt)];
    if (plan.rtcpMux) audio.rtcpMux = 'rtcp-mux';
    return audio;
  });
  return sdpTransform.write(sessionOf(local, media));
}

function cryptoLine(tag: number, suite: CryptoSuite, keySalt: Uint8Array): NonNullable<sdpTransform.MediaDescription['crypto']>[number] {
  const [, , config] = formatCrypto(tag, suite, keySalt).split(' ') as [string, string, string];
  return { id: tag, suite, config };
}

/**
 * Our offer (RFC 3264 §5), for outbound calls and for our re-offers: hold is the same call with
 * direction 'sendonly', resume with 'sendrecv', each time with sessionVersion one higher
 * (RFC 3264 §8). With `previous`, the SRTP keys of that offer are kept.
 */
export function buildOffer(local: LocalSdpIdentity, options: OfferOptions = {}): LocalOffer {
  const codecs = [...new Set(options.codecs ?? (['PCMU', 'PCMA'] as const))];
  if (codecs.length === 0) throw new TollgateError('INTERNAL', 'an offer needs at least one codec');
  const prev = options.previous;
  if (prev && !(local.sessionVersion > prev.sessionVersion)) {
    throw new TollgateError('INTERNAL', `a re-offer needs a higher session version than ${prev.sessionVersion} (RFC 3264 §8)`);
  }
  const ptime = options.ptime ?? DEFAULT_PTIME_MS;
  if (!Number.isInteger(ptime) || ptime < MIN_PTIME_MS || ptime > MAX_PTIME_MS) throw new TollgateError('INTERNAL', `ptime ${ptime} is outside 10..60 ms`);
  const direction = options.direction ?? 'sendrecv';
  const rtcpMux = options.rtcpMux ?? false;
  const srtp = options.srtp ?? false;
  const suites = [...new Set(options.suites ?? (['AES_CM_128_HMAC_SHA1_80', 'AES_CM_128_HMAC_SHA1_32'] as const))];
  if (srtp && suites.length === 0) throw new TollgateError('INTERNAL', 'an SRTP offer needs at least one crypto suite');

  const offered = codecs.map((codec) => ({ codec, payloadType: STATIC_PT[codec] }));
  const telephoneEventPt = (options.telephoneEvent ?? true) ? OFFER_TELEPHONE_EVENT_PT : null;
  const crypto = srtp
    ? suites.map((suite, i) => ({
        tag: i + 1,
        suite,
        keySalt: prev?.crypto.find((c) => c.suite === suite)?.keySalt ?? generateKeySalt(suite),
      }))
    : [];
  const protocol = srtp ? 'RTP/SAVP' : 'RTP/AVP';

  const audio: sdpTransform.MediaDescription = {
    type: 'audio',
    port: local.port,
    protocol,
    payloads: [...offered.map((c) => c.payloadType), ...(telephoneEventPt !== null ? [telephoneEventPt] : [])].join(' '),
    rtp: offered.map((c) => ({ payload: c.payloadType, codec: c.codec, rate: 8000 })),
    fmtp: [],
    ptime,
    direction,
  };
  if (telephoneEventPt !== null) {
    audio.rtp.push({ payload: telephoneEventPt, codec: 'telephone-event', rate: 8000 });
    audio.fmtp.push({ payload: telephoneEventPt, config: `0-${MAX_EVENT}` });
  }
  if (crypto.length > 0) audio.crypto = crypto.map((c) => cryptoLine(c.tag, c.suite, c.keySalt));
  if (rtcpMux) audio.rtcpMux = 'rtcp-mux';

  return {
    sdp: sdpTransform.write(sessionOf(local, [audio])),
    sessionVersion: local.sessionVersion,
    protocol,
    codecs: offered,
    telephoneEventPt,
    direction,
    ptime,
    rtcpMux,
    crypto,
  };
}

/**
 * Reads the answer to one of our offers (RFC 3264 §6, §7): the codec and telephone-event PT to
 * send with (the answer's numbers: an SDP lists what its writer receives), where to send, and
 * the peer's SRTP key under one of our tags. Never throws.
 */
export function parseAnswer(answerSdp: string | Buffer, ourOffer: LocalOffer, opts?: ParseOptions): NegotiatedMedia | AnswerError {
  const d = readDescription(answerSdp, opts);
  if ('error' in d) return d;
  // Our offers have one m-line, so the answer's first m-line is its answer (RFC 3264 §6).
  const first = d.mLines[0];
  if (first === undefined || first.type !== 'audio') return { error: 'no-audio', reason: 'the answer has no audio m-line' };
  const s = d.audio[0];
  if (first.port === 0 || s === undefined) return { error: 'rejected', reason: 'the answer refused the audio stream (port 0)' };
  if (s.protocol.toUpperCase() !== ourOffer.protocol) return { error: 'protocol-mismatch', reason: `the answer uses ${s.protocol}, we offered ${ourOffer.protocol}` };

  let chosen: { codec: Codec; pt: number } | null = null;
  for (const p of s.payloads) {
    const codec = codecOf(p);
    if (codec !== null && ourOffer.codecs.some((c) => c.codec === codec)) {
      chosen = { codec, pt: p.pt };
      break;
    }
  }
  if (chosen === null) return { error: 'no-codec', reason: 'the answer has none of the codecs we offered' };

  let srtp: SrtpAgreement | null = null;
  if (ourOffer.protocol === 'RTP/SAVP') {
    // RFC 4568 §7.1.3: the answer carries one line, under the tag of the offered line it took.
    for (const c of s.crypto) {
      const ours = ourOffer.crypto.find((o) => o.tag === c.tag && o.suite === c.suite);
      if (ours) {
        srtp = { tag: c.tag, suite: c.suite, localKeySalt: ours.keySalt, remoteKeySalt: c.keySalt };
        break;
      }
    }
    if (srtp === null) {
      const why = s.skippedCrypto.length > 0 ? ` (${s.skippedCrypto.map((c) => c.reason).join('; ')})` : '';
      return { error: 'no-crypto', reason: `the answer has no usable a=crypto line for a suite and tag we offered${why}`.slice(0, 300) };
    }
  }

  const te = ourOffer.telephoneEventPt !== null ? s.payloads.find(isTelephoneEvent) : undefined;
  const events = te ? agreedEvents(te.fmtp) : null;
  const rtcpMux = ourOffer.rtcpMux && s.rtcpMux;
  const ptime = s.ptime !== null && Number.isInteger(s.ptime) && s.ptime >= MIN_PTIME_MS && s.ptime <= MAX_PTIME_MS ? s.ptime : ourOffer.ptime;
  return {
    protocol: ourOffer.protocol,
    codec: chosen.codec,
    payloadType: chosen.pt,
    telephoneEvent: te && events !== null ? { payloadType: te.pt, events } : null,
    ptime,
    direction: complement(s.direction, s.nullAddress, ourOffer.direction),
    rtcpMux,
    remote: remoteOf(s, rtcpMux),
    srtp,
    onHold: s.onHold,
  };
}

export function isAnswerError(v: NegotiatedMedia | AnswerError): v is AnswerError {
  return 'error' in v;
}
