import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig, type Config } from '../config/index.js';
import { buildGateway, type Gateway } from '../core.js';
import { createLogger } from '../observability/logger.js';
import { signingSecretFor } from '../keys/key-identity.js';
import { registerWebhooksCommands } from './webhooks-command.js';

describe('tollgate webhooks …', () => {
  let dir: string;
  let config: Config;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tollgate-webhooks-cli-'));
    config = loadConfig({ env: { TOLLGATE_DATA_DIR: dir } });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(() => vi.restoreAllMocks());

  const withGateway = async <T>(fn: (gw: Gateway) => Promise<T>): Promise<T> => {
    const gw = await buildGateway(config, { purpose: 'command', logger: createLogger({ level: 'silent' }) });
    try {
      return await fn(gw);
    } finally {
      await gw.close();
    }
  };

  /** Runs one command line with --json output and returns the parsed stdout. */
  async function run(args: string[], json = true): Promise<any> {
    const program = new Command('tollgate').exitOverride();
    registerWebhooksCommands(program, { json: () => json, withGateway, actor: () => 'cli:test' });
    let out = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((out += String(chunk)), true));
    try {
      await program.parseAsync(['node', 'tollgate', 'webhooks', ...args]);
    } finally {
      vi.restoreAllMocks();
    }
    return json ? JSON.parse(out) : out;
  }

  it('adds, lists, shows the log of, retries and removes endpoints', async () => {
    const { key } = await withGateway((gw) => gw.keys.create({ name: 'a' }, 'test'));
    const added = await run(['add', 'https://hooks.example.com/h?token=abc', '--events', 'key.revoked,call.ended', '--key-id', key.id]);
    expect(added.endpoint).toMatchObject({ keyId: key.id, events: ['key.revoked', 'call.ended'], enabled: true });
    const account = await run(['add', 'https://ops.example.com/h', '--events', '*', '--account']);
    expect(account.endpoint.keyId).toBeNull();
    await expect(run(['add', 'https://x.example.com', '--events', '*'])).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await expect(run(['add', 'https://x.example.com', '--events', '*', '--account', '--key-id', key.id])).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });

    expect((await run(['list', '--key-id', key.id])).endpoints.map((e: any) => e.id)).toEqual([added.endpoint.id]);
    expect((await run(['list', '--account'])).endpoints.map((e: any) => e.id)).toEqual([account.endpoint.id]);
    const human = await run(['list'], false);
    expect(human).toContain('https://hooks.example.com/h?…');
    expect(human).not.toContain('token=abc');
    expect(human).toContain('(account)');

    // The revocation in this one-shot process only queues; a serving gateway sends.
    await withGateway((gw) => gw.keys.revoke(key.id, 'test', 'cli:test'));
    const log = await run(['deliveries', '--status', 'pending']);
    expect(log.deliveries.map((d: any) => [d.eventType, d.endpointId]).sort()).toEqual([['key.revoked', account.endpoint.id], ['key.revoked', added.endpoint.id]].sort());
    await expect(run(['retry', log.deliveries[0].id])).rejects.toMatchObject({ code: 'CONFLICT' });
    const page = await run(['deliveries', '--limit', '1']);
    expect(page.next).toMatch(/~whd_/);
    expect((await run(['deliveries', '--limit', '5', '--before', page.next])).deliveries.length).toBe(1);

    expect(await run(['signing-secret'])).toMatchObject({ scope: 'account', signingSecret: signingSecretFor(config.secrets.masterKey, 'account') });
    expect(await run(['signing-secret', '--key-id', key.id])).toMatchObject({ scope: 'key', signingSecret: signingSecretFor(config.secrets.masterKey, key.id) });

    expect(await run(['remove', added.endpoint.id])).toEqual({ removed: added.endpoint.id });
    await expect(run(['remove', added.endpoint.id])).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const settled = await run(['deliveries', '--endpoint-id', added.endpoint.id]);
    expect(settled.deliveries[0]).toMatchObject({ status: 'failed', lastError: 'endpoint removed' });
    const retried = await run(['retry', settled.deliveries[0].id]);
    expect(retried.delivery).toMatchObject({ status: 'pending' });
  });
});
