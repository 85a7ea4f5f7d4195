/**
 * GET /status: the state of one svcdns (all its --workers processes together) as JSON, for people
 * and scripts. Built from the same numbers /metrics shows (so the two never disagree, and --workers
 * needs no second way of adding up), plus what only the serving process knows: readiness, the
 * catalog source, what is failing now.
 */

import type { MemberState } from '../catalog/source.js';
import type { Failing } from '../diagnostics/state-log.js';
import type { Phase } from '../lifecycle/phase.js';
import { VERSION } from '../version.js';

/** One metric as prom-client's `getMetricsAsJSON` gives it. */
export interface MetricJson {
  name: string;
  values: { value: number; labels: Record<string, string | number>; metricName?: string }[];
}

export interface Readiness {
  readonly ready: boolean;
  /** One line: why not, or what is served. */
  readonly reason: string;
}

/** What only the process serving /status knows. */
export interface About {
  readonly readiness: Readiness;
  /** The catalog source (only its kind and description are shown, and with several, each one's state). */
  readonly source: { readonly kind: string; readonly description: string; members?(): readonly MemberState[] };
  readonly failing: readonly Failing[];
  /** Processes answering queries (--workers; 1 without). */
  readonly workers: number;
  /** When this process started, ms since the epoch. */
  readonly startedAt: number;
  /** The persisted catalog (--state-dir) while it serves, before the first sync; null otherwise. */
  readonly stale?: { readonly savedAt: number } | null;
}

export interface Status {
  version: string;
  node: string;
  uptimeSeconds: number;
  ready: boolean;
  reason: string;
  workers: number;
  /** `stale`: the persisted catalog (--state-dir) served until the first sync, when it was written and how long ago; else null. */
  source: {
    kind: string;
    description: string;
    synced: boolean;
    stale: { savedAt: string; ageSeconds: number } | null;
    failing: Failing[];
    /** Several sources (src/catalog/composite/): each one's state, in precedence order; absent with one. */
    members?: MemberState[];
  };
  catalog: { services: number; instances: number; lastChange: string | null; ageSeconds: number | null };
  consul: { up: boolean; watches: number; watchErrors: number } | null;
  zookeeper: { up: boolean; watches: number; errors: number } | null;
  upstreams: { upstream: string; healthy: boolean; recentLatencyMs: number | null; requests: number; failures: number }[];
  caches: { reply: CacheStatus; forward: CacheStatus };
  queries: { total: number; byRcode: Record<string, number> };
}

interface CacheStatus {
  entries: number;
  hits: number;
  misses: number;
  /** hits / (hits + misses); null before any lookup. */
  hitRatio: number | null;
}

export function buildStatus(metrics: readonly MetricJson[], about: About, now = Date.now()): Status {
  const byName = new Map(metrics.map((m) => [m.name, m.values]));
  const values = (name: string) => byName.get(name) ?? [];
  const total = (name: string) => values(name).reduce((sum, v) => sum + v.value, 0);
  const has = (name: string) => values(name).length > 0;
  const byLabel = (name: string, label: string) => {
    const out = new Map<string, number>();
    for (const v of values(name)) if (v.metricName === undefined || v.metricName === name) out.set(String(v.labels[label]), (out.get(String(v.labels[label])) ?? 0) + v.value);
    return out;
  };
  const cache = (prefix: string): CacheStatus => {
    const hits = total(`${prefix}_hits_total`);
    const misses = total(`${prefix}_misses_total`);
    return { entries: total(`${prefix}_entries`), hits, misses, hitRatio: hits + misses === 0 ? null : round(hits / (hits + misses), 4) };
  };
  const lastChange = total('svcdns_catalog_last_change_timestamp_seconds');
  const healthy = byLabel('svcdns_upstream_healthy', 'upstream');
  const latency = byLabel('svcdns_forward_upstream_recent_latency_seconds', 'upstream');
  const requests = byLabel('svcdns_forward_requests_total', 'upstream');
  const failures = byLabel('svcdns_forward_failures_total', 'upstream');
  return {
    version: VERSION,
    node: process.version,
    uptimeSeconds: Math.round((now - about.startedAt) / 1000),
    ready: about.readiness.ready,
    reason: about.readiness.reason,
    workers: about.workers,
    source: {
      kind: about.source.kind,
      description: about.source.description,
      synced: total('svcdns_catalog_synced') > 0,
      stale: staleOf(about.stale ?? null, now),
      failing: [...about.failing],
      ...(about.source.members && { members: [...about.source.members()] }),
    },
    catalog: {
      services: total('svcdns_catalog_services'),
      instances: total('svcdns_catalog_instances'),
      lastChange: lastChange > 0 ? new Date(lastChange * 1000).toISOString() : null,
      ageSeconds: lastChange > 0 ? Math.max(0, Math.round(now / 1000 - lastChange)) : null,
    },
    consul: has('svcdns_consul_watches') ? { up: total('svcdns_consul_up') > 0, watches: total('svcdns_consul_watches'), watchErrors: total('svcdns_consul_watch_errors_total') } : null,
    zookeeper: has('svcdns_zookeeper_watches') ? { up: total('svcdns_zookeeper_up') > 0, watches: total('svcdns_zookeeper_watches'), errors: total('svcdns_zookeeper_errors_total') } : null,
    upstreams: [...healthy].map(([upstream, h]) => ({
      upstream,
      healthy: h > 0,
      recentLatencyMs: latency.has(upstream) ? round(latency.get(upstream)! * 1000, 3) : null,
      requests: requests.get(upstream) ?? 0,
      failures: failures.get(upstream) ?? 0,
    })),
    caches: { reply: cache('svcdns_reply_cache'), forward: cache('svcdns_forward_cache') },
    queries: { total: total('svcdns_dns_requests_total'), byRcode: Object.fromEntries(byLabel('svcdns_dns_responses_total', 'rcode')) },
  };
}

function staleOf(stale: { savedAt: number } | null, now: number): Status['source']['stale'] {
  return stale ? { savedAt: new Date(stale.savedAt).toISOString(), ageSeconds: Math.max(0, Math.round((now - stale.savedAt) / 1000)) } : null;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** The one-line summary of a status, as SIGUSR1 logs it. */
export function summarize(s: Status): Record<string, unknown> {
  return {
    ready: s.ready,
    reason: s.reason,
    uptimeSeconds: s.uptimeSeconds,
    source: s.source.kind,
    synced: s.source.synced,
    stale: s.source.stale !== null,
    failing: s.source.failing.map((f) => f.key),
    services: s.catalog.services,
    instances: s.catalog.instances,
    catalogAgeSeconds: s.catalog.ageSeconds,
    queries: s.queries.total,
    replyCacheHitRatio: s.caches.reply.hitRatio,
    forwardCacheHitRatio: s.caches.forward.hitRatio,
    upstreamsHealthy: `${s.upstreams.filter((u) => u.healthy).length}/${s.upstreams.length}`,
  };
}

/** /ready's answer for a server in `phase`, with or without a catalog from `source`. */
export function readinessOf(phase: Phase, synced: boolean, source: string, stale: { ageSeconds: number } | null = null): Readiness {
  if (phase === 'starting') return { ready: false, reason: synced ? 'starting: DNS listeners not bound yet' : `starting: waiting for the first catalog from ${source}` };
  if (phase === 'lameduck') return { ready: false, reason: 'lameduck: stopping, still answering DNS for now' };
  if (phase !== 'serving') return { ready: false, reason: `${phase}: not taking new queries` };
  if (!synced) return { ready: false, reason: `waiting for the first catalog from ${source}` };
  // Ready while the persisted catalog serves: it is what a running svcdns does when the registry
  // fails (keeps answering its last good catalog, ready), and taking a restarted one out of
  // rotation would take away the only answers there are during the outage.
  if (stale) return { ready: true, reason: `ready: serving the persisted catalog (stale, saved ${stale.ageSeconds} s ago) until the first sync from ${source}` };
  return { ready: true, reason: `ready: serving the catalog from ${source}` };
}
