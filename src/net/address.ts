/** IP address text <-> wire bytes, validated by node:net so only real addresses pass. */

import { isIP } from 'node:net';
import * as ipCodec from '@leichtgewicht/ip-codec';

export interface IpAddress {
  family: 4 | 6;
  /** 4 or 16 bytes in network order, as A and AAAA rdata carry them. */
  bytes: Buffer;
  /** The canonical text form (e.g. IPv6 compressed, lower-case). */
  text: string;
}

/** Parses an IPv4 or IPv6 address; returns null for anything else (hostnames, CIDRs, zones). */
export function parseIp(text: string): IpAddress | null {
  const family = isIP(text);
  if (family !== 4 && family !== 6) return null;
  if (text.includes('%')) return null;
  const bytes = Buffer.from(ipCodec.encode(text));
  return { family, bytes, text: ipCodec.decode(bytes) };
}

/** Builds an address from 4 or 16 raw bytes. */
export function ipFromBytes(bytes: Buffer): IpAddress {
  if (bytes.length !== 4 && bytes.length !== 16) throw new RangeError('an IP address has 4 or 16 bytes');
  return { family: bytes.length === 4 ? 4 : 6, bytes, text: ipCodec.decode(bytes) };
}
