/**
 * The two wire protocols between tollgate and an agent (docs/agents.md):
 * - twilio: Twilio Media Streams, message for message (text frames, base64 µ-law), so agent
 *   code written for Twilio runs unchanged; lenient like Twilio (bad JSON and unknown events
 *   are ignored);
 * - native (`audio.tollgate.v1`): a JSON `start`, then binary PCM16 frames both ways and JSON
 *   control messages; strict (a malformed message closes the socket with 4400).
 * An adapter only encodes and decodes; AgentSession does the rest.
 */
import { z } from 'zod';

export const NATIVE_SUBPROTOCOL = 'audio.tollgate.v1';
/** Offered by browsers that must name a subprotocol (to carry a credential) but speak Twilio's. */
export const TWILIO_SUBPROTOCOL = 'audio.twilio.v1';
/** Sec-WebSocket-Protocol entry carrying a credential from a browser: `tollgate.auth.<key or token>`. */
export const AUTH_SUBPROTOCOL_PREFIX = 'tollgate.auth.';

export type ProtocolName = 'twilio' | 'native';
export const SAMPLE_RATES = [8000, 16000, 24000, 48000] as const;
export type SampleRate = (typeof SAMPLE_RATES)[number];

/** The agent's audio format, the same both ways. */
export interface AgentFormat {
  readonly encoding: 'PCMU' | 'L16';
  readonly sampleRate: SampleRate;
}

export interface StartInfo {
  readonly callSid: string;
  readonly streamSid: string;
  readonly accountSid: string;
  readonly from: string;
  readonly to: string;
  readonly direction: 'inbound' | 'outbound';
  readonly parameters: Readonly<Record<string, string>>;
  /** STIR/SHAKEN verification of the caller (RFC 8588 verstat). */
  readonly verstat: 'TN-Validation-Passed' | 'TN-Validation-Failed' | 'No-TN-Validation';
  readonly format: AgentFormat;
}

export type AgentCommand =
  | { readonly kind: 'audio'; readonly audio: Uint8Array }
  | { readonly kind: 'mark'; readonly name: string }
  | { readonly kind: 'clear' }
  | { readonly kind: 'dtmf'; readonly digits: string; readonly durationMs: number }
  | { readonly kind: 'hangup' }
  | { readonly kind: 'attach'; readonly callSid: string; readonly format: AgentFormat | null }
  | { readonly kind: 'dial'; readonly request: Readonly<Record<string, unknown>> }
  /** Nothing to do (Twilio's lenient handling); `reason` is logged. */
  | { readonly kind: 'ignore'; readonly reason: string }
  /** A protocol error: native mode closes with 4400. */
  | { readonly kind: 'invalid'; readonly reason: string };

export interface AgentProtocol {
  readonly name: ProtocolName;
  /** The first frames on a stream (twilio: connected and start; native: start). */
  start(info: StartInfo): string[];
  /** One 20 ms frame for the agent, in the stream's format. */
  audio(frame: Uint8Array): string | Buffer;
  mark(name: string, status: 'played' | 'cleared'): string;
  /** Sent after a clear; null where the protocol has no such message. */
  cleared(playedMs: number, discardedMs: number): string | null;
  dtmf(digit: string, durationMs: number): string;
  warning(reason: string, remainingMs: number): string;
  stop(reason: string): string;
  error(code: string, message: string): string | null;
  decode(data: Buffer, isBinary: boolean): AgentCommand;
}

const DTMF_DIGITS = /^[0-9*#A-Da-d]{1,32}$/;
const markName = z.string().min(1).max(256);

const formatSchema = z.strictObject({
  encoding: z.enum(['PCMU', 'L16']),
  sampleRate: z.union([z.literal(8000), z.literal(16000), z.literal(24000), z.literal(48000)]),
}).refine((f) => f.encoding === 'L16' || f.sampleRate === 8000, 'PCMU is 8000 Hz only');

/** Twilio's sequence numbers and chunk counters are strings; timestamps are ms since the start. */
export class TwilioProtocol implements AgentProtocol {
  readonly name = 'twilio' as const;
  private seq = 0;
  private chunk = 0;
  private ts = -20;
  private t0 = 0;
  private streamSid = '';
  private accountSid = '';
  private callSid = '';

  constructor(private readonly now: () => number = () => performance.now()) {}

  start(info: StartInfo): string[] {
    this.streamSid = info.streamSid;
    this.accountSid = info.accountSid;
    this.callSid = info.callSid;
    this.t0 = this.now();
    const customParameters = { ...info.parameters, from_number: info.from, to_number: info.to };
    return [
      JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }),
      JSON.stringify({
        event: 'start',
        sequenceNumber: String(++this.seq),
        start: {
          accountSid: info.accountSid,
          streamSid: info.streamSid,
          callSid: info.callSid,
          tracks: ['inbound'],
          customParameters,
          mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
        },
        streamSid: info.streamSid,
      }),
    ];
  }

  audio(frame: Uint8Array): string {
    // One frame per 20 ms slot; the timestamp steps by 20 and catches up if the real clock ran
    // ahead (slots lost while the thread was stalled).
    const elapsed = this.now() - this.t0;
    this.ts = elapsed - (this.ts + 20) > 60 ? Math.round(elapsed / 20) * 20 : this.ts + 20;
    const payload = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength).toString('base64');
    return `{"event":"media","sequenceNumber":"${++this.seq}","media":{"track":"inbound","chunk":"${++this.chunk}","timestamp":"${this.ts}","payload":"${payload}"},"streamSid":"${this.streamSid}"}`;
  }

  mark(name: string): string {
    return JSON.stringify({ event: 'mark', sequenceNumber: String(++this.seq), streamSid: this.streamSid, mark: { name } });
  }

  cleared(): null {
    return null;
  }

  dtmf(digit: string): string {
    return JSON.stringify({ event: 'dtmf', streamSid: this.streamSid, sequenceNumber: String(++this.seq), dtmf: { track: 'inbound_track', digit } });
  }

  warning(reason: string, remainingMs: number): string {
    return JSON.stringify({ event: 'warning', sequenceNumber: String(++this.seq), streamSid: this.streamSid, warning: { reason, remainingMs } });
  }

  stop(reason: string): string {
    return JSON.stringify({ event: 'stop', sequenceNumber: String(++this.seq), streamSid: this.streamSid, stop: { accountSid: this.accountSid, callSid: this.callSid, reason } });
  }

  error(): null {
    return null;
  }

  decode(data: Buffer, isBinary: boolean): AgentCommand {
    if (isBinary) return { kind: 'ignore', reason: 'binary frame in Twilio mode (text frames only)' };
    let m: unknown;
    try {
      m = JSON.parse(data.toString('utf8'));
    } catch {
      return { kind: 'ignore', reason: 'not JSON' };
    }
    if (typeof m !== 'object' || m === null) return { kind: 'ignore', reason: 'not a JSON object' };
    const msg = m as Record<string, unknown>;
    const sub = (k: string): Record<string, unknown> => (typeof msg[k] === 'object' && msg[k] !== null ? (msg[k] as Record<string, unknown>) : {});
    switch (msg.event) {
      case 'media': {
        const payload = sub('media').payload;
        if (typeof payload !== 'string') return { kind: 'ignore', reason: 'media without a payload' };
        return { kind: 'audio', audio: Buffer.from(payload, 'base64') };
      }
      case 'mark': {
        const name = markName.safeParse(sub('mark').name);
        return name.success ? { kind: 'mark', name: name.data } : { kind: 'ignore', reason: 'mark without a name' };
      }
      case 'clear':
        return { kind: 'clear' };
      case 'dtmf': {
        // tollgate extension: the agent sends digits to the caller.
        const digit = sub('dtmf').digit ?? sub('dtmf').digits;
        if (typeof digit !== 'string' || !DTMF_DIGITS.test(digit)) return { kind: 'ignore', reason: 'dtmf without valid digits' };
        const d = Number(sub('dtmf').durationMs);
        return { kind: 'dtmf', digits: digit, durationMs: Number.isFinite(d) ? Math.min(Math.max(d, 40), 5000) : 100 };
      }
      case 'attach': {
        const callSid = msg.callSid ?? sub('attach').callSid;
        return typeof callSid === 'string' ? { kind: 'attach', callSid, format: null } : { kind: 'invalid', reason: 'attach needs callSid' };
      }
      case 'dial':
        return { kind: 'dial', request: sub('dial') };
      default:
        return { kind: 'ignore', reason: `unknown event ${JSON.stringify(String(msg.event)).slice(0, 40)}` };
    }
  }
}

const nativeMessage = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('clear') }),
  z.strictObject({ type: z.literal('mark'), name: markName }),
  z.strictObject({ type: z.literal('dtmf'), digits: z.string().regex(DTMF_DIGITS, 'digits: 1 to 32 of 0-9 * # A-D'), durationMs: z.number().int().min(40).max(5000).optional() }),
  z.strictObject({ type: z.literal('hangup') }),
  z.strictObject({ type: z.literal('attach'), callId: z.string().min(1).max(64), audio: formatSchema.optional() }),
  z.strictObject({ type: z.literal('dial') }).catchall(z.unknown()),
]);

export class NativeProtocol implements AgentProtocol {
  readonly name = 'native' as const;

  start(info: StartInfo): string[] {
    return [
      JSON.stringify({
        type: 'start',
        callId: info.callSid,
        streamId: info.streamSid,
        accountId: info.accountSid,
        from: info.from,
        to: info.to,
        direction: info.direction,
        parameters: info.parameters,
        identity: { verstat: info.verstat },
        audio: { toAgent: info.format, fromAgent: info.format, frameMs: 20 },
      }),
    ];
  }

  audio(frame: Uint8Array): Buffer {
    return Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  }

  mark(name: string, status: 'played' | 'cleared'): string {
    return JSON.stringify({ type: 'mark', name, status });
  }

  cleared(playedMs: number, discardedMs: number): string {
    return JSON.stringify({ type: 'cleared', playedMs: Math.round(playedMs), discardedMs: Math.round(discardedMs) });
  }

  dtmf(digit: string, durationMs: number): string {
    return JSON.stringify({ type: 'dtmf', digit, durationMs });
  }

  warning(reason: string, remainingMs: number): string {
    return JSON.stringify({ type: 'warning', reason, remainingMs });
  }

  stop(reason: string): string {
    return JSON.stringify({ type: 'stop', reason });
  }

  error(code: string, message: string): string {
    return JSON.stringify({ type: 'error', code, message });
  }

  decode(data: Buffer, isBinary: boolean): AgentCommand {
    if (isBinary) {
      if (data.length % 2 !== 0) return { kind: 'invalid', reason: 'binary audio must be whole PCM16 samples (an even number of bytes)' };
      return { kind: 'audio', audio: data };
    }
    let m: unknown;
    try {
      m = JSON.parse(data.toString('utf8'));
    } catch {
      return { kind: 'invalid', reason: 'text frames must be JSON' };
    }
    const p = nativeMessage.safeParse(m);
    if (!p.success) {
      const issue = p.error.issues[0];
      return { kind: 'invalid', reason: issue ? `${issue.path.join('.') || 'message'}: ${issue.message}` : 'bad message' };
    }
    const v = p.data;
    switch (v.type) {
      case 'clear':
        return { kind: 'clear' };
      case 'mark':
        return { kind: 'mark', name: v.name };
      case 'dtmf':
        return { kind: 'dtmf', digits: v.digits, durationMs: v.durationMs ?? 100 };
      case 'hangup':
        return { kind: 'hangup' };
      case 'attach':
        return { kind: 'attach', callSid: v.callId, format: v.audio ? (v.audio) : null };
      case 'dial': {
        const { type: _t, ...request } = v;
        return { kind: 'dial', request };
      }
    }
  }
}
