/**
 * Stage: questions about our domain (and reverse names of catalog addresses), answered from the
 * catalog snapshot by the answerer (src/answer/). Names that are not ours go on.
 *
 * Everything the snapshot holds is answered synchronously. When the answer needs data the snapshot
 * does not hold yet (a service watched on demand, another datacenter), the source is asked for it
 * and the question answered again once it arrives: a pending reply, bounded by --fetch-timeout,
 * after which the answer is SERVFAIL.
 *
 * Its answers say what the reply cache may keep: authoritative NOERROR and NXDOMAIN answered from
 * a snapshot, for as long as the service they list keeps its generation, else for the snapshot.
 */

import type { Logger } from 'pino';
import { isPending, type Answered, type Answerer, type Pending } from '../answer/answerer.js';
import type { Snapshot } from '../catalog/snapshot.js';
import type { CatalogSource } from '../catalog/source.js';
import { Rcode } from '../dns/constants.js';
import { NEXT, type Answer, type Request, type Stage, type StageResult } from './stage.js';

export interface AnswerStageOptions {
  answerer: Answerer;
  /** Asked for data the snapshot does not hold yet (sources that load on demand). */
  source: Pick<CatalogSource, 'want'>;
  /** How long a question waits for data being fetched before SERVFAIL (--fetch-timeout), ms. */
  fetchTimeoutMs: number;
  log: Logger;
}

export class AnswerStage implements Stage {
  readonly name = 'answer';

  constructor(private readonly options: AnswerStageOptions) {}

  handle(request: Request): StageResult {
    const snapshot = request.snapshot;
    // A cached question whose next rotation is not encoded yet asks for exactly that one.
    const answered = this.options.answerer.answer(request.query, snapshot, request.turn);
    if (answered === null) return NEXT;
    if (isPending(answered)) return this.afterFetch(request, answered);
    return toAnswer(request, answered, snapshot);
  }

  /** Waits (bounded) for the pending data, then answers from the snapshot that holds it. */
  private async afterFetch(request: Request, pending: Pending): Promise<Answer> {
    const { source, fetchTimeoutMs, answerer, log } = this.options;
    try {
      const { datacenter, service, lookup } = pending.pending;
      const fetched = source.want ? source.want(datacenter, service, lookup) : Promise.reject(new Error('source cannot fetch'));
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('fetch timed out')), fetchTimeoutMs);
      });
      try {
        await Promise.race([fetched, timeout]);
      } finally {
        clearTimeout(timer);
      }
      const again = answerer.answer(request.query, request.context.store.current());
      return again === null || isPending(again) ? request.fail(Rcode.SERVFAIL) : toAnswer(request, again, null);
    } catch (err) {
      log.debug({ err, pending: pending.pending }, 'answer waited for data that did not arrive');
      return request.fail(Rcode.SERVFAIL);
    }
  }
}

/** The encoded answer; kept by the reply cache only when answered from `snapshot` and an answer proper. */
function toAnswer(request: Request, answered: Answered, snapshot: Snapshot | null): Answer {
  const bytes = request.encode(answered);
  const { rcode, service = null, rotation } = answered;
  if (snapshot === null || !answered.authoritative || (rcode !== Rcode.NOERROR && rcode !== Rcode.NXDOMAIN)) return { bytes, rcode, service };
  return {
    bytes,
    rcode,
    service,
    keep: { snapshot, dependsOn: rotation ? service : null, rotation: rotation ?? null, validUntil: null },
  };
}
