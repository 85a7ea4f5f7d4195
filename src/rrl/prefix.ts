/**
 * A client's address text (as node:dgram gives it) read into the key of its prefix (/24, /56 by
 * default) and checked against the exempt ranges, with no allocation: the listener hands us
 * strings, and parsing them with node:net or a regular expression per reply would cost more than
 * the rest of rate limiting.
 *
 * Contract: after `read(address)` returns true, `w0..w2` hold the prefix (w0 says the family, so
 * an IPv4 and an IPv6 prefix never share an account) and `exempt` says whether the address lies in
 * an exempt range. It returns false for text that is not an address (never from a real socket);
 * the caller then leaves the reply alone. An IPv4-mapped IPv6 address (::ffff:10.1.2.3, from a
 * dual-stack socket) is read as the IPv4 address it is.
 */

import type { Cidr } from '../net/address.js';

const FAMILY_4 = 4;
const FAMILY_6 = 6;

interface Range4 {
  readonly base: number;
  readonly mask: number;
}
interface Range6 {
  readonly groups: Uint16Array;
  readonly masks: Uint16Array;
}

/** The mask of a prefix's first `bits` bits over 32 (0 for /0). */
function mask32(bits: number): number {
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
}

/** Per 16-bit group, the mask of a prefix's first `bits` bits over 128. */
function masks16(bits: number): Uint16Array {
  const m = new Uint16Array(8);
  for (let g = 0; g < 8; g++) {
    const take = Math.max(0, Math.min(16, bits - 16 * g));
    m[g] = take === 0 ? 0 : (0xffff << (16 - take)) & 0xffff;
  }
  return m;
}

export class PrefixReader {
  w0 = 0;
  w1 = 0;
  w2 = 0;
  exempt = false;
  private readonly mask4: number;
  private readonly mask6: Uint16Array;
  private readonly ranges4: Range4[] = [];
  private readonly ranges6: Range6[] = [];
  /** The last IPv6 address read, 8 groups. */
  private readonly groups = new Uint16Array(8);
  /** Scratch for the groups after `::`. */
  private readonly tail = new Uint16Array(8);

  constructor(ipv4PrefixLength: number, ipv6PrefixLength: number, exempt: readonly Cidr[]) {
    this.mask4 = mask32(ipv4PrefixLength);
    this.mask6 = masks16(ipv6PrefixLength);
    for (const c of exempt) {
      const reader = new PrefixReader(32, 128, []);
      if (!reader.read(c.address)) continue;
      if (c.family === 'ipv4') this.ranges4.push({ base: (reader.w1 & mask32(c.prefix)) >>> 0, mask: mask32(c.prefix) });
      else {
        const masks = masks16(c.prefix);
        this.ranges6.push({ groups: reader.groups.map((g, i) => g & masks[i]!), masks });
      }
    }
  }

  read(address: string): boolean {
    const v4 = parse4(address, 0);
    if (v4 >= 0) return this.key4(v4);
    if (!this.parse6(address)) return false;
    const g = this.groups;
    // ::ffff:a.b.c.d is an IPv4 client on a dual-stack socket.
    if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) return this.key4(((g[6]! << 16) | g[7]!) >>> 0);
    let exempt = false;
    for (const r of this.ranges6) {
      let inside = true;
      for (let i = 0; i < 8 && inside; i++) inside = (g[i]! & r.masks[i]!) === r.groups[i];
      if (inside) {
        exempt = true;
        break;
      }
    }
    this.exempt = exempt;
    const m = this.mask6;
    this.w0 = FAMILY_6 | (((g[4]! & m[4]!) ^ Math.imul((g[5]! & m[5]!) ^ Math.imul(((g[6]! & m[6]!) << 16) | (g[7]! & m[7]!), 0x9e3779b1), 0x85ebca6b)) << 4);
    this.w1 = (((g[0]! & m[0]!) << 16) | (g[1]! & m[1]!)) >>> 0;
    this.w2 = (((g[2]! & m[2]!) << 16) | (g[3]! & m[3]!)) >>> 0;
    return true;
  }

  private key4(address: number): boolean {
    let exempt = false;
    for (const r of this.ranges4) {
      if (((address & r.mask) >>> 0) === r.base) {
        exempt = true;
        break;
      }
    }
    this.exempt = exempt;
    this.w0 = FAMILY_4;
    this.w1 = (address & this.mask4) >>> 0;
    this.w2 = 0;
    return true;
  }

  /** Reads IPv6 text (a zone after `%` ignored, an IPv4 tail allowed) into `groups`. */
  private parse6(text: string): boolean {
    const g = this.groups;
    const tail = this.tail;
    let end = text.indexOf('%');
    if (end < 0) end = text.length;
    let head = 0;
    let tails = 0;
    let gap = false;
    let i = 0;
    if (end >= 2 && text.charCodeAt(0) === 0x3a && text.charCodeAt(1) === 0x3a) {
      gap = true;
      i = 2;
    }
    while (i < end) {
      // An IPv4 tail: the last 32 bits.
      let dot = false;
      for (let j = i; j < end; j++) {
        const c = text.charCodeAt(j);
        if (c === 0x2e) dot = true;
        if (c === 0x3a) break;
      }
      if (dot) {
        const v4 = parse4(text.slice(i, end), 0);
        if (v4 < 0) return false;
        if (!this.put(g, tail, gap, head, tails, v4 >>> 16)) return false;
        if (gap) tails++;
        else head++;
        if (!this.put(g, tail, gap, head, tails, v4 & 0xffff)) return false;
        if (gap) tails++;
        else head++;
        i = end;
        break;
      }
      let value = 0;
      let digits = 0;
      while (i < end) {
        const c = text.charCodeAt(i);
        const d = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
        if (d < 0) break;
        value = (value << 4) | d;
        if (++digits > 4) return false;
        i++;
      }
      if (digits === 0) return false;
      if (!this.put(g, tail, gap, head, tails, value)) return false;
      if (gap) tails++;
      else head++;
      if (i === end) break;
      if (text.charCodeAt(i) !== 0x3a) return false;
      i++;
      if (i < end && text.charCodeAt(i) === 0x3a) {
        if (gap) return false;
        gap = true;
        i++;
      } else if (i === end) return false;
    }
    if (!gap) return head === 8;
    if (head + tails > 7) return false;
    for (let k = head; k < 8 - tails; k++) g[k] = 0;
    for (let k = 0; k < tails; k++) g[8 - tails + k] = tail[k]!;
    return true;
  }

  private put(g: Uint16Array, tail: Uint16Array, gap: boolean, head: number, tails: number, value: number): boolean {
    if (gap) {
      if (tails >= 7) return false;
      tail[tails] = value;
    } else {
      if (head >= 8) return false;
      g[head] = value;
    }
    return true;
  }
}

/** `a.b.c.d` from `from` to the end as a 32-bit number, or -1. */
function parse4(text: string, from: number): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || ++dots > 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      part = part * 10 + (c - 0x30);
      if (++digits > 3 || part > 255) return -1;
    } else return -1;
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + part;
}
