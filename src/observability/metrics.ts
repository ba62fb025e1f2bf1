import { Registry, Counter, Histogram, Gauge, collectDefaultMetrics } from 'prom-client';

/** All metrics of one gateway instance, on its own registry (no module-level singletons). */
export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  readonly httpDuration: Histogram<'method' | 'route'>;
  readonly keyVerifications: Counter<'result'>;
  readonly policyDecisions: Counter<'action' | 'verdict'>;
  readonly auditEntries: Counter;
  readonly activeLeases: Gauge;
  readonly sipAuthFailures: Counter<'reason'>;
  readonly sipBlockedSources: Counter<'reason'>;
  readonly sipDroppedRequests: Counter<'reason'>;
  readonly sipChallenges: Counter<'outcome'>;
  readonly sipOverloadRefusals: Counter<'signal'>;
  readonly sipOverloaded: Gauge;
  readonly sipPendingInvites: Gauge;
  readonly sipTransactions: Gauge<'side'>;
  readonly sipOverloadEventLoopDelay: Gauge;
  readonly sipOverloadMediaLoad: Gauge;
  readonly sipCalls: Counter<'outcome'>;
  readonly sipConnectionsRefused: Counter<'transport' | 'reason'>;
  readonly sipConnectionsClosed: Counter<'transport' | 'reason'>;
  readonly activeCalls: Gauge;
  readonly agentStreams: Gauge<'protocol'>;
  readonly agentConnects: Counter<'outcome'>;
  readonly agentForwardLatency: Histogram;
  readonly agentFramesDropped: Counter<'reason'>;
  readonly settlementsPending: Gauge;
  readonly settlementFailures: Counter<'stage'>;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'tollgate_' });
    this.httpRequests = new Counter({
      name: 'tollgate_http_requests_total',
      help: 'REST requests by route and status',
      labelNames: ['method', 'route', 'status'],
      registers: [this.registry],
    });
    this.httpDuration = new Histogram({
      name: 'tollgate_http_request_duration_seconds',
      help: 'REST request duration',
      labelNames: ['method', 'route'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [this.registry],
    });
    this.keyVerifications = new Counter({
      name: 'tollgate_key_verifications_total',
      help: 'API key and token verifications by result code',
      labelNames: ['result'],
      registers: [this.registry],
    });
    this.policyDecisions = new Counter({
      name: 'tollgate_policy_decisions_total',
      help: 'Policy verdicts by action and verdict code',
      labelNames: ['action', 'verdict'],
      registers: [this.registry],
    });
    this.auditEntries = new Counter({
      name: 'tollgate_audit_entries_total',
      help: 'Entries appended to the audit log',
      registers: [this.registry],
    });
    this.sipAuthFailures = new Counter({
      name: 'tollgate_sip_auth_failures_total',
      help: 'Failed SIP digest authentications by reason: response (wrong password), unknown-user, nonce, replay, qop-required, uri-mismatch, algorithm, malformed',
      labelNames: ['reason'],
      registers: [this.registry],
    });
    this.sipBlockedSources = new Counter({
      name: 'tollgate_sip_blocked_sources_total',
      help: 'SIP blocks started, by reason: brute-force (a username from one source), username-scan (a source trying many usernames), flood (a source over sip.challenges)',
      labelNames: ['reason'],
      registers: [this.registry],
    });
    this.sipDroppedRequests = new Counter({
      name: 'tollgate_sip_dropped_requests_total',
      help: 'SIP messages dropped without an answer because their source (or source and username) is blocked, by reason',
      labelNames: ['reason'],
      registers: [this.registry],
    });
    this.sipChallenges = new Counter({
      name: 'tollgate_sip_challenges_total',
      help: 'Requests without credentials: digest challenges sent (stateless), or not answered because the source was over sip.challenges.perSourcePerSec',
      labelNames: ['outcome'],
      registers: [this.registry],
    });
    this.sipOverloadRefusals = new Counter({
      name: 'tollgate_sip_overload_refusals_total',
      help: 'New INVITEs refused 503 by overload control, by the signal over its threshold: event-loop-delay, media-load, pending-invites',
      labelNames: ['signal'],
      registers: [this.registry],
    });
    this.sipOverloaded = new Gauge({
      name: 'tollgate_sip_overloaded',
      help: '1 while the last overload sample had a signal over its threshold (new INVITEs get 503), else 0',
      registers: [this.registry],
    });
    this.sipPendingInvites = new Gauge({
      name: 'tollgate_sip_pending_invites',
      help: 'INVITEs received and not yet answered finally, at the last overload sample',
      registers: [this.registry],
    });
    this.sipTransactions = new Gauge({
      name: 'tollgate_sip_transactions',
      help: 'SIP transactions held (server, client), at the last overload sample: unauthenticated requests hold none',
      labelNames: ['side'],
      registers: [this.registry],
    });
    this.sipOverloadEventLoopDelay = new Gauge({
      name: 'tollgate_sip_overload_event_loop_delay_seconds',
      help: 'p99 event-loop delay of the main thread over the last overload sample (threshold sip.overload.maxEventLoopDelayMs)',
      registers: [this.registry],
    });
    this.sipOverloadMediaLoad = new Gauge({
      name: 'tollgate_sip_overload_media_load',
      help: 'Event-loop utilisation of the busiest media worker over the last overload sample, 0..1 (threshold sip.overload.maxMediaLoad)',
      registers: [this.registry],
    });
    this.sipCalls = new Counter({
      name: 'tollgate_sip_calls_total',
      help: 'Inbound SIP calls by outcome: answered, ended, or the refusal code',
      labelNames: ['outcome'],
      registers: [this.registry],
    });
    this.sipConnectionsRefused = new Counter({
      name: 'tollgate_sip_connections_refused_total',
      help: 'SIP stream connections (TCP, TLS, WS, WSS) refused at accept, by reason: source-limit (sip.maxConnectionsPerSource) or limit (sip.maxConnections)',
      labelNames: ['transport', 'reason'],
      registers: [this.registry],
    });
    this.sipConnectionsClosed = new Counter({
      name: 'tollgate_sip_connections_closed_total',
      help: 'SIP stream connections closed by tollgate, by reason: handshake-timeout, message-timeout, idle-timeout, framing-error',
      labelNames: ['transport', 'reason'],
      registers: [this.registry],
    });
    this.activeCalls = new Gauge({
      name: 'tollgate_active_calls',
      help: 'Calls in progress on this node',
      registers: [this.registry],
    });
    this.agentStreams = new Gauge({
      name: 'tollgate_agent_streams',
      help: 'Agent WebSocket streams attached to calls on this node',
      labelNames: ['protocol'],
      registers: [this.registry],
    });
    this.agentConnects = new Counter({
      name: 'tollgate_agent_connects_total',
      help: 'Agent connections for calls by outcome (connected, attached, failed, timeout, refused)',
      labelNames: ['outcome'],
      registers: [this.registry],
    });
    this.agentForwardLatency = new Histogram({
      name: 'tollgate_agent_forward_latency_seconds',
      help: 'Time from an RTP packet\'s arrival to its audio frame being written to the agent socket',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05],
      registers: [this.registry],
    });
    this.agentFramesDropped = new Counter({
      name: 'tollgate_agent_frames_dropped_total',
      help: 'Audio not delivered: frames to a slow agent socket (backpressure) and queue overflow',
      labelNames: ['reason'],
      registers: [this.registry],
    });
    this.settlementsPending = new Gauge({
      name: 'tollgate_settlements_pending',
      help: 'Finished calls whose usage is not yet in the store (held in memory or journaled); above 0 for long means the store is unreachable',
      registers: [this.registry],
    });
    this.settlementFailures = new Counter({
      name: 'tollgate_settlement_failures_total',
      help: 'Failed settlement steps by stage: counters (memory/Redis), store, journal (local disk)',
      labelNames: ['stage'],
      registers: [this.registry],
    });
    this.activeLeases = new Gauge({
      name: 'tollgate_active_call_leases',
      help: 'Concurrency leases held by this node',
      registers: [this.registry],
    });
  }
}
