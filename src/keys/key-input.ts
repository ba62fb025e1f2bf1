import { isIP } from 'node:net';
import { z } from 'zod';
import { parsePhoneNumberFromString } from 'libphonenumber-js';
import { ALL_SCOPES, ROLES } from '../store/scopes.js';

/** Validation of key fields shared by the REST API and the CLI, so both reject the same input. */

export function isValidCidr(s: string): boolean {
  const [addr, bits, extra] = s.split('/');
  if (!addr || extra !== undefined) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  if (!/^[0-9]{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

export function isE164(s: string): boolean {
  if (!/^\+[1-9][0-9]{6,14}$/.test(s)) return false;
  return parsePhoneNumberFromString(s)?.isValid() ?? false;
}

const cidr = z.string().refine(isValidCidr, 'must be an IPv4 or IPv6 address or CIDR such as 203.0.113.0/24 or 2001:db8::/32');
const country = z.string().transform((s) => s.toUpperCase()).pipe(z.string().regex(/^[A-Z]{2}$/, 'must be an ISO 3166-1 alpha-2 country code such as US'));
const prefix = z.string().regex(/^\+[0-9]{1,15}$/, 'must be an E.164 prefix such as +1900');
const e164 = z.string().refine(isE164, 'must be a valid E.164 number such as +12025550100');
const isoDate = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO 8601 date-time').transform((s) => new Date(s).toISOString());

export const budgetSchema = z.strictObject({
  amount: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  period: z.enum(['day', 'month', 'total']),
  currency: z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code such as USD').default('USD'),
});

const policyFields = {
  name: z.string().trim().min(1).max(200),
  role: z.enum(ROLES).nullable(),
  scopes: z.array(z.enum(ALL_SCOPES)).max(ALL_SCOPES.length),
  allowedCidrs: z.array(cidr).max(256),
  allowedCountries: z.array(country).max(250),
  blockedPrefixes: z.array(prefix).max(1000),
  callsPerSecond: z.number().positive().max(10_000),
  cpsBurst: z.number().int().min(1).max(10_000),
  maxConcurrentCalls: z.number().int().min(0).max(1_000_000),
  budget: budgetSchema.nullable(),
  maxCallDurationSec: z.number().int().min(1).max(86_400),
  callerIds: z.array(e164).max(10_000),
  requireTls: z.boolean(),
  attestation: z.enum(['A', 'B', 'C']).nullable(),
  expiresAt: isoDate.nullable(),
};

export const keyCreateSchema = z.strictObject({
  ...policyFields,
  mode: z.enum(['live', 'test']).default('live'),
  name: policyFields.name,
  role: policyFields.role.optional(),
  scopes: policyFields.scopes.optional(),
  allowedCidrs: policyFields.allowedCidrs.optional(),
  allowedCountries: policyFields.allowedCountries.optional(),
  blockedPrefixes: policyFields.blockedPrefixes.optional(),
  callsPerSecond: policyFields.callsPerSecond.optional(),
  cpsBurst: policyFields.cpsBurst.optional(),
  maxConcurrentCalls: policyFields.maxConcurrentCalls.optional(),
  budget: policyFields.budget.optional(),
  maxCallDurationSec: policyFields.maxCallDurationSec.optional(),
  callerIds: policyFields.callerIds.optional(),
  requireTls: policyFields.requireTls.optional(),
  attestation: policyFields.attestation.optional(),
  expiresAt: policyFields.expiresAt.optional(),
});
export type KeyCreateInput = z.input<typeof keyCreateSchema>;

/** Status changes go through rotate/revoke/quarantine, not update. */
export const keyUpdateSchema = z
  .strictObject(Object.fromEntries(Object.entries(policyFields).map(([k, v]) => [k, v.optional()])) as {
    [K in keyof typeof policyFields]: z.ZodOptional<(typeof policyFields)[K]>;
  })
  .refine((o) => Object.keys(o).length > 0, 'at least one field must be given');
export type KeyUpdateInput = z.input<typeof keyUpdateSchema>;

export const rotateSchema = z.strictObject({
  graceSec: z.number().int().min(0).max(30 * 86_400).optional(),
});

export const revokeSchema = z.strictObject({
  reason: z.string().trim().max(500).optional(),
});
