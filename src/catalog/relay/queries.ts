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
 *
 * Outcomes are keyed as the primary keys them: per client address for a query whose results are
 * per client (`Near: _ip`, or its definition not read yet), else shared. A worker cannot tell which
 * a query is, so the primary's reply says (`perClient`); until a reply has said so for a name, a
 * question is asked under its own client's key (the safe assumption). Once stopped, nothing is asked.
 */

import type { PreparedQueries, QueryOutcome } from '../queries.js';

/** How long a worker reuses an outcome the primary sent. */
export const WORKER_REUSE_MS = 1000;

/** At most this many outcomes (and as many names' keying) kept; the oldest goes first. */
const MAX_ENTRIES = 1000;

interface Entry {
  outcome: QueryOutcome;
  at: number;
}

export class RelayQueries implements PreparedQueries {
  private readonly entries = new Map<string, Entry>();
  /** Per name: whether the primary said its results are per client. */
  private readonly keying = new Map<string, boolean>();
  /** Questions out to the primary, by their key (shared by questions for that key meanwhile). */
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly asked = new Map<number, (outcome: QueryOutcome, perClient: boolean) => void>();
  private nextId = 0;
  private stopped = false;

  constructor(
    private readonly ask: (id: number, datacenter: string, name: string, source: string) => void,
    private readonly now: () => number = Date.now,
  ) {}

  peek(datacenter: string, name: string, source: string): QueryOutcome | null {
    const nk = key(datacenter, name);
    const perClient = this.keying.get(nk);
    if (perClient === undefined) return null;
    const entry = this.entries.get(entryKey(nk, perClient, source));
    return entry && this.now() - entry.at < WORKER_REUSE_MS ? entry.outcome : null;
  }

  execute(datacenter: string, name: string, source: string): Promise<void> {
    if (this.stopped) return Promise.reject(new Error('relay source stopped'));
    const nk = key(datacenter, name);
    // Not known to be shared: asked under this client's own key.
    const k = entryKey(nk, this.keying.get(nk) ?? true, source);
    const joined = this.inFlight.get(k);
    if (joined) return joined;
    const id = ++this.nextId;
    const done = new Promise<void>((resolve) => {
      this.asked.set(id, (outcome, perClient) => {
        this.inFlight.delete(k);
        if (!this.stopped) {
          remember(this.keying, nk, perClient);
          remember(this.entries, entryKey(nk, perClient, source), { outcome, at: this.now() });
        }
        resolve();
      });
    });
    this.inFlight.set(k, done);
    this.ask(id, datacenter, name, source);
    return done;
  }

  /** The primary's answer to question `id`; `perClient` says how its results are keyed. */
  settle(id: number, outcome: QueryOutcome, perClient: boolean): void {
    const resolve = this.asked.get(id);
    this.asked.delete(id);
    resolve?.(outcome, perClient);
  }

  /** Stopping: every question waiting gets `failed`; later ones are not asked. */
  stop(): void {
    this.stopped = true;
    for (const id of [...this.asked.keys()]) this.settle(id, { kind: 'failed' }, true);
    this.entries.clear();
    this.keying.clear();
  }
}

/** Sets `k` as the newest key of `map`, dropping the oldest beyond MAX_ENTRIES. */
function remember<T>(map: Map<string, T>, k: string, value: T): void {
  map.delete(k);
  if (map.size >= MAX_ENTRIES) map.delete(map.keys().next().value!);
  map.set(k, value);
}

function key(datacenter: string, name: string): string {
  return `${datacenter.toLowerCase()}\u0000${name.toLowerCase()}`;
}

function entryKey(nameKey: string, perClient: boolean, source: string): string {
  return `${nameKey}\u0000${perClient ? source : ''}`;
}
