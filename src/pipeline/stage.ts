/**
 * The contract every stage of the request pipeline obeys, written once (as CoreDNS's
 * plugin/plugin.go writes Handler and NextOrFailure).
 *
 * A stage looks at a `Request` and returns one of three things:
 * - an `Answer`: the reply bytes (or null: no reply at all, the packet is dropped). Nothing after
 *   this stage runs.
 * - a promise of an `Answer` (a pending reply): the answer waits on something (an upstream, a
 *   fetch from the catalog source). The promise never rejects; nothing after this stage runs.
 * - `NEXT`: not mine; the next stage decides. When every stage says NEXT the chain answers
 *   REFUSED (nobody here serves that name for that client).
 * Values, never side channels: what a stage learns that a later one needs goes into the request
 * (`turn`), and what an earlier one needs to know about the answer goes into the answer (`keep`),
 * as does what the query log and metrics tell of it (`by`, `hit`, `forwardHit`, `upstream`, `tried`).
 * A stage may also implement `answered`: it is then told the answer a later stage gave to a
 * request it passed on (the reply cache keeps it).
 */

import type { Snapshot, ServiceGeneration } from '../catalog/snapshot.js';
import { encodeReply, type Reply } from '../dns/codec.js';
import { HEADER_SIZE, MAX_TCP_SIZE, MIN_UDP_SIZE } from '../dns/constants.js';
import { Pointers, walkName } from '../dns/name-walker.js';
import { readQuery, type Query, type ReadResult } from '../dns/wire.js';
import type { Client, Transport } from './handler.js';

export const NEXT: unique symbol = Symbol('next');
export type Next = typeof NEXT;

export type StageResult = Answer | Promise<Answer> | Next;

export interface Stage {
  /** Short and stable: it names the stage in events, logs and metrics (`reply-cache`, `forward`). */
  readonly name: string;
  handle(request: Request): StageResult;
  /** Told of the answer a later stage gave to `request`, which this stage passed on. */
  answered?(request: Request, answer: Answer): void;
}

/** What a reply cache may keep a reply for, and how long it stays right. */
export interface Keep {
  /** The catalog the reply was made from (forwarded replies too: a change can make a name ours). */
  readonly snapshot: Snapshot;
  /** The reply lists this service's instances and nothing else: right while it keeps this generation. */
  readonly dependsOn: ServiceGeneration | null;
  /** Round robin: this is rotation `turn` of the record set's `count`. */
  readonly rotation: { readonly turn: number; readonly count: number } | null;
  /** Forwarded: until when (ms on the forward cache's clock) its TTLs are right; else null. */
  readonly validUntil: number | null;
}

export interface Answer {
  /** The reply; null: no reply at all. */
  readonly bytes: Buffer | null;
  /** The rcode, extended ones included (BADVERS is 16); absent: the header's four bits. */
  readonly rcode?: number;
  /**
   * The stage whose reply this is; the chain sets it when the stage left it out. A reply cache hit
   * names the stage that made the stored reply, and says `hit`.
   */
  by?: string;
  readonly hit?: boolean;
  /** Set by stages whose reply may be kept by a reply cache; absent: not to be kept. */
  readonly keep?: Keep;
  /** The catalog service the answer read, if any (usage tracking keeps on-demand watches alive). */
  readonly service?: ServiceGeneration | null;
  /*
   * How a forwarded answer was had (set by the forward stage; absent from every other answer, and
   * from reply cache hits, which ask nothing of the forwarder). Exactly one of: `forwardHit`
   * (from the forward cache, nobody asked) or `tried` (the question went to upstreams).
   */
  /** From the forward cache: no upstream was asked. */
  readonly forwardHit?: boolean;
  /**
   * The upstreams asked for this question, `IP:PORT`, in the order asked (the one in `upstream`
   * included; a query that joined an identical one in flight shares its round). Empty when none
   * could be asked (too many questions in flight).
   */
  readonly tried?: readonly string[];
  /** The upstream whose reply this is, `IP:PORT`; absent when none gave one (SERVFAIL). */
  readonly upstream?: string;
  /**
   * A forwarded answer past its expiry, served stale (RFC 8767: the upstreams failed or were too
   * slow; with `forwardHit`, served at once). Never kept by a reply cache.
   */
  readonly stale?: boolean;
}

/** What every request of one pipeline shares. */
export interface RequestContext {
  /** The catalog store (src/catalog/store.ts): the snapshot served now, null before the first. */
  readonly store: { current(): Snapshot | null };
  /** --max-udp-size: the cap on what UDP clients advertise. */
  readonly maxUdpSize: number;
  /** Whether a client gets RA: it may have names forwarded, and there is somewhere to forward to. */
  readonly recursive: (address: string) => boolean;
}

/**
 * One query on its way through the pipeline. The packet is parsed only when a stage asks
 * (`read`, `query`): a reply cache hit never parses it.
 */
export class Request {
  /** Set by the reply cache on a miss for a rotation it lacks: the turn the answer is to give. */
  turn: number | undefined = undefined;
  /** The question's type when a stage read it off the bytes already (a reply cache hit); -1: not known. */
  knownType = -1;
  private readResult: ReadResult | undefined = undefined;
  private snap: Snapshot | null | undefined = undefined;

  constructor(
    readonly packet: Buffer,
    readonly transport: Transport,
    readonly client: Client,
    readonly context: RequestContext,
    /** Someone listened to query events when it arrived: its answer is published. */
    readonly observed: boolean,
    /**
     * performance.now() when timing began: at arrival when a listener wants every query timed
     * (the query log); otherwise when a stage went pending (set by the chain); 0: not timed.
     */
    public startedAt: number,
  ) {}

  /** The full, checked read of the packet (dns/wire.ts), done once. */
  get read(): ReadResult {
    return (this.readResult ??= readQuery(this.packet));
  }

  /** The question; only for stages after the one that answers unreadable packets. */
  get query(): Query {
    const read = this.read;
    if (read.kind !== 'query') throw new Error(`no query in this packet (${read.kind})`);
    return read.query;
  }

  /**
   * The question's type, for counting: from the parsed query if a stage parsed it, else read past
   * the name without parsing anything else (a reply cache hit). -1 when there is no question to read.
   */
  get questionType(): number {
    if (this.knownType >= 0) return this.knownType;
    const read = this.readResult;
    if (read !== undefined) return read.kind === 'query' ? read.query.type : -1;
    const p = this.packet;
    if (p.length < HEADER_SIZE + 5 || (p[4] === 0 && p[5] === 0)) return -1;
    const end = walkName(p, HEADER_SIZE, Pointers.STOP);
    return end < 0 || end + 2 > p.length ? -1 : (p[end]! << 8) | p[end + 1]!;
  }

  /** The catalog now, read once: every stage of one request sees the same snapshot. */
  get snapshot(): Snapshot | null {
    if (this.snap === undefined) this.snap = this.context.store.current();
    return this.snap;
  }

  get recursionAvailable(): boolean {
    return this.context.recursive(this.client.address);
  }

  /** The largest reply this client takes: its EDNS size over UDP (512 without), capped; 65535 over TCP. */
  get maxSize(): number {
    return this.transport === 'tcp' ? MAX_TCP_SIZE : Math.min(this.query.edns?.udpSize ?? MIN_UDP_SIZE, this.context.maxUdpSize);
  }

  /** Encodes `reply` for this client: RA as it deserves, fitted to its size. */
  encode(reply: Reply): Buffer {
    const ra = this.recursionAvailable;
    return encodeReply(this.query, this.packet, ra === reply.recursionAvailable ? reply : { ...reply, recursionAvailable: ra }, this.maxSize);
  }

  /** An answer with no records and `rcode` (REFUSED, SERVFAIL, BADVERS). */
  fail(rcode: number): Answer {
    return { bytes: this.encode(bare(rcode)), rcode };
  }
}

const NO_RECORDS = Object.freeze([]);

function bare(rcode: number): Reply {
  return { rcode, authoritative: false, recursionAvailable: false, answers: NO_RECORDS, authority: NO_RECORDS, additional: NO_RECORDS };
}
