/**
 * The cache of forwarded answers: at most `maxEntries` entries, the least recently used evicted
 * first, and an entry past its expiry time never returned.
 *
 * Built on lru-cache (a linked list beside a Map: a hit moves a list node, not a Map entry). Chosen
 * by measurement, scripts/bench-cache.ts (10,000 entries, Zipf lookups over 50,000 names):
 * - node-cache has no eviction: unbounded, a flood of random names (the attacker's zone sets their
 *   TTLs) grows it without limit; with `maxKeys` it throws when full and keeps the flood's names
 *   instead, so after a burst legitimate names got a 0% hit rate. By default it also deep-clones
 *   every value on get and set (0.2-0.3x the speed) and sweeps all keys on a timer.
 * - A Map kept in LRU order by delete+set (the first version of this file) had the same hit rates
 *   but was 0.4-0.6x lru-cache's speed, and V8 keeps deleted Map entries in their hash chain until
 *   the next rehash, so one name asked again and again slowed every lookup as the cache grew.
 */

import { LRUCache } from 'lru-cache';

export interface CacheEntry<V> {
  value: V;
  /** When it was stored, ms (the clock given to the cache). */
  storedAt: number;
  /** When it expires, ms. */
  expiresAt: number;
}

export class TtlLru<V> {
  private readonly lru: LRUCache<string, CacheEntry<V>> | null;

  /**
   * At most `maxEntries` entries and `maxBytes` by `sizeOf` (a forwarded answer may be 64 KB: the
   * count alone would let 10,000 of them take 650 MB).
   */
  constructor(
    readonly maxEntries: number,
    maxBytes: number,
    sizeOf: (value: V) => number,
    private readonly now: () => number = Date.now,
  ) {
    // Expiry is checked here, against our clock; lru-cache only keeps the order and the bounds.
    this.lru =
      maxEntries > 0 && maxBytes > 0
        ? new LRUCache<string, CacheEntry<V>>({ max: maxEntries, maxSize: maxBytes, sizeCalculation: (e) => Math.max(1, sizeOf(e.value)) })
        : null;
  }

  get size(): number {
    return this.lru?.size ?? 0;
  }

  /** The live entry for `key`, now the most recently used; undefined if absent or expired. */
  get(key: string): CacheEntry<V> | undefined {
    const entry = this.lru?.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= this.now()) {
      this.lru!.delete(key);
      return undefined;
    }
    return entry;
  }

  /** Stores `value` for `ttlMs` (nothing is stored for ttlMs <= 0 or a cache of size 0). */
  set(key: string, value: V, ttlMs: number): void {
    if (ttlMs <= 0 || this.lru === null) return;
    const storedAt = this.now();
    // An entry bigger than the whole cache is not stored (lru-cache refuses it).
    this.lru.set(key, { value, storedAt, expiresAt: storedAt + ttlMs });
  }

  clear(): void {
    this.lru?.clear();
  }
}
