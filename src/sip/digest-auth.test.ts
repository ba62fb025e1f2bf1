import { describe, it, expect } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { DigestAuthenticator, digestResponse, type DigestAlgorithm } from './digest-auth.js';
import { AuthBlocker } from './auth-blocker.js';
import type { NonceCountStore } from './call-policy.js';

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

const URI = 'sip:+14155550100@127.0.0.1';

function credentials(p: { alg: DigestAlgorithm; nonce: string; nc?: string; cnonce?: string; pass?: string; uri?: string; realmOverride?: string; method?: string; noQop?: boolean }) {
  const uri = p.uri ?? URI;
  const nc = p.nc ?? '00000001';
  const cnonce = p.cnonce ?? 'abcdef01';
  const base = { algorithm: p.alg, username, realm: p.realmOverride ?? realm, password: p.pass ?? password, method: p.method ?? 'INVITE', uri, nonce: p.nonce };
  if (p.noQop) {
    return `Digest username="${username}", realm="${p.realmOverride ?? realm}", nonce="${p.nonce}", uri="${uri}", response="${digestResponse(base)}", algorithm=${p.alg}`;
  }
  const response = digestResponse({ ...base, nc, cnonce, qop: 'auth' });
  return `Digest username="${username}", realm="${p.realmOverride ?? realm}", nonce="${p.nonce}", uri="${uri}", response="${response}", algorithm=${p.alg}, qop=auth, nc=${nc}, cnonce="${cnonce}"`;
}

/** The nonce-count memory as the counters backend keeps it (one per cluster), in a Map. */
function sharedNonceCounts(): NonceCountStore & { claims: number } {
  const seen = new Set<string>();
  return {
    claims: 0,
    claim(nonce, nc) {
      this.claims++;
      const k = `${nonce}:${nc}`;
      if (seen.has(k)) return Promise.resolve(false);
      seen.add(k);
      return Promise.resolve(true);
    },
  };
}

describe('SIP digest authentication (RFC 3261 §22, RFC 7616/8760)', () => {
  const nonceKey = randomBytes(32);
  const make = (o: { now?: () => number; counts?: NonceCountStore; allowNoQop?: boolean; key?: Buffer } = {}) =>
    new DigestAuthenticator({ realm, nonceKey: o.key ?? nonceKey, nonceTtlMs: 30_000, nonceCounts: o.counts ?? sharedNonceCounts(), ...(o.allowNoQop ? { allowNoQop: true } : {}) }, o.now ?? Date.now);
  const verify = (d: DigestAuthenticator, header: string, method = 'INVITE', uri = URI) => d.verify(method, uri, [header], lookup);

  it('challenges with SHA-256 first, then MD5, qop=auth and one shared nonce', () => {
    const [a, b] = make().challenges();
    expect(a).toMatch(/^Digest realm="tollgate", nonce="[^"]+", algorithm=SHA-256, qop="auth"$/);
    expect(b).toMatch(/algorithm=MD5/);
    expect(nonceOf(a!)).toBe(nonceOf(b!));
  });

  it.each(['SHA-256', 'MD5'] as const)('accepts a correct %s response', async (alg) => {
    const d = make();
    const nonce = nonceOf(d.challenges()[0]!);
    expect(await verify(d, credentials({ alg, nonce }))).toEqual({ ok: true, username, algorithm: alg });
  });

  it('refuses a wrong password, an unknown user, a forged nonce and a response for another method, each saying why', async () => {
    const d = make();
    const nonce = nonceOf(d.challenges()[0]!);
    expect(await verify(d, credentials({ alg: 'MD5', nonce, pass: 'wrong' }))).toEqual({ ok: false, reason: 'invalid', username, failure: 'response' });
    expect(await verify(d, credentials({ alg: 'MD5', nonce }).replace(username, 'key_other'))).toMatchObject({ reason: 'invalid', failure: 'unknown-user' });
    const forged = Buffer.alloc(32, 1).toString('base64url');
    expect(await verify(d, credentials({ alg: 'MD5', nonce: forged }))).toMatchObject({ reason: 'invalid', failure: 'nonce' });
    expect(await verify(d, credentials({ alg: 'MD5', nonce }), 'BYE')).toMatchObject({ reason: 'invalid', failure: 'response' });
    // A nonce from another deployment's key does not verify.
    const other = nonceOf(make({ key: randomBytes(32) }).challenges()[0]!);
    expect(await verify(d, credentials({ alg: 'MD5', nonce: other }))).toMatchObject({ reason: 'invalid', failure: 'nonce' });
  });

  it('reports missing credentials, or credentials for another realm, as "missing" (challenge, not failure)', async () => {
    const d = make();
    expect(await d.verify('INVITE', URI, [], lookup)).toEqual({ ok: false, reason: 'missing' });
    const nonce = nonceOf(d.challenges()[0]!);
    expect(await verify(d, credentials({ alg: 'MD5', nonce, realmOverride: 'elsewhere' }))).toEqual({ ok: false, reason: 'missing' });
  });

  it('answers "stale" for the right password on an expired nonce, and "invalid" for a wrong one (RFC 7616 §3.3)', async () => {
    let now = 1_000_000;
    const d = make({ now: () => now });
    const nonce = nonceOf(d.challenges()[0]!);
    now += 30_001;
    expect(await verify(d, credentials({ alg: 'SHA-256', nonce }))).toEqual({ ok: false, reason: 'stale', username });
    expect(await verify(d, credentials({ alg: 'SHA-256', nonce, pass: 'wrong' }))).toMatchObject({ reason: 'invalid', failure: 'response' });
    expect(d.challenges(true)[0]).toContain('stale=TRUE');
  });

  it('refuses a replayed nonce count (RFC 7616 §3.4.5), and accepts the next count', async () => {
    const d = make();
    const nonce = nonceOf(d.challenges()[0]!);
    const c = credentials({ alg: 'MD5', nonce, nc: '00000001' });
    expect((await verify(d, c)).ok).toBe(true);
    expect(await verify(d, c)).toMatchObject({ reason: 'invalid', failure: 'replay' });
    expect((await verify(d, credentials({ alg: 'MD5', nonce, nc: '00000002' }))).ok).toBe(true);
  });

  it('refuses on one node a (nonce, nc) another node accepted, when they share the nonce-count memory', async () => {
    const counts = sharedNonceCounts();
    const a = make({ counts });
    const b = make({ counts });
    const nonce = nonceOf(a.challenges()[0]!);
    const c = credentials({ alg: 'MD5', nonce });
    expect((await verify(a, c)).ok).toBe(true);
    expect(await verify(b, c)).toMatchObject({ reason: 'invalid', failure: 'replay' });
  });

  it('claims a nonce count only after the response matched: a guesser cannot use up a client\'s counts', async () => {
    const counts = sharedNonceCounts();
    const d = make({ counts });
    const nonce = nonceOf(d.challenges()[0]!);
    await verify(d, credentials({ alg: 'MD5', nonce, pass: 'wrong' }));
    expect(counts.claims).toBe(0);
    expect((await verify(d, credentials({ alg: 'MD5', nonce }))).ok).toBe(true);
  });

  it('fails closed when the nonce-count memory is unreachable (Redis down): the request is not accepted', async () => {
    const d = make({ counts: { claim: () => Promise.reject(new Error('counters down')) } });
    const nonce = nonceOf(d.challenges()[0]!);
    await expect(verify(d, credentials({ alg: 'MD5', nonce }))).rejects.toThrow('counters down');
  });

  it('requires qop=auth when the challenge offered it: an answer without qop is refused, even with the right password', async () => {
    const d = make();
    const nonce = nonceOf(d.challenges()[0]!);
    expect(await verify(d, credentials({ alg: 'MD5', nonce, noQop: true }))).toEqual({ ok: false, reason: 'invalid', username, failure: 'qop-required' });
  });

  it('with allowNoQop (legacy clients), accepts an answer without qop once per nonce: its replay is refused', async () => {
    const d = make({ allowNoQop: true });
    const nonce = nonceOf(d.challenges()[0]!);
    const c = credentials({ alg: 'MD5', nonce, noQop: true });
    expect((await verify(d, c)).ok).toBe(true);
    expect(await verify(d, c)).toMatchObject({ reason: 'invalid', failure: 'replay' });
  });

  it('binds the digest uri to the Request-URI (RFC 7616 §3.4.6): an answer for one number cannot call another', async () => {
    const d = make();
    const nonce = nonceOf(d.challenges()[0]!);
    const forOther = credentials({ alg: 'MD5', nonce, uri: 'sip:+14155550199@127.0.0.1' });
    expect(await verify(d, forOther)).toEqual({ ok: false, reason: 'invalid', username, failure: 'uri-mismatch' });
    // Compared as the exact string of the request line: no normalisation.
    expect(await verify(d, credentials({ alg: 'MD5', nonce }), 'INVITE', 'sip:+14155550100@127.0.0.1;transport=udp')).toMatchObject({ failure: 'uri-mismatch' });
    expect((await verify(d, credentials({ alg: 'MD5', nonce }))).ok).toBe(true);
  });

  it('refuses malformed answers: a qop other than auth, an nc that is not 8 hex digits, a missing cnonce', async () => {
    const d = make();
    const nonce = nonceOf(d.challenges()[0]!);
    const good = credentials({ alg: 'MD5', nonce });
    expect(await verify(d, good.replace('qop=auth', 'qop=auth-int'))).toMatchObject({ failure: 'malformed' });
    expect(await verify(d, good.replace('nc=00000001', 'nc=1'))).toMatchObject({ failure: 'malformed' });
    expect(await verify(d, good.replace(/, cnonce="[^"]+"/, ''))).toMatchObject({ failure: 'malformed' });
    expect(await verify(d, good.replace('algorithm=MD5', 'algorithm=SHA-512'))).toMatchObject({ failure: 'algorithm' });
  });

  it('accepts any live HA1 during a rotation overlap', async () => {
    const d = make();
    const nonce = nonceOf(d.challenges()[0]!);
    const both = () => Promise.resolve(['0'.repeat(32), ha1('MD5')]);
    expect((await d.verify('INVITE', URI, [credentials({ alg: 'MD5', nonce })], both)).ok).toBe(true);
  });
});

describe('brute-force blocking by (source, username)', () => {
  const opts = { maxFailures: 3, windowMs: 1000, blockMs: 5000, maxUsernamesPerSource: 3 };

  it('blocks a username from a source after maxFailures within the window, for blockMs; the same address with another username is not blocked', () => {
    let now = 0;
    const blocked: string[] = [];
    const b = new AuthBlocker(opts, () => now, (ip, user, why) => blocked.push(`${ip} ${user} ${why}`));
    expect(b.fail('192.0.2.1', 'key_guess')).toBeNull();
    expect(b.fail('192.0.2.1', 'key_guess')).toBeNull();
    expect(b.isBlocked('192.0.2.1', 'key_guess')).toBeNull();
    expect(b.fail('192.0.2.1', 'key_guess')).toBe('brute-force');
    expect(b.isBlocked('192.0.2.1', 'key_guess')).toBe('brute-force');
    expect(b.isBlocked('192.0.2.1', 'key_carrier')).toBeNull();
    expect(b.isBlocked('192.0.2.2', 'key_guess')).toBeNull();
    expect(blocked).toEqual(['192.0.2.1 key_guess brute-force']);
    now += 5001;
    expect(b.isBlocked('192.0.2.1', 'key_guess')).toBeNull();
  });

  it('forgets failures outside the window and after a success', () => {
    let now = 0;
    const b = new AuthBlocker({ ...opts, maxFailures: 2 }, () => now);
    b.fail('a', 'u');
    now += 1500;
    expect(b.fail('a', 'u')).toBeNull();
    b.succeed('a', 'u');
    expect(b.fail('a', 'u')).toBeNull();
  });

  it('a source failing with more than maxUsernamesPerSource usernames may then use only usernames that authenticated from it before', () => {
    let now = 0;
    const b = new AuthBlocker(opts, () => now);
    b.succeed('198.51.100.1', 'key_carrier');
    expect(b.fail('198.51.100.1', 'key_a')).toBeNull();
    expect(b.fail('198.51.100.1', 'key_b')).toBeNull();
    expect(b.fail('198.51.100.1', 'key_c')).toBeNull();
    expect(b.fail('198.51.100.1', 'key_d')).toBe('username-scan');
    expect(b.isBlocked('198.51.100.1', 'key_e')).toBe('username-scan');
    expect(b.isBlocked('198.51.100.1', 'key_carrier')).toBeNull();
    // Another address is not concerned.
    expect(b.isBlocked('198.51.100.2', 'key_e')).toBeNull();
    now += 5001;
    expect(b.isBlocked('198.51.100.1', 'key_e')).toBeNull();
  });

  it('keeps its tables bounded', () => {
    const b = new AuthBlocker({ ...opts, maxTracked: 10 }, () => 0);
    for (let i = 0; i < 1000; i++) b.fail(`10.0.${i >> 8}.${i & 255}`, `key_${i}`);
    const sizes = ['failures', 'failingUsers'].map((k) => (b as unknown as Record<string, Map<unknown, unknown>>)[k]!.size);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(10);
  });
});
