/**
 * Response rate limiting (RRL) for UDP, after BIND 9's: a reply about to be sent over UDP is
 * charged to the account of (client prefix, reply identity) (prefix.ts, identity.ts, accounts.ts)
 * and, past `--rrl-responses-per-second`, dropped, or "slipped": sent truncated (TC=1, the question
 * only), so a real client behind a spoofed flood retries over TCP and still gets its answer. An
 * error reply (SERVFAIL, REFUSED...) is slipped as it is: it is no larger than a truncated one.
 *
 * Why: a spoofed UDP query makes svcdns send its reply to the victim; a 40-byte question can earn
 * a reply a hundred times larger (BENCHMARKS.md, "Amplification"). TCP cannot be spoofed, so it
 * is never limited, nor are exempt clients (loopback by default): the wrapper is applied around
 * the whole pipeline, after every stage, because the identity is that of the reply.
 *
 * Cost: nothing at all when off (the server does not wrap its handler); when on, per UDP reply a
 * clock read, a parse of the client's address text, a hash of the reply's question and a table
 * probe, with no allocation (a slipped reply allocates its few bytes). Exempt clients stop after
 * the address parse. Each limited reply is told on the diagnostics seam (`rateLimit`), only when
 * someone listens (the metrics).
 */

import type { Diagnostics, RateLimitEvent } from '../diagnostics/channels.js';
import { writeOpt } from '../dns/opt.js';
import { Flag, HEADER_SIZE, OPT_SIZE } from '../dns/constants.js';
import { Pointers, walkName } from '../dns/name-walker.js';
import { queryOpt } from '../dns/wire.js';
import type { Client, DnsHandler } from '../pipeline/handler.js';
import { Accounts, Verdict } from './accounts.js';
import type { RrlConfig } from './config.js';
import { IdentityReader, Kind } from './identity.js';
import { PrefixReader } from './prefix.js';

const DROPPED: RateLimitEvent = Object.freeze({ outcome: 'dropped' });
const SLIPPED: RateLimitEvent = Object.freeze({ outcome: 'slipped' });

export interface RateLimiterOptions {
  config: RrlConfig['rrl'];
  diagnostics: Diagnostics;
  /** Monotonic clock, ms (tests inject one). */
  now?: () => number;
}

export class RateLimiter {
  private readonly accounts: Accounts;
  private readonly prefix: PrefixReader;
  private readonly identity = new IdentityReader();
  private readonly now: () => number;
  private readonly events: Diagnostics['rateLimit'];

  constructor(options: RateLimiterOptions) {
    const { config } = options;
    this.accounts = new Accounts({ rate: config.responsesPerSecond, slip: config.slip, windowSeconds: config.windowSeconds, size: config.tableSize });
    this.prefix = new PrefixReader(config.ipv4PrefixLength, config.ipv6PrefixLength, config.exempt);
    this.now = options.now ?? (() => performance.now());
    this.events = options.diagnostics.rateLimit;
  }

  /** The reply to send to `client` over UDP for `query` instead of `reply`: itself, a truncated copy, or null (dropped). */
  limit(query: Buffer, reply: Buffer, client: Client): Buffer | null {
    const p = this.prefix;
    if (!p.read(client.address) || p.exempt) return reply;
    const id = this.identity;
    if (!id.read(reply)) return reply;
    // +1: the accounts take 0 for "empty", and a process's performance.now() starts near 0.
    const verdict = this.accounts.charge(p.w0, p.w1, p.w2, id.hash, this.now() + 1);
    if (verdict === Verdict.SEND) return reply;
    if (verdict === Verdict.DROP) {
      if (this.events.hasSubscribers) this.events.publish(DROPPED);
      return null;
    }
    if (this.events.hasSubscribers) this.events.publish(SLIPPED);
    return id.kind === Kind.ERROR ? reply : truncated(query, reply);
  }
}

/** `handler` with UDP replies rate limited by `limiter`; TCP untouched. */
export function rateLimited(handler: DnsHandler, limiter: RateLimiter): DnsHandler {
  return (packet, transport, client) => {
    const reply = handler(packet, transport, client);
    if (transport !== 'udp' || reply === null) return reply;
    if (!(reply instanceof Promise)) return limiter.limit(packet, reply, client);
    return reply.then((r) => (r === null ? null : limiter.limit(packet, r, client)));
  };
}

/**
 * The reply's header and question, TC set and no records: "ask again over TCP". With our OPT
 * record when the query had one (RFC 6891 7: a reply to an EDNS query carries OPT), its DO bit
 * copied; the rcode stays the reply's (NOERROR or NXDOMAIN: errors are never truncated).
 */
function truncated(query: Buffer, reply: Buffer): Buffer {
  const qd = (reply[4]! << 8) | reply[5]!;
  let end = HEADER_SIZE;
  if (qd === 1) {
    const nameEnd = walkName(reply, HEADER_SIZE, Pointers.STOP);
    end = nameEnd < 0 || nameEnd + 4 > reply.length ? HEADER_SIZE : nameEnd + 4;
  }
  // Only answers slip this way (errors go as they are): their query was read whole, one question
  // and at most one OPT, so the reader's own OPT lookup finds it.
  const opt = queryOpt(query);
  const out = Buffer.allocUnsafe(end + (opt === null ? 0 : OPT_SIZE));
  reply.copy(out, 0, 0, end);
  out[2] = out[2]! | (Flag.TC >> 8);
  out[4] = 0;
  out[5] = end === HEADER_SIZE ? 0 : 1;
  out.fill(0, 6, HEADER_SIZE);
  if (opt !== null) {
    out[11] = 1;
    writeOpt(out, end, 0, opt.do);
  }
  return out;
}
