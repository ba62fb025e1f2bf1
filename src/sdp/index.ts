export * from './sdp-offer-answer.js';
export * from './sdp-crypto.js';
