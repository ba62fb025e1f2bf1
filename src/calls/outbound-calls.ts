import { randomInt, randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { Logger } from 'pino';
import { TollgateError } from '../errors/index.js';
import type { Principal } from '../policy/principal.js';
import { actorOf } from '../policy/principal.js';
import type { PolicyEngine } from '../policy/policy-engine.js';
import type { AuditLog } from '../audit/index.js';
import type { MediaEngine } from '../media/media-engine.js';
import type { Codec, MediaSpec } from '../media/media-protocol.js';
import type { OutboundEnd, SipUac } from '../sip/sip-uac.js';
import { buildOffer, isAnswerError, parseAnswer, type LocalOffer } from '../sdp/index.js';
import type { AgentBridge, BridgeCall, ConnectResult } from '../agents/agent-bridge.js';
import { newCallSid } from '../agents/ids.js';
import { isE164 } from '../keys/key-input.js';
import { parseInput } from '../util/parse-input.js';
import type { AgentRoute, CallEndedBy } from '../store/store.js';
import { agentRouteSchema, type NumberService } from './number-service.js';
import { toSpec } from './media-spec.js';
import type { Call, EndReason } from './call.js';
import type { CallRegistry } from './call-registry.js';
import type { TrunkRoute, TrunkService } from './trunk-service.js';
import type { TrunkRecord } from '../store/store.js';
import { attestationFor, canonicalTn, type Attestation, type StirSigning } from '../stir/index.js';
import type { EgressGuard } from '../net/index.js';

const callBaseSchema = z.strictObject({
  to: z.string().refine(isE164, 'must be a valid E.164 number such as +14155550100'),
  from: z.string().refine(isE164, 'must be a valid E.164 number such as +14155550100'),
  /** What talks to the callee: an agent the gateway dials (default), or echo/tone for line tests. */
  target: z.enum(['agent', 'echo', 'tone']).default('agent'),
  agent: agentRouteSchema.omit({ webhookUrl: true, fallback: true }).optional(),
  parameters: z.record(z.string().min(1).max(64), z.string().max(1024)).refine((p) => Object.keys(p).length <= 32, 'at most 32 parameters').default({}),
  maxDurationSec: z.number().int().min(1).max(86_400).optional(),
  /** How long to let it ring. */
  ringTimeoutSec: z.number().int().min(1).max(300).default(60),
  record: z.boolean().default(false),
});

export const callInputSchema = callBaseSchema.superRefine((c, ctx) => {
  if (c.target === 'agent' && !c.agent?.url) ctx.addIssue({ code: 'custom', path: ['agent', 'url'], message: 'is required for target agent (the ws:// or wss:// URL tollgate dials when the callee answers)' });
  if (c.target !== 'agent' && c.agent) ctx.addIssue({ code: 'custom', path: ['agent'], message: `is only for target agent, not ${c.target}` });
});
export type CallInput = z.input<typeof callInputSchema>;

/** The dial message of an agent's stream: the stream is the agent, so no target or agent URL. */
const streamDialSchema = callBaseSchema.omit({ target: true, agent: true });

/** Progress of a live outbound call, as GET /v1/calls/{id} shows it. */
export type CallProgress = 'trying' | 'ringing' | 'answered' | 'ended';

/** An agent that dialled from its own stream: bound at the answer instead of dialled. */
export interface StreamAgent {
  adopt(call: BridgeCall): Promise<ConnectResult>;
  notAnswered(reason: string): void;
}

export interface OutboundCallsDeps {
  readonly numbers: Pick<NumberService, 'lookup'>;
  readonly policy: Pick<PolicyEngine, 'authorize' | 'release'>;
  readonly audit: Pick<AuditLog, 'append'>;
  /** Checks agent.url up front (the bridge checks it again when it dials). */
  readonly egress: Pick<EgressGuard, 'check'>;
  /** Queues limit.exceeded webhooks. */
  readonly notify: (type: 'limit.exceeded', keyId: string, data: Record<string, unknown>) => void;
  readonly registry: CallRegistry;
  readonly uac: Pick<SipUac, 'invite'>;
  readonly media: Pick<MediaEngine, 'open' | 'configure'>;
  readonly bridge: Pick<AgentBridge, 'connect' | 'start' | 'warn'>;
  readonly trunks: Pick<TrunkService, 'route'>;
  /** The built-in carrier test-mode keys reach (TestSink.address). */
  readonly sink: { readonly address: { address: string; port: number } };
  readonly log: Logger;
}

export interface OutboundCallsOptions {
  readonly codecs: readonly Codec[];
  readonly warningBeforeEndSec: number;
  readonly maxQueueMs: number;
  readonly defaultAttestation: Attestation;
}

/** SIP rejection → the record's end reason. */
function rejectionReason(status: number): EndReason {
  if (status === 486 || status === 600) return 'busy';
  if (status === 480 || status === 408) return 'no-answer';
  if (status === 487) return 'cancelled';
  if (status === 603) return 'declined';
  return `failed-${status}`;
}

/** How the UAC leg ended, as the call's end (when we did not end it first). */
function legOutcome(end: OutboundEnd): { reason: EndReason; by: CallEndedBy } {
  switch (end.kind) {
    case 'rejected':
      return { reason: rejectionReason(end.status), by: 'callee' };
    case 'timeout':
      return { reason: 'no-answer', by: 'gateway' };
    case 'transport-error':
      return { reason: 'trunk-unreachable', by: 'gateway' };
    case 'remote-bye':
      return { reason: 'remote-bye', by: 'callee' };
    case 'cancelled':
    case 'local-bye':
      return { reason: 'local-hangup', by: 'gateway' };
  }
}

/**
 * Outbound calls (POST /v1/calls, the stream's dial message): policy first (scope, geofence,
 * blocked prefixes, caller-ID ownership, CPS, concurrency, budget reservation) — a refusal sends
 * nothing anywhere; then a Call owns the rest: a trunk (test-mode keys: the built-in test sink),
 * media, the INVITE through the SIP UAC with the trunk's digest credentials, the ring timeout,
 * and on answer the agent. The call ends at its granted time (with a warning to the agent
 * first), by either side, by API, or when its key is revoked.
 */
export class OutboundCalls {
  /** STIR/SHAKEN signing (set once the HTTP address, the default x5u, is known); null: unsigned. */
  private stir: StirSigning | null = null;

  constructor(
    private readonly deps: OutboundCallsDeps,
    private readonly opts: OutboundCallsOptions,
  ) {}

  setStir(stir: StirSigning | null): void {
    this.stir = stir;
  }

  /** Places a call; resolves once the INVITE is on its way (progress: trying). */
  async place(
    principal: Principal,
    raw: unknown,
    source: { ip: string | null; transport: 'http' | 'https' },
    stream?: StreamAgent,
  ): Promise<{ callSid: string; progress: CallProgress; maxDurationSec: number; trunk: string }> {
    const { deps } = this;
    // An agent that dials from its own stream needs no agent URL: the stream is the agent.
    const input: z.output<typeof callInputSchema> = stream
      ? { ...parseInput(streamDialSchema, raw), target: 'agent' }
      : parseInput(callInputSchema, raw);
    if (input.record) throw new TollgateError('RECORDING_UNAVAILABLE', 'recording is not available in this version: place the call with record false');
    if (deps.registry.draining) throw new TollgateError('DRAINING', 'this node is shutting down and takes no new calls: retry on another node or after the restart');
    const key = principal.key;
    const id = newCallSid();
    const ownedNumber = (await deps.numbers.lookup(input.from))?.keyId === key.id;
    const verdict = await deps.policy.authorize({
      principal,
      action: 'call.outbound',
      scope: 'calls:outbound',
      sourceIp: source.ip,
      transport: source.transport,
      targetMode: key.mode,
      destination: input.to,
      // A number of the key's in the number table is its own caller ID too.
      ...(ownedNumber ? {} : { callerId: input.from }),
      callId: id,
      ...(input.maxDurationSec !== undefined ? { requestedMaxDurationSec: input.maxDurationSec } : {}),
    });
    if (!verdict.ok) {
      await deps.audit.append({ actor: actorOf(principal), action: 'call.refused', target: key.id, details: { code: verdict.code, to: input.to, from: input.from } });
      deps.log.info({ keyId: key.id, code: verdict.code, to: input.to }, 'outbound call refused');
      if (verdict.code === 'RATE_LIMITED' || verdict.code === 'CONCURRENCY_LIMITED' || verdict.code === 'BUDGET_EXHAUSTED') {
        deps.notify('limit.exceeded', key.id, { limit: verdict.code, action: 'call.outbound', to: input.to, message: verdict.message });
      }
      throw new TollgateError(verdict.code, verdict.message, verdict.retryAfterMs !== undefined ? { details: { retryAfterMs: verdict.retryAfterMs } } : {});
    }
    const grant = verdict.grant!;
    // agent.url is the caller's: it may not point the gateway at loopback, private, link-local or
    // metadata addresses (docs/security.md). A name that does not resolve now is checked at the answer.
    if (input.agent?.url) {
      const egress = await deps.egress.check(input.agent.url, 'untrusted', { schemes: ['ws:', 'wss:'] });
      if (!egress.ok && egress.refusal !== 'unresolvable') {
        await deps.policy.release(grant);
        await deps.audit.append({ actor: actorOf(principal), action: 'call.refused', target: key.id, details: { code: 'EGRESS_REFUSED', to: input.to, from: input.from } });
        deps.log.info({ keyId: key.id, code: 'EGRESS_REFUSED', to: input.to }, 'outbound call refused');
        throw new TollgateError('EGRESS_REFUSED', 'agent.url: destination not allowed (docs/security.md, "Server-side requests")', { details: { field: 'agent.url' } });
      }
    }
    // Test keys never reach a carrier: their calls go to the built-in test sink.
    let route: { trunk: TrunkRecord | null; peer: TrunkRoute['peer']; credentials: TrunkRoute['credentials'] } | null;
    try {
      route = key.mode === 'test'
        ? { trunk: null, peer: { protocol: 'udp' as const, ...deps.sink.address }, credentials: null }
        : await deps.trunks.route(input.to);
    } catch (err) {
      await deps.policy.release(grant);
      throw err;
    }
    if (!route) {
      await deps.policy.release(grant);
      throw new TollgateError('NO_ROUTE', `no carrier trunk can take a call to ${input.to} now`);
    }
    const trunk = route.trunk?.id ?? 'test-sink';
    const call = deps.registry.create({ id, keyId: key.id, direction: 'outbound', from: input.from, to: input.to, target: input.target, grant, startedAt: Date.now() });
    call.details.trunk = trunk;
    if (stream) call.whenEnded(() => {
      if (call.answeredAt === null) stream.notAnswered(call.endReason ?? 'ended');
    });
    if (!(await call.startRecord({ details: { trunk, progress: 'trying' } }))) {
      call.end('record-unavailable', 'gateway');
      throw new TollgateError('STORE_UNAVAILABLE', 'call records are unavailable: the call was not placed');
    }
    let offer: LocalOffer;
    try {
      const local = await call.openMedia((callId) => deps.media.open(callId));
      if (!local) throw new Error('the call ended while media was being set up');
      const srtp = route.trunk ? route.trunk.srtp !== 'off' : false;
      offer = buildOffer({ address: local.address, port: local.port, sessionId: randomInt(1, 2 ** 31), sessionVersion: 1, username: 'tollgate' }, { codecs: route.trunk?.codecs ?? this.opts.codecs, srtp, telephoneEvent: true });
    } catch (err) {
      deps.log.warn({ err: (err as Error).message, callId: id }, 'no media for an outbound call');
      call.end('media-unavailable', 'gateway');
      throw new TollgateError('NO_ROUTE', 'no media capacity for the call now');
    }
    const host = route.peer.address.includes(':') ? `[${route.peer.address}]` : route.peer.address;
    const domain = route.trunk?.host ?? host;
    const headers: [string, string][] = [['P-Asserted-Identity', `<sip:${input.from}@${domain}>`]];
    // STIR/SHAKEN (RFC 8224/8225/8588): A when the key owns the calling number, B for a known
    // customer's other numbers, else the configured default.
    const origTn = canonicalTn(input.from);
    const destTn = canonicalTn(input.to);
    if (this.stir && origTn && destTn) {
      const attest = attestationFor({ ownsNumber: ownedNumber || key.callerIds.includes(input.from), knownCustomer: true, override: key.attestation, defaultAttestation: this.opts.defaultAttestation });
      headers.push(['Identity', this.stir.identity({ attest, origTn, destTn: [destTn], iat: Math.floor(Date.now() / 1000), origid: randomUUID() })]);
      call.details.identity = { attest, x5u: this.stir.x5u };
    }
    if (call.ended) throw new TollgateError('NO_ROUTE', 'the call ended before it was placed');
    const leg = deps.uac.invite({
      peer: route.peer,
      requestUri: `sip:${input.to}@${host}:${route.peer.port}${route.peer.protocol === 'udp' ? '' : `;transport=${route.peer.protocol}`}`,
      fromUser: input.from,
      toUser: input.to,
      domain,
      sdp: Buffer.from(offer.sdp),
      headers,
      credentials: route.credentials,
      events: {
        onProgress: (status) => {
          if (status === 180 || status === 183) call.ringing();
        },
        onAnswer: (sdp) => void this.onAnswer(call, input, offer, sdp, stream ?? null, route.peer.address),
        onEnd: (end) => {
          if (end.kind === 'rejected') call.details.sipStatus = end.status;
          const o = legOutcome(end);
          call.end(o.reason, o.by);
        },
      },
    });
    call.sipCallId = leg.callId;
    call.attachLeg({ hangup: () => leg.end() });
    call.details.sipCallId = leg.callId;
    // RFC 3261 leaves the ring time to the TU: CANCEL (once) when nobody answers in time.
    call.timers.after(input.ringTimeoutSec * 1000, () => {
      if (call.state === 'setup' || call.state === 'ringing') call.end('no-answer', 'gateway');
    });
    deps.log.info({ callId: id, keyId: key.id, to: input.to, trunk }, 'outbound call placed');
    call.announceStarted();
    return { callSid: id, progress: call.progress, maxDurationSec: grant.maxDurationSec, trunk };
  }

  private async onAnswer(call: Call, input: z.output<typeof callInputSchema>, offer: LocalOffer, sdp: Buffer, stream: StreamAgent | null, peerAddress: string): Promise<void> {
    if (call.ended) return;
    const neg = parseAnswer(sdp, offer);
    if (isAnswerError(neg)) {
      call.details.sdp = neg.reason;
      call.end('sdp-not-acceptable', 'gateway');
      return;
    }
    if (!call.answered()) return;
    const { deps } = this;
    const target = input.target;
    // The carrier (or test sink) is one we chose: its SDP address is trusted before its first packet.
    let spec: MediaSpec = toSpec(neg, target === 'agent' ? 'echo' : target, undefined, { signallingAddress: peerAddress, trustSdp: true });
    if (target === 'agent') {
      const agent = input.agent ?? { url: null, protocol: 'twilio' as const, sampleRate: 0 as const, parameters: {} };
      const route: AgentRoute = { url: agent.url ?? null, webhookUrl: null, protocol: agent.protocol, sampleRate: agent.sampleRate, parameters: { ...agent.parameters, ...input.parameters }, fallback: '480' };
      const info: BridgeCall = {
        callSid: call.id,
        keyId: call.keyId,
        from: input.from,
        to: input.to,
        direction: 'outbound',
        target: 'agent',
        route,
        // agent.url came with the request: the caller's, never the operator's.
        routeTrust: 'untrusted',
        verstat: 'No-TN-Validation',
        agentHangup: (how) => {
          call.details.agentHangup = how;
          call.end('agent-hangup', 'agent');
        },
      };
      const r = stream ? await stream.adopt(info) : await deps.bridge.connect(info);
      if (call.ended) return;
      if (!r.ok) {
        call.details.agentError = r.reason;
        call.end('agent-unavailable', 'gateway');
        return;
      }
      spec = { ...spec, app: 'agent', agent: { encoding: r.format.encoding, sampleRate: r.format.sampleRate, maxQueueMs: this.opts.maxQueueMs } };
      deps.media.configure(call.id, spec);
      deps.bridge.start(call.id);
      const warnMs = this.opts.warningBeforeEndSec * 1000;
      if (warnMs > 0) {
        const maxMs = call.grant.maxDurationSec * 1000;
        call.timers.after(Math.max(0, call.remainingMs() - warnMs), () => deps.bridge.warn(call.id, call.grant.limitedBy === 'budget' ? 'budget' : 'max-duration', Math.min(warnMs, maxMs)));
      }
      return;
    }
    deps.media.configure(call.id, spec);
  }
}
