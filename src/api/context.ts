import type { Logger } from 'pino';
import type { Config } from '../config/index.js';
import type { Metrics } from '../observability/metrics.js';
import type { Store } from '../store/store.js';
import type { Counters } from '../policy/counters.js';
import type { PolicyEngine } from '../policy/policy-engine.js';
import type { CredentialVerifier } from '../policy/credentials.js';
import type { AuditCheckpoints, AuditLog } from '../audit/index.js';
import type { KeyService } from '../keys/key-service.js';
import type { TokenService } from '../keys/token-service.js';
import type { NumberService } from '../calls/number-service.js';
import type { WebhookService } from '../webhooks/index.js';

/**
 * What the REST API uses, handed over by the composition root (src/main.ts). Each route group
 * takes only its part (`Pick<ApiContext, …>`), so what a route can reach is written in its
 * signature.
 */
export interface ApiContext {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly store: Store;
  readonly counters: Counters;
  readonly audit: AuditLog;
  /** Signed checkpoints of the audit chain's head (null: no checkpoint key). */
  readonly checkpoints: AuditCheckpoints | null;
  readonly keys: KeyService;
  readonly tokens: TokenService;
  readonly policy: PolicyEngine;
  readonly credentials: CredentialVerifier;
  readonly numbers: NumberService;
  readonly webhooks: WebhookService;
}

/** What every authenticated route needs: credentials resolved, then the policy asked. */
export type AuthContext = Pick<ApiContext, 'credentials' | 'policy'>;
