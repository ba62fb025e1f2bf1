import { describe, it, expect } from 'vitest';
import { NativeProtocol, TwilioProtocol, type AgentCommand, type StartInfo } from './protocols.js';

const info: StartInfo = {
  callSid: 'CA0123456789abcdef0123456789abcdef',
  streamSid: 'MZfedcba9876543210fedcba9876543210',
  accountSid: 'AC00112233445566778899aabbccddeeff',
  from: '+14155550100',
  to: '+14155550199',
  direction: 'inbound',
  parameters: { campaign: 'spring', lang: 'en' },
  verstat: 'TN-Validation-Passed',
  format: { encoding: 'L16', sampleRate: 16000 },
};

const text = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v), 'utf8');

/** A Twilio adapter whose clock the test moves. */
function twilio(t0 = 5000): { p: TwilioProtocol; clock: { t: number } } {
  const clock = { t: t0 };
  return { p: new TwilioProtocol(() => clock.t), clock };
}

function frame(n: number, seed = 0): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (seed + i * 7) & 0xff;
  return b;
}

interface MediaMsg {
  event: string;
  sequenceNumber: string;
  media: { track: string; chunk: string; timestamp: string; payload: string };
  streamSid: string;
}

describe('TwilioProtocol', () => {
  it('starts with connected, then start in the shape of Twilio Media Streams', () => {
    const { p } = twilio();
    const msgs = p.start(info);
    expect(msgs).toHaveLength(2);
    expect(JSON.parse(msgs[0]!)).toEqual({ event: 'connected', protocol: 'Call', version: '1.0.0' });
    expect(JSON.parse(msgs[1]!)).toEqual({
      event: 'start',
      sequenceNumber: '1',
      start: {
        accountSid: info.accountSid,
        streamSid: info.streamSid,
        callSid: info.callSid,
        tracks: ['inbound'],
        customParameters: { campaign: 'spring', lang: 'en', from_number: info.from, to_number: info.to },
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
      },
      streamSid: info.streamSid,
    });
  });

  it('lets the caller numbers win over custom parameters of the same name', () => {
    const { p } = twilio();
    const start = JSON.parse(p.start({ ...info, parameters: { from_number: 'spoofed' } })[1]!);
    expect(start.start.customParameters).toEqual({ from_number: info.from, to_number: info.to });
  });

  it('sends media with consecutive string sequence numbers and chunks, timestamps stepping by 20 ms', () => {
    const { p, clock } = twilio();
    p.start(info);
    const msgs: MediaMsg[] = [];
    for (let i = 0; i < 5; i++) {
      clock.t = 5000 + 20 * i + (i % 2 ? 7 : 0); // a little scheduling jitter
      msgs.push(JSON.parse(p.audio(frame(160, i))) as MediaMsg);
    }
    expect(msgs.map((m) => m.event)).toEqual(Array(5).fill('media'));
    expect(msgs.map((m) => m.sequenceNumber)).toEqual(['2', '3', '4', '5', '6']);
    expect(msgs.map((m) => m.media.chunk)).toEqual(['1', '2', '3', '4', '5']);
    expect(msgs.map((m) => m.media.timestamp)).toEqual(['0', '20', '40', '60', '80']);
    expect(msgs.every((m) => m.media.track === 'inbound' && m.streamSid === info.streamSid)).toBe(true);
    expect(Object.keys(msgs[0]!)).toEqual(['event', 'sequenceNumber', 'media', 'streamSid']);
  });

  it('keeps stepping by 20 while the clock is up to 60 ms ahead, and catches up beyond', () => {
    const { p, clock } = twilio(1000);
    p.start(info);
    const ts = () => (JSON.parse(p.audio(frame(160))) as MediaMsg).media.timestamp;
    expect(ts()).toBe('0');
    clock.t = 1000 + 80; // next would be 20: 60 ahead, still steps
    expect(ts()).toBe('20');
    clock.t = 1000 + 101; // next would be 40: 61 ahead, catches up to the clock's slot
    expect(ts()).toBe('100');
    clock.t = 1000 + 120;
    expect(ts()).toBe('120');
    clock.t = 1000 + 500; // a stalled thread
    expect(ts()).toBe('500');
    clock.t = 1000 + 505;
    expect(ts()).toBe('520');
  });

  it('counts the media timestamp from start(), not from construction', () => {
    const { p, clock } = twilio(0);
    clock.t = 10_000;
    p.start(info);
    expect((JSON.parse(p.audio(frame(160))) as MediaMsg).media.timestamp).toBe('0');
  });

  it('base64-encodes the payload so it decodes to the same bytes, for a view into a larger buffer too', () => {
    const { p } = twilio();
    p.start(info);
    const whole = frame(400, 3);
    const view = whole.subarray(33, 33 + 160);
    const msg = JSON.parse(p.audio(view)) as MediaMsg;
    expect([...Buffer.from(msg.media.payload, 'base64')]).toEqual([...view]);
    // And the agent's reply with that payload decodes to the same audio.
    const cmd = p.decode(text({ event: 'media', streamSid: info.streamSid, media: { payload: msg.media.payload } }), false);
    expect(cmd.kind).toBe('audio');
    expect([...(cmd as Extract<AgentCommand, { kind: 'audio' }>).audio]).toEqual([...view]);
  });

  it('encodes mark, dtmf, warning and stop with the stream SID and the running sequence number', () => {
    const { p } = twilio();
    p.start(info); // sequence 1
    p.audio(frame(160)); // 2
    expect(JSON.parse(p.mark('m1'))).toEqual({ event: 'mark', sequenceNumber: '3', streamSid: info.streamSid, mark: { name: 'm1' } });
    expect(JSON.parse(p.dtmf('5'))).toEqual({
      event: 'dtmf',
      streamSid: info.streamSid,
      sequenceNumber: '4',
      dtmf: { track: 'inbound_track', digit: '5' },
    });
    expect(JSON.parse(p.warning('time limit', 30_000))).toEqual({
      event: 'warning',
      sequenceNumber: '5',
      streamSid: info.streamSid,
      warning: { reason: 'time limit', remainingMs: 30_000 },
    });
    expect(JSON.parse(p.stop('hangup'))).toEqual({
      event: 'stop',
      sequenceNumber: '6',
      streamSid: info.streamSid,
      stop: { accountSid: info.accountSid, callSid: info.callSid, reason: 'hangup' },
    });
  });

  it('has no cleared or error messages', () => {
    const { p } = twilio();
    p.start(info);
    expect(p.cleared()).toBeNull();
    expect(p.error()).toBeNull();
  });

  describe('decode', () => {
    const p = new TwilioProtocol(() => 0);

    it('media → the payload bytes', () => {
      const bytes = Buffer.from([0xff, 0x7f, 0x00, 0x80, 0x01]);
      expect(p.decode(text({ event: 'media', streamSid: 'MZx', media: { payload: bytes.toString('base64') } }), false)).toEqual({
        kind: 'audio',
        audio: bytes,
      });
    });

    it('mark → its name; clear', () => {
      expect(p.decode(text({ event: 'mark', streamSid: 'MZx', mark: { name: 'end-of-greeting' } }), false)).toEqual({
        kind: 'mark',
        name: 'end-of-greeting',
      });
      expect(p.decode(text({ event: 'clear', streamSid: 'MZx' }), false)).toEqual({ kind: 'clear' });
    });

    it.each([
      ['binary frame', Buffer.from([1, 2, 3, 4]), true],
      ['not JSON', text('{"event":"media"'), false],
      ['a JSON number', text('42'), false],
      ['JSON null', text('null'), false],
      ['unknown event', text({ event: 'subscribe' }), false],
      ['no event', text({ streamSid: 'MZx' }), false],
      ['media without payload', text({ event: 'media', media: {} }), false],
      ['media with a non-string payload', text({ event: 'media', media: { payload: 12 } }), false],
      ['mark without a name', text({ event: 'mark', mark: {} }), false],
      ['mark with an empty name', text({ event: 'mark', mark: { name: '' } }), false],
      ['dtmf with bad digits', text({ event: 'dtmf', dtmf: { digit: 'x' } }), false],
      ['dtmf without digits', text({ event: 'dtmf' }), false],
    ])('%s → ignore (lenient), with a reason', (_name, data, isBinary) => {
      const cmd = p.decode(data, isBinary);
      expect(cmd.kind).toBe('ignore');
      expect((cmd as Extract<AgentCommand, { kind: 'ignore' }>).reason).toMatch(/\S/);
    });

    it('dtmf (tollgate extension): digit or digits, duration clamped to 40–5000 ms, 100 by default', () => {
      expect(p.decode(text({ event: 'dtmf', dtmf: { digit: '7' } }), false)).toEqual({ kind: 'dtmf', digits: '7', durationMs: 100 });
      expect(p.decode(text({ event: 'dtmf', dtmf: { digits: '12#*AD', durationMs: 250 } }), false)).toEqual({
        kind: 'dtmf',
        digits: '12#*AD',
        durationMs: 250,
      });
      expect(p.decode(text({ event: 'dtmf', dtmf: { digits: '1', durationMs: 5 } }), false)).toMatchObject({ durationMs: 40 });
      expect(p.decode(text({ event: 'dtmf', dtmf: { digits: '1', durationMs: 60_000 } }), false)).toMatchObject({ durationMs: 5000 });
      expect(p.decode(text({ event: 'dtmf', dtmf: { digits: '1', durationMs: 'long' } }), false)).toMatchObject({ durationMs: 100 });
      expect(p.decode(text({ event: 'dtmf', dtmf: { digits: '1'.repeat(33) } }), false).kind).toBe('ignore');
    });

    it('attach needs a callSid; dial carries its request', () => {
      expect(p.decode(text({ event: 'attach', callSid: 'CA1' }), false)).toEqual({ kind: 'attach', callSid: 'CA1', format: null });
      expect(p.decode(text({ event: 'attach', attach: { callSid: 'CA2' } }), false)).toEqual({ kind: 'attach', callSid: 'CA2', format: null });
      expect(p.decode(text({ event: 'attach' }), false).kind).toBe('invalid');
      expect(p.decode(text({ event: 'dial', dial: { to: '+14155550100' } }), false)).toEqual({ kind: 'dial', request: { to: '+14155550100' } });
    });
  });
});

describe('NativeProtocol', () => {
  const p = new NativeProtocol();
  const invalid = (v: unknown): string => {
    const cmd = p.decode(text(v), false);
    expect(cmd.kind).toBe('invalid');
    return (cmd as Extract<AgentCommand, { kind: 'invalid' }>).reason;
  };

  it('starts with one start message carrying the call, the identity and the audio format both ways', () => {
    const msgs = p.start(info);
    expect(msgs).toHaveLength(1);
    expect(JSON.parse(msgs[0]!)).toEqual({
      type: 'start',
      callId: info.callSid,
      streamId: info.streamSid,
      accountId: info.accountSid,
      from: info.from,
      to: info.to,
      direction: 'inbound',
      parameters: { campaign: 'spring', lang: 'en' },
      identity: { verstat: 'TN-Validation-Passed' },
      audio: {
        toAgent: { encoding: 'L16', sampleRate: 16000 },
        fromAgent: { encoding: 'L16', sampleRate: 16000 },
        frameMs: 20,
      },
    });
  });

  it('sends audio as a Buffer of the same bytes (a view into a larger buffer too)', () => {
    const whole = frame(1000, 9);
    const view = whole.subarray(100, 100 + 640);
    const out = p.audio(view);
    expect(Buffer.isBuffer(out)).toBe(true);
    expect(out.length).toBe(640);
    expect([...out]).toEqual([...view]);
  });

  it('encodes the control messages it sends', () => {
    expect(JSON.parse(p.mark('m', 'cleared'))).toEqual({ type: 'mark', name: 'm', status: 'cleared' });
    expect(JSON.parse(p.cleared(1234.6, 80.2))).toEqual({ type: 'cleared', playedMs: 1235, discardedMs: 80 });
    expect(JSON.parse(p.dtmf('#', 120))).toEqual({ type: 'dtmf', digit: '#', durationMs: 120 });
    expect(JSON.parse(p.warning('time limit', 10_000))).toEqual({ type: 'warning', reason: 'time limit', remainingMs: 10_000 });
    expect(JSON.parse(p.stop('caller hung up'))).toEqual({ type: 'stop', reason: 'caller hung up' });
    expect(JSON.parse(p.error('bad_message', 'nope'))).toEqual({ type: 'error', code: 'bad_message', message: 'nope' });
  });

  describe('decode', () => {
    it('binary frames are PCM16 audio: an even length is audio, an odd one invalid', () => {
      const even = Buffer.from([1, 2, 3, 4, 5, 6]);
      expect(p.decode(even, true)).toEqual({ kind: 'audio', audio: even });
      expect(p.decode(Buffer.alloc(0), true)).toEqual({ kind: 'audio', audio: Buffer.alloc(0) });
      const odd = p.decode(Buffer.from([1, 2, 3]), true);
      expect(odd.kind).toBe('invalid');
      expect((odd as Extract<AgentCommand, { kind: 'invalid' }>).reason).toMatch(/even/);
    });

    it('decodes each control message', () => {
      expect(p.decode(text({ type: 'clear' }), false)).toEqual({ kind: 'clear' });
      expect(p.decode(text({ type: 'mark', name: 'done' }), false)).toEqual({ kind: 'mark', name: 'done' });
      expect(p.decode(text({ type: 'dtmf', digits: '123#' }), false)).toEqual({ kind: 'dtmf', digits: '123#', durationMs: 100 });
      expect(p.decode(text({ type: 'dtmf', digits: 'a', durationMs: 40 }), false)).toEqual({ kind: 'dtmf', digits: 'a', durationMs: 40 });
      expect(p.decode(text({ type: 'hangup' }), false)).toEqual({ kind: 'hangup' });
      expect(p.decode(text({ type: 'attach', callId: 'CA1' }), false)).toEqual({ kind: 'attach', callSid: 'CA1', format: null });
      expect(p.decode(text({ type: 'dial', to: '+14155550100', timeoutSec: 30 }), false)).toEqual({
        kind: 'dial',
        request: { to: '+14155550100', timeoutSec: 30 },
      });
    });

    it('attach with an audio format validates it (PCMU is 8000 Hz only)', () => {
      expect(p.decode(text({ type: 'attach', callId: 'CA1', audio: { encoding: 'PCMU', sampleRate: 8000 } }), false)).toEqual({
        kind: 'attach',
        callSid: 'CA1',
        format: { encoding: 'PCMU', sampleRate: 8000 },
      });
      for (const sampleRate of [8000, 16000, 24000, 48000]) {
        expect(p.decode(text({ type: 'attach', callId: 'CA1', audio: { encoding: 'L16', sampleRate } }), false)).toEqual({
          kind: 'attach',
          callSid: 'CA1',
          format: { encoding: 'L16', sampleRate },
        });
      }
      expect(invalid({ type: 'attach', callId: 'CA1', audio: { encoding: 'PCMU', sampleRate: 16000 } })).toMatch(/PCMU is 8000 Hz only/);
      expect(invalid({ type: 'attach', callId: 'CA1', audio: { encoding: 'L16', sampleRate: 44100 } })).toMatch(/sampleRate/);
      expect(invalid({ type: 'attach', callId: 'CA1', audio: { encoding: 'opus', sampleRate: 48000 } })).toMatch(/encoding/);
      expect(invalid({ type: 'attach', callId: 'CA1', audio: { encoding: 'L16', sampleRate: 16000, channels: 2 } })).toMatch(/\S/);
      expect(invalid({ type: 'attach', callId: '' })).toMatch(/callId/);
      expect(invalid({ type: 'attach', callId: 'x'.repeat(65) })).toMatch(/callId/);
    });

    it('is strict: unknown fields and types, bad values and non-JSON text are invalid, with a reason', () => {
      expect(invalid({ type: 'clear', now: true })).toMatch(/now|unrecognized/i);
      expect(invalid({ type: 'mark', name: 'a', status: 'played' })).toMatch(/status|unrecognized/i);
      expect(invalid({ type: 'hangup', reason: 'bye' })).toMatch(/\S/);
      expect(invalid({ type: 'subscribe' })).toMatch(/type/);
      expect(invalid({ name: 'a' })).toMatch(/type/);
      expect(invalid({ type: 'mark' })).toMatch(/name/);
      expect(invalid({ type: 'mark', name: '' })).toMatch(/name/);
      expect(invalid({ type: 'mark', name: 'x'.repeat(257) })).toMatch(/name/);
      expect(invalid({ type: 'dtmf', digits: 'xyz' })).toMatch(/digits/);
      expect(invalid({ type: 'dtmf', digits: '1', durationMs: 39 })).toMatch(/durationMs/);
      expect(invalid({ type: 'dtmf', digits: '1', durationMs: 5001 })).toMatch(/durationMs/);
      expect(invalid({ type: 'dtmf', digits: '1', durationMs: 100.5 })).toMatch(/durationMs/);
      expect(invalid([{ type: 'clear' }])).toMatch(/\S/);
      expect(invalid('null')).toMatch(/\S/);
      expect(invalid('{"type":"clear"')).toBe('text frames must be JSON');
    });
  });
});
