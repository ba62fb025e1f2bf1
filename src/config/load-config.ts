import { existsSync, readFileSync, mkdirSync, writeFileSync, chmodSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../errors/index.js';
import { configSchema, PATH_FIELDS, type Config, type RawConfig } from './config-schema.js';

export const DEFAULT_CONFIG_PATH = resolve(dirname(fileURLToPath(import.meta.url)), '../../config/default.yaml');

export interface LoadConfigOptions {
  /** Extra YAML file given with --config. */
  configFile?: string | undefined;
  /** Environment to read TOLLGATE_* variables from; only config/ touches process.env. */
  env?: NodeJS.ProcessEnv;
  /** Base directory for relative paths (defaults to the working directory). */
  cwd?: string;
  /** Overrides applied last (used by the CLI for flags such as --port). */
  overrides?: Record<string, unknown>;
}

/** The settings sections (http, sip, …) and the top-level settings that are not sections (dataDir, nodeId). */
const SECTIONS: ReadonlySet<string> = new Set(Object.entries(configSchema.shape).filter(([, v]) => v.type === 'object').map(([k]) => k));
const TOP_LEVEL: ReadonlySet<string> = new Set(Object.keys(configSchema.shape).filter((k) => !SECTIONS.has(k)));

/**
 * Which TOLLGATE_* variables are settings (docs/configuration.md#environment-variables):
 * - 'setting': the section form TOLLGATE_<SECTION>__<KEY>[__…] (anything with "__" is read as
 *   one, so a misspelled TOLLGATE_SIP__UDP_PORTT or TOLLGATE_SIPP__UDP_PORT is refused, not
 *   ignored: it plainly meant a setting), and the single names of top-level settings
 *   (TOLLGATE_DATA_DIR, TOLLGATE_NODE_ID, each also with _FILE);
 * - 'own': names tollgate or its test suite reads themselves (TOLLGATE_CONFIG, TOLLGATE_TEST_*,
 *   TOLLGATE_IT_*);
 * - 'foreign': any other TOLLGATE_* name (say TOLLGATE_DIR, set by a wrapper script): not a
 *   setting, so it is ignored with a warning naming it instead of stopping every command.
 */
export function envVariableKind(name: string): 'setting' | 'own' | 'foreign' | 'other' {
  if (!name.startsWith('TOLLGATE_')) return 'other';
  if (name === 'TOLLGATE_CONFIG' || name.startsWith('TOLLGATE_TEST_') || name.startsWith('TOLLGATE_IT_')) return 'own';
  const rest = name.slice('TOLLGATE_'.length);
  if (rest.includes('__')) return 'setting';
  const stem = rest.endsWith('_FILE') ? rest.slice(0, -'_FILE'.length) : rest;
  return TOP_LEVEL.has(snakeToCamel(rest)) || TOP_LEVEL.has(snakeToCamel(stem)) ? 'setting' : 'foreign';
}

type Json = Record<string, unknown>;

function isPlainObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepMerge(base: Json, over: Json): Json {
  const out: Json = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const cur = out[k];
    out[k] = isPlainObject(cur) && isPlainObject(v) ? deepMerge(cur, v) : v;
  }
  return out;
}

function readYamlFile(path: string): Json {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  if (doc == null) return {};
  if (!isPlainObject(doc)) throw new ConfigError(`config file ${path} must hold a mapping at the top level`);
  return doc;
}

const snakeToCamel = (s: string): string => s.toLowerCase().replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());

/**
 * An environment value: a number, true/false, a YAML flow list or mapping ("[US, GB]"), or else
 * the string as it is (so "tollgate:" or "a: b" stay strings).
 */
function envValue(raw: string): unknown {
  const t = raw.trim();
  if (/^-?\d+(\.\d+)?$/.test(t)) return Number(t);
  if (t === 'true' || t === 'false') return t === 'true';
  if (t.startsWith('[') || t.startsWith('{')) {
    try {
      return parseYaml(t) as unknown;
    } catch {
      return raw;
    }
  }
  return raw;
}

/**
 * TOLLGATE_HTTP__PORT=9090 → { http: { port: 9090 } }; values as envValue reads them. A variable ending in _FILE
 * names a file whose content (trimmed) becomes the value of the field without the suffix.
 */
function envOverrides(env: NodeJS.ProcessEnv, warn: (message: string) => void): Json {
  const out: Json = {};
  for (const [name, raw] of Object.entries(env)) {
    if (raw === undefined) continue;
    const kind = envVariableKind(name);
    if (kind === 'foreign') {
      warn(`ignoring the environment variable ${name}: it is not a tollgate setting (settings are TOLLGATE_<SECTION>__<KEY>, TOLLGATE_DATA_DIR, TOLLGATE_NODE_ID and TOLLGATE_CONFIG; docs/configuration.md)`);
      continue;
    }
    if (kind !== 'setting') continue;
    let rest = name.slice('TOLLGATE_'.length);
    const section = snakeToCamel(rest.split('__')[0]!);
    if (rest.includes('__') && !SECTIONS.has(section)) {
      throw new ConfigError(`invalid configuration: ${name}: "${section}" is not a settings section (sections: ${[...SECTIONS].join(', ')})`);
    }
    let value: unknown;
    const isPathField = PATH_FIELDS.has(rest.split('__').map(snakeToCamel).join('.'));
    if (rest.endsWith('_FILE') && !isPathField) {
      rest = rest.slice(0, -'_FILE'.length);
      try {
        value = readFileSync(raw, 'utf8').trim();
      } catch (err) {
        throw new ConfigError(`${name}: cannot read ${raw}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
      }
    } else {
      value = envValue(raw);
    }
    const path = rest.split('__').map(snakeToCamel);
    let node = out;
    for (const [i, seg] of path.entries()) {
      if (i === path.length - 1) node[seg] = value;
      else node = (isPlainObject(node[seg]) ? node[seg] : (node[seg] = {}));
    }
  }
  return out;
}

function formatIssues(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string {
  return issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ');
}

function readSecretFile(field: string, path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new ConfigError(`${field}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
  }
}

/** A generated development secret: created once with mode 0600 and reused on later starts. */
function autoSecret(dir: string, name: string, make: () => string): string {
  const path = join(dir, name);
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const value = make();
  writeFileSync(path, value + '\n', { mode: 0o600, flag: 'wx' });
  chmodSync(path, 0o600);
  return value;
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null && !Object.isFrozen(o) && !Buffer.isBuffer(o)) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/**
 * Loads config/default.yaml, then the --config file, then TOLLGATE_* variables and *_FILE
 * secret files; validates once with zod and freezes the result (STYLE.md §7). Throws a
 * ConfigError that names the field and the reason.
 */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const files = [DEFAULT_CONFIG_PATH];
  const extra = options.configFile ?? env.TOLLGATE_CONFIG;
  if (extra) files.push(resolve(cwd, extra));

  const warnings: string[] = [];
  let merged: Json = {};
  for (const f of files) merged = deepMerge(merged, readYamlFile(f));
  merged = deepMerge(merged, envOverrides(env, (w) => warnings.push(w)));
  if (options.overrides) merged = deepMerge(merged, options.overrides);

  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) throw new ConfigError(`invalid configuration: ${formatIssues(parsed.error.issues)}`);
  const raw: RawConfig = parsed.data;

  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(cwd, p));
  const dataDir = abs(raw.dataDir);

  if (raw.store.postgres.urlFile) raw.store.postgres.url = readSecretFile('store.postgres.urlFile', raw.store.postgres.urlFile);
  if (raw.counters.redis.urlFile) raw.counters.redis.url = readSecretFile('counters.redis.urlFile', raw.counters.redis.urlFile);

  if (raw.agents.twilioAuthTokenFile) raw.agents.twilioAuthToken = readSecretFile('agents.twilioAuthTokenFile', raw.agents.twilioAuthTokenFile);

  const s = raw.secrets;
  let pepper = s.pepperFile ? readSecretFile('secrets.pepperFile', s.pepperFile) : s.pepper;
  let masterKey = s.masterKeyFile ? readSecretFile('secrets.masterKeyFile', s.masterKeyFile) : s.masterKey;
  let tokenKey = s.tokenSigningKeyFile ? readSecretFile('secrets.tokenSigningKeyFile', s.tokenSigningKeyFile) : s.tokenSigningKey;
  const secretsDir = join(dataDir, 'secrets');
  const missing = (v: string): boolean => v.length === 0;
  if (!s.autoGenerate) {
    for (const [field, v] of [['secrets.pepper', pepper], ['secrets.masterKey', masterKey], ['secrets.tokenSigningKey', tokenKey]] as const) {
      if (missing(v)) throw new ConfigError(`invalid configuration: ${field}: is required when secrets.autoGenerate is false`);
    }
  }
  if (missing(pepper)) pepper = autoSecret(secretsDir, 'pepper', () => randomBytes(32).toString('base64'));
  if (missing(masterKey)) masterKey = autoSecret(secretsDir, 'master-key', () => randomBytes(32).toString('base64'));
  if (missing(tokenKey)) {
    tokenKey = autoSecret(secretsDir, 'token-signing-key.pem', () =>
      generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString().trim(),
    );
  }
  if (pepper.length < 16) throw new ConfigError('invalid configuration: secrets.pepper: must be at least 16 characters');
  const masterKeyBuf = Buffer.from(masterKey, 'base64');
  if (masterKeyBuf.length !== 32) throw new ConfigError('invalid configuration: secrets.masterKey: must be base64 of exactly 32 bytes');
  let tokenKeyType: string | undefined;
  try {
    tokenKeyType = createPrivateKey(tokenKey).asymmetricKeyType;
  } catch {
    tokenKeyType = undefined;
  }
  if (tokenKeyType !== 'ed25519') {
    throw new ConfigError('invalid configuration: secrets.tokenSigningKey: must be an Ed25519 private key in PKCS#8 PEM');
  }

  // The audit checkpoint key (docs/audit.md): given inline or as a file, else generated for
  // development like the other secrets (then it sits in the data directory, which the docs and
  // `serve`'s log say), else none.
  const a = raw.audit;
  let checkpointKeyFile: string | null = a.checkpointKeyFile ? abs(a.checkpointKeyFile) : null;
  let checkpointKey: string | null = checkpointKeyFile ? readSecretFile('audit.checkpointKeyFile', checkpointKeyFile) : a.checkpointKey || null;
  if (!checkpointKey && s.autoGenerate) {
    checkpointKey = autoSecret(secretsDir, 'audit-checkpoint-key.pem', () =>
      generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString().trim(),
    );
    checkpointKeyFile = join(secretsDir, 'audit-checkpoint-key.pem');
  }
  if (checkpointKey) {
    let type: string | undefined;
    try {
      type = createPrivateKey(checkpointKey).asymmetricKeyType;
    } catch {
      type = undefined;
    }
    if (type !== 'ed25519') throw new ConfigError(`invalid configuration: ${a.checkpointKeyFile ? 'audit.checkpointKeyFile' : 'audit.checkpointKey'}: must be an Ed25519 private key in PKCS#8 PEM`);
  }

  const config: Config = {
    ...raw,
    dataDir,
    nodeId: raw.nodeId || `${hostname()}-${process.pid}`,
    configFiles: files,
    warnings,
    store: { ...raw.store, sqlite: { path: raw.store.sqlite.path ? abs(raw.store.sqlite.path) : join(dataDir, 'tollgate.db') } },
    billing: { ...raw.billing, journalFile: raw.billing.journalFile ? abs(raw.billing.journalFile) : join(dataDir, 'settlement-journal.jsonl') },
    tls: { ...raw.tls, certFile: raw.tls.certFile ? abs(raw.tls.certFile) : '', keyFile: raw.tls.keyFile ? abs(raw.tls.keyFile) : '' },
    audit: {
      checkpointKey,
      checkpointKeyFile,
      checkpointFile: a.checkpointFile ? abs(a.checkpointFile) : join(dataDir, 'audit-checkpoints.jsonl'),
      checkpointIntervalSec: a.checkpointIntervalSec,
    },
    secrets: { pepper: Buffer.from(pepper, 'utf8'), masterKey: masterKeyBuf, tokenSigningKey: tokenKey },
  };
  return deepFreeze(config);
}
