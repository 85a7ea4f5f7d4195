/**
 * Prometheus metrics: a subscriber of the diagnostics seam, and readers of the components' own
 * counts at scrape time. Every svcdns_* metric is declared here, once (the README lists them); the
 * standard process_* and nodejs_* ones in process-metrics.ts.
 *
 * Cost: a query event does a few array increments and one bucket search (no label hashing, no
 * allocation); everything else (label sets, text) is built when /metrics is scraped. The counts
 * a component keeps anyway (reply cache and forward cache hits, upstream health, catalog size) are
 * read at scrape time, not counted twice.
 *
 * prom-client formats the text and sums the registries of --workers processes (`aggregate`): each
 * metric says how it aggregates (counters sum; a catalog gauge, the same in every process, takes
 * the maximum).
 */

import { AggregatorRegistry, Registry } from 'prom-client';
import type { Snapshot } from '../catalog/snapshot.js';
import type { MemberState } from '../catalog/source.js';
import { isNamedType, rcodeName, typeName } from '../dns/constants.js';
import type { ForwarderStats } from '../forward/forwarder.js';
import type { ReplyCacheStats } from '../pipeline/reply-cache.js';
import { VERSION } from '../version.js';
import type { TcpClose } from '../listen/tcp-table.js';
import type { Diagnostics, QueryEvent, UpstreamEvent } from './channels.js';
import { declarer, type Value } from './metric-values.js';
import { declareProcessMetrics } from './process-metrics.js';

/** What the metrics read at scrape time; each returns null when the part does not run here. */
export interface MetricsReaders {
  replyCache(): ReplyCacheStats | null;
  forwarder(): ForwarderStats | null;
  /** The snapshot served now (null before the first). */
  catalog(): Snapshot | null;
  /** The Consul source's watches running; null when no Consul source runs in this process. */
  consulWatches(): number | null;
  /** TCP connections open now, over every listen address (null before the listeners are bound). */
  tcpConnections(): number | null;
  /** Whether Consul is up, as the source's liveness probe judges it; null when no Consul source runs here. */
  consulUp(): boolean | null;
  /** The ZooKeeper source's session and watches; null where none runs. */
  zookeeper(): { up: boolean; watches: number } | null;
  /** Several catalog sources (src/catalog/composite/): each one's state; null with one, or where none runs. */
  sources(): readonly MemberState[] | null;
}

/** CoreDNS's request duration buckets (plugin/metrics/vars: exponential from 0.25 ms, doubling, 16). */
export const DURATION_BUCKETS: readonly number[] = Array.from({ length: 16 }, (_, i) => 0.00025 * 2 ** i);

const PROTOS = ['udp', 'tcp'] as const;
/** rcodes with their own label value; the rest count under `other`. */
const RCODE_SLOTS = 24;

/** Type numbers that get their own label; one slot each, slot 0 is `other`. */
const TYPE_SLOT = new Uint8Array(65536);
const SLOT_TYPE: number[] = [-1];
for (let t = 0; t < 65536; t++) {
  if (isNamedType(t)) {
    TYPE_SLOT[t] = SLOT_TYPE.length;
    SLOT_TYPE.push(t);
  }
}

/** A histogram kept in plain arrays: bucket counts (not cumulative), sum and count. */
class Histogram {
  readonly buckets: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.buckets = new Float64Array(bounds.length + 1);
  }

  observe(seconds: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && seconds > b[i]!) i++;
    this.buckets[i]!++;
    this.sum += seconds;
    this.count++;
  }

  values(name: string, labels: Record<string, string>): Value[] {
    const out: Value[] = [];
    let cumulative = 0;
    for (let i = 0; i <= this.bounds.length; i++) {
      cumulative += this.buckets[i]!;
      out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: i < this.bounds.length ? this.bounds[i]! : '+Inf' }, value: cumulative });
    }
    out.push({ metricName: `${name}_sum`, labels, value: this.sum }, { metricName: `${name}_count`, labels, value: this.count });
    return out;
  }
}

/** Per upstream, from `upstream` events. */
interface UpstreamCounts {
  requests: number;
  /** By rcode name. */
  responses: Map<string, number>;
  /** Tries that got no usable reply, by outcome (`timeout`, ...). */
  failures: Map<string, number>;
  duration: Histogram;
  /** Recent latency of replies, seconds: an exponentially weighted mean (weight 1/8 to the newest). */
  recent: number;
}

/** The metrics of one svcdns process; `registry` is what /metrics writes out. */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly requests = new Float64Array(PROTOS.length * SLOT_TYPE.length);
  private readonly responses = new Float64Array(PROTOS.length * (RCODE_SLOTS + 1));
  private readonly duration = PROTOS.map(() => new Histogram(DURATION_BUCKETS));
  private readonly upstreams = new Map<string, UpstreamCounts>();
  private watchErrors = 0;
  private zookeeperErrors = 0;
  /** Forwarded answers served stale (RFC 8767), from query events. */
  private staleAnswers = 0;
  /** UDP replies limited by RRL: dropped, and slipped (sent truncated). */
  private rrlDropped = 0;
  private rrlSlipped = 0;
  /** TCP connections refused or closed by the listener's rules, by why (src/listen/tcp-table.ts). */
  private readonly tcpClosed = new Map<TcpClose, number>();
  private readonly unsubscribe: (() => void)[];

  /**
   * `defaultMetrics`: also the standard process_* and nodejs_* metrics (one set per process: an
   * embedding program that has its own passes false).
   */
  constructor(
    diagnostics: Diagnostics,
    private readonly read: MetricsReaders,
    options: { defaultMetrics: boolean },
  ) {
    this.unsubscribe = [
      diagnostics.query.subscribe((e) => this.onQuery(e)),
      diagnostics.upstream.subscribe((e) => this.onUpstream(e)),
      diagnostics.rateLimit.subscribe((e) => {
        if (e.outcome === 'dropped') this.rrlDropped++;
        else this.rrlSlipped++;
      }),
      diagnostics.state.subscribe((e) => {
        if (e.key === 'consul' && e.problem !== null) this.watchErrors++;
        if (e.key === 'zookeeper' && e.problem !== null) this.zookeeperErrors++;
      }),
      diagnostics.tcp.subscribe((e) => this.tcpClosed.set(e.reason, (this.tcpClosed.get(e.reason) ?? 0) + 1)),
    ];
    this.declare();
    if (options.defaultMetrics) declareProcessMetrics(declarer(this.registry));
  }

  /** The Prometheus text of this process. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** The same as data, as --workers processes send it to the primary. */
  json(): Promise<unknown[]> {
    return this.registry.getMetricsAsJSON();
  }

  close(): void {
    for (const u of this.unsubscribe) u();
  }

  private onQuery({ request, answer, durationNs }: QueryEvent): void {
    const p = request.transport === 'tcp' ? 1 : 0;
    const type = request.questionType;
    this.requests[p * SLOT_TYPE.length + (type < 0 ? 0 : TYPE_SLOT[type]!)]!++;
    const bytes = answer.bytes;
    if (bytes === null) return;
    const rcode = answer.rcode ?? bytes[3]! & 0xf;
    if (answer.stale === true) this.staleAnswers++;
    this.responses[p * (RCODE_SLOTS + 1) + (rcode < RCODE_SLOTS ? rcode : RCODE_SLOTS)]!++;
    this.duration[p]!.observe(durationNs / 1e9);
  }

  private onUpstream(e: UpstreamEvent): void {
    let u = this.upstreams.get(e.upstream);
    if (u === undefined) {
      u = { requests: 0, responses: new Map(), failures: new Map(), duration: new Histogram(DURATION_BUCKETS), recent: -1 };
      this.upstreams.set(e.upstream, u);
    }
    u.requests++;
    const seconds = e.durationMs / 1000;
    u.duration.observe(seconds);
    if (e.rcode === null) {
      u.failures.set(e.outcome, (u.failures.get(e.outcome) ?? 0) + 1);
      return;
    }
    const name = rcodeName(e.rcode);
    u.responses.set(name, (u.responses.get(name) ?? 0) + 1);
    u.recent = u.recent < 0 ? seconds : u.recent + (seconds - u.recent) / 8;
  }

  private declare(): void {
    const m = declarer(this.registry);
    const one = (value: number | null): Value[] => (value === null ? [] : [{ value, labels: {} }]);
    const perUpstream = (f: (upstream: string, u: UpstreamCounts) => Value[]) => () => [...this.upstreams].flatMap(([upstream, u]) => f(upstream, u));

    m('svcdns_dns_requests_total', 'DNS queries received, by transport and question type (other: types without a name).', 'counter', 'sum', () =>
      PROTOS.flatMap((proto, p) =>
        SLOT_TYPE.flatMap((type, slot) => {
          const value = this.requests[p * SLOT_TYPE.length + slot]!;
          return value === 0 ? [] : [{ value, labels: { proto, type: type < 0 ? 'other' : typeName(type) } }];
        }),
      ),
    );
    m('svcdns_dns_responses_total', 'DNS replies sent, by transport and rcode.', 'counter', 'sum', () =>
      PROTOS.flatMap((proto, p) =>
        Array.from({ length: RCODE_SLOTS + 1 }, (_, rcode) => {
          const value = this.responses[p * (RCODE_SLOTS + 1) + rcode]!;
          return value === 0 ? [] : [{ value, labels: { proto, rcode: rcode < RCODE_SLOTS ? rcodeName(rcode) : 'other' } }];
        }).flat(),
      ),
    );
    m('svcdns_dns_request_duration_seconds', 'Time from a query’s arrival to its reply, by transport.', 'histogram', 'sum', () =>
      PROTOS.flatMap((proto, p) => this.duration[p]!.values('svcdns_dns_request_duration_seconds', { proto })),
    );

    m('svcdns_rrl_limited_total', 'UDP replies over the response rate limit (--rrl-responses-per-second): dropped or slipped.', 'counter', 'sum', () =>
      one(this.rrlDropped + this.rrlSlipped),
    );
    m('svcdns_rrl_slipped_total', 'Limited UDP replies sent truncated (TC=1; errors as they are) so a real client retries over TCP (--rrl-slip).', 'counter', 'sum', () =>
      one(this.rrlSlipped),
    );
    m('svcdns_tcp_connections', 'TCP connections open.', 'gauge', 'sum', () => one(this.read.tcpConnections()));
    m(
      'svcdns_tcp_connections_closed_total',
      'TCP connections svcdns refused or closed by its own rules, by why: per-client-limit and full (refused at once), evicted (idle longest, closed to make room), idle, idle-under-pressure (past an idle timeout shortened by a fuller table).',
      'counter',
      'sum',
      () => [...this.tcpClosed].map(([reason, value]) => ({ value, labels: { reason } })),
    );

    m('svcdns_reply_cache_hits_total', 'Queries answered from the reply cache.', 'counter', 'sum', () => one(this.read.replyCache()?.hits ?? null));
    m('svcdns_reply_cache_misses_total', 'Queries the reply cache could not answer.', 'counter', 'sum', () => one(this.read.replyCache()?.misses ?? null));
    m('svcdns_reply_cache_entries', 'Questions held in the reply cache.', 'gauge', 'sum', () => one(this.read.replyCache()?.entries ?? null));
    m('svcdns_forward_cache_hits_total', 'Forwarded questions answered from the forward cache.', 'counter', 'sum', () => one(this.read.forwarder()?.cache.hits ?? null));
    m('svcdns_forward_cache_misses_total', 'Forwarded questions the forward cache could not answer.', 'counter', 'sum', () => one(this.read.forwarder()?.cache.misses ?? null));
    m('svcdns_forward_cache_entries', 'Replies held in the forward cache (expired ones kept for serving stale included).', 'gauge', 'sum', () =>
      one(this.read.forwarder()?.cache.entries ?? null),
    );
    m('svcdns_forward_stale_answers_total', 'Expired forwarded answers served stale (RFC 8767) because the upstreams failed or were too slow.', 'counter', 'sum', () =>
      this.read.forwarder() === null ? [] : one(this.staleAnswers),
    );

    m('svcdns_forward_refused_total', 'Forwarded questions refused at once (dropped over UDP, SERVFAIL over TCP, or served stale), by the bound they met (client: --upstream-max-per-client; global: --upstream-max-inflight).', 'counter', 'sum', () => {
      const refused = this.read.forwarder()?.refused;
      return refused ? [{ value: refused.client, labels: { bound: 'client' } }, { value: refused.global, labels: { bound: 'global' } }] : [];
    });
    m('svcdns_forward_max_inflight', 'The bound on forwarded questions in flight in force (lower than --upstream-max-inflight when that did not fit the open-file limit).', 'gauge', 'sum', () =>
      one(this.read.forwarder()?.maxInflight ?? null),
    );

    m('svcdns_forward_requests_total', 'Queries sent to each upstream (each try).', 'counter', 'sum', perUpstream((upstream, u) => [{ value: u.requests, labels: { upstream } }]));
    m(
      'svcdns_forward_responses_total',
      'Replies from each upstream, by rcode.',
      'counter',
      'sum',
      perUpstream((upstream, u) => [...u.responses].map(([rcode, value]) => ({ value, labels: { upstream, rcode } }))),
    );
    m(
      'svcdns_forward_failures_total',
      'Tries of each upstream that got no usable reply, by why (timeout, error, malformed, ...).',
      'counter',
      'sum',
      perUpstream((upstream, u) => [...u.failures].map(([reason, value]) => ({ value, labels: { upstream, reason } }))),
    );
    m(
      'svcdns_forward_request_duration_seconds',
      'Time each try of each upstream took.',
      'histogram',
      'sum',
      perUpstream((upstream, u) => u.duration.values('svcdns_forward_request_duration_seconds', { upstream })),
    );
    m(
      'svcdns_forward_upstream_recent_latency_seconds',
      'Recent reply time of each upstream: a moving average, the newest reply weighing 1/8.',
      'gauge',
      'average',
      perUpstream((upstream, u) => (u.recent < 0 ? [] : [{ value: u.recent, labels: { upstream } }])),
    );
    // Each process judges health itself: with --workers the minimum says "unhealthy in some worker".
    m('svcdns_upstream_healthy', 'Whether each upstream is healthy (1) or tried last until it answers a probe (0).', 'gauge', 'min', () =>
      (this.read.forwarder()?.upstreams ?? []).map(({ upstream, healthy }) => ({ value: healthy ? 1 : 0, labels: { upstream } })),
    );

    // The catalog is the same in every --workers process: the maximum is its value.
    m('svcdns_catalog_synced', 'Whether a catalog is being served (1: the file was read, or the first Consul sync is done).', 'gauge', 'max', () => [
      { value: this.read.catalog() === null ? 0 : 1, labels: {} },
    ]);
    m('svcdns_catalog_services', 'Services in the catalog served (by datacenter and name; with Consul, those loaded).', 'gauge', 'max', () =>
      one(this.read.catalog()?.counts.services ?? null),
    );
    m('svcdns_catalog_instances', 'Service instances in the catalog served, whatever their health.', 'gauge', 'max', () =>
      one(this.read.catalog()?.counts.instances ?? null),
    );
    m('svcdns_catalog_last_change_timestamp_seconds', 'When the catalog served was published, seconds since the epoch.', 'gauge', 'max', () => {
      const at = this.read.catalog()?.publishedAt;
      return one(at ? at / 1000 : null);
    });
    // Only with several sources (the process running them): one series per source, by its kind.
    m('svcdns_catalog_source_synced', 'With several catalog sources: whether each (by kind) has published its first catalog.', 'gauge', 'max', () =>
      (this.read.sources() ?? []).map((s) => ({ value: s.synced ? 1 : 0, labels: { source: s.kind } })),
    );
    m('svcdns_consul_watches', 'Consul reads kept running (blocking watches and polls).', 'gauge', 'sum', () => one(this.read.consulWatches()));
    // Only the process running the Consul source (the primary with --workers) has a value.
    m('svcdns_consul_up', 'Whether Consul is up (1) or down (0), as the liveness probe judged it last (probed when a read fails or is overdue, and every --consul-heartbeat while blocking reads wait).', 'gauge', 'max', () => {
      const up = this.read.consulUp();
      return one(up === null ? null : up ? 1 : 0);
    });
    m('svcdns_consul_watch_errors_total', 'Failed Consul watch reads.', 'counter', 'sum', () => (this.read.consulWatches() === null ? [] : one(this.watchErrors)));
    // Only the process running the ZooKeeper source (the primary with --workers) has values.
    m('svcdns_zookeeper_up', 'Whether svcdns holds a connected ZooKeeper session (1) or not (0).', 'gauge', 'max', () => {
      const zk = this.read.zookeeper();
      return one(zk === null ? null : zk.up ? 1 : 0);
    });
    m('svcdns_zookeeper_watches', 'ZooKeeper paths svcdns watches (folders listed, instances read, folders awaited).', 'gauge', 'sum', () => one(this.read.zookeeper()?.watches ?? null));
    m('svcdns_zookeeper_errors_total', 'ZooKeeper session problems: connections lost or refused, sessions expired, authentication failed.', 'counter', 'sum', () =>
      this.read.zookeeper() === null ? [] : one(this.zookeeperErrors),
    );
    m('svcdns_build_info', 'The svcdns version and the Node.js version running it (always 1).', 'gauge', 'max', () => [
      { value: 1, labels: { version: VERSION, node: process.version } },
    ]);
  }
}

/** --workers: every process's metrics (their `json()`s) as one registry, each metric aggregated its own way. */
export function aggregate(registries: readonly unknown[][]): Registry {
  return AggregatorRegistry.aggregate(registries as Parameters<typeof AggregatorRegistry.aggregate>[0]);
}
