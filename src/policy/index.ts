export * from './counters.js';
export * from './memory-counters.js';
export * from './policy-engine.js';
export * from './principal.js';
export * from './source-address.js';
export * from './budget-period.js';
export * from './digest-nonce-counts.js';
