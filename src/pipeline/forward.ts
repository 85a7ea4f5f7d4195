/**
 * Stage: forwarding. Every name that reaches this stage goes to the upstream resolvers (src/forward/)
 * and its answer comes back re-rendered for this client: at once from the forward cache, else as a
 * pending reply. SERVFAIL when every upstream failed. When the client (or everyone) has too many
 * questions waiting on upstreams (src/forward/admission.ts), at once: no reply over UDP, SERVFAIL
 * over TCP. No reply for a client dropped because too many wait on the same question (it retries,
 * into the cache).
 *
 * Every answer says how it was had, for the query log and metrics: `forwardHit` (from the forward
 * cache), or `tried` (the upstreams asked) and, when one of them gave the reply, `upstream`.
 *
 * Answers from the forward cache say what the reply cache may keep: until the next whole second of
 * their age (their TTLs count down), and only while the catalog is the same (a change can make the
 * name ours). Stale answers (`stale`: an expired answer served because the upstreams failed or were
 * too slow, src/forward/stale.ts) are never kept: the next query must see the refreshed one.
 */

import { Rcode } from '../dns/constants.js';
import type { Forwarder } from '../forward/forwarder.js';
import type { Answer, Request, Stage, StageResult } from './stage.js';

export class ForwardStage implements Stage {
  readonly name = 'forward';

  constructor(private readonly forwarder: Pick<Forwarder, 'forward'>) {}

  handle(request: Request): StageResult {
    const out = this.forwarder.forward(request.query, request.packet, request.transport, request.maxSize, request.client.address);
    if (!(out instanceof Promise)) {
      if ('refused' in out) return out.refused === 'drop' ? { bytes: null } : request.fail(Rcode.SERVFAIL);
      if (out.stale) return { bytes: out.reply, forwardHit: true, stale: true };
      const snapshot = request.snapshot;
      if (snapshot === null) return { bytes: out.reply, forwardHit: true };
      return { bytes: out.reply, forwardHit: true, keep: { snapshot, dependsOn: null, rotation: null, validUntil: out.validUntil } };
    }
    return out.then(({ reply, upstream, tried, stale }): Answer => {
      if (reply === 'drop') return { bytes: null, tried };
      if (reply === null) return { ...request.fail(Rcode.SERVFAIL), tried };
      if (stale) return { bytes: reply, tried, stale: true };
      return upstream === null ? { bytes: reply, tried } : { bytes: reply, upstream, tried };
    });
  }
}
