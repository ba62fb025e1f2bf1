/**
 * A claimer process for sqlite-claim.test.ts: opens the shared database file, waits for the start time,
 * claims due webhook deliveries in small batches until none are left, and reports their ids.
 */
import { SqliteStore } from './sqlite-store.js';

const path = process.argv[2];
if (!path || !process.send) throw new Error('usage: fork(sqlite-claim-child.ts, [dbPath])');
const store = new SqliteStore(path);
process.once('message', (m: { startAt: number }) => {
  void (async () => {
    // Every claimer starts at the same instant, so their claims really interleave.
    await new Promise((r) => setTimeout(r, Math.max(0, m.startAt - Date.now())));
    const ids: string[] = [];
    for (;;) {
      const batch = await store.claimDueDeliveries('2100-01-01T00:00:00.000Z', 2, '2200-01-01T00:00:00.000Z');
      if (batch.length === 0) break;
      ids.push(...batch.map((d) => d.id));
    }
    await store.close();
    process.send!({ ids }, () => process.exit(0));
  })();
});
process.send({ ready: true });
