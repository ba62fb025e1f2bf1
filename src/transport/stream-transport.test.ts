import { describe, it, expect, beforeAll, afterEach, vi } from 'vitest';
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLOSE_LINGER_MS, StreamTransport, type StreamFramerFactory, type StreamTransportOptions } from './stream-transport.js';
import { ensureDevCertificate } from './dev-certificate.js';
import type { InboundMessage } from './sip-transport.js';

/**
 * A stand-in for the SIP framer: a message ends at an empty line; a message starting "BAD" is a
 * framing error answered with "ANSWER\r\n" (as SIP answers 400 or 513).
 */
let received = 0;
const testFraming: StreamFramerFactory = (handlers) => {
  let buf = '';
  let stopped = false;
  return {
    push(chunk: Buffer) {
      received += chunk.length;
      if (stopped) return;
      buf += chunk.toString('latin1');
      if (buf.startsWith('BAD')) {
        stopped = true;
        buf = '';
        handlers.onError({ code: 'BAD_CONTENT_LENGTH', message: 'bad', reply: Buffer.from('ANSWER\r\n') });
        return;
      }
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
        const m = buf.slice(0, end + 4);
        buf = buf.slice(end + 4);
        handlers.onMessage(Buffer.from(m, 'latin1'));
      }
    },
    get bufferedBytes() {
      return buf.length;
    },
  };
};

/** Waits in real time (the fake clock does not move) for a condition, bounded. */
async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

interface Harness {
  t: StreamTransport;
  port: number;
  events: string[];
  messages: InboundMessage[];
}

const open: { t: StreamTransport; sockets: Socket[] }[] = [];

async function start(over: Partial<StreamTransportOptions> = {}): Promise<Harness> {
  const events: string[] = [];
  const messages: InboundMessage[] = [];
  const t = new StreamTransport(
    {
      frame: testFraming,
      idleTimeoutMs: 60_000,
      messageTimeoutMs: 5000,
      handshakeTimeoutMs: 5000,
      maxMessageBytes: 65_535,
      maxConnections: 100,
      maxConnectionsPerSource: 3,
      events: {
        refused: (s, r) => events.push(`refused ${s} ${r}`),
        closed: (s, r) => events.push(`closed ${s} ${r}`),
        peerError: () => undefined,
      },
      ...over,
    },
    (m) => messages.push(m),
    (e) => events.push(`fault ${e.message}`),
  );
  await t.listen('127.0.0.1', 0);
  open.push({ t, sockets: [] });
  received = 0;
  return { t, port: t.address().port, events, messages };
}

interface Client {
  socket: Socket;
  data: string;
  closed: boolean;
  ended: boolean;
}

/** A raw TCP client, from `from` (127.0.0.1 or another loopback address). */
async function client(port: number, from = '127.0.0.1'): Promise<Client> {
  const socket = tcpConnect({ host: '127.0.0.1', port, localAddress: from });
  open[open.length - 1]!.sockets.push(socket);
  const c: Client = { socket, data: '', closed: false, ended: false };
  socket.on('data', (d: Buffer) => (c.data += d.toString('latin1')));
  socket.on('end', () => (c.ended = true));
  socket.on('close', () => (c.closed = true));
  socket.on('error', () => undefined);
  await new Promise<void>((res, rej) => {
    socket.once('connect', () => res());
    socket.once('error', rej);
  });
  return c;
}

afterEach(async () => {
  vi.useRealTimers();
  for (const o of open.splice(0)) {
    for (const s of o.sockets) s.destroy();
    await o.t.close();
  }
});

describe('StreamTransport: per-source connection cap', () => {
  it('refuses a source\'s connection over maxConnectionsPerSource at once, while other sources connect and are served', async () => {
    const h = await start({ maxConnectionsPerSource: 3 });
    const held = [await client(h.port), await client(h.port), await client(h.port)];
    await until(() => h.t.connectionsFrom('127.0.0.1') === 3, 'three connections');
    const fourth = await client(h.port);
    await until(() => fourth.closed, 'the fourth connection to be closed');
    expect(h.events).toEqual(['refused 127.0.0.1 source-limit']);
    expect(held.every((c) => !c.closed)).toBe(true);

    const other = await client(h.port, '127.0.0.2');
    other.socket.write('HELLO\r\n\r\n');
    await until(() => h.messages.length === 1, 'the other source\'s message');
    expect(h.messages[0]!.peer.address).toBe('127.0.0.2');
    expect(other.closed).toBe(false);

    // A slot freed is a slot usable again.
    held[0]!.socket.destroy();
    await until(() => h.t.connectionsFrom('127.0.0.1') === 2, 'the freed slot');
    const again = await client(h.port);
    again.socket.write('HELLO\r\n\r\n');
    await until(() => h.messages.length === 2, 'a message on the new connection');
  });

  it('counts refusals over the transport-wide maxConnections as "limit"', async () => {
    const h = await start({ maxConnections: 1, maxConnectionsPerSource: 10 });
    await client(h.port);
    await until(() => h.t.connectionsFrom('127.0.0.1') === 1, 'the first connection');
    const second = await client(h.port, '127.0.0.2');
    await until(() => second.closed, 'the second connection to be closed');
    expect(h.events).toEqual(['refused 127.0.0.2 limit']);
  });
});

describe('StreamTransport: client connections', () => {
  it('send() opens a connection to a peer it has none with, and the peer\'s answer comes back on it', async () => {
    const server = await start();
    const client = await start();
    await client.t.send(Buffer.from('REQUEST\r\n\r\n'), { protocol: 'tcp', address: '127.0.0.1', port: server.port });
    await until(() => server.messages.length === 1, 'the request at the server');
    await server.t.send(Buffer.from('ANSWER\r\n\r\n'), server.messages[0]!.peer);
    await until(() => client.messages.length === 1, 'the answer at the client');
    expect(client.messages[0]!.data.toString()).toBe('ANSWER\r\n\r\n');
    expect(client.t.connections).toBe(1);
    // Outbound connections are not counted against a source's inbound cap.
    expect(client.t.connectionsFrom('127.0.0.1')).toBe(0);
  });
});

describe('StreamTransport: deadlines (fake clock)', () => {
  it('closes a connection whose message is not complete messageTimeoutMs after its first byte, though bytes keep coming (slowloris)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    const h = await start({ messageTimeoutMs: 5000, idleTimeoutMs: 60_000 });
    const c = await client(h.port);
    await until(() => h.t.connections === 1, 'the connection');
    const header = 'OPTIONS sip:slow@127.0.0.1 SIP/2.0\r\n';
    let sent = 0;
    // One byte a second: each resets the idle timer, none completes the message.
    for (let s = 0; s < 5; s++) {
      c.socket.write(header[sent++]!);
      await until(() => received === sent, `byte ${sent}`);
      await vi.advanceTimersByTimeAsync(999);
    }
    expect(c.closed).toBe(false);
    await vi.advanceTimersByTimeAsync(10);
    await until(() => c.closed, 'the slow connection to be closed');
    expect(h.events).toEqual(['closed 127.0.0.1 message-timeout']);
    expect(h.messages).toHaveLength(0);
  });

  it('a message completed in time resets the deadline; the idle timeout then closes a silent connection', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    const h = await start({ messageTimeoutMs: 5000, idleTimeoutMs: 30_000 });
    const c = await client(h.port);
    c.socket.write('FIRST HALF\r\n');
    await until(() => received === 12, 'the first half');
    await vi.advanceTimersByTimeAsync(4000);
    c.socket.write('\r\nSECOND HALF\r\n');
    await until(() => h.messages.length === 1, 'the first message');
    // The next message began with that chunk: it has its own 5 s.
    await vi.advanceTimersByTimeAsync(4000);
    expect(c.closed).toBe(false);
    c.socket.write('\r\n');
    await until(() => h.messages.length === 2, 'the second message');
    await vi.advanceTimersByTimeAsync(29_000);
    expect(c.closed).toBe(false);
    await vi.advanceTimersByTimeAsync(1_100);
    await until(() => c.closed, 'the idle close');
    expect(h.events).toEqual(['closed 127.0.0.1 idle-timeout']);
  });

  it('answers a framing error, half-closes after the answer, and destroys the socket after the linger', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    const h = await start();
    const c = await client(h.port);
    c.socket.write('BAD message\r\n');
    await until(() => c.ended, 'the FIN after the answer');
    expect(c.data).toBe('ANSWER\r\n');
    expect(h.events).toEqual(['closed 127.0.0.1 framing-error']);
    // What the client still sends is read and discarded (no RST), until the linger ends.
    c.socket.write('more bytes nobody reads\r\n\r\n');
    await sleep(20);
    expect(h.messages).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(CLOSE_LINGER_MS);
    await until(() => c.closed, 'the close after the linger');
  });
});

describe('StreamTransport over TLS: handshake deadline (fake clock)', () => {
  let tls: { cert: Buffer; key: Buffer };
  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-tls-test-'));
    const files = await ensureDevCertificate(dir);
    tls = { cert: readFileSync(files.certFile), key: readFileSync(files.keyFile) };
  });

  it('closes a connection that does not finish its TLS handshake in handshakeTimeoutMs, and counts it against its source meanwhile', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    const h = await start({ tls, handshakeTimeoutMs: 5000, maxConnectionsPerSource: 2 });
    const silent = await client(h.port);
    const silent2 = await client(h.port);
    await until(() => h.t.connectionsFrom('127.0.0.1') === 2, 'two handshakes pending');
    const third = await client(h.port);
    await until(() => third.closed, 'the third connection refused');

    // A real TLS client from another address completes its handshake and is not timed out.
    const good = tlsConnect({ socket: tcpConnect({ host: '127.0.0.1', port: h.port, localAddress: '127.0.0.2' }), ca: tls.cert, servername: 'localhost' });
    open[open.length - 1]!.sockets.push(good);
    let goodClosed = false;
    good.on('close', () => (goodClosed = true));
    await new Promise<void>((res, rej) => (good.once('secureConnect', () => res()), good.once('error', rej)));
    await until(() => h.t.connections === 1, 'the TLS connection adopted');

    await vi.advanceTimersByTimeAsync(4999);
    expect(silent.closed || silent2.closed).toBe(false);
    await vi.advanceTimersByTimeAsync(2);
    await until(() => silent.closed && silent2.closed, 'the silent handshakes closed');
    expect(h.events.filter((e) => e.startsWith('closed'))).toEqual(['closed 127.0.0.1 handshake-timeout', 'closed 127.0.0.1 handshake-timeout']);
    expect(h.events).toContain('refused 127.0.0.1 source-limit');
    good.write('OVER TLS\r\n\r\n');
    await until(() => h.messages.length === 1, 'a message over TLS');
    expect(goodClosed).toBe(false);
  });
});
