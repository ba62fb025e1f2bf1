// Server-side requests: the egress guard every outbound HTTP and WebSocket request goes through (docs/security.md).
export { EgressGuard, EgressError, EGRESS_FAILURE_TEXT, pinnedLookup, systemResolver } from './egress-guard.js';
export type { EgressTrust, EgressVerdict, EgressRefusal, EgressFailure, EgressRequestInit, EgressResponse, EgressGuardOptions, Resolver, ResolvedAddress } from './egress-guard.js';
export { parseCidr, parseIp, parseIpv4Loose, formatIp, unmapIpv4, inCidr, type Cidr, type IpAddress } from './ip-address.js';
