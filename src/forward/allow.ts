/**
 * Who may have names forwarded (--allow-recursion): svcdns must never be an open resolver, which
 * the internet would use to amplify attacks. A client on a dual-stack socket shows up as an
 * IPv4-mapped IPv6 address (::ffff:10.1.2.3) and is checked as the IPv4 address it is.
 */

import { BlockList } from 'node:net';
import { stripZone, type Cidr } from '../net/address.js';

export function recursionAcl(ranges: readonly Cidr[]): (address: string) => boolean {
  const list = new BlockList();
  for (const r of ranges) list.addSubnet(r.address, r.prefix, r.family);
  return (address) => {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return list.check(mapped[1]!, 'ipv4');
    const bare = stripZone(address);
    return list.check(bare, bare.includes(':') ? 'ipv6' : 'ipv4');
  };
}
