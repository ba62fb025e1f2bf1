import { z } from 'zod';
import type { CallPatch, UsageRecord } from '../store/store.js';

/**
 * What a finished call owes, and what it gives back: everything the settlement ledger needs to
 * land it, now or after a restart (it is journaled as JSON).
 */
export interface Settlement {
  /** The gateway's id of the call: the idempotency key of the usage record and the lease id. */
  readonly callId: string;
  readonly keyId: string;
  readonly direction: 'inbound' | 'outbound';
  /** Billed seconds (rounded up by the rate's increments). */
  readonly seconds: number;
  /** Cost in the smallest currency unit. */
  readonly amount: number;
  /** When the call ended: the usage record's time, so a late write still counts in the right budget period. */
  readonly createdAt: string;
  /** The budget reservation to settle at `amount`; null when the key has no budget. */
  readonly budget: { readonly account: string; readonly reservationId: string } | null;
  /** The concurrency pool whose lease (id = callId) is released. */
  readonly leasePool: string;
  /** The call record's completion, written after the usage record. */
  readonly record?: RecordCompletion | undefined;
}

/** A call record's final patch (status, end time, reason, seconds). */
export interface RecordCompletion {
  readonly id: string;
  readonly patch: CallPatch;
}

/** The usage record's id: one per call, so writing it twice keeps one row (Store.insertUsage). */
export const usageIdOf = (callId: string): string => `use_${callId}`;

export function usageOf(s: Settlement): UsageRecord {
  return { id: usageIdOf(s.callId), keyId: s.keyId, callId: s.callId, direction: s.direction, seconds: s.seconds, amount: s.amount, createdAt: s.createdAt };
}

const callPatchSchema = z.looseObject({
  status: z.enum(['ringing', 'answered', 'ended', 'failed']).optional(),
  answeredAt: z.string().nullable().optional(),
  endedAt: z.string().nullable().optional(),
  endReason: z.string().nullable().optional(),
  endedBy: z.enum(['caller', 'agent', 'gateway', 'policy', 'callee']).nullable().optional(),
  billableSeconds: z.number().nonnegative().optional(),
  details: z.record(z.string(), z.unknown()).optional(),
});

/** A journal line's settlement. Unknown patch fields pass through, so a newer CallPatch field survives a replay. */
export const settlementSchema = z.strictObject({
  callId: z.string().min(1).max(256),
  keyId: z.string().min(1).max(256),
  direction: z.enum(['inbound', 'outbound']),
  seconds: z.number().int().nonnegative(),
  amount: z.number().int().nonnegative(),
  createdAt: z.iso.datetime(),
  budget: z.strictObject({ account: z.string().min(1), reservationId: z.string().min(1) }).nullable(),
  leasePool: z.string().min(1),
  record: z.strictObject({ id: z.string().min(1), patch: callPatchSchema }).optional(),
});
