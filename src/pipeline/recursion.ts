/**
 * Stage: the recursion ACL. A name nobody before this stage answered is forwarded only for clients
 * allowed recursion (--allow-recursion) and only when there is somewhere to forward to; everyone
 * else gets REFUSED. Our own domain was answered before this stage: it is open to all. svcdns must
 * never be an open resolver, which the internet would use to amplify attacks; a client on a
 * dual-stack socket (::ffff:10.1.2.3) is checked as the IPv4 address it is (`addressMatcher`).
 *
 * `Recursion` also says who gets RA in every reply (`RequestContext.recursive`): exactly the
 * clients whose other names would be forwarded.
 */

import type { Cidr } from '../net/address.js';
import { Rcode } from '../dns/constants.js';
import { addressMatcher } from '../net/clients.js';
import { NEXT, type Request, type Stage, type StageResult } from './stage.js';

/** Client addresses remembered at most (checking the ACL costs far more than a map lookup). */
const REMEMBERED = 4096;

export class Recursion {
  private readonly allowedByAddress = new Map<string, boolean>();
  private readonly acl: (address: string) => boolean;

  /** `forwarder`: where other names go; null, or one with no upstreams: nowhere. */
  constructor(
    allow: readonly Cidr[],
    private readonly forwarder: { readonly available: boolean } | null,
  ) {
    this.acl = addressMatcher(allow);
  }

  /** Recursion is available to this client address: there is somewhere to forward to, and it may. */
  readonly recursive = (address: string): boolean => this.forwarder !== null && this.forwarder.available && this.allowed(address);

  private allowed(address: string): boolean {
    let yes = this.allowedByAddress.get(address);
    if (yes === undefined) {
      if (this.allowedByAddress.size >= REMEMBERED) this.allowedByAddress.clear();
      yes = this.acl(address);
      this.allowedByAddress.set(address, yes);
    }
    return yes;
  }
}

export const recursionAclStage: Stage = {
  name: 'recursion-acl',
  handle(request: Request): StageResult {
    return request.recursionAvailable ? NEXT : request.fail(Rcode.REFUSED);
  },
};
