/**
 * --query-log: one info line per answered query, reply-cache hits included. A subscriber of the
 * `query` event: with the log off, queries pay nothing for it (the chain reads no clock).
 *
 * The line's fields are the README's contract with operators (who grep them), so they are named
 * once here and documented there: client, port, transport, name (as asked), type and rcode (as
 * names: `SRV`, `NXDOMAIN`), answers, size, tc, durationUs, and where the reply came from:
 * `from` (`catalog`, `forward`, or the stage that refused or rejected the query), `cache`
 * (`reply`: the reply cache answered; `forward`: the forward cache did), `upstream` (`IP:PORT`
 * of the upstream whose reply it is), `tried` (the upstreams asked, when that is not just
 * `upstream`: a failover, or none answered) and `stale` (true: an expired forwarded answer served
 * stale, RFC 8767).
 */

import type { Logger } from 'pino';
import { Flag, rcodeName, typeName } from '../dns/constants.js';
import type { Answer } from '../pipeline/stage.js';
import type { Diagnostics, QueryEvent } from './channels.js';

/** What `from` says for the stages named otherwise: the answer stage answers from the catalog. */
const FROM: Readonly<Record<string, string>> = { answer: 'catalog' };

/** Where an answer came from, as the query log's `from` says it: `catalog`, `forward`, or the stage's name. */
export function answeredFrom(answer: Answer): string {
  const by = answer.by ?? 'unknown';
  return FROM[by] ?? by;
}

/** Which cache answered, as the query log's `cache` says it; undefined: none did. */
export function answeredCache(answer: Answer): 'reply' | 'forward' | undefined {
  return answer.hit ? 'reply' : answer.forwardHit ? 'forward' : undefined;
}

/** Starts logging queries; returns the function that stops it. */
export function logQueries(diagnostics: Diagnostics, log: Logger): () => void {
  const queries = log.child({ component: 'query' });
  return diagnostics.query.subscribe(({ request, answer, durationNs }: QueryEvent) => {
    const out = answer.bytes;
    // Dropped packets and those without a readable question (FORMERR, NOTIMP) are not queries.
    if (out === null || request.read.kind !== 'query') return;
    const { query } = request;
    const { upstream, tried, stale } = answer;
    const cache = answeredCache(answer);
    // Wire data goes under its own keys: the name is untrusted and JSON-escaped by pino.
    queries.info(
      {
        client: request.client.address,
        port: request.client.port,
        transport: request.transport,
        name: query.name,
        type: typeName(query.type),
        rcode: rcodeName(answer.rcode ?? out.readUInt16BE(2) & 0xf),
        answers: out.readUInt16BE(6),
        size: out.length,
        tc: (out.readUInt16BE(2) & Flag.TC) !== 0,
        durationUs: Math.round(durationNs / 1000),
        from: answeredFrom(answer),
        ...(cache !== undefined && { cache }),
        ...(upstream !== undefined && { upstream }),
        ...(tried !== undefined && (upstream === undefined || tried.length > 1) && { tried }),
        ...(stale === true && { stale }),
      },
      'query',
    );
  }, { timed: true });
}
