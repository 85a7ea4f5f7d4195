/**
 * The rate limiting accounts: one token bucket per (client prefix, reply identity), as BIND 9's
 * RRL keeps them, in a table of fixed size allocated once (typed arrays: no object per account, no
 * allocation per reply, memory bounded whatever a flood sends).
 *
 * An account is credited `rate` each second since it was last charged (at most `rate` in hand: no
 * saving up beyond one second's worth), and charged one per reply. A reply is sent while the
 * balance stays at or above zero: `rate` identical replies a second. Below zero it is limited, and
 * the debt is kept, down to `window` seconds' worth: a flood that stops is still limited until its
 * debt is paid off, `window` seconds at most; an account untouched for `window` seconds starts
 * afresh. Seconds are counted from the account's own last credit (not the wall clock's), so a
 * burst shorter than a second gets exactly `rate` replies, whenever it starts.
 *
 * Of the limited replies, the first and then every `slip`-th is "slipped" (sent truncated, or for
 * errors sent as they are, as BIND does) and the others dropped; slip 0 drops them all.
 *
 * The table is 4-way set associative: a key hashes to a set of 4 slots; a new key takes an empty
 * slot or the one credited longest ago. Under a flood of more keys than slots, the oldest accounts
 * are forgotten (they start again with a full second's credit), which is BIND's behaviour past
 * max-table-size too.
 */

export const Verdict = {
  SEND: 0,
  DROP: 1,
  SLIP: 2,
} as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

const WAYS = 4;

export interface AccountOptions {
  /** Replies per second per account (> 0). */
  rate: number;
  slip: number;
  windowSeconds: number;
  /** Accounts kept at most (rounded up to a power of two times 4). */
  size: number;
}

export class Accounts {
  private readonly sets: number;
  private readonly k0: Uint32Array;
  private readonly k1: Uint32Array;
  private readonly k2: Uint32Array;
  private readonly k3: Uint32Array;
  /** When the account was last credited, ms on the caller's clock; 0: an empty slot. */
  private readonly credited: Float64Array;
  private readonly balance: Int32Array;
  /** Limited replies since the account was last in credit. */
  private readonly limited: Uint32Array;
  private readonly rate: number;
  private readonly slip: number;
  private readonly windowMs: number;
  private readonly floor: number;

  constructor(options: AccountOptions) {
    this.rate = options.rate;
    this.slip = options.slip;
    this.windowMs = options.windowSeconds * 1000;
    this.floor = -options.windowSeconds * options.rate;
    let sets = 1;
    while (sets * WAYS < options.size) sets *= 2;
    this.sets = sets;
    const slots = sets * WAYS;
    this.k0 = new Uint32Array(slots);
    this.k1 = new Uint32Array(slots);
    this.k2 = new Uint32Array(slots);
    this.k3 = new Uint32Array(slots);
    this.credited = new Float64Array(slots);
    this.balance = new Int32Array(slots);
    this.limited = new Uint32Array(slots);
  }

  /** Slots in the table. */
  get capacity(): number {
    return this.sets * WAYS;
  }

  /**
   * Charges the account of key (a, b, c, d) for one reply at `now` (ms, > 0, never going back) and
   * says what to do with the reply.
   */
  charge(a: number, b: number, c: number, d: number, now: number): Verdict {
    let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b);
    h = Math.imul(h ^ b ^ (h >>> 15), 0xc2b2ae35);
    h = Math.imul(h ^ c ^ (h >>> 13), 0x85ebca6b);
    h = Math.imul(h ^ d ^ (h >>> 16), 0xc2b2ae35);
    const base = ((h ^ (h >>> 15)) & (this.sets - 1)) * WAYS;
    let slot = -1;
    let oldest = base;
    for (let i = base; i < base + WAYS; i++) {
      if (this.credited[i]! !== 0 && this.k3[i] === d && this.k0[i] === a && this.k1[i] === b && this.k2[i] === c) {
        slot = i;
        break;
      }
      if (this.credited[i]! < this.credited[oldest]!) oldest = i;
    }
    if (slot < 0) return this.open(oldest, a, b, c, d, now);

    const elapsed = now - this.credited[slot]!;
    if (elapsed >= this.windowMs) return this.open(slot, a, b, c, d, now);
    if (elapsed >= 1000) {
      const seconds = Math.floor(elapsed / 1000);
      this.credited[slot] = this.credited[slot]! + seconds * 1000;
      this.balance[slot] = Math.min(this.rate, this.balance[slot]! + seconds * this.rate);
    }
    const left = this.balance[slot]! - 1;
    if (left >= 0) {
      this.balance[slot] = left;
      this.limited[slot] = 0;
      return Verdict.SEND;
    }
    this.balance[slot] = left < this.floor ? this.floor : left;
    const n = this.limited[slot]!;
    this.limited[slot] = n + 1;
    return this.slip > 0 && n % this.slip === 0 ? Verdict.SLIP : Verdict.DROP;
  }

  /** A fresh account in `slot`, charged for this reply. */
  private open(slot: number, a: number, b: number, c: number, d: number, now: number): Verdict {
    this.k0[slot] = a;
    this.k1[slot] = b;
    this.k2[slot] = c;
    this.k3[slot] = d;
    this.credited[slot] = now;
    this.balance[slot] = this.rate - 1;
    this.limited[slot] = 0;
    return Verdict.SEND;
  }
}
