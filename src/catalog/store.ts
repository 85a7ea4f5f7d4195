/**
 * The catalog store: holds the current Snapshot and swaps it atomically when a source publishes.
 *
 * Readers call `current()` once per query and use that snapshot for the whole answer, so an answer
 * never mixes two catalogs. `current()` is null until the first publish: the resolver answers
 * SERVFAIL for our domain until then, never NXDOMAIN for a name that may exist.
 */

import type { Diagnostics } from '../diagnostics/channels.js';
import { Snapshot } from './snapshot.js';
import type { CatalogData } from './types.js';

export interface CatalogStoreOptions {
  /** Wall clock in ms, injected for tests; the SOA serial derives from it. */
  now?: () => number;
  /** Serve only passing instances (--only-passing). */
  onlyPassing?: boolean;
  /** Each published snapshot is announced here (`catalog`). */
  diagnostics?: Diagnostics;
}

export class CatalogStore {
  private snapshot: Snapshot | null = null;
  private generation = 0;
  private readonly now: () => number;
  private readonly onlyPassing: boolean;

  constructor(private readonly options: CatalogStoreOptions = {}) {
    this.now = options.now ?? Date.now;
    this.onlyPassing = options.onlyPassing ?? false;
  }

  current(): Snapshot | null {
    return this.snapshot;
  }

  /** Builds and publishes a snapshot of `data`; throws (publishing nothing) if `data` is inconsistent. */
  replace(data: CatalogData): Snapshot {
    const previous = this.snapshot;
    // SOA serial: seconds since the epoch as Consul uses, but never going backwards or repeating.
    const now = this.now();
    const serial = Math.max(Math.floor(now / 1000), (previous?.serial ?? 0) + 1) >>> 0;
    const next = new Snapshot(data, { serial, previous, nextGeneration: () => ++this.generation, onlyPassing: this.onlyPassing, publishedAt: now });
    this.snapshot = next;
    const published = this.options.diagnostics?.catalog;
    if (published?.hasSubscribers) published.publish({ snapshot: next, data });
    return next;
  }
}
