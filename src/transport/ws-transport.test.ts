import { describe, it, expect, afterEach, vi } from 'vitest';
import { connect as tcpConnect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import { WsTransport, type WsTransportOptions } from './ws-transport.js';
import type { InboundMessage } from './sip-transport.js';

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function start(over: Partial<WsTransportOptions> = {}): Promise<{ t: WsTransport; port: number; events: string[]; messages: InboundMessage[] }> {
  const events: string[] = [];
  const messages: InboundMessage[] = [];
  const t = new WsTransport(
    {
      maxMessageBytes: 65_535,
      maxConnections: 100,
      maxConnectionsPerSource: 2,
      handshakeTimeoutMs: 5000,
      idleTimeoutMs: 120_000,
      events: {
        refused: (s, r) => events.push(`refused ${s} ${r}`),
        closed: (s, r) => events.push(`closed ${s} ${r}`),
      },
      ...over,
    },
    (m) => messages.push(m),
    (e) => events.push(`fault ${e.message}`),
  );
  await t.listen('127.0.0.1', 0);
  cleanup.push(() => t.close());
  return { t, port: t.address().port, events, messages };
}

async function raw(port: number, from = '127.0.0.1'): Promise<{ socket: Socket; closed: () => boolean }> {
  const socket = tcpConnect({ host: '127.0.0.1', port, localAddress: from });
  cleanup.push(() => void socket.destroy());
  let closed = false;
  socket.on('close', () => (closed = true));
  socket.on('error', () => undefined);
  await new Promise<void>((res, rej) => (socket.once('connect', () => res()), socket.once('error', rej)));
  return { socket, closed: () => closed };
}

async function sipSocket(port: number, from: string): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, 'sip', { localAddress: from });
  cleanup.push(() => ws.terminate());
  await new Promise((res, rej) => (ws.once('open', res), ws.once('error', rej)));
  return ws;
}

describe('WsTransport (RFC 7118): per-source cap and upgrade deadline', () => {
  it('counts connections from the TCP accept: one address holding half-sent upgrades is refused more, another still upgrades and sends SIP', async () => {
    const h = await start({ maxConnectionsPerSource: 2 });
    const a = await raw(h.port);
    const b = await raw(h.port);
    a.socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    b.socket.write('GET / HTTP/1.1\r\n');
    await until(() => h.t.connectionsFrom('127.0.0.1') === 2, 'two pending upgrades');
    const c = await raw(h.port);
    await until(() => c.closed(), 'the third connection refused');
    expect(h.events).toEqual(['refused 127.0.0.1 source-limit']);

    const ws = await sipSocket(h.port, '127.0.0.2');
    ws.send('OPTIONS sip:t@127.0.0.1 SIP/2.0\r\n\r\n');
    await until(() => h.messages.length === 1, 'the SIP message over WebSocket');
    expect(h.messages[0]!.peer).toMatchObject({ protocol: 'ws', address: '127.0.0.2' });
  });

  it('closes a connection whose upgrade request is not complete within handshakeTimeoutMs (fake clock); an upgraded one stays', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const h = await start({ handshakeTimeoutMs: 5000, maxConnectionsPerSource: 5 });
    const slow = await raw(h.port);
    slow.socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n');
    const ws = await sipSocket(h.port, '127.0.0.2');
    await until(() => h.t.connectionsFrom('127.0.0.1') === 1, 'the slow upgrade accepted');
    await vi.advanceTimersByTimeAsync(4999);
    expect(slow.closed()).toBe(false);
    await vi.advanceTimersByTimeAsync(2);
    await until(() => slow.closed(), 'the slow upgrade closed');
    expect(h.events).toEqual(['closed 127.0.0.1 handshake-timeout']);
    expect(ws.readyState).toBe(WebSocket.OPEN);
    ws.send('OPTIONS sip:t@127.0.0.1 SIP/2.0\r\n\r\n');
    await until(() => h.messages.length === 1, 'a message after the deadline passed');
  });
});
