/**
 * Clients as the bounds see them: whose a query or a connection is (`clientKey`), and whether an
 * address lies in a set of ranges (`addressMatcher`: the recursion ACL, the exemptions from the
 * per-client bounds). One reading of a client address for every bound, so a client is the same
 * client to the TCP table and to the forwarder.
 */

import { BlockList, isIPv6 } from 'node:net';
import { parseIp, stripZone, type Cidr } from './address.js';

const IPV4_MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/**
 * The client a bound counts: an IPv4 address as it is (also when written IPv4-mapped, as a
 * dual-stack socket reports it), an IPv6 address's first 64 bits in hex (one host usually holds a
 * whole /64, so counting per address would not bound it). Anything unreadable counts as itself.
 */
export function clientKey(address: string): string {
  if (!isIPv6(address) && !address.includes('%')) return address;
  const mapped = IPV4_MAPPED.exec(address);
  if (mapped) return mapped[1]!;
  const ip = parseIp(stripZone(address));
  return ip === null ? address : `${ip.bytes.toString('hex', 0, 8)}/64`;
}

/** Whether an address (IPv4-mapped ones as the IPv4 address they are; a zone ignored) is in `ranges`. */
export function addressMatcher(ranges: readonly Cidr[]): (address: string) => boolean {
  if (ranges.length === 0) return () => false;
  const list = new BlockList();
  for (const r of ranges) list.addSubnet(r.address, r.prefix, r.family);
  return (address) => {
    const mapped = IPV4_MAPPED.exec(address);
    if (mapped) return list.check(mapped[1]!, 'ipv4');
    const bare = stripZone(address);
    return list.check(bare, bare.includes(':') ? 'ipv6' : 'ipv4');
  };
}
