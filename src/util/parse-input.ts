import type { z } from 'zod';
import { TollgateError } from '../errors/index.js';

/** Names the first invalid field and why: "allowedCidrs.0: must be an IPv4 …". */
export function describeZodError(err: z.ZodError): { field: string; message: string } {
  const i = err.issues[0];
  const field = i ? i.path.map(String).join('.') || '(body)' : '(body)';
  return { field, message: `${field}: ${i?.message ?? 'invalid'}` };
}

/**
 * Parses input with a zod schema, or throws VALIDATION_FAILED naming the first bad field
 * (HTTP 400, CLI exit 2). Shared by the services and the REST routes so both reject alike.
 */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const r = schema.safeParse(input ?? {});
  if (!r.success) {
    const d = describeZodError(r.error);
    throw new TollgateError('VALIDATION_FAILED', d.message, { details: { field: d.field } });
  }
  return r.data;
}
