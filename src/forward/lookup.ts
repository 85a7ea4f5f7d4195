/**
 * Names svcdns itself needs resolved: the targets of the CNAMEs it answers for catalog entries
 * whose address is a hostname (external services). They are asked through the forwarder exactly
 * like a client's question (RD set, no EDNS options of the client's), so they share its cache,
 * its upstreams, their health and its bound on questions in flight, and show in its metrics.
 *
 * What comes back is the part of the upstream's answer that answers the name: the chain of CNAMEs
 * from it (at most MAX_CHAIN, loops cut) and the records of the asked type at the chain's end, with
 * the upstream's TTLs as the forward cache counts them down (Consul rewrites them; svcdns keeps them).
 */

import type { RR } from '../dns/codec.js';
import { Flag, HEADER_SIZE, RRType } from '../dns/constants.js';
import { Pointers, walkName } from '../dns/name-walker.js';
import { readQuery } from '../dns/wire.js';
import type { Forwarder } from './forwarder.js';

/** CNAMEs followed at most in an upstream's chain (resolvers give up near here too). */
export const MAX_CHAIN = 8;
/** Answer records read at most from one upstream reply. */
const MAX_RECORDS = 64;

/** The records answering a name: [] when it has none of that type; null when no upstream answered. */
export type LookupResult = readonly RR[] | null;

export class HostLookup {
  constructor(private readonly forwarder: Pick<Forwarder, 'forward' | 'available'>) {}

  /** At once from the forward cache, else a promise (never rejecting); null at once with no upstream. */
  lookup(name: string, type: typeof RRType.A | typeof RRType.AAAA): LookupResult | Promise<LookupResult> {
    if (!this.forwarder.available) return null;
    const packet = questionPacket(name, type);
    const read = readQuery(packet);
    if (read.kind !== 'query') return null;
    const got = this.forwarder.forward(read.query, packet, 'udp', 65535);
    if (!(got instanceof Promise)) return 'refused' in got ? null : chain(got.reply, name, type);
    return got.then((f) => (f.reply === null || f.reply === 'drop' ? null : chain(f.reply, name, type)));
  }
}

/** A plain recursive query for `name` (no EDNS: the forwarder adds its own upstream). */
function questionPacket(name: string, type: number): Buffer {
  const labels = name.split('.').filter((l) => l !== '');
  const out = Buffer.alloc(HEADER_SIZE + labels.reduce((n, l) => n + 1 + Buffer.byteLength(l, 'latin1'), 1) + 4);
  out.writeUInt16BE((Math.random() * 0x10000) | 0, 0);
  out.writeUInt16BE(Flag.RD, 2);
  out.writeUInt16BE(1, 4);
  let at = HEADER_SIZE;
  for (const l of labels) {
    out[at++] = l.length;
    at += out.write(l, at, 'latin1');
  }
  out[at++] = 0;
  out.writeUInt16BE(type, at);
  out.writeUInt16BE(1, at + 2);
  return out;
}

interface Record_ {
  owner: string;
  rr: RR;
}

/** The chain from `name` in the reply's answer section; null for a reply that is not an answer (SERVFAIL). */
function chain(reply: Buffer, name: string, type: number): LookupResult {
  const rcode = reply[3]! & 0xf;
  if (rcode !== 0 && rcode !== 3) return null;
  const records = answerRecords(reply);
  const out: RR[] = [];
  const seen = new Set<string>();
  let current = name.toLowerCase();
  for (let hop = 0; hop <= MAX_CHAIN; hop++) {
    seen.add(current);
    for (const r of records) if (r.owner === current && r.rr.type === type) out.push(r.rr);
    const cname = records.find((r) => r.owner === current && r.rr.type === RRType.CNAME);
    if (cname === undefined || cname.rr.type !== RRType.CNAME) break;
    out.push(cname.rr);
    current = cname.rr.target.toLowerCase();
    if (seen.has(current)) break;
  }
  return out;
}

/** The A, AAAA and CNAME records of the answer section (the forwarder checked the reply's structure). */
function answerRecords(buf: Buffer): Record_[] {
  const count = Math.min(buf.readUInt16BE(6), MAX_RECORDS);
  let at = walkName(buf, HEADER_SIZE, Pointers.STOP);
  if (at < 0) return [];
  at += 4;
  const out: Record_[] = [];
  for (let i = 0; i < count; i++) {
    const owner = readName(buf, at);
    const end = walkName(buf, at, Pointers.STOP);
    if (owner === null || end < 0 || end + 10 > buf.length) break;
    const type = buf.readUInt16BE(end);
    const ttl = buf.readUInt32BE(end + 4);
    const rdlength = buf.readUInt16BE(end + 8);
    const rdata = end + 10;
    if (rdata + rdlength > buf.length) break;
    if ((type === RRType.A && rdlength === 4) || (type === RRType.AAAA && rdlength === 16)) {
      out.push({ owner: owner.toLowerCase(), rr: { name: owner, type, ttl, address: Buffer.from(buf.subarray(rdata, rdata + rdlength)) } });
    } else if (type === RRType.CNAME) {
      const target = readName(buf, rdata);
      if (target !== null) out.push({ owner: owner.toLowerCase(), rr: { name: owner, type, ttl, target } });
    }
    at = rdata + rdlength;
  }
  return out;
}

/** The dotted name at `at`, pointers followed (strictly backwards, as walkName checks); null if malformed. */
function readName(buf: Buffer, at: number): string | null {
  const labels: string[] = [];
  const end = walkName(buf, at, Pointers.FOLLOW, (l) => labels.push(buf.toString('latin1', l + 1, l + 1 + buf[l]!)));
  return end < 0 ? null : labels.join('.');
}
