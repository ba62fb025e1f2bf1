/**
 * DTMF over RTP as telephone-events (RFC 4733): payload parse/build, a receiver that turns a
 * packet stream into one report per digit, and a sender schedule for one digit.
 *
 * Payload (RFC 4733 §2.3):
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * |     event     |E|R| volume    |          duration             |
 * ```
 * All packets of one event carry the RTP timestamp of the event's start (§2.5.1.2); the
 * duration grows with each update, and the final packet, with E set, is sent three times
 * (§2.5.1.4).
 */

export const TELEPHONE_EVENT_LENGTH = 4;
/** Event codes 0–15 (RFC 4733 §3.2): digits, *, #, A–D. Event 16 is flash. */
export const DTMF_DIGITS = '0123456789*#ABCD';
export const EVENT_FLASH = 16;

export interface TelephoneEvent {
  /** Event code (0–255). */
  event: number;
  /** E bit: this is (a retransmission of) the final packet of the event. */
  end: boolean;
  /** Power level in -dBm0, 0–63 (§2.3.4); 0 for non-tone events. */
  volume: number;
  /** Duration so far in RTP timestamp units (§2.3.5). */
  duration: number;
}

/** The digit for an event code 0–15, or null. */
export function eventToDigit(event: number): string | null {
  return event >= 0 && event < DTMF_DIGITS.length ? DTMF_DIGITS[event]! : null;
}

/** The event code for a digit ('0'–'9', '*', '#', 'A'–'D', case-insensitive), or null. */
export function digitToEvent(digit: string): number | null {
  if (digit.length !== 1) return null;
  const i = DTMF_DIGITS.indexOf(digit.toUpperCase());
  return i < 0 ? null : i;
}

/** Parses the first event of a telephone-event payload into `out`; false if too short. */
export function parseTelephoneEvent(buf: Uint8Array, out: TelephoneEvent, offset = 0, length: number = buf.length - offset): boolean {
  if (length < TELEPHONE_EVENT_LENGTH) return false;
  out.event = buf[offset]!;
  out.end = (buf[offset + 1]! & 0x80) !== 0;
  out.volume = buf[offset + 1]! & 0x3f;
  out.duration = (buf[offset + 2]! << 8) | buf[offset + 3]!;
  return true;
}

/** Writes a telephone-event payload (R = 0) at `offset`; returns 4. */
export function writeTelephoneEvent(buf: Uint8Array, offset: number, ev: TelephoneEvent): number {
  if (ev.duration < 0 || ev.duration > 0xffff) throw new RangeError('telephone-event duration must fit 16 bits');
  buf[offset] = ev.event & 0xff;
  buf[offset + 1] = (ev.end ? 0x80 : 0) | (ev.volume & 0x3f);
  buf[offset + 2] = ev.duration >>> 8;
  buf[offset + 3] = ev.duration & 0xff;
  return TELEPHONE_EVENT_LENGTH;
}

/** One detected digit (or other event). */
export interface DtmfDigit {
  event: number;
  /** '0'–'9', '*', '#', 'A'–'D'; null for other events (e.g. 16, flash). */
  digit: string | null;
  durationMs: number;
  volume: number;
  /** RTP timestamp of the event's start. */
  timestamp: number;
  /** False when the end packets were lost and the event was closed by a later one or `flush()`. */
  ended: boolean;
}

export interface DtmfReceiverOptions {
  /** RTP clock rate of the telephone-event payload type. Default 8000. */
  clockRate?: number;
  onDigit: (digit: DtmfDigit) => void;
}

/**
 * Turns telephone-event packets into one report per event (RFC 4733 §2.5.2): packets are
 * grouped by RTP timestamp; the first end packet reports the event, and its retransmissions
 * (and late updates) are ignored. An event whose end packets were all lost is reported when a
 * new event starts, or on `flush()` (call it from a timer or at hang-up).
 */
export class DtmfReceiver {
  private readonly clockRate: number;
  private readonly onDigit: (digit: DtmfDigit) => void;
  private readonly ev: TelephoneEvent = { event: 0, end: false, volume: 0, duration: 0 };
  private open = false;
  private openTimestamp = 0;
  private openEvent = 0;
  private openDuration = 0;
  private openVolume = 0;
  private lastTimestamp = -1;
  private lastEvent = -1;

  constructor(opts: DtmfReceiverOptions) {
    this.clockRate = opts.clockRate ?? 8000;
    this.onDigit = opts.onDigit;
  }

  /** Feeds one telephone-event RTP packet: its RTP timestamp and payload. */
  push(rtpTimestamp: number, payload: Uint8Array): void {
    const ev = this.ev;
    if (!parseTelephoneEvent(payload, ev)) return;
    const ts = rtpTimestamp >>> 0;
    // Retransmitted end packets, and updates that arrive after the end, of a reported event.
    if (ts === this.lastTimestamp && ev.event === this.lastEvent) return;
    if (this.open && (ts !== this.openTimestamp || ev.event !== this.openEvent)) this.report(false);
    if (!this.open) {
      this.open = true;
      this.openTimestamp = ts;
      this.openEvent = ev.event;
      this.openDuration = 0;
    }
    if (ev.duration > this.openDuration) this.openDuration = ev.duration;
    this.openVolume = ev.volume;
    if (ev.end) this.report(true);
  }

  /** Reports an event still waiting for its end packet, if any. */
  flush(): void {
    if (this.open) this.report(false);
  }

  private report(ended: boolean): void {
    this.open = false;
    this.lastTimestamp = this.openTimestamp;
    this.lastEvent = this.openEvent;
    this.onDigit({
      event: this.openEvent,
      digit: eventToDigit(this.openEvent),
      durationMs: Math.round((this.openDuration * 1000) / this.clockRate),
      volume: this.openVolume,
      timestamp: this.openTimestamp,
      ended,
    });
  }
}

export interface DtmfSendOptions {
  /** Tone length. Default 100 ms. */
  durationMs?: number;
  /** Power level in -dBm0 (§2.3.4). Default 10. */
  volume?: number;
  /** Time between update packets. Default 50 ms (§2.5.1.2 leaves it to the sender). */
  intervalMs?: number;
  /** Copies of the end packet. Default 3 (§2.5.1.4). */
  endPackets?: number;
  /** Time between end packet copies. Default 20 ms. */
  endSpacingMs?: number;
  /** Default 8000. */
  clockRate?: number;
}

/** One packet of a digit's schedule. The caller sends it `atMs` after the start. */
export interface DtmfPacket {
  atMs: number;
  /** Set on the first packet of the event only (§2.5.1.2). */
  marker: boolean;
  end: boolean;
  /** In RTP timestamp units. */
  duration: number;
  /** The 4-octet telephone-event payload. */
  payload: Buffer;
}

/**
 * The packets that send one digit (RFC 4733 §2.5.1): the first with the marker bit, updates
 * every `intervalMs` whose duration covers the time up to the next packet, then `endPackets`
 * copies of the end packet carrying the full duration. Every packet takes the RTP timestamp of
 * the event's start; each gets its own sequence number.
 */
export function dtmfPackets(digit: string, opts: DtmfSendOptions = {}): DtmfPacket[] {
  const event = digitToEvent(digit);
  if (event === null) throw new RangeError(`not a DTMF digit: ${JSON.stringify(digit)}`);
  const durationMs = opts.durationMs ?? 100;
  const volume = opts.volume ?? 10;
  const intervalMs = opts.intervalMs ?? 50;
  const endPackets = opts.endPackets ?? 3;
  const endSpacingMs = opts.endSpacingMs ?? 20;
  const rate = opts.clockRate ?? 8000;
  const total = Math.round((durationMs * rate) / 1000);
  if (total <= 0 || total > 0xffff) throw new RangeError('DTMF duration must be positive and fit 16 bits of timestamp units');
  if (intervalMs <= 0 || endPackets < 1) throw new RangeError('DTMF interval must be positive and at least one end packet sent');

  const packets: DtmfPacket[] = [];
  const make = (atMs: number, marker: boolean, end: boolean, duration: number): void => {
    const payload = Buffer.alloc(TELEPHONE_EVENT_LENGTH);
    writeTelephoneEvent(payload, 0, { event, end, volume, duration });
    packets.push({ atMs, marker, end, duration, payload });
  };
  for (let t = 0; t < durationMs; t += intervalMs) {
    make(t, t === 0, false, Math.min(total, Math.round(((t + intervalMs) * rate) / 1000)));
  }
  for (let i = 0; i < endPackets; i++) make(durationMs + i * endSpacingMs, false, true, total);
  return packets;
}
