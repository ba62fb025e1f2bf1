import { describe, it, expect } from 'vitest';
import { accountSidFor, signingSecretFor } from './key-identity.js';

describe('accountSidFor', () => {
  it('is AC and 32 lowercase hex digits', () => {
    expect(accountSidFor('key_abc123')).toMatch(/^AC[0-9a-f]{32}$/);
    expect(accountSidFor('')).toMatch(/^AC[0-9a-f]{32}$/);
  });

  it('is stable for a key (pinned: agents keep it in their configuration)', () => {
    expect(accountSidFor('key_abc123')).toBe(accountSidFor('key_abc123'));
    expect(accountSidFor('key_abc123')).toBe('AC6713a996bd2aaac340ad485419914ea0');
  });

  it('differs between keys', () => {
    const ids = ['key_a', 'key_b', 'key_A', 'key_a ', 'key_abc123', 'k', ''];
    expect(new Set(ids.map(accountSidFor)).size).toBe(ids.length);
  });
});

describe('signingSecretFor', () => {
  const master = Buffer.alloc(32, 7);

  it('is whsec_ and 32 bytes in base64url', () => {
    const s = signingSecretFor(master, 'key_abc123');
    expect(s).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(s.slice('whsec_'.length), 'base64url')).toHaveLength(32);
  });

  it('is deterministic per (master key, key id), so every node derives the same secret (pinned)', () => {
    expect(signingSecretFor(master, 'key_abc123')).toBe(signingSecretFor(Buffer.alloc(32, 7), 'key_abc123'));
    expect(signingSecretFor(master, 'key_abc123')).toBe('whsec_kuv8iEerVxzVLxAqT-oMECbJSmtHO_6_cRwWWZP9rrU');
  });

  it('differs across key ids and across master keys', () => {
    const a = signingSecretFor(master, 'key_a');
    expect(signingSecretFor(master, 'key_b')).not.toBe(a);
    expect(signingSecretFor(master, 'key_A')).not.toBe(a);
    const otherMaster = Buffer.from(master);
    otherMaster[31] = otherMaster[31]! ^ 1;
    expect(signingSecretFor(otherMaster, 'key_a')).not.toBe(a);
  });
});
