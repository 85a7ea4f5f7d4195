/**
 * Prepared queries in a --workers process: executed by the primary, which owns the one real source
 * (and, with Consul, its query cache), over the same IPC channel as the catalog (`query` /
 * `queried`, src/catalog/relay/source.ts and src/workers.ts).
 *
 * A worker keeps each outcome for WORKER_REUSE_MS, so a busy name costs the primary about one
 * message per worker per second and Consul no more than the primary's own cache allows; questions
 * for one name while a message is out share it. Past that the question waits for the primary again
 * (an IPC round trip; the primary usually answers from its cache), so the primary's freshness,
 * stale bound and SERVFAIL rules hold here too, at most WORKER_REUSE_MS later. A primary whose
 * source executes no queries (a catalog file, whose queries travel with the catalog) answers
 * `not-found`.
 */

import type { PreparedQueries, QueryOutcome } from '../queries.js';

/** How long a worker reuses an outcome the primary sent. */
export const WORKER_REUSE_MS = 1000;

/** At most this many outcomes kept; the oldest goes first. */
const MAX_ENTRIES = 1000;

interface Entry {
  outcome: QueryOutcome | null;
  at: number;
  inFlight: Promise<void> | null;
}

export class RelayQueries implements PreparedQueries {
  private readonly entries = new Map<string, Entry>();
  private readonly asked = new Map<number, (outcome: QueryOutcome) => void>();
  private nextId = 0;

  constructor(
    private readonly ask: (id: number, datacenter: string, name: string, source: string) => void,
    private readonly now: () => number = Date.now,
  ) {}

  peek(datacenter: string, name: string): QueryOutcome | null {
    const entry = this.entries.get(key(datacenter, name));
    return entry?.outcome && this.now() - entry.at < WORKER_REUSE_MS ? entry.outcome : null;
  }

  execute(datacenter: string, name: string, source: string): Promise<void> {
    const k = key(datacenter, name);
    let entry = this.entries.get(k);
    if (!entry) {
      if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
      entry = { outcome: null, at: 0, inFlight: null };
      this.entries.set(k, entry);
    }
    if (entry.inFlight) return entry.inFlight;
    const id = ++this.nextId;
    const target = entry;
    const done = new Promise<void>((resolve) => {
      this.asked.set(id, (outcome) => {
        target.outcome = outcome;
        target.at = this.now();
        target.inFlight = null;
        resolve();
      });
    });
    entry.inFlight = done;
    this.ask(id, datacenter, name, source);
    return done;
  }

  /** The primary's answer to question `id`. */
  settle(id: number, outcome: QueryOutcome): void {
    const resolve = this.asked.get(id);
    this.asked.delete(id);
    resolve?.(outcome);
  }

  /** Stopping: every question waiting gets `failed`. */
  stop(): void {
    for (const id of [...this.asked.keys()]) this.settle(id, { kind: 'failed' });
    this.entries.clear();
  }
}

function key(datacenter: string, name: string): string {
  return `${datacenter.toLowerCase()}\u0000${name.toLowerCase()}`;
}
