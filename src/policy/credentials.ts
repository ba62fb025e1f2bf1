import type { Logger } from 'pino';
import { parseKeySecret } from '../keys/key-format.js';
import type { KeyService, VerifyFailure } from '../keys/key-service.js';
import { TokenService, type TokenVerifyResult } from '../keys/token-service.js';
import type { DenyCode } from './policy-engine.js';
import { keyPrincipal, tokenPrincipal, type Principal } from './principal.js';

type TokenFailure = Extract<TokenVerifyResult, { ok: false }>['code'];
/** Why a credential was refused. */
export type CredentialFailure = VerifyFailure | TokenFailure;
/** Every refusal a surface may have to put on the wire: credential failures and policy verdicts. */
export type RefusalCode = DenyCode | CredentialFailure;

export type CredentialResult =
  | { readonly ok: true; readonly principal: Principal }
  /** wellFormed: false when the credential is neither an API key nor a token in shape. */
  | { readonly ok: false; readonly code: CredentialFailure; readonly wellFormed: boolean };

/** Query parameters that would put a credential in a URL (and so in proxy and access logs). */
export const CREDENTIAL_PARAMS = ['key', 'api_key', 'apikey', 'token', 'access_token', 'secret', 'auth'];

/**
 * Resolves an API key or a short-lived token to a principal: the one check behind every
 * surface that takes a credential (REST, /v1/stream, Twilio-style Basic auth). Refusals of
 * well-formed credentials are logged with ids only.
 */
export class CredentialVerifier {
  constructor(
    private readonly keys: Pick<KeyService, 'verify'>,
    private readonly tokens: Pick<TokenService, 'verify'>,
    private readonly log: Logger,
  ) {}

  async verify(credential: string, ip: string): Promise<CredentialResult> {
    if (parseKeySecret(credential)) {
      const v = await this.keys.verify(credential);
      if (v.ok) return { ok: true, principal: keyPrincipal(v.key, v.secretId) };
      this.log.info({ code: v.code, keyId: v.keyId, ip }, 'authentication refused');
      return { ok: false, code: v.code, wellFormed: true };
    }
    if (TokenService.looksLikeToken(credential)) {
      const v = await this.tokens.verify(credential);
      if (v.ok) return { ok: true, principal: tokenPrincipal(v.key, v.claims) };
      this.log.info({ code: v.code, keyId: v.keyId, ip }, 'authentication refused');
      return { ok: false, code: v.code, wellFormed: true };
    }
    return { ok: false, code: 'UNAUTHENTICATED', wellFormed: false };
  }
}
