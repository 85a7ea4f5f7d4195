/**
 * Prepared query executions of the Consul source, kept for a short bounded time so a busy
 * `NAME.query.consul` costs Consul about one execution per freshness window, not one per question.
 *
 * Per (datacenter, name) one entry holds the last outcome:
 * - fresh for the query's DNS TTL (at most MAX_FRESH_MS), or FRESH_NO_TTL_MS when it has none or 0;
 *   "no such query" is fresh for FRESH_NO_TTL_MS too;
 * - past that, still served while it is in use, and refreshed in the background: the first `peek`
 *   after freshness ran out starts one execution (never more than one per entry at a time);
 * - a kept outcome serves until `maxStaleMs` after it was fetched (--query-max-stale): so when
 *   executions fail (Consul down) the last result keeps serving that long, then the outcome is
 *   `failed` (SERVFAIL); an entry unused for longer waits for a new execution. A failure is not
 *   retried for RETRY_MS, so a down Consul is not asked once per question.
 * At most `maxEntries` entries; the oldest entry goes first when a new one needs room.
 *
 * Whether a result may be shared by every client depends on the query's `Near`, which an execution
 * does not return, so the definition is read too (/v1/query/NAME/explain: once, then every
 * DEFINITION_MS while in use; an unknown name costs that read only). `Near: _ip` sorts by the
 * client's address: such a query's results are kept per client address (the address of the DNS
 * client goes to Consul as X-Forwarded-For). Any other query's result is shared. With `Near` set,
 * the result is `sorted` (answers keep Consul's order); without, answers rotate it.
 */

import type { Logger } from 'pino';
import type { PreparedQueries, QueryOutcome } from '../queries.js';
import type { ConsulApi } from './api.js';

/** Kept results older than this are refreshed even when the query's TTL is longer. */
export const MAX_FRESH_MS = 30_000;
/** How long an execution of a query without a DNS TTL (or an unknown query) is reused. */
export const FRESH_NO_TTL_MS = 2_000;
/** After a failed execution, the next waits this long (questions meanwhile get the kept outcome). */
export const RETRY_MS = 1_000;
/** A query's definition (its `Near`) is read again after this long, while in use. */
export const DEFINITION_MS = 60_000;

export interface QueryCacheOptions {
  api: Pick<ConsulApi, 'executeQuery' | 'explainQuery'>;
  log: Logger;
  /** How long a result keeps serving after it was fetched while executions fail, ms. */
  maxStaleMs: number;
  /** Bound on one execution, ms. */
  timeoutMs: number;
  /** Read from any server (`?stale`), as the source's other reads. */
  allowStale: boolean;
  maxEntries?: number;
  now?: () => number;
}

interface Entry {
  /** Last outcome of a successful execution (a result or not-found); null until one succeeded. */
  outcome: QueryOutcome | null;
  /** When `outcome` was fetched, and until when it is fresh (ms). */
  fetchedAt: number;
  freshUntil: number;
  /** The last execution failed at this time (0: it did not). */
  failedAt: number;
  inFlight: Promise<void> | null;
}

/** What the cache knows of a query's definition. */
interface Definition {
  /** Its `Near` ('' when none, or when the definition could not be read). */
  near: string;
  /** Consul has no such query (or no such datacenter). */
  missing: boolean;
  /** When it was read (ms). */
  at: number;
  inFlight: Promise<void> | null;
}

const FAILED: QueryOutcome = Object.freeze({ kind: 'failed' });
const NOT_FOUND: QueryOutcome = Object.freeze({ kind: 'not-found' });

export class QueryCache implements PreparedQueries {
  private readonly entries = new Map<string, Entry>();
  private readonly definitions = new Map<string, Definition>();
  private readonly now: () => number;
  private readonly maxEntries: number;
  private stopped = false;
  private readonly abort = new AbortController();

  constructor(private readonly options: QueryCacheOptions) {
    this.now = options.now ?? Date.now;
    this.maxEntries = options.maxEntries ?? 1000;
  }

  /** Kept executions, for tests and diagnostics. */
  get size(): number {
    return this.entries.size;
  }

  peek(datacenter: string, name: string, source: string): QueryOutcome | null {
    const definition = this.definitions.get(key(datacenter, name));
    if (!definition) return null;
    const now = this.now();
    if (definition.missing) return now - definition.at < FRESH_NO_TTL_MS ? NOT_FOUND : null;
    if (now - definition.at >= DEFINITION_MS && definition.inFlight === null) void this.explain(definition, datacenter, name);
    const entry = this.entries.get(entryKey(datacenter, name, definition, source));
    if (!entry) return null;
    if (now >= entry.freshUntil && entry.inFlight === null && now - entry.failedAt >= RETRY_MS) {
      // In use and no longer fresh: refresh in the background; this question gets what is kept.
      void this.run(entry, definition, datacenter, name, source);
    }
    return this.servable(entry, now);
  }

  async execute(datacenter: string, name: string, source: string): Promise<void> {
    if (this.stopped) throw new Error('consul source stopped');
    const dk = key(datacenter, name);
    let definition = this.definitions.get(dk);
    if (!definition || (definition.missing && this.now() - definition.at >= FRESH_NO_TTL_MS)) {
      definition ??= this.remember(this.definitions, dk, { near: '', missing: false, at: 0, inFlight: null });
      await (definition.inFlight ?? this.explain(definition, datacenter, name));
    }
    if (definition.missing || this.stopped) return;
    const k = entryKey(datacenter, name, definition, source);
    let entry = this.entries.get(k);
    entry ??= this.remember(this.entries, k, { outcome: null, fetchedAt: 0, freshUntil: 0, failedAt: 0, inFlight: null });
    if (entry.inFlight) return entry.inFlight;
    if (entry.outcome !== null && this.now() < entry.freshUntil) return;
    // A failure just now: the question gets the kept outcome (or SERVFAIL) without asking again.
    if (entry.failedAt !== 0 && this.now() - entry.failedAt < RETRY_MS) return;
    return this.run(entry, definition, datacenter, name, source);
  }

  /** Ends every execution in flight; nothing is executed after. */
  stop(): void {
    this.stopped = true;
    this.abort.abort();
    this.entries.clear();
    this.definitions.clear();
  }

  /**
   * What a question may be told from `entry` at `now`: the kept outcome while fresh, and after that
   * until `maxStaleMs` past its fetch (a refresh is under way or failing); then, if the last
   * execution failed, `failed`; otherwise null (the question waits for the execution in flight).
   */
  private servable(entry: Entry, now: number): QueryOutcome | null {
    if (entry.outcome !== null && (now < entry.freshUntil || now - entry.fetchedAt <= this.options.maxStaleMs)) return entry.outcome;
    return entry.failedAt !== 0 ? FAILED : null;
  }

  /** Reads the query's definition (its Near); a failure keeps what was known, or assumes no Near. */
  private explain(definition: Definition, datacenter: string, name: string): Promise<void> {
    const { api, timeoutMs, allowStale, log } = this.options;
    const done = api
      .explainQuery(name, { dc: datacenter, stale: allowStale, timeoutMs, signal: this.abort.signal })
      .then(
        (explained) => {
          definition.missing = explained === null;
          definition.near = explained?.near ?? '';
        },
        (err: unknown) => {
          if (!this.stopped) log.debug({ err, datacenter, query: name }, 'prepared query definition not read; its results are shared');
        },
      )
      .finally(() => {
        definition.at = this.now();
        definition.inFlight = null;
      });
    definition.inFlight = done;
    return done;
  }

  private run(entry: Entry, definition: Definition, datacenter: string, name: string, source: string): Promise<void> {
    const { api, timeoutMs, allowStale, log } = this.options;
    const done = api
      .executeQuery(name, { dc: datacenter, source, stale: allowStale, timeoutMs, signal: this.abort.signal })
      .then(
        (result) => {
          const now = this.now();
          entry.outcome = result === null ? NOT_FOUND : { kind: 'result', result: { ...result, sorted: definition.near !== '' } };
          entry.fetchedAt = now;
          entry.freshUntil = now + freshFor(result?.ttl ?? null);
          entry.failedAt = 0;
        },
        (err: unknown) => {
          if (this.stopped) return;
          if (entry.failedAt === 0) log.warn({ err, datacenter, query: name }, 'prepared query execution failed');
          entry.failedAt = this.now();
        },
      )
      .finally(() => {
        entry.inFlight = null;
      });
    entry.inFlight = done;
    return done;
  }

  /** Adds `value` under `k`, dropping the oldest entry (insertion order) when the bound is reached. */
  private remember<T>(map: Map<string, T>, k: string, value: T): T {
    if (map.size >= this.maxEntries) {
      const oldest = map.keys().next();
      if (!oldest.done) map.delete(oldest.value);
    }
    map.set(k, value);
    return value;
  }
}

/** How long an execution is reused: the query's TTL (bounded), else a couple of seconds. */
function freshFor(ttlSeconds: number | null): number {
  if (ttlSeconds === null || ttlSeconds <= 0) return FRESH_NO_TTL_MS;
  return Math.min(ttlSeconds * 1000, MAX_FRESH_MS);
}

function key(datacenter: string, name: string): string {
  return `${datacenter.toLowerCase()}\u0000${name.toLowerCase()}`;
}

/** Results of a `Near: _ip` query are kept per client address; others are shared. */
function entryKey(datacenter: string, name: string, definition: Definition, source: string): string {
  return `${key(datacenter, name)}\u0000${definition.near === '_ip' ? source : ''}`;
}
