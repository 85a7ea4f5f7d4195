/**
 * The diagnostics seam: every event svcdns has to tell is published here, once, by the code that
 * knows it; logs, usage tracking (and metrics) subscribe. Modelled on undici's
 * lib/core/diagnostics.js: node:diagnostics_channel channels, and publishers check
 * `hasSubscribers` first, so an event nobody listens to costs one property read and builds nothing.
 *
 * Channels belong to one server (a `Diagnostics` per server, named by symbols, not strings): two
 * servers in one process (tests, an embedding program) never hear each other's events.
 *
 * Events (the message types below):
 * - `query`: a query was answered (or dropped): by which stage, cache hit or not, how long it took.
 *   Published for every query that reaches a reply, the reply-cache hits included.
 * - `upstream`: one try of one upstream ended: which, how, how long.
 * - `state`: something svcdns depends on changed state (a Consul watch, an upstream, the catalog
 *   file, resolv.conf): failing with a problem, or fine again. The state logger turns these into
 *   one log line per change of state.
 * - `catalog`: a catalog snapshot was published (the snapshot, and the data it was built from).
 * - `rateLimit`: a UDP reply was limited by RRL (src/rrl/limiter.ts): dropped, or slipped (sent
 *   truncated). Frozen constant messages: a flood costs no allocation.
 * - `tcp`: the TCP listener refused a connection or closed one by its own rules (per-client cap,
 *   full table, idle). Rare but for abuse, and then one per connection.
 */

import { channel, type Channel } from 'node:diagnostics_channel';
import type { Logger } from 'pino';
import type { Snapshot } from '../catalog/snapshot.js';
import type { CatalogData } from '../catalog/types.js';
import type { TcpClose } from '../listen/tcp-table.js';
import type { Answer, Request } from '../pipeline/stage.js';

/**
 * A query's end: the request (transport, client, packet, parsed query) and its answer. What the
 * answer says of how it was had (src/pipeline/stage.ts, `Answer`), as subscribers read it:
 * - `by`: the stage whose reply it is (`answer`: from the catalog; `forward`; `check-query`,
 *   `recursion-acl`, `end`: refusals and errors of the query itself);
 * - `hit`: a reply cache hit (a patched copy of a reply `by` made earlier; nothing else was asked);
 * - `forwardHit`: forwarded, answered from the forward cache;
 * - `tried` and `upstream`: forwarded to upstreams: those asked (`IP:PORT`, in order), and the one
 *   whose reply this is (absent when none gave one: SERVFAIL);
 * - `stale`: an expired forwarded answer served stale (RFC 8767, src/forward/stale.ts).
 * Published only for queries that arrived while someone listened.
 */
export interface QueryEvent {
  readonly request: Request;
  readonly answer: Answer;
  /**
   * Nanoseconds to the answer: from the packet's arrival (before any stage) while a listener that
   * times every query is subscribed (`subscribe(l, { timed: true })`: the query log); otherwise,
   * for an answer that waited (an upstream, an on-demand fetch), from the moment it began to wait,
   * and 0 for one given at once (a few µs of work, not worth two clock reads per query).
   */
  readonly durationNs: number;
}

export interface UpstreamEvent {
  /** `IP:PORT` as logs write it. */
  readonly upstream: string;
  /** 'reply' (any well-formed reply: see `rcode`), or why the try failed ('timeout', 'aborted', ...). */
  readonly outcome: string;
  /** The reply's rcode; null when the try failed. */
  readonly rcode: number | null;
  readonly durationMs: number;
}

/**
 * A change (or a confirmation) of the state of something svcdns depends on. The state logger keeps,
 * per `key`, the set of `subject`s failing and the problem last logged:
 * - `problem` set: `subject` is failing. Logged (at `level`, with `message` and `fields`) when the
 *   problem differs from the one last logged for `key`; otherwise logged at debug as `repeat`, if given.
 * - `problem` null: `subject` is fine. When it was the last failing subject of `key`, `key` is fine:
 *   if a problem had been logged, `message` (if given) is logged at info, the recovery, once.
 */
export interface StateEvent {
  /** The thing whose state is logged once per change: `consul`, `upstream 10.0.0.2:53`, a file. */
  readonly key: string;
  /** One part of it (a watch, the upstream, the file); a key is fine when all its subjects are. */
  readonly subject: string;
  readonly problem: string | null;
  /** Start afresh: forget every subject of `key` and the problem logged, and log nothing (a reload). */
  readonly forget?: boolean;
  readonly level?: 'error' | 'warn' | 'info';
  readonly message?: string;
  /** Logged at debug instead, when the problem is the one already logged. */
  readonly repeat?: string;
  readonly fields?: Readonly<Record<string, unknown>>;
  /** The component's logger, so the line carries the component's own bindings. */
  readonly log: Logger;
}

export interface CatalogEvent {
  /** The snapshot now served (its serial, datacenters, services with their generations). */
  readonly snapshot: Snapshot;
  /** What it was built from: the nodes and service instances the source published. */
  readonly data: CatalogData;
}

export interface RateLimitEvent {
  readonly outcome: 'dropped' | 'slipped';
}

/** A TCP connection the listener refused or closed by its own rules, and why (src/listen/tcp-table.ts). */
export interface TcpEvent {
  readonly reason: TcpClose;
}

/** One named channel with a message type: node:diagnostics_channel underneath. */
export class Topic<T> {
  private readonly channel: Channel;

  constructor(name: string) {
    this.channel = channel(Symbol(name));
  }

  private timedListeners = 0;

  /** Check this before building a message on a hot path. */
  get hasSubscribers(): boolean {
    return this.channel.hasSubscribers;
  }

  /** Some listener wants every message timed from its very start (see QueryEvent.durationNs). */
  get timed(): boolean {
    return this.timedListeners > 0;
  }

  publish(message: T): void {
    this.channel.publish(message);
  }

  /** Returns the function that unsubscribes. `timed`: this listener needs every message timed. */
  subscribe(listener: (message: T) => void, options: { timed?: boolean } = {}): () => void {
    const l = listener as (message: unknown) => void;
    this.channel.subscribe(l);
    if (options.timed) this.timedListeners++;
    let subscribed = true;
    return () => {
      if (!subscribed) return;
      subscribed = false;
      this.channel.unsubscribe(l);
      if (options.timed) this.timedListeners--;
    };
  }
}

export class Diagnostics {
  readonly query = new Topic<QueryEvent>('svcdns:query');
  readonly upstream = new Topic<UpstreamEvent>('svcdns:upstream');
  readonly state = new Topic<StateEvent>('svcdns:state');
  readonly catalog = new Topic<CatalogEvent>('svcdns:catalog');
  readonly rateLimit = new Topic<RateLimitEvent>('svcdns:rate-limit');
  readonly tcp = new Topic<TcpEvent>('svcdns:tcp');
}
