import { describe, it, expect } from 'vitest';
import { isCallSid, newCallSid, newStreamSid } from './ids.js';

describe('call and stream SIDs', () => {
  it('have Twilio’s shape: CA / MZ and 32 lowercase hex digits', () => {
    for (let i = 0; i < 50; i++) {
      expect(newCallSid()).toMatch(/^CA[0-9a-f]{32}$/);
      expect(newStreamSid()).toMatch(/^MZ[0-9a-f]{32}$/);
    }
  });

  it('are random', () => {
    const sids = new Set(Array.from({ length: 1000 }, newCallSid));
    expect(sids.size).toBe(1000);
    expect(newStreamSid()).not.toBe(newStreamSid());
  });

  it('isCallSid accepts exactly that shape', () => {
    expect(isCallSid(newCallSid())).toBe(true);
    expect(isCallSid('CA0123456789abcdef0123456789abcdef')).toBe(true);
    expect(isCallSid('CA0123456789ABCDEF0123456789ABCDEF')).toBe(false); // uppercase hex
    expect(isCallSid('MZ0123456789abcdef0123456789abcdef')).toBe(false);
    expect(isCallSid('ca0123456789abcdef0123456789abcdef')).toBe(false);
    expect(isCallSid('CA0123456789abcdef0123456789abcde')).toBe(false); // 31 digits
    expect(isCallSid('CA0123456789abcdef0123456789abcdef0')).toBe(false); // 33 digits
    expect(isCallSid('CA0123456789abcdef0123456789abcdeg')).toBe(false);
    expect(isCallSid(' CA0123456789abcdef0123456789abcdef')).toBe(false);
    expect(isCallSid('')).toBe(false);
  });
});
