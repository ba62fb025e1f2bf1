import { describe, it, expect } from 'vitest';
import { findLeakedSecrets } from './leak-check.js';

describe('the integration suite\'s log leak check', () => {
  const key = 'tg_live_' + 'A1b2C3d4'.repeat(5) + 'xyz' + 'QwErTy';
  const jwt = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJrZXlfMSJ9.c2lnbmF0dXJlLXBhcnQtbG9uZy1lbm91Z2g';
  it('finds a secret written plainly, JSON-escaped, or base64-encoded', () => {
    expect(findLeakedSecrets([{ name: 'a.log', text: `{"msg":"got ${key}"}` }], [key])).toHaveLength(1);
    expect(findLeakedSecrets([{ name: 'b.log', text: Buffer.from(key).toString('base64') }], [key])).toHaveLength(1);
  });
  it('finds a token from its signature alone', () => {
    expect(findLeakedSecrets([{ name: 'c.log', text: 'sig=c2lnbmF0dXJlLXBhcnQtbG9uZy1lbm91Z2g' }], [jwt])).toEqual([{ file: 'c.log', kind: 'token' }]);
  });
  it('reports nothing for redacted logs', () => {
    expect(findLeakedSecrets([{ name: 'd.log', text: '{"authorization":"[redacted]","hint":"tg_live_A1b2…rTy"}' }], [key, jwt])).toEqual([]);
  });
});
