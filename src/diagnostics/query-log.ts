/**
 * --query-log: one info line per answered query (client, transport, name as asked, type, rcode,
 * answers, size, TC, and whether the answer was forwarded), reply-cache hits included. A subscriber
 * of the `query` event: with the log off, queries pay nothing for it.
 */

import type { Logger } from 'pino';
import { Flag } from '../dns/constants.js';
import type { Diagnostics, QueryEvent } from './channels.js';

/** Starts logging queries; returns the function that stops it. */
export function logQueries(diagnostics: Diagnostics, log: Logger): () => void {
  const queries = log.child({ component: 'query' });
  return diagnostics.query.subscribe(({ request, answer }: QueryEvent) => {
    const out = answer.bytes;
    // Dropped packets and those without a readable question (FORMERR, NOTIMP) are not queries.
    if (out === null || request.read.kind !== 'query') return;
    const { query } = request;
    // Wire data goes under its own keys: the name is untrusted and JSON-escaped by pino.
    queries.info(
      {
        client: request.client.address,
        port: request.client.port,
        transport: request.transport,
        name: query.name,
        type: query.type,
        rcode: answer.rcode ?? out.readUInt16BE(2) & 0xf,
        answers: out.readUInt16BE(6),
        size: out.length,
        tc: (out.readUInt16BE(2) & Flag.TC) !== 0,
        ...(answer.by === 'forward' && { forwarded: true }),
      },
      'query',
    );
  });
}
