/**
 * npm run bench:sip-parser — parseMessage throughput on a typical INVITE with SDP (~800 bytes),
 * printed as JSON. Target (STYLE.md §14): ≥ 100,000 messages/s on one core. The loop is
 * bounded (200,000 iterations after a 20,000-iteration warm-up; --quick divides both by 10).
 */
import { parseMessage } from '../src/sip/sip-parser.js';
import { serializeMessage } from '../src/sip/sip-serializer.js';

const quick = process.argv.includes('--quick');
const iterations = quick ? 20_000 : 200_000;
const warmup = quick ? 2_000 : 20_000;

const sdp = [
  'v=0',
  'o=- 3724394400 3724394400 IN IP4 192.0.2.10',
  's=-',
  'c=IN IP4 192.0.2.10',
  't=0 0',
  'm=audio 49170 RTP/AVP 0 8 101',
  'a=rtpmap:0 PCMU/8000',
  'a=rtpmap:8 PCMA/8000',
  'a=rtpmap:101 telephone-event/8000',
  'a=fmtp:101 0-16',
  'a=ptime:20',
  'a=sendrecv',
  '',
].join('\r\n');

const invite = Buffer.from(
  [
    'INVITE sip:+14155550123@gateway.example.com:5060;transport=udp SIP/2.0',
    'Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport',
    'Max-Forwards: 70',
    'From: "Alice Example" <sip:+14155550100@carrier.example.net>;tag=1928301774',
    'To: <sip:+14155550123@gateway.example.com>',
    'Call-ID: a84b4c76e66710@pc33.carrier.example.net',
    'CSeq: 314159 INVITE',
    'Contact: <sip:+14155550100@192.0.2.10:5060;transport=udp>',
    'Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE',
    'Supported: timer, 100rel',
    'User-Agent: ExampleCarrier SBC 1.0',
    'Content-Type: application/sdp',
    `Content-Length: ${Buffer.byteLength(sdp)}`,
    '',
    sdp,
  ].join('\r\n'),
);

function run(n: number): number {
  let ok = 0;
  for (let i = 0; i < n; i++) if (parseMessage(invite).ok) ok++;
  return ok;
}

run(warmup);
const start = process.hrtime.bigint();
const ok = run(iterations);
const seconds = Number(process.hrtime.bigint() - start) / 1e9;

const parsed = parseMessage(invite);
if (!parsed.ok || ok !== iterations) throw new Error('benchmark message failed to parse');
const serializeStart = process.hrtime.bigint();
for (let i = 0; i < iterations / 4; i++) serializeMessage(parsed.message);
const serializeSeconds = Number(process.hrtime.bigint() - serializeStart) / 1e9;

console.log(
  JSON.stringify({
    messagesPerSec: Math.round(iterations / seconds),
    bytesPerSec: Math.round((iterations * invite.length) / seconds),
    messageBytes: invite.length,
    iterations,
    targetMessagesPerSec: 100_000,
    serializePerSec: Math.round(iterations / 4 / serializeSeconds),
  }),
);
