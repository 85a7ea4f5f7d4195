/**
 * Catalog source: Consul, kept fresh with blocking-query watches.
 *
 * Per datacenter it watches the node list and the service list (one long-poll each), and the
 * health of services (one long-poll per service):
 * - `--watch all`: every service of the local datacenter, from start;
 * - `--watch on-demand`: a service from its first query (`want`), dropped after `--watch-idle`
 *   without queries; the service list still says which services exist, so a name that is not in
 *   it is NXDOMAIN at once and one that is gets fetched, never NXDOMAIN;
 * - `--watch auto` (default): `all` up to `--watch-all-limit` services, else on demand.
 * Other datacenters are always on demand: their node and service lists and the services asked for
 * are watched from the first query naming them, and dropped when idle. The list of datacenters
 * (/v1/catalog/datacenters, not blockable) is re-read every few minutes; an unknown one is NXDOMAIN.
 *
 * Every result lands in this source's copy of the catalog; changes arriving together are published
 * as one snapshot (coalesced over one event-loop turn). What exists but is not loaded is published
 * too (CatalogData.partial), so the answerer knows to wait rather than say NXDOMAIN.
 *
 * Readiness: nothing is published until the datacenter list, the local node and service lists and
 * (with `all`) every local service's health have arrived; until then DNS says SERVFAIL.
 *
 * Failures: a watch that fails keeps its last good data and the snapshot keeps serving. Whether
 * Consul itself is up is decided once for all watches by the liveness tracker (liveness.ts): it
 * probes only when something looks wrong, says "consul failing" and "consul recovered" once each,
 * holds the watches while Consul is down and lets them all go, spread over a moment, when it is
 * back (aborting what was left hanging). Other failures are logged once per change of their kind.
 *
 * This file owns the CatalogSource contract (start, reload, stop, want, touch) and the lifecycle
 * (the sweep's timer, `running`), composed of:
 * - datacenters.ts: the copy of the catalog per datacenter, which watches it needs, the idle sweep;
 * - watches.ts: the watch registry (Consul reads by key, the polled datacenter list, failure reports);
 * - liveness.ts: whether Consul is up (one probe, shared by every watch);
 * - waits.ts: questions waiting for something to load;
 * - publisher.ts: the sink, readiness, one snapshot per event-loop turn;
 * - queries.ts: prepared query executions, kept briefly (the `queries` capability).
 */

import type { Logger } from 'pino';
import { ConsulApiError, type ConsulApi } from './api.js';
import type { CatalogSink, CatalogSource } from '../source.js';
import type { MeshLookup } from '../types.js';
import { Datacenters } from './datacenters.js';
import { ConsulLiveness } from './liveness.js';
import { Publisher } from './publisher.js';
import { QueryCache } from './queries.js';
import { Waits } from './waits.js';
import { WatchRegistry, type WatchRegistryOptions } from './watches.js';

/** The watch registry's options (how reads are made and failures reported), and the source's own. */
export interface ConsulSourceOptions extends Omit<WatchRegistryOptions, 'readiness' | 'onChange' | 'liveness' | 'plainReadMs'> {
  api: ConsulApi;
  /** Describes where Consul is, for logs (never includes the token). */
  address: string;
  /** The local datacenter. */
  datacenter: string;
  watch?: 'auto' | 'all' | 'on-demand';
  watchAllLimit?: number;
  /** On-demand watches unused this long are dropped, ms. */
  watchIdleMs?: number;
  /** How often the list of datacenters is re-read, ms. */
  datacentersRefreshMs?: number;
  /** How long a prepared query's last result keeps serving while executions fail, ms. */
  queryMaxStaleMs?: number;
  /** Bound on one prepared query execution, ms; also how long a first read may take before Consul is probed (--fetch-timeout). */
  queryTimeoutMs?: number;
  /** --consul-heartbeat: the liveness probe's period while blocking reads wait (0 or absent: none). */
  heartbeatMs?: number;
  now?: () => number;
}

export class ConsulSource implements CatalogSource {
  readonly kind = 'consul';
  readonly description: string;
  /** Resolves at the first full sync. */
  readonly ready: Promise<void>;
  /** The same: the CatalogSource contract's name for it (--state-dir serves the persisted catalog until then). */
  get firstSync(): Promise<void> {
    return this.ready;
  }
  private readonly log: Logger;
  private readonly publisher: Publisher;
  private readonly watches: WatchRegistry;
  private readonly datacenters: Datacenters;
  private readonly waits: Waits;
  /** Whether Consul is up, shared by every watch (liveness.ts). */
  private readonly liveness: ConsulLiveness;
  /** Prepared query executions (`NAME.query.consul`), cached and refreshed while in use (queries.ts). */
  readonly queries: QueryCache;
  private sweepTimer: NodeJS.Timeout | null = null;
  private running = false;

  /** Whether Consul is taken to be up (its liveness probe answers, or none was needed), for metrics. */
  get consulUp(): boolean {
    return this.liveness.isUp;
  }

  /** Consul reads kept running, for metrics. */
  get watchCount(): number {
    return this.watches.size;
  }

  constructor(private readonly options: ConsulSourceOptions) {
    this.description = `consul ${options.address}`;
    this.log = options.log.child({ component: 'consul', consul: options.address });
    this.publisher = new Publisher({
      log: this.log,
      synced: () => this.datacenters.synced(),
      data: () => this.datacenters.data(),
      onPublished: () => this.waits.published(),
    });
    this.ready = this.publisher.ready;
    const api = options.api;
    this.liveness = new ConsulLiveness({
      // A live agent answers its leader's address; with no leader only stale reads work.
      probe: async (signal, timeoutMs) => {
        const leader = await api.leader({ signal, timeoutMs });
        if (leader === '' && !options.allowStale) throw new ConsulApiError('No cluster leader', 500);
      },
      diagnostics: options.diagnostics,
      log: this.log,
      address: options.address,
      serving: () => (this.publisher.isReady ? 'last good catalog' : 'SERVFAIL until the first sync'),
      random: options.random,
      now: options.now,
      heartbeatMs: options.heartbeatMs ?? 0,
    });
    this.watches = new WatchRegistry({
      log: this.log,
      diagnostics: options.diagnostics,
      allowStale: options.allowStale,
      maxStaleMs: options.maxStaleMs,
      waitMs: options.waitMs,
      plainReadMs: options.queryTimeoutMs ?? 2_000,
      liveness: this.liveness,
      backoff: options.backoff,
      hasToken: options.hasToken,
      random: options.random,
      readiness: this.publisher,
      onChange: () => this.publisher.schedule(),
    });
    this.datacenters = new Datacenters({
      api: options.api,
      datacenter: options.datacenter,
      log: this.log,
      now: options.now ?? Date.now,
      watch: options.watch,
      watchAllLimit: options.watchAllLimit,
      watchIdleMs: options.watchIdleMs,
      watches: this.watches,
      onChange: () => this.publisher.schedule(),
      onDropped: (dc) => this.waits.endDatacenter(dc),
    });
    this.waits = new Waits(this.datacenters, this.publisher);
    this.queries = new QueryCache({
      api: options.api,
      log: this.log,
      maxStaleMs: options.queryMaxStaleMs ?? 30_000,
      timeoutMs: options.queryTimeoutMs ?? 2_000,
      allowStale: options.allowStale,
      now: options.now,
    });
  }

  /** Starts the watches and returns at once; the first sync is `ready`. Consul may be down. */
  start(sink: CatalogSink): Promise<void> {
    this.publisher.sink = sink;
    this.running = true;
    this.datacenters.openLocal();
    this.watches.poll(
      'datacenters',
      (signal) => this.options.api.datacenters(signal),
      (list) => this.datacenters.setKnown(list),
      this.options.datacentersRefreshMs ?? 300_000,
    );
    const idle = this.datacenters.idleMs;
    this.sweepTimer = setInterval(() => this.datacenters.sweep(), Math.max(50, Math.min(idle / 4, 60_000)));
    this.sweepTimer.unref();
    this.log.info({ datacenter: this.options.datacenter, stale: this.options.allowStale, watch: this.options.watch ?? 'auto' }, 'watching consul');
    return Promise.resolve();
  }

  /** Re-reads everything now: every watch starts again from index 0. */
  async reload(): Promise<void> {
    const sink = this.publisher.sink;
    if (!sink) return;
    await this.halt();
    this.watches.forgetFailures();
    this.datacenters.reset();
    await this.start(sink);
  }

  async stop(): Promise<void> {
    this.publisher.sink = null;
    this.queries.stop();
    this.liveness.stop();
    await this.halt();
    this.waits.endAll();
  }

  private async halt(): Promise<void> {
    this.running = false;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    await this.watches.stopAll();
  }

  /** Loads what a question needs and resolves once a published snapshot has it (waits.ts). */
  async want(datacenter: string, service: string | null, lookup?: MeshLookup): Promise<void> {
    if (!this.running) throw new Error('consul source stopped');
    return this.waits.want(datacenter, service, lookup);
  }

  touch(datacenter: string, service: string, lookup?: MeshLookup): void {
    this.datacenters.touch(datacenter, service, lookup);
  }
}
