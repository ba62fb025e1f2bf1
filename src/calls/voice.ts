import type { Gateway } from '../main.js';
import { MediaEngine } from '../media/media-engine.js';
import { MediaCallHandler } from './media-call-handler.js';
import { startSip, type SipService } from './sip-service.js';

export interface Voice {
  readonly sip: SipService;
  readonly media: MediaEngine;
  readonly handler: MediaCallHandler;
  close(): Promise<void>;
}

/** Starts the media workers, then SIP on top of them; close() stops SIP first (BYEs), then media. */
export async function startVoice(gw: Gateway): Promise<Voice> {
  const m = gw.config.media;
  let handler: MediaCallHandler | null = null;
  const media = new MediaEngine(
    { host: m.host, advertisedAddress: m.advertisedAddress, portMin: m.portMin, portMax: m.portMax, workers: m.workers, timeoutMs: m.timeoutSec * 1000, jitterTargetMs: m.jitterTargetMs },
    {
      onTimeout: (id) => handler?.onMediaTimeout(id),
      onLost: (ids) => handler?.onMediaLost(ids),
      onDtmf: (id, digit, durationMs) => gw.log.info({ callId: id, digit, durationMs }, 'DTMF'),
    },
    gw.log.child({ component: 'media' }),
  );
  await media.start();
  handler = new MediaCallHandler(media, { codecs: m.codecs, suites: ['AES_CM_128_HMAC_SHA1_80', 'AES_CM_128_HMAC_SHA1_32', 'AEAD_AES_128_GCM'] }, gw.log.child({ component: 'calls' }));
  let sip: SipService;
  try {
    sip = await startSip(gw, handler);
  } catch (err) {
    await media.stop();
    throw err;
  }
  return {
    sip,
    media,
    handler,
    async close() {
      await sip.close();
      await media.stop();
    },
  };
}
