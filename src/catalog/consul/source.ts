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
import { BlockingWatch, RETRY_BACKOFF } from './blocking-watch.js';
import { Limiter, Pacer, backoffDelay, untilOrAborted } from '../../util/pacing.js';
import { ConsulApiError, type ConsulApi, type QueryMeta, type Result, type ServiceHealth } from './api.js';
import type { CatalogSink, CatalogSource } from '../source.js';
import type { CatalogData, NodeRecord, ServiceRecord } from '../types.js';
import { Publisher } from './publisher.js';

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
  private readonly watches = new Map<string, BlockingWatch<unknown>>();
  private readonly dcs = new Map<string, DcState>();
  private datacenters: string[] | null = null;
  /** Whether every local service is watched; decided when the local service list first arrives. */
  private watchAllLocal: boolean | null = null;
  /** Keyed `list/DC/`, `nodes/DC/`, `health/DC/service`: at most one per real catalog entry. */
  private readonly waits = new Map<string, Wait>();
  private readonly firstReads = new Limiter(FIRST_READS_IN_FLIGHT);
  private readonly rearms = new Pacer(REARMS_PER_TURN);
  private timers: NodeJS.Timeout[] = [];
  private running = false;
  private warnedAnonymous = false;

  constructor(private readonly options: ConsulSourceOptions) {
    this.description = `consul ${options.address}`;
    this.log = options.log.child({ component: 'consul', consul: options.address });
    this.now = options.now ?? Date.now;
    this.publisher = new Publisher({ log: this.log, synced: () => this.synced(), data: () => this.catalogData(), onPublished: () => this.wakeWaits() });
    this.ready = this.publisher.ready;
  }

  /** Starts the watches and returns at once; the first sync is `ready`. Consul may be down. */
  start(sink: CatalogSink): Promise<void> {
    this.publisher.sink = sink;
    this.running = true;
    this.openDc(this.options.datacenter.toLowerCase());
    void this.refreshDatacenters();
    const idle = this.options.watchIdleMs ?? 600_000;
    const sweep = setInterval(() => this.sweep(), Math.max(50, Math.min(idle / 4, 60_000)));
    sweep.unref();
    this.timers.push(sweep);
    this.log.info({ datacenter: this.options.datacenter, stale: this.options.allowStale, watch: this.options.watch ?? 'auto' }, 'watching consul');
    return Promise.resolve();
  }

  /** Re-reads everything now: every watch starts again from index 0. */
  async reload(): Promise<void> {
    const sink = this.publisher.sink;
    if (!sink) return;
    await this.halt();
    this.options.diagnostics.state.publish({ key: STATE_KEY, subject: '', problem: null, forget: true, log: this.log });
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
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    const all = [...this.watches.values()];
    this.watches.clear();
    await Promise.all(all.map((w) => w.stop()));
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
    this.watch<NodeRecord[]>(`nodes/${dc}`, dc, (o) => this.options.api.nodes(o), (nodes) => {
      state.nodes = nodes;
    });
    this.watch<string[]>(`services/${dc}`, dc, (o) => this.options.api.services(o), (names) => this.onServiceList(state, names));
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
    this.watch<ServiceHealth>(watchKey, state.name, (o) => this.options.api.health(name, o), (h) => {
      state.health.set(key, h);
    });
  }

  /** Stops and forgets the watch under `key`, if any (its failures no longer count). */
  private stopWatch(key: string): void {
    const watch = this.watches.get(key);
    this.watches.delete(key);
    if (watch) {
      this.options.diagnostics.state.publish({ key: STATE_KEY, subject: key, problem: null, log: this.log });
      void watch.stop();
    }
  }

  private dropService(state: DcState, key: string): void {
    this.stopWatch(`health/${state.name}/${key}`);
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
        this.stopWatch(`nodes/${state.name}`);
        this.stopWatch(`services/${state.name}`);
        this.dcs.delete(state.name);
        for (const kind of ['list', 'nodes', 'health']) this.endWaits(`${kind}/${state.name}/`);
        this.log.debug({ datacenter: state.name }, 'idle datacenter dropped');
        changed = true;
      }
    }
    if (changed) this.publisher.schedule();
  }

  /** Reads the list of datacenters now and every few minutes (it cannot be watched). */
  private async refreshDatacenters(failures = 0): Promise<void> {
    if (!this.running) return;
    let delay = this.options.datacentersRefreshMs ?? 300_000;
    try {
      const list = await this.options.api.datacenters();
      if (!this.running) return;
      if (failures > 0) this.onWatchRecover('datacenters');
      this.datacenters = list.map((d) => d.toLowerCase());
      failures = 0;
      this.publisher.schedule();
    } catch (err) {
      if (!this.running) return;
      failures++;
      this.onWatchError('datacenters', err, failures);
      delay = backoffDelay(failures, RETRY_BACKOFF, (this.options.random ?? Math.random)());
    }
    const timer = setTimeout(() => void this.refreshDatacenters(failures), delay);
    timer.unref();
    this.timers.push(timer);
  }

  /**
   * Starts a blocking watch whose results go through `apply` and then trigger a publish. Stale
   * reads that are too stale (X-Consul-LastContact above --max-stale) are read again consistently.
   */
  private watch<T>(
    key: string,
    dc: string,
    read: (o: { dc: string; index: bigint; waitMs: number; stale: boolean; signal: AbortSignal }) => Promise<Result<T>>,
    apply: (data: T) => void,
  ): void {
    const { allowStale, maxStaleMs, waitMs } = this.options;
    const watch = new BlockingWatch<T>({
      waitMs,
      random: this.options.random,
      fetch: async (index, signal) => {
        let result: Result<T>;
        if (index === 0n) {
          // First reads answer at once: bounded in number, so that 5,000 of them at start do not
          // all hold a connection, a response and its parsed body at the same moment.
          result = await this.firstReads.run(() => read({ dc, index, waitMs, stale: allowStale, signal }));
        } else {
          // Until the first sync, the first reads go first: a blocking read asked later still
          // returns at once whatever changed since its index, so nothing is missed.
          // Then they start a few at a time, so that questions are answered in between: 5,000
          // requests started at once would hold the event loop for seconds.
          if (!this.publisher.isReady) {
            await untilOrAborted(this.ready, signal);
            await this.rearms.turn();
          }
          if (signal.aborted) throw new ConsulApiError('request cancelled', 0);
          result = await read({ dc, index, waitMs, stale: allowStale, signal });
        }
        if (allowStale && tooStale(result.meta, maxStaleMs)) {
          this.log.debug({ watch: key, lastContactMs: result.meta.lastContactMs }, 'stale answer too old; reading from the leader');
          result = await read({ dc, index: 0n, waitMs, stale: false, signal });
        }
        if (result.meta.defaultAclPolicy === 'deny' && !this.options.hasToken && !this.warnedAnonymous) {
          // Consul does not refuse a request without a token: it filters it down to what the
          // anonymous token may read, often nothing. Say so, or an empty catalog is a mystery.
          this.warnedAnonymous = true;
          this.log.warn('consul denies by default and svcdns has no ACL token: only what the anonymous token may read is served; set --consul-token');
        }
        return { data: result.data, index: result.meta.index };
      },
      onData: (data) => {
        if (this.watches.get(key) !== watch) return;
        apply(data);
        this.publisher.schedule();
      },
      onError: (err, failures) => {
        if (this.watches.get(key) === watch) this.onWatchError(key, err, failures);
      },
      onRecover: () => this.onWatchRecover(key),
    });
    this.watches.set(key, watch);
    watch.start();
  }

  /**
   * Reported on every failure; the state logger logs when the kind of failure changes (healthy ->
   * unreachable, unreachable -> ACL refused, ...), not per watch or per retry: an outage is one
   * line however many watches are retrying.
   */
  private onWatchError(key: string, err: unknown, failures: number): void {
    const status = err instanceof ConsulApiError ? err.status : 0;
    const message = err instanceof Error ? err.message : String(err);
    this.options.diagnostics.state.publish({
      key: STATE_KEY,
      subject: key,
      problem: status === 0 ? 'unreachable' : `${status} ${message}`,
      level: status === 403 ? 'error' : 'warn',
      message: status === 403 ? 'consul refused the ACL token; check --consul-token' : 'consul watch failing; retrying with backoff',
      repeat: 'consul watch still failing',
      fields: { watch: key, status, error: message, failures, serving: this.publisher.isReady ? 'last good catalog' : 'SERVFAIL until the first sync' },
      log: this.log,
    });
  }

  private onWatchRecover(key: string): void {
    this.options.diagnostics.state.publish({ key: STATE_KEY, subject: key, problem: null, message: 'consul watches recovered', fields: { watch: key }, log: this.log });
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

/** Blocking reads started per event-loop turn after the first sync. */
const REARMS_PER_TURN = 16;

/** What the state logger knows Consul's watches by. */
const STATE_KEY = 'consul';

/** Non-blocking reads (index 0) in flight at once; blocking ones are not limited (they park). */
const FIRST_READS_IN_FLIGHT = 32;

function tooStale(meta: QueryMeta, maxStaleMs: number): boolean {
  return meta.lastContactMs > maxStaleMs;
}
