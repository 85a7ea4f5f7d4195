/**
 * --state-dir for a registry source (one with `firstSync`, src/catalog/source.ts): at start the
 * persisted catalog, if there is one this svcdns may serve, is published into the store before the
 * source starts (so DNS answers it at once, even with the registry down), and every catalog
 * published from then on is written (writer.ts). The first real sync replaces the persisted catalog
 * like any later change: data still flows one way, source -> store, and the state file is only a
 * subscriber of what the store publishes, plus one publish before the source's first.
 *
 * Partial catalogs (Consul on demand) are persisted as published: what was loaded is served stale,
 * and what was only known to exist (`partial.pending`) stays pending, so a question about it asks
 * the source (`want`), which fetches it once the registry answers (until then: SERVFAIL after
 * --fetch-timeout, as before the first sync).
 *
 * The directory is made if missing. A missing file is the first start: nothing is logged. A corrupt, truncated or foreign one (other
 * format version, other source kind or datacenter), or one the store refuses, is ignored with one
 * log line; it is replaced at the first write.
 */

import { mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { CatalogSink, CatalogSource } from '../catalog/source.js';
import type { CatalogData } from '../catalog/types.js';
import { readState } from './file.js';
import type { StateIdentity } from './format.js';
import { StateWriter } from './writer.js';

export interface PersistOptions {
  dir: string;
  /** The local datacenter (part of the file's identity). */
  datacenter: string;
  source: CatalogSource;
  /** Where the persisted catalog is published (the store, or a --workers primary's relay). */
  sink: CatalogSink;
  /** Subscribes to every catalog published after the persisted one; returns the unsubscribe. */
  subscribe(onCatalog: (data: CatalogData) => void): () => void;
  log: Logger;
  now?: () => number;
}

/** What readiness and /status say while the persisted catalog serves. */
export interface StaleCatalog {
  /** When it was written, ms since the epoch. */
  savedAt: number;
}

export class CatalogPersistence {
  private staleNow: StaleCatalog | null = null;

  private constructor(
    private readonly writer: StateWriter,
    private readonly unsubscribe: () => void,
  ) {}

  /**
   * Publishes the persisted catalog (if any may be served) and starts writing; null when the source
   * syncs from nothing remote (`firstSync` absent): such a source is not persisted.
   */
  static async open(options: PersistOptions): Promise<CatalogPersistence | null> {
    const { dir, source, sink, log } = options;
    const firstSync = source.firstSync;
    if (!firstSync) return null;
    const now = options.now ?? Date.now;
    const identity: StateIdentity = { source: source.kind, datacenter: options.datacenter };
    const slog = log.child({ component: 'state' });
    // Made if missing (outside systemd's StateDirectory); if that fails, the first write says why.
    await mkdir(dir, { recursive: true }).catch(() => undefined);
    const saved = await readState(dir, identity);
    let stale: StaleCatalog | null = null;
    if ('data' in saved) {
      try {
        sink.replace(saved.data);
        source.restored?.(saved.data);
        stale = { savedAt: saved.savedAt };
      } catch (err) {
        slog.warn({ dir, problem: `refused by the store: ${(err as Error).message}` }, 'persisted catalog ignored');
      }
    } else if (!saved.missing) {
      slog.warn({ dir, problem: saved.problem }, 'persisted catalog ignored');
    }
    const writer = new StateWriter({ dir, identity, log: slog, now });
    const persistence = new CatalogPersistence(writer, options.subscribe((data) => writer.offer(data)));
    if (stale) {
      persistence.staleNow = stale;
      slog.warn(
        { dir, savedAt: new Date(stale.savedAt).toISOString(), ageSeconds: Math.max(0, Math.round((now() - stale.savedAt) / 1000)), source: source.description },
        'serving the persisted catalog (stale) until the first sync',
      );
      void firstSync.then(() => {
        if (!persistence.staleNow) return;
        persistence.staleNow = null;
        slog.info({ source: source.description }, 'first sync done: the persisted catalog is replaced');
      });
    }
    return persistence;
  }

  /** The persisted catalog while it serves (before the first sync); null otherwise. */
  get stale(): StaleCatalog | null {
    return this.staleNow;
  }

  /** Stops following the catalog and writes the last one still pending. */
  async close(): Promise<void> {
    this.unsubscribe();
    await this.writer.close();
  }
}
