import { BlockList, isIP } from 'node:net';
import type { KeyRecord } from '../store/key-record.js';

/** IPv4-mapped IPv6 (::ffff:192.0.2.1) as sockets report it → the IPv4 address. */
export function normaliseAddress(addr: string): string {
  const m = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(addr);
  return m ? m[1]! : addr;
}

const lists = new WeakMap<readonly string[], BlockList>();

function listFor(cidrs: readonly string[]): BlockList {
  let bl = lists.get(cidrs);
  if (bl) return bl;
  bl = new BlockList();
  for (const c of cidrs) {
    const [addr, bits] = c.split('/');
    const family = isIP(addr ?? '');
    if (!addr || family === 0) continue;
    const type = family === 4 ? 'ipv4' : 'ipv6';
    const prefix = bits === undefined ? (family === 4 ? 32 : 128) : Number(bits);
    bl.addSubnet(addr, prefix, type);
  }
  lists.set(cidrs, bl);
  return bl;
}

/** True when the key allows any source (empty list) or `addr` is inside one of its CIDRs. */
export function sourceAllowed(key: KeyRecord, addr: string): boolean {
  if (key.allowedCidrs.length === 0) return true;
  const a = normaliseAddress(addr);
  const family = isIP(a);
  if (family === 0) return false;
  return listFor(key.allowedCidrs).check(a, family === 4 ? 'ipv4' : 'ipv6');
}
