/**
 * The catalog source of a --workers process: the catalog arrives as messages from the primary
 * process, which runs the one real source (file or Consul), so N workers put no more load on
 * Consul than one process does.
 *
 * The channel is the worker's IPC to the primary (`process.send` / `process.on('message')`),
 * injected so tests can drive it directly. Messages (see src/workers.ts for the other side):
 * - worker → primary: `hello` once at start; `want` (on-demand fetch, answered by `wanted` with
 *   the same id, sent after the catalog holding it); `touch` (services answered, batched each second);
 *   `query` (a prepared query to execute, answered by `queried` with its outcome: queries.ts).
 * - primary → worker: `catalog` (a whole CatalogData, every time the source publishes), `empty`
 *   (the answer to `hello` while the source has published nothing yet), `wanted`; and for the
 *   worker's server rather than this source (src/workers.ts handles them): `reload` (SIGHUP: re-read
 *   resolv.conf, apply the settings that changed) and `shutdown` (SIGTERM: lameduck, drain, exit).
 * IPC keeps the order of messages, so a `wanted` always comes after the catalog it waited for.
 */

import type { Logger } from 'pino';
import type { LiveSettings } from '../../lifecycle/reload.js';
import type { QueryOutcome } from '../queries.js';
import type { CatalogSink, CatalogSource } from '../source.js';
import type { CatalogData, MeshLookup } from '../types.js';
import { RelayQueries } from './queries.js';

export type ToPrimary =
  | { t: 'hello' }
  | { t: 'want'; id: number; datacenter: string; service: string | null; lookup?: MeshLookup }
  | { t: 'touch'; used: [string, string, MeshLookup?][] }
  | { t: 'query'; id: number; datacenter: string; name: string; source: string }
  | { t: 'listening'; addresses: string[] }
  /** The answer to `metrics`: the worker's registry as data (prom-client's getMetricsAsJSON). */
  | { t: 'metrics'; id: number; data: unknown[] };

export type ToWorker =
  | { t: 'catalog'; data: CatalogData }
  | { t: 'empty' }
  | { t: 'wanted'; id: number; ok: boolean }
  /** `perClient`: the query's results are kept per client address (src/catalog/relay/queries.ts). */
  | { t: 'queried'; id: number; outcome: QueryOutcome; perClient: boolean }
  | { t: 'reload'; settings: LiveSettings }
  | { t: 'shutdown'; lameduckMs: number }
  /** A scrape of the primary's /metrics or /status: send yours. */
  | { t: 'metrics'; id: number };

export interface Channel {
  send(message: ToPrimary): void;
  onMessage(listener: (message: ToWorker) => void): () => void;
}

/** Touches are sent at most this often (the source only needs them within --watch-idle). */
const TOUCH_BATCH_MS = 1000;

export class RelaySource implements CatalogSource {
  readonly kind = 'relay';
  readonly description = 'the primary process (--workers)';
  private sink: CatalogSink | null = null;
  private unsubscribe: (() => void) | null = null;
  private nextId = 0;
  private readonly waits = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  private readonly used = new Map<string, [string, string, MeshLookup?]>();
  private touchTimer: NodeJS.Timeout | null = null;
  /** Prepared queries, executed by the primary (queries.ts). */
  readonly queries: RelayQueries;

  constructor(
    private readonly channel: Channel,
    private readonly log: Logger,
  ) {
    this.queries = new RelayQueries((id, datacenter, name, source) => this.channel.send({ t: 'query', id, datacenter, name, source }));
  }

  /** Resolves once the primary has sent the catalog it has (or said it has none yet). */
  start(sink: CatalogSink): Promise<void> {
    this.sink = sink;
    return new Promise((resolve) => {
      this.unsubscribe = this.channel.onMessage((message) => {
        this.receive(message);
        if (message.t === 'catalog' || message.t === 'empty') resolve();
      });
      this.channel.send({ t: 'hello' });
    });
  }

  /** The primary reloads the real source (it gets SIGHUP too); nothing to do here. */
  reload(): Promise<void> {
    return Promise.resolve();
  }

  want(datacenter: string, service: string | null, lookup?: MeshLookup): Promise<void> {
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.waits.set(id, { resolve, reject });
      this.channel.send({ t: 'want', id, datacenter, service, ...(lookup ? { lookup } : {}) });
    });
  }

  touch(datacenter: string, service: string, lookup?: MeshLookup): void {
    const key = `${datacenter}\n${service}\n${lookup ?? ''}`.toLowerCase();
    if (this.used.has(key)) return;
    this.used.set(key, lookup ? [datacenter, service, lookup] : [datacenter, service]);
    if (this.touchTimer) return;
    this.touchTimer = setTimeout(() => {
      this.touchTimer = null;
      const used = [...this.used.values()];
      this.used.clear();
      this.channel.send({ t: 'touch', used });
    }, TOUCH_BATCH_MS);
    this.touchTimer.unref();
  }

  stop(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.sink = null;
    if (this.touchTimer) clearTimeout(this.touchTimer);
    for (const wait of this.waits.values()) wait.reject(new Error('stopped'));
    this.waits.clear();
    this.queries.stop();
    return Promise.resolve();
  }

  private receive(message: ToWorker): void {
    if (message.t === 'catalog') {
      try {
        this.sink?.replace(message.data);
      } catch (err) {
        // The primary checked it; a failure here is a bug, and the last good catalog keeps serving.
        this.log.error({ err }, 'catalog from the primary rejected; keeping the last good catalog');
      }
    } else if (message.t === 'queried') {
      this.queries.settle(message.id, message.outcome, message.perClient);
    } else if (message.t === 'wanted') {
      const wait = this.waits.get(message.id);
      this.waits.delete(message.id);
      if (message.ok) wait?.resolve();
      else wait?.reject(new Error('fetch failed in the primary'));
    }
  }
}
