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
 * Failures: a watch that fails keeps its last good data and the snapshot keeps serving. Each change
 * in the kind of failure is logged once (not per watch or retry), and recovery once.
 */

import type { Logger } from 'pino';
import type { Diagnostics } from '../../diagnostics/channels.js';
import type { ConsulApi, ServiceHealth } from './api.js';
import type { CatalogSink, CatalogSource } from '../source.js';
import type { CatalogData, NodeRecord, ServiceRecord } from '../types.js';
import { Publisher } from './publisher.js';
import { WatchRegistry } from './watches.js';

export interface ConsulSourceOptions {
  api: ConsulApi;
  /** Describes where Consul is, for logs (never includes the token). */
  address: string;
  /** The local datacenter. */
  datacenter: string;
  log: Logger;
  /** Watch failures and recoveries are reported here (`state`), and logged by its subscriber. */
  diagnostics: Diagnostics;
  /** Send `?stale` so any server answers (Consul's DNS default). */
  allowStale: boolean;
  /** A stale answer from a server that last heard from the leader longer ago is re-read consistently. */
  maxStaleMs: number;
  /** Blocking wait per call, ms. */
  waitMs: number;
  /** Whether an ACL token is sent (to explain an empty catalog under a default-deny policy). */
  hasToken?: boolean;
  watch?: 'auto' | 'all' | 'on-demand';
  watchAllLimit?: number;
  /** On-demand watches unused this long are dropped, ms. */
  watchIdleMs?: number;
  /** How often the list of datacenters is re-read, ms. */
  datacentersRefreshMs?: number;
  random?: () => number;
  now?: () => number;
}

interface DcState {
  readonly name: string;
  readonly local: boolean;
  /** null until the node list has arrived. */
  nodes: NodeRecord[] | null;
  /**
   * null until the service list has arrived. Keyed by the lower-cased name (DNS and Consul's catalog
   * match names case-insensitively), valued with Consul's own spelling, used in API calls.
   * `health` and `lastUsed` use the same lower-cased keys.
   */
  serviceNames: Map<string, string> | null;
  /** Services whose instances are loaded. */
  readonly health: Map<string, ServiceHealth>;
  /** On-demand services: when each was last used (first asked for, while not loaded yet). */
  readonly lastUsed: Map<string, number>;
  /** When a name in this datacenter was last asked for (remote datacenters are dropped when idle). */
  lastUsedDc: number;
}

/** Questions waiting for one thing to load share one Wait, so waits are bounded by the catalog. */
interface Wait {
  promise: Promise<void>;
  done: () => boolean;
  resolve: () => void;
}

export class ConsulSource implements CatalogSource {
  readonly description: string;
  /** Resolves at the first full sync. */
  readonly ready: Promise<void>;
  private readonly publisher: Publisher;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly watches: WatchRegistry;
  private readonly dcs = new Map<string, DcState>();
  private datacenters: string[] | null = null;
  /** Whether every local service is watched; decided when the local service list first arrives. */
  private watchAllLocal: boolean | null = null;
  /** Keyed `list/DC/`, `nodes/DC/`, `health/DC/service`: at most one per real catalog entry. */
  private readonly waits = new Map<string, Wait>();
  private sweepTimer: NodeJS.Timeout | null = null;
  private running = false;

  constructor(private readonly options: ConsulSourceOptions) {
    this.description = `consul ${options.address}`;
    this.log = options.log.child({ component: 'consul', consul: options.address });
    this.now = options.now ?? Date.now;
    this.publisher = new Publisher({ log: this.log, synced: () => this.synced(), data: () => this.catalogData(), onPublished: () => this.wakeWaits() });
    this.ready = this.publisher.ready;
    this.watches = new WatchRegistry({
      log: this.log,
      diagnostics: options.diagnostics,
      allowStale: options.allowStale,
      maxStaleMs: options.maxStaleMs,
      waitMs: options.waitMs,
      hasToken: options.hasToken,
      random: options.random,
      readiness: this.publisher,
      onChange: () => this.publisher.schedule(),
    });
  }

  /** Starts the watches and returns at once; the first sync is `ready`. Consul may be down. */
  start(sink: CatalogSink): Promise<void> {
    this.publisher.sink = sink;
    this.running = true;
    this.openDc(this.options.datacenter.toLowerCase());
    this.watches.poll(
      'datacenters',
      () => this.options.api.datacenters(),
      (list) => (this.datacenters = list.map((d) => d.toLowerCase())),
      this.options.datacentersRefreshMs ?? 300_000,
    );
    const idle = this.options.watchIdleMs ?? 600_000;
    this.sweepTimer = setInterval(() => this.sweep(), Math.max(50, Math.min(idle / 4, 60_000)));
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
    this.watchAllLocal = null;
    this.dcs.clear();
    await this.start(sink);
  }

  async stop(): Promise<void> {
    this.publisher.sink = null;
    await this.halt();
    for (const w of this.waits.values()) w.resolve();
    this.waits.clear();
  }

  private async halt(): Promise<void> {
    this.running = false;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    await this.watches.stopAll();
  }

  /**
   * Loads what a question needs: the datacenter's node list (`service` null), or its service list
   * and then, if the service is in it, the service. A health watch starts only for a service the
   * list confirms, so made-up names cost nothing but the list.
   */
  async want(datacenter: string, service: string | null): Promise<void> {
    if (!this.running) throw new Error('consul source stopped');
    const dc = datacenter.toLowerCase();
    const state = this.dcs.get(dc) ?? this.openDc(dc);
    state.lastUsedDc = this.now();
    if (service === null) return this.waitFor(`nodes/${dc}/`, () => state.nodes !== null);
    await this.waitFor(`list/${dc}/`, () => state.serviceNames !== null);
    const key = service.toLowerCase();
    // Not in the list: it does not exist (the wait covers a publish still to come with that list).
    if (!state.serviceNames?.has(key)) return this.waitFor(`list/${dc}/`, () => state.serviceNames !== null);
    state.lastUsed.set(key, this.now());
    this.watchHealth(state, key);
    return this.waitFor(`health/${dc}/${key}`, () => state.health.has(key) || !state.serviceNames?.has(key));
  }

  /** Ends the waits whose key starts with `prefix` (what they wait for was dropped): they re-ask. */
  private endWaits(prefix: string): void {
    for (const [key, w] of this.waits) {
      if (!key.startsWith(prefix)) continue;
      this.waits.delete(key);
      w.resolve();
    }
  }

  /**
   * Resolves when `done()` holds in a published snapshot; one shared wait per key. A change not
   * published yet (a publish is scheduled) waits for that publish, so the question is answered
   * again from a snapshot that has it.
   */
  private waitFor(key: string, done: () => boolean): Promise<void> {
    if (this.publisher.isReady && done() && !this.publisher.scheduled) return Promise.resolve();
    let wait = this.waits.get(key);
    if (!wait) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      wait = { promise, done, resolve };
      this.waits.set(key, wait);
      this.publisher.schedule();
    }
    return wait.promise;
  }

  touch(datacenter: string, service: string): void {
    const state = this.dcs.get(datacenter.toLowerCase());
    if (!state) return;
    state.lastUsedDc = this.now();
    const key = service.toLowerCase();
    if (state.lastUsed.has(key)) state.lastUsed.set(key, this.now());
  }

  private openDc(dc: string): DcState {
    const state: DcState = {
      name: dc,
      local: dc === this.options.datacenter.toLowerCase(),
      nodes: null,
      serviceNames: null,
      health: new Map(),
      lastUsed: new Map(),
      lastUsedDc: this.now(),
    };
    this.dcs.set(dc, state);
    this.watches.watch<NodeRecord[]>(`nodes/${dc}`, dc, (o) => this.options.api.nodes(o), (nodes) => {
      state.nodes = nodes;
    });
    this.watches.watch<string[]>(`services/${dc}`, dc, (o) => this.options.api.services(o), (names) => this.onServiceList(state, names));
    return state;
  }

  private onServiceList(state: DcState, names: string[]): void {
    state.serviceNames = new Map(names.map((n) => [n.toLowerCase(), n]));
    if (state.local && this.watchAllLocal === null) {
      const mode = this.options.watch ?? 'auto';
      const limit = this.options.watchAllLimit ?? 500;
      this.watchAllLocal = mode === 'all' || (mode === 'auto' && names.length <= limit);
      this.log.info({ services: names.length, limit, mode: this.watchAllLocal ? 'all' : 'on-demand' }, 'consul watch mode chosen');
    }
    for (const key of [...state.health.keys(), ...state.lastUsed.keys()]) {
      if (!state.serviceNames.has(key)) this.dropService(state, key);
    }
    if (state.local && this.watchAllLocal) for (const key of state.serviceNames.keys()) this.watchHealth(state, key);
    // Services asked for before the list arrived: watch those that exist.
    for (const key of state.lastUsed.keys()) this.watchHealth(state, key);
  }

  /** Starts the health watch of a service, by its lower-cased name. */
  private watchHealth(state: DcState, key: string): void {
    const watchKey = `health/${state.name}/${key}`;
    if (this.watches.has(watchKey)) return;
    // Only services the datacenter's service list has: a name it lacks does not exist.
    const name = state.serviceNames?.get(key);
    if (name === undefined) return;
    this.watches.watch<ServiceHealth>(watchKey, state.name, (o) => this.options.api.health(name, o), (h) => {
      state.health.set(key, h);
    });
  }

  private dropService(state: DcState, key: string): void {
    this.watches.stop(`health/${state.name}/${key}`);
    state.health.delete(key);
    state.lastUsed.delete(key);
    // A wait on this service ends at the next publish if the service left the list; if it was
    // only idle, a later want() restarts the watch and the same wait ends when it loads.
  }

  /** Drops on-demand watches unused for --watch-idle, and remote datacenters nobody asks about. */
  private sweep(): void {
    const idle = this.options.watchIdleMs ?? 600_000;
    const cutoff = this.now() - idle;
    let changed = false;
    for (const state of [...this.dcs.values()]) {
      for (const [service, used] of state.lastUsed) {
        if (used >= cutoff || (state.local && this.watchAllLocal)) continue;
        // A first fetch still under way (a question may be waiting for it) gets twice as long.
        if (!state.health.has(service) && used >= cutoff - idle) continue;
        this.dropService(state, service);
        this.log.debug({ datacenter: state.name, service }, 'idle on-demand watch dropped');
        changed = true;
      }
      if (!state.local && state.lastUsed.size === 0 && state.lastUsedDc < cutoff) {
        this.watches.stop(`nodes/${state.name}`);
        this.watches.stop(`services/${state.name}`);
        this.dcs.delete(state.name);
        for (const kind of ['list', 'nodes', 'health']) this.endWaits(`${kind}/${state.name}/`);
        this.log.debug({ datacenter: state.name }, 'idle datacenter dropped');
        changed = true;
      }
    }
    if (changed) this.publisher.schedule();
  }

  private synced(): boolean {
    const local = this.dcs.get(this.options.datacenter.toLowerCase());
    if (!local || this.datacenters === null || local.nodes === null || local.serviceNames === null) return false;
    return !this.watchAllLocal || [...local.serviceNames.keys()].every((k) => local.health.has(k));
  }

  /** The catalog as loaded now: every datacenter's nodes and loaded services, and what is not loaded yet. */
  private catalogData(): Required<CatalogData> {
    const nodes = new Map<string, NodeRecord>();
    const services: ServiceRecord[] = [];
    const pending: { datacenter: string; name: string }[] = [];
    for (const state of this.dcs.values()) {
      for (const n of state.nodes ?? []) nodes.set(`${state.name}/${n.name}`, n);
      for (const h of state.health.values()) {
        // A node can appear in a health result before the node watch has seen it.
        for (const n of h.nodes) if (!nodes.has(`${state.name}/${n.name}`)) nodes.set(`${state.name}/${n.name}`, n);
        services.push(...h.instances);
      }
      for (const [key, name] of state.serviceNames ?? []) if (!state.health.has(key)) pending.push({ datacenter: state.name, name });
    }
    const dcs = [...this.dcs.values()];
    return {
      nodes: [...nodes.values()],
      services,
      partial: {
        datacenters: [...new Set([...(this.datacenters ?? []), ...this.dcs.keys()])],
        serviceListsKnown: dcs.filter((s) => s.serviceNames !== null).map((s) => s.name),
        nodeListsKnown: dcs.filter((s) => s.nodes !== null).map((s) => s.name),
        pending,
      },
    };
  }

  /** After a publish: the questions whose wait is over go on. */
  private wakeWaits(): void {
    for (const [key, w] of this.waits) {
      if (!w.done()) continue;
      this.waits.delete(key);
      w.resolve();
    }
  }
}
