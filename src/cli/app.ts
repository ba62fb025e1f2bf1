import type { Logger } from 'pino';
import type { Config } from '../config/index.js';
import type { Store } from '../store/store.js';
import type { Counters } from '../policy/counters.js';
import type { PolicyEngine } from '../policy/policy-engine.js';
import type { AuditCheckpoints, AuditLog } from '../audit/index.js';
import type { KeyService } from '../keys/key-service.js';
import type { TokenService } from '../keys/token-service.js';
import type { NumberService } from '../calls/number-service.js';
import type { WebhookService } from '../webhooks/index.js';

/** What the one-shot commands use: the configured store and the services over it; no listeners. */
export interface CliServices {
  readonly config: Config;
  readonly log: Logger;
  readonly store: Store;
  readonly counters: Counters;
  readonly audit: AuditLog;
  /** Signed checkpoints of the audit chain's head (null: no checkpoint key). */
  readonly checkpoints: AuditCheckpoints | null;
  readonly keys: KeyService;
  readonly tokens: TokenService;
  readonly policy: PolicyEngine;
  readonly numbers: NumberService;
  readonly webhooks: WebhookService;
  close(): Promise<void>;
}

/** What the CLI asks of the composition root (src/main.ts), which builds the object graph. */
export interface CliApp {
  /** The services of a one-shot command, against the configured store. */
  open(config: Config): Promise<CliServices>;
  /** Runs the gateway until SIGTERM or SIGINT (then drains). */
  serve(config: Config): Promise<void>;
}
