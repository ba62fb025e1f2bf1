import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inMemoryServices } from '../testing/fixtures.js';
import { computeHa1 } from './secret-crypto.js';
import { KeyService } from './key-service.js';
import { TokenService } from './token-service.js';
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT } from 'jose';

type Services = Awaited<ReturnType<typeof inMemoryServices>>;

describe('KeyService', () => {
  let now = Date.parse('2026-06-01T12:00:00.000Z');
  let s: Services;
  beforeEach(async () => {
    now = Date.parse('2026-06-01T12:00:00.000Z');
    s = await inMemoryServices({ clock: () => now });
  });
  afterEach(async () => {
    await s.close();
  });

  it('creates a key with config defaults and verifies its secret', async () => {
    const { key, secret } = await s.keys.create({ name: 'agent' }, 'cli:test');
    expect(key).toMatchObject({ status: 'active', mode: 'live', scopes: ['calls:inbound', 'calls:outbound', 'usage:read'], allowedCountries: ['US', 'CA'], createdBy: 'cli:test' });
    expect(await s.keys.verify(secret)).toMatchObject({ ok: true, key: { id: key.id } });
  });

  it('stores no secret in clear: only its HMAC and sealed HA1 values', async () => {
    const { key, secret } = await s.keys.create({ name: 'agent' }, 'test');
    const [stored] = await s.store.listLiveSecrets(key.id, new Date(now).toISOString());
    const row = JSON.stringify(stored);
    expect(row).not.toContain(secret);
    expect(row).not.toContain(computeHa1('MD5', key.id, 'tollgate', secret));
    expect(row).not.toContain(computeHa1('SHA-256', key.id, 'tollgate', secret));
  });

  it('opens the SIP digest HA1 values (username = key id, realm-bound)', async () => {
    const { key, secret } = await s.keys.create({ name: 'trunk' }, 'test');
    expect(await s.keys.digestHa1(key.id, 'MD5')).toEqual([computeHa1('MD5', key.id, 'tollgate', secret)]);
    expect(await s.keys.digestHa1(key.id, 'SHA-256')).toEqual([computeHa1('SHA-256', key.id, 'tollgate', secret)]);
  });

  it('refuses malformed, bad-checksum and unknown secrets with the same code', async () => {
    const { secret } = await s.keys.create({ name: 'agent' }, 'test');
    const flipped = secret.slice(0, 20) + (secret[20] === 'a' ? 'b' : 'a') + secret.slice(21);
    for (const bad of ['', 'nope', flipped, secret + 'x', 'tg_live_' + 'a'.repeat(49)]) {
      expect(await s.keys.verify(bad)).toEqual({ ok: false, code: 'UNAUTHENTICATED' });
    }
  });

  it('revocation is refused by the very next check, even when cached', async () => {
    const { key, secret } = await s.keys.create({ name: 'agent' }, 'test');
    expect((await s.keys.verify(secret)).ok).toBe(true); // now cached
    await s.keys.revoke(key.id, 'leaked', 'test');
    expect(await s.keys.verify(secret)).toEqual({ ok: false, code: 'KEY_REVOKED', keyId: key.id });
  });

  it('refuses the key from the moment revoke() is called, before the store write lands', async () => {
    const { key, secret } = await s.keys.create({ name: 'agent' }, 'test');
    expect((await s.keys.verify(secret)).ok).toBe(true);
    const write = s.store.updateKey.bind(s.store);
    let land!: () => void;
    s.store.updateKey = (...args) => new Promise((resolve) => (land = () => resolve(write(...args))));
    const revoking = s.keys.revoke(key.id, 'leaked', 'test');
    await new Promise((r) => setImmediate(r));
    expect(await s.keys.verify(secret)).toMatchObject({ ok: false, code: 'KEY_REVOKED' });
    land();
    await revoking;
    expect(await s.keys.verify(secret)).toMatchObject({ ok: false, code: 'KEY_REVOKED' });
  });

  it('a revocation whose store write fails leaves the key as it was, and says so', async () => {
    const { key, secret } = await s.keys.create({ name: 'agent' }, 'test');
    s.store.updateKey = () => Promise.reject(new Error('disk full'));
    await expect(s.keys.revoke(key.id, 'x', 'test')).rejects.toThrow('disk full');
    expect((await s.keys.verify(secret)).ok).toBe(true);
  });

  it('a revocation published by another node drops this node\'s cache entry', async () => {
    const { key, secret } = await s.keys.create({ name: 'agent' }, 'test');
    expect((await s.keys.verify(secret)).ok).toBe(true);
    // Another node writes the revocation to the shared store and publishes it.
    await s.store.updateKey(key.id, { status: 'revoked' }, new Date(now).toISOString());
    expect((await s.keys.verify(secret)).ok).toBe(true); // stale cache until told
    await s.bus.publish(key.id);
    expect((await s.keys.verify(secret)).ok).toBe(false);
  });

  it('rotation overlaps the secrets for the grace period', async () => {
    const { key, secret: old } = await s.keys.create({ name: 'agent' }, 'test');
    const r = await s.keys.rotate(key.id, 60, 'test');
    expect(r.oldSecretsExpireAt).toBe('2026-06-01T12:01:00.000Z');
    expect((await s.keys.verify(old)).ok).toBe(true);
    expect((await s.keys.verify(r.secret)).ok).toBe(true);
    expect(await s.keys.digestHa1(key.id, 'MD5')).toHaveLength(2);
    now += 60_000;
    expect(await s.keys.verify(old)).toMatchObject({ ok: false, code: 'KEY_EXPIRED' });
    expect((await s.keys.verify(r.secret)).ok).toBe(true);
    expect(await s.keys.digestHa1(key.id, 'MD5')).toHaveLength(1);
  });

  it('a quarantined key is refused, and rotating it ends the quarantine with no grace', async () => {
    const { key, secret } = await s.keys.create({ name: 'agent' }, 'test');
    await s.keys.quarantine(key.id, 'found in a public repo', 'scan');
    expect(await s.keys.verify(secret)).toMatchObject({ ok: false, code: 'KEY_QUARANTINED' });
    const r = await s.keys.rotate(key.id, 3600, 'test');
    expect(r.key.status).toBe('active');
    expect((await s.keys.verify(r.secret)).ok).toBe(true);
    expect(await s.keys.verify(secret)).toMatchObject({ ok: false, code: 'KEY_EXPIRED' });
  });

  it('a key past its expiry is refused', async () => {
    const { secret } = await s.keys.create({ name: 'agent', expiresAt: '2026-06-01T12:00:30.000Z' }, 'test');
    expect((await s.keys.verify(secret)).ok).toBe(true);
    now += 30_000;
    expect(await s.keys.verify(secret)).toMatchObject({ ok: false, code: 'KEY_EXPIRED' });
  });

  it('rejects invalid policy with the field named', async () => {
    await expect(s.keys.create({ name: 'x', allowedCountries: ['USA'] }, 'test')).rejects.toMatchObject({ code: 'VALIDATION_FAILED', details: { field: 'allowedCountries.0' } });
    await expect(s.keys.create({ name: '' }, 'test')).rejects.toMatchObject({ details: { field: 'name' } });
    const { key } = await s.keys.create({ name: 'x' }, 'test');
    await expect(s.keys.update(key.id, {}, 'test')).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await expect(s.keys.update(key.id, { callsPerSecond: -1 }, 'test')).rejects.toMatchObject({ details: { field: 'callsPerSecond' } });
  });

  it('audits create, update, rotate and revoke without the secret', async () => {
    const { key, secret } = await s.keys.create({ name: 'agent' }, 'admin');
    await s.keys.update(key.id, { callsPerSecond: 5 }, 'admin');
    const r = await s.keys.rotate(key.id, 0, 'admin');
    await s.keys.revoke(key.id, 'done', 'admin');
    const entries = await s.audit.list({ limit: 10, target: key.id });
    expect(entries.map((e) => e.action)).toEqual(['key.created', 'key.updated', 'key.rotated', 'key.revoked']);
    const text = JSON.stringify(entries);
    expect(text).not.toContain(secret);
    expect(text).not.toContain(r.secret);
    expect(await s.audit.verify()).toMatchObject({ ok: true, entries: 4 });
  });
});

describe('KeyService: changes made by another process on the same SQLite file (the CLI)', () => {
  let dir: string;
  let gateway: Services;
  let cli: KeyService;
  let closeCli: () => Promise<void>;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tollgate-keys-'));
    gateway = await inMemoryServices({ sqlitePath: join(dir, 'tollgate.db') });
    // A second connection with its own cache and its own in-process bus, as `tollgate keys …`
    // builds; it shares only the file (and the secrets) with the gateway.
    const other = await inMemoryServices({ sqlitePath: join(dir, 'tollgate.db'), followChanges: false });
    const opts = (gateway.keys as unknown as { opts: ConstructorParameters<typeof KeyService>[3] }).opts;
    cli = new KeyService(other.store, other.audit, other.bus, opts, other.log);
    closeCli = async () => {
      cli.close();
      await other.close();
    };
  });
  afterEach(async () => {
    await closeCli();
    await gateway.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a revocation is refused by the very next check on the gateway, cached or not, with no wait', async () => {
    const { key, secret } = await gateway.keys.create({ name: 'trunk' }, 'test');
    expect((await gateway.keys.verify(secret)).ok).toBe(true); // cached
    expect((await gateway.keys.getCurrent(key.id))?.status).toBe('active'); // cached
    await cli.revoke(key.id, 'leaked', 'cli:test');
    expect(await gateway.keys.verify(secret)).toEqual({ ok: false, code: 'KEY_REVOKED', keyId: key.id });
    expect((await gateway.keys.getCurrent(key.id))?.status).toBe('revoked');
  });

  it('a scope removed by an update applies to the very next check', async () => {
    const { key, secret } = await gateway.keys.create({ name: 'trunk', scopes: ['calls:inbound', 'usage:read'] }, 'test');
    expect(await gateway.keys.verify(secret)).toMatchObject({ ok: true, key: { scopes: ['calls:inbound', 'usage:read'] } });
    await gateway.keys.getCurrent(key.id);
    await cli.update(key.id, { scopes: ['usage:read'] }, 'cli:test');
    expect(await gateway.keys.verify(secret)).toMatchObject({ ok: true, key: { scopes: ['usage:read'] } });
    expect((await gateway.keys.getCurrent(key.id))?.scopes).toEqual(['usage:read']);
  });

  it('a rotation with no grace refuses the old secret and its digest HA1 at once', async () => {
    const { key, secret } = await gateway.keys.create({ name: 'trunk' }, 'test');
    expect((await gateway.keys.verify(secret)).ok).toBe(true);
    expect(await gateway.keys.digestHa1(key.id, 'MD5')).toEqual([computeHa1('MD5', key.id, 'tollgate', secret)]);
    const r = await cli.rotate(key.id, 0, 'cli:test');
    expect(await gateway.keys.verify(secret)).toMatchObject({ ok: false, code: 'KEY_EXPIRED' });
    expect(await gateway.keys.digestHa1(key.id, 'MD5')).toEqual([computeHa1('MD5', key.id, 'tollgate', r.secret)]);
    expect((await gateway.keys.verify(r.secret)).ok).toBe(true);
  });

  it('onChange hears each change once, from this process (its bus echo included) and from the other', async () => {
    const { secret: other } = await cli.create({ name: 'other' }, 'cli:test');
    expect((await gateway.keys.verify(other)).ok).toBe(true);
    const heard: string[] = [];
    gateway.keys.onChange((id) => heard.push(id));
    const { key } = await gateway.keys.create({ name: 'a' }, 'test');
    expect(heard).toEqual([key.id]); // as soon as create() resolves
    await gateway.keys.update(key.id, { callsPerSecond: 3 }, 'test');
    await gateway.keys.rotate(key.id, 60, 'test'); // one change: secret and hint in one write
    expect(heard).toEqual([key.id, key.id, key.id]);
    await gateway.bus.publish(key.id); // another node announcing what was already read
    expect(heard).toHaveLength(3);

    await cli.quarantine(key.id, 'found in a repo', 'scan');
    expect(heard).toHaveLength(3); // no request yet, no timer run yet
    await gateway.keys.verify(other); // any lookup checks the feed first
    expect(heard).toEqual([key.id, key.id, key.id, key.id]);
    await gateway.keys.verify(other);
    expect(heard).toHaveLength(4);
  });

  it('the background check tells listeners of another process\'s revocation when no request arrives', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      // Built after the timers are faked, so its poll runs on the fake clock.
      const gw = new KeyService(gateway.store, gateway.audit, gateway.bus, (gateway.keys as unknown as { opts: ConstructorParameters<typeof KeyService>[3] }).opts, gateway.log);
      await gw.start();
      const heard: string[] = [];
      gw.onChange((id) => heard.push(id));
      const { key } = await cli.create({ name: 'idle' }, 'cli:test');
      await cli.revoke(key.id, undefined, 'cli:test');
      expect(heard).toEqual([]);
      await vi.advanceTimersByTimeAsync(100);
      expect(heard).toEqual([key.id, key.id]);
      gw.close();
    } finally {
      vi.useRealTimers();
    }
  });

  it('a listener that throws is logged and does not keep the others from hearing', async () => {
    const warn = vi.spyOn(gateway.log, 'warn');
    const heard: string[] = [];
    gateway.keys.onChange(() => {
      throw new Error('listener bug');
    });
    const off = gateway.keys.onChange((id) => heard.push(id));
    const { key } = await gateway.keys.create({ name: 'b' }, 'test');
    expect(heard).toEqual([key.id]);
    expect(warn).toHaveBeenCalledWith(expect.objectContaining({ keyId: key.id }), 'key change listener failed');
    off();
    await gateway.keys.revoke(key.id, undefined, 'test');
    expect(heard).toEqual([key.id]);
  });
});

describe('TokenService', () => {
  let now = Date.parse('2026-06-01T12:00:00.000Z');
  let s: Services;
  beforeEach(async () => {
    now = Date.parse('2026-06-01T12:00:00.000Z');
    s = await inMemoryServices({ clock: () => now });
  });
  afterEach(async () => {
    await s.close();
  });

  it('a token is single use', async () => {
    const { key } = await s.keys.create({ name: 'app', scopes: ['tokens:mint', 'calls:outbound'] }, 'test');
    const { token } = await s.tokens.mint(key, {});
    const first = await s.tokens.verify(token);
    expect(first).toMatchObject({ ok: true, claims: { keyId: key.id, scopes: ['calls:outbound'] } });
    expect(await s.tokens.verify(token)).toMatchObject({ ok: false, code: 'TOKEN_REPLAYED' });
  });

  it('defaults to a 60 s life and refuses more than an hour', async () => {
    const { key } = await s.keys.create({ name: 'app', scopes: ['tokens:mint', 'calls:outbound'] }, 'test');
    const { claims, token } = await s.tokens.mint(key, {});
    expect(claims.expiresAt).toBe('2026-06-01T12:01:00.000Z');
    now += 60_000;
    expect(await s.tokens.verify(token)).toMatchObject({ ok: false, code: 'TOKEN_INVALID' });
    await expect(s.tokens.mint(key, { ttlSec: 3601 })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
  });

  it('never delegates tokens:mint or keys:admin, nor a scope the parent lacks', async () => {
    const { key } = await s.keys.create({ name: 'admin', role: 'admin' }, 'test');
    const { claims } = await s.tokens.mint(key, {});
    expect(claims.scopes).not.toContain('tokens:mint');
    expect(claims.scopes).not.toContain('keys:admin');
    await expect(s.tokens.mint(key, { scopes: ['keys:admin'] })).rejects.toMatchObject({ code: 'SCOPE_NOT_GRANTED' });
    const { key: small } = await s.keys.create({ name: 'small', scopes: ['tokens:mint', 'usage:read'] }, 'test');
    await expect(s.tokens.mint(small, { scopes: ['calls:outbound'] })).rejects.toMatchObject({ code: 'SCOPE_NOT_GRANTED' });
  });

  it('dies with its parent key, and loses scopes the parent lost', async () => {
    const { key } = await s.keys.create({ name: 'app', scopes: ['tokens:mint', 'calls:outbound', 'usage:read'] }, 'test');
    const a = await s.tokens.mint(key, {});
    await s.keys.update(key.id, { scopes: ['tokens:mint', 'usage:read'] }, 'test');
    expect(await s.tokens.verify(a.token)).toMatchObject({ ok: true, claims: { scopes: ['usage:read'] } });
    const b = await s.tokens.mint((await s.keys.get(key.id))!, {});
    await s.keys.revoke(key.id, undefined, 'test');
    expect(await s.tokens.verify(b.token)).toMatchObject({ ok: false, code: 'KEY_REVOKED' });
  });

  it('dies with the secret it was minted from: at once after a rotation with no grace, at the end of the grace otherwise', async () => {
    const { key, secret } = await s.keys.create({ name: 'app', scopes: ['tokens:mint', 'calls:outbound'] }, 'test');
    const verified = await s.keys.verify(secret);
    if (!verified.ok) throw new Error('expected the key to verify');
    // Minted with the old secret (REST) and for the key (CLI, attach webhooks: its newest secret).
    const viaSecret = await s.tokens.mint(key, { ttlSec: 3600 }, { secretId: verified.secretId });
    const viaKey = await s.tokens.mint(key, { ttlSec: 3600 });
    now += 1000;
    await s.keys.rotate(key.id, 0, 'test');
    expect(await s.tokens.verify(viaSecret.token)).toMatchObject({ ok: false, code: 'TOKEN_INVALID', keyId: key.id });
    expect(await s.tokens.verify(viaKey.token)).toMatchObject({ ok: false, code: 'TOKEN_INVALID', keyId: key.id });
    // A token minted after the rotation is bound to the new secret and works.
    const fresh = await s.tokens.mint(key, { ttlSec: 3600 });
    expect((await s.tokens.verify(fresh.token)).ok).toBe(true);

    // With a grace period, a token from the old secret works until the old secret stops.
    const graced = await s.tokens.mint(key, { ttlSec: 3600 });
    now += 1000;
    await s.keys.rotate(key.id, 600, 'test');
    const beforeEnd = await s.tokens.mint(key, { ttlSec: 3600 });
    expect((await s.tokens.verify(beforeEnd.token)).ok).toBe(true);
    now += 601_000;
    expect(await s.tokens.verify(graced.token)).toMatchObject({ ok: false, code: 'TOKEN_INVALID' });
  });

  it('refuses a token without the secret binding (minted before tokens carried one), or bound to a secret the key never had', async () => {
    const { key } = await s.keys.create({ name: 'app', scopes: ['tokens:mint', 'calls:outbound'] }, 'test');
    const { privateKey } = generateKeyPairSync('ed25519');
    const tokens = new TokenService(s.store, s.keys, { signingKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), issuer: 'tollgate', defaultTtlSec: 60, maxTtlSec: 3600 }, () => now);
    const nowSec = Math.floor(now / 1000);
    const unbound = await new SignJWT({ scope: 'calls:outbound' })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'tollgate-call+jwt' })
      .setIssuer('tollgate').setAudience('tollgate').setSubject(key.id).setJti('tok_unbound').setIssuedAt(nowSec).setExpirationTime(nowSec + 60)
      .sign(privateKey);
    expect(await tokens.verify(unbound)).toMatchObject({ ok: false, code: 'TOKEN_INVALID' });
    const stranger = await tokens.mint(key, {}, { secretId: 'sec_never_existed' });
    expect(await tokens.verify(stranger.token)).toMatchObject({ ok: false, code: 'TOKEN_INVALID' });
    const bound = await tokens.mint(key, {});
    expect((await tokens.verify(bound.token)).ok).toBe(true);
  });

  it('refuses a token signed by another key or altered', async () => {
    const other = await inMemoryServices({ clock: () => now });
    const { key } = await other.keys.create({ name: 'app', scopes: ['tokens:mint', 'calls:outbound'] }, 'test');
    const { token } = await other.tokens.mint(key, {});
    await other.close();
    expect(await s.tokens.verify(token)).toMatchObject({ ok: false, code: 'TOKEN_INVALID' });
    expect(await s.tokens.verify(token.slice(0, -2) + 'AA')).toMatchObject({ ok: false, code: 'TOKEN_INVALID' });
    expect(await s.tokens.verify('eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.')).toMatchObject({ ok: false, code: 'TOKEN_INVALID' });
  });

  it('carries its call and destination binding', async () => {
    const { key } = await s.keys.create({ name: 'app', scopes: ['tokens:mint', 'calls:outbound'] }, 'test');
    const { token } = await s.tokens.mint(key, { callId: 'call-42', destination: '+14155550100' });
    expect(await s.tokens.verify(token)).toMatchObject({ ok: true, claims: { callId: 'call-42', destination: '+14155550100' } });
    await expect(s.tokens.mint(key, { destination: '555' })).rejects.toMatchObject({ details: { field: 'destination' } });
  });
});
