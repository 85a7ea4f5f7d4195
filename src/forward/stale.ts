/**
 * Serve-stale (RFC 8767) and prefetch: when an expired forwarded answer may be served instead of
 * waiting on, or failing with, the upstreams, and when a live one is refreshed early. Pure rules;
 * the forwarder (forwarder.ts) applies them to its cache and its questions in flight.
 *
 * An expired answer, kept by the forward cache for up to --serve-stale past its expiry, is served:
 * - at once, when the last refresh of it failed less than `FAILURE_RECHECK_MS` ago (RFC 8767 5's
 *   failure recheck timer: the upstreams are not asked again for it meanwhile), when every upstream
 *   is unhealthy (failing fast), or with --client-response-timeout 0;
 * - otherwise once the refresh it starts (or joins) fails, or has not ended within
 *   --client-response-timeout (RFC 8767 5's client response timer, 1.8 s), whichever comes first.
 * The refresh goes on in the background, one per question at a time (the forwarder's flights),
 * and its answer replaces the expired one in the cache. Stale records are served with TTL
 * `STALE_TTL` (RFC 8767 4), negative answers' SOA included; the reply cache never keeps them.
 * unbound's serve-expired with serve-expired-client-timeout 1800 and serve-expired-reply-ttl 30
 * behaves the same way.
 */

import type { CacheEntry } from './cache.js';

/** RFC 8767 4: "a TTL of 30 seconds" for records served stale (never above --cache-max-ttl). */
export const STALE_TTL = 30;

/** RFC 8767 5: after a failed refresh, the stale answer is served without asking again this long, ms. */
export const FAILURE_RECHECK_MS = 30_000;

/** Prefetch only answers whose TTL was at least this long, ms (unbound: TTLs under 10 s are not prefetched). */
export const PREFETCH_MIN_TTL_MS = 10_000;

/** The TTL stale records get: 30 s, lowered to --cache-max-ttl. */
export function staleTtl(cacheMaxTtl: number): number {
  return Math.min(STALE_TTL, cacheMaxTtl);
}

/** The last refresh of this expired entry failed recently: serve it stale at once, ask nothing. */
export function inFailureRecheck(entry: CacheEntry<unknown>, now: number): boolean {
  return entry.refreshFailedAt !== undefined && now - entry.refreshFailedAt < FAILURE_RECHECK_MS;
}

/** A live entry in the last tenth of its TTL (a TTL of 10 s or more): time to refresh it (unbound's prefetch). */
export function dueForPrefetch(entry: CacheEntry<unknown>, now: number): boolean {
  const ttl = entry.expiresAt - entry.storedAt;
  return ttl >= PREFETCH_MIN_TTL_MS && entry.expiresAt - now <= ttl / 10;
}
