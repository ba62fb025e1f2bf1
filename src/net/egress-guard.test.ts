import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:tls';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, WebSocket } from 'ws';
import { EgressError, EgressGuard, pinnedLookup, type ResolvedAddress, type Resolver } from './egress-guard.js';
import { ensureDevCertificate } from '../transport/dev-certificate.js';

/** A resolver from a table; counts its calls. Names not in it do not resolve. */
function table(entries: Record<string, readonly string[] | (() => readonly string[])>): Resolver & { calls: string[] } {
  const calls: string[] = [];
  const r = (name: string): Promise<readonly ResolvedAddress[]> => {
    calls.push(name);
    const e = entries[name];
    if (!e) return Promise.reject(Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' }));
    const list = typeof e === 'function' ? e() : e;
    return Promise.resolve(list.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }) as const));
  };
  return Object.assign(r, { calls });
}

const PUBLIC = '93.184.215.14';
const resolver = table({
  'hooks.example.com': [PUBLIC, '2606:2800:21f:cb07:6820:80da:af6b:8b2c'],
  'loopback.example.com': ['127.0.0.1'],
  'mixed.example.com': [PUBLIC, '10.1.2.3'],
  'mixed6.example.com': [PUBLIC, '::ffff:127.0.0.1'],
  'intranet.example.com': ['10.20.30.40'],
  'metadata.google.internal': ['169.254.169.254'],
  'rebound.example.com': ['fd00:ec2::254'],
});

describe('egress guard: untrusted URLs (a key or a caller chose them)', () => {
  const guard = new EgressGuard({ allow: [], resolver });
  const check = (url: string) => guard.check(url, 'untrusted');

  it('refuses every spelling of loopback, private, link-local, CGNAT, multicast and metadata destinations before any connection', async () => {
    const spellings = [
      'http://127.1/', 'http://2130706433/', 'http://0x7f000001/', 'http://017700000001/', 'http://0177.0.0.1/', 'http://127.0.0.1./',
      'http://[::ffff:127.0.0.1]/', 'http://[::ffff:7f00:1]/', 'http://[::127.0.0.1]/', 'http://[::1]/', 'http://[::]/', 'http://0.0.0.0/',
      'http://localhost/', 'http://localhost./', 'http://LOCALHOST:8080/', 'http://foo.localhost/', 'ws://a.b.localhost./x',
      'http://169.254.169.254/latest/meta-data/', 'http://[::ffff:169.254.169.254]/', 'http://metadata.google.internal/computeMetadata/v1/',
      'http://10.0.0.1/', 'http://172.16.0.1/', 'http://192.168.1.1/', 'http://100.64.0.1/', 'http://100.100.100.200/',
      'http://[fd00::1]/', 'http://[fe80::1]/', 'http://[fd00:ec2::254]/', 'http://224.0.0.1/', 'http://[ff02::1]/', 'http://255.255.255.255/',
      'http://240.0.0.1/', 'http://198.18.0.1/', 'http://192.0.2.1/', 'http://[2001:db8::1]/', 'http://[64:ff9b::7f00:1]/', 'http://[2002:7f00:1::]/',
      'wss://loopback.example.com/agent', 'https://intranet.example.com/x', 'https://rebound.example.com/x',
    ];
    for (const url of spellings) {
      const v = await check(url);
      expect(v, url).toMatchObject({ ok: false, refusal: 'destination-not-allowed', reason: 'destination not allowed' });
    }
  });

  it('refuses a name when any one of its answers is refused (RFC 8305 clients may use any of them)', async () => {
    expect(await check('https://mixed.example.com/')).toMatchObject({ ok: false, refusal: 'destination-not-allowed' });
    expect(await check('https://mixed6.example.com/')).toMatchObject({ ok: false, refusal: 'destination-not-allowed' });
  });

  it('never tells the caller the address or the resolver error; the detail is for the debug log', async () => {
    const v = await check('https://loopback.example.com/');
    expect(v.ok).toBe(false);
    if (!v.ok) {
      expect(v.reason).toBe('destination not allowed');
      expect(v.detail).toContain('127.0.0.1');
    }
    const u = await check('https://nowhere.example.com/');
    expect(u).toMatchObject({ ok: false, refusal: 'unresolvable', reason: 'connection failed' });
  });

  it('allows public addresses and names, and returns every checked address to connect to', async () => {
    expect(await check(`https://${PUBLIC}/h`)).toMatchObject({ ok: true, addresses: [{ address: PUBLIC, family: 4 }] });
    expect(await check('wss://hooks.example.com/agent')).toMatchObject({ ok: true, host: 'hooks.example.com', addresses: [{ address: PUBLIC, family: 4 }, { family: 6 }] });
    expect(await check('https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/')).toMatchObject({ ok: true });
  });

  it('accepts only http, https, ws and wss (or the schemes a caller names)', async () => {
    for (const url of ['file:///etc/passwd', 'ftp://hooks.example.com/', 'gopher://hooks.example.com/', 'javascript:alert(1)']) {
      expect((await check(url)).ok, url).toBe(false);
    }
    expect(await guard.check('ws://hooks.example.com/', 'untrusted', { schemes: ['https:'] })).toMatchObject({ ok: false, refusal: 'scheme-not-allowed' });
    expect(await check('not a url')).toMatchObject({ ok: false, refusal: 'invalid-url' });
  });
});

describe('egress guard: operator URLs (keys:admin configured them)', () => {
  const guard = new EgressGuard({ allow: [], resolver });
  const check = (url: string) => guard.check(url, 'operator');

  it("may reach the operator's own loopback and private networks", async () => {
    for (const url of ['http://127.0.0.1:8080/', 'ws://localhost:9000/agent', 'https://intranet.example.com/', 'http://10.0.0.1/', 'http://[fd00::1]/', 'http://100.64.0.1/']) {
      expect((await check(url)).ok, url).toBe(true);
    }
    expect(await check('ws://localhost:9000/')).toMatchObject({ ok: true, addresses: [{ address: '127.0.0.1', family: 4 }] });
  });

  it('still refuses link-local and cloud metadata destinations, whatever the spelling', async () => {
    for (const url of ['http://169.254.169.254/', 'http://[::ffff:a9fe:a9fe]/', 'http://2852039166/', 'http://[2002:a9fe:a9fe::]/', 'http://[64:ff9b::a9fe:a9fe]/', 'http://[fe80::1]/', 'http://metadata.google.internal/', 'http://100.100.100.200/', 'http://[fd00:ec2::254]/', 'https://rebound.example.com/']) {
      expect(await check(url), url).toMatchObject({ ok: false, refusal: 'destination-not-allowed' });
    }
  });
});

describe('egress.allow', () => {
  it('opens exactly the listed ranges, for both trusts, including IPv4-mapped spellings of them', async () => {
    const guard = new EgressGuard({ allow: ['127.0.0.1/32', '10.9.0.0/16', '169.254.169.254'], resolver });
    expect((await guard.check('http://127.0.0.1:1234/', 'untrusted')).ok).toBe(true);
    expect((await guard.check('http://[::ffff:127.0.0.1]:1234/', 'untrusted')).ok).toBe(true);
    expect((await guard.check('http://localhost:1234/', 'untrusted')).ok).toBe(true);
    expect((await guard.check('http://loopback.example.com/', 'untrusted')).ok).toBe(true);
    expect((await guard.check('http://127.0.0.2/', 'untrusted')).ok).toBe(false);
    expect((await guard.check('http://10.9.1.1/', 'untrusted')).ok).toBe(true);
    expect((await guard.check('http://10.8.1.1/', 'untrusted')).ok).toBe(false);
    expect((await guard.check('http://169.254.169.254/', 'operator')).ok).toBe(true);
    expect((await guard.check('http://169.254.169.253/', 'operator')).ok).toBe(false);
    // A metadata name is allowed only when every address it resolves to is listed.
    expect((await guard.check('http://metadata.google.internal/', 'operator')).ok).toBe(true);
    expect((await new EgressGuard({ allow: [], resolver }).check('http://metadata.google.internal/', 'operator')).ok).toBe(false);
  });

  it('refuses an entry that is not a CIDR', () => {
    expect(() => new EgressGuard({ allow: ['localhost'] })).toThrow(/not a CIDR/);
  });
});

describe('egress guard: requests', () => {
  const servers: { close(): void }[] = [];
  afterEach(() => {
    for (const s of servers.splice(0)) s.close();
  });
  const listen = async (s: Server): Promise<number> => {
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return (s.address() as AddressInfo).port;
  };

  it('connects to the address it checked even when a second resolution would answer differently (no DNS rebinding)', async () => {
    const hosts: (string | undefined)[] = [];
    const port = await listen(createServer((req, res) => {
      hosts.push(req.headers.host);
      res.end('ok');
    }));
    let answers = 0;
    // First answer: loopback (allowed here); any later one: the metadata address.
    const r = table({ 'rebind.test': () => (answers++ === 0 ? ['127.0.0.1'] : ['169.254.169.254']) });
    const guard = new EgressGuard({ allow: ['127.0.0.1/32'], resolver: r });
    const res = await guard.request(`http://rebind.test:${port}/x`, 'untrusted', { method: 'GET', timeoutMs: 5000, maxBytes: 1024 });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('ok');
    expect(r.calls).toEqual(['rebind.test']);
    // The Host header is the URL's host, not the address.
    expect(hosts).toEqual([`rebind.test:${port}`]);
  });

  it('a pinned lookup answers with the checked addresses whatever name it is asked for', () => {
    const lookup = pinnedLookup([{ address: '192.0.2.7', family: 4 }, { address: '2001:db8::7', family: 6 }]);
    const got: unknown[] = [];
    lookup('anything.example', { all: true }, (_e, a) => got.push(a));
    lookup('other.example', { family: 6 }, (_e, a, f) => got.push([a, f]));
    lookup('other.example', {}, (_e, a, f) => got.push([a, f]));
    expect(got).toEqual([[{ address: '192.0.2.7', family: 4 }, { address: '2001:db8::7', family: 6 }], ['2001:db8::7', 6], ['192.0.2.7', 4]]);
  });

  it('a WebSocket dialled with the pinned lookup reaches the checked address', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    servers.push(wss);
    await new Promise((r) => wss.once('listening', r));
    const port = (wss.address() as AddressInfo).port;
    const guard = new EgressGuard({ allow: ['127.0.0.1/32'], resolver: table({ 'agent.test': ['127.0.0.1'] }) });
    const v = await guard.check(`ws://agent.test:${port}/a`, 'untrusted');
    expect(v.ok).toBe(true);
    if (!v.ok) return;
    const ws = new WebSocket(v.url, { lookup: pinnedLookup(v.addresses), followRedirects: false });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.close();
  });

  it('keeps the URL host as the TLS server name (SNI) when connecting to the pinned address', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-egress-'));
    const { certFile, keyFile } = await ensureDevCertificate(dir);
    const names: string[] = [];
    const tls = createTlsServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), SNICallback: (name, cb) => {
      names.push(name);
      cb(null, undefined);
    } });
    servers.push(tls);
    tls.on('tlsClientError', () => {});
    await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
    const port = (tls.address() as AddressInfo).port;
    const guard = new EgressGuard({ allow: ['127.0.0.1/32'], resolver: table({ 'x5u.test': ['127.0.0.1'] }) });
    // The development certificate is not for x5u.test (nor trusted): the handshake must fail.
    const err = await guard.request(`https://x5u.test:${port}/cert.pem`, 'untrusted', { method: 'GET', timeoutMs: 5000, maxBytes: 1024 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EgressError);
    expect(err).toMatchObject({ kind: 'network', message: 'connection failed' });
    expect(names).toEqual(['x5u.test']);
  });

  it('refuses before connecting, and says only "destination not allowed"', async () => {
    const guard = new EgressGuard({ allow: [], resolver });
    for (const url of ['http://169.254.169.254/latest/meta-data/', 'http://10.0.0.1/', 'http://127.0.0.1:1/']) {
      const err = await guard.request(url, 'untrusted', { method: 'GET', timeoutMs: 5000, maxBytes: 1024 }).catch((e: unknown) => e);
      expect(err, url).toMatchObject({ name: 'EgressError', kind: 'refused', message: 'destination not allowed' });
    }
  });

  it('does not follow redirects, bounds the body and the time, and reports failures generically', async () => {
    let hang: (() => void) | null = null;
    const port = await listen(createServer((req, res) => {
      if (req.url === '/redirect') {
        res.writeHead(302, { location: 'http://169.254.169.254/' });
        res.end();
      } else if (req.url === '/big') res.end('x'.repeat(5000));
      else if (req.url === '/declared') {
        res.writeHead(200, { 'content-length': '100000' });
        res.write('x');
      } else {
        hang = () => res.end();
      }
    }));
    const guard = new EgressGuard({ allow: ['127.0.0.1/32'], resolver });
    const get = (path: string, timeoutMs = 5000) => guard.request(`http://127.0.0.1:${port}${path}`, 'untrusted', { method: 'GET', timeoutMs, maxBytes: 1024 }).catch((e: unknown) => e);
    expect(await get('/redirect')).toMatchObject({ status: 302 });
    expect(await get('/big')).toMatchObject({ kind: 'oversize', message: 'response too large' });
    expect(await get('/declared')).toMatchObject({ kind: 'oversize' });
    expect(await get('/hang', 300)).toMatchObject({ kind: 'timeout', message: 'timeout' });
    (hang as (() => void) | null)?.();
    // A closed port: ECONNREFUSED stays in the detail.
    const closed = await listen(createServer());
    servers.pop()!.close();
    await new Promise((r) => setTimeout(r, 50));
    const refused = await guard.request(`http://127.0.0.1:${closed}/`, 'untrusted', { method: 'GET', timeoutMs: 5000, maxBytes: 0 }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ kind: 'network', message: 'connection failed' });
    expect(String((refused as Error).message)).not.toMatch(/ECONNREFUSED|127\.0\.0\.1/);
  });
});
