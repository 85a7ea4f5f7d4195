/**
 * The Consul source's copy of the catalog, per datacenter, and which watches it needs.
 *
 * Per datacenter: its node list, its service list (which services exist), the health of the
 * services loaded, and when each was last used. Plus the list of datacenters that exist.
 * - A datacenter is opened (its node and service lists watched) at start for the local one, on its
 *   first question for another (`use`).
 * - A service's health is watched when the local datacenter is watched whole (`--watch all`, or
 *   `auto` under --watch-all-limit services, decided when the local service list first arrives),
 *   or from its first question (`useService`), and only if the service list has it.
 * - A service's mesh views (`connect`, `ingress`: its endpoints, from /v1/health/connect|ingress)
 *   are watched from their first question only (`useMesh`), whatever --watch says, and only if
 *   the service list has the service; idle ones are swept like on-demand services.
 * - A service that leaves the list is dropped at once (its mesh views too); the idle sweep drops
 *   on-demand services and mesh views unused for --watch-idle, and remote datacenters nobody asks
 *   about (`onDropped`: their waits end).
 * - `synced()` says whether the first snapshot can go out; `data()` is the catalog to publish,
 *   with what exists but is not loaded yet (CatalogData.partial).
 *
 * Running the watches is the registry's job (watches.ts); waiting for data, waits.ts's.
 */

import type { Logger } from 'pino';
import type { ConsulApi, MeshHealth, ServiceHealth } from './api.js';
import type { ConsulConfig } from './config.js';
import type { CatalogData, MeshEntry, MeshLookup, NodeRecord, ServiceRecord } from '../types.js';
import type { WatchRegistry } from './watches.js';

export interface DcState {
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
  /** Mesh views loaded, keyed `LOOKUP/service` (`connect/web`, the service lower-cased). */
  readonly mesh: Map<string, MeshHealth>;
  /** Mesh views asked for: when each was last used. Same keys as `mesh`. */
  readonly meshLastUsed: Map<string, number>;
  /** When a name in this datacenter was last asked for (remote datacenters are dropped when idle). */
  lastUsedDc: number;
}

export interface DatacentersOptions {
  api: ConsulApi;
  /** The local datacenter. */
  datacenter: string;
  log: Logger;
  now: () => number;
  /** Which local services are watched (default auto). */
  watch?: ConsulConfig['watch'];
  /** With `auto`: all, up to this many local services (default 500). */
  watchAllLimit?: number;
  /** On-demand watches unused this long are dropped, ms. */
  watchIdleMs?: number;
  /** Runs the watches this decides on. */
  watches: WatchRegistry;
  /** The sweep dropped something: publish. */
  onChange(): void;
  /** The sweep dropped datacenter `dc` (lower-cased). */
  onDropped(dc: string): void;
}

export class Datacenters {
  private readonly dcs = new Map<string, DcState>();
  /** Every datacenter that exists (lower-cased); null until the list has arrived. */
  private known: string[] | null = null;
  /** Whether every local service is watched; decided when the local service list first arrives. */
  private watchAllLocal: boolean | null = null;

  constructor(private readonly options: DatacentersOptions) {}

  /** On-demand watches and remote datacenters unused this long are dropped, ms. */
  get idleMs(): number {
    return this.options.watchIdleMs ?? 600_000;
  }

  /** Opens the local datacenter (at start). */
  openLocal(): void {
    this.open(this.options.datacenter.toLowerCase());
  }

  /** The state of datacenter `dc` (lower-cased), opened if it was not; marked used now. */
  use(dc: string): DcState {
    const state = this.dcs.get(dc) ?? this.open(dc);
    state.lastUsedDc = this.options.now();
    return state;
  }

  /** Service `key` (lower-cased, in the service list) was asked for: marked used, its health watched. */
  useService(state: DcState, key: string): void {
    state.lastUsed.set(key, this.options.now());
    this.watchHealth(state, key);
  }

  /** A mesh view of service `key` (lower-cased, in the service list) was asked for: marked used, watched. */
  useMesh(state: DcState, lookup: MeshLookup, key: string): void {
    state.meshLastUsed.set(`${lookup}/${key}`, this.options.now());
    this.watchMesh(state, lookup, key);
  }

  /** A loaded service (or mesh view) was just used: keeps its datacenter and its on-demand watch alive. */
  touch(datacenter: string, service: string, lookup?: MeshLookup): void {
    const state = this.dcs.get(datacenter.toLowerCase());
    if (!state) return;
    state.lastUsedDc = this.options.now();
    const key = service.toLowerCase();
    const used = lookup ? state.meshLastUsed : state.lastUsed;
    const k = lookup ? `${lookup}/${key}` : key;
    if (used.has(k)) used.set(k, this.options.now());
  }

  /** The list of datacenters that exist, as read from Consul. */
  setKnown(list: string[]): void {
    this.known = list.map((d) => d.toLowerCase());
  }

  /** Forgets every datacenter and the watch mode (a reload; the watches are already stopped). */
  reset(): void {
    this.watchAllLocal = null;
    this.dcs.clear();
  }

  private open(dc: string): DcState {
    const state: DcState = {
      name: dc,
      local: dc === this.options.datacenter.toLowerCase(),
      nodes: null,
      serviceNames: null,
      health: new Map(),
      lastUsed: new Map(),
      mesh: new Map(),
      meshLastUsed: new Map(),
      lastUsedDc: this.options.now(),
    };
    this.dcs.set(dc, state);
    this.options.watches.watch<NodeRecord[]>(`nodes/${dc}`, dc, (o) => this.options.api.nodes(o), (nodes) => {
      state.nodes = nodes;
    });
    this.options.watches.watch<string[]>(`services/${dc}`, dc, (o) => this.options.api.services(o), (names) => this.onServiceList(state, names));
    return state;
  }

  private onServiceList(state: DcState, names: string[]): void {
    state.serviceNames = new Map(names.map((n) => [n.toLowerCase(), n]));
    if (state.local && this.watchAllLocal === null) {
      const mode = this.options.watch ?? 'auto';
      const limit = this.options.watchAllLimit ?? 500;
      this.watchAllLocal = mode === 'all' || (mode === 'auto' && names.length <= limit);
      this.options.log.info({ services: names.length, limit, mode: this.watchAllLocal ? 'all' : 'on-demand' }, 'consul watch mode chosen');
    }
    for (const key of [...state.health.keys(), ...state.lastUsed.keys()]) {
      if (!state.serviceNames.has(key)) this.dropService(state, key);
    }
    for (const mk of [...state.mesh.keys(), ...state.meshLastUsed.keys()]) {
      if (!state.serviceNames.has(meshService(mk))) this.dropMesh(state, mk);
    }
    if (state.local && this.watchAllLocal) for (const key of state.serviceNames.keys()) this.watchHealth(state, key);
    // Services asked for before the list arrived: watch those that exist.
    for (const key of state.lastUsed.keys()) this.watchHealth(state, key);
    for (const mk of state.meshLastUsed.keys()) this.watchMesh(state, meshLookup(mk), meshService(mk));
  }

  /** Starts the watch of a service's mesh view, by the service's lower-cased name. */
  private watchMesh(state: DcState, lookup: MeshLookup, key: string): void {
    const watchKey = `${lookup}/${state.name}/${key}`;
    if (this.options.watches.has(watchKey)) return;
    const name = state.serviceNames?.get(key);
    if (name === undefined) return;
    this.options.watches.watch<MeshHealth>(watchKey, state.name, (o) => this.options.api.mesh(lookup, name, o), (h) => {
      state.mesh.set(`${lookup}/${key}`, h);
    });
  }

  /** `mk`: a mesh key, `LOOKUP/service`. */
  private dropMesh(state: DcState, mk: string): void {
    this.options.watches.stop(`${meshLookup(mk)}/${state.name}/${meshService(mk)}`);
    state.mesh.delete(mk);
    state.meshLastUsed.delete(mk);
  }

  /** Starts the health watch of a service, by its lower-cased name. */
  private watchHealth(state: DcState, key: string): void {
    const watchKey = `health/${state.name}/${key}`;
    if (this.options.watches.has(watchKey)) return;
    // Only services the datacenter's service list has: a name it lacks does not exist.
    const name = state.serviceNames?.get(key);
    if (name === undefined) return;
    this.options.watches.watch<ServiceHealth>(watchKey, state.name, (o) => this.options.api.health(name, o), (h) => {
      state.health.set(key, h);
    });
  }

  private dropService(state: DcState, key: string): void {
    this.options.watches.stop(`health/${state.name}/${key}`);
    state.health.delete(key);
    state.lastUsed.delete(key);
    // A wait on this service ends at the next publish if the service left the list; if it was
    // only idle, a later want() restarts the watch and the same wait ends when it loads.
  }

  /** Drops on-demand watches unused for --watch-idle, and remote datacenters nobody asks about. */
  sweep(): void {
    const idle = this.idleMs;
    const cutoff = this.options.now() - idle;
    let changed = false;
    for (const state of [...this.dcs.values()]) {
      for (const [service, used] of state.lastUsed) {
        if (used >= cutoff || (state.local && this.watchAllLocal)) continue;
        // A first fetch still under way (a question may be waiting for it) gets twice as long.
        if (!state.health.has(service) && used >= cutoff - idle) continue;
        this.dropService(state, service);
        this.options.log.debug({ datacenter: state.name, service }, 'idle on-demand watch dropped');
        changed = true;
      }
      // Mesh views are on demand even when every local service is watched.
      for (const [mk, used] of state.meshLastUsed) {
        if (used >= cutoff || (!state.mesh.has(mk) && used >= cutoff - idle)) continue;
        this.dropMesh(state, mk);
        this.options.log.debug({ datacenter: state.name, service: meshService(mk), lookup: meshLookup(mk) }, 'idle on-demand watch dropped');
        changed = true;
      }
      if (!state.local && state.lastUsed.size === 0 && state.meshLastUsed.size === 0 && state.lastUsedDc < cutoff) {
        this.options.watches.stop(`nodes/${state.name}`);
        this.options.watches.stop(`services/${state.name}`);
        this.dcs.delete(state.name);
        this.options.onDropped(state.name);
        this.options.log.debug({ datacenter: state.name }, 'idle datacenter dropped');
        changed = true;
      }
    }
    if (changed) this.options.onChange();
  }

  /**
   * Whether the first snapshot can go out: the list of datacenters, the local node and service
   * lists and (watching all) every local service's health have arrived.
   */
  synced(): boolean {
    const local = this.dcs.get(this.options.datacenter.toLowerCase());
    if (!local || this.known === null || local.nodes === null || local.serviceNames === null) return false;
    return !this.watchAllLocal || [...local.serviceNames.keys()].every((k) => local.health.has(k));
  }

  /** The catalog as loaded now: every datacenter's nodes and loaded services, and what is not loaded yet. */
  data(): Required<Omit<CatalogData, 'queries'>> {
    const nodes = new Map<string, NodeRecord>();
    const services: ServiceRecord[] = [];
    const mesh: MeshEntry[] = [];
    const pending: { datacenter: string; name: string }[] = [];
    for (const state of this.dcs.values()) {
      for (const n of state.nodes ?? []) nodes.set(`${state.name}/${n.name}`, n);
      for (const h of state.health.values()) {
        // A node can appear in a health result before the node watch has seen it.
        for (const n of h.nodes) if (!nodes.has(`${state.name}/${n.name}`)) nodes.set(`${state.name}/${n.name}`, n);
        services.push(...h.instances);
      }
      for (const [mk, h] of state.mesh) {
        for (const n of h.nodes) if (!nodes.has(`${state.name}/${n.name}`)) nodes.set(`${state.name}/${n.name}`, n);
        const key = meshService(mk);
        const service = state.serviceNames?.get(key) ?? key;
        mesh.push({ lookup: meshLookup(mk), datacenter: state.name, service, instances: h.instances, ...(h.virtualIp ? { virtualIp: h.virtualIp } : {}) });
      }
      for (const [key, name] of state.serviceNames ?? []) if (!state.health.has(key)) pending.push({ datacenter: state.name, name });
    }
    const dcs = [...this.dcs.values()];
    return {
      nodes: [...nodes.values()],
      services,
      mesh,
      partial: {
        datacenters: [...new Set([...(this.known ?? []), ...this.dcs.keys()])],
        serviceListsKnown: dcs.filter((s) => s.serviceNames !== null).map((s) => s.name),
        nodeListsKnown: dcs.filter((s) => s.nodes !== null).map((s) => s.name),
        pending,
      },
    };
  }
}

/** The lookup of a mesh key (`connect/web` -> `connect`). */
function meshLookup(mk: string): MeshLookup {
  return mk.slice(0, mk.indexOf('/')) as MeshLookup;
}

/** The service of a mesh key (`connect/web` -> `web`). */
function meshService(mk: string): string {
  return mk.slice(mk.indexOf('/') + 1);
}
