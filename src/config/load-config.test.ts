import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { ConfigError } from '../errors/index.js';
import { loadConfig } from './load-config.js';

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tollgate-config-'));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Environment that keeps everything (data, generated secrets) inside the temp dir. */
const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({ TOLLGATE_DATA_DIR: dir, ...extra });

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError, but nothing was thrown');
}

describe('loadConfig defaults', () => {
  it('loads the defaults: port 8080, the sqlite store under the data dir', () => {
    const c = loadConfig({ env: env(), cwd: dir });
    expect(c.http.port).toBe(8080);
    expect(c.store.driver).toBe('sqlite');
    expect(c.dataDir).toBe(dir);
    expect(c.store.sqlite.path).toBe(join(dir, 'tollgate.db'));
    expect(c.keys.defaults.allowedCountries).toEqual(['US', 'CA']);
  });

  it('resolves the default relative data dir against cwd', () => {
    const c = loadConfig({ env: {}, cwd: dir });
    expect(c.dataDir).toBe(join(dir, 'data'));
    expect(c.store.sqlite.path).toBe(join(dir, 'data', 'tollgate.db'));
  });

  it('generates secrets under <dataDir>/secrets with mode 0600 and reuses them on the next load', () => {
    const first = loadConfig({ env: env(), cwd: dir });
    const secretsDir = join(dir, 'secrets');
    for (const name of ['pepper', 'master-key', 'token-signing-key.pem']) {
      const p = join(secretsDir, name);
      expect(existsSync(p)).toBe(true);
      expect(statSync(p).mode & 0o777).toBe(0o600);
    }
    expect(first.secrets.masterKey).toHaveLength(32);
    expect(first.secrets.pepper.toString('utf8')).toBe(readFileSync(join(secretsDir, 'pepper'), 'utf8').trim());
    expect(createPrivateKey(first.secrets.tokenSigningKey).asymmetricKeyType).toBe('ed25519');

    const second = loadConfig({ env: env(), cwd: dir });
    expect(second.secrets.pepper.equals(first.secrets.pepper)).toBe(true);
    expect(second.secrets.masterKey.equals(first.secrets.masterKey)).toBe(true);
    expect(second.secrets.tokenSigningKey).toBe(first.secrets.tokenSigningKey);
  });

  it('generates different secrets for a different data dir', () => {
    const other = mkdtempSync(join(tmpdir(), 'tollgate-config-other-'));
    try {
      const a = loadConfig({ env: env(), cwd: dir });
      const b = loadConfig({ env: { TOLLGATE_DATA_DIR: other }, cwd: dir });
      expect(b.secrets.pepper.equals(a.secrets.pepper)).toBe(false);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});

describe('loadConfig overrides', () => {
  it('TOLLGATE_HTTP__PORT=9090 sets http.port to the number 9090', () => {
    expect(loadConfig({ env: env({ TOLLGATE_HTTP__PORT: '9090' }), cwd: dir }).http.port).toBe(9090);
  });

  it('a flow list in an env var becomes an array', () => {
    const c = loadConfig({ env: env({ TOLLGATE_KEYS__DEFAULTS__ALLOWED_COUNTRIES: '[GB, FR]' }), cwd: dir });
    expect(c.keys.defaults.allowedCountries).toEqual(['GB', 'FR']);
  });

  it('a --config YAML file overrides the defaults, and env vars override the file', () => {
    writeFileSync(join(dir, 'tollgate.yaml'), 'http:\n  port: 7070\n  host: 0.0.0.0\nsip:\n  realm: example.org\n');
    const c = loadConfig({ configFile: 'tollgate.yaml', env: env(), cwd: dir });
    expect(c.http.port).toBe(7070);
    expect(c.http.host).toBe('0.0.0.0');
    expect(c.sip.realm).toBe('example.org');
    expect(c.http.bodyLimitBytes).toBe(65536);
    expect(c.configFiles).toContain(join(dir, 'tollgate.yaml'));

    const withEnv = loadConfig({ configFile: 'tollgate.yaml', env: env({ TOLLGATE_HTTP__PORT: '9191' }), cwd: dir });
    expect(withEnv.http.port).toBe(9191);
  });

  it('a *_FILE env var reads the secret from that file (trimmed)', () => {
    const pepperFile = join(dir, 'pepper.txt');
    writeFileSync(pepperFile, 'a-pepper-from-a-file-0123456789\n');
    const c = loadConfig({ env: env({ TOLLGATE_SECRETS__PEPPER_FILE: pepperFile }), cwd: dir });
    expect(c.secrets.pepper.toString('utf8')).toBe('a-pepper-from-a-file-0123456789');
    expect(existsSync(join(dir, 'secrets', 'pepper'))).toBe(false);
  });

  it('a *_FILE env var naming a missing file is a ConfigError naming the field', () => {
    const e = configError(() => loadConfig({ env: env({ TOLLGATE_SECRETS__PEPPER_FILE: join(dir, 'nope') }), cwd: dir }));
    expect(e.message).toContain('secrets.pepperFile');
    const other = configError(() => loadConfig({ env: env({ TOLLGATE_SIP__REALM_FILE: join(dir, 'nope') }), cwd: dir }));
    expect(other.message).toContain('TOLLGATE_SIP__REALM_FILE');
  });

  it('journals settlements under the data dir unless billing.journalFile (a path, never read at load) says otherwise', () => {
    expect(loadConfig({ env: env(), cwd: dir }).billing.journalFile).toBe(join(dir, 'settlement-journal.jsonl'));
    const c = loadConfig({ env: env({ TOLLGATE_BILLING__JOURNAL_FILE: 'journal/settlements.jsonl' }), cwd: dir });
    expect(c.billing.journalFile).toBe(join(dir, 'journal', 'settlements.jsonl'));
    const e = configError(() => loadConfig({ env: env({ TOLLGATE_BILLING__INITIAL_BACKOFF_MS: '60000', TOLLGATE_BILLING__MAX_BACKOFF_MS: '1000' }), cwd: dir }));
    expect(e.message).toContain('billing.initialBackoffMs');
  });

  it('TOLLGATE_TLS__CERT_FILE and _KEY_FILE set the certificate paths, not their contents', () => {
    writeFileSync(join(dir, 'c.pem'), 'CERT');
    writeFileSync(join(dir, 'k.pem'), 'KEY');
    const c = loadConfig({ env: env({ TOLLGATE_TLS__CERT_FILE: join(dir, 'c.pem'), TOLLGATE_TLS__KEY_FILE: join(dir, 'k.pem') }), cwd: dir });
    expect(c.tls.certFile).toBe(join(dir, 'c.pem'));
    expect(c.tls.keyFile).toBe(join(dir, 'k.pem'));
  });

  it('a *_FILE env var for a plain field reads the file into the field', () => {
    writeFileSync(join(dir, 'realm.txt'), 'carrier.example\n');
    expect(loadConfig({ env: env({ TOLLGATE_SIP__REALM_FILE: join(dir, 'realm.txt') }), cwd: dir }).sip.realm).toBe('carrier.example');
  });

  it('egress.allow is empty by default; TOLLGATE_EGRESS__ALLOW takes a flow list of CIDRs', () => {
    expect(loadConfig({ env: env(), cwd: dir }).egress.allow).toEqual([]);
    expect(loadConfig({ env: env({ TOLLGATE_EGRESS__ALLOW: '[127.0.0.1/32, ::1/128, 10.20.0.0/16]' }), cwd: dir }).egress.allow).toEqual(['127.0.0.1/32', '::1/128', '10.20.0.0/16']);
  });

  it('an unknown section in the section form is refused, naming the variable', () => {
    const e = configError(() => loadConfig({ env: env({ TOLLGATE_HTPP__PORT: '1' }), cwd: dir }));
    expect(e.message).toContain('TOLLGATE_HTPP__PORT');
    expect(e.message).toContain('htpp');
  });

  it('a misspelled key in a known section is refused (TOLLGATE_SIP__UDP_PORTT)', () => {
    const e = configError(() => loadConfig({ env: env({ TOLLGATE_SIP__UDP_PORTT: '5070' }), cwd: dir }));
    expect(e.message).toContain('udpPortt');
  });

  it('a TOLLGATE_* variable that is no setting (TOLLGATE_DIR) is ignored with a warning naming it', () => {
    const c = loadConfig({ env: env({ TOLLGATE_DIR: '/opt/tollgate', TOLLGATE_VERSION: '3' }), cwd: dir });
    expect(c.dataDir).toBe(dir);
    expect(c.warnings).toHaveLength(2);
    expect(c.warnings.join('\n')).toContain('TOLLGATE_DIR');
    expect(c.warnings.join('\n')).toContain('TOLLGATE_VERSION');
  });

  it('the documented single names are settings, and the suite\'s own names are neither settings nor warned about', () => {
    const c = loadConfig({ env: env({ TOLLGATE_NODE_ID: 'relay-7', TOLLGATE_TEST_FOO: 'x', TOLLGATE_IT_BAR: 'y' }), cwd: dir });
    expect(c.nodeId).toBe('relay-7');
    expect(c.warnings).toEqual([]);
    writeFileSync(join(dir, 'node-id'), 'relay-8\n');
    expect(loadConfig({ env: env({ TOLLGATE_NODE_ID_FILE: join(dir, 'node-id') }), cwd: dir }).nodeId).toBe('relay-8');
  });
});

describe('the audit checkpoint key', () => {
  it('is generated under <dataDir>/secrets for development, and said to be there', () => {
    const c = loadConfig({ env: env(), cwd: dir });
    expect(c.audit.checkpointKeyFile).toBe(join(dir, 'secrets', 'audit-checkpoint-key.pem'));
    expect(createPrivateKey(c.audit.checkpointKey!).asymmetricKeyType).toBe('ed25519');
    expect(c.audit.checkpointFile).toBe(join(dir, 'audit-checkpoints.jsonl'));
  });

  it('comes from audit.checkpointKeyFile (a path, also as TOLLGATE_AUDIT__CHECKPOINT_KEY_FILE) or inline; it must be Ed25519', () => {
    const keyFile = join(dir, 'elsewhere.pem');
    const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    writeFileSync(keyFile, pem);
    const c = loadConfig({ env: env({ TOLLGATE_AUDIT__CHECKPOINT_KEY_FILE: keyFile }), cwd: dir });
    expect([c.audit.checkpointKeyFile, c.audit.checkpointKey]).toEqual([keyFile, pem.trim()]);
    expect(loadConfig({ env: env({ TOLLGATE_AUDIT__CHECKPOINT_KEY: pem }), cwd: dir }).audit.checkpointKeyFile).toBeNull();
    const rsa = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    expect(configError(() => loadConfig({ env: env({ TOLLGATE_AUDIT__CHECKPOINT_KEY: rsa }), cwd: dir })).message).toContain('audit.checkpointKey');
  });

  it('is absent when none is given and secrets.autoGenerate is off', () => {
    const k = Buffer.alloc(32, 1).toString('base64');
    const token = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const c = loadConfig({ env: env({ TOLLGATE_SECRETS__AUTO_GENERATE: 'false', TOLLGATE_SECRETS__PEPPER: 'p'.repeat(20), TOLLGATE_SECRETS__MASTER_KEY: k, TOLLGATE_SECRETS__TOKEN_SIGNING_KEY: token }), cwd: dir });
    expect(c.audit.checkpointKey).toBeNull();
  });
});

describe('loadConfig validation', () => {
  it('rejects http.port=70000 naming http.port', () => {
    const e = configError(() => loadConfig({ env: env({ TOLLGATE_HTTP__PORT: '70000' }), cwd: dir }));
    expect(e.message).toContain('http.port');
    expect(e.code).toBe('CONFIG_INVALID');
  });

  it('rejects store.driver=mysql naming store.driver', () => {
    const e = configError(() => loadConfig({ env: env({ TOLLGATE_STORE__DRIVER: 'mysql' }), cwd: dir }));
    expect(e.message).toContain('store.driver');
  });

  it('rejects an unknown key http.prot, naming it', () => {
    const e = configError(() => loadConfig({ env: env({ TOLLGATE_HTTP__PROT: '9090' }), cwd: dir }));
    expect(e.message).toMatch(/http/);
    expect(e.message).toContain('prot');
  });

  it('rejects an unknown key in a config file', () => {
    writeFileSync(join(dir, 'bad.yaml'), 'http:\n  prot: 9090\n');
    const e = configError(() => loadConfig({ configFile: 'bad.yaml', env: env(), cwd: dir }));
    expect(e.message).toContain('prot');
  });

  it('rejects tokens.defaultTtlSec above tokens.maxTtlSec', () => {
    const e = configError(() =>
      loadConfig({ env: env({ TOLLGATE_TOKENS__DEFAULT_TTL_SEC: '600', TOLLGATE_TOKENS__MAX_TTL_SEC: '300' }), cwd: dir }),
    );
    expect(e.message).toContain('tokens.defaultTtlSec');
  });

  it('rejects store.driver=postgres without a url', () => {
    const e = configError(() => loadConfig({ env: env({ TOLLGATE_STORE__DRIVER: 'postgres' }), cwd: dir }));
    expect(e.message).toContain('store.postgres.url');
  });

  it('accepts store.driver=postgres with a url', () => {
    const c = loadConfig({ env: env({ TOLLGATE_STORE__DRIVER: 'postgres', TOLLGATE_STORE__POSTGRES__URL: 'postgres://u@db/tollgate' }), cwd: dir });
    expect(c.store.driver).toBe('postgres');
    expect(c.store.postgres.url).toBe('postgres://u@db/tollgate');
  });

  it('rejects tls.certFile without tls.keyFile, naming tls.keyFile', () => {
    // Set through a config file: an env var ending in _FILE is read as a secret file instead.
    writeFileSync(join(dir, 'tls.yaml'), `tls:\n  certFile: ${JSON.stringify(join(dir, 'cert.pem'))}\n`);
    const e = configError(() => loadConfig({ configFile: 'tls.yaml', env: env(), cwd: dir }));
    expect(e.message).toContain('tls.keyFile');
  });

  it('accepts tls.certFile and tls.keyFile together, resolved against cwd', () => {
    writeFileSync(join(dir, 'tls.yaml'), 'tls:\n  certFile: certs/cert.pem\n  keyFile: certs/key.pem\n');
    const c = loadConfig({ configFile: 'tls.yaml', env: env(), cwd: dir });
    expect(c.tls.certFile).toBe(join(dir, 'certs', 'cert.pem'));
    expect(c.tls.keyFile).toBe(join(dir, 'certs', 'key.pem'));
  });

  it('rejects secrets.autoGenerate=false when no secrets are given, and generates nothing', () => {
    const e = configError(() => loadConfig({ env: env({ TOLLGATE_SECRETS__AUTO_GENERATE: 'false' }), cwd: dir }));
    expect(e.message).toContain('secrets.pepper');
    expect(existsSync(join(dir, 'secrets'))).toBe(false);
  });

  it('rejects a master key that is not 32 bytes', () => {
    const e = configError(() =>
      loadConfig({ env: env({ TOLLGATE_SECRETS__MASTER_KEY: Buffer.alloc(16, 7).toString('base64') }), cwd: dir }),
    );
    expect(e.message).toContain('secrets.masterKey');
  });

  it('rejects a token-signing key that is not Ed25519', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    for (const bad of [ec, 'not a key']) {
      const e = configError(() => loadConfig({ env: env({ TOLLGATE_SECRETS__TOKEN_SIGNING_KEY: bad }), cwd: dir }));
      expect(e.message).toContain('secrets.tokenSigningKey');
    }
  });

  it('accepts a given 32-byte master key as is', () => {
    const key = Buffer.alloc(32, 9);
    const c = loadConfig({ env: env({ TOLLGATE_SECRETS__MASTER_KEY: key.toString('base64') }), cwd: dir });
    expect(c.secrets.masterKey.equals(key)).toBe(true);
    expect(existsSync(join(dir, 'secrets', 'master-key'))).toBe(false);
  });

  it('rejects an egress.allow entry that is not a CIDR, naming it', () => {
    expect(configError(() => loadConfig({ env: env({ TOLLGATE_EGRESS__ALLOW: '[localhost]' }), cwd: dir })).message).toMatch(/egress\.allow\.0: a CIDR/);
  });

  it('rejects a pepper shorter than 16 characters', () => {
    const e = configError(() => loadConfig({ env: env({ TOLLGATE_SECRETS__PEPPER: 'short' }), cwd: dir }));
    expect(e.message).toContain('secrets.pepper');
  });
});

describe('loadConfig result', () => {
  it('is deeply frozen: assignments throw', () => {
    const c = loadConfig({ env: env(), cwd: dir });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.http)).toBe(true);
    expect(Object.isFrozen(c.keys.defaults.allowedCountries)).toBe(true);
    expect(() => {
      (c.http as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => {
      (c as { dataDir: string }).dataDir = '/elsewhere';
    }).toThrow(TypeError);
    expect(() => {
      c.keys.defaults.allowedCountries.push('DE');
    }).toThrow(TypeError);
    expect(c.http.port).toBe(8080);
  });
});
