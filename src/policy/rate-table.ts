import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { isNode, LineCounter, parseDocument, type Document } from 'yaml';
import { z } from 'zod';
import { DEFAULT_CONFIG_PATH } from '../config/load-config.js';
import { TollgateError } from '../errors/index.js';

/**
 * The rate table (docs/rates.md): prices by destination E.164 prefix, longest match, with
 * billing increments and a connection fee, loaded once at start from `policy.rateTableFile`.
 *
 * Money is in the smallest currency unit (cents for USD), like key budgets and usage. Rates
 * may be fractional (0.45 cents a minute), so they are held as integer micro-units (10⁻⁶ of
 * the smallest unit) and a call's cost is computed exactly in integers, then rounded up once
 * to a whole unit: never under-billed, at most one unit over.
 */

export type Direction = 'inbound' | 'outbound';

/** Billing increments in seconds: the first block, then each further block ("6/6", "60/60", "30/6"). */
export interface BillingIncrement {
  readonly first: number;
  readonly next: number;
}

export interface Rate {
  /** The matched E.164 prefix, or "*" for the catch-all. */
  readonly prefix: string;
  readonly direction: Direction;
  readonly description: string;
  /** ISO 4217 code; every amount is in its smallest unit. */
  readonly currency: string;
  /** Smallest currency units per minute (may be fractional); for display and logs. */
  readonly ratePerMinute: number;
  /** The same in integer micro-units (10⁻⁶ of the smallest unit): what costOf computes with. */
  readonly ratePerMinuteMicros: number;
  readonly increment: BillingIncrement;
  /** Charged once per answered call (billable seconds > 0), in smallest units; for display. */
  readonly connectionFee: number;
  readonly connectionFeeMicros: number;
}

const MICROS = 1_000_000;
const MICROS_PER_MINUTE = 60n * BigInt(MICROS);
const MAX_INCREMENT_SEC = 3600;
const CATCH_ALL = '*';
const E164_PREFIX = /^\+[0-9]{1,15}$/;
/** Up to 7 integer digits keeps micro-units (≤ 10¹³) well inside Number.MAX_SAFE_INTEGER. */
const DECIMAL = /^([0-9]{1,7})(?:\.([0-9]{1,6}))?$/;

/** The installed package's root (where config/default.yaml lives), from src/ and from dist/. */
const PACKAGE_ROOT = dirname(dirname(DEFAULT_CONFIG_PATH));

/**
 * Where a configured file is: absolute paths as given; a relative path against the working
 * directory first, then against the package root, so a gateway started from another
 * directory still finds the shipped config/rates.yaml and config/blocked/*.txt. When the
 * file is in neither place, the working-directory path is returned (and the read fails there).
 */
export function resolveShippedFile(path: string, cwd: string = process.cwd()): string {
  if (isAbsolute(path)) return path;
  const fromCwd = resolve(cwd, path);
  if (existsSync(fromCwd)) return fromCwd;
  const fromRoot = resolve(PACKAGE_ROOT, path);
  return existsSync(fromRoot) ? fromRoot : fromCwd;
}

/** Reads a configured text file (resolved by resolveShippedFile) or throws CONFIG_INVALID. */
export function readShippedFile(path: string, what: string, cwd: string = process.cwd()): { file: string; text: string } {
  const file = resolveShippedFile(path, cwd);
  try {
    return { file, text: readFileSync(file, 'utf8') };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    const where = isAbsolute(path) ? file : `${file} or ${resolve(PACKAGE_ROOT, path)}`;
    throw new TollgateError('CONFIG_INVALID', `cannot read ${what} ${path} (looked for ${where}): ${code}`, { cause: err });
  }
}

function toMicros(text: string): number {
  const m = DECIMAL.exec(text);
  if (!m) throw new Error('unreachable: checked by the schema');
  const frac = (m[2] ?? '').padEnd(6, '0');
  return Number(m[1]) * MICROS + Number(frac);
}

/** "is required: …" for a missing field, "must be …" for one of the wrong type. */
const typeError =
  (what: string) =>
  (issue: { input?: unknown }): string =>
    issue.input === undefined ? `is required: ${what}` : `must be ${what}`;

/**
 * A non-negative amount with at most 6 decimal places, as a YAML number or string. A number
 * is read through its shortest decimal form (String(0.45) === "0.45"), which is the literal
 * written in the file, so no binary rounding creeps in; 1e-7 and the like are refused.
 */
const amount = z.preprocess(
  (v) => (typeof v === 'number' ? String(v) : v),
  z
    .string({ error: typeError('an amount such as 0.45') })
    .regex(DECIMAL, 'must be a non-negative amount in the smallest currency unit with at most 6 decimal places, such as 0.45')
    .transform(toMicros),
);

const increment = z
  .string({ error: 'must be a quoted "first/next" in seconds, such as "6/6"' })
  .regex(/^[0-9]{1,4}\/[0-9]{1,4}$/, 'must be "first/next" in whole seconds, such as "1/1", "6/6" or "60/60"')
  .transform((s, ctx): BillingIncrement => {
    const [first, next] = s.split('/').map(Number) as [number, number];
    if (first < 1 || next < 1 || first > MAX_INCREMENT_SEC || next > MAX_INCREMENT_SEC) {
      ctx.addIssue({ code: 'custom', message: `both parts of "${s}" must be between 1 and ${MAX_INCREMENT_SEC} seconds` });
      return z.NEVER;
    }
    return { first, next };
  });

/** Messages for a mapping of the wrong type or with fields it does not know; others keep zod's. */
const mappingError =
  (message: string) =>
  (issue: { code?: string; keys?: readonly string[] }): string | undefined => {
    if (issue.code === 'invalid_type') return message;
    if (issue.code === 'unrecognized_keys') return `has unknown field${issue.keys?.length === 1 ? '' : 's'} ${(issue.keys ?? []).map((k) => `"${k}"`).join(', ')} (a typo?)`;
    return undefined;
  };

/** A direction's price: a bare amount, or a mapping that may override increment and fee. */
const directionPrice = z.preprocess(
  (v) => (typeof v === 'number' || typeof v === 'string' ? { rate: v } : v),
  z.strictObject(
    { rate: amount, increment: increment.optional(), connectionFee: amount.optional() },
    { error: mappingError('must be an amount (0.45) or a mapping { rate, increment, connectionFee }') },
  ),
);

const entrySchema = z
  .strictObject(
    {
      prefix: z
        .string({ error: 'must be a quoted string such as "+44" or "*" (an unquoted +44 is the YAML number 44)' })
        .refine((p) => p === CATCH_ALL || E164_PREFIX.test(p), 'must be an E.164 prefix such as "+44" (a "+" and 1 to 15 digits) or "*"'),
      description: z.string().default(''),
      increment: increment.optional(),
      connectionFee: amount.optional(),
      inbound: directionPrice.optional(),
      outbound: directionPrice.optional(),
    },
    { error: mappingError('each rate must be a mapping with prefix, description, inbound and/or outbound') },
  )
  .refine((e) => e.inbound !== undefined || e.outbound !== undefined, 'needs an inbound or an outbound price (or both)');

const fileSchema = z.strictObject(
  {
    currency: z.string({ error: typeError('an ISO 4217 code such as USD') }).regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code such as USD'),
    defaults: z
      .strictObject({ increment: increment.optional(), connectionFee: amount.optional() }, { error: mappingError('must be a mapping with increment and/or connectionFee') })
      .optional(),
    rates: z.array(entrySchema, { error: typeError('a list of rates') }).min(1, 'must list at least one rate'),
  },
  { error: mappingError('must be a mapping with currency, defaults and rates') },
);

interface TrieNode {
  readonly children: (TrieNode | undefined)[];
  inbound: Rate | undefined;
  outbound: Rate | undefined;
}

const newNode = (): TrieNode => ({ children: new Array<TrieNode | undefined>(10).fill(undefined), inbound: undefined, outbound: undefined });

/**
 * Prices by destination prefix. lookup() walks a digit trie once along the number, keeping the
 * deepest node priced for the direction: O(digits), no allocation.
 */
export class RateTable {
  private readonly root: TrieNode = newNode();
  private readonly all: readonly Rate[];

  /** Rates for distinct (prefix, direction) pairs; use loadRateTable or parseRateTable to build one from a file. */
  constructor(
    rates: readonly Rate[],
    readonly currency: string,
    readonly source = '(memory)',
  ) {
    for (const rate of rates) {
      if (rate.prefix !== CATCH_ALL && !E164_PREFIX.test(rate.prefix)) throw new RangeError(`not an E.164 prefix or "*": ${rate.prefix}`);
      let node = this.root;
      if (rate.prefix !== CATCH_ALL) {
        for (let i = 1; i < rate.prefix.length; i++) {
          const d = rate.prefix.charCodeAt(i) - 48;
          node = node.children[d] ??= newNode();
        }
      }
      if (node[rate.direction]) throw new RangeError(`duplicate ${rate.direction} rate for ${rate.prefix}`);
      node[rate.direction] = rate;
    }
    this.all = Object.freeze([...rates]);
  }

  /**
   * The price of a call to (outbound) or on (inbound, the called number) `e164`: the longest
   * prefix priced for that direction, else the catch-all, else null. null too for anything
   * that is not "+" and 1 to 15 digits.
   */
  lookup(e164: string, direction: Direction): Rate | null {
    const n = e164.length;
    if (n < 2 || n > 16 || e164.charCodeAt(0) !== 43 /* + */) return null;
    let node: TrieNode | undefined = this.root;
    let best = node[direction];
    for (let i = 1; i < n; i++) {
      const d = e164.charCodeAt(i) - 48;
      if (d < 0 || d > 9) return null;
      if (node) {
        node = node.children[d];
        const r = node?.[direction];
        if (r) best = r;
      }
    }
    return best ?? null;
  }

  /** Every rate in the table, in file order (inbound before outbound within an entry). */
  rates(): readonly Rate[] {
    return this.all;
  }

  get size(): number {
    return this.all.length;
  }
}

type RawEntry = z.infer<typeof entrySchema>;

/** The 1-based line of the deepest node on `path` that exists in the document. */
function lineOf(doc: Document, lines: LineCounter, path: readonly PropertyKey[]): number | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node: unknown = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
    if (isNode(node) && node.range) return lines.linePos(node.range[0]).line;
  }
  return undefined;
}

function describeIssue(doc: Document, lines: LineCounter, source: string, path: readonly PropertyKey[], message: string): string {
  const line = lineOf(doc, lines, path);
  const where = line === undefined ? source : `${source}:${line}`;
  let field = path.map(String).join('.');
  if (path[0] === 'rates' && typeof path[1] === 'number') {
    const prefix: unknown = doc.getIn(['rates', path[1], 'prefix']);
    const rest = path.slice(2).map(String).join('.');
    field = `rates[${path[1]}]${typeof prefix === 'string' ? ` (${prefix})` : ''}${rest ? ` ${rest}` : ''}`;
  }
  return `${where}: ${field || '(top level)'} ${message}`;
}

/**
 * Parses and validates a rate table; `source` names it in errors ("config/rates.yaml:42:
 * rates[7] (+447) outbound.rate must be …"). Throws TollgateError CONFIG_INVALID listing
 * every problem found, each with its line.
 */
export function parseRateTable(text: string, source = '(rate table)'): RateTable {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new TollgateError('CONFIG_INVALID', `rate table ${source} is not valid YAML: ${doc.errors.map((e) => e.message.split('\n')[0]?.replace(/:$/, '')).join('; ')}`, {
      cause: doc.errors[0],
    });
  }
  const parsed = fileSchema.safeParse(doc.toJS());
  if (!parsed.success) {
    const problems = parsed.error.issues.slice(0, 10).map((i) => describeIssue(doc, lines, source, i.path, i.message));
    const more = parsed.error.issues.length > 10 ? `; and ${parsed.error.issues.length - 10} more` : '';
    throw new TollgateError('CONFIG_INVALID', `invalid rate table: ${problems.join('; ')}${more}`);
  }

  const { currency, defaults, rates: entries } = parsed.data;
  const seen = new Map<string, number>();
  const rates: Rate[] = [];
  entries.forEach((e: RawEntry, i) => {
    const first = seen.get(e.prefix);
    if (first !== undefined) {
      const at = (k: number): string => `rates[${k}] at line ${lineOf(doc, lines, ['rates', k]) ?? '?'}`;
      throw new TollgateError('CONFIG_INVALID', `invalid rate table: ${source}:${lineOf(doc, lines, ['rates', i]) ?? '?'}: prefix ${e.prefix} appears twice (${at(first)} and ${at(i)}); merge them into one entry`);
    }
    seen.set(e.prefix, i);
    for (const direction of ['inbound', 'outbound'] as const) {
      const price = e[direction];
      if (!price) continue;
      const feeMicros = price.connectionFee ?? e.connectionFee ?? defaults?.connectionFee ?? 0;
      const rate: Rate = {
        prefix: e.prefix,
        direction,
        description: e.description,
        currency,
        ratePerMinute: price.rate / MICROS,
        ratePerMinuteMicros: price.rate,
        increment: Object.freeze({ ...(price.increment ?? e.increment ?? defaults?.increment ?? { first: 1, next: 1 }) }),
        connectionFee: feeMicros / MICROS,
        connectionFeeMicros: feeMicros,
      };
      rates.push(Object.freeze(rate));
    }
  });
  return new RateTable(rates, currency, source);
}

/** Reads, validates and indexes a rate table file; relative paths as resolveShippedFile. */
export function loadRateTable(path: string, cwd: string = process.cwd()): RateTable {
  const { file, text } = readShippedFile(path, 'rate table', cwd);
  return parseRateTable(text, file);
}

/**
 * The configured rate table, or null when `policy.rateTableFile` is empty (then every call is
 * priced with flatRate(policy.defaultRatePerMinute)).
 */
export function rateTableFor(config: { readonly policy: { readonly rateTableFile: string } }, cwd: string = process.cwd()): RateTable | null {
  return config.policy.rateTableFile === '' ? null : loadRateTable(config.policy.rateTableFile, cwd);
}

/**
 * A per-second catch-all price with no connection fee: what a call costs without a rate table.
 * costOf(flatRate(r), s) equals the older per-second costOf(s, r) for whole-unit rates.
 */
export function flatRate(ratePerMinute: number, direction: Direction = 'outbound', currency = 'XXX'): Rate {
  const micros = Math.round(ratePerMinute * MICROS);
  if (!Number.isSafeInteger(micros) || micros < 0) throw new RangeError(`ratePerMinute must be a non-negative amount, got ${ratePerMinute}`);
  return Object.freeze({
    prefix: CATCH_ALL,
    direction,
    description: 'flat rate',
    currency,
    ratePerMinute: micros / MICROS,
    ratePerMinuteMicros: micros,
    increment: Object.freeze({ first: 1, next: 1 }),
    connectionFee: 0,
    connectionFeeMicros: 0,
  });
}

function wholeSeconds(seconds: number, name: string): number {
  if (!Number.isFinite(seconds) || seconds < 0) throw new RangeError(`${name} must be a finite number ≥ 0, got ${seconds}`);
  return Math.ceil(seconds);
}

/**
 * Seconds billed for a call that lasted `seconds` (a started second counts whole): 0 stays 0;
 * otherwise at least `first`, then whole blocks of `next`. 6/6: 61 s → 66 s; 60/60: 61 s → 120 s.
 */
export function billedSeconds(rate: Rate, seconds: number): number {
  const s = wholeSeconds(seconds, 'seconds');
  if (s === 0) return 0;
  const { first, next } = rate.increment;
  if (s <= first) return first;
  return first + Math.ceil((s - first) / next) * next;
}

/**
 * What an answered call of `billableSeconds` costs, in whole smallest units: the connection fee
 * plus the billed seconds at the rate, computed exactly and rounded up once. A call with 0
 * billable seconds (unanswered, or answered and dropped at once) costs nothing, fee included.
 */
export function costOf(rate: Rate, billableSeconds: number): number {
  const billed = billedSeconds(rate, billableSeconds);
  if (billed === 0) return 0;
  // In units of micro/60: fee × 60 + rate-per-minute × seconds; BigInt so long calls stay exact.
  const sixtieths = BigInt(rate.connectionFeeMicros) * 60n + BigInt(rate.ratePerMinuteMicros) * BigInt(billed);
  return Number((sixtieths + MICROS_PER_MINUTE - 1n) / MICROS_PER_MINUTE);
}

/**
 * The budget to reserve before a call that may last up to `maxDurationSec`: the worst case,
 * i.e. connection fee plus the maximum duration rounded up to the increments. costOf never
 * decreases as seconds grow, so reserveFor(rate, max) ≥ costOf(rate, s) for every s ≤ max.
 */
export function reserveFor(rate: Rate, maxDurationSec: number): number {
  return costOf(rate, wholeSeconds(maxDurationSec, 'maxDurationSec'));
}
