import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface BaresipCall {
  code: number | null;
  output: string;
  /** WAV files baresip's sndfile module recorded: what it sent (enc) and what it heard (dec). */
  sent: string | null;
  received: string | null;
}

export interface BaresipOptions {
  /** Where to dial, e.g. sip:+14155550100@127.0.0.1:5061;transport=tls */
  uri: string;
  username: string;
  password: string;
  /** CA file to trust for tollgate's TLS certificate. */
  caFile: string;
  mediaenc: 'srtp-mand' | 'srtp' | 'none';
  seconds: number;
}

/** A 440 Hz tone as 8 kHz mono 16-bit WAV, made with sox. */
function toneWav(path: string, seconds: number): void {
  execFileSync('sox', ['-n', '-r', '8000', '-c', '1', '-b', '16', '-e', 'signed-integer', path, 'synth', String(seconds), 'sine', '440', 'vol', '0.5']);
}

/**
 * Runs baresip (Debian's baresip-core) headless as PEERS.md describes: it dials, plays a tone
 * from a file, records what it hears, and quits after `seconds`. Binds only to 127.0.0.1.
 */
export async function baresipCall(o: BaresipOptions): Promise<BaresipCall> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-baresip-'));
  mkdirSync(join(dir, 'rec'));
  toneWav(join(dir, 'in.wav'), o.seconds);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', '/CN=baresip'], { stdio: 'ignore' });
  execFileSync('sh', ['-c', `cat "${join(dir, 'cert.pem')}" "${join(dir, 'key.pem')}" > "${join(dir, 'cert-and-key.pem')}"`]);
  const sipPort = 30_000 + ((process.pid * 13) % 10_000);
  writeFileSync(
    join(dir, 'config'),
    [
      'module_path /usr/lib/baresip/modules',
      `sip_listen 127.0.0.1:${sipPort}`,
      `sip_certificate ${join(dir, 'cert-and-key.pem')}`,
      `sip_cafile ${o.caFile}`,
      `audio_source aufile,${join(dir, 'in.wav')}`,
      `audio_player aufile,${join(dir, 'out.wav')}`,
      `audio_alert aufile,${join(dir, 'alert.wav')}`,
      'net_interface 127.0.0.1',
      `rtp_ports ${sipPort + 100}-${sipPort + 199}`,
      'module g711.so',
      'module aufile.so',
      'module sndfile.so',
      'module srtp.so',
      'module_tmp account.so',
      'module_app menu.so',
      `snd_path ${join(dir, 'rec')}`,
      '',
    ].join('\n'),
  );
  const enc = o.mediaenc === 'none' ? '' : `;mediaenc=${o.mediaenc}`;
  writeFileSync(join(dir, 'accounts'), `<sip:trunk@127.0.0.1;transport=tls>;auth_user=${o.username};auth_pass=${o.password}${enc};regint=0;audio_codecs=PCMU\n`);
  const output = await new Promise<{ code: number | null; out: string }>((res, rej) => {
    const child = spawn('baresip', ['-f', dir, '-t', String(o.seconds + 3), '-e', `/dial ${o.uri}`], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), (o.seconds + 15) * 1000);
    child.on('error', rej);
    child.on('close', (code) => {
      clearTimeout(killer);
      res({ code, out });
    });
  });
  const rec = readdirSync(join(dir, 'rec'));
  const find = (suffix: string) => {
    const f = rec.find((n) => n.endsWith(suffix));
    return f ? join(dir, 'rec', f) : null;
  };
  return { code: output.code, output: output.out, sent: find('-enc.wav'), received: find('-dec.wav') };
}

/** sox's "stat" figures for a WAV file: rough frequency (Hz), RMS amplitude and length (s). */
export function soxStat(file: string): { frequency: number; rms: number; seconds: number } {
  let text = '';
  try {
    execFileSync('sox', [file, '-n', 'stat'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    text = String((err as { stderr?: string }).stderr ?? '');
  }
  if (!text) text = execFileSync('sh', ['-c', `sox "${file}" -n stat 2>&1`], { encoding: 'utf8' });
  const num = (label: string) => Number(new RegExp(`${label}:\\s+(-?[0-9.]+)`).exec(text)?.[1] ?? NaN);
  return { frequency: num('Rough\\s+frequency'), rms: num('RMS\\s+amplitude'), seconds: num('Length \\(seconds\\)') };
}
