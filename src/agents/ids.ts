import { randomBytes } from 'node:crypto';

/**
 * Identifiers in Twilio's shape, so agent code written for Twilio Media Streams accepts them:
 * two letters and 32 lowercase hex digits.
 */
export const newCallSid = (): string => 'CA' + randomBytes(16).toString('hex');
export const newStreamSid = (): string => 'MZ' + randomBytes(16).toString('hex');
export const isCallSid = (s: string): boolean => /^CA[0-9a-f]{32}$/.test(s);
