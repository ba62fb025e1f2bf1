import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { WebSocket, WebSocketServer } from 'ws';
import type { AgentMessage, MediaEngine } from '../media/media-engine.js';
import type { AgentRoute } from '../store/store.js';
import type { Principal } from '../policy/principal.js';
import type { AuthorizeRequest, Verdict } from '../policy/policy-engine.js';
import { CREDENTIAL_PARAMS, type CredentialVerifier, type RefusalCode } from '../policy/credentials.js';
import type { KeyService } from '../keys/key-service.js';
import type { TokenService } from '../keys/token-service.js';
import type { Config } from '../config/index.js';
import type { Metrics } from '../observability/metrics.js';
import { isTollgateError } from '../errors/index.js';
import { pinnedLookup, type EgressGuard, type EgressTrust } from '../net/index.js';
import { AgentSession, CLOSE } from './agent-session.js';
import { accountSidFor, signingSecretFor } from '../keys/key-identity.js';
import { tollgateSignature, twilioSignature } from '../keys/request-signature.js';
import {
  AUTH_SUBPROTOCOL_PREFIX, NATIVE_SUBPROTOCOL, NativeProtocol, TWILIO_SUBPROTOCOL, TwilioProtocol,
  type AgentFormat, type AgentProtocol, type StartInfo,
} from './protocols.js';

/** A call that an agent is (or will be) bridged to. */
export interface BridgeCall {
  /** The gateway's id for the call: the media session, the record and the stream all use it. */
  readonly callSid: string;
  readonly keyId: string;
  readonly from: string;
  readonly to: string;
  readonly direction: 'inbound' | 'outbound';
  readonly target: 'agent' | 'attach';
  readonly route: AgentRoute;
  /**
   * Whose the route's URLs are (docs/security.md, "Server-side requests"): `operator` for a
   * number's route (keys:admin set it), `untrusted` for agent.url on POST /v1/calls.
   */
  readonly routeTrust: EgressTrust;
  readonly verstat: StartInfo['verstat'];
  /** Ends the call because the agent asked or left (BYE; CDR says the agent ended it). */
  agentHangup(how: string): void;
}

/** What the bridge uses, handed over by the composition root. */
export interface AgentBridgeDeps {
  readonly config: { readonly agents: Config['agents']; readonly masterKey: Buffer; readonly tokenMaxTtlSec: number; readonly allowHttpWebhooks: boolean };
  readonly media: Pick<MediaEngine, 'play' | 'mark' | 'clear' | 'sendDtmf'>;
  readonly credentials: Pick<CredentialVerifier, 'verify'>;
  readonly policy: { authorize(req: AuthorizeRequest): Promise<Verdict> };
  readonly keys: Pick<KeyService, 'getCurrent'>;
  readonly tokens: Pick<TokenService, 'mint'>;
  /** Every dial-out and attach webhook goes through it. */
  readonly egress: Pick<EgressGuard, 'check' | 'request'>;
  readonly metrics: Pick<Metrics, 'agentConnects' | 'agentStreams' | 'agentForwardLatency' | 'agentFramesDropped'>;
  readonly log: Logger;
}

/** What the bridge needs of the outbound call service for the dial message. */
export interface OutboundDialer {
  place(
    principal: Principal,
    input: unknown,
    source: { ip: string | null; transport: 'http' | 'https' },
    stream: { adopt(call: BridgeCall): Promise<ConnectResult>; notAnswered(reason: string): void },
  ): Promise<{ callSid: string; trunk: string }>;
}

export type ConnectResult = { readonly ok: true; readonly format: AgentFormat } | { readonly ok: false; readonly reason: string };

interface Entry {
  readonly call: BridgeCall;
  session: AgentSession | null;
  /** The agent's format once bound (start is sent when the call is answered). */
  format: AgentFormat | null;
  started: boolean;
  /** target attach: resolves when an agent attaches (or the wait ends). */
  waiter: ((r: ConnectResult) => void) | null;
  ended: boolean;
  /** For dial-out, the socket while it is being opened. */
  pending: WebSocket | null;
}


function routeFormat(route: AgentRoute): AgentFormat {
  if (route.protocol === 'twilio' || route.sampleRate === 0) return { encoding: 'PCMU', sampleRate: 8000 };
  return { encoding: 'L16', sampleRate: route.sampleRate };
}

/** The one mapping from a refusal to a WebSocket close code on agent streams (STYLE.md §4). */
export function closeCodeFor(code: RefusalCode): number {
  switch (code) {
    case 'UNAUTHENTICATED':
    case 'KEY_REVOKED':
    case 'KEY_EXPIRED':
    case 'KEY_QUARANTINED':
    case 'TOKEN_INVALID':
    case 'TOKEN_REPLAYED':
      return CLOSE.UNAUTHENTICATED;
    case 'SCOPE_NOT_GRANTED':
    case 'SOURCE_IP_NOT_ALLOWED':
    case 'TLS_REQUIRED':
    case 'MODE_MISMATCH':
    case 'DESTINATION_NOT_ALLOWED':
    case 'DESTINATION_BLOCKED':
    case 'CALLER_ID_NOT_OWNED':
    case 'BUDGET_EXHAUSTED':
      return CLOSE.FORBIDDEN;
    case 'RATE_LIMITED':
    case 'CONCURRENCY_LIMITED':
      return CLOSE.OVER_LIMIT;
    case 'DESTINATION_INVALID':
    case 'DURATION_INVALID':
      return CLOSE.BAD_MESSAGE;
    default: {
      const unmapped: never = code;
      throw new Error(`no close code for ${String(unmapped)}`);
    }
  }
}

/**
 * The agent side of calls (ARCHITECTURE.md: agents/). Two ways an agent reaches a call:
 * - dial-out (number target `agent`): on an inbound call tollgate opens a WebSocket to the
 *   number's agent URL, signing the upgrade (Tollgate-Signature, and X-Twilio-Signature when a
 *   Twilio auth token is configured), before the call is answered;
 * - dial-in (number target `attach`): tollgate posts a signed `call.incoming` webhook carrying a
 *   single-call token, and the agent connects to /v1/stream with it and attaches.
 * Audio frames from the media workers are routed to the call's session here.
 */
export class AgentBridge {
  private readonly bySid = new Map<string, Entry>();
  private readonly wss: WebSocketServer;
  private readonly cfg: Config['agents'];
  private readonly log: Logger;
  private readonly unattached = new Set<WebSocket>();
  private publicBase = '';
  private outbound: OutboundDialer | null = null;
  private closed = false;

  constructor(private readonly deps: AgentBridgeDeps) {
    this.cfg = deps.config.agents;
    this.log = deps.log;
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.cfg.maxMessageBytes,
      perMessageDeflate: false,
      // Choose the audio protocol; a credential offered as a subprotocol is never echoed back.
      handleProtocols: (protocols) => (protocols.has(NATIVE_SUBPROTOCOL) ? NATIVE_SUBPROTOCOL : protocols.has(TWILIO_SUBPROTOCOL) ? TWILIO_SUBPROTOCOL : false),
    });
  }

  /** The HTTP base agents reach this gateway on (for the stream URL in webhooks). */
  setPublicBase(base: string): void {
    this.publicBase = (this.cfg.publicUrl || base).replace(/\/+$/, '');
  }

  get streamUrl(): string {
    return this.publicBase.replace(/^http/, 'ws') + '/v1/stream';
  }

  /**
   * Brings an agent to the call: dials the agent URL, or notifies the webhook and waits for an
   * attach. Resolves within agents.connectTimeoutMs either way, or at once when the call ends
   * first (ended() aborts the dial or the wait). The agent is bound but hears nothing until
   * start(): before the answer a cancelled call closes it before `start`.
   */
  async connect(call: BridgeCall): Promise<ConnectResult> {
    if (this.closed) return { ok: false, reason: 'shutting down' };
    const entry: Entry = { call, session: null, format: null, started: false, waiter: null, ended: false, pending: null };
    this.bySid.set(call.callSid, entry);
    const r = call.target === 'agent' ? await this.dialOut(entry) : await this.awaitAttach(entry);
    this.deps.metrics.agentConnects.inc({ outcome: r.ok ? (call.target === 'agent' ? 'connected' : 'attached') : 'failed' });
    if (!r.ok) this.forget(entry);
    return r;
  }

  /** The call is answered: the bound agent gets `connected` and `start` (Twilio) or `start` (native). */
  start(callSid: string): void {
    const e = this.bySid.get(callSid);
    if (!e?.session || !e.format || e.started || e.ended) return;
    e.started = true;
    const { call } = e;
    e.session.start({
      callSid: call.callSid,
      streamSid: call.callSid.replace(/^CA/, 'MZ'),
      accountSid: accountSidFor(call.keyId),
      from: call.from,
      to: call.to,
      direction: call.direction,
      parameters: call.route.parameters,
      verstat: call.verstat,
      format: e.format,
    });
  }

  private async dialOut(entry: Entry): Promise<ConnectResult> {
    const { call } = entry;
    const url = call.route.url;
    if (!url) return { ok: false, reason: 'the number has no agent URL' };
    const cfg = this.cfg;
    const headers: Record<string, string> = {
      'User-Agent': 'tollgate',
      'Tollgate-Signature': tollgateSignature(signingSecretFor(this.deps.config.masterKey, call.keyId), url),
    };
    if (cfg.twilioAuthToken) headers['X-Twilio-Signature'] = twilioSignature(cfg.twilioAuthToken, url);
    const native = call.route.protocol === 'native';
    // Checked now (DNS answers change), connected to the checked addresses only. Reasons stay
    // generic: the call record is readable by the call's key.
    // The resolution and the handshake share agents.connectTimeoutMs.
    const deadline = Date.now() + cfg.connectTimeoutMs;
    const target = await this.deps.egress.check(url, call.routeTrust, { schemes: ['ws:', 'wss:'], signal: AbortSignal.timeout(cfg.connectTimeoutMs) });
    if (!target.ok) {
      if (target.refusal === 'invalid-url' || target.refusal === 'scheme-not-allowed') return { ok: false, reason: 'the agent URL is not a valid ws:// or wss:// URL' };
      if (target.refusal === 'destination-not-allowed') return { ok: false, reason: 'agent destination not allowed' };
      return { ok: false, reason: Date.now() >= deadline ? 'agent connect timeout' : 'agent connection failed' };
    }
    if (entry.ended) return { ok: false, reason: 'the call ended while the agent was connecting' };
    const left = Math.max(1, deadline - Date.now());
    let ws: WebSocket;
    try {
      ws = new WebSocket(target.url, native ? [NATIVE_SUBPROTOCOL] : [], {
        headers,
        // A backstop: the timer below (what is left of connectTimeoutMs) decides first.
        handshakeTimeout: cfg.connectTimeoutMs,
        maxPayload: cfg.maxMessageBytes,
        perMessageDeflate: false,
        followRedirects: false,
        lookup: pinnedLookup(target.addresses),
      });
    } catch {
      return { ok: false, reason: 'the agent URL is not a valid ws:// or wss:// URL' };
    }
    entry.pending = ws;
    const opened = await new Promise<ConnectResult>((resolve) => {
      const timer = setTimeout(() => done({ ok: false, reason: 'agent connect timeout' }), left);
      const done = (r: ConnectResult): void => {
        clearTimeout(timer);
        ws.off('open', onOpen);
        ws.off('error', onError);
        ws.off('unexpected-response', onResponse);
        resolve(r);
      };
      const onOpen = (): void => done({ ok: true, format: routeFormat(call.route) });
      const onError = (err: Error): void => {
        this.log.debug({ callSid: call.callSid, err: (err as NodeJS.ErrnoException).code ?? err.message }, 'agent connection failed');
        done({ ok: false, reason: 'agent connection failed' });
      };
      const onResponse = (_req: unknown, res: IncomingMessage): void => {
        res.resume();
        done({ ok: false, reason: `agent refused the WebSocket upgrade with HTTP ${res.statusCode ?? '?'}` });
      };
      ws.once('open', onOpen);
      ws.once('error', onError);
      ws.once('unexpected-response', onResponse);
    });
    entry.pending = null;
    if (opened.ok && native && ws.protocol !== NATIVE_SUBPROTOCOL) {
      ws.close(CLOSE.BAD_MESSAGE, `expected subprotocol ${NATIVE_SUBPROTOCOL}`);
      return { ok: false, reason: `the agent did not accept the ${NATIVE_SUBPROTOCOL} subprotocol` };
    }
    if (!opened.ok || entry.ended) {
      ws.on('error', () => {});
      ws.terminate();
      return opened.ok ? { ok: false, reason: 'the call ended while the agent was connecting' } : opened;
    }
    this.bind(entry, ws, native ? new NativeProtocol() : new TwilioProtocol(), opened.format);
    return opened;
  }

  private async awaitAttach(entry: Entry): Promise<ConnectResult> {
    const { call } = entry;
    const cfg = this.cfg;
    const waited = new Promise<ConnectResult>((resolve) => {
      const timer = setTimeout(() => {
        entry.waiter = null;
        resolve({ ok: false, reason: 'no agent attached in time' });
      }, cfg.connectTimeoutMs);
      entry.waiter = (r) => {
        clearTimeout(timer);
        entry.waiter = null;
        resolve(r);
      };
    });
    if (call.route.webhookUrl) {
      const failed = await this.notify(call).catch((err: unknown) => `webhook failed: ${(err as Error).message}`);
      if (failed) entry.waiter?.({ ok: false, reason: failed });
    }
    return waited;
  }

  /** Posts the signed call.incoming webhook with a single-call token; a failure reason or null. */
  private async notify(call: BridgeCall): Promise<string | null> {
    // The webhook carries a single-call token: never in clear text unless the operator allows it.
    if (call.route.webhookUrl?.startsWith('http:') && !this.deps.config.allowHttpWebhooks) return 'the attach webhook URL is http:// and webhooks.allowHttp is off';
    const key = await this.deps.keys.getCurrent(call.keyId);
    if (!key) return 'the key no longer exists';
    const ttlSec = Math.min(this.deps.config.tokenMaxTtlSec, Math.max(5, Math.ceil(this.cfg.connectTimeoutMs / 1000) + 5));
    const { token } = await this.deps.tokens.mint(key, { scopes: ['calls:inbound'], callId: call.callSid, ttlSec });
    const body = JSON.stringify({
      id: `evt_${randomUUID().replaceAll('-', '')}`,
      type: 'call.incoming',
      createdAt: new Date().toISOString(),
      data: {
        callId: call.callSid,
        accountSid: accountSidFor(call.keyId),
        from: call.from,
        to: call.to,
        direction: call.direction,
        parameters: call.route.parameters,
        streamUrl: this.streamUrl,
        token,
        expiresInSec: ttlSec,
      },
    });
    // Through the egress guard (no redirects, pinned address); failures reject with a generic EgressError.
    const res = await this.deps.egress.request(call.route.webhookUrl ?? '', call.routeTrust, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'tollgate',
        'tollgate-signature': tollgateSignature(signingSecretFor(this.deps.config.masterKey, call.keyId), body),
      },
      body,
      timeoutMs: this.cfg.connectTimeoutMs,
      maxBytes: 0,
    });
    return res.status >= 200 && res.status < 300 ? null : `webhook answered HTTP ${res.status}`;
  }

  /** Binds a socket to the call; the agent hears nothing until start(). */
  private bind(entry: Entry, ws: WebSocket, protocol: AgentProtocol, format: AgentFormat): AgentSession {
    const { call } = entry;
    const log = this.log.child({ component: 'agent', callSid: call.callSid });
    const media = this.deps.media;
    const id = call.callSid;
    const metrics = this.deps.metrics;
    entry.format = format;
    entry.session = new AgentSession(
      ws,
      protocol,
      {
        play: (audio) => media.play(id, audio),
        mark: (name) => media.mark(id, name),
        clear: () => media.clear(id),
        sendDtmf: (digit, ms) => media.sendDtmf(id, digit, ms),
        agentHangup: (how) => {
          if (!entry.ended) call.agentHangup(how);
        },
      },
      log,
      {
        onForwarded: (ms) => metrics.agentForwardLatency.observe(ms / 1000),
        onDropped: (reason) => metrics.agentFramesDropped.inc({ reason }),
      },
    );
    metrics.agentStreams.inc({ protocol: protocol.name });
    ws.once('close', () => metrics.agentStreams.dec({ protocol: protocol.name }));
    return entry.session;
  }

  /** Lets agents on /v1/stream place calls (the dial message). */
  setOutbound(outbound: OutboundDialer): void {
    this.outbound = outbound;
  }

  /** Binds a stream that is already open (an agent that dialled) to its call once answered; call start() next. */
  adopt(call: BridgeCall, ws: WebSocket, protocol: AgentProtocol, format: AgentFormat): Promise<ConnectResult> {
    if (this.closed || ws.readyState !== ws.OPEN) return Promise.resolve({ ok: false, reason: 'the agent stream closed before the answer' });
    const entry: Entry = { call, session: null, format: null, started: false, waiter: null, ended: false, pending: null };
    this.bySid.set(call.callSid, entry);
    this.bind(entry, ws, protocol, format);
    this.deps.metrics.agentConnects.inc({ outcome: 'attached' });
    return Promise.resolve({ ok: true, format });
  }

  /** Media worker events for agent calls (nothing reaches an agent before its `start`). */
  onMedia(m: AgentMessage): void {
    const e = this.bySid.get(m.callId);
    if (e?.started) e.session?.onMedia(m);
  }

  onDtmf(callSid: string, digit: string, durationMs: number): void {
    const e = this.bySid.get(callSid);
    if (e?.started) e.session?.dtmf(digit, durationMs);
  }

  warn(callSid: string, reason: string, remainingMs: number): void {
    const e = this.bySid.get(callSid);
    if (e?.started) e.session?.warning(reason, remainingMs);
  }

  /**
   * The call ended: a started agent gets `stop` and the socket closes; a bound agent that never
   * got `start` is closed without one; a dial or an attach wait in progress is aborted.
   */
  ended(callSid: string, reason: string): void {
    const e = this.bySid.get(callSid);
    if (!e) return;
    e.ended = true;
    e.waiter?.({ ok: false, reason: 'the call ended before an agent attached' });
    e.pending?.terminate();
    if (e.started) e.session?.stop(reason);
    else e.session?.close(CLOSE.NORMAL, 'call ended');
    this.forget(e);
  }

  private forget(e: Entry): void {
    if (this.bySid.get(e.call.callSid) === e) this.bySid.delete(e.call.callSid);
  }

  // ---- dial-in: /v1/stream -------------------------------------------------------------

  /** For the HTTP server's 'upgrade' event; true when the request was for /v1/stream. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/v1/stream') return false;
    if (this.closed) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return true;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => void this.onStream(ws, req).catch((err: unknown) => {
      this.log.error({ err }, 'agent stream failed');
      ws.close(1011, 'internal error');
    }));
    return true;
  }

  private async onStream(ws: WebSocket, req: IncomingMessage): Promise<void> {
    const ip = req.socket.remoteAddress ?? '';
    const protocol: AgentProtocol = ws.protocol === NATIVE_SUBPROTOCOL ? new NativeProtocol() : new TwilioProtocol();
    const refuse = (code: number, reason: string): void => {
      this.log.info({ ip, code, reason }, 'agent stream refused');
      this.deps.metrics.agentConnects.inc({ outcome: 'refused' });
      const e = protocol.error(String(code), reason);
      if (e && ws.readyState === ws.OPEN) ws.send(e);
      ws.close(code, reason);
      setTimeout(() => ws.terminate(), 2000).unref();
    };
    // Messages that arrive before the stream is attached are kept, in order, and replayed.
    const queue: { data: Buffer; isBinary: boolean }[] = [];
    let state: 'auth' | 'waiting' | 'attaching' | 'done' = 'auth';
    let pump: () => void = () => {};
    const onPre = (data: Buffer, isBinary: boolean): void => {
      if (queue.length >= 64) {
        state = 'done';
        return refuse(CLOSE.BAD_MESSAGE, 'too many messages before attach');
      }
      queue.push({ data, isBinary });
      pump();
    };
    ws.on('message', onPre);
    ws.on('error', () => {});
    const query = new URL(req.url ?? '/', 'http://x').searchParams;
    if (CREDENTIAL_PARAMS.some((p) => query.has(p))) return refuse(CLOSE.BAD_MESSAGE, 'credentials must be sent in the Authorization header or a subprotocol, never in the URL');
    const credential = this.credentialOf(req);
    if (!credential) return refuse(CLOSE.UNAUTHENTICATED, 'send an API key or token as Authorization: Bearer <credential> or subprotocol tollgate.auth.<credential>');
    const verified = await this.deps.credentials.verify(credential, ip);
    if (!verified.ok) return refuse(CLOSE.UNAUTHENTICATED, verified.wellFormed ? verified.code.toLowerCase().replaceAll('_', ' ') : 'not an API key or token');
    const p = verified.principal;
    const allowed = await this.deps.policy.authorize({ principal: p, action: 'api', scope: null, sourceIp: ip, transport: 'http' });
    if (!allowed.ok) return refuse(closeCodeFor(allowed.code), allowed.message);

    this.unattached.add(ws);
    ws.once('close', () => this.unattached.delete(ws));
    const attach = async (callSid: string, format: AgentFormat | null): Promise<void> => {
      state = 'attaching';
      this.unattached.delete(ws);
      const fail = (code: number, reason: string): void => {
        state = 'done';
        refuse(code, reason);
      };
      const e = this.bySid.get(callSid);
      if (!e || e.ended || e.call.keyId !== p.key.id) return fail(CLOSE.NO_SUCH_CALL, 'no such call waiting for this key');
      if (e.session || e.call.target !== 'attach' || !e.waiter) return fail(CLOSE.ALREADY_ATTACHED, 'the call already has an agent');
      const v = await this.deps.policy.authorize({ principal: p, action: 'api', scope: 'calls:inbound', sourceIp: ip, transport: 'http', callId: callSid });
      if (!v.ok) return fail(closeCodeFor(v.code), v.message);
      if (!e.waiter || e.ended || ws.readyState !== ws.OPEN) return fail(CLOSE.NO_SUCH_CALL, 'the call is no longer waiting');
      const f = protocol.name === 'twilio' ? routeFormat({ ...e.call.route, protocol: 'twilio' }) : (format ?? routeFormat(e.call.route));
      const session = this.bind(e, ws, protocol, f);
      state = 'done';
      ws.off('message', onPre);
      for (const m of queue.splice(0)) session.receive(m.data, m.isBinary);
      e.waiter({ ok: true, format: f });
    };
    // The agent places a call on this stream: it starts when the callee answers.
    const dial = async (request: Readonly<Record<string, unknown>>): Promise<void> => {
      state = 'attaching';
      this.unattached.delete(ws);
      const outbound = this.outbound;
      if (!outbound) {
        state = 'done';
        return refuse(CLOSE.BAD_MESSAGE, 'outbound calls are not running on this node');
      }
      const { audio, ...rest } = request as { audio?: AgentFormat } & Record<string, unknown>;
      const format: AgentFormat = protocol.name === 'native' && audio && typeof audio === 'object' ? audio : { encoding: 'PCMU', sampleRate: 8000 };
      try {
        const placed = await outbound.place(p, rest, { ip, transport: 'http' }, {
          adopt: async (call) => {
            const r = await this.adopt(call, ws, protocol, format);
            if (r.ok) {
              ws.off('message', onPre);
              const session = this.bySid.get(call.callSid)?.session;
              for (const m of queue.splice(0)) session?.receive(m.data, m.isBinary);
            }
            return r;
          },
          notAnswered: (reason) => {
            if (ws.readyState !== ws.OPEN) return;
            ws.send(protocol.stop(reason));
            ws.close(CLOSE.NORMAL, 'call not answered');
          },
        });
        state = 'done';
        this.log.info({ callSid: placed.callSid }, 'agent stream dialled');
        ws.send(protocol.name === 'native' ? JSON.stringify({ type: 'dialing', callId: placed.callSid, trunk: placed.trunk }) : JSON.stringify({ event: 'dialing', callSid: placed.callSid }));
      } catch (err) {
        state = 'done';
        const code = isTollgateError(err) ? err.code : 'INTERNAL';
        const status = isTollgateError(err) ? err.httpStatus : 500;
        // A draining node takes no new calls: 1001, as for a gateway shutting down (docs/agents.md),
        // so the agent dials again elsewhere instead of treating its message as malformed.
        const close = code === 'DRAINING' ? CLOSE.GOING_AWAY
          : status === 401 ? CLOSE.UNAUTHENTICATED
          : status === 403 || status === 402 ? CLOSE.FORBIDDEN
          : status === 429 ? CLOSE.OVER_LIMIT
          : CLOSE.BAD_MESSAGE;
        refuse(close, `${code}: ${isTollgateError(err) ? err.message : 'internal error'}`.slice(0, 120));
      }
    };
    pump = () => {
      while (state === 'waiting' && queue.length) {
        const m = queue.shift()!;
        const cmd = protocol.decode(m.data, m.isBinary);
        if (cmd.kind === 'attach') void attach(cmd.callSid, cmd.format);
        else if (cmd.kind === 'dial') void dial(cmd.request);
        else if (cmd.kind === 'invalid') {
          state = 'done';
          refuse(CLOSE.BAD_MESSAGE, cmd.reason);
        }
      }
    };
    const bound = p.via === 'token' ? p.token?.callId ?? null : null;
    if (bound) return attach(bound, null);
    state = 'waiting';
    pump();
    setTimeout(() => {
      if (state === 'waiting') {
        state = 'done';
        refuse(CLOSE.BAD_MESSAGE, 'send attach (or dial) first');
      }
    }, this.cfg.connectTimeoutMs).unref();
  }

  private credentialOf(req: IncomingMessage): string | null {
    const auth = req.headers.authorization;
    const m = typeof auth === 'string' ? /^Bearer[ ]+(\S+)\s*$/i.exec(auth) : null;
    if (m) return m[1]!;
    const protos = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim());
    const p = protos.find((s) => s.startsWith(AUTH_SUBPROTOCOL_PREFIX));
    return p ? p.slice(AUTH_SUBPROTOCOL_PREFIX.length) : null;
  }

  /** Closes every agent socket (calls end separately through SIP). */
  close(): void {
    this.closed = true;
    for (const ws of this.unattached) ws.close(CLOSE.GOING_AWAY, 'shutting down');
    for (const e of [...this.bySid.values()]) this.ended(e.call.callSid, 'shutdown');
    this.wss.close();
  }
}
