/**
 * Stage: questions about our domain (and reverse names of catalog addresses), answered from the
 * catalog snapshot by the answerer (src/answer/). Names that are not ours go on.
 *
 * Everything the snapshot holds is answered synchronously. When the answer needs data the snapshot
 * does not hold yet (a service watched on demand, another datacenter), the source is asked for it
 * and the question answered again once it arrives: a pending reply, bounded by --fetch-timeout,
 * after which the answer is SERVFAIL.
 *
 * Catalog entries whose address is a hostname are answered with a CNAME; the target's address
 * records are then resolved through the upstreams (`HostLookup`: the forwarder, its cache and its
 * bounds), waited for at most --fetch-timeout, and added: after the CNAME for A/AAAA, as
 * additional data for SRV targets. A target that does not resolve in time still gets its CNAME
 * (NOERROR): the name exists, only the target's records are missing.
 *
 * Prepared queries the source executes itself (Consul) go the way of on-demand data: the answerer
 * says the query must be executed, the source's `queries.execute` runs it (with the client's
 * address, for `Near: _ip`) and the question is answered again, all within --fetch-timeout.
 *
 * Its answers say what the reply cache may keep: authoritative NOERROR and NXDOMAIN answered from
 * a snapshot, for as long as the service they list keeps its generation, else for the snapshot.
 * Answers with records resolved upstream are not kept (their TTLs count down; the forward cache
 * keeps the upstream's part, so they stay cheap), nor answers made from a prepared query (its
 * execution is not in the snapshot).
 */

import type { Logger } from 'pino';
import { isPending, isQueryPending, type Answered, type Answerer, type Pending, type QueryPending } from '../answer/answerer.js';
import type { Snapshot } from '../catalog/snapshot.js';
import type { CatalogSource } from '../catalog/source.js';
import { Rcode, type RRType } from '../dns/constants.js';
import type { RR } from '../dns/codec.js';
import type { HostLookup, LookupResult } from '../forward/lookup.js';
import { fulfilsWithin } from '../util/pacing.js';
import { NEXT, type Answer, type Request, type Stage, type StageResult } from './stage.js';

export interface AnswerStageOptions {
  answerer: Answerer;
  /** Asked for data the snapshot does not hold yet (sources that load on demand). */
  source: Pick<CatalogSource, 'want' | 'queries'>;
  /** How long a question waits for data being fetched before SERVFAIL (--fetch-timeout), ms. */
  fetchTimeoutMs: number;
  /** Resolves the targets of hostname CNAMEs upstream; absent: they are answered as a CNAME alone. */
  lookup?: Pick<HostLookup, 'lookup'>;
  log: Logger;
}

export class AnswerStage implements Stage {
  readonly name = 'answer';

  constructor(private readonly options: AnswerStageOptions) {}

  handle(request: Request): StageResult {
    const snapshot = request.snapshot;
    // A cached question whose next rotation is not encoded yet asks for exactly that one.
    const client = request.client.address;
    const answered = this.options.answerer.answer(request.query, snapshot, request.turn, client);
    if (answered === null) return NEXT;
    if (isPending(answered) || isQueryPending(answered)) return this.afterFetch(request, answered);
    if (answered.chase !== undefined) return this.chased(request, answered);
    return toAnswer(request, answered, snapshot);
  }

  /**
   * The answer with its hostname targets' records added: at once when the forward cache has them
   * all, else once the upstreams have answered or --fetch-timeout has passed, whichever is first.
   */
  private chased(request: Request, answered: Answered, budgetMs = this.options.fetchTimeoutMs): Answer | Promise<Answer> {
    const { lookup } = this.options;
    const chase = answered.chase ?? [];
    const asked = chase.flatMap((c) => c.types.map((type) => ({ c, got: lookup?.lookup(c.name, type as typeof RRType.A) ?? null })));
    const finish = (results: readonly LookupResult[]): Answer => {
      const answers = [...answered.answers];
      const additional = [...answered.additional];
      // The A and the AAAA lookup of one name each bring its whole CNAME chain: each record once.
      const seen = new Set<string>();
      results.forEach((records, i) => {
        const into = asked[i]!.c.section === 'answer' ? answers : additional;
        for (const rr of records ?? []) {
          const key = recordKey(rr);
          if (seen.has(key)) continue;
          seen.add(key);
          into.push(rr);
        }
      });
      return toAnswer(request, { ...answered, answers, additional, chase: undefined }, null);
    };
    if (!asked.some((a) => a.got instanceof Promise)) return finish(asked.map((a) => a.got as LookupResult));
    // Each lookup on its own: a target that answers in time is added even if another does not.
    const settled: LookupResult[] = asked.map(() => null);
    const each = asked.map(async (a, i) => {
      settled[i] = await a.got;
    });
    return fulfilsWithin(Promise.all(each), budgetMs).then(() => finish(settled));
  }

  /** Waits (bounded) for the pending data or query execution, then answers again. */
  private async afterFetch(request: Request, pending: Pending | QueryPending): Promise<Answer> {
    const { source, fetchTimeoutMs, answerer, log } = this.options;
    const client = request.client.address;
    const started = performance.now();
    try {
      const fetched = isPending(pending)
        ? source.want
          ? source.want(pending.pending.datacenter, pending.pending.service, pending.pending.lookup)
          : Promise.reject(new Error('source cannot fetch'))
        : source.queries
          ? source.queries.execute(pending.queryPending.datacenter, pending.queryPending.name, client)
          : Promise.reject(new Error('source cannot execute prepared queries'));
      if (!(await fulfilsWithin(fetched, fetchTimeoutMs))) throw new Error('fetch timed out');
      const again = answerer.answer(request.query, request.context.store.current(), undefined, client);
      if (again === null || isPending(again) || isQueryPending(again)) return request.fail(Rcode.SERVFAIL);
      // One --fetch-timeout for the whole wait: the targets' lookups get what the fetch left.
      return again.chase !== undefined ? this.chased(request, again, fetchTimeoutMs - (performance.now() - started)) : toAnswer(request, again, null);
    } catch (err) {
      log.debug({ err, pending: isPending(pending) ? pending.pending : pending.queryPending }, 'answer waited for data that did not arrive');
      return request.fail(Rcode.SERVFAIL);
    }
  }
}

/** The encoded answer; kept by the reply cache only when answered from `snapshot` and an answer proper. */
function toAnswer(request: Request, answered: Answered, snapshot: Snapshot | null): Answer {
  const bytes = request.encode(answered);
  const { rcode, service = null, rotation } = answered;
  if (snapshot === null || answered.preparedQuery || answered.composite || !answered.authoritative || (rcode !== Rcode.NOERROR && rcode !== Rcode.NXDOMAIN)) {
    return { bytes, rcode, service };
  }
  return {
    bytes,
    rcode,
    service,
    keep: { snapshot, dependsOn: rotation ? service : null, rotation: rotation ?? null, validUntil: null },
  };
}

/** A record's identity for de-duplication: owner (case aside), type and data. */
function recordKey(rr: RR): string {
  const data = 'address' in rr ? rr.address.toString('hex') : 'target' in rr ? rr.target.toLowerCase() : '';
  return `${rr.name.toLowerCase()}|${rr.type}|${data}`;
}
