import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomUUID } from 'node:crypto';
import type { Store, AuditEntry, TrunkRecord, WebhookDelivery, WebhookEndpoint } from './store.js';
import type { KeyRecord, SecretRecord } from './key-record.js';

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
      attestation: 'B',
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
      const rotated = await store.rotateSecret(fresh, '2026-01-03T03:05:00.000Z', { hint: 'tg_live_NeWw…abcd' }, '2026-01-02T03:05:00.000Z');
      expect(rotated).toEqual({ ...k, hint: 'tg_live_NeWw…abcd', updatedAt: '2026-01-02T03:05:00.000Z' });
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
      await store.rotateSecret(secret(k.id), '2026-01-09T00:00:00.000Z', {}, now);
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

    it('writes a usage record once: the same id again keeps the first row and says so', async () => {
      const keyId = `key_${randomUUID()}`;
      const callId = `call_${randomUUID()}`;
      const u = { id: `use_${callId}`, keyId, callId, direction: 'inbound' as const, seconds: 42, amount: 7, createdAt: '2026-05-01T10:00:00.000Z' };
      expect(await store.insertUsage(u)).toBe(true);
      expect(await store.insertUsage(u)).toBe(false);
      // A retry after an outage may carry a later timestamp: still the one row, as first written.
      expect(await store.insertUsage({ ...u, createdAt: '2026-05-01T10:05:00.000Z' })).toBe(false);
      const listed = await store.listUsage({ keyId, fromIso: '2026-01-01T00:00:00.000Z', toIso: '2027-01-01T00:00:00.000Z', limit: 10 });
      expect(listed).toEqual([u]);
      expect(await store.sumUsage(keyId, '2026-01-01T00:00:00.000Z', '2027-01-01T00:00:00.000Z')).toEqual({ seconds: 42, amount: 7, calls: 1 });
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
      // A call hung up through DELETE /v1/calls is ended by the API caller (migration 7).
      expect((await store.updateCall(sid9, { status: 'ended', endReason: 'api-hangup', endedBy: 'api' }))?.endedBy).toBe('api');
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

    const trunk = (over: Partial<TrunkRecord> = {}): TrunkRecord => ({
      id: `trk_${randomUUID().replaceAll('-', '').slice(0, 17)}`,
      name: 'carrier a',
      host: 'sip.carrier.example',
      port: 5061,
      transport: 'tls',
      srtp: 'required',
      username: 'tollgate',
      passwordSealed: 'v1.sealed-password',
      codecs: ['PCMU', 'PCMA'],
      maxCps: 2.5,
      prefixes: ['+1', '+44'],
      priority: 10,
      enabled: true,
      createdAt: now,
      updatedAt: now,
      ...over,
    });

    it('round-trips, patches, pages and deletes trunks', async () => {
      const t = trunk();
      await store.insertTrunk(t);
      expect(await store.getTrunk(t.id)).toEqual(t);
      await expect(store.insertTrunk(t)).rejects.toThrow();
      const bare = trunk({ host: '192.0.2.10', port: 5060, transport: 'udp', srtp: 'off', username: null, passwordSealed: null, codecs: ['PCMA'], prefixes: [], enabled: false });
      await store.insertTrunk(bare);
      expect(await store.getTrunk(bare.id)).toEqual(bare);

      const later = '2026-02-01T00:00:00.000Z';
      const patched = await store.updateTrunk(t.id, { enabled: false, prefixes: ['+33'], maxCps: 10, passwordSealed: null, transport: 'tcp', updatedAt: later });
      expect(patched).toEqual({ ...t, enabled: false, prefixes: ['+33'], maxCps: 10, passwordSealed: null, transport: 'tcp', updatedAt: later });
      expect(await store.updateTrunk(t.id, {})).toEqual(patched);
      expect(await store.updateTrunk('trk_missing', { enabled: true })).toBeNull();
      await expect(store.updateTrunk(t.id, { transport: 'sctp' as never })).rejects.toThrow();

      const ids = [t.id, bare.id].sort();
      const all = (await store.listTrunks({ limit: 1000 })).map((x) => x.id);
      expect(all.filter((id) => ids.includes(id))).toEqual(ids);
      expect([...all].sort()).toEqual(all);
      const page = await store.listTrunks({ limit: 1000, after: ids[0] });
      expect(page.map((x) => x.id)).toContain(ids[1]);
      expect(page.map((x) => x.id)).not.toContain(ids[0]);

      expect(await store.deleteTrunk(t.id)).toBe(true);
      expect(await store.deleteTrunk(t.id)).toBe(false);
      expect(await store.getTrunk(t.id)).toBeNull();
    });

    const endpoint = (over: Partial<WebhookEndpoint> = {}): WebhookEndpoint => ({
      id: `wh_${randomUUID().replaceAll('-', '').slice(0, 17)}`,
      keyId: null,
      url: 'https://hooks.example.com/tollgate?token=abc',
      events: ['call.ended'],
      enabled: true,
      createdAt: now,
      updatedAt: now,
      ...over,
    });
    const delivery = (over: Partial<WebhookDelivery> = {}): WebhookDelivery => ({
      id: `whd_${randomUUID().replaceAll('-', '').slice(0, 17)}`,
      endpointId: 'wh_x',
      keyId: null,
      eventId: `evt_${randomUUID()}`,
      eventType: 'call.ended',
      // Key order and spacing that a JSON column would not keep.
      payload: '{"z":1,  "a":{"b":"ü","a":[2,1]}}',
      status: 'pending',
      attempts: 0,
      nextAttemptAt: now,
      lastStatus: null,
      lastError: null,
      createdAt: now,
      updatedAt: now,
      deliveredAt: null,
      ...over,
    });

    it('stores webhook endpoints per key and account-wide, and finds the subscribers of an event', async () => {
      const k1 = key();
      const k2 = key();
      await store.insertKey(k1, secret(k1.id));
      await store.insertKey(k2, secret(k2.id));
      const own = endpoint({ keyId: k1.id, events: ['call.ended', 'key.revoked'] });
      const ownAll = endpoint({ keyId: k1.id, events: ['*'] });
      const ownOff = endpoint({ keyId: k1.id, events: ['*'], enabled: false });
      const other = endpoint({ keyId: k2.id, events: ['*'] });
      const account = endpoint({ keyId: null, events: ['key.revoked'] });
      for (const e of [own, ownAll, ownOff, other, account]) await store.insertWebhookEndpoint(e);
      expect(await store.getWebhookEndpoint(own.id)).toEqual(own);
      expect(await store.getWebhookEndpoint(ownOff.id)).toEqual(ownOff);
      expect(await store.getWebhookEndpoint('wh_missing')).toBeNull();
      await expect(store.insertWebhookEndpoint(endpoint({ keyId: 'key_nobody' }))).rejects.toThrow();

      const sorted = (xs: WebhookEndpoint[]): string[] => xs.map((e) => e.id).sort();
      expect((await store.listWebhookEndpoints({ keyId: k1.id, limit: 10 })).map((e) => e.id)).toEqual([own.id, ownAll.id, ownOff.id].sort());
      const accountWide = await store.listWebhookEndpoints({ keyId: null, limit: 1000 });
      expect(accountWide.map((e) => e.id)).toContain(account.id);
      expect(accountWide.every((e) => e.keyId === null)).toBe(true);
      const everything = (await store.listWebhookEndpoints({ limit: 1000 })).map((e) => e.id);
      expect(everything).toEqual(expect.arrayContaining([own.id, other.id, account.id]));
      const firstId = [own.id, ownAll.id, ownOff.id].sort()[0]!;
      expect((await store.listWebhookEndpoints({ keyId: k1.id, limit: 10, after: firstId })).map((e) => e.id)).not.toContain(firstId);

      const mine = (xs: WebhookEndpoint[]): string[] => sorted(xs.filter((e) => [own, ownAll, ownOff, other, account].some((x) => x.id === e.id)));
      expect(mine(await store.endpointsFor(k1.id, 'key.revoked'))).toEqual([own.id, ownAll.id, account.id].sort());
      expect(mine(await store.endpointsFor(k1.id, 'call.started'))).toEqual([ownAll.id]);
      expect(mine(await store.endpointsFor(k2.id, 'key.revoked'))).toEqual([other.id, account.id].sort());
      expect(mine(await store.endpointsFor(null, 'key.revoked'))).toEqual([account.id]);
      expect(mine(await store.endpointsFor(null, 'call.ended'))).toEqual([]);

      expect(await store.deleteWebhookEndpoint(own.id)).toBe(true);
      expect(await store.deleteWebhookEndpoint(own.id)).toBe(false);
      expect(await store.getWebhookEndpoint(own.id)).toBeNull();
    });

    it('keeps a delivery payload byte for byte, patches it and pages the log newest first', async () => {
      const endpointId = `wh_log${Math.floor(Math.random() * 1e9)}`;
      const keyId = `key_log${Math.floor(Math.random() * 1e9)}`;
      const ds = [0, 1, 2, 3].map((i) => delivery({ endpointId, keyId, createdAt: `2026-04-0${i + 1}T00:00:00.000Z`, updatedAt: `2026-04-0${i + 1}T00:00:00.000Z`, nextAttemptAt: '2099-01-01T00:00:00.000Z' }));
      // Two created at the same instant: ordered by id.
      const twin = delivery({ endpointId, keyId, createdAt: ds[3]!.createdAt, updatedAt: ds[3]!.createdAt, nextAttemptAt: '2099-01-01T00:00:00.000Z', eventId: 'evt_twin' });
      for (const d of [...ds, twin]) await store.insertDelivery(d);
      expect(await store.getDelivery(ds[0]!.id)).toEqual(ds[0]);
      expect((await store.getDelivery(ds[0]!.id))?.payload).toBe(ds[0]!.payload);
      expect(await store.getDelivery('whd_missing')).toBeNull();
      // One delivery per endpoint and event.
      await expect(store.insertDelivery(delivery({ endpointId, eventId: ds[0]!.eventId }))).rejects.toThrow();
      await expect(store.insertDelivery(delivery({ status: 'lost' as never }))).rejects.toThrow();

      const done = await store.updateDelivery(ds[1]!.id, { status: 'delivered', attempts: 3, nextAttemptAt: null, lastStatus: 204, lastError: null, deliveredAt: '2026-04-02T00:00:03.000Z', updatedAt: '2026-04-02T00:00:03.000Z' });
      expect(done).toEqual({ ...ds[1], status: 'delivered', attempts: 3, nextAttemptAt: null, lastStatus: 204, deliveredAt: '2026-04-02T00:00:03.000Z', updatedAt: '2026-04-02T00:00:03.000Z' });
      expect(await store.updateDelivery(ds[2]!.id, { status: 'failed', attempts: 8, lastStatus: null, lastError: 'timeout after 5000 ms', nextAttemptAt: null })).toMatchObject({ status: 'failed', lastError: 'timeout after 5000 ms', lastStatus: null, attempts: 8 });
      expect(await store.updateDelivery(ds[2]!.id, {})).toMatchObject({ status: 'failed' });
      expect(await store.updateDelivery('whd_missing', { status: 'failed' })).toBeNull();

      const [a, b] = [twin.id, ds[3]!.id].sort().reverse();
      const page1 = await store.listDeliveries({ keyId, limit: 3 });
      expect(page1.map((d) => d.id)).toEqual([a, b, ds[2]!.id]);
      const last = page1.at(-1)!;
      expect((await store.listDeliveries({ keyId, limit: 10, before: last.createdAt, beforeId: last.id })).map((d) => d.id)).toEqual([ds[1]!.id, ds[0]!.id]);
      const first = page1[0]!;
      expect((await store.listDeliveries({ keyId, limit: 10, before: first.createdAt, beforeId: first.id })).map((d) => d.id)).toEqual([b, ds[2]!.id, ds[1]!.id, ds[0]!.id]);
      expect((await store.listDeliveries({ keyId, limit: 10, before: '2026-04-03T02:00:00+02:00' })).map((d) => d.id)).toEqual([ds[1]!.id, ds[0]!.id]);
      expect((await store.listDeliveries({ endpointId, status: 'delivered', limit: 10 })).map((d) => d.id)).toEqual([ds[1]!.id]);
      expect((await store.listDeliveries({ endpointId, status: 'pending', limit: 10 })).map((d) => d.id)).toEqual([a, b, ds[0]!.id]);
      expect(await store.listDeliveries({ keyId: 'key_nobody', limit: 10 })).toEqual([]);
      const accountOnes = await store.listDeliveries({ keyId: null, limit: 1000 });
      expect(accountOnes.every((d) => d.keyId === null)).toBe(true);
      expect((await store.listDeliveries({ limit: 1000 })).map((d) => d.id)).toEqual(expect.arrayContaining(ds.map((d) => d.id)));
    });

    it('removing an endpoint settles its pending deliveries as failed and keeps the log', async () => {
      const k = key();
      await store.insertKey(k, secret(k.id));
      const e = endpoint({ keyId: k.id });
      await store.insertWebhookEndpoint(e);
      const pending = delivery({ endpointId: e.id, keyId: k.id, nextAttemptAt: '2099-01-01T00:00:00.000Z' });
      const delivered = delivery({ endpointId: e.id, keyId: k.id, status: 'delivered', nextAttemptAt: null, attempts: 1, lastStatus: 200, deliveredAt: now });
      await store.insertDelivery(pending);
      await store.insertDelivery(delivered);
      expect(await store.deleteWebhookEndpoint(e.id)).toBe(true);
      expect(await store.getDelivery(pending.id)).toMatchObject({ status: 'failed', nextAttemptAt: null, lastError: 'endpoint removed' });
      expect(await store.getDelivery(delivered.id)).toEqual(delivered);
    });

    it('claims due pending deliveries once, under a lease, even with concurrent claimers', async () => {
      // Park every pending row the other tests left, so this test sees only its own.
      await store.claimDueDeliveries('2100-01-01T00:00:00.000Z', 100_000, '2200-01-01T00:00:00.000Z');
      const endpointId = `wh_claim${Math.floor(Math.random() * 1e9)}`;
      const at = (min: number): string => new Date(Date.parse('2100-02-01T00:00:00.000Z') + min * 60_000).toISOString();
      const due = Array.from({ length: 30 }, (_, i) => delivery({ endpointId, nextAttemptAt: at(i % 10) }));
      const future = delivery({ endpointId, nextAttemptAt: at(60) });
      const settled = delivery({ endpointId, status: 'failed', nextAttemptAt: at(0) });
      const unscheduled = delivery({ endpointId, nextAttemptAt: null });
      for (const d of [...due, future, settled, unscheduled]) await store.insertDelivery(d);

      const now = at(10);
      const lease = at(20);
      const first = await store.claimDueDeliveries(now, 4, lease);
      expect(first.length).toBe(4);
      // Oldest due first; returned as claimed.
      expect(first.every((d) => d.nextAttemptAt === lease && d.status === 'pending' && d.payload === due[0]!.payload)).toBe(true);
      const oldest = [...due].sort((x, y) => x.nextAttemptAt!.localeCompare(y.nextAttemptAt!) || x.id.localeCompare(y.id)).slice(0, 4);
      expect(first.map((d) => d.id).sort()).toEqual(oldest.map((d) => d.id).sort());

      const rest = (await Promise.all(Array.from({ length: 6 }, () => store.claimDueDeliveries(now, 5, lease)))).flat();
      const claimed = [...first, ...rest].map((d) => d.id);
      expect(new Set(claimed).size).toBe(claimed.length);
      expect(claimed.sort()).toEqual(due.map((d) => d.id).sort());
      expect(await store.claimDueDeliveries(now, 100, lease)).toEqual([]);

      // When the lease ends without a result (the claimer died), the delivery is due again.
      const again = await store.claimDueDeliveries(at(20), 100, at(1000));
      expect(again.map((d) => d.id).sort()).toEqual(due.map((d) => d.id).sort());
      // A later claim also reaches the future one; settled and unscheduled rows never.
      const later = await store.claimDueDeliveries(at(60), 100, at(70));
      expect(later.map((d) => d.id)).toEqual([future.id]);
      expect(await store.getDelivery(settled.id)).toEqual(settled);
      expect(await store.getDelivery(unscheduled.id)).toEqual(unscheduled);
    });

    it('refuses a number owned by a key that does not exist', async () => {
      await expect(store.upsertNumber({ number: '+14155559999', target: 'echo', keyId: 'key_nobody', srtp: 'off', agent: null, createdAt: now, updatedAt: now })).rejects.toThrow();
    });

    describe('the key change feed', () => {
      const head = async (): Promise<number> => (await store.keyChangesAfter(0, 0)).newestSeq;

      it('every key write appends one change, in order; recording use and failed writes append none', async () => {
        const from = await head();
        const k = key();
        await store.insertKey(k, secret(k.id));
        await store.updateKey(k.id, { callsPerSecond: 9 }, '2026-02-01T00:00:00.000Z');
        await store.rotateSecret(secret(k.id), '2026-02-01T00:00:00.000Z', { hint: 'tg_live_AbCd…new1' }, '2026-02-01T00:00:00.000Z');
        await store.recordKeyUse(k.id, '2026-02-02T00:00:00.000Z');
        expect(await store.getKey(k.id)).toMatchObject({ lastUsedAt: '2026-02-02T00:00:00.000Z', updatedAt: '2026-02-01T00:00:00.000Z', hint: 'tg_live_AbCd…new1' });
        expect(await store.updateKey('key_missing', { name: 'x' }, now)).toBeNull();
        expect(await store.rotateSecret(secret('key_missing'), now, {}, now)).toBeNull();
        const dup = key();
        await expect(store.insertKey(dup, secret(dup.id, { hash: (await store.listLiveSecrets(k.id, now))[0]!.hash }))).rejects.toThrow();

        const batch = await store.keyChangesAfter(from, 100);
        expect(batch.changes.map((c) => c.keyId)).toEqual([k.id, k.id, k.id]);
        const seqs = batch.changes.map((c) => c.seq);
        expect(seqs[0]).toBeGreaterThan(from);
        expect(seqs[1]).toBeGreaterThan(seqs[0]!);
        expect(seqs[2]).toBeGreaterThan(seqs[1]!);
        expect(batch.newestSeq).toBe(seqs[2]);
        expect(batch.oldestSeq).toBeGreaterThan(0);
        expect(batch.oldestSeq).toBeLessThanOrEqual(seqs[0]!);
        expect(Number.isNaN(Date.parse(batch.changes[0]!.at))).toBe(false);
        // Paged with a limit and a cursor.
        expect((await store.keyChangesAfter(from, 2)).changes.map((c) => c.seq)).toEqual(seqs.slice(0, 2));
        expect((await store.keyChangesAfter(seqs[1]!, 100)).changes.map((c) => c.seq)).toEqual([seqs[2]]);
        expect((await store.keyChangesAfter(seqs[2]!, 100)).changes).toEqual([]);
      });

      it('a reader following the feed while writers commit concurrently misses none of their changes', async () => {
        const ks = Array.from({ length: 8 }, () => key());
        for (const k of ks) await store.insertKey(k, secret(k.id));
        const from = await head();
        let cursor = from;
        const seen: number[] = [];
        let writing = true;
        const writes = Promise.all(
          Array.from({ length: 40 }, (_, i) => store.updateKey(ks[i % ks.length]!.id, { callsPerSecond: i + 1 }, now)),
        ).finally(() => (writing = false));
        // Bounded: the writers finish; one more read after that drains the rest.
        for (let rounds = 0; rounds < 10_000; rounds++) {
          const done = !writing;
          const b = await store.keyChangesAfter(cursor, 7);
          for (const c of b.changes) seen.push(c.seq);
          cursor = b.changes.at(-1)?.seq ?? cursor;
          if (done && b.changes.length < 7) break;
        }
        await writes;
        const all = (await store.keyChangesAfter(from, 1000)).changes.map((c) => c.seq);
        expect(all.length).toBe(40);
        expect(seen).toEqual(all);
      });

      it('pruning drops old changes but keeps the newest, so seq never goes back', async () => {
        const k = key();
        await store.insertKey(k, secret(k.id));
        await store.updateKey(k.id, { name: 'renamed' }, now);
        const newest = await head();
        expect(await store.pruneKeyChanges('1970-01-01T00:00:00.000Z')).toBe(0);
        expect(await store.pruneKeyChanges('9999-01-01T00:00:00.000Z')).toBeGreaterThanOrEqual(1);
        const after = await store.keyChangesAfter(0, 100);
        expect(after).toMatchObject({ oldestSeq: newest, newestSeq: newest });
        expect(after.changes.map((c) => [c.seq, c.keyId])).toEqual([[newest, k.id]]);
        await store.updateKey(k.id, { name: 'again' }, now);
        expect(await head()).toBeGreaterThan(newest);
      });
    });

    it('answers ping', async () => {
      await expect(store.ping()).resolves.toBeUndefined();
    });
  });
}
