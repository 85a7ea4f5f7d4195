/**
 * The cache of forwarded answers: at most `maxEntries` entries, the least recently used evicted
 * first, and an entry past its expiry time never returned as live (`get`); with a stale window, it
 * is kept that much longer for serving stale (`getStale`, RFC 8767), and evicted before live ones.
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
  /** Expired entries only: when the last try to refresh it failed, ms (RFC 8767's failure recheck). */
  refreshFailedAt?: number;
}

/**
 * Live entries, and, for `staleMs` past their expiry, expired ones (RFC 8767 serve-stale). The two
 * are kept apart, in two LRUs under one pair of bounds: an expired entry found by `get` moves to
 * the stale one, which gives way first when the two together pass a bound, so expired answers never
 * push out live ones. (An expired entry nobody asks for again stays among the live ones until the
 * LRU order evicts it: only a name asked again can be served stale.)
 */
export class TtlLru<V> {
  private readonly lru: LRUCache<string, CacheEntry<V>> | null;
  private readonly stale: LRUCache<string, CacheEntry<V>> | null;

  /**
   * At most `maxEntries` entries and `maxBytes` by `sizeOf` (a forwarded answer may be 64 KB: the
   * count alone would let 10,000 of them take 650 MB), expired ones included. `staleMs`: how long
   * past its expiry an entry stays for `getStale`; 0: expired entries are dropped.
   */
  constructor(
    readonly maxEntries: number,
    private readonly maxBytes: number,
    private readonly sizeOf: (value: V) => number,
    private readonly now: () => number = Date.now,
    private readonly staleMs = 0,
  ) {
    // Expiry is checked here, against our clock; lru-cache only keeps the order and the bounds.
    const make = (): LRUCache<string, CacheEntry<V>> =>
      new LRUCache<string, CacheEntry<V>>({ max: maxEntries, maxSize: maxBytes, sizeCalculation: (e) => Math.max(1, sizeOf(e.value)) });
    const on = maxEntries > 0 && maxBytes > 0;
    this.lru = on ? make() : null;
    this.stale = on && staleMs > 0 ? make() : null;
  }

  /** Entries held, expired ones kept for serving stale included. */
  get size(): number {
    return (this.lru?.size ?? 0) + (this.stale?.size ?? 0);
  }

  /** The live entry for `key`, now the most recently used; undefined if absent or expired. */
  get(key: string): CacheEntry<V> | undefined {
    const entry = this.lru?.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= this.now()) {
      this.lru!.delete(key);
      this.keepStale(key, entry);
      return undefined;
    }
    return entry;
  }

  /** The expired entry for `key`, if it expired less than `staleMs` ago (call after `get` missed). */
  getStale(key: string): CacheEntry<V> | undefined {
    const entry = this.stale?.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt + this.staleMs <= this.now()) {
      this.stale!.delete(key);
      return undefined;
    }
    return entry;
  }

  /**
   * Stores `value` for `ttlMs`, replacing any entry for `key`, expired or not. For ttlMs <= 0 (an
   * answer that may not be cached) nothing is stored and the old entry goes: it is no longer the answer.
   */
  set(key: string, value: V, ttlMs: number): void {
    if (this.lru === null) return;
    this.stale?.delete(key);
    if (ttlMs <= 0) {
      this.lru.delete(key);
      return;
    }
    const storedAt = this.now();
    // An entry bigger than the whole cache is not stored (lru-cache refuses it).
    this.fit(1, Math.max(1, this.sizeOf(value)));
    this.lru.set(key, { value, storedAt, expiresAt: storedAt + ttlMs });
  }

  /** The refresh of `key`'s expired entry failed now (it is then served at once for a while: stale.ts). */
  refreshFailed(key: string): void {
    const entry = this.stale?.peek(key);
    if (entry !== undefined) entry.refreshFailedAt = this.now();
  }

  clear(): void {
    this.lru?.clear();
    this.stale?.clear();
  }

  private keepStale(key: string, entry: CacheEntry<V>): void {
    if (this.stale === null || entry.expiresAt + this.staleMs <= this.now()) return;
    this.stale.set(key, entry);
    this.fit(0, 0);
  }

  /**
   * Expired entries give way first: the least recently used of them go until both bounds hold with
   * room for `entries` more of `bytes` (so a live entry stored next evicts a stale one, not a live one).
   */
  private fit(entries: number, bytes: number): void {
    const live = this.lru!;
    const stale = this.stale;
    if (stale === null) return;
    while (stale.size > 0 && (live.size + stale.size + entries > this.maxEntries || live.calculatedSize + stale.calculatedSize + bytes > this.maxBytes)) {
      stale.pop();
    }
  }
}
