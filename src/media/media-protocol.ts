/**
 * Messages between the main thread (control) and a media worker (per-packet work). The main
 * thread never touches RTP; a worker owns its slice of the port range and its sessions.
 */
/**
 * echo: the caller hears itself; tone: a 440 Hz tone; ringback: the ringing tone (early media
 * while an agent is dialled); agent: audio to and from an agent bridge.
 */
export type MediaApp = 'echo' | 'tone' | 'ringback' | 'agent';
export type Codec = 'PCMU' | 'PCMA';
export type SrtpSuite = 'AES_CM_128_HMAC_SHA1_80' | 'AES_CM_128_HMAC_SHA1_32' | 'AEAD_AES_128_GCM';

export interface SrtpKeys {
  readonly suite: SrtpSuite;
  /** Master key ‖ master salt, base64 (as in a=crypto inline:): 30 octets for AES-CM, 28 for GCM. */
  readonly keySalt: string;
}

export interface MediaSpec {
  readonly app: MediaApp;
  readonly codec: Codec;
  readonly payloadType: number;
  readonly telephoneEventPt: number | null;
  readonly ptimeMs: number;
  /** Where the SDP says to send RTP (the latched source overrides it: symmetric RTP, RFC 4961; media/rtp-latch.ts). */
  readonly remote: { readonly address: string; readonly port: number; readonly rtcpPort: number };
  /** The address the call's signalling came from: RTP from it latches at once, and the SDP address is trusted when equal. */
  readonly signallingAddress: string | null;
  /** Send to the SDP address before the first packet even when it is not the signalling address (outbound carriers; media.sendBeforeLatch). */
  readonly trustSdp: boolean;
  readonly rtcpMux: boolean;
  /** Our sending key and the caller's sending key (SDES, RFC 4568); null = plain RTP. */
  readonly srtp: { readonly send: SrtpKeys; readonly recv: SrtpKeys } | null;
  /** 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive' from our side. */
  readonly direction: 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';
  /** app 'agent': the audio format on the agent's side (both ways). */
  readonly agent?: AgentAudio;
}

/** PCMU: 8 kHz µ-law bytes (Twilio mode); L16: little-endian PCM16 at `sampleRate`. */
export interface AgentAudio {
  readonly encoding: 'PCMU' | 'L16';
  readonly sampleRate: 8000 | 16000 | 24000 | 48000;
  /** Most agent audio queued for playout, in ms; more drops the oldest. */
  readonly maxQueueMs: number;
}

export type ToWorker =
  | { readonly type: 'open'; readonly callId: string }
  | { readonly type: 'configure'; readonly callId: string; readonly spec: MediaSpec }
  | { readonly type: 'close'; readonly callId: string }
  /** Send a DTMF digit as RFC 4733 telephone-event packets (needs a negotiated telephone-event PT). */
  | { readonly type: 'dtmf'; readonly callId: string; readonly digit: string; readonly durationMs: number }
  /** app 'agent': audio from the agent in its format, any length; queued for paced playout. */
  | { readonly type: 'play'; readonly callId: string; readonly audio: Uint8Array }
  /** app 'agent': a mark after the audio queued so far. */
  | { readonly type: 'mark'; readonly callId: string; readonly name: string }
  /** app 'agent': flush the queued audio (barge-in). */
  | { readonly type: 'clear'; readonly callId: string }
  | { readonly type: 'stats' }
  | { readonly type: 'shutdown' };

export interface SessionStats {
  readonly packetsIn: number;
  readonly packetsOut: number;
  readonly bytesIn: number;
  readonly lost: number;
  readonly late: number;
  readonly authFailures: number;
  /** Packets dropped because they came from another source (or SSRC) than the latched one. */
  readonly rejectedSource: number;
  readonly dtmf: readonly string[];
}

export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'opened'; readonly callId: string; readonly port: number }
  | { readonly type: 'open-failed'; readonly callId: string; readonly reason: string }
  | { readonly type: 'closed'; readonly callId: string; readonly stats: SessionStats }
  | { readonly type: 'timeout'; readonly callId: string }
  | { readonly type: 'dtmf'; readonly callId: string; readonly digit: string; readonly durationMs: number }
  /**
   * app 'agent': one 20 ms frame for the agent, in its format. `arrivedAt` is the RTP packet's
   * arrival (performance.timeOrigin + performance.now(), ms) or null for a concealed slot.
   */
  | { readonly type: 'audio'; readonly callId: string; readonly audio: Uint8Array; readonly arrivedAt: number | null }
  | { readonly type: 'marks'; readonly callId: string; readonly marks: readonly { readonly name: string; readonly status: 'played' | 'cleared' }[] }
  | { readonly type: 'cleared'; readonly callId: string; readonly playedMs: number; readonly discardedMs: number; readonly marks: readonly { readonly name: string; readonly status: 'played' | 'cleared' }[] }
  /** The playout queue was over its cap: the oldest `droppedMs` of agent audio were dropped. */
  | { readonly type: 'overflow'; readonly callId: string; readonly droppedMs: number }
  | { readonly type: 'stats'; readonly sessions: number; readonly cpuUserUs: number; readonly cpuSystemUs: number; readonly heapUsed: number };

export interface WorkerInit {
  readonly index: number;
  readonly host: string;
  readonly portMin: number;
  readonly portMax: number;
  readonly timeoutMs: number;
  readonly jitterTargetMs: number;
}
