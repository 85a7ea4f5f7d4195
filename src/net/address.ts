/**
 * Addresses as svcdns reads and writes them: IP address text <-> wire bytes (validated by node:net
 * so only real addresses pass), HOST:PORT for listen addresses and upstreams, CIDR ranges, and
 * IPv6 zones (`fe80::1%eth0`). Hostnames are never accepted: resolving them would need DNS.
 */

import { isIP } from 'node:net';
import * as ipCodec from '@leichtgewicht/ip-codec';

export interface IpAddress {
  family: 4 | 6;
  /** 4 or 16 bytes in network order, as A and AAAA rdata carry them. */
  bytes: Buffer;
  /** The canonical text form (e.g. IPv6 compressed, lower-case). */
  text: string;
}

/** An upstream resolver (or a listen address): an IP address, possibly with an IPv6 zone, and a port. */
export interface HostPort {
  host: string;
  port: number;
}

/** An address to listen on: an IP address and a port. */
export type ListenAddress = HostPort;

/** An address range in CIDR form, e.g. 10.0.0.0/8 or fc00::/7. */
export interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
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

/** The address without its IPv6 zone: `fe80::1%eth0` -> `fe80::1` (anything else unchanged). */
export function stripZone(host: string): string {
  return host.replace(/%[\w.-]+$/, '');
}

/**
 * `192.0.2.1`, `192.0.2.1:5353`, `[2001:db8::1]:53`, `2001:db8::1`, `fe80::1%eth0` (a zone, as
 * resolv.conf may give it). Hostnames are not accepted.
 */
export function parseHostPort(text: string, defaultPort: number): HostPort | null {
  const t = text.trim();
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(t);
  const host = m ? (m[1] ?? m[2]!) : t;
  const port = m?.[3] !== undefined ? Number(m[3]) : defaultPort;
  const family = isIP(stripZone(host));
  if (family === 0 || port === 0 || port > 65535) return null;
  if (m && m[2] !== undefined && family !== 4) return null;
  if (m && m[1] !== undefined && family !== 6) return null;
  if (!m && family !== 6) return null;
  return { host, port };
}

/** `192.0.2.1:53`, `[2001:db8::1]:53`: the form logs and messages use. */
export function formatHostPort(a: HostPort): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** `127.0.0.1:8600`, `[::1]:8600`, `0.0.0.0:53`. Hostnames are not accepted: bind to addresses. */
export function parseListen(text: string): ListenAddress | null {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text.trim());
  if (!m) return null;
  const host = m[1] ?? m[2]!;
  const port = Number(m[3]);
  const family = isIP(host);
  if (port > 65535 || family === 0 || (m[1] !== undefined && family !== 6) || (m[2] !== undefined && family !== 4)) return null;
  return { host, port };
}

/** `10.0.0.0/8`, `fc00::/7`; a bare address is a range of one. */
export function parseCidr(text: string): Cidr | null {
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(text.trim());
  if (!m) return null;
  const family = isIP(m[1]!);
  if (family === 0) return null;
  const max = family === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) return null;
  return { address: m[1]!, prefix, family: family === 4 ? 'ipv4' : 'ipv6' };
}
