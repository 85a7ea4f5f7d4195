/**
 * Catalog source: a YAML or JSON file, reloaded when it changes.
 *
 * The directory is watched rather than the file (src/watch-file.ts), so edits that replace the file
 * (editors writing a temp file and renaming it, Kubernetes ConfigMap `..data` symlink swaps) are
 * seen as well as in-place writes.
 * Changes are debounced, and a reload whose bytes equal the last good load publishes nothing.
 * A broken edit keeps the last good catalog serving and logs one error naming the file and every
 * problem in it; the same broken content is not logged again.
 */

import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { watchFile, type FileWatch } from '../../watch-file.js';
import { CatalogFileError, parseCatalogFile } from './format.js';
import type { Diagnostics } from '../../diagnostics/channels.js';
import type { CatalogSink, CatalogSource } from '../source.js';

export interface FileSourceOptions {
  path: string;
  /** Datacenter for nodes that name none (the file's own `datacenter` key wins). */
  defaultDatacenter: string;
  log: Logger;
  /** A rejected edit is reported here (`state`), and logged once per distinct problem by its subscriber. */
  diagnostics: Diagnostics;
  /** Watch the file for changes (default true). */
  watch?: boolean;
  /** Quiet time after the last change event before reloading, in ms (default 50). */
  debounceMs?: number;
}

export type ReloadOutcome = { ok: true; changed: boolean } | { ok: false; error: Error };

export class FileSource extends EventEmitter<{ reload: [ReloadOutcome] }> implements CatalogSource {
  readonly kind = 'file';
  readonly description: string;
  private readonly path: string;
  private readonly log: Logger;
  /** What the state logger knows this file by. */
  private readonly stateKey: string;
  private sink: CatalogSink | null = null;
  private watcher: FileWatch | null = null;
  private lastGoodText: string | null = null;
  private reloading: Promise<ReloadOutcome> | null = null;
  private reloadAgain = false;

  constructor(private readonly options: FileSourceOptions) {
    super();
    this.path = resolve(options.path);
    this.description = `file ${this.path}`;
    this.log = options.log.child({ component: 'catalog-file' });
    this.stateKey = `catalog file ${options.path}`;
  }

  async start(sink: CatalogSink): Promise<void> {
    this.sink = sink;
    const outcome = await this.reload();
    if (!outcome.ok) throw outcome.error;
    if (this.options.watch !== false) this.watch();
  }

  async stop(): Promise<void> {
    this.sink = null;
    this.watcher?.close();
    this.watcher = null;
    await this.reloading;
  }

  /**
   * Reads the file and publishes it if it changed. Concurrent calls share one read; a call made
   * while a read is under way schedules exactly one more, so the last edit is never missed.
   */
  reload(): Promise<ReloadOutcome> {
    if (this.reloading) {
      this.reloadAgain = true;
      return this.reloading;
    }
    this.reloading = this.readAndPublish().finally(() => {
      this.reloading = null;
      if (this.reloadAgain && this.sink) {
        this.reloadAgain = false;
        void this.reload();
      }
    });
    return this.reloading;
  }

  private async readAndPublish(): Promise<ReloadOutcome> {
    let outcome: ReloadOutcome;
    try {
      const text = await readFile(this.path, 'utf8');
      if (text === this.lastGoodText) {
        outcome = { ok: true, changed: false };
      } else {
        const data = parseCatalogFile(text, this.path, this.options.defaultDatacenter);
        if (!this.sink) return { ok: true, changed: false };
        this.sink.replace(data);
        this.lastGoodText = text;
        this.options.diagnostics.state.publish({ key: this.stateKey, subject: this.path, problem: null, log: this.log });
        this.log.info(
          { file: this.path, nodes: data.nodes.length, instances: data.services.length },
          'catalog loaded',
        );
        outcome = { ok: true, changed: true };
      }
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      // A started source keeps serving: logged once per distinct problem. Before the first load
      // the error goes back to start() and the CLI reports it.
      if (this.lastGoodText !== null) {
        this.options.diagnostics.state.publish({
          key: this.stateKey,
          subject: this.path,
          problem: error.message,
          level: 'error',
          message: 'catalog file rejected; still serving the last good catalog',
          fields: { file: this.path, problems: error instanceof CatalogFileError ? error.problems : [error.message] },
          log: this.log,
        });
      }
      outcome = { ok: false, error };
    }
    this.emit('reload', outcome);
    return outcome;
  }

  /**
   * Any event in the directory triggers a (debounced) reload, not just events naming the file:
   * a Kubernetes ConfigMap update swaps the `..data` symlink the file points through, and no event
   * names the file itself. Reloading unchanged bytes publishes nothing, so this costs one read.
   */
  private watch(): void {
    this.watcher = watchFile(this.path, () => void this.reload(), {
      debounceMs: this.options.debounceMs ?? 50,
      onError: (err) => this.log.warn({ file: this.path, err }, 'catalog file cannot be watched; reload with SIGHUP'),
    });
  }
}
