import { describe, it, expect } from 'vitest';
import { createHmac } from 'node:crypto';
import { tollgateSignature, twilioSignature, verifyTollgateSignature } from './request-signature.js';

const SECRET = 'whsec_kuv8iEerVxzVLxAqT-oMECbJSmtHO_6_cRwWWZP9rrU';
const URL = 'wss://agent.example.com/media?call=CA0123456789abcdef0123456789abcdef';
const NOW = 1_767_225_600; // 2026-01-01T00:00:00Z

describe('tollgateSignature', () => {
  it('is t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t.payload)>', () => {
    const header = tollgateSignature(SECRET, URL, NOW);
    const expected = createHmac('sha256', SECRET).update(`${NOW}.${URL}`).digest('hex');
    expect(header).toBe(`t=${NOW},v1=${expected}`);
  });

  it('defaults to the current time', () => {
    const before = Math.floor(Date.now() / 1000);
    const t = Number(/^t=(\d+),/.exec(tollgateSignature(SECRET, URL))![1]);
    expect(t).toBeGreaterThanOrEqual(before);
    expect(t).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
  });

  it('round-trips through verifyTollgateSignature', () => {
    const body = '{"event":"call.completed","callSid":"CA1"}';
    expect(verifyTollgateSignature(SECRET, tollgateSignature(SECRET, body, NOW), body, 300, NOW)).toBe(true);
    expect(verifyTollgateSignature(SECRET, tollgateSignature(SECRET, ''), '')).toBe(true);
  });
});

describe('verifyTollgateSignature', () => {
  const header = tollgateSignature(SECRET, URL, NOW);

  it('fails with the wrong secret', () => {
    expect(verifyTollgateSignature(SECRET + 'x', header, URL, 300, NOW)).toBe(false);
    expect(verifyTollgateSignature('', header, URL, 300, NOW)).toBe(false);
  });

  it('fails when the payload changed', () => {
    expect(verifyTollgateSignature(SECRET, header, URL + '&x=1', 300, NOW)).toBe(false);
    expect(verifyTollgateSignature(SECRET, header, URL.replace('wss:', 'ws:'), 300, NOW)).toBe(false);
  });

  it('fails when the timestamp was changed (it is signed)', () => {
    const moved = header.replace(`t=${NOW}`, `t=${NOW + 1}`);
    expect(verifyTollgateSignature(SECRET, moved, URL, 300, NOW)).toBe(false);
  });

  it('accepts up to toleranceSec of age either way, and no more', () => {
    expect(verifyTollgateSignature(SECRET, header, URL, 300, NOW + 300)).toBe(true);
    expect(verifyTollgateSignature(SECRET, header, URL, 300, NOW + 301)).toBe(false); // replayed later
    expect(verifyTollgateSignature(SECRET, header, URL, 300, NOW - 300)).toBe(true);
    expect(verifyTollgateSignature(SECRET, header, URL, 300, NOW - 301)).toBe(false); // from the future
    expect(verifyTollgateSignature(SECRET, header, URL, 10, NOW + 11)).toBe(false);
    expect(verifyTollgateSignature(SECRET, header, URL, undefined, NOW + 299)).toBe(true); // default 300
    expect(verifyTollgateSignature(SECRET, header, URL, undefined, NOW + 301)).toBe(false);
  });

  it('checks against the current time by default', () => {
    const old = tollgateSignature(SECRET, URL, Math.floor(Date.now() / 1000) - 3600);
    expect(verifyTollgateSignature(SECRET, old, URL)).toBe(false);
  });

  it('accepts any of several v1 values (secret rotation), in any position', () => {
    const mac = (secret: string) => /v1=([0-9a-f]+)/.exec(tollgateSignature(secret, URL, NOW))![1]!;
    const oldMac = mac('whsec_old');
    const newMac = mac(SECRET);
    expect(verifyTollgateSignature(SECRET, `t=${NOW},v1=${oldMac},v1=${newMac}`, URL, 300, NOW)).toBe(true);
    expect(verifyTollgateSignature(SECRET, `t=${NOW},v1=${newMac},v1=${oldMac}`, URL, 300, NOW)).toBe(true);
    expect(verifyTollgateSignature('whsec_old', `t=${NOW},v1=${newMac},v1=${oldMac}`, URL, 300, NOW)).toBe(true);
    expect(verifyTollgateSignature('whsec_other', `t=${NOW},v1=${newMac},v1=${oldMac}`, URL, 300, NOW)).toBe(false);
  });

  it('tolerates spaces and unknown schemes in the header', () => {
    const v1 = header.split('v1=')[1]!;
    expect(verifyTollgateSignature(SECRET, `t=${NOW}, v0=abc, v1=${v1}`, URL, 300, NOW)).toBe(true);
  });

  it('rejects malformed headers', () => {
    const v1 = header.split('v1=')[1]!;
    for (const h of [
      '',
      `v1=${v1}`, // no timestamp
      `t=,v1=${v1}`,
      `t=abc,v1=${v1}`,
      `t=${NOW}.5,v1=${v1}`,
      `t=${NOW}`, // no signature
      `t=${NOW},v1=`,
      `t=${NOW},v1=${v1.slice(0, -1)}`, // truncated
      `t=${NOW},v1=${v1.toUpperCase()}`,
      `t=${NOW},v2=${v1}`,
      `t=${NOW};v1=${v1}`,
    ]) {
      expect(verifyTollgateSignature(SECRET, h, URL, 300, NOW), h).toBe(false);
    }
  });
});

describe('twilioSignature', () => {
  // Twilio's published request-validation example (twilio-node spec/validation.spec.js and the
  // older helper-library docs): auth token 12345, this URL and these POST parameters.
  const token = '12345';
  const url = 'https://mycompany.com/myapp.php?foo=1&bar=2';
  const params = {
    CallSid: 'CA1234567890ABCDE',
    Caller: '+14158675309',
    Digits: '1234',
    From: '+14158675309',
    To: '+18005551212',
  };

  it('matches Twilio’s published example signature', () => {
    expect(twilioSignature(token, url, params)).toBe('RSOYDt4T1cUTdK1PDd93/VVr8B8=');
  });

  it('matches the example of Twilio’s security docs (…5310 numbers)', () => {
    const docsParams = { ...params, Caller: '+14158675310', From: '+14158675310' };
    expect(twilioSignature(token, url, docsParams)).toBe('GvWf1cFY/Q7PnoempGyD5oXAezc=');
  });

  it('sorts parameters by name, whatever order they come in', () => {
    const shuffled = { To: params.To, Digits: params.Digits, From: params.From, CallSid: params.CallSid, Caller: params.Caller };
    expect(twilioSignature(token, url, shuffled)).toBe('RSOYDt4T1cUTdK1PDd93/VVr8B8=');
  });

  it('signs the URL alone when there are no parameters (a WebSocket upgrade)', () => {
    const wss = 'wss://agent.example.com/stream';
    expect(twilioSignature(token, wss)).toBe(createHmac('sha1', token).update(wss).digest('base64'));
    expect(twilioSignature(token, wss, {})).toBe(twilioSignature(token, wss));
  });

  it('changes with the token, the URL or any parameter', () => {
    const base = twilioSignature(token, url, params);
    expect(twilioSignature('12346', url, params)).not.toBe(base);
    expect(twilioSignature(token, url + '&baz=3', params)).not.toBe(base);
    expect(twilioSignature(token, url, { ...params, Digits: '1235' })).not.toBe(base);
    expect(twilioSignature(token, url, { ...params, Extra: '' })).not.toBe(base);
  });
});
