import type { Gateway } from './core.js';
import { MediaEngine } from './media/media-engine.js';
import { AgentBridge } from './agents/agent-bridge.js';
import { keyPrincipal } from './policy/principal.js';
import { CallRecords } from './calls/call-records.js';
import { CallRegistry } from './calls/call-registry.js';
import type { Call, CallResources, EndReason } from './calls/call.js';
import { InboundCalls } from './calls/inbound-calls.js';
import { startSip, type SipService } from './sip-service.js';
import { TestSink } from './calls/test-sink.js';
import { TrunkService } from './calls/trunk-service.js';
import { OutboundCalls } from './calls/outbound-calls.js';
import type { StirVerifier } from './stir/index.js';

export interface Voice {
  readonly sip: SipService;
  readonly media: MediaEngine;
  readonly calls: CallRegistry;
  readonly bridge: AgentBridge;
  readonly trunks: TrunkService;
  readonly outbound: OutboundCalls;
  readonly sink: TestSink;
  /** Refuse new calls of every kind from now on; running calls go on. */
  drain(): void;
  close(): Promise<void>;
}

/** Why a key change ends a call, from the policy's verdict on the key as it is now. */
function endReasonFor(code: string): EndReason {
  switch (code) {
    case 'KEY_REVOKED':
      return 'key-revoked';
    case 'KEY_QUARANTINED':
      return 'key-quarantined';
    case 'KEY_EXPIRED':
      return 'key-expired';
    default:
      return 'key-policy-changed';
  }
}

/**
 * Starts the media workers, the agent bridge, the call registry and SIP on top of them.
 * `stirVerifier` verifies inbound Identity headers (null: stir.verify.enabled is false); it is
 * built, trust file read, before anything here starts, so a bad trust file never leaves
 * workers or sockets behind. close() ends every call (BYE or CANCEL, agents stopped,
 * settlements and records written), then stops SIP and media. A failure part-way stops what
 * had started.
 */
export async function startVoice(gw: Gateway, opts: { stirVerifier: StirVerifier | null }): Promise<Voice> {
  const m = gw.config.media;
  const late: Late = { calls: null, bridge: null };
  const media = new MediaEngine(
    { host: m.host, advertisedAddress: m.advertisedAddress, portMin: m.portMin, portMax: m.portMax, workers: m.workers, timeoutMs: m.timeoutSec * 1000, jitterTargetMs: m.jitterTargetMs },
    {
      onTimeout: (id) => late.calls?.end(id, 'media-timeout', 'gateway'),
      onLost: (ids) => {
        for (const id of ids) late.calls?.end(id, 'media-lost', 'gateway');
      },
      onDtmf: (id, digit, durationMs) => {
        gw.log.info({ callId: id, digit, durationMs }, 'DTMF');
        late.bridge?.onDtmf(id, digit, durationMs);
      },
      onAgent: (msg) => late.bridge?.onMedia(msg),
    },
    gw.log.child({ component: 'media' }),
  );
  await media.start();
  try {
    return await startOnMedia(gw, media, opts.stirVerifier, late);
  } catch (err) {
    await media.stop();
    throw err;
  }
}

/** The late-bound parts the media engine's callbacks reach (they exist once startOnMedia made them). */
interface Late {
  calls: CallRegistry | null;
  bridge: AgentBridge | null;
}

async function startOnMedia(gw: Gateway, media: MediaEngine, stirVerifier: StirVerifier | null, late: Late): Promise<Voice> {
  const m = gw.config.media;
  const a = gw.config.agents;
  const b = new AgentBridge({
    config: { agents: a, masterKey: gw.config.secrets.masterKey, tokenMaxTtlSec: gw.config.tokens.maxTtlSec, allowHttpWebhooks: gw.config.webhooks.allowHttp },
    media,
    credentials: gw.credentials,
    policy: gw.policy,
    keys: gw.keys,
    tokens: gw.tokens,
    egress: gw.egress,
    metrics: gw.metrics,
    log: gw.log,
  });
  late.bridge = b;
  const records = new CallRecords(gw.store, gw.log.child({ component: 'cdr' }));
  const resources: CallResources = {
    media,
    agents: b,
    renew: (grant) => gw.policy.renew(grant),
    freeSlot: (grant) => gw.policy.freeSlot(grant),
    complete: (grant, seconds, record) => gw.policy.complete(grant, seconds, record ?? undefined),
    release: (grant) => gw.policy.release(grant),
    records,
    notify: (type, keyId, data) => gw.webhooks.notify(type, keyId, data),
    renewEveryMs: Math.max(1000, (gw.config.policy.leaseTtlSec * 1000) / 3),
    log: gw.log.child({ component: 'calls' }),
    now: Date.now,
  };
  // A live call may go on under its key as the key is now (after a revoke, quarantine, expiry or policy change)?
  const standing = async (call: Call): Promise<EndReason | null> => {
    const key = await gw.keys.getCurrent(call.keyId);
    if (!key) return 'key-revoked';
    const v = gw.policy.recheck({
      principal: keyPrincipal(key),
      action: call.direction === 'inbound' ? 'call.inbound' : 'call.outbound',
      scope: call.direction === 'inbound' ? 'calls:inbound' : 'calls:outbound',
      // The source and destination were checked at admission; a changed allowlist or geofence
      // applies from the next call (the carrier's address of a running call does not change).
      sourceIp: null,
      ...(call.direction === 'outbound' ? { destination: call.to } : {}),
    });
    return v.ok ? null : endReasonFor(v.code);
  };
  const registry = new CallRegistry(resources, standing, { onKeyChange: gw.config.policy.liveCalls }, gw.log.child({ component: 'calls' }));
  late.calls = registry;
  // Every key change this node learns of (its own, another node's over the bus, the CLI's through the store).
  const unsubscribe = gw.keys.onChange((keyId) => void registry.keyChanged(keyId));
  const notify = (type: 'limit.exceeded' | 'identity.failed', keyId: string, data: Record<string, unknown>): void => gw.webhooks.notify(type, keyId, data);
  const inbound = new InboundCalls(
    {
      keys: gw.keys,
      policy: gw.policy,
      numbers: gw.numbers,
      registry,
      media,
      bridge: b,
      stir: stirVerifier ? { verifier: stirVerifier, rejectFailed: gw.config.stir.verify.rejectFailed } : null,
      notify,
      log: gw.log.child({ component: 'calls' }),
    },
    {
      codecs: m.codecs,
      suites: ['AES_CM_128_HMAC_SHA1_80', 'AES_CM_128_HMAC_SHA1_32', 'AEAD_AES_128_GCM'],
      sendBeforeLatch: m.sendBeforeLatch,
      agents: { maxQueueMs: a.maxQueueMs, onAgentClose: a.onAgentClose, closeToneMs: a.closeToneMs, fallbackToneMs: a.fallbackToneMs, warningBeforeEndSec: a.warningBeforeEndSec, progress: a.progress },
    },
  );
  let sip: SipService;
  try {
    sip = await startSip(gw, inbound, media);
  } catch (err) {
    unsubscribe();
    b.close();
    throw err;
  }
  const sink = new TestSink(gw.log.child({ component: 'test-sink' }));
  try {
    await sink.start();
  } catch (err) {
    await sip.close();
    unsubscribe();
    b.close();
    throw err;
  }
  const trunks = new TrunkService(gw.store, gw.audit, gw.counters, gw.config.secrets.masterKey, gw.log.child({ component: 'trunks' }));
  trunks.startHealthChecks((peer) => sip.server.uac.ping(peer));
  const outbound = new OutboundCalls(
    { numbers: gw.numbers, policy: gw.policy, audit: gw.audit, egress: gw.egress, notify: (type, keyId, data) => gw.webhooks.notify(type, keyId, data), registry, uac: sip.server.uac, media, bridge: b, trunks, sink, log: gw.log.child({ component: 'outbound' }) },
    { codecs: m.codecs, warningBeforeEndSec: a.warningBeforeEndSec, maxQueueMs: a.maxQueueMs, defaultAttestation: gw.config.stir.defaultAttestation },
  );
  b.setOutbound(outbound);
  return {
    sip,
    media,
    calls: registry,
    bridge: b,
    trunks,
    outbound,
    sink,
    drain() {
      registry.drain();
      sip.drain();
    },
    async close() {
      registry.drain();
      unsubscribe();
      trunks.stop();
      // Every call ends here (BYE, CANCEL or a refusal), while SIP can still send them.
      await registry.endAll('shutdown');
      await sip.close();
      b.close();
      await sink.stop();
      await media.stop();
    },
  };
}
