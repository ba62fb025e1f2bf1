import { describe, it, expect } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { DigestAuthenticator, digestResponse, type DigestAlgorithm } from './digest-auth.js';
import { AuthBlocker } from './auth-blocker.js';

const realm = 'tollgate';
const password = 'tg_live_secret-of-the-key';
const username = 'key_abc';
const ha1 = (alg: DigestAlgorithm) => {
  // Computed independently of the module under test.
  return alg === 'MD5'
    ? createHash('md5').update(`${username}:${realm}:${password}`).digest('hex')
    : createHash('sha256').update(`${username}:${realm}:${password}`).digest('hex');
};
const lookup = (u: string, alg: DigestAlgorithm) => Promise.resolve(u === username ? [ha1(alg)] : null);

function nonceOf(challenge: string): string {
  return /nonce="([^"]+)"/.exec(challenge)![1]!;
}

function credentials(p: { alg: DigestAlgorithm; nonce: string; nc?: string; cnonce?: string; pass?: string; uri?: string; realmOverride?: string; method?: string }) {
  const uri = p.uri ?? 'sip:+14155550100@127.0.0.1';
  const nc = p.nc ?? '00000001';
  const cnonce = p.cnonce ?? 'abcdef01';
  const response = digestResponse({ algorithm: p.alg, username, realm: p.realmOverride ?? realm, password: p.pass ?? password, method: p.method ?? 'INVITE', uri, nonce: p.nonce, nc, cnonce, qop: 'auth' });
  return `Digest username="${username}", realm="${p.realmOverride ?? realm}", nonce="${p.nonce}", uri="${uri}", response="${response}", algorithm=${p.alg}, qop=auth, nc=${nc}, cnonce="${cnonce}"`;
}

describe('SIP digest authentication (RFC 3261 §22, RFC 7616/8760)', () => {
  const make = (now = () => Date.now()) => new DigestAuthenticator({ realm, nonceKey: randomBytes(32), nonceTtlMs: 300_000 }, now);

  it('challenges with SHA-256 first, then MD5, qop=auth and one shared nonce', () => {
    const [a, b] = make().challenges();
    expect(a).toMatch(/^Digest realm="tollgate", nonce="[^"]+", algorithm=SHA-256, qop="auth"$/);
    expect(b).toMatch(/algorithm=MD5/);
    expect(nonceOf(a!)).toBe(nonceOf(b!));
  });

  it.each(['SHA-256', 'MD5'] as const)('accepts a correct %s response', async (alg) => {
    const d = make();
    const nonce = nonceOf(d.challenges()[0]!);
    expect(await d.verify('INVITE', [credentials({ alg, nonce })], lookup)).toEqual({ ok: true, username, algorithm: alg });
  });

  it('refuses a wrong password, an unknown user, a forged nonce and a response for another method', async () => {
    const d = make();
    const nonce = nonceOf(d.challenges()[0]!);
    expect(await d.verify('INVITE', [credentials({ alg: 'MD5', nonce, pass: 'wrong' })], lookup)).toMatchObject({ ok: false, reason: 'invalid' });
    expect(await d.verify('INVITE', [credentials({ alg: 'MD5', nonce }).replace(username, 'key_other')], lookup)).toMatchObject({ ok: false, reason: 'invalid' });
    const forged = Buffer.alloc(32, 1).toString('base64url');
    expect(await d.verify('INVITE', [credentials({ alg: 'MD5', nonce: forged })], lookup)).toMatchObject({ ok: false, reason: 'invalid' });
    expect(await d.verify('BYE', [credentials({ alg: 'MD5', nonce })], lookup)).toMatchObject({ ok: false, reason: 'invalid' });
    // A nonce from another node's key does not verify.
    const other = nonceOf(make().challenges()[0]!);
    expect(await d.verify('INVITE', [credentials({ alg: 'MD5', nonce: other })], lookup)).toMatchObject({ ok: false, reason: 'invalid' });
  });

  it('reports missing credentials, or credentials for another realm, as "missing" (challenge, not failure)', async () => {
    const d = make();
    expect(await d.verify('INVITE', [], lookup)).toEqual({ ok: false, reason: 'missing' });
    const nonce = nonceOf(d.challenges()[0]!);
    expect(await d.verify('INVITE', [credentials({ alg: 'MD5', nonce, realmOverride: 'elsewhere' })], lookup)).toEqual({ ok: false, reason: 'missing' });
  });

  it('answers "stale" for the right password on an expired nonce (RFC 7616 §3.3)', async () => {
    let now = 1_000_000;
    const d = make(() => now);
    const nonce = nonceOf(d.challenges()[0]!);
    now += 300_001;
    expect(await d.verify('INVITE', [credentials({ alg: 'SHA-256', nonce })], lookup)).toEqual({ ok: false, reason: 'stale', username });
    expect(d.challenges(true)[0]).toContain('stale=TRUE');
  });

  it('refuses a replayed nonce count', async () => {
    const d = make();
    const nonce = nonceOf(d.challenges()[0]!);
    const c = credentials({ alg: 'MD5', nonce, nc: '00000001' });
    expect((await d.verify('INVITE', [c], lookup)).ok).toBe(true);
    expect(await d.verify('INVITE', [c], lookup)).toMatchObject({ ok: false, reason: 'invalid' });
    expect((await d.verify('INVITE', [credentials({ alg: 'MD5', nonce, nc: '00000002' })], lookup)).ok).toBe(true);
  });

  it('accepts any live HA1 during a rotation overlap', async () => {
    const d = make();
    const nonce = nonceOf(d.challenges()[0]!);
    const both = () => Promise.resolve(['0'.repeat(32), ha1('MD5')]);
    expect((await d.verify('INVITE', [credentials({ alg: 'MD5', nonce })], both)).ok).toBe(true);
  });
});

describe('brute-force blocking (pike-like)', () => {
  it('blocks a source after maxFailures within the window, for blockMs, and lets others through', () => {
    let now = 0;
    const blocked: string[] = [];
    const b = new AuthBlocker({ maxFailures: 3, windowMs: 1000, blockMs: 5000 }, () => now, (ip) => blocked.push(ip));
    expect(b.fail('192.0.2.1')).toBe(false);
    expect(b.fail('192.0.2.1')).toBe(false);
    expect(b.isBlocked('192.0.2.1')).toBe(false);
    expect(b.fail('192.0.2.1')).toBe(true);
    expect(b.isBlocked('192.0.2.1')).toBe(true);
    expect(b.isBlocked('192.0.2.2')).toBe(false);
    expect(blocked).toEqual(['192.0.2.1']);
    now += 5001;
    expect(b.isBlocked('192.0.2.1')).toBe(false);
  });

  it('forgets failures outside the window and after a success', () => {
    let now = 0;
    const b = new AuthBlocker({ maxFailures: 2, windowMs: 1000, blockMs: 5000 }, () => now);
    b.fail('a');
    now += 1500;
    expect(b.fail('a')).toBe(false);
    b.succeed('a');
    expect(b.fail('a')).toBe(false);
  });
});
