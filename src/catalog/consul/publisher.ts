/**
 * Publishing for the Consul source: the sink, readiness and coalescing.
 *
 * - Changes that arrive together are published as one snapshot: `schedule()` publishes once, at
 *   the next event-loop turn (setImmediate), however often it is called in between.
 * - Nothing is published before the first full sync (`synced()`); the first publish makes the
 *   source ready (`isReady`, `ready`), and from then on every scheduled publish goes out.
 * - After each snapshot published, `onPublished` is told (the on-demand waits wake up there).
 * - A snapshot the sink refuses is logged and not published; the last one keeps serving.
 *
 * What the catalog holds, and whether it is synced, is asked of its owner (datacenters.ts).
 */

import type { Logger } from 'pino';
import type { CatalogSink } from '../source.js';
import type { CatalogData } from '../types.js';

export interface PublisherOptions {
  log: Logger;
  /** Whether everything the first snapshot needs has arrived. */
  synced(): boolean;
  /** The catalog as loaded now, with what exists but is not loaded (`partial`). */
  data(): Required<Omit<CatalogData, 'queries'>>;
  /** A snapshot was published. */
  onPublished(): void;
}

export class Publisher {
  /** Where snapshots go; null (before start, after stop): nowhere, and nothing is published. */
  sink: CatalogSink | null = null;
  /** Resolves at the first publish (the first full sync). */
  readonly ready: Promise<void>;
  private markReady!: () => void;
  private published = false;
  private pending = false;

  constructor(private readonly options: PublisherOptions) {
    this.ready = new Promise((resolve) => (this.markReady = resolve));
  }

  /** Whether the first full sync has been published. */
  get isReady(): boolean {
    return this.published;
  }

  /** Whether a publish is scheduled: some change is not in the published snapshot yet. */
  get scheduled(): boolean {
    return this.pending;
  }

  /** Publishes at the next event-loop turn, with whatever else changed by then. */
  schedule(): void {
    if (this.pending) return;
    this.pending = true;
    setImmediate(() => {
      this.pending = false;
      this.publish();
    });
  }

  /** Publishes what is loaded (once synced), then says so. */
  private publish(): void {
    const sink = this.sink;
    if (!sink || (!this.published && !this.options.synced())) return;
    const data = this.options.data();
    try {
      sink.replace(data);
    } catch (err) {
      this.options.log.warn({ err }, 'consul catalog not published');
      return;
    }
    if (!this.published) {
      this.published = true;
      this.options.log.info({ nodes: data.nodes.length, instances: data.services.length, pending: data.partial.pending.length }, 'consul catalog synced; ready');
      this.markReady();
    }
    this.options.onPublished();
  }
}
