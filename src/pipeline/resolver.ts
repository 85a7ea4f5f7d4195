/**
 * From query bytes to reply bytes: the one function both listeners call.
 *
 * 0. The reply cache (src/pipeline/reply-cache.ts): a plain query whose reply is stored is answered by a
 *    patched copy, before anything below. Every reply below that answers a question (our answers,
 *    forwarded answers from the forward cache) is stored there for the next time.
 * Order of decisions on the full path (each answered here, once):
 * 1. `readQuery`: drop what has no readable header and every response; FORMERR/NOTIMP for the rest
 *    of what is not a single well-formed standard query.
 * 2. EDNS version other than 0: BADVERS (RFC 6891 6.1.3). Class other than IN/ANY: REFUSED.
 *    Zone transfers (AXFR/IXFR): REFUSED; svcdns has no zone to transfer.
 * 3. The answerer (our domain, reverse names of catalog addresses). When the answer needs data the
 *    snapshot does not hold yet (a service watched on demand, another datacenter), the source is
 *    asked for it and the question answered again once it arrives; past --fetch-timeout, SERVFAIL.
 *    Only that path is asynchronous: everything the snapshot holds is answered synchronously.
 * 4. Nobody answered: the forwarder, for clients allowed recursion (--allow-recursion) when there
 *    are upstreams; SERVFAIL when every upstream failed. Everyone else: REFUSED.
 * Every reply is fitted to the client's size: its EDNS size over UDP (512 without EDNS), capped by
 * --max-udp-size, and 65535 over TCP. RA is set exactly for the clients whose names are forwarded.
 */

import type { Logger } from 'pino';
import { isPending, type Answerer, type Pending } from '../answer/answerer.js';
import type { CatalogSource } from '../catalog/source.js';
import type { CatalogStore } from '../catalog/store.js';
import { encodeReply, type Reply } from '../dns/codec.js';
import { Flag, MAX_TCP_SIZE, MIN_UDP_SIZE, Rcode, RRClass } from '../dns/constants.js';
import { errorReply, readQuery, type Query } from '../dns/wire.js';
import type { Forwarder } from '../forward/forwarder.js';
import type { ReplyCache } from './reply-cache.js';
import type { Snapshot } from '../catalog/snapshot.js';

export type Transport = 'udp' | 'tcp';

/** Where a query came from, for the query log. */
export interface Client {
  address: string;
  port: number;
}

/**
 * Returns the reply bytes, or null when the packet gets no reply at all; a promise only when the
 * answer waits for data being fetched. Never throws, and the promise never rejects.
 */
export type DnsHandler = (packet: Buffer, transport: Transport, client: Client) => Buffer | null | Promise<Buffer | null>;

export interface ResolverOptions {
  answerer: Answerer;
  store: CatalogStore;
  /** Asked for data the snapshot does not hold yet (sources that load on demand). */
  source: Pick<CatalogSource, 'want'>;
  log: Logger;
  /** Cap on UDP reply size below what clients advertise (--max-udp-size). */
  maxUdpSize: number;
  /** Log every answered query at info level (--query-log). */
  queryLog: boolean;
  /** How long a question waits for data being fetched before SERVFAIL (--fetch-timeout), ms. */
  fetchTimeoutMs: number;
  /** Where other names go; while it has no upstreams (or is null), they are REFUSED. */
  forwarder: Pick<Forwarder, 'forward' | 'available'> | null;
  /**
   * Pre-encoded replies (the hot path), consulted before anything else and filled with what the
   * full path answers. Not used while every query is logged (--query-log).
   */
  replyCache?: ReplyCache | null;
  /** Whether a client address may have names forwarded. */
  recursionAllowed: (address: string) => boolean;
}

const AXFR = 252;
const IXFR = 251;

const NO_RECORDS = Object.freeze([]);

function bare(rcode: number): Reply {
  return { rcode, authoritative: false, recursionAvailable: false, answers: NO_RECORDS, authority: NO_RECORDS, additional: NO_RECORDS };
}

export function createResolver(options: ResolverOptions): DnsHandler {
  const { answerer, store, source, log, maxUdpSize, queryLog, fetchTimeoutMs, forwarder, recursionAllowed } = options;
  const queries = log.child({ component: 'query' });
  const hot = options.replyCache?.enabled && !queryLog ? options.replyCache : null;

  /** The recursion ACL per client address, remembered: checking it is far dearer than a map lookup. */
  const allowedByAddress = new Map<string, boolean>();
  const allowed = (address: string): boolean => {
    let yes = allowedByAddress.get(address);
    if (yes === undefined) {
      if (allowedByAddress.size >= 4096) allowedByAddress.clear();
      yes = recursionAllowed(address);
      allowedByAddress.set(address, yes);
    }
    return yes;
  };
  const recursiveAddress = (address: string): boolean => forwarder !== null && forwarder.available && allowed(address);

  const maxSize = (query: Query, transport: Transport): number =>
    transport === 'tcp' ? MAX_TCP_SIZE : Math.min(query.edns?.udpSize ?? MIN_UDP_SIZE, maxUdpSize);

  /** Recursion is available to this client: there is somewhere to forward to, and it may. */
  const recursive = (client: Client): boolean => recursiveAddress(client.address);

  function logQuery(query: Query, out: Buffer, rcode: number, transport: Transport, client: Client, forwarded: boolean): void {
    // Wire data goes under its own keys: the name is untrusted and JSON-escaped by pino.
    queries.info(
      {
        client: client.address,
        port: client.port,
        transport,
        name: query.name,
        type: query.type,
        rcode,
        answers: out.readUInt16BE(6),
        size: out.length,
        tc: (out.readUInt16BE(2) & Flag.TC) !== 0,
        ...(forwarded && { forwarded }),
      },
      'query',
    );
  }

  function finish(query: Query, packet: Buffer, reply: Reply, transport: Transport, client: Client): Buffer {
    const ra = recursive(client);
    const out = encodeReply(query, packet, ra === reply.recursionAvailable ? reply : { ...reply, recursionAvailable: ra }, maxSize(query, transport));
    if (queryLog) logQuery(query, out, reply.rcode, transport, client, false);
    return out;
  }

  function forwarded(query: Query, packet: Buffer, transport: Transport, client: Client, snapshot: Snapshot | null): Buffer | null | Promise<Buffer | null> {
    const done = (out: Buffer | null | 'drop'): Buffer | null => {
      if (out === 'drop') return null;
      if (out === null) return finish(query, packet, bare(Rcode.SERVFAIL), transport, client);
      if (queryLog) logQuery(query, out, out.readUInt16BE(2) & 0xf, transport, client, true);
      return out;
    };
    const out = forwarder!.forward(query, packet, transport, maxSize(query, transport));
    if (!(out instanceof Promise)) {
      hot?.storeForwarded(packet, transport === 'tcp', out.reply, snapshot, out.validUntil);
      return done(out.reply);
    }
    return out.then(done).catch((err: unknown) => {
      log.error({ err }, 'query handling failed');
      return errorReply(query.id, query.flags, Rcode.SERVFAIL);
    });
  }

  /** Waits (bounded) for the pending data, then answers from the snapshot that holds it. */
  async function afterFetch(query: Query, packet: Buffer, pending: Pending, transport: Transport, client: Client): Promise<Buffer | null> {
    try {
      const { datacenter, service } = pending.pending;
      const fetched = source.want ? source.want(datacenter, service) : Promise.reject(new Error('source cannot fetch'));
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('fetch timed out')), fetchTimeoutMs);
      });
      try {
        await Promise.race([fetched, timeout]);
      } finally {
        clearTimeout(timer);
      }
      const again = answerer.answer(query, store.current());
      return finish(query, packet, again === null || isPending(again) ? bare(Rcode.SERVFAIL) : again, transport, client);
    } catch (err) {
      log.debug({ err, pending: pending.pending }, 'answer waited for data that did not arrive');
      try {
        return finish(query, packet, bare(Rcode.SERVFAIL), transport, client);
      } catch (e) {
        log.error({ err: e }, 'query handling failed');
        return null;
      }
    }
  }

  return (packet, transport, client) => {
    if (hot) {
      const out = hot.lookup(packet, transport === 'tcp', client.address, store.current(), recursiveAddress);
      if (out !== null) return out;
    }
    try {
      const read = readQuery(packet);
      if (read.kind === 'drop') return null;
      if (read.kind === 'error') return errorReply(read.id, read.flags, read.rcode);
      const query = read.query;

      if (query.edns && query.edns.version !== 0) return finish(query, packet, bare(Rcode.BADVERS), transport, client);
      if (query.class !== RRClass.IN && query.class !== RRClass.ANY) return finish(query, packet, bare(Rcode.REFUSED), transport, client);
      if (query.type === AXFR || query.type === IXFR) return finish(query, packet, bare(Rcode.REFUSED), transport, client);

      const snapshot = store.current();
      // A cached question whose next rotation is not encoded yet asks for exactly that one.
      const answer = answerer.answer(query, snapshot, hot?.missTurn);
      if (answer === null) {
        if (recursive(client)) return forwarded(query, packet, transport, client, snapshot);
        return finish(query, packet, bare(Rcode.REFUSED), transport, client);
      }
      if (isPending(answer)) return afterFetch(query, packet, answer, transport, client);
      const out = finish(query, packet, answer, transport, client);
      if (hot && snapshot) hot.storeAnswer(packet, transport === 'tcp', answer, out, snapshot);
      return out;
    } catch (err) {
      // A bug, not bad input (bad input is handled above): log it and answer SERVFAIL if we can.
      log.error({ err }, 'query handling failed');
      if (packet.length >= 12) return errorReply(packet.readUInt16BE(0), packet.readUInt16BE(2), Rcode.SERVFAIL);
      return null;
    }
  };
}
