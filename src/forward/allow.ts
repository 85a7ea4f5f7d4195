/**
 * Who may have names forwarded (--allow-recursion): svcdns must never be an open resolver, which
 * the internet would use to amplify attacks. A client on a dual-stack socket shows up as an
 * IPv4-mapped IPv6 address (::ffff:10.1.2.3) and is checked as the IPv4 address it is.
 */

import { addressMatcher } from '../net/clients.js';
import type { Cidr } from '../net/address.js';

export function recursionAcl(ranges: readonly Cidr[]): (address: string) => boolean {
  return addressMatcher(ranges);
}
