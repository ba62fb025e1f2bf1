import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { guardedX5uFetcher, X5uFetchError } from './x5u-fetcher.js';
import { EgressGuard } from '../net/index.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
let server: Server;
const requests: string[] = [];
let base: string;
const sockets = new Set<import('node:net').Socket>();

beforeAll(async () => {
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    switch (req.url) {
      case '/cert.pem':
        res.writeHead(200, { 'content-type': 'application/x-pem-file' }).end(PEM);
        return;
      case '/big-declared':
        res.writeHead(200, { 'content-length': String(100_000) }).end(Buffer.alloc(100_000, 65));
        return;
      case '/big-chunked':
        res.writeHead(200); // no content-length: the cap applies while streaming
        for (let i = 0; i < 20; i++) res.write(Buffer.alloc(8192, 65));
        res.end();
        return;
      case '/redirect':
        res.writeHead(302, { location: '/cert.pem' }).end();
        return;
      case '/hang':
        res.writeHead(200);
        res.write('-----BEGIN'); // then nothing: the timeout must end it
        return;
      default:
        res.writeHead(404).end();
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => server.close(r));
});

/** The test server is on 127.0.0.1: reachable only because egress.allow says so here. */
const lab = guardedX5uFetcher(new EgressGuard({ allow: ['127.0.0.1/32'] }), { allowHttp: true });
const get = (path: string, maxBytes = 65_536, timeoutMs = 2000) => lab(base + path, { signal: AbortSignal.timeout(timeoutMs), timeoutMs, maxBytes });
const kind = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    return err instanceof X5uFetchError ? err.kind : `other: ${String(err)}`;
  }
  return 'resolved';
};

describe('fetching an x5u certificate', () => {
  it('returns the body of a 200', async () => {
    expect(Buffer.from(await get('/cert.pem')).toString()).toBe(PEM);
  });

  it('refuses non-200 answers and redirects (an x5u names the certificate itself)', async () => {
    expect(await kind(get('/missing'))).toBe('http-status');
    expect(await kind(get('/redirect'))).toBe('http-status');
  });

  it('refuses bodies over the cap, declared or streamed', async () => {
    expect(await kind(get('/big-declared'))).toBe('oversize');
    expect(await kind(get('/big-chunked'))).toBe('oversize');
  });

  it('stops at the timeout', async () => {
    // /hang never answers: the fetch ends only through its own 200 ms timeout, which it names.
    expect(await kind(get('/hang', 65_536, 200))).toBe('timeout');
  });

  it('an x5u is untrusted: loopback, private and metadata addresses are refused before connecting, whatever the spelling', async () => {
    const strict = guardedX5uFetcher(new EgressGuard({ allow: [] }), { allowHttp: true });
    const before = requests.length;
    const port = new URL(base).port;
    for (const url of [`${base}/cert.pem`, `http://127.1:${port}/cert.pem`, `http://[::ffff:127.0.0.1]:${port}/cert.pem`, `http://localhost:${port}/cert.pem`, 'http://169.254.169.254/cert.pem', 'http://10.0.0.1/cert.pem']) {
      expect(await kind(strict(url, { signal: AbortSignal.timeout(2000), timeoutMs: 2000, maxBytes: 65_536 })), url).toBe('refused');
    }
    expect(requests.length).toBe(before);
  });

  it('https only unless allowHttp (stir.verify.allowHttpX5u)', async () => {
    const httpsOnly = guardedX5uFetcher(new EgressGuard({ allow: ['127.0.0.1/32'] }), { allowHttp: false });
    const before = requests.length;
    expect(await kind(httpsOnly(`${base}/cert.pem`, { signal: AbortSignal.timeout(2000), timeoutMs: 2000, maxBytes: 65_536 }))).toBe('refused');
    expect(requests.length).toBe(before);
  });
});
