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
 * At most `maxEntries` entries; the least recently used goes first when a new one needs room.
 *
 * Bounds against random names (each unknown name would cost Consul a request carrying the token)
 * and spoofed client addresses (each would cost a `Near: _ip` execution):
 * - at most `maxInFlight` requests to Consul at once from this cache (the others wait in order);
 * - at most `newNamesPerSecond` never-seen names are asked per second; beyond that the question
 *   gets no outcome (SERVFAIL) and Consul is not asked;
 * - at most `newClientsPerSecond` new client entries of per-client queries are executed per
 *   second, and at most `maxClientsPerQuery` are kept per query (its least recently used goes);
 * - names not (yet) known to exist (being read, or unknown to Consul) are kept apart from the
 *   definitions of real queries, so a flood of random names never evicts a real query's entries.
 *
 * Whether a result may be shared by every client depends on the query's `Near`, which an execution
 * does not return, so the definition is read too (/v1/query/NAME/explain: once, then every
 * DEFINITION_MS while in use; an unknown name costs that read only). `Near: _ip` sorts by the
 * client's address: such a query's results are kept per client address (the address of the DNS
 * client goes to Consul as X-Forwarded-For), and so are those of a query whose definition could
 * not be read yet (it may have `Near: _ip`: sharing could hand one client another's order). Any
 * other query's result is shared. Concurrent first questions for a name wait for its one read. With `Near` set,
 * the result is `sorted` (answers keep Consul's order); without, answers rotate it.
 */

import type { Logger } from 'pino';
import type { PreparedQueries, QueryOutcome } from '../queries.js';
import { Limiter } from '../../util/pacing.js';
import type { ConsulApi } from './api.js';

/** Kept results older than this are refreshed even when the query's TTL is longer. */
export const MAX_FRESH_MS = 30_000;
/** How long an execution of a query without a DNS TTL (or an unknown query) is reused. */
export const FRESH_NO_TTL_MS = 2_000;
/** After a failed execution, the next waits this long (questions meanwhile get the kept outcome). */
export const RETRY_MS = 1_000;
/** A query's definition (its `Near`) is read again after this long, while in use. */
export const DEFINITION_MS = 60_000;
/** Defaults of the bounds against floods (see the header). */
export const MAX_IN_FLIGHT = 8;
export const NEW_NAMES_PER_SECOND = 20;
export const NEW_CLIENTS_PER_SECOND = 20;
export const MAX_CLIENTS_PER_QUERY = 64;

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
  maxInFlight?: number;
  newNamesPerSecond?: number;
  newClientsPerSecond?: number;
  maxClientsPerQuery?: number;
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
  /** The per-client keys of its query (LRU order) when the entry is one client's; else null. */
  owner: Set<string> | null;
}

/** What the cache knows of a query's definition. */
interface Definition {
  /** Its `Near` ('' when none, or when the definition could not be read). */
  near: string;
  /** Consul has no such query (or no such datacenter). */
  missing: boolean;
  /** A read succeeded at least once: `near` is Consul's. Until then results are per client. */
  known: boolean;
  /** Keys of this query's per-client entries, least recently used first. */
  clients: Set<string>;
  /** When it was read (ms). */
  at: number;
  inFlight: Promise<void> | null;
}

const FAILED: QueryOutcome = Object.freeze({ kind: 'failed' });
const NOT_FOUND: QueryOutcome = Object.freeze({ kind: 'not-found' });

export class QueryCache implements PreparedQueries {
  private readonly entries = new Map<string, Entry>();
  /** Queries Consul has (or whose definition could not be read since they were). */
  private readonly definitions = new Map<string, Definition>();
  /** Names being read for the first time, or unknown to Consul: kept apart (see the header). */
  private readonly probing = new Map<string, Definition>();
  private readonly now: () => number;
  private readonly maxEntries: number;
  private readonly limiter: Limiter;
  private readonly newNames: Budget;
  private readonly newClients: Budget;
  private readonly maxClientsPerQuery: number;
  private stopped = false;
  private readonly abort = new AbortController();

  constructor(private readonly options: QueryCacheOptions) {
    this.now = options.now ?? Date.now;
    this.maxEntries = options.maxEntries ?? 1000;
    this.limiter = new Limiter(options.maxInFlight ?? MAX_IN_FLIGHT);
    this.newNames = new Budget(options.newNamesPerSecond ?? NEW_NAMES_PER_SECOND, this.now);
    this.newClients = new Budget(options.newClientsPerSecond ?? NEW_CLIENTS_PER_SECOND, this.now);
    this.maxClientsPerQuery = options.maxClientsPerQuery ?? MAX_CLIENTS_PER_QUERY;
  }

  /**
   * Whether results of `name` are kept per client address (`Near: _ip`, or its definition not read
   * yet), for a --workers primary to tell its workers how to key them.
   */
  perClient(datacenter: string, name: string): boolean {
    const definition = this.definition(key(datacenter, name));
    return definition === undefined || perClient(definition);
  }

  /** Kept executions, for tests and diagnostics. */
  get size(): number {
    return this.entries.size;
  }

  peek(datacenter: string, name: string, source: string): QueryOutcome | null {
    const definition = this.definition(key(datacenter, name));
    if (!definition) return null;
    const now = this.now();
    if (definition.missing) return now - definition.at < FRESH_NO_TTL_MS ? NOT_FOUND : null;
    // Read again every DEFINITION_MS while in use; a definition never read, after RETRY_MS.
    if (now - definition.at >= (definition.known ? DEFINITION_MS : RETRY_MS) && definition.inFlight === null) void this.explain(definition, key(datacenter, name), datacenter, name);
    const k = entryKey(datacenter, name, definition, source);
    const entry = this.entries.get(k);
    if (!entry) return null;
    this.touch(k, entry);
    if (now >= entry.freshUntil && entry.inFlight === null && now - entry.failedAt >= RETRY_MS) {
      // In use and no longer fresh: refresh in the background; this question gets what is kept.
      void this.run(entry, definition, datacenter, name, source);
    }
    return this.servable(entry, now);
  }

  async execute(datacenter: string, name: string, source: string): Promise<void> {
    if (this.stopped) throw new Error('consul source stopped');
    const dk = key(datacenter, name);
    let definition = this.definition(dk);
    if (!definition) {
      // A never-seen name: within the budget only, else no outcome (SERVFAIL), Consul not asked.
      if (!this.newNames.take()) return;
      definition = this.remember(this.probing, dk, { near: '', missing: false, known: false, clients: new Set(), at: 0, inFlight: null });
      await this.explain(definition, dk, datacenter, name);
    } else if (definition.missing && this.now() - definition.at >= FRESH_NO_TTL_MS) {
      await (definition.inFlight ?? this.explain(definition, dk, datacenter, name));
    } else if (definition.inFlight && definition.at === 0) {
      // Its first read is under way (another question started it): wait for it, so that this
      // question's entry is keyed as the definition says.
      await definition.inFlight;
    }
    if (definition.missing || this.stopped) return;
    const k = entryKey(datacenter, name, definition, source);
    let entry = this.entries.get(k);
    if (!entry) {
      const client = perClient(definition);
      if (client && !this.newClients.take()) return;
      entry = this.remember(this.entries, k, { outcome: null, fetchedAt: 0, freshUntil: 0, failedAt: 0, inFlight: null, owner: client ? definition.clients : null });
      if (client) this.addClient(definition, k);
    } else {
      this.touch(k, entry);
    }
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
    this.probing.clear();
  }

  private definition(dk: string): Definition | undefined {
    const known = this.definitions.get(dk);
    if (known) {
      this.definitions.delete(dk);
      this.definitions.set(dk, known);
      return known;
    }
    return this.probing.get(dk);
  }

  /** Marks `entry` (under `k`) used now: last to be evicted, in the cache and among its query's clients. */
  private touch(k: string, entry: Entry): void {
    this.entries.delete(k);
    this.entries.set(k, entry);
    if (entry.owner?.delete(k)) entry.owner.add(k);
  }

  /** Records a per-client entry of `definition`, evicting its least recently used client beyond the bound. */
  private addClient(definition: Definition, k: string): void {
    definition.clients.add(k);
    while (definition.clients.size > this.maxClientsPerQuery) {
      const oldest = definition.clients.keys().next().value!;
      definition.clients.delete(oldest);
      this.entries.delete(oldest);
    }
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

  /**
   * Reads the query's definition (its Near); a failure keeps what was known, and a definition never
   * read stays unknown (results per client). A query found to exist moves to `definitions`; one
   * Consul does not have, to `probing`.
   */
  private explain(definition: Definition, dk: string, datacenter: string, name: string): Promise<void> {
    const { api, timeoutMs, allowStale, log } = this.options;
    const done = this.limiter
      .run(() => api.explainQuery(name, { dc: datacenter, stale: allowStale, timeoutMs, signal: this.abort.signal }))
      .then(
        (explained) => {
          definition.missing = explained === null;
          definition.near = explained?.near ?? '';
          definition.known = explained !== null;
          if (this.stopped) return;
          const [from, to] = explained === null ? [this.definitions, this.probing] : [this.probing, this.definitions];
          if (from.get(dk) === definition) {
            from.delete(dk);
            this.remember(to, dk, definition);
          }
        },
        (err: unknown) => {
          if (!this.stopped) log.debug({ err, datacenter, query: name }, 'prepared query definition not read; results kept per client until it is');
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
    const done = this.limiter
      .run(() => api.executeQuery(name, { dc: datacenter, source, stale: allowStale, timeoutMs, signal: this.abort.signal }))
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

  /**
   * Adds `value` under `k`, dropping the least recently used entry when the bound is reached (maps
   * are kept in use order: a read moves its key last). An evicted definition takes its entries along.
   */
  private remember<T>(map: Map<string, T>, k: string, value: T): T {
    if (map.size >= this.maxEntries) {
      const oldest = map.entries().next();
      if (!oldest.done) {
        map.delete(oldest.value[0]);
        const gone = oldest.value[1] as Entry | Definition;
        if ('owner' in gone) gone.owner?.delete(oldest.value[0]);
        else for (const c of gone.clients) this.entries.delete(c);
      }
    }
    map.set(k, value);
    return value;
  }
}

/** At most `perSecond` takes per second of the clock (a window per whole second). */
class Budget {
  private window = -1;
  private used = 0;

  constructor(
    private readonly perSecond: number,
    private readonly now: () => number,
  ) {}

  take(): boolean {
    const window = Math.floor(this.now() / 1000);
    if (window !== this.window) {
      this.window = window;
      this.used = 0;
    }
    if (this.used >= this.perSecond) return false;
    this.used++;
    return true;
  }
}

/** Results kept per client: `Near: _ip`, or a definition never read (it may be). */
function perClient(definition: Definition): boolean {
  return definition.near === '_ip' || !definition.known;
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
  return `${key(datacenter, name)}\u0000${perClient(definition) ? source : ''}`;
}
