/**
 * The chain: runs a request through the stages in order (stage.ts has the contract) and turns the
 * first answer into the reply the listener sends. Where the chain is assembled (src/server.ts),
 * each stage is one line; the order is the decision order for every query.
 *
 * The chain itself:
 * - tells the stages that passed the request on of the answer (`Stage.answered`), sync or not;
 * - publishes one `query` event per answered request on the diagnostics seam (only when someone
 *   listens: otherwise it builds nothing and reads no clock). The clock is read at arrival only
 *   for listeners that time every query (the query log); otherwise only for answers that wait
 *   (from the moment a stage goes pending): an answer given at once is a few µs of work, and two
 *   clock reads (~110 ns) would be a tenth of a reply-cache hit's cost;
 * - says REFUSED when every stage passed (nobody here serves that name for that client);
 * - catches what a stage throws (a bug, not bad input: bad input has its own answers), logs it,
 *   and answers SERVFAIL if the packet has a header to answer to and is not itself a response
 *   (QR set: never answered, whatever went wrong, as check-query.ts says);
 * - registers answers still pending with `inFlight`, so a stopping server can give up on them
 *   (SERVFAIL, told to the stages and published like any answer).
 */

import type { Logger } from 'pino';
import type { Diagnostics } from '../diagnostics/channels.js';
import { Flag, HEADER_SIZE, Rcode } from '../dns/constants.js';
import { errorReply, queryOpt } from '../dns/wire.js';
import type { DnsHandler } from './handler.js';
import type { InFlight } from './in-flight.js';
import { NEXT, Request, type Answer, type RequestContext, type Stage } from './stage.js';

export interface PipelineOptions {
  stages: readonly Stage[];
  context: RequestContext;
  diagnostics: Diagnostics;
  log: Logger;
  /** Where answers still pending are tracked, so a stopping server can wait for them or give up (SERVFAIL). */
  inFlight?: InFlight;
}

export function createPipeline(options: PipelineOptions): DnsHandler {
  const { stages, context, diagnostics, log, inFlight } = options;
  const queries = diagnostics.query;
  const tail: Stage = { name: 'end', handle: (request) => request.fail(Rcode.REFUSED) };
  const chain = [...stages, tail];

  /** Tells the stages before `index` (the ones that passed) of the answer, and publishes it. */
  const finish = (request: Request, index: number, answer: Answer): Buffer | null => {
    answer.by ??= chain[index]!.name;
    for (let i = index - 1; i >= 0; i--) chain[i]!.answered?.(request, answer);
    if (request.observed && queries.hasSubscribers) {
      queries.publish({ request, answer, durationNs: request.startedAt === 0 ? 0 : Math.round((performance.now() - request.startedAt) * 1e6) });
    }
    return answer.bytes;
  };

  const failed = (packet: Buffer, err: unknown): Buffer | null => {
    log.error({ err }, 'query handling failed');
    if (packet.length < HEADER_SIZE || packet[2]! & (Flag.QR >> 8)) return null;
    return errorReply(packet.readUInt16BE(0), packet.readUInt16BE(2), Rcode.SERVFAIL, queryOpt(packet));
  };

  return (packet, transport, client) => {
    const observed = queries.hasSubscribers;
    const request = new Request(packet, transport, client, context, observed, observed && queries.timed ? performance.now() : 0);
    try {
      for (let i = 0; ; i++) {
        const result = chain[i]!.handle(request);
        if (result === NEXT) continue;
        if (!(result instanceof Promise)) return finish(request, i, result);
        if (observed && request.startedAt === 0) request.startedAt = performance.now();
        const tracked = inFlight ? inFlight.track(result, () => request.fail(Rcode.SERVFAIL)) : result;
        return tracked.then(
          (answer) => finish(request, i, answer),
          (err: unknown) => failed(packet, err),
        );
      }
    } catch (err) {
      return failed(packet, err);
    }
  };
}
