import type { Gateway } from '../main.js';
import { MediaEngine } from '../media/media-engine.js';
import { AgentBridge } from '../agents/agent-bridge.js';
import { MediaCallHandler } from './media-call-handler.js';
import { CallRecords } from './call-records.js';
import { startSip, type SipService } from './sip-service.js';
import { TestSink } from './test-sink.js';
import { TrunkService } from './trunk-service.js';
import { OutboundCalls } from './outbound-calls.js';
import { createStirVerifier } from '../stir/index.js';

export interface Voice {
  readonly sip: SipService;
  readonly media: MediaEngine;
  readonly handler: MediaCallHandler;
  readonly bridge: AgentBridge;
  readonly trunks: TrunkService;
  readonly outbound: OutboundCalls;
  readonly sink: TestSink;
  close(): Promise<void>;
}

/**
 * Starts the media workers, the agent bridge and SIP on top of them. close() stops SIP first
 * (BYEs), closes agent sockets, writes the last call records, then stops media.
 */
export async function startVoice(gw: Gateway): Promise<Voice> {
  const m = gw.config.media;
  let handler: MediaCallHandler | null = null;
  let bridge: AgentBridge | null = null;
  const media = new MediaEngine(
    { host: m.host, advertisedAddress: m.advertisedAddress, portMin: m.portMin, portMax: m.portMax, workers: m.workers, timeoutMs: m.timeoutSec * 1000, jitterTargetMs: m.jitterTargetMs },
    {
      onTimeout: (id) => handler?.onMediaTimeout(id),
      onLost: (ids) => handler?.onMediaLost(ids),
      onDtmf: (id, digit, durationMs) => {
        gw.log.info({ callId: id, digit, durationMs }, 'DTMF');
        bridge?.onDtmf(id, digit, durationMs);
      },
      onAgent: (msg) => bridge?.onMedia(msg),
    },
    gw.log.child({ component: 'media' }),
  );
  await media.start();
  bridge = new AgentBridge(gw, media);
  const a = gw.config.agents;
  handler = new MediaCallHandler(
    media,
    new CallRecords(gw.store, gw.log.child({ component: 'cdr' })),
    bridge,
    {
      codecs: m.codecs,
      suites: ['AES_CM_128_HMAC_SHA1_80', 'AES_CM_128_HMAC_SHA1_32', 'AEAD_AES_128_GCM'],
      agents: { maxQueueMs: a.maxQueueMs, onAgentClose: a.onAgentClose, closeToneMs: a.closeToneMs, fallbackToneMs: a.fallbackToneMs, warningBeforeEndSec: a.warningBeforeEndSec },
      notify: (type, keyId, data) => gw.webhooks.notify(type, keyId, data),
      stir: gw.config.stir.verify.enabled ? { verifier: createStirVerifier(gw.config), rejectFailed: gw.config.stir.verify.rejectFailed } : null,
    },
    gw.log.child({ component: 'calls' }),
  );
  let sip: SipService;
  try {
    sip = await startSip(gw, handler);
  } catch (err) {
    bridge.close();
    await media.stop();
    throw err;
  }
  const h = handler;
  const b = bridge;
  const sink = new TestSink(gw.log.child({ component: 'test-sink' }));
  await sink.start();
  const trunks = new TrunkService(gw.store, gw.audit, gw.counters, gw.config.secrets.masterKey, gw.log.child({ component: 'trunks' }));
  trunks.startHealthChecks((peer) => sip.server.uac.ping(peer));
  const outbound = new OutboundCalls(
    gw,
    sip.server,
    media,
    bridge,
    new CallRecords(gw.store, gw.log.child({ component: 'cdr' })),
    trunks,
    sink,
    { codecs: m.codecs, warningBeforeEndSec: a.warningBeforeEndSec, maxQueueMs: a.maxQueueMs, leaseTtlSec: gw.config.policy.leaseTtlSec, defaultAttestation: gw.config.stir.defaultAttestation },
    gw.log.child({ component: 'outbound' }),
  );
  bridge.setOutbound(outbound);
  return {
    sip,
    media,
    handler: h,
    bridge: b,
    trunks,
    outbound,
    sink,
    async close() {
      trunks.stop();
      outbound.close();
      await sip.close();
      b.close();
      await h.flush();
      await outbound.flush();
      await sink.stop();
      await media.stop();
    },
  };
}
