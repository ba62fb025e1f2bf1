import type { Logger } from 'pino';
import type { WebSocket, RawData } from 'ws';
import type { AgentMessage } from '../media/media-engine.js';
import type { AgentCommand, AgentProtocol, StartInfo } from './protocols.js';

/** WebSocket close codes (docs/agents.md). */
export const CLOSE = {
  NORMAL: 1000,
  BAD_MESSAGE: 4400,
  UNAUTHENTICATED: 4401,
  FORBIDDEN: 4403,
  NO_SUCH_CALL: 4404,
  ALREADY_ATTACHED: 4409,
  OVER_LIMIT: 4429,
  GOING_AWAY: 1001,
} as const;

/** Bytes waiting in a socket's send buffer beyond which audio frames are dropped, not queued. */
const MAX_BUFFERED = 512 * 1024;

/** What a session needs from the call it is bridged to. */
export interface SessionCall {
  play(audio: Uint8Array): void;
  mark(name: string): void;
  clear(): void;
  sendDtmf(digit: string, durationMs: number): void;
  /** The agent asked to end the call (hangup message or closed socket). */
  agentHangup(how: 'message' | 'socket-closed' | 'protocol-error'): void;
  /** A dial message on an attached stream. */
  dial?(request: Readonly<Record<string, unknown>>): void;
}

export interface SessionHooks {
  onForwarded?(latencyMs: number): void;
  onDropped?(reason: 'backpressure'): void;
}

/**
 * One agent WebSocket bridged to one call: encodes the call's events in the stream's protocol
 * and turns the agent's messages into media commands. Audio to the agent is one message per
 * 20 ms frame, written as it comes from the media worker; a socket that stops reading loses
 * frames instead of growing memory.
 */
export class AgentSession {
  private closed = false;
  private stopped = false;
  private dtmfBusyUntil = 0;
  private readonly dtmfTimers = new Set<ReturnType<typeof setTimeout>>();
  framesSent = 0;
  framesDropped = 0;

  constructor(
    private readonly ws: WebSocket,
    readonly protocol: AgentProtocol,
    private readonly call: SessionCall,
    private readonly log: Logger,
    private readonly hooks: SessionHooks = {},
  ) {
    ws.on('message', (data: RawData, isBinary: boolean) => this.onMessage(data, isBinary));
    ws.on('close', (code: number) => this.onClose(code));
    ws.on('error', (err: Error) => this.log.info({ err: err.message }, 'agent socket error'));
  }

  start(info: StartInfo): void {
    for (const frame of this.protocol.start(info)) this.send(frame);
  }

  /** Events from the media worker for this call. */
  onMedia(m: AgentMessage): void {
    if (this.closed) return;
    switch (m.type) {
      case 'audio': {
        if (this.ws.bufferedAmount > MAX_BUFFERED) {
          this.framesDropped++;
          this.hooks.onDropped?.('backpressure');
          return;
        }
        this.ws.send(this.protocol.audio(m.audio));
        this.framesSent++;
        if (m.arrivedAt !== null) this.hooks.onForwarded?.(performance.timeOrigin + performance.now() - m.arrivedAt);
        return;
      }
      case 'marks':
        for (const mk of m.marks) this.send(this.protocol.mark(mk.name, mk.status));
        return;
      case 'cleared': {
        for (const mk of m.marks) this.send(this.protocol.mark(mk.name, mk.status));
        const c = this.protocol.cleared(m.playedMs, m.discardedMs);
        if (c) this.send(c);
        return;
      }
      case 'overflow':
        this.log.warn({ droppedMs: m.droppedMs }, 'agent audio queue full: dropped the oldest audio');
        this.send(this.protocol.warning('queue-overflow', 0));
        return;
    }
  }

  dtmf(digit: string, durationMs: number): void {
    if (!this.closed) this.send(this.protocol.dtmf(digit, durationMs));
  }

  warning(reason: string, remainingMs: number): void {
    if (!this.closed) this.send(this.protocol.warning(reason, remainingMs));
  }

  /** The call ended: `stop`, then a normal close. */
  stop(reason: string): void {
    if (this.closed || this.stopped) return;
    this.stopped = true;
    this.send(this.protocol.stop(reason));
    this.close(CLOSE.NORMAL, 'call ended');
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.dtmfTimers) clearTimeout(t);
    this.dtmfTimers.clear();
    try {
      this.ws.close(code, reason.slice(0, 120));
    } catch {
      this.ws.terminate();
    }
    // A peer that never completes the closing handshake is cut off.
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }

  private send(data: string | Buffer): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(data);
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    this.receive(buf, isBinary);
  }

  /** One message from the agent (also used to replay those that came before the session). */
  receive(data: Buffer, isBinary: boolean): void {
    if (this.closed) return;
    this.apply(this.protocol.decode(data, isBinary));
  }

  private apply(cmd: AgentCommand): void {
    switch (cmd.kind) {
      case 'audio':
        if (cmd.audio.length) this.call.play(cmd.audio);
        return;
      case 'mark':
        this.call.mark(cmd.name);
        return;
      case 'clear':
        this.call.clear();
        return;
      case 'dtmf':
        this.queueDigits(cmd.digits, cmd.durationMs);
        return;
      case 'hangup':
        this.call.agentHangup('message');
        return;
      case 'dial':
        if (this.call.dial) this.call.dial(cmd.request);
        else this.refuse('not_supported', 'dial is not available on this stream');
        return;
      case 'attach':
        this.refuse('already_attached', 'this stream is already attached to a call');
        return;
      case 'ignore':
        this.log.debug({ reason: cmd.reason }, 'agent message ignored');
        return;
      case 'invalid':
        this.refuse('bad_message', cmd.reason, true);
        return;
    }
  }

  /** Native mode reports the error; a bad message also closes with 4400 (the call then ends). */
  private refuse(code: string, message: string, fatal = false): void {
    this.log.info({ code, message }, 'agent message refused');
    const e = this.protocol.error(code, message);
    if (e) this.send(e);
    if (fatal) {
      this.close(CLOSE.BAD_MESSAGE, message);
      this.call.agentHangup('protocol-error');
    }
  }

  /** Digits go out one after another, each `durationMs` long with a 60 ms pause between. */
  private queueDigits(digits: string, durationMs: number): void {
    let at = Math.max(Date.now(), this.dtmfBusyUntil);
    for (const d of digits) {
      const delay = at - Date.now();
      const t = setTimeout(() => {
        this.dtmfTimers.delete(t);
        this.call.sendDtmf(d.toUpperCase(), durationMs);
      }, Math.max(0, delay));
      this.dtmfTimers.add(t);
      at += durationMs + 60;
    }
    this.dtmfBusyUntil = at;
  }

  private onClose(code: number): void {
    const byAgent = !this.closed;
    this.closed = true;
    for (const t of this.dtmfTimers) clearTimeout(t);
    if (byAgent) {
      this.log.info({ code }, 'agent closed the stream');
      this.call.agentHangup('socket-closed');
    }
  }
}
