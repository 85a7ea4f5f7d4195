/**
 * Prepared queries (`NAME.query[.DC].DOMAIN`) as the catalog side provides them: what an execution
 * gives (a `QueryOutcome`), how a source that executes them is asked (`PreparedQueries`, the
 * optional `queries` capability of a CatalogSource), and the definitions a catalog file may carry
 * (`QueryDefinition`, in types.ts with the other published records; evaluated against the
 * snapshot by src/answer/query.ts).
 *
 * Why two shapes: a catalog file's queries depend only on the catalog, so they travel with it
 * (CatalogData.queries, hence through the store, the reply cache's snapshot validity and the
 * --workers relay for free); Consul's are executed by Consul on demand, depend on the time and the
 * client's address (`Near: _ip`), and are kept by the Consul source's own bounded cache.
 */

import type { NodeRecord, ServiceRecord } from './types.js';


/** The instances an execution returned, as catalog records (in the order Consul gave them). */
export interface QueryResult {
  /** The service the query selected. */
  service: string;
  /** The datacenter that answered (another one after a failover): SRV targets name it. */
  datacenter: string;
  /** The query's DNS TTL in seconds, null when it has none (then the service TTL applies). */
  ttl: number | null;
  /**
   * Consul sorted the instances by distance (the query has `Near`): answers keep that order, as
   * Consul's DNS does. Otherwise Consul shuffled them, and answers rotate them instead.
   */
  sorted: boolean;
  nodes: readonly NodeRecord[];
  instances: readonly ServiceRecord[];
}

export type QueryOutcome =
  | { kind: 'result'; result: QueryResult }
  /** No such query (or no such datacenter): NXDOMAIN. */
  | { kind: 'not-found' }
  /** Consul could not be asked, and no result recent enough is kept: SERVFAIL. */
  | { kind: 'failed' };

/**
 * The capability of a source that executes prepared queries itself (Consul). `peek` is the answer
 * path's synchronous read; when it says nothing, the question waits (bounded by --fetch-timeout)
 * for `execute` and reads again.
 */
export interface PreparedQueries {
  /**
   * What is known of `name` in `datacenter` now, or null when it must be executed first. A kept
   * result past its freshness is still returned (within its bound) and refreshed in the background
   * with `source` as the client address.
   */
  peek(datacenter: string, name: string, source: string): QueryOutcome | null;
  /**
   * Executes the query (or joins the execution in flight) with `source` (the DNS client's address)
   * as the address Consul sorts `Near: _ip` by; resolves once `peek` has an outcome.
   */
  execute(datacenter: string, name: string, source: string): Promise<void>;
  /**
   * Whether `name`'s results depend on the client's address (`Near: _ip`, or not known yet: true),
   * so that a --workers worker keys what the primary sends it as the source does. Absent: true.
   */
  perClient?(datacenter: string, name: string): boolean;
}
