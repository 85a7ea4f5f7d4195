/**
 * Persists each catalog a registry source publishes (--state-dir): at most one write a second,
 * only when the catalog changed, the latest one always written in the end (`close` flushes it).
 *
 * It is fed from the `catalog` diagnostics event (src/state/persist.ts subscribes it), so it
 * never stands between the source and the store: a slow or failing disk delays nothing answered.
 * A failed write is logged once (and its recovery once); the next change tries again.
 */

import type { Logger } from 'pino';
import type { CatalogData } from '../catalog/types.js';
import { writeStateAtomically } from './file.js';
import { catalogJson, encodeState, STATE_FILE, type StateIdentity } from './format.js';

export interface StateWriterOptions {
  dir: string;
  identity: StateIdentity;
  log: Logger;
  /** The shortest time between two writes, ms (default 1 s). */
  minIntervalMs?: number;
  now?: () => number;
  /** How a file is written (default: writeStateAtomically); tests record the writes instead. */
  writeFile?: (dir: string, text: string) => Promise<void>;
}

export class StateWriter {
  private latest: CatalogData | null = null;
  /** The catalog JSON last written: an unchanged catalog is not written again. */
  private written: string | null = null;
  private lastWriteAt = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;
  private failing = false;
  private closed = false;
  private readonly minIntervalMs: number;
  private readonly now: () => number;

  constructor(private readonly options: StateWriterOptions) {
    this.minIntervalMs = options.minIntervalMs ?? 1000;
    this.now = options.now ?? Date.now;
  }

  /** A catalog was published: it will be written, now or when the interval allows. */
  offer(data: CatalogData): void {
    if (this.closed) return;
    this.latest = data;
    this.kick();
  }

  /** Writes what is still pending, then takes no more. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.writing;
    if (this.latest) await this.write();
  }

  private kick(): void {
    if (this.timer || this.writing || !this.latest) return;
    const wait = this.lastWriteAt + this.minIntervalMs - this.now();
    if (wait > 0) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.kick();
      }, wait);
      this.timer.unref();
      return;
    }
    this.writing = this.write().finally(() => {
      this.writing = null;
      if (!this.closed) this.kick();
    });
  }

  private async write(): Promise<void> {
    const data = this.latest;
    this.latest = null;
    if (!data) return;
    const catalog = catalogJson(data);
    if (catalog === this.written) return;
    const savedAt = this.now();
    this.lastWriteAt = savedAt;
    const { dir, identity, log } = this.options;
    try {
      await (this.options.writeFile ?? writeStateAtomically)(dir, encodeState(catalog, identity, savedAt));
      this.written = catalog;
      if (this.failing) log.info({ dir }, 'catalog state written again');
      else log.debug({ dir, file: STATE_FILE, bytes: catalog.length }, 'catalog state written');
      this.failing = false;
    } catch (err) {
      if (!this.failing) log.warn({ dir, error: (err as NodeJS.ErrnoException).code ?? String(err) }, 'cannot write the catalog state');
      this.failing = true;
    }
  }
}
