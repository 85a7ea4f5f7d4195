/**
 * Round robin: each answer for the same record set starts one record further along than the last.
 *
 * Counters are keyed by the snapshot's own (frozen) instance lists, in a WeakMap: they need no
 * bound, and they restart when a catalog change replaces a list. The snapshot's list is never
 * touched; `rotate` returns a copy (CoreDNS's loadbalance does the same for its cache's slices).
 */

export class Rotator {
  private readonly counters = new WeakMap<object, number>();

  rotate<T>(list: readonly T[]): T[] {
    const n = list.length;
    if (n < 2) return list.slice();
    const count = this.counters.get(list) ?? 0;
    this.counters.set(list, (count + 1) % n);
    return [...list.slice(count), ...list.slice(0, count)];
  }
}
