import { describe, it, expect } from 'vitest';
import { canonicalJson } from './canonical-json.js';

describe('canonicalJson', () => {
  it('sorts object keys at every depth and adds no whitespace', () => {
    const value = { b: 1, a: { d: [{ z: 1, y: 2 }], c: { f: true, e: null } } };
    expect(canonicalJson(value)).toBe('{"a":{"c":{"e":null,"f":true},"d":[{"y":2,"z":1}]},"b":1}');
  });

  it('gives the same text for objects that differ only in key order', () => {
    const a = { seq: 1, details: { to: '+15551234567', from: '+15557654321', nested: { y: 1, x: 2 } } };
    const b = { details: { nested: { x: 2, y: 1 }, from: '+15557654321', to: '+15551234567' }, seq: 1 };
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    expect(canonicalJson(a)).not.toBe(JSON.stringify(b));
  });

  it('keeps array order', () => {
    expect(canonicalJson([3, 1, 2])).toBe('[3,1,2]');
    expect(canonicalJson({ list: ['b', 'a', { k: 'v' }] })).toBe('{"list":["b","a",{"k":"v"}]}');
    expect(canonicalJson([2, 1])).not.toBe(canonicalJson([1, 2]));
  });

  it('drops undefined object properties and writes undefined array items as null', () => {
    expect(canonicalJson({ a: undefined, b: 1, c: { d: undefined } })).toBe('{"b":1,"c":{}}');
    expect(canonicalJson([1, undefined, 3])).toBe('[1,null,3]');
  });

  it('writes scalars as JSON, non-finite numbers as null', () => {
    expect(canonicalJson('he said "hi"')).toBe('"he said \\"hi\\""');
    expect(canonicalJson(42)).toBe('42');
    expect(canonicalJson(null)).toBe('null');
    expect(canonicalJson(Number.NaN)).toBe('null');
    expect(canonicalJson(Number.POSITIVE_INFINITY)).toBe('null');
    expect(canonicalJson(undefined)).toBe('null');
  });

  it('sorts keys by code unit, so upper case comes before lower case', () => {
    expect(canonicalJson({ b: 1, B: 2, a: 3, _: 4 })).toBe('{"B":2,"_":4,"a":3,"b":1}');
  });

  it('parses back to an equal value', () => {
    const value = { z: [1, 'two', { three: 3 }], a: { nested: { deeper: [true, false, null] } }, m: 'ü ☎' };
    expect(JSON.parse(canonicalJson(value))).toEqual(value);
  });
});
