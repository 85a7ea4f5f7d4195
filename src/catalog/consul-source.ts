/**
 * Catalog source: a Consul datacenter, kept fresh with blocking-query watches.
 *
 * Watches (each a BlockingWatch): the node list, the service list, and one health watch per
 * service (`--watch all`). The service list starts and stops health watches as services come and
 * go. Every result lands in this source's copy of the catalog, and changes that arrive together are
 * published as one snapshot (coalesced over one event-loop turn).
 *
 * Readiness: nothing is published until the first full sync (node list, service list, and the
 * first health result of every listed service), so DNS says SERVFAIL rather than NXDOMAIN for a
 * service not fetched yet. `ready` resolves then.
 *
 * Failures: a watch that fails keeps its last good data; the snapshot keeps serving. The source
 * logs once when Consul starts failing and once when every watch has recovered, not per retry.
 * An ACL refusal (403) is logged as an error, since retrying will not fix it.
 */

import type { Logger } from 'pino';
import { BlockingWatch } from './blocking-watch.js';
import { ConsulApiError, type ConsulApi, type QueryMeta, type Result, type ServiceHealth } from './consul-api.js';
import type { CatalogSink, CatalogSource } from './source.js';
import type { NodeRecord, ServiceRecord } from './types.js';

export interface ConsulSourceOptions {
  api: ConsulApi;
  /** Describes where Consul is, for logs (never includes the token). */
  address: string;
  /** The local datacenter. */
  datacenter: string;
  log: Logger;
  /** Send `?stale` so any server answers (Consul's DNS default). */
  allowStale: boolean;
  /** A stale answer from a server that last heard from the leader longer ago is re-read consistently. */
  maxStaleMs: number;
  /** Blocking wait per call, ms. */
  waitMs: number;
  random?: () => number;
}

export class ConsulSource implements CatalogSource {
  readonly description: string;
  /** Resolves at the first full sync. */
  readonly ready: Promise<void>;
  private markReady!: () => void;
  private isReady = false;
  private sink: CatalogSink | null = null;
  private readonly log: Logger;
  private readonly watches = new Map<string, BlockingWatch<unknown>>();
  private readonly failing = new Set<string>();
  /** The failure last reported (null: healthy), so each change of state is logged once. */
  private loggedProblem: string | null = null;
  private nodes: NodeRecord[] | null = null;
  private serviceNames: string[] | null = null;
  private readonly health = new Map<string, ServiceHealth>();
  private publishScheduled = false;

  constructor(private readonly options: ConsulSourceOptions) {
    this.description = `consul ${options.address}`;
    this.log = options.log.child({ component: 'consul', consul: options.address });
    this.ready = new Promise((resolve) => (this.markReady = resolve));
  }

  /** Starts the watches and returns at once; the first sync is `ready`. Consul may be down. */
  start(sink: CatalogSink): Promise<void> {
    this.sink = sink;
    const dc = this.options.datacenter;
    this.watch<NodeRecord[]>(`nodes/${dc}`, (o) => this.options.api.nodes(o), (nodes) => {
      this.nodes = nodes;
    });
    this.watch<string[]>(`services/${dc}`, (o) => this.options.api.services(o), (names) => this.onServiceList(names));
    this.log.info({ datacenter: dc, stale: this.options.allowStale }, 'watching consul');
    return Promise.resolve();
  }

  /** Re-reads everything now: restarts every watch from index 0. */
  async reload(): Promise<void> {
    const sink = this.sink;
    if (!sink) return;
    await this.stopWatches();
    this.failing.clear();
    this.loggedProblem = null;
    await this.start(sink);
  }

  async stop(): Promise<void> {
    this.sink = null;
    await this.stopWatches();
  }

  private async stopWatches(): Promise<void> {
    const all = [...this.watches.values()];
    this.watches.clear();
    await Promise.all(all.map((w) => w.stop()));
  }

  private onServiceList(names: string[]): void {
    this.serviceNames = names;
    const dc = this.options.datacenter;
    const wanted = new Set(names);
    for (const [key, watch] of this.watches) {
      const name = key.startsWith(`health/${dc}/`) ? key.slice(`health/${dc}/`.length) : null;
      if (name !== null && !wanted.has(name)) {
        this.watches.delete(key);
        this.failing.delete(key);
        this.health.delete(name);
        void watch.stop();
      }
    }
    for (const name of names) {
      const key = `health/${dc}/${name}`;
      if (this.watches.has(key)) continue;
      this.watch<ServiceHealth>(key, (o) => this.options.api.health(name, o), (h) => {
        this.health.set(name, h);
      });
    }
  }

  /**
   * Starts a blocking watch whose results go through `apply` and then trigger a publish. Stale
   * reads that are too stale (X-Consul-LastContact above --max-stale) are read again consistently.
   */
  private watch<T>(key: string, read: (o: { dc: string; index: bigint; waitMs: number; stale: boolean; signal: AbortSignal }) => Promise<Result<T>>, apply: (data: T) => void): void {
    const { allowStale, maxStaleMs, waitMs, datacenter: dc } = this.options;
    const watch = new BlockingWatch<T>({
      waitMs,
      random: this.options.random,
      fetch: async (index, signal) => {
        let result = await read({ dc, index, waitMs, stale: allowStale, signal });
        if (allowStale && tooStale(result.meta, maxStaleMs)) {
          this.log.debug({ watch: key, lastContactMs: result.meta.lastContactMs }, 'stale answer too old; reading from the leader');
          result = await read({ dc, index: 0n, waitMs, stale: false, signal });
        }
        return { data: result.data, index: result.meta.index };
      },
      onData: (data) => {
        if (!this.watches.has(key)) return;
        apply(data);
        this.schedulePublish();
      },
      onError: (err, failures) => this.onWatchError(key, err, failures),
      onRecover: () => this.onWatchRecover(key),
    });
    this.watches.set(key, watch);
    watch.start();
  }

  /**
   * Logs when the kind of failure changes (healthy -> unreachable, unreachable -> ACL refused, ...),
   * not per watch or per retry: an outage is one line however many watches are retrying.
   */
  private onWatchError(key: string, err: unknown, failures: number): void {
    const status = err instanceof ConsulApiError ? err.status : 0;
    const message = err instanceof Error ? err.message : String(err);
    this.failing.add(key);
    const problem = status === 0 ? 'unreachable' : `${status} ${message}`;
    if (problem === this.loggedProblem) {
      this.log.debug({ watch: key, status, error: message, failures }, 'consul watch still failing');
      return;
    }
    this.loggedProblem = problem;
    const fields = { watch: key, status, error: message, serving: this.isReady ? 'last good catalog' : 'SERVFAIL until the first sync' };
    if (status === 403) this.log.error(fields, 'consul refused the ACL token; check --consul-token');
    else this.log.warn(fields, 'consul watch failing; retrying with backoff');
  }

  private onWatchRecover(key: string): void {
    this.failing.delete(key);
    if (this.failing.size === 0 && this.loggedProblem !== null) {
      this.loggedProblem = null;
      this.log.info({ watch: key }, 'consul watches recovered');
    }
  }

  private schedulePublish(): void {
    if (this.publishScheduled) return;
    this.publishScheduled = true;
    setImmediate(() => {
      this.publishScheduled = false;
      this.publish();
    });
  }

  /** Publishes the catalog once every part has arrived at least once. */
  private publish(): void {
    const sink = this.sink;
    if (!sink || this.nodes === null || this.serviceNames === null) return;
    if (!this.serviceNames.every((n) => this.health.has(n))) return;

    const nodes = new Map<string, NodeRecord>();
    for (const n of this.nodes) nodes.set(n.name, n);
    const services: ServiceRecord[] = [];
    for (const name of this.serviceNames) {
      const h = this.health.get(name)!;
      // A node can appear in a health result before the node watch has seen it.
      for (const n of h.nodes) if (!nodes.has(n.name)) nodes.set(n.name, n);
      services.push(...h.instances);
    }
    const data = { nodes: [...nodes.values()], services };
    try {
      sink.replace(data);
    } catch (err) {
      // Entries the catalog cannot serve (e.g. a hostname as address) are reported, not fatal.
      this.log.warn({ err }, 'consul catalog not published');
      return;
    }
    if (!this.isReady) {
      this.isReady = true;
      this.log.info({ nodes: data.nodes.length, instances: services.length, services: this.serviceNames.length }, 'consul catalog synced; ready');
      this.markReady();
    }
  }
}

function tooStale(meta: QueryMeta, maxStaleMs: number): boolean {
  return meta.lastContactMs > maxStaleMs;
}
