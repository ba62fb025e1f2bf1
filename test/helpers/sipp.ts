import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { readPcap } from './pcap.js';

const SCENARIOS = resolve(import.meta.dirname, '../sipp');

export interface SippRun {
  code: number | null;
  stdout: string;
  /** Contents of the -trace_err log, if any. */
  errors: string;
  successful: number;
  failed: number;
}

export interface SippOptions {
  scenario: 'uac-auth-echo' | 'uac-auth-expect' | 'uac-auth-call' | 'uac-auth-pcap' | 'uac-auth-pcap-wait-bye';
  target: { address: string; port: number };
  transport: 'udp' | 'tcp';
  dialled: string;
  username: string;
  password: string;
  /** For uac-auth-expect: the final status the call must end with. */
  expect?: number;
  calls?: number;
  /** Concurrent calls at most. */
  limit?: number;
  /** Call rate per second. */
  rate?: number;
  /**
   * How long uac-auth-call holds the call before BYE; for uac-auth-pcap, the pause after the
   * pcap starts playing (default: the pcap's length plus 300 ms).
   */
  holdMs?: number;
  /** Extra headers in the INVITEs (e.g. Identity, P-Asserted-Identity), as [name, value]. */
  headers?: readonly (readonly [string, string])[];
  /** For uac-auth-pcap: the RTP capture SIPp replays after the ACK (see test/helpers/pcap.ts). */
  pcapFile?: string;
  /** Raw µ-law file streamed as RTP after the answer (uac-auth-echo). */
  rtpFile?: string;
  timeoutSec?: number;
  /** SIPp's own address for SIP and media (-i, -mi), e.g. 127.0.0.2 to be another source than 127.0.0.1. */
  localAddress?: string;
}

/** What a finished SIPp run left in its directory: its log files by suffix, and its call counts (-stf stat.csv). */
function sippOutput(dir: string): { read(suffix: string): string; successful: number; failed: number } {
  const files = readdirSync(dir);
  const read = (suffix: string): string => {
    const f = files.find((n) => n.endsWith(suffix));
    return f ? readFileSync(join(dir, f), 'utf8') : '';
  };
  let successful = 0;
  let failed = 0;
  const statFile = join(dir, 'stat.csv');
  if (existsSync(statFile)) {
    const lines = readFileSync(statFile, 'utf8').trim().split('\n');
    const head = lines[0]!.split(';');
    const last = lines[lines.length - 1]!.split(';');
    successful = Number(last[head.indexOf('SuccessfulCall(C)')]);
    failed = Number(last[head.indexOf('FailedCall(C)')]);
  }
  return { read, successful, failed };
}

/**
 * A random base for SIPp's ports (SIP base+2000, control base+1000, media base…base+3): random
 * rather than derived from the pid, so SIPp runs of concurrent processes rarely meet. All of them
 * stay in 21000–32690: above the gateways' default media range (10000–20000) and baresip's RTP
 * ports (20100–20199), and below Linux's ephemeral range (32768–60999), where every port-0
 * listener and outgoing connection of the suite takes its port: a SIPp port picked there could
 * be taken, and a UAS that cannot bind exits at once while its test waits for a call.
 */
function sippBasePort(): number {
  return 21_000 + randomInt(0, 970) * 10;
}

/** Runs SIPp (Debian's sip-tester) once, bounded in calls and time, all on 127.0.0.1. */
export async function runSipp(o: SippOptions): Promise<SippRun> {
  const r = await runSippOnce(o);
  // Its random ports were taken by another process: once more on other ports.
  if (r.code !== 0 && /Address already in use|Unable to bind/.test(r.stdout + r.errors)) return runSippOnce(o);
  return r;
}

function runSippOnce(o: SippOptions): Promise<SippRun> {
  if (o.scenario.startsWith('uac-auth-pcap') && !o.pcapFile) return Promise.reject(new Error('runSipp: uac-auth-pcap needs pcapFile'));
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-sipp-'));
  let xml = readFileSync(join(SCENARIOS, `${o.scenario}.xml`), 'utf8');
  const holdMs = o.holdMs ?? (o.scenario.startsWith('uac-auth-pcap') && o.pcapFile ? pcapPlayMs(o.pcapFile) + 300 : 0);
  xml = xml.replaceAll('__EXPECT__', String(o.expect ?? 200)).replaceAll('__RTP_STREAM__', `${o.rtpFile ?? ''},-1,0`).replaceAll('__HOLD_MS__', String(holdMs));
  if (o.pcapFile) xml = xml.replaceAll('__PCAP__', resolve(o.pcapFile));
  // A marker line in the INVITEs: removed (an empty line would end the headers) or replaced.
  xml = xml.replaceAll('      __EXTRA_HEADERS__\n', (o.headers ?? []).map(([k, v]) => `      ${k}: ${v}\n`).join(''));
  const sf = join(dir, 'scenario.xml');
  writeFileSync(sf, xml);
  const base = sippBasePort();
  const args = [
    `${o.target.address}:${o.target.port}`,
    '-sf', sf,
    '-t', o.transport === 'udp' ? 'u1' : 't1',
    '-s', o.dialled,
    '-au', o.username,
    '-ap', o.password,
    // SIPp's digest uri is sip:remote_ip:remote_port unless told; tollgate requires the
    // Request-URI (RFC 7616 §3.4.6), which every scenario here builds as [service]@[remote_ip]:[remote_port].
    '-auth_uri', `${o.dialled}@${o.target.address}:${o.target.port}`,
    '-m', String(o.calls ?? 1),
    '-l', String(o.limit ?? o.calls ?? 1),
    '-r', String(o.rate ?? 10),
    '-i', o.localAddress ?? '127.0.0.1',
    '-p', String(base + 2000),
    '-mi', o.localAddress ?? '127.0.0.1',
    '-mp', String(base),
    '-ci', '127.0.0.1',
    '-cp', String(base + 1000),
    '-nostdin',
    '-timeout', `${o.timeoutSec ?? 30}s`,
    '-timeout_error',
    '-trace_err',
    '-trace_stat',
    '-stf', join(dir, 'stat.csv'),
    '-max_recv_loops', '1000',
  ];
  return new Promise((res, rej) => {
    const child = spawn('sipp', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stdout += d.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), ((o.timeoutSec ?? 30) + 15) * 1000);
    child.on('error', rej);
    child.on('close', (code) => {
      clearTimeout(killer);
      const out = sippOutput(dir);
      res({ code, stdout, errors: out.read('_errors.log'), successful: out.successful, failed: out.failed });
    });
  });
}

/** How long SIPp takes to replay a pcap: first to last capture time, plus one 20 ms ptime. */
function pcapPlayMs(file: string): number {
  const { packets } = readPcap(readFileSync(file));
  return packets.length ? Math.ceil(packets[packets.length - 1]!.atUs / 1000) + 20 : 0;
}

/** A raw µ-law file of a 440 Hz tone (8 kHz), made with sox as PEERS.md describes. */
export async function toneFile(seconds = 1): Promise<string> {
  const f = join(mkdtempSync(join(tmpdir(), 'tollgate-tone-')), 'tone.ulaw');
  await new Promise<void>((res, rej) => {
    const c = spawn('sox', ['-n', '-r', '8000', '-c', '1', '-e', 'u-law', '-t', 'raw', f, 'synth', String(seconds), 'sine', '440', 'vol', '0.5']);
    c.on('error', rej);
    c.on('close', (code) => (code === 0 ? res() : rej(new Error(`sox exited ${code}`))));
  });
  return f;
}

export interface SippUasOptions {
  /** "wait": answer tollgate's BYE; "bye": hang up after holdMs; or a final status to refuse with (e.g. 486). */
  ending: 'wait' | 'bye' | number;
  holdMs?: number;
  /** Challenge the INVITE with 407 and check tollgate's digest against these credentials. */
  auth?: { username: string; password: string };
  /** Echo the RTP it receives (-rtp_echo). */
  echo?: boolean;
  timeoutSec?: number;
}

export interface SippUas {
  readonly port: number;
  /** Resolves when SIPp exits: its result and every message it saw (-trace_msg). */
  readonly done: Promise<SippRun & { messages: string }>;
  stop(): void;
}

/** SIPp as a carrier UAS on 127.0.0.1 (UDP) taking one call from tollgate. */
export function startSippUas(o: SippUasOptions): SippUas {
  let xml = readFileSync(join(SCENARIOS, 'uas-carrier.xml'), 'utf8');
  const hold = String(o.holdMs ?? 10_000);
  const reply = (status: number, reason: string, extra = '') => `  <send>
    <![CDATA[
      SIP/2.0 ${status} ${reason}
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
${extra}      Content-Length: 0

    ]]>
  </send>
`;
  const challenge = '      WWW-Authenticate: Digest realm="carrier.test", nonce="n0nce-[call_number]-[pid]", algorithm=MD5, qop="auth"\n';
  const authBlock = o.auth
    ? [
      reply(401, 'Unauthorized', challenge),
      '  <recv request="ACK"/>',
      '  <recv request="INVITE" crlf="true" rrs="true">',
      '    <action>',
      `      <verifyauth assign_to="authvalid" username="${o.auth.username}" password="${o.auth.password}"/>`,
      '    </action>',
      '  </recv>',
      '  <nop hide="true" test="authvalid" next="authok"/>',
      reply(403, 'Forbidden'),
      '  <nop hide="true" next="theend"/>',
      '  <label id="authok"/>',
      '',
    ].join('\n')
    : '';
  let endingBlock: string;
  if (typeof o.ending === 'number') {
    endingBlock = '';
  } else if (o.ending === 'wait') {
    endingBlock = `  <recv request="BYE" timeout="${hold}"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
`;
  } else {
    // For a BYE of its own, SIPp takes the dialog's From/To from the ACK, swapped.
    xml = xml.replace('  <recv request="ACK" optional="false" rtd="true" crlf="true"/>', [
      '  <recv request="ACK" optional="false" rtd="true" crlf="true">',
      '    <action>',
      '      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="remote_from"/>',
      '      <ereg regexp=".*" search_in="hdr" header="To:" assign_to="local_to"/>',
      '    </action>',
      '  </recv>',
    ].join('\n'));
    endingBlock = `  <pause milliseconds="${hold}"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From:[$local_to]
      To:[$remote_from]
      [last_Call-ID:]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
`;
  }
  if (typeof o.ending === 'number') {
    // Refuse the INVITE: 100, then the final status; tollgate ACKs it.
    const start = xml.indexOf('  <send>');
    xml = xml.slice(0, start) + reply(o.ending, 'Refused') + '  <recv request="ACK"/>\n  <label id="theend"/>\n  <timewait milliseconds="200"/>\n</scenario>\n';
  } else {
    xml = xml.replace('__ENDING_BLOCK__', endingBlock + '  <label id="theend"/>');
  }
  xml = xml.replace('__AUTH_BLOCK__', authBlock);
  return spawnSippUas(xml, o);
}

/**
 * SIPp as a carrier UAS running one scenario of test/sipp/ as it is (uas-ring-cancel,
 * uas-cancel-crossing, uas-fork: each file says what it checks).
 */
export function startSippScenario(scenario: 'uas-ring-cancel' | 'uas-cancel-crossing' | 'uas-fork', o: { timeoutSec?: number } = {}): SippUas {
  return spawnSippUas(readFileSync(join(SCENARIOS, `${scenario}.xml`), 'utf8'), o);
}

/** Runs a UAS scenario for one call on 127.0.0.1 (UDP), every message logged (-trace_msg). */
function spawnSippUas(xml: string, o: { echo?: boolean; timeoutSec?: number }): SippUas {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-sipp-uas-'));
  const sf = join(dir, 'scenario.xml');
  writeFileSync(sf, xml);
  const base = sippBasePort();
  const port = base + 2000;
  const args = ['-sf', sf, '-t', 'u1', '-m', '1', '-i', '127.0.0.1', '-p', String(port), '-mi', '127.0.0.1', '-mp', String(base), '-nostdin',
    '-timeout', `${o.timeoutSec ?? 30}s`, '-timeout_error', '-trace_err', '-trace_msg', '-trace_stat', '-stf', join(dir, 'stat.csv')];
  if (o.echo) args.push('-rtp_echo');
  const child = spawn('sipp', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stdout += d.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), ((o.timeoutSec ?? 30) + 15) * 1000);
  const done = new Promise<SippRun & { messages: string }>((res, rej) => {
    child.on('error', rej);
    child.on('close', (code) => {
      clearTimeout(killer);
      const out = sippOutput(dir);
      res({ code, stdout, errors: out.read('_errors.log'), successful: out.successful, failed: out.failed, messages: out.read('_messages.log') });
    });
  });
  return { port, done, stop: () => child.kill('SIGTERM') };
}
