/**
 * Forwarding: names svcdns does not own go to the upstream resolvers, and their answers are cached.
 *
 * For one question: a live cache entry is answered at once, its TTLs counted down. Otherwise the
 * question joins the identical one already in flight, or goes upstream. Upstreams are tried in the
 * policy's order, one more every `timeoutMs` (or at once when one fails), and a try is not given up
 * when the next starts: the first good answer from any of them wins and the others are cancelled,
 * so an upstream that is merely slow still answers (as dnsmasq does). A try is UDP, then TCP when
 * the answer is truncated or the client asked over TCP, once more without EDNS if the upstream says
 * FORMERR to it. A try fails on a network error, a malformed reply, a referral (the upstream does
 * not recurse), SERVFAIL or REFUSED. Everything ends by `timeoutMs` x upstreams: SERVFAIL, or, if
 * one gave a truncated answer whose TCP retry failed, that answer with TC (to UDP clients).
 *
 * Cached: NOERROR with answers, for their smallest TTL; NXDOMAIN and NODATA for the SOA's
 * min(TTL, MINIMUM) (RFC 2308 5), and not at all without an SOA. Both capped by `cacheMaxTtl`.
 * Expired answers are kept `serveStaleMs` longer and served stale by the rules of stale.ts.
 *
 * Failing fast: while every upstream is down (unhealthy, and failing its `. NS` probe too:
 * upstreams.ts), one question at a time goes upstream (it, and the probes, find out when one is
 * back), and every other question is answered at once: stale if it can be, else SERVFAIL. While no
 * upstream is healthy, whoever waits on one waits at most `clientResponseTimeoutMs`.
 */

import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import type { Diagnostics } from '../diagnostics/channels.js';
import { Flag, HEADER_SIZE, Rcode, RRType } from '../dns/constants.js';
import { asciiLower, type Query } from '../dns/wire.js';
import type { Transport } from '../pipeline/handler.js';
import type { HostPort } from '../net/address.js';
import { fulfilsWithin } from '../util/pacing.js';
import { Admission, type Ticket } from './admission.js';
import { TtlLru, type CacheEntry } from './cache.js';
import { exchangeTcp, exchangeUdp, type Outcome } from './exchange.js';
import { buildUpstreamQuery, renderReply, type UpstreamMessage } from './message.js';
import { SocketBudget } from './socket-budget.js';
import { dueForPrefetch, inFailureRecheck, staleTtl } from './stale.js';
import { UpstreamSet, type Upstream, type UpstreamPolicy } from './upstreams.js';

export interface ForwarderOptions {
  upstreams: readonly HostPort[];
  policy: UpstreamPolicy;
  /** How long one upstream has before the next is asked too, ms. */
  timeoutMs: number;
  /** Most distinct questions waiting on upstreams at once; beyond, SERVFAIL at once. */
  maxInflight: number;
  /** Most questions one client (address; IPv6 /64) may have waiting on upstreams; beyond, refused at once (`Refused`). */
  maxPerClient: number;
  /** Clients exempt from the per-client bound (--client-limits-exempt). */
  exempt?: (address: string) => boolean;
  /** Upstream sockets open at once at most (the open-file budget, src/forward/open-files.ts); absent: no bound but maxInflight's. */
  maxSockets?: number;
  cacheSize: number;
  /** Bytes of cached replies at most. */
  cacheMaxBytes: number;
  /** Seconds. */
  cacheMaxTtl: number;
  log: Logger;
  /** Upstream tries and health changes are published here. */
  diagnostics: Diagnostics;
  /** How long past its expiry an answer may be served stale, ms; 0: never. */
  serveStaleMs?: number;
  /** How long a client waits on upstreams for an answer it could have stale (or while all are unhealthy), ms. */
  clientResponseTimeoutMs?: number;
  /** Refresh a cache hit in the last tenth of its TTL in the background. */
  prefetch?: boolean;
  /** Clock for cache ages, ms; injected by tests. */
  now?: () => number;
  probeIntervalMs?: number;
}

/** Clients waiting on one question in flight at most; more are dropped (they retry, and hit the cache). */
export const MAX_WAITERS_PER_QUESTION = 100;

/** An upstream's health probe (`. NS`) is given at most this long, ms (less if --upstream-timeout is). */
export const PROBE_TIMEOUT_MS = 1500;

interface Flight {
  result: Promise<Resolved>;
  waiters: number;
  /** The upstreams asked so far, filled as the round goes (what a client that stops waiting was told of). */
  tried: string[];
}

/** One upstream round: the message that won (null: none), whose it is, and every upstream asked. */
interface Resolved {
  message: UpstreamMessage | null;
  upstream: string | null;
  tried: readonly string[];
}

/**
 * A reply from the forward cache, and until when (ms on the forwarder's clock) its TTLs are right:
 * the next whole second of the entry's age, or its expiry.
 */
export interface CachedReply {
  reply: Buffer;
  validUntil: number;
  /** An expired answer served stale (TTL 30): right for no time at all, so never kept elsewhere. */
  stale?: true;
}

/**
 * A question the bounds refused (admission.ts), answered at once and cheaply (a flood is made of
 * them): over UDP dropped, as BIND drops queries past its recursive-clients quota (a real client
 * retries later; a flood gets no reply to cost a send); over TCP SERVFAIL (a TCP client would wait).
 */
export interface Refused {
  readonly refused: 'drop' | 'servfail';
}

const REFUSED_DROP: Refused = Object.freeze({ refused: 'drop' });
const REFUSED_SERVFAIL: Refused = Object.freeze({ refused: 'servfail' });

export interface ForwarderStats {
  readonly cache: { readonly entries: number; readonly hits: number; readonly misses: number };
  /** `IP:PORT` of each upstream in use and whether it is healthy (unhealthy ones are tried last). */
  readonly upstreams: readonly { readonly upstream: string; readonly healthy: boolean }[];
  /** Questions waiting on upstreams. */
  readonly inflight: number;
  /** The bound on them in force (--upstream-max-inflight, or lower when it did not fit the open-file limit). */
  readonly maxInflight: number;
  /** Questions refused at once (`Refused`, or served stale): their client had too many waiting, or everyone had. */
  readonly refused: { readonly client: number; readonly global: number };
}

/**
 * How a question that went upstream ended (the forward stage puts `upstream` and `tried` on its
 * Answer, where the query log and metrics read them). Upstreams are named `IP:PORT`, as logs write them.
 */
export interface Forwarded {
  /** The reply for this client; null: none to give (the caller answers SERVFAIL); 'drop': no reply at all. */
  readonly reply: Buffer | null | 'drop';
  /** The upstream whose reply this is; null when no upstream gave one (every try failed, or none was made). */
  readonly upstream: string | null;
  /**
   * The upstreams asked for this question, in the order asked, the one in `upstream` included (a
   * client that joined an identical question in flight shares its round). Empty when none was asked
   * (too many questions in flight, too many clients waiting on this one, no upstreams).
   */
  readonly tried: readonly string[];
  /** `reply` is an expired answer served stale, because the upstreams failed or were too slow. */
  readonly stale?: true;
}

/** Nothing asked, nothing to give: SERVFAIL. */
const NOT_ASKED: Forwarded = Object.freeze({ reply: null, upstream: null, tried: Object.freeze([]) });
const NOT_ASKED_DROP: Forwarded = Object.freeze({ ...NOT_ASKED, reply: 'drop' });

/** The abort reason given to the exchanges still running when another upstream has answered. */
const RACE_OVER = new Error('another upstream answered first');
/** ... and when the forwarder stops: no round outlives it (one may run long after its clients had answers). */
const CLOSED = new Error('the forwarder stopped');

export class Forwarder {
  private upstreams: UpstreamSet;
  private readonly cache: TtlLru<UpstreamMessage>;
  private readonly inflight = new Map<string, Flight>();
  /** While every upstream is down: the one question let go upstream (failing fast); null: none. */
  private trial: string | null = null;
  /** The aborts of the rounds running now. */
  private readonly rounds = new Set<AbortController>();
  private readonly now: () => number;
  private readonly log: Logger;
  /** When each overload message was last logged (performance.now()). */
  private readonly lastOverloadLog = new Map<string, number>();
  private readonly admission: Admission;
  private readonly sockets: SocketBudget | undefined;
  private cacheHits = 0;
  private cacheMisses = 0;

  constructor(private readonly options: ForwarderOptions) {
    this.now = options.now ?? Date.now;
    this.log = options.log.child({ component: 'forward' });
    this.cache = new TtlLru(options.cacheSize, options.cacheMaxBytes, (m) => m.bytes.length + 200, this.now, options.serveStaleMs ?? 0);
    this.upstreams = this.upstreamSet(options.upstreams);
    this.admission = new Admission({ maxInflight: options.maxInflight, maxPerClient: options.maxPerClient, ...(options.exempt && { exempt: options.exempt }) });
    this.sockets = options.maxSockets === undefined ? undefined : new SocketBudget(options.maxSockets, options.diagnostics, this.log);
  }

  /** There is somewhere to forward to. */
  get available(): boolean {
    return this.upstreams.all.length > 0;
  }

  /** A new list (resolv.conf changed): questions under way finish with the old one. */
  setUpstreams(addresses: readonly HostPort[]): void {
    this.upstreams.close();
    this.upstreams = this.upstreamSet(addresses);
  }

  /**
   * The reply for a forwarded question: at once from the cache (TTLs counted down, with the time
   * they stay right), else a promise of how the upstream round ended (`Forwarded`: its reply, null
   * when every upstream failed, `'drop'` for a client dropped because too many wait on the same
   * question; which upstream answered; which were asked). The promise never rejects. For a question
   * whose answer has expired within --serve-stale, that answer may come instead, with `stale` (at
   * once, or once the upstreams failed or the client response timer ran out: stale.ts). `client`:
   * the asker's address, for the per-client bound (src/forward/admission.ts); null: svcdns itself.
   */
  forward(query: Query, packet: Buffer, transport: Transport, maxSize: number, client: string | null = null): CachedReply | Refused | Promise<Forwarded> {
    const key = cacheKey(query, packet);
    const hit = this.cache.get(key);
    if (hit) {
      this.cacheHits++;
      const now = this.now();
      // Not while every upstream is down: a refresh nobody waits for must not take failing fast's one question.
      if (this.options.prefetch === true && dueForPrefetch(hit, now) && !this.inflight.has(key) && !this.upstreams.allDown && this.mayStart()) this.startFlight(key, query, packet, transport);
      const elapsed = Math.floor((now - hit.storedAt) / 1000);
      return {
        reply: renderReply(hit.value, query, packet, elapsed, maxSize),
        validUntil: Math.min(hit.storedAt + (elapsed + 1) * 1000, hit.expiresAt),
      };
    }
    this.cacheMisses++;
    const stale = this.cache.getStale(key);
    if (stale !== undefined) return this.forwardStale(key, stale, query, packet, transport, maxSize, client);
    const failingFast = this.upstreams.allDown;
    // No upstream healthy (down, or its probe not back yet): whoever waits, waits at most the
    // client response timer, then SERVFAIL; the round goes on, and its answer is cached.
    const impatient = failingFast || this.upstreams.allUnhealthy;
    let flight = this.inflight.get(key);
    if (flight === undefined) {
      // Failing fast: one question at a time finds out whether an upstream is back; the rest get
      // SERVFAIL at once (and cheaply: while every upstream is down, every miss comes this way).
      if (failingFast && this.trial !== null) return REFUSED_SERVFAIL;
    } else if (flight.waiters >= MAX_WAITERS_PER_QUESTION) {
      this.overloaded(`more than ${MAX_WAITERS_PER_QUESTION} clients waiting on one question: dropping the rest until it is answered`);
      // UDP clients retry (into the cache); a TCP client would just wait, so it gets SERVFAIL.
      return Promise.resolve(transport === 'udp' ? NOT_ASKED_DROP : NOT_ASKED);
    }
    const ticket = this.admitted(client, flight === undefined);
    if (ticket === null) return transport === 'udp' ? REFUSED_DROP : REFUSED_SERVFAIL;
    flight ??= this.startFlight(key, query, packet, transport);
    flight.waiters++;
    const asked = flight;
    const answer = (resolved: Resolved | null): Forwarded => {
      ticket.release();
      return (resolved && this.rendered(resolved, query, packet, transport, maxSize)) ?? { reply: null, upstream: null, tried: resolved?.tried ?? [...asked.tried] };
    };
    return impatient ? this.waitAtMost(asked).then(answer) : asked.result.then(answer);
  }

  /**
   * Whether this question may wait on upstreams (admission.ts: the client's bound, then the global
   * one for a new round); null, logged at most every 10 s, when it may not.
   */
  private admitted(client: string | null, startsQuestion: boolean): Ticket | null {
    const ticket = this.admission.admit(client, startsQuestion, this.inflight.size);
    if (ticket === 'client') {
      this.overloaded('a client has too many questions waiting on upstreams (--upstream-max-per-client): its new ones are dropped (UDP) or answered SERVFAIL (TCP)', { client });
      return null;
    }
    if (ticket === 'global') {
      this.overloaded('too many questions waiting on upstreams (--upstream-max-inflight): new ones are dropped (UDP) or answered SERVFAIL (TCP)');
      return null;
    }
    return ticket;
  }

  /**
   * A question whose cached answer has expired but may be served stale (stale.ts): at once, or after
   * waiting at most `clientResponseTimeoutMs` on its refresh, the fresh answer if it came in time.
   * A question the bounds refuse (admission.ts) gets the stale answer at once, and starts no refresh.
   */
  private forwardStale(
    key: string,
    entry: CacheEntry<UpstreamMessage>,
    query: Query,
    packet: Buffer,
    transport: Transport,
    maxSize: number,
    client: string | null,
  ): CachedReply | Promise<Forwarded> {
    const now = this.now();
    const staleReply = (): Buffer => renderReply(entry.value, query, packet, 0, maxSize, staleTtl(this.options.cacheMaxTtl));
    const atOnce = (): CachedReply => ({ reply: staleReply(), validUntil: now, stale: true });
    if (inFailureRecheck(entry, now)) return atOnce();
    const failingFast = this.upstreams.allDown;
    let flight = this.inflight.get(key);
    if (flight === undefined && !this.mayStart()) return atOnce();
    const ticket = this.admission.admit(client, flight === undefined, this.inflight.size);
    if (typeof ticket === 'string') return atOnce();
    flight ??= this.startFlight(key, query, packet, transport);
    if (failingFast || this.clientResponseTimeoutMs === 0 || flight.waiters >= MAX_WAITERS_PER_QUESTION) {
      // The refresh goes on in the background; this client waits for nothing.
      ticket.release();
      return atOnce();
    }
    flight.waiters++;
    const asked = flight;
    return this.waitAtMost(asked).then((resolved): Forwarded => {
      ticket.release();
      const fresh = resolved && this.rendered(resolved, query, packet, transport, maxSize);
      return fresh ?? { reply: staleReply(), upstream: null, tried: [...(resolved?.tried ?? asked.tried)], stale: true };
    });
  }

  /** The round's outcome if it ends within `clientResponseTimeoutMs`; null if it does not (it goes on). */
  private async waitAtMost(flight: Flight): Promise<Resolved | null> {
    return (await fulfilsWithin(flight.result, this.clientResponseTimeoutMs)) ? flight.result : null;
  }

  private get clientResponseTimeoutMs(): number {
    return this.options.clientResponseTimeoutMs ?? 1800;
  }

  /** The round's answer for this client; null when there is none (every upstream failed; TC to a TCP client). */
  private rendered({ message, upstream, tried }: Resolved, query: Query, packet: Buffer, transport: Transport, maxSize: number): Forwarded | null {
    // TC means "retry over TCP"; over TCP it means nothing. A TCP client gets SERVFAIL instead.
    if (message === null || (message.truncated && transport === 'tcp')) return null;
    return { reply: renderReply(message, query, packet, 0, maxSize), upstream, tried };
  }

  /** A new round may start without waiting clients of its own: not past the bound, nor while failing fast's one question is out. */
  private mayStart(): boolean {
    return this.inflight.size < this.admission.maxInflight && !(this.trial !== null && this.upstreams.allDown);
  }

  /** A round upstream for `key`, joined by identical questions until it ends. */
  private startFlight(key: string, query: Query, packet: Buffer, transport: Transport): Flight {
    if (this.upstreams.allDown) this.trial ??= key;
    const tried: string[] = [];
    const flight: Flight = { result: this.fetch(key, query, packet, transport, tried), waiters: 0, tried };
    this.inflight.set(key, flight);
    return flight;
  }

  /** For metrics and /status: the forward cache's counts, and each upstream's health now. */
  stats(): ForwarderStats {
    return {
      cache: { entries: this.cache.size, hits: this.cacheHits, misses: this.cacheMisses },
      upstreams: this.upstreams.all.map((u) => ({ upstream: u.label, healthy: u.healthy })),
      inflight: this.inflight.size,
      maxInflight: this.admission.maxInflight,
      refused: this.admission.refused(),
    };
  }

  /** Stops: rounds still running (a background refresh, failing fast's question) are cancelled. */
  close(): void {
    this.upstreams.close();
    this.cache.clear();
    for (const round of this.rounds) round.abort(CLOSED);
  }

  private upstreamSet(addresses: readonly HostPort[]): UpstreamSet {
    return new UpstreamSet(addresses, {
      policy: this.options.policy,
      log: this.log,
      diagnostics: this.options.diagnostics,
      probeIntervalMs: this.options.probeIntervalMs ?? 5000,
      probe: (u) => this.probe(u),
    });
  }

  /** Each message logged at most every 10 s: a flood must not flood the log too. */
  private overloaded(message: string, fields: Record<string, unknown> = {}): void {
    const now = performance.now();
    if (now - (this.lastOverloadLog.get(message) ?? -Infinity) < 10_000) return;
    this.lastOverloadLog.set(message, now);
    this.log.warn({ ...fields, inflight: this.inflight.size, maxInflight: this.admission.maxInflight }, message);
  }

  /** One upstream round for a question, cached when it may be; never rejects. */
  private async fetch(key: string, query: Query, packet: Buffer, transport: Transport, tried: string[]): Promise<Resolved> {
    try {
      const resolved = await this.resolve(query, packet, transport, tried);
      const { message } = resolved;
      if (message && !message.truncated && (message.rcode === Rcode.NOERROR || message.rcode === Rcode.NXDOMAIN)) {
        this.cache.set(key, message, message.cacheTtl * 1000);
      } else if (message === null) {
        this.cache.refreshFailed(key);
      }
      return resolved;
    } catch (err) {
      this.log.error({ err }, 'forwarding failed');
      return { message: null, upstream: null, tried: [] };
    } finally {
      this.inflight.delete(key);
      if (this.trial === key) this.trial = null;
    }
  }

  /** Races the upstreams (see the header); the first NOERROR or NXDOMAIN wins. */
  private resolve(query: Query, packet: Buffer, transport: Transport, tried: string[]): Promise<Resolved> {
    const upstreams = this.upstreams;
    const order = upstreams.order();
    const { timeoutMs } = this.options;
    const deadline = performance.now() + timeoutMs * order.length;
    const abort = new AbortController();
    // One listener per running exchange: many upstreams are not a leak.
    setMaxListeners(Math.max(10, order.length * 2), abort.signal);
    this.rounds.add(abort);
    return new Promise((resolve) => {
      let next = 0;
      let running = 0;
      let done = false;
      let fallback: { message: UpstreamMessage; upstream: string } | null = null;
      let timer: NodeJS.Timeout | undefined;
      const finish = (message: UpstreamMessage | null, upstream: string | null): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.rounds.delete(abort);
        // Only exchanges still running need telling; and with a reason of our own, abort() does not
        // build a DOMException (with its stack) for every forwarded question.
        if (running > 0) abort.abort(RACE_OVER);
        resolve({ message, upstream, tried });
      };
      const launch = (): void => {
        clearTimeout(timer);
        if (done) return;
        if (abort.signal.aborted) return finish(null, null); // the forwarder stopped
        if (next >= order.length) {
          if (running === 0) finish(fallback?.message ?? null, fallback?.upstream ?? null);
          return;
        }
        const upstream = order[next++]!;
        tried.push(upstream.label);
        const started = performance.now();
        running++;
        void this.ask(upstream, query, packet, transport, deadline, abort.signal).then((outcome) => {
          running--;
          const tries = this.options.diagnostics.upstream;
          if (tries.hasSubscribers) {
            const failed = outcome.kind === 'failed';
            tries.publish({
              upstream: upstream.label,
              outcome: failed ? outcome.reason : 'reply',
              rcode: failed ? null : outcome.message.rcode,
              durationMs: performance.now() - started,
            });
          }
          if (outcome.kind === 'failed') {
            // Cancelled because another answered: a failure only if it had already had its time.
            // A local failure (no socket on this host) says nothing of the upstream either.
            if (outcome.reason !== 'aborted' && outcome.local !== true) upstreams.failed(upstream, outcome.reason);
            else if (outcome.reason === 'aborted' && performance.now() - started >= timeoutMs) upstreams.failed(upstream, 'timeout');
            if (outcome.fallback) fallback ??= { message: outcome.fallback, upstream: upstream.label };
          } else {
            const { rcode } = outcome.message;
            upstreams.succeeded(upstream);
            if (rcode === Rcode.NOERROR || rcode === Rcode.NXDOMAIN) return finish(outcome.message, upstream.label);
            // SERVFAIL, REFUSED and the like come from a live upstream that will not answer this
            // name (split DNS: dnsmasq or an authoritative server refuses names it does not serve),
            // so they fail over for this question only and say nothing against its health.
            this.log.debug({ upstream: upstream.label, rcode, name: query.name, type: query.type }, 'upstream could not answer; trying the next');
          }
          launch();
        });
        if (next < order.length) timer = setTimeout(launch, timeoutMs);
      };
      if (order.length === 0) finish(null, null);
      else launch();
    });
  }

  /** One upstream, until `deadline`: UDP, then TCP if truncated, then without EDNS on FORMERR. */
  private async ask(upstream: Upstream, query: Query, packet: Buffer, transport: Transport, deadline: number, signal: AbortSignal): Promise<Outcome> {
    let tcp = transport === 'tcp';
    let edns = true;
    let truncated: UpstreamMessage | undefined;
    // `local`: no socket on this host; passed on, so it does not count against the upstream.
    const failed = (reason: string, local = false): Outcome =>
      truncated && reason !== 'aborted'
        ? { kind: 'failed', reason: `TCP retry of a truncated answer failed: ${reason}`, fallback: truncated, local }
        : { kind: 'failed', reason, local };
    for (;;) {
      const timeoutMs = Math.ceil(deadline - performance.now());
      if (timeoutMs <= 0) return failed('timeout');
      const sent = buildUpstreamQuery(query, packet, randomId(), edns);
      const exchange = tcp ? exchangeTcp : exchangeUdp;
      const outcome = await exchange(upstream.address, sent, { timeoutMs, maxTtl: this.options.cacheMaxTtl, signal, sockets: this.sockets });
      if (outcome.kind === 'failed') return failed(outcome.reason, outcome.local === true);
      const message = outcome.message;
      if (message.truncated && !tcp) {
        truncated = message;
        tcp = true;
        continue;
      }
      if (message.rcode === Rcode.FORMERR && edns) {
        edns = false;
        continue;
      }
      if (message.referral) return failed('a referral: the upstream does not recurse');
      return outcome;
    }
  }

  private async probe(upstream: Upstream): Promise<boolean> {
    // Bounded below --upstream-timeout: a live resolver answers `. NS` from its cache at once.
    const timeoutMs = Math.min(this.options.timeoutMs, PROBE_TIMEOUT_MS);
    const outcome = await exchangeUdp(upstream.address, probeQuery(randomId()), { timeoutMs, maxTtl: 0, sockets: this.sockets });
    // Any well-formed answer, even REFUSED (a split-DNS server refuses `.`), shows it is up.
    return outcome.kind === 'reply';
  }
}

/**
 * One cache entry per question: the name as it is on the wire with ASCII lower-cased (a label may
 * hold a '.' byte, so the dotted text would let `a\.b.c` share `a.b.c`'s entry), type, class, and
 * the DNSSEC wishes (DO, CD).
 */
function cacheKey(query: Query, packet: Buffer): string {
  const name = asciiLower(packet.toString('latin1', HEADER_SIZE, query.questionEnd - 4));
  return `${name}|${query.type}|${query.class}|${query.edns?.do ? 1 : 0}${query.flags & Flag.CD ? 1 : 0}`;
}

/** `. IN NS`, RD set: any working resolver answers it. */
function probeQuery(id: number): Buffer {
  const out = Buffer.alloc(HEADER_SIZE + 5);
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(Flag.RD, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(RRType.NS, HEADER_SIZE + 1);
  out.writeUInt16BE(1, HEADER_SIZE + 3);
  return out;
}

/** Query IDs from the CSPRNG, drawn in batches: an off-path attacker must guess 16 bits and a port. */
let idPool = Buffer.alloc(0);
let idAt = 0;
function randomId(): number {
  if (idAt + 2 > idPool.length) {
    idPool = randomBytes(1024);
    idAt = 0;
  }
  const id = idPool.readUInt16BE(idAt);
  idAt += 2;
  return id;
}
