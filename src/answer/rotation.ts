/**
 * Round robin: each answer for the same record set starts one record further along than the last.
 *
 * Counters are keyed by the snapshot's own (frozen) instance lists, in a WeakMap: they need no
 * bound, and they restart when a catalog change replaces a list. The snapshot's list is never
 * touched; `rotate` returns a copy (CoreDNS's loadbalance does the same for its cache's slices).
 *
 * The reply cache keeps its own turn for each cached question (it serves the rotations it has
 * encoded, in order) and asks for a given turn when it lacks one: `rotate(list, turn)`.
 */

export interface Rotated<T> {
  items: T[];
  /** Where the copy starts in `list`: 0 is the list as it is. */
  turn: number;
}

export class Rotator {
  private readonly counters = new WeakMap<object, number>();

  /** The next rotation of `list`, or the one at `turn` (modulo its length). */
  rotate<T>(list: readonly T[], turn?: number): Rotated<T> {
    const n = list.length;
    if (n < 2) return { items: list.slice(), turn: 0 };
    const start = turn === undefined ? (this.counters.get(list) ?? 0) : turn % n;
    this.counters.set(list, (start + 1) % n);
    return { items: [...list.slice(start), ...list.slice(0, start)], turn: start };
  }
}
