/**
 * Catalog source: a catalog object held in memory, set by the program that embeds svcdns
 * (`createServer({ catalog })` and `setCatalog`, src/index.ts).
 *
 * It is not a kind in the registry (src/catalog/sources.ts): a kind is chosen by a configuration
 * key that flags, SVCDNS_* env vars and the config file can give, and an object can come from none
 * of them. Like the workers' relay source it is handed to the server as `ServerOptions.source`.
 * Validation is the catalog file's own (`checkCatalog` in src/catalog/file/format.ts): an object
 * is accepted exactly when the same catalog written as a file would be.
 */

import type { Logger } from 'pino';
import { CatalogError, checkCatalog } from '../file/format.js';
import type { CatalogSink, CatalogSource } from '../source.js';
import type { CatalogData } from '../types.js';

/** What the object is called in messages (`catalog: nodes[0].address: ...`). */
export const OBJECT_ORIGIN = 'catalog';

export class ObjectSource implements CatalogSource {
  readonly kind = 'object';
  readonly description = 'catalog object';
  private sink: CatalogSink | null = null;
  private stopped = false;
  private readonly log: Logger;
  /** The catalog published last (the one serving once started). */
  private data: CatalogData;

  /** Throws a CatalogError with every problem of `catalog`; nothing is kept then. */
  constructor(
    catalog: unknown,
    private readonly defaultDatacenter: string,
    log: Logger,
  ) {
    this.log = log.child({ component: 'catalog-object' });
    this.data = this.check(catalog);
  }

  start(sink: CatalogSink): Promise<void> {
    this.sink = sink;
    this.publish();
    return Promise.resolve();
  }

  /**
   * Replaces the catalog: validated first, and published only when valid, so a bad catalog throws
   * a CatalogError (every problem) and the one before keeps serving.
   */
  set(catalog: unknown): void {
    if (this.stopped) throw new Error('the server is closed');
    const data = this.check(catalog);
    const before = this.data;
    this.data = data;
    try {
      this.publish();
    } catch (err) {
      this.data = before;
      throw err;
    }
  }

  /** Nothing to re-read: the object is the catalog. */
  reload(): Promise<void> {
    return Promise.resolve();
  }

  stop(): Promise<void> {
    this.stopped = true;
    this.sink = null;
    return Promise.resolve();
  }

  private check(catalog: unknown): CatalogData {
    const { data, problems } = checkCatalog(catalog, this.defaultDatacenter);
    if (problems.length > 0) throw new CatalogError(OBJECT_ORIGIN, problems);
    return data;
  }

  private publish(): void {
    if (!this.sink) return;
    this.sink.replace(this.data);
    this.log.info({ nodes: this.data.nodes.length, instances: this.data.services.length }, 'catalog loaded');
  }
}
