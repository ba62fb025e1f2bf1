/**
 * IP addresses and CIDR ranges as bytes, for the egress guard and its allow-list. No
 * dependencies: node:net's isIP accepts only canonical text, and BlockList does not look
 * through IPv4-mapped IPv6, so the few parsers needed live here.
 */

/** 4 bytes (IPv4) or 16 bytes (IPv6), network order. */
export interface IpAddress {
  readonly family: 4 | 6;
  readonly bytes: Uint8Array;
}

export interface Cidr {
  readonly family: 4 | 6;
  readonly bytes: Uint8Array;
  readonly prefix: number;
}

/**
 * IPv4 in the spellings URL parsers and inet_aton accept (WHATWG URL §IPv4 parser): one to
 * four parts, each decimal, octal (leading 0) or hex (0x), the last filling the remaining
 * bytes, so 127.1, 2130706433, 0x7f000001, 017700000001 and 0177.0.0.1 are all 127.0.0.1.
 * A trailing dot is ignored. Null when `text` is not such an address.
 */
export function parseIpv4Loose(text: string): IpAddress | null {
  const parts = text.endsWith('.') ? text.slice(0, -1).split('.') : text.split('.');
  if (parts.length === 0 || parts.length > 4) return null;
  const nums: number[] = [];
  for (const p of parts) {
    let n: number;
    if (/^0[xX][0-9a-fA-F]*$/.test(p)) n = p.length === 2 ? 0 : parseInt(p.slice(2), 16);
    else if (/^0[0-7]+$/.test(p)) n = parseInt(p.slice(1), 8);
    else if (/^(0|[1-9][0-9]*)$/.test(p)) n = Number(p);
    else return null;
    if (!Number.isSafeInteger(n)) return null;
    nums.push(n);
  }
  const last = nums.pop()!;
  if (nums.some((n) => n > 255) || last >= 256 ** (4 - nums.length)) return null;
  let value = last;
  for (const [i, n] of nums.entries()) value += n * 256 ** (3 - i);
  return { family: 4, bytes: Uint8Array.of(value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255) };
}

/** Strict dotted-quad IPv4 (a.b.c.d, decimal, no leading zeros), as config and resolvers write it. */
export function parseIpv4(text: string): IpAddress | null {
  const m = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/.exec(text);
  if (!m) return null;
  const bytes = m.slice(1).map(Number);
  return bytes.every((b) => b <= 255) ? { family: 4, bytes: Uint8Array.from(bytes) } : null;
}

/** IPv6 text (RFC 4291 §2.2: `::` once, an IPv4 tail allowed), with or without brackets; no zone ids. */
export function parseIpv6(text: string): IpAddress | null {
  let t = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  if (t.includes('%') || !t.includes(':')) return null;
  const lastColon = t.lastIndexOf(':');
  if (t.slice(lastColon + 1).includes('.')) {
    // An IPv4 tail ("::ffff:1.2.3.4") is the last two words written in dotted form.
    const v4 = parseIpv4(t.slice(lastColon + 1));
    if (!v4) return null;
    const [a = 0, b = 0, c = 0, d = 0] = v4.bytes;
    t = `${t.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = t.split('::');
  if (halves.length > 2) return null;
  const group = (s: string): number[] | null => {
    if (s === '') return [];
    const out: number[] = [];
    for (const g of s.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = group(halves[0]!);
  const rest = halves.length === 2 ? group(halves[1]!) : [];
  if (!head || !rest) return null;
  const explicit = head.length + rest.length;
  let words: number[];
  if (halves.length === 2) {
    if (explicit > 7) return null;
    words = [...head, ...new Array<number>(8 - explicit).fill(0), ...rest];
  } else {
    if (explicit !== 8) return null;
    words = head;
  }
  const bytes = new Uint8Array(16);
  for (const [i, w] of words.entries()) {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 255;
  }
  return { family: 6, bytes };
}

/** A literal address: strict IPv4 or IPv6 (brackets allowed). */
export function parseIp(text: string): IpAddress | null {
  return parseIpv4(text) ?? parseIpv6(text);
}

/**
 * The IPv4 address an IPv6 address stands for, when it does: IPv4-mapped (::ffff:a.b.c.d,
 * RFC 4291 §2.5.5.2) and the deprecated IPv4-compatible form (::a.b.c.d, §2.5.5.1, except ::
 * and ::1). Everything else is returned as it is.
 */
export function unmapIpv4(ip: IpAddress): IpAddress {
  if (ip.family === 4) return ip;
  const b = ip.bytes;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return ip;
  const mapped = b[10] === 0xff && b[11] === 0xff;
  const compatible = b[10] === 0 && b[11] === 0 && (b[12]! | b[13]! | b[14]!) !== 0;
  return mapped || compatible ? { family: 4, bytes: b.slice(12) } : ip;
}

/** "a.b.c.d" or the RFC 5952 form of an IPv6 address (for logs and for connecting). */
export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) return [...ip.bytes].join('.');
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((ip.bytes[i]! << 8) | ip.bytes[i + 1]!);
  // The longest run of two or more zero words becomes "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':');
  return best < 0 ? hex(words) : `${hex(words.slice(0, best))}::${hex(words.slice(best + bestLen))}`;
}

/**
 * "10.0.0.0/8", "fd00::/8", or a single address (/32, /128). IPv4-mapped IPv6 ranges of /96
 * or longer are rewritten as the IPv4 range they cover, so they match the way addresses are
 * checked. Null when `text` is not a CIDR.
 */
export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf('/');
  const addr = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!addr) return null;
  const max = addr.family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > max) return null;
    prefix = Number(p);
  }
  const v4 = unmapIpv4(addr);
  if (v4.family === 4 && addr.family === 6 && prefix >= 96 && addr.bytes[10] === 0xff) return { family: 4, bytes: v4.bytes, prefix: prefix - 96 };
  return { family: addr.family, bytes: addr.bytes, prefix };
}

/** Whether `ip` lies in `range` (same family only). */
export function inCidr(ip: IpAddress, range: Cidr): boolean {
  if (ip.family !== range.family) return false;
  const full = range.prefix >> 3;
  for (let i = 0; i < full; i++) if (ip.bytes[i] !== range.bytes[i]) return false;
  const rest = range.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (ip.bytes[full]! & mask) === (range.bytes[full]! & mask);
}
