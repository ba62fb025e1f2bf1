import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fetchX5u, X5uFetchError } from './x5u-fetcher.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
let server: Server;
let base: string;
const sockets = new Set<import('node:net').Socket>();

beforeAll(async () => {
  server = createServer((req, res) => {
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

const get = (path: string, maxBytes = 65_536, timeoutMs = 2000) => fetchX5u(base + path, { signal: AbortSignal.timeout(timeoutMs), maxBytes });
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
    expect(await kind(get('/redirect'))).toBe('network');
  });

  it('refuses bodies over the cap, declared or streamed', async () => {
    expect(await kind(get('/big-declared'))).toBe('oversize');
    expect(await kind(get('/big-chunked'))).toBe('oversize');
  });

  it('stops at the timeout', async () => {
    // /hang never answers: the fetch ends only through its own 200 ms timeout, which it names.
    expect(await kind(get('/hang', 65_536, 200))).toBe('timeout');
  });
});
