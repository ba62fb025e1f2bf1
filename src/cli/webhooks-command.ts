import { Option, type Command } from 'commander';
import type { CliServices } from './app.js';
import { TollgateError } from '../errors/index.js';
import type { WebhookDelivery, WebhookEndpoint } from '../store/store.js';
import { urlForAudit, WEBHOOK_EVENT_TYPES } from '../webhooks/index.js';
import { makeOut, table } from './output.js';

export interface WebhooksCommandContext {
  json: () => boolean;
  withGateway: <T>(fn: (gw: CliServices) => Promise<T>) => Promise<T>;
  actor: () => string;
}

const list = (v: string): string[] => v.split(',').map((s) => s.trim()).filter(Boolean);
const num = (v: string): number => (v.trim() === '' ? Number.NaN : Number(v));

/** Endpoints as the human table shows them: the URL without its query (it may carry the receiver's token). */
const endpointRows = (rows: WebhookEndpoint[]): Record<string, unknown>[] =>
  rows.map((e) => ({ ...e, keyId: e.keyId ?? '(account)', url: urlForAudit(e.url) }));
const deliveryRows = (rows: WebhookDelivery[]): Record<string, unknown>[] => rows.map((d) => ({ ...d, keyId: d.keyId ?? '(account)' }));

/**
 * `tollgate webhooks …`: the operator's view of webhook endpoints and the delivery log. These
 * one-shot commands write to the store; the running gateway's delivery loop sends what they
 * queue (within webhooks poll time, about a second).
 */
export function registerWebhooksCommands(program: Command, ctx: WebhooksCommandContext): void {
  const webhooks = program.command('webhooks').description('signed event deliveries to your systems (docs/webhooks.md)');

  webhooks
    .command('add <url>')
    .description('add an endpoint for one key\'s events (--key-id) or every key\'s (--account)')
    .requiredOption('--events <list>', `comma-separated event types, or * for all: ${WEBHOOK_EVENT_TYPES.join(', ')}`, list)
    .option('--key-id <id>', 'the key whose events the endpoint gets (signed with the key\'s signing secret)')
    .option('--account', 'an account-wide endpoint: every key\'s events, signed with the account signing secret')
    .action(async (url: string, o: { events: string[]; keyId?: string; account?: boolean }) => {
      if (!!o.keyId === !!o.account) throw new TollgateError('VALIDATION_FAILED', 'give either --key-id <id> or --account');
      await ctx.withGateway(async (gw) => {
        const e = await gw.webhooks.addEndpoint({ url, events: o.events as never, keyId: o.keyId ?? null }, ctx.actor());
        makeOut(ctx.json()).print(`${e.id} → ${urlForAudit(e.url)} (${e.keyId ? `key ${e.keyId}` : 'account-wide'}; events ${e.events.join(', ')})`, { endpoint: e });
      });
    });

  webhooks
    .command('list')
    .description('list endpoints')
    .option('--key-id <id>', 'only this key\'s endpoints')
    .option('--account', 'only account-wide endpoints')
    .option('--limit <n>', 'at most this many', num, 100)
    .option('--after <id>', 'continue after this endpoint id')
    .action(async (o: { keyId?: string; account?: boolean; limit: number; after?: string }) => {
      await ctx.withGateway(async (gw) => {
        const rows = await gw.webhooks.listEndpoints({ keyId: o.account ? null : o.keyId, limit: o.limit, after: o.after });
        makeOut(ctx.json()).print(table(endpointRows(rows), ['id', 'keyId', 'url', 'events', 'enabled', 'createdAt']), { endpoints: rows });
      });
    });

  webhooks
    .command('remove <id>')
    .description('remove an endpoint; its pending deliveries end failed')
    .action(async (id: string) => {
      await ctx.withGateway(async (gw) => {
        await gw.webhooks.removeEndpoint(id, ctx.actor());
        makeOut(ctx.json()).print(`${id} removed`, { removed: id });
      });
    });

  webhooks
    .command('deliveries')
    .description('the delivery log, newest first')
    .addOption(new Option('--status <status>').choices(['pending', 'delivered', 'failed']))
    .option('--endpoint-id <id>', 'only this endpoint\'s deliveries')
    .option('--key-id <id>', 'only deliveries to this key\'s endpoints')
    .option('--limit <n>', 'at most this many', num, 50)
    .option('--before <cursor>', 'the next cursor of the previous page (<createdAt>~<id>), or a date-time')
    .action(async (o: { status?: WebhookDelivery['status']; endpointId?: string; keyId?: string; limit: number; before?: string }) => {
      const [before, beforeId] = o.before ? o.before.split('~') : [];
      if (before !== undefined && Number.isNaN(Date.parse(before))) throw new TollgateError('VALIDATION_FAILED', 'before: not a date-time');
      await ctx.withGateway(async (gw) => {
        const rows = await gw.webhooks.listDeliveries({ keyId: o.keyId, endpointId: o.endpointId, status: o.status, limit: o.limit, before, beforeId });
        const last = rows.at(-1);
        const next = rows.length === o.limit && last ? `${last.createdAt}~${last.id}` : null;
        // The payload is the event as sent; the human table leaves it out.
        makeOut(ctx.json()).print(
          table(deliveryRows(rows), ['id', 'eventType', 'endpointId', 'keyId', 'status', 'attempts', 'lastStatus', 'lastError', 'nextAttemptAt', 'createdAt']) + (next ? `\nnext page: --before ${next}` : ''),
          { deliveries: rows, next },
        );
      });
    });

  webhooks
    .command('retry <deliveryId>')
    .description('send a failed or delivered delivery again (the running gateway sends it)')
    .action(async (id: string) => {
      await ctx.withGateway(async (gw) => {
        const d = await gw.webhooks.retry(id, ctx.actor());
        makeOut(ctx.json()).print(`${d.id} queued (attempt ${d.attempts + 1})`, { delivery: d });
      });
    });

  webhooks
    .command('signing-secret')
    .description('the secret deliveries are signed with: the account-wide one, or a key\'s (--key-id)')
    .option('--key-id <id>', 'the key whose endpoints\' secret to show')
    .action(async (o: { keyId?: string }) => {
      await ctx.withGateway(async (gw) => {
        if (o.keyId) await gw.keys.require(o.keyId);
        const secret = gw.webhooks.signingSecret(o.keyId ?? null);
        makeOut(ctx.json()).print(`signing secret ${secret}`, { scope: o.keyId ? 'key' : 'account', keyId: o.keyId ?? null, signingSecret: secret });
      });
    });
}
