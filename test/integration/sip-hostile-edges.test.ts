import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createSocket } from 'node:dgram';
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import { api, rememberSecret, runCli, startGateway, type RunningGateway } from '../helpers/gateway-process.js';
import { runSipp } from '../helpers/sipp.js';

/**
 * Hostile edges of the SIP transports, against a real gateway process: slowloris from one
 * address (127.0.0.1) on TCP, TLS and WS while another address (127.0.0.2: Linux routes all of
 * 127/8 to lo) still connects, asks and calls; and the RFC 4475 cases that must be answered
 * rather than dropped, over UDP and TCP.
 */

const ATTACKER = '127.0.0.1';
const CLIENT = '127.0.0.2';
/** The default sip.maxConnectionsPerSource. */
const PER_SOURCE = 32;
const MESSAGE_TIMEOUT_MS = 12_000;
const HANDSHAKE_TIMEOUT_MS = 4_000;
const FIXTURES = resolve(import.meta.dirname, '../fixtures/rfc4475');

async function until(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

interface Conn {
  readonly socket: Socket;
  data: string;
  closed: boolean;
  ended: boolean;
}

const sockets: Socket[] = [];

/** A raw TCP connection from `from`; resolves once connected (or closed at once). */
function rawConnect(port: number, from: string): Promise<Conn> {
  const socket = tcpConnect({ host: '127.0.0.1', port, localAddress: from });
  sockets.push(socket);
  const c: Conn = { socket, data: '', closed: false, ended: false };
  socket.on('data', (d: Buffer) => (c.data += d.toString('latin1')));
  socket.on('end', () => (c.ended = true));
  socket.on('close', () => (c.closed = true));
  socket.on('error', () => undefined);
  return new Promise((res) => {
    socket.once('connect', () => res(c));
    socket.once('close', () => res(c));
  });
}

/** The first complete response head in `text`, or null. */
function firstResponse(text: string): string | null {
  const end = text.indexOf('\r\n\r\n');
  return end < 0 ? null : text.slice(0, end + 4);
}

function options(transport: string, branch: string, extra: string[] = []): string {
  return [
    'OPTIONS sip:tollgate@127.0.0.1 SIP/2.0',
    `Via: SIP/2.0/${transport} ${CLIENT}:5999;branch=z9hG4bK${branch};rport`,
    'From: <sip:monitor@127.0.0.2>;tag=edge',
    'To: <sip:tollgate@127.0.0.1>',
    `Call-ID: ${branch}`,
    'CSeq: 1 OPTIONS',
    'Max-Forwards: 70',
    ...extra,
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

/** Sends `msg` on a fresh TCP connection from CLIENT and returns the first response. */
async function overTcp(gw: RunningGateway, msg: string | Buffer): Promise<{ head: string; conn: Conn }> {
  const c = await rawConnect(gw.sip.tcp!.port, CLIENT);
  c.socket.write(msg);
  await until(() => firstResponse(c.data) !== null || c.closed, 'a response over TCP');
  return { head: firstResponse(c.data) ?? '', conn: c };
}

/** Sends `msg` as one datagram from CLIENT and returns the first response (null after 3 s). */
async function overUdp(gw: RunningGateway, msg: string | Buffer): Promise<string | null> {
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, CLIENT, () => r()));
  try {
    const reply = new Promise<string | null>((res) => {
      const timer = setTimeout(() => res(null), 3000);
      sock.once('message', (m) => {
        clearTimeout(timer);
        res(m.toString('latin1'));
      });
    });
    sock.send(msg, gw.sip.udp!.port, gw.sip.udp!.address);
    return await reply;
  } finally {
    sock.close();
  }
}

const statusOf = (head: string | null): string => (head ?? '').split('\r\n')[0] ?? '';

/** A metric's value from the Prometheus text, 0 when absent. */
async function metric(gw: RunningGateway, line: string): Promise<number> {
  const text = (await api(gw, 'GET', '/metrics')).text;
  const found = text.split('\n').find((l) => l.startsWith(line + ' '));
  return found ? Number(found.slice(line.length + 1)) : 0;
}

/** Opens `n` connections from ATTACKER and sends each the start of a request it never finishes. */
async function halfSent(port: number, n: number, start: (c: Conn, i: number) => void): Promise<Conn[]> {
  const conns: Conn[] = [];
  for (let i = 0; i < n; i++) {
    const c = await rawConnect(port, ATTACKER);
    if (!c.closed) start(c, i);
    conns.push(c);
  }
  return conns;
}

describe('hostile edges: connection limits (slowloris) and strict answers', () => {
  let gw: RunningGateway;

  beforeAll(async () => {
    gw = await startGateway({
      env: {
        TOLLGATE_SIP__DIGEST_ALGORITHMS: '[MD5, SHA-256]',
        TOLLGATE_SIP__MESSAGE_TIMEOUT_MS: String(MESSAGE_TIMEOUT_MS),
        TOLLGATE_SIP__HANDSHAKE_TIMEOUT_MS: String(HANDSHAKE_TIMEOUT_MS),
      },
    });
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    expect(await gw?.stop()).toBe(0);
  });

  it('TCP: 40 half-sent requests from one address hold 32 connections and 8 are refused; another address still gets OPTIONS answered and completes a SIPp call; the message deadline then closes the slow senders', async () => {
    const admin = JSON.parse((await runCli(['keys', 'create', '--name', 'root', '--role', 'admin', '--json'], gw.env)).stdout).secret as string;
    rememberSecret(admin);
    const k = await api(gw, 'POST', '/v1/keys', { auth: admin, body: { name: 'trunk', scopes: ['calls:inbound'], callsPerSecond: 10, cpsBurst: 10, maxConcurrentCalls: 10 } });
    expect(k.status, k.text).toBe(201);
    rememberSecret(k.body.secret);
    const n = await api(gw, 'POST', '/v1/numbers', { auth: admin, body: { number: '+14155550199', target: 'echo', keyId: k.body.key.id } });
    expect(n.status, n.text).toBe(201);

    const header = 'INVITE sip:+14155550199@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKslow';
    const attackers = await halfSent(gw.sip.tcp!.port, 40, (c, i) => c.socket.write(`${header}${i}\r\n`));
    await until(() => attackers.filter((c) => c.closed).length >= 40 - PER_SOURCE, 'the connections over the cap refused');
    await sleep(300);
    expect(attackers.filter((c) => c.closed)).toHaveLength(40 - PER_SOURCE);
    expect(attackers.filter((c) => c.closed).every((c) => c.data === '')).toBe(true);
    // Slowloris: a byte now and then on each held connection (each resets the idle timer).
    const held = attackers.filter((c) => !c.closed);
    let trickling = true;
    const trickle = (async () => {
      for (let round = 0; trickling && round < 60; round++) {
        for (const c of held) if (!c.closed) c.socket.write('X');
        await sleep(500);
      }
    })();

    // Another address is served while the attacker holds its cap.
    const { head } = await overTcp(gw, options('TCP', 'edge-tcp-1'));
    expect(statusOf(head)).toBe('SIP/2.0 200 OK');
    const call = await runSipp({ scenario: 'uac-auth-call', target: gw.sip.tcp!, transport: 'tcp', dialled: '+14155550199', username: k.body.key.id, password: k.body.secret, holdMs: 500, localAddress: CLIENT, timeoutSec: 20 });
    expect(call.code, call.errors || call.stdout.slice(-2000)).toBe(0);
    expect(call.successful).toBe(1);
    expect(held.filter((c) => c.closed)).toHaveLength(0);
    expect(await metric(gw, 'tollgate_sip_connections_refused_total{transport="tcp",reason="source-limit"}')).toBe(40 - PER_SOURCE);

    // The message deadline closes every slow sender, though bytes keep coming.
    await until(() => held.every((c) => c.closed), 'the slow senders closed by the message deadline', MESSAGE_TIMEOUT_MS + 15_000);
    trickling = false;
    await trickle;
    expect(await metric(gw, 'tollgate_sip_connections_closed_total{transport="tcp",reason="message-timeout"}')).toBe(PER_SOURCE);
    // Logged as a bounded sample, without stacks.
    const lines = gw.logs().split('\n').filter((l) => l.includes('"SIP connection closed"') || l.includes('"SIP connection refused"'));
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThanOrEqual(20);
    expect(lines.some((l) => l.includes('"stack"'))).toBe(false);
    // The attacker's address is usable again once its connections are gone.
    const after = await rawConnect(gw.sip.tcp!.port, ATTACKER);
    after.socket.write(options('TCP', 'edge-tcp-after'));
    await until(() => firstResponse(after.data) !== null, 'an answer to the former attacker');
    expect(statusOf(after.data)).toBe('SIP/2.0 200 OK');
  });

  it('TLS: 40 connections that never handshake hold 32 and 8 are refused; another address handshakes and is answered; the handshake deadline closes the silent ones', async () => {
    const attackers = await halfSent(gw.sip.tls!.port, 40, () => undefined);
    await until(() => attackers.filter((c) => c.closed).length >= 40 - PER_SOURCE, 'the connections over the cap refused');
    const ca = readFileSync(`${gw.env.TOLLGATE_DATA_DIR}/tls/dev-cert.pem`);
    const tls = tlsConnect({ socket: tcpConnect({ host: '127.0.0.1', port: gw.sip.tls!.port, localAddress: CLIENT }), ca, servername: 'localhost' });
    sockets.push(tls);
    let data = '';
    tls.on('data', (d: Buffer) => (data += d.toString('latin1')));
    await new Promise<void>((res, rej) => (tls.once('secureConnect', () => res()), tls.once('error', rej)));
    tls.write(options('TLS', 'edge-tls-1'));
    await until(() => firstResponse(data) !== null, 'an answer over TLS');
    expect(statusOf(data)).toBe('SIP/2.0 200 OK');
    await until(() => attackers.every((c) => c.closed), 'the silent handshakes closed', HANDSHAKE_TIMEOUT_MS + 15_000);
    expect(await metric(gw, 'tollgate_sip_connections_refused_total{transport="tls",reason="source-limit"}')).toBe(40 - PER_SOURCE);
    expect(await metric(gw, 'tollgate_sip_connections_closed_total{transport="tls",reason="handshake-timeout"}')).toBe(PER_SOURCE);
    expect(tls.destroyed).toBe(false);
    tls.destroy();
  });

  it('WS: 40 half-sent upgrade requests hold 32 and 8 are refused; another address upgrades and is answered; the upgrade deadline closes the rest', async () => {
    const attackers = await halfSent(gw.sip.ws!.port, 40, (c) => c.socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n'));
    await until(() => attackers.filter((c) => c.closed).length >= 40 - PER_SOURCE, 'the connections over the cap refused');
    const ws = new WebSocket(`ws://127.0.0.1:${gw.sip.ws!.port}`, 'sip', { localAddress: CLIENT });
    try {
      await new Promise((res, rej) => (ws.once('open', res), ws.once('error', rej)));
      const reply = new Promise<string>((res) => ws.once('message', (d: Buffer) => res(d.toString('utf8'))));
      ws.send(options('WS', 'edge-ws-1'));
      expect(statusOf(await reply)).toBe('SIP/2.0 200 OK');
      await until(() => attackers.every((c) => c.closed), 'the slow upgrades closed', HANDSHAKE_TIMEOUT_MS + 15_000);
      expect(ws.readyState).toBe(WebSocket.OPEN);
    } finally {
      ws.terminate();
    }
    expect(await metric(gw, 'tollgate_sip_connections_refused_total{transport="ws",reason="source-limit"}')).toBe(40 - PER_SOURCE);
    expect(await metric(gw, 'tollgate_sip_connections_closed_total{transport="ws",reason="handshake-timeout"}')).toBe(PER_SOURCE);
  });

  describe.each(['udp', 'tcp'] as const)('RFC 4475 and RFC 3261 answers over %s', (transport) => {
    const ask = async (msg: string | Buffer): Promise<string> => statusOf(transport === 'udp' ? await overUdp(gw, msg) : (await overTcp(gw, msg)).head);
    const via = transport.toUpperCase();

    it('Max-Forwards outside 0..255 or not digits is 400 Bad Request (RFC 3261 §20.22); 70 and 0 (OPTIONS) are answered 200', async () => {
      for (const mf of ['-1', '100000000000000000000', 'abc', '256']) {
        const msg = options(via, `edge-mf-${transport}-${mf.length}-${mf.slice(0, 3)}`).replace('Max-Forwards: 70', `Max-Forwards: ${mf}`);
        expect(await ask(msg), mf).toBe('SIP/2.0 400 Max-Forwards must be 0 to 255');
      }
      expect(await ask(options(via, `edge-mf-${transport}-ok`))).toBe('SIP/2.0 200 OK');
      expect(await ask(options(via, `edge-mf-${transport}-zero`).replace('Max-Forwards: 70', 'Max-Forwards: 0'))).toBe('SIP/2.0 200 OK');
    });

    it('insuf (RFC 4475 §3.3.1) and scalar02 (§3.1.2.4) get 400; scalarlg, a response (§3.1.2.5), is dropped', async () => {
      expect(await ask(readFileSync(`${FIXTURES}/insuf.sip`))).toBe('SIP/2.0 400 Missing From header');
      expect(await ask(readFileSync(`${FIXTURES}/scalar02.sip`))).toBe('SIP/2.0 400 Malformed CSeq header');
      if (transport === 'udp') expect(await overUdp(gw, readFileSync(`${FIXTURES}/scalarlg.sip`))).toBeNull();
    });

    it('a 40 KB Request-URI is 414 Request-URI Too Long (RFC 3261 §21.4.12)', async () => {
      const msg = options(via, `edge-uri-${transport}`).replace('OPTIONS sip:tollgate@127.0.0.1', `OPTIONS sip:${'u'.repeat(40_000)}@127.0.0.1`);
      expect(await ask(msg)).toBe('SIP/2.0 414 Request-URI longer than 8192 bytes');
    });
  });

  it('TCP: an oversize message is answered 513 Message Too Large, then the connection closes', async () => {
    const head = options('TCP', 'edge-513').replace('Content-Length: 0', 'Content-Length: 100000');
    const { head: answer, conn } = await overTcp(gw, head);
    expect(statusOf(answer)).toBe('SIP/2.0 513 Message Too Large');
    expect(answer).toContain('Call-ID: edge-513');
    // The client goes on sending its body: read and discarded, no reset, then closed.
    for (let i = 0; i < 10 && !conn.closed; i++) conn.socket.write(Buffer.alloc(10_000, 0x61));
    await until(() => conn.ended || conn.closed, 'the close after 513');
  });

  it('TCP: a bad Content-Length (RFC 4475 §3.1.2.3 ncl) is answered 400, then the connection closes', async () => {
    const { head, conn } = await overTcp(gw, readFileSync(`${FIXTURES}/ncl.sip`));
    expect(statusOf(head)).toBe('SIP/2.0 400 Invalid Content-Length');
    await until(() => conn.ended || conn.closed, 'the close after 400');
  });
});
