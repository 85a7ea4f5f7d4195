/**
 * Forwarding: names svcdns does not own go to the upstream resolvers, and their answers are cached.
 *
 * For one question: a live cache entry is answered at once, its TTLs counted down. Otherwise the
 * question joins the identical one already in flight, or goes upstream: each upstream in the
 * policy's order gets one try of at most `timeoutMs` (UDP, TCP when the answer is truncated or the
 * client asked over TCP, once more without EDNS if the upstream says FORMERR to it). A try fails
 * over to the next upstream on timeout, network error, a malformed reply, SERVFAIL or REFUSED; when
 * every upstream has failed the client gets SERVFAIL, at most `timeoutMs` x upstreams after asking,
 * or, if one gave a truncated answer whose TCP retry failed, that answer with TC.
 *
 * Cached: NOERROR with answers, for their smallest TTL; NXDOMAIN and NODATA for the SOA's
 * min(TTL, MINIMUM) (RFC 2308 5), and not at all without an SOA. Both capped by `cacheMaxTtl`.
 */

import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { HostPort } from '../config.js';
import { HEADER_SIZE, Rcode, RRType, Flag } from '../dns/constants.js';
import type { Query } from '../dns/wire.js';
import type { Transport } from '../resolver.js';
import { TtlLru } from './cache.js';
import { exchangeTcp, exchangeUdp, type Outcome } from './exchange.js';
import { buildUpstreamQuery, renderReply, type UpstreamMessage } from './message.js';
import { UpstreamSet, type Upstream, type UpstreamPolicy } from './upstreams.js';

export interface ForwarderOptions {
  upstreams: readonly HostPort[];
  policy: UpstreamPolicy;
  /** One try of one upstream, ms. */
  timeoutMs: number;
  /** Most distinct questions waiting on upstreams at once; beyond, SERVFAIL at once. */
  maxInflight: number;
  cacheSize: number;
  /** Seconds. */
  cacheMaxTtl: number;
  log: Logger;
  /** Clock for cache ages, ms; injected by tests. */
  now?: () => number;
  probeIntervalMs?: number;
}

export class Forwarder {
  private upstreams: UpstreamSet;
  private readonly cache: TtlLru<UpstreamMessage>;
  private readonly inflight = new Map<string, Promise<UpstreamMessage | null>>();
  private readonly now: () => number;
  private readonly log: Logger;

  constructor(private readonly options: ForwarderOptions) {
    this.now = options.now ?? Date.now;
    this.log = options.log.child({ component: 'forward' });
    this.cache = new TtlLru(options.cacheSize, this.now);
    this.upstreams = this.upstreamSet(options.upstreams);
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

  private upstreamSet(addresses: readonly HostPort[]): UpstreamSet {
    return new UpstreamSet(addresses, {
      policy: this.options.policy,
      log: this.log,
      probeIntervalMs: this.options.probeIntervalMs ?? 5000,
      probe: (u) => this.probe(u),
    });
  }

  /**
   * The reply for a forwarded question: bytes at once from the cache, else a promise of them; null
   * when every upstream failed (the caller answers SERVFAIL). The promise never rejects.
   */
  forward(query: Query, packet: Buffer, transport: Transport, maxSize: number): Buffer | Promise<Buffer | null> {
    const key = cacheKey(query);
    const hit = this.cache.get(key);
    if (hit) return renderReply(hit.value, query, packet, Math.floor((this.now() - hit.storedAt) / 1000), maxSize);
    let flight = this.inflight.get(key);
    if (!flight) {
      if (this.inflight.size >= this.options.maxInflight) {
        this.overloaded();
        return Promise.resolve(null);
      }
      const started = this.resolve(query, packet, transport)
        .then((message) => {
          if (message && !message.truncated && (message.rcode === Rcode.NOERROR || message.rcode === Rcode.NXDOMAIN)) {
            this.cache.set(key, message, message.cacheTtl * 1000);
          }
          return message;
        })
        .catch((err: unknown) => {
          this.log.error({ err }, 'forwarding failed');
          return null;
        })
        .finally(() => {
          if (this.inflight.get(key) === started) this.inflight.delete(key);
        });
      flight = started;
      this.inflight.set(key, flight);
    }
    return flight.then((message) => (message ? renderReply(message, query, packet, 0, maxSize) : null));
  }

  private lastOverloadLog = -Infinity;

  /** Logged at most every 10 s: a flood must not flood the log too. */
  private overloaded(): void {
    const now = performance.now();
    if (now - this.lastOverloadLog < 10_000) return;
    this.lastOverloadLog = now;
    this.log.warn({ inflight: this.inflight.size }, 'too many questions waiting on upstreams (--upstream-max-inflight): answering SERVFAIL to new ones');
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  close(): void {
    this.upstreams.close();
    this.cache.clear();
  }

  /** Tries the upstreams in order; the first NOERROR or NXDOMAIN wins. */
  private async resolve(query: Query, packet: Buffer, transport: Transport): Promise<UpstreamMessage | null> {
    let fallback: UpstreamMessage | null = null;
    const upstreams = this.upstreams;
    for (const upstream of upstreams.order()) {
      const outcome = await this.ask(upstream, query, packet, transport);
      if (outcome.kind === 'failed') {
        upstreams.failed(upstream, outcome.reason);
        fallback ??= outcome.fallback ?? null;
        continue;
      }
      const { rcode } = outcome.message;
      if (rcode === Rcode.NOERROR || rcode === Rcode.NXDOMAIN) {
        upstreams.succeeded(upstream);
        return outcome.message;
      }
      // SERVFAIL, REFUSED and the like come from a live upstream that will not answer this name
      // (split DNS: dnsmasq or an authoritative server refuses names it does not serve), so they
      // fail over for this question only and say nothing against the upstream's health.
      upstreams.succeeded(upstream);
      this.log.debug({ upstream: upstream.label, rcode, name: query.name, type: query.type }, 'upstream could not answer; trying the next');
    }
    // No whole answer anywhere: a truncated one (TC set) still gives the client every record it holds.
    return fallback;
  }

  /** One try of one upstream, within one timeout: UDP, then TCP if truncated, then without EDNS on FORMERR. */
  private async ask(upstream: Upstream, query: Query, packet: Buffer, transport: Transport): Promise<Outcome> {
    const deadline = performance.now() + this.options.timeoutMs;
    let tcp = transport === 'tcp';
    let edns = true;
    let truncated: UpstreamMessage | undefined;
    const failed = (reason: string): Outcome =>
      truncated ? { kind: 'failed', reason: `TCP retry of a truncated answer failed: ${reason}`, fallback: truncated } : { kind: 'failed', reason };
    for (;;) {
      const remaining = Math.ceil(deadline - performance.now());
      if (remaining <= 0) return failed('timeout');
      const sent = buildUpstreamQuery(query, packet, randomId(), edns);
      const exchange = tcp ? exchangeTcp : exchangeUdp;
      const outcome = await exchange(upstream.address, sent, remaining, this.options.cacheMaxTtl);
      if (outcome.kind === 'reply') {
        if (outcome.message.truncated && !tcp) {
          truncated = outcome.message;
          tcp = true;
          continue;
        }
        if (outcome.message.rcode === Rcode.FORMERR && edns) {
          edns = false;
          continue;
        }
        return outcome;
      }
      return failed(outcome.reason);
    }
  }

  private async probe(upstream: Upstream): Promise<boolean> {
    const outcome = await exchangeUdp(upstream.address, probeQuery(randomId()), this.options.timeoutMs, 0);
    // Any well-formed answer, even REFUSED (a split-DNS server refuses `.`), shows it is up.
    return outcome.kind === 'reply';
  }
}

/** One cache entry per name (case aside), type, class, and DNSSEC wishes (DO, CD). */
function cacheKey(query: Query): string {
  return `${query.key}|${query.type}|${query.class}|${query.edns?.do ? 1 : 0}${query.flags & Flag.CD ? 1 : 0}`;
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
