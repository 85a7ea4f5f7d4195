/**
 * Admission of forwarded questions: the one decision whether a question that missed the forward
 * cache may wait on upstreams, so that one client flooding unique names (each a miss, each an
 * upstream socket) cannot take every place in flight from the others.
 *
 * Two bounds: the global one (--upstream-max-inflight, distinct questions waiting on upstreams:
 * each may hold sockets) and one per client (--upstream-max-per-client, the questions one client
 * has waiting, joined ones included). A client is its address; an IPv6 client is its /64 (one host
 * usually holds a whole /64, RFC 7421, so counting per address would not bound it). IPv4-mapped
 * IPv6 addresses are the IPv4 client they map.
 *
 * What a refused question gets is the forwarder's: dropped over UDP, SERVFAIL over TCP, or, when
 * an expired answer is kept, that answer served stale. Clients in --client-limits-exempt (`exempt`)
 * meet the global bound only.
 */

import { clientKey } from '../net/clients.js';

export interface AdmissionOptions {
  /** Most distinct questions waiting on upstreams at once (after the open-file check at start). */
  maxInflight: number;
  /** Most questions one client (address; IPv6 /64) may have waiting on upstreams at once. */
  maxPerClient: number;
  /** Clients the per-client bound does not apply to (--client-limits-exempt): only the global one holds. */
  exempt?: (address: string) => boolean;
}

/** Why a question was not let through: its client has too many waiting, or everyone has. */
export type Refusal = 'client' | 'global';

/** A place taken in flight; `release` gives it back (once; later calls do nothing). */
export interface Ticket {
  release(): void;
}

/** Questions asked by svcdns itself (hostname targets) have no client: only the global bound holds. */
const NO_CLIENT: Ticket = Object.freeze({ release: () => undefined });

export class Admission {
  /** Questions waiting on upstreams per client key; a key is deleted at zero, so the map holds only waiting clients. */
  private readonly perClient = new Map<string, number>();
  private refusedClient = 0;
  private refusedGlobal = 0;

  constructor(private readonly options: AdmissionOptions) {}

  /** The global bound in force. */
  get maxInflight(): number {
    return this.options.maxInflight;
  }

  /**
   * Whether a question that missed the cache may wait on upstreams. `client`: its address (null:
   * svcdns's own question); `startsQuestion`: it would start a new upstream round (it is not joining
   * an identical question in flight); `inflight`: the distinct questions waiting now. The per-client
   * bound is checked first, so a flooding client is told about itself, not about everyone.
   */
  admit(client: string | null, startsQuestion: boolean, inflight: number): Ticket | Refusal {
    const key = client === null || this.options.exempt?.(client) === true ? null : clientKey(client);
    const waiting = key === null ? 0 : (this.perClient.get(key) ?? 0);
    if (key !== null && waiting >= this.options.maxPerClient) {
      this.refusedClient++;
      return 'client';
    }
    if (startsQuestion && inflight >= this.options.maxInflight) {
      this.refusedGlobal++;
      return 'global';
    }
    if (key === null) return NO_CLIENT;
    this.perClient.set(key, waiting + 1);
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        const left = (this.perClient.get(key) ?? 1) - 1;
        if (left <= 0) this.perClient.delete(key);
        else this.perClient.set(key, left);
      },
    };
  }

  /** Questions refused so far, by reason (for metrics and /status). */
  refused(): { readonly client: number; readonly global: number } {
    return { client: this.refusedClient, global: this.refusedGlobal };
  }

  /** Clients with questions waiting now. */
  get clients(): number {
    return this.perClient.size;
  }
}
