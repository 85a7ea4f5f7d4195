/**
 * The answers still being worked on (waiting on an upstream or on data being fetched), so that a
 * stopping server can wait for them and, past its drain time, give up on the rest: each then gets
 * the fallback answer (SERVFAIL) at once, and its late real answer is dropped. Only the asynchronous
 * path pays for this (one Set entry per pending answer); synchronous answers are never tracked.
 */

import type { Answer } from './stage.js';

export class InFlight {
  private readonly pending = new Set<() => void>();
  private gaveUp = false;

  /** Answers not settled yet. */
  get size(): number {
    return this.pending.size;
  }

  /**
   * `work`, unless `giveUp()` comes first: then `fallback()`. After `giveUp()`, new work gets its
   * fallback at once. Rejections pass through (the chain turns them into SERVFAIL).
   */
  track(work: Promise<Answer>, fallback: () => Answer): Promise<Answer> {
    if (this.gaveUp) return Promise.resolve(fallback());
    let abandon!: () => void;
    const abandoned = new Promise<Answer>((resolve) => (abandon = () => resolve(fallback())));
    this.pending.add(abandon);
    return Promise.race([work.finally(() => this.pending.delete(abandon)), abandoned]);
  }

  /** Every pending answer (and every later one) gets its fallback now. */
  giveUp(): void {
    this.gaveUp = true;
    const all = [...this.pending];
    this.pending.clear();
    for (const abandon of all) abandon();
  }
}
