// STIR/SHAKEN: signing outbound INVITEs and verifying inbound ones (docs/stir.md).
export { ATTESTATIONS, PassportSigner, canonicalTn, passportClaimsJson, passportHeaderJson, signPassport, type Attestation, type PassportClaims } from './passport.js';
export { identityHeader, parseIdentityHeader, type ParsedIdentity } from './identity-header.js';
export { MAX_IDENTITY_HEADERS, STIR_FAILURES, StirVerifier, createStirVerifier, sipResponseFor, X5U_REFUSED, X5U_UNAVAILABLE, type StirFailure, type StirVerdict, type StirVerifierOptions, type Verstat, type VerifyAllInput, type VerifyInput } from './verifier.js';
export { guardedX5uFetcher, X5uFetchError, type CertFetcher, type CertFetchOptions, type X5uFetchFailure } from './x5u-fetcher.js';
export { hasTnAuthList, parseCertificates, tnAuthListSpcs, verifyChain, type ChainVerdict } from './certificate-chain.js';
export { DEV_FILES, attestationFor, devStirDir, loadStirSigning, loadStirSigningMaterial, loadTrustAnchors, stirX5u, type StirLog, type StirSigning, type StirSigningMaterial } from './cert-store.js';
export { createDevStirCertificates, type DevStirCertificates } from './dev-certs.js';
