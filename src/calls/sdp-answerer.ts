import { randomBytes, randomInt } from 'node:crypto';
import { isIPv6 } from 'node:net';
import * as sdpTransform from 'sdp-transform';
import type { Codec, MediaSpec, SrtpSuite } from '../media/media-protocol.js';

/** What stays the same across offers in one call: our origin line, port and SRTP key. */
export interface SdpSession {
  readonly address: string;
  readonly port: number;
  readonly sessionId: number;
  version: number;
  /** Our sending key per suite, kept across re-INVITEs unless the suite changes. */
  localKey: { suite: SrtpSuite; keySalt: string } | null;
}

export interface AnswerOptions {
  address: string;
  port: number;
  codecs: readonly Codec[];
  srtp: 'required' | 'optional' | 'off';
}

export type AnswerResult =
  | { readonly ok: true; readonly sdp: string; readonly spec: Omit<MediaSpec, 'app'>; readonly session: SdpSession }
  | { readonly ok: false; readonly reason: string };

const STATIC: Record<number, Codec> = { 0: 'PCMU', 8: 'PCMA' };
const SUITES: readonly SrtpSuite[] = ['AES_CM_128_HMAC_SHA1_80', 'AES_CM_128_HMAC_SHA1_32'];
const MAX_SDP = 16 * 1024;

/**
 * RFC 3264 answerer for one audio stream (RFC 4566 SDP, RFC 4568 SDES-SRTP): takes the first
 * offered codec we support (the offerer's order, §6.1), keeps telephone-event (RFC 4733),
 * answers the complementary direction, and for RTP/SAVP picks the first crypto suite we support
 * and answers with a fresh key of ours under the same tag. Other m-lines are refused with port
 * 0. Never throws: an offer we cannot accept gives a reason for a 488.
 */
export function answerOffer(offer: Buffer | string, opts: AnswerOptions, previous: SdpSession | null): AnswerResult {
  const text = typeof offer === 'string' ? offer : offer.toString('utf8');
  if (text.length === 0 || text.length > MAX_SDP) return { ok: false, reason: 'the SDP is empty or too large' };
  let parsed: sdpTransform.SessionDescription;
  try {
    parsed = sdpTransform.parse(text);
  } catch {
    return { ok: false, reason: 'the SDP does not parse' };
  }
  const media = parsed.media ?? [];
  const audioIndex = media.findIndex((m) => m.type === 'audio' && typeof m.port === 'number' && m.port > 0);
  if (audioIndex < 0) return { ok: false, reason: 'no audio stream in the offer' };
  const m = media[audioIndex]!;
  const proto = String(m.protocol ?? '');
  if (proto !== 'RTP/AVP' && proto !== 'RTP/SAVP') return { ok: false, reason: `transport ${proto} is not supported (RTP/AVP or RTP/SAVP with SDES)` };
  const secure = proto === 'RTP/SAVP';
  if (secure && opts.srtp === 'off') return { ok: false, reason: 'SRTP is switched off for this number' };
  if (!secure && opts.srtp === 'required') return { ok: false, reason: 'SRTP (RTP/SAVP with a=crypto) is required for this number' };

  const address = (m.connection?.ip ?? parsed.connection?.ip ?? '').trim();
  if (!address) return { ok: false, reason: 'the offer has no connection address' };
  const rtpmaps = new Map<number, { codec: string; rate: number }>();
  for (const r of m.rtp ?? []) rtpmaps.set(r.payload, { codec: r.codec.toUpperCase(), rate: r.rate ?? 8000 });
  const pts = String(m.payloads ?? '').trim().split(/\s+/).map(Number).filter((n) => Number.isInteger(n) && n >= 0 && n < 128);
  let chosen: { pt: number; codec: Codec } | null = null;
  for (const pt of pts) {
    const name = rtpmaps.get(pt)?.codec ?? STATIC[pt];
    if ((name === 'PCMU' || name === 'PCMA') && opts.codecs.includes(name) && (rtpmaps.get(pt)?.rate ?? 8000) === 8000) {
      chosen = { pt, codec: name };
      break;
    }
  }
  if (!chosen) return { ok: false, reason: `none of the offered codecs is supported (we take ${opts.codecs.join(', ')})` };
  const te = pts.find((pt) => rtpmaps.get(pt)?.codec === 'TELEPHONE-EVENT' && rtpmaps.get(pt)?.rate === 8000) ?? null;

  let remoteKey: { tag: number; suite: SrtpSuite; keySalt: string } | null = null;
  if (secure) {
    for (const c of m.crypto ?? []) {
      const suite = c.suite as SrtpSuite;
      if (!SUITES.includes(suite)) continue;
      const inline = /^inline:([A-Za-z0-9+/=]+)(\|[^|]*)?(\|[^|]*)?$/.exec(c.config.trim());
      if (!inline) continue;
      if ((inline[2] ?? '').includes(':') || (inline[3] ?? '').includes(':')) continue; // MKI: not supported
      const raw = Buffer.from(inline[1]!, 'base64');
      if (raw.length !== 30) continue;
      remoteKey = { tag: c.id, suite, keySalt: raw.toString('base64') };
      break;
    }
    if (!remoteKey) return { ok: false, reason: 'no supported a=crypto suite (AES_CM_128_HMAC_SHA1_80 or _32) with a valid inline key' };
  }

  const ptimeOffer = Number(m.ptime ?? 20);
  const ptimeMs = [20, 30, 40, 60].includes(ptimeOffer) ? ptimeOffer : 20;
  const dir = (m.direction ?? parsed.direction ?? 'sendrecv');
  const holdByAddress = address === '0.0.0.0' || address === '::';
  const ourDir: MediaSpec['direction'] = holdByAddress
    ? 'inactive'
    : dir === 'sendonly' ? 'recvonly' : dir === 'recvonly' ? 'sendonly' : dir === 'inactive' ? 'inactive' : 'sendrecv';
  const rtcpMux = m.rtcpMux !== undefined;
  const rtcpPort = typeof m.rtcp?.port === 'number' ? m.rtcp.port : m.port + 1;

  const session: SdpSession = previous
    ? { ...previous, version: previous.version + 1 }
    : { address: opts.address, port: opts.port, sessionId: randomInt(1, 2 ** 31), version: 1, localKey: null };
  if (remoteKey && session.localKey?.suite !== remoteKey.suite) session.localKey = { suite: remoteKey.suite, keySalt: randomBytes(30).toString('base64') };
  if (!remoteKey) session.localKey = null;

  const ipVer = isIPv6(session.address) ? 6 : 4;
  const lines: string[] = [
    'v=0',
    `o=tollgate ${session.sessionId} ${session.version} IN IP${ipVer} ${session.address}`,
    's=tollgate',
    `c=IN IP${ipVer} ${session.address}`,
    't=0 0',
  ];
  media.forEach((mm, i) => {
    if (i !== audioIndex) {
      lines.push(`m=${mm.type} 0 ${mm.protocol} ${String(mm.payloads ?? '0')}`);
      return;
    }
    lines.push(`m=audio ${session.port} ${proto} ${chosen.pt}${te !== null ? ` ${te}` : ''}`);
    lines.push(`a=rtpmap:${chosen.pt} ${chosen.codec}/8000`);
    if (te !== null) {
      lines.push(`a=rtpmap:${te} telephone-event/8000`, `a=fmtp:${te} 0-15`);
    }
    lines.push(`a=ptime:${ptimeMs}`, `a=${ourDir}`);
    if (rtcpMux) lines.push('a=rtcp-mux');
    if (remoteKey && session.localKey) lines.push(`a=crypto:${remoteKey.tag} ${remoteKey.suite} inline:${session.localKey.keySalt}`);
  });
  const sdp = lines.join('\r\n') + '\r\n';

  const spec: Omit<MediaSpec, 'app'> = {
    codec: chosen.codec,
    payloadType: chosen.pt,
    telephoneEventPt: te,
    ptimeMs,
    remote: { address, port: m.port, rtcpPort },
    rtcpMux,
    srtp: remoteKey && session.localKey ? { send: { suite: session.localKey.suite, keySalt: session.localKey.keySalt }, recv: { suite: remoteKey.suite, keySalt: remoteKey.keySalt } } : null,
    direction: ourDir,
  };
  return { ok: true, sdp, spec, session };
}
