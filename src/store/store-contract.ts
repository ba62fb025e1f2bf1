import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomUUID } from 'node:crypto';
import type { Store, AuditEntry } from './store.js';
import type { KeyRecord, SecretRecord } from '../keys/key-record.js';

/** The behaviour both stores must show. Run by sqlite-store.test.ts and postgres-store.test.ts. */
export function storeContract(name: string, make: () => Promise<Store>, cleanup?: () => Promise<void>): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store;
    beforeAll(async () => {
      store = await make();
      await store.migrate();
      await store.migrate(); // migrations are idempotent
    });
    afterAll(async () => {
      await store?.close();
      await cleanup?.();
    });

    const now = '2026-01-02T03:04:05.678Z';
    const key = (over: Partial<KeyRecord> = {}): KeyRecord => ({
      id: `key_${randomUUID().replaceAll('-', '').slice(0, 17)}`,
      name: 'agent one',
      mode: 'live',
      status: 'active',
      role: null,
      scopes: ['calls:inbound', 'calls:outbound'],
      allowedCidrs: ['10.0.0.0/8', '2001:db8::/32'],
      allowedCountries: ['US', 'GB'],
      blockedPrefixes: ['+4470'],
      callsPerSecond: 2.5,
      cpsBurst: 3,
      maxConcurrentCalls: 7,
      budget: { amount: 10_000, period: 'month', currency: 'USD' },
      maxCallDurationSec: 600,
      callerIds: ['+12025550100'],
      requireTls: true,
      hint: 'tg_live_AbCd…wxyz',
      expiresAt: null,
      createdAt: now,
      createdBy: 'cli:test',
      updatedAt: now,
      lastUsedAt: null,
      revokedAt: null,
      ...over,
    });
    const secret = (keyId: string, over: Partial<SecretRecord> = {}): SecretRecord => ({
      id: `sec_${randomUUID()}`,
      keyId,
      hash: randomUUID().replaceAll('-', '') + randomUUID().replaceAll('-', ''),
      ha1Md5: 'v1.sealed-md5',
      ha1Sha256: 'v1.sealed-sha',
      createdAt: now,
      expiresAt: null,
      ...over,
    });

    it('round-trips a key record field for field', async () => {
      const k = key();
      await store.insertKey(k, secret(k.id));
      expect(await store.getKey(k.id)).toEqual(k);
      expect(await store.getKey('key_missing')).toBeNull();
    });

    it('finds a secret by its hash and lists live secrets', async () => {
      const k = key();
      const s = secret(k.id);
      await store.insertKey(k, s);
      expect(await store.findSecretByHash(s.hash)).toEqual(s);
      expect(await store.findSecretByHash('0'.repeat(64))).toBeNull();
      expect((await store.listLiveSecrets(k.id, now)).map((x) => x.id)).toEqual([s.id]);
    });

    it('refuses a second secret with the same hash', async () => {
      const k1 = key();
      const s = secret(k1.id);
      await store.insertKey(k1, s);
      const k2 = key();
      await expect(store.insertKey(k2, secret(k2.id, { hash: s.hash }))).rejects.toThrow();
      expect(await store.getKey(k2.id)).toBeNull(); // the insert was atomic
    });

    it('rotation cuts the old secrets to the grace deadline and adds the new one', async () => {
      const k = key();
      const old = secret(k.id);
      await store.insertKey(k, old);
      const fresh = secret(k.id, { createdAt: '2026-01-02T03:05:00.000Z' });
      await store.rotateSecret(fresh, '2026-01-03T03:05:00.000Z');
      expect((await store.findSecretByHash(old.hash))?.expiresAt).toBe('2026-01-03T03:05:00.000Z');
      expect((await store.findSecretByHash(fresh.hash))?.expiresAt).toBeNull();
      const live = await store.listLiveSecrets(k.id, '2026-01-02T04:00:00.000Z');
      expect(live.map((x) => x.id).sort()).toEqual([fresh.id, old.id].sort());
      const later = await store.listLiveSecrets(k.id, '2026-01-03T03:05:00.001Z');
      expect(later.map((x) => x.id)).toEqual([fresh.id]);
    });

    it('a rotation does not extend a secret that already ends sooner', async () => {
      const k = key();
      const old = secret(k.id, { expiresAt: '2026-01-02T03:10:00.000Z' });
      await store.insertKey(k, old);
      await store.rotateSecret(secret(k.id), '2026-01-09T00:00:00.000Z');
      expect((await store.findSecretByHash(old.hash))?.expiresAt).toBe('2026-01-02T03:10:00.000Z');
    });

    it('updates only the given fields', async () => {
      const k = key();
      await store.insertKey(k, secret(k.id));
      const u = await store.updateKey(k.id, { status: 'revoked', revokedAt: now, allowedCountries: ['FR'], budget: null, requireTls: false }, '2026-02-01T00:00:00.000Z');
      expect(u).toEqual({ ...k, status: 'revoked', revokedAt: now, allowedCountries: ['FR'], budget: null, requireTls: false, updatedAt: '2026-02-01T00:00:00.000Z' });
      expect(await store.updateKey('key_missing', { name: 'x' }, now)).toBeNull();
    });

    it('lists keys by status and mode with keyset pagination', async () => {
      const tag = randomUUID().slice(0, 8);
      const ks = [key({ id: `key_${tag}a`, mode: 'test' }), key({ id: `key_${tag}b`, mode: 'test' }), key({ id: `key_${tag}c`, mode: 'test', status: 'revoked' })];
      for (const k of ks) await store.insertKey(k, secret(k.id));
      const all = (await store.listKeys({ mode: 'test', limit: 1000 })).filter((k) => k.id.startsWith(`key_${tag}`));
      expect(all.map((k) => k.id)).toEqual(ks.map((k) => k.id));
      const active = (await store.listKeys({ mode: 'test', status: 'active', limit: 1000 })).filter((k) => k.id.startsWith(`key_${tag}`));
      expect(active.map((k) => k.id)).toEqual([ks[0]!.id, ks[1]!.id]);
      const page = await store.listKeys({ after: ks[0]!.id, limit: 1 });
      expect(page.length).toBe(1);
      expect(page[0]!.id > ks[0]!.id).toBe(true);
      expect(await store.countKeys()).toBeGreaterThanOrEqual(3);
    });

    it('appends audit entries in order, serialising concurrent writers', async () => {
      const target = `key_${randomUUID()}`;
      const build = (i: number) => (head: AuditEntry | null): AuditEntry => ({
        seq: (head?.seq ?? 0) + 1,
        ts: now,
        actor: 'test',
        action: `action.${i}`,
        target,
        details: { i, nested: { b: 2, a: [1, 'x'] } },
        prevHash: head?.hash ?? '0'.repeat(64),
        hash: randomUUID(),
      });
      const written = await Promise.all(Array.from({ length: 20 }, (_, i) => store.appendAudit(build(i))));
      const seqs = written.map((e) => e.seq).sort((a, b) => a - b);
      expect(new Set(seqs).size).toBe(20);
      const listed = await store.listAudit({ target, limit: 100 });
      expect(listed.length).toBe(20);
      for (let i = 1; i < listed.length; i++) {
        expect(listed[i]!.seq).toBeGreaterThan(listed[i - 1]!.seq);
      }
      expect(listed[0]!.details).toEqual({ i: listed[0]!.details.i, nested: { b: 2, a: [1, 'x'] } });
      const desc = await store.listAudit({ target, limit: 2, descending: true });
      expect(desc.map((e) => e.seq)).toEqual([listed[19]!.seq, listed[18]!.seq]);
      const after = await store.listAudit({ target, limit: 100, afterSeq: listed[9]!.seq });
      expect(after.length).toBe(10);
    });

    it('sums and lists usage per key and time range', async () => {
      const keyId = `key_${randomUUID()}`;
      const rec = (i: number, createdAt: string) => ({ id: `use_${randomUUID()}`, keyId, callId: `call_${i}`, direction: 'outbound' as const, seconds: 60 + i, amount: 2 + i, createdAt });
      await store.insertUsage(rec(0, '2026-03-01T00:00:00.000Z'));
      await store.insertUsage(rec(1, '2026-03-15T12:00:00.000Z'));
      await store.insertUsage(rec(2, '2026-04-01T00:00:00.000Z'));
      expect(await store.sumUsage(keyId, '2026-03-01T00:00:00.000Z', '2026-04-01T00:00:00.000Z')).toEqual({ seconds: 121, amount: 5, calls: 2 });
      expect(await store.sumUsage('key_none', '2026-03-01T00:00:00.000Z', '2026-04-01T00:00:00.000Z')).toEqual({ seconds: 0, amount: 0, calls: 0 });
      const listed = await store.listUsage({ keyId, fromIso: '2026-01-01T00:00:00.000Z', toIso: '2027-01-01T00:00:00.000Z', limit: 10 });
      expect(listed.map((u) => u.callId)).toEqual(['call_0', 'call_1', 'call_2']);
      expect(listed[2]).toMatchObject({ seconds: 62, amount: 4, direction: 'outbound' });
    });

    it('consumes a token id once and purges expired ids', async () => {
      const jti = randomUUID();
      expect(await store.consumeTokenId(jti, '2026-01-01T00:00:00.000Z')).toBe(true);
      expect(await store.consumeTokenId(jti, '2026-01-01T00:00:00.000Z')).toBe(false);
      expect(await store.purgeExpiredTokenIds('2026-01-01T00:00:01.000Z')).toBeGreaterThanOrEqual(1);
      expect(await store.consumeTokenId(jti, '2026-01-01T00:00:00.000Z')).toBe(true);
    });

    it('stores, replaces, lists and deletes number routes', async () => {
      const k = key();
      await store.insertKey(k, secret(k.id));
      const tag = String(Math.floor(Math.random() * 1e6)).padStart(6, '0');
      const n = { number: `+1415${tag}0`, target: 'echo', keyId: k.id, srtp: 'optional' as const, agent: null, createdAt: now, updatedAt: now };
      await store.upsertNumber(n);
      expect(await store.getNumber(n.number)).toEqual(n);
      await store.upsertNumber({ ...n, target: 'tone', srtp: 'required', updatedAt: '2026-02-01T00:00:00.000Z' });
      expect(await store.getNumber(n.number)).toMatchObject({ target: 'tone', srtp: 'required', createdAt: now, updatedAt: '2026-02-01T00:00:00.000Z' });
      const second = { ...n, number: `+1415${tag}1` };
      await store.upsertNumber(second);
      expect((await store.listNumbers({ keyId: k.id, limit: 10 })).map((x) => x.number)).toEqual([n.number, second.number]);
      expect((await store.listNumbers({ keyId: k.id, limit: 10, after: n.number })).map((x) => x.number)).toEqual([second.number]);
      expect(await store.deleteNumber(n.number)).toBe(true);
      expect(await store.deleteNumber(n.number)).toBe(false);
      expect(await store.getNumber(n.number)).toBeNull();
    });

    it('keeps an agent route with its number, and drops it when the number goes back to echo', async () => {
      const k = key();
      await store.insertKey(k, secret(k.id));
      const tag = String(Math.floor(Math.random() * 1e6)).padStart(6, '0');
      const agent = { url: 'wss://agent.example.com/twilio?x=1', webhookUrl: null, protocol: 'native' as const, sampleRate: 16000 as const, parameters: { lang: 'en', 'a.b': 'ü "q"' }, fallback: 'tone' as const };
      const n = { number: `+1628${tag}0`, target: 'agent', keyId: k.id, srtp: 'optional' as const, agent, createdAt: now, updatedAt: now };
      await store.upsertNumber(n);
      expect(await store.getNumber(n.number)).toEqual(n);
      expect((await store.listNumbers({ keyId: k.id, limit: 10 }))[0]?.agent).toEqual(agent);
      await store.upsertNumber({ ...n, target: 'echo', agent: null });
      expect((await store.getNumber(n.number))?.agent).toBeNull();
    });

    it('writes, completes, reads and pages call records', async () => {
      const keyA = `key_cdrA${Math.floor(Math.random() * 1e9)}`;
      const keyB = `key_cdrB${Math.floor(Math.random() * 1e9)}`;
      const sid = (i: number): string => 'CA' + (Math.floor(Math.random() * 1e9).toString(16) + i.toString(16)).padStart(32, '0');
      const base = {
        keyId: keyA, direction: 'inbound' as const, from: '+12025550123', to: '+14155550100', target: 'agent', sipCallId: 'sip-1',
        status: 'ringing' as const, answeredAt: null, endedAt: null, endReason: null, endedBy: null, billableSeconds: 0, details: {},
      };
      const calls = [0, 1, 2, 3].map((i) => ({ ...base, id: sid(i), startedAt: `2026-03-0${i + 1}T10:00:00.000Z` }));
      for (const c of calls) await store.insertCall(c);
      const sid9 = sid(9);
      await store.insertCall({ ...base, id: sid9, keyId: keyB, startedAt: '2026-03-05T10:00:00.000Z', direction: 'outbound', sipCallId: null });
      expect(await store.getCall(calls[0]!.id)).toEqual(calls[0]);
      await expect(store.insertCall(calls[0]!)).rejects.toThrow();

      const done = await store.updateCall(calls[1]!.id, {
        status: 'ended', answeredAt: '2026-03-02T10:00:01.000Z', endedAt: '2026-03-02T10:01:00.500Z', endReason: 'agent-hangup', endedBy: 'agent', billableSeconds: 59.5,
        details: { agentHangup: 'rest', media: { packetsIn: 2975 } },
      });
      expect(done).toEqual({
        ...calls[1], status: 'ended', answeredAt: '2026-03-02T10:00:01.000Z', endedAt: '2026-03-02T10:01:00.500Z', endReason: 'agent-hangup', endedBy: 'agent',
        billableSeconds: 59.5, details: { agentHangup: 'rest', media: { packetsIn: 2975 } },
      });
      expect(await store.getCall(calls[1]!.id)).toEqual(done);
      // A partial patch leaves the other fields alone.
      expect(await store.updateCall(calls[1]!.id, { status: 'failed' })).toEqual({ ...done, status: 'failed' });
      // details are replaced as a whole, not merged; null clears a nullable field.
      expect(await store.updateCall(calls[1]!.id, { details: { fallback: 'tone' }, endReason: null })).toEqual({ ...done, status: 'failed', endReason: null, details: { fallback: 'tone' } });
      expect(await store.getCall(calls[1]!.id)).toEqual({ ...done, status: 'failed', endReason: null, details: { fallback: 'tone' } });
      expect(await store.updateCall('CA' + 'f'.repeat(32), { status: 'ended' })).toBeNull();
      expect(await store.updateCall('CA' + 'e'.repeat(32), {})).toBeNull();
      expect(await store.getCall('CA' + 'f'.repeat(32))).toBeNull();
      expect(await store.getCall(calls[1]!.id)).not.toBeNull();
      // The other calls were not touched by the patches.
      expect(await store.getCall(calls[2]!.id)).toEqual(calls[2]);

      const page1 = await store.listCalls({ keyId: keyA, limit: 3 });
      expect(page1.map((c) => c.id)).toEqual([calls[3]!.id, calls[2]!.id, calls[1]!.id]);
      const page2 = await store.listCalls({ keyId: keyA, limit: 3, before: page1.at(-1)!.startedAt });
      expect(page2.map((c) => c.id)).toEqual([calls[0]!.id]);
      expect(await store.listCalls({ keyId: keyA, limit: 3, before: calls[0]!.startedAt })).toEqual([]);
      // A cursor with an offset or without milliseconds names the same instant.
      expect((await store.listCalls({ keyId: keyA, limit: 10, before: '2026-03-03T12:00:00+02:00' })).map((c) => c.id)).toEqual([calls[1]!.id, calls[0]!.id]);
      expect((await store.listCalls({ keyId: keyA, limit: 10, before: '2026-03-03T10:00:00Z' })).map((c) => c.id)).toEqual([calls[1]!.id, calls[0]!.id]);
      const onlyB = await store.listCalls({ keyId: keyB, limit: 10 });
      expect(onlyB.map((c) => [c.id, c.keyId])).toEqual([[sid9, keyB]]);
      // Without keyId every key's calls are listed, newest first.
      expect((await store.listCalls({ limit: 2, before: '2026-03-06T00:00:00.000Z' })).map((c) => c.id)).toEqual([sid9, calls[3]!.id]);
      await expect(store.updateCall(calls[0]!.id, { endedBy: 'nobody' as never })).rejects.toThrow();
      await expect(store.updateCall(calls[0]!.id, { status: 'lost' as never })).rejects.toThrow();
      await expect(store.insertCall({ ...base, id: sid(7), startedAt: now, direction: 'sideways' as never })).rejects.toThrow();
      expect(await store.getCall(calls[0]!.id)).toEqual(calls[0]);
    });

    it('orders call records that start at the same instant by id', async () => {
      const keyId = `key_cdrC${Math.floor(Math.random() * 1e9)}`;
      const startedAt = '2025-07-01T00:00:00.000Z';
      const salt = Math.floor(Math.random() * 0xfffffff).toString(16).padStart(7, '0');
      const ids = ['CA' + '1'.repeat(25) + salt, 'CA' + 'a'.repeat(25) + salt, 'CA' + '5'.repeat(25) + salt];
      for (const id of ids) {
        await store.insertCall({
          id, keyId, direction: 'outbound', from: '+12025550123', to: '+442071838750', target: 'agent', sipCallId: null, status: 'ringing',
          startedAt, answeredAt: null, endedAt: null, endReason: null, endedBy: null, billableSeconds: 0, details: {},
        });
      }
      expect((await store.listCalls({ keyId, limit: 10 })).map((c) => c.id)).toEqual([ids[1], ids[2], ids[0]]);
      // Paging with (startedAt, id) continues exactly after the last call, ties included.
      const first = await store.listCalls({ keyId, limit: 1 });
      const rest = await store.listCalls({ keyId, limit: 10, before: first[0]!.startedAt, beforeId: first[0]!.id });
      expect(rest.map((c) => c.id)).toEqual([ids[2], ids[0]]);
      expect(await store.listCalls({ keyId, limit: 10, before: startedAt })).toEqual([]);
    });

    it('refuses a number owned by a key that does not exist', async () => {
      await expect(store.upsertNumber({ number: '+14155559999', target: 'echo', keyId: 'key_nobody', srtp: 'off', agent: null, createdAt: now, updatedAt: now })).rejects.toThrow();
    });

    it('answers ping', async () => {
      await expect(store.ping()).resolves.toBeUndefined();
    });
  });
}
