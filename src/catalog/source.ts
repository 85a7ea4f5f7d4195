/**
 * The seam between where catalog data comes from and the store that serves it.
 *
 * Contract for every source:
 * - `start(sink)` begins feeding the sink. It rejects if the source cannot run at all, so the CLI
 *   can exit with the reason. A source whose data is local (the file) resolves after its first
 *   publish; one that may be unreachable at start (Consul) resolves at once and publishes when its
 *   first full sync is done: until then the store is empty and DNS says SERVFAIL.
 * - After start, a failed refresh never unpublishes anything: the last good catalog keeps serving
 *   and the source logs the failure once per change of state.
 * - `reload()` re-reads at once (on SIGHUP), under the same rule.
 * - `stop()` releases every watch and timer; after it the source publishes nothing.
 *
 * Which sources run is chosen by the configuration from the kinds registered in
 * src/catalog/sources.ts; each kind is a `SourceKind`. Several at once run as one composite source
 * (src/catalog/composite/source.ts), each owning its datacenters.
 */

import type { Logger } from 'pino';
import type { ConfigComponent } from '../config/component.js';
import type { Diagnostics } from '../diagnostics/channels.js';
import type { Backoff } from '../util/pacing.js';
import type { PreparedQueries } from './queries.js';
import type { CatalogData, MeshLookup } from './types.js';

export interface CatalogSink {
  /** Publishes a complete catalog; throws if the data is inconsistent (nothing is published then). */
  replace(data: CatalogData): void;
}

export interface CatalogSource {
  /** The kind of source, as /status names it: `file`, `consul`, `relay` (a --workers process). */
  readonly kind: string;
  /** Human-readable origin for logs, e.g. the file path. Never contains secrets. */
  readonly description: string;
  start(sink: CatalogSink): Promise<void>;
  /** Re-reads the catalog now (SIGHUP); a failure keeps the last good catalog, as ever. */
  reload(): Promise<unknown>;
  /**
   * Sources that load on demand: fetch (and from then on watch) `service` of `datacenter`, or with
   * `service` null its node list; resolves once a snapshot holding it (or knowing it does not
   * exist) is published. Callers bound the wait themselves. With `lookup`, the service's mesh
   * view (`.connect`, `.ingress` endpoints) instead of its instances.
   */
  want?(datacenter: string, service: string | null, lookup?: MeshLookup): Promise<void>;
  /** Sources that load on demand: a loaded service (or its mesh view) was just used (keeps its watch alive). */
  touch?(datacenter: string, service: string, lookup?: MeshLookup): void;
  /**
   * Sources that execute prepared queries themselves (Consul). Without it, `.query.` names are
   * answered from the catalog's own query definitions (CatalogData.queries).
   */
  readonly queries?: PreparedQueries;
  stop(): Promise<void>;
  /**
   * Sources that sync from a registry which may be unreachable at start (Consul; a ZooKeeper source
   * too): resolves at the first full sync. Only their catalogs are persisted with --state-dir
   * (src/state/persist.ts), and the persisted one is served until this resolves. A source whose data
   * is local (a file) has none: it is its own persisted state.
   */
  readonly firstSync?: Promise<void>;
  /**
   * Sources of several parts (src/catalog/composite/): told the persisted catalog before `start`,
   * to serve each of its datacenters until the part owning it has synced, beside the parts that
   * have. Others need not hear of it: their first sync replaces it whole.
   */
  restored?(data: CatalogData): void;
  /** Sources of several parts: each part's state, in precedence order (/status, metrics). */
  members?(): readonly MemberState[];
  /** Sources that keep reads running (Consul): how many, for metrics. */
  readonly watchCount?: number;
  /** Whether the registry the source reads is up (its liveness probe), for metrics; absent when it has none. */
  readonly consulUp?: boolean;
  /** The ZooKeeper source: whether its session is connected, and how many paths it watches; absent elsewhere. */
  readonly zookeeper?: { readonly up: boolean; readonly watches: number };
}

/** One source's state inside a source of several (src/catalog/composite/source.ts). */
export interface MemberState {
  readonly kind: string;
  readonly description: string;
  /** Whether it has published its first catalog. */
  readonly synced: boolean;
  /** Datacenters it serves now (lower-case). */
  readonly datacenters: readonly string[];
  /** Datacenters it publishes whose records are left out: a source before it owns them. */
  readonly leftOut: readonly string[];
}

/** A kind of catalog source, as src/catalog/sources.ts registers it; `C` is its part of the configuration. */
export interface SourceKind<C> {
  /**
   * The key whose value chooses this source (`catalog`, `consul`; a switch, `example`, when true);
   * no default chooses one. When several are given, one set only by another tool's env var
   * (CONSUL_HTTP_ADDR) gives way to the others; the rest run side by side (src/catalog/composite/),
   * unless one serves `alone`: that is a configuration problem.
   */
  readonly key: string;
  /** Its keys and the builder of its options. */
  readonly config: ConfigComponent<C>;
  /** Whether the configuration chooses this source. */
  configured(config: C): boolean;
  create(config: C & { datacenter: string }, log: Logger, options: SourceOptions): Promise<CatalogSource>;
  /**
   * Serves alone: never configured together with another source (`example`, the demo). Other kinds
   * may run side by side, each owning its datacenters (src/catalog/composite/).
   */
  readonly alone?: boolean;
  /**
   * The datacenter the source publishes for certain, known from the configuration alone, and the
   * key that sets it (Consul: its local datacenter, `datacenter`); absent or null when the
   * configuration cannot tell (a catalog file names its own). Two sources certain to publish the
   * same datacenter are a configuration problem (src/catalog/sources.ts).
   */
  datacenter?(config: C & { datacenter: string }): { name: string; key: string } | null;
}

export interface SourceOptions {
  /** Failures and recoveries are reported here (`state`), and logged by its subscriber. */
  diagnostics: Diagnostics;
  /** Debounce of file change events, ms (tests shorten it). */
  reloadDebounceMs?: number | undefined;
  /**
   * How a registry source retries a failed read on its own (while the registry answers its
   * liveness probe); tests lengthen it to show that recovery does not wait for it.
   */
  retryBackoff?: Backoff | undefined;
}
