/**
 * The fuzzing of svcdns's wire input, shared by test/system/hostile.test.ts (a few thousand packets
 * in `npm test`) and scripts/fuzz-long.ts (a million and more, not in `npm test`): the seed queries,
 * the mutators, the packet generator and the minimal check every reply must pass. Seeded (Rng), so
 * a run can be replayed from its seed.
 */

import { buildQuery, decode } from './client.js';
import type { Rng } from './random.js';
import { RCODE, hex, questionEnd, readHeader } from './wire.js';

/** Valid queries the mutators start from: our domain (every kind of name), reverse names, forwarded names. */
export const FUZZ_SEEDS: readonly Buffer[] = [
  buildQuery('web.service.consul', 'A'),
  buildQuery('web.service.consul', 'SRV', { udpSize: 4096, dnssecOk: true }),
  buildQuery('web.service.consul', 'AAAA', { udpSize: 1232 }),
  buildQuery('v2.web.service.consul', 'ANY', { udpSize: 512 }),
  buildQuery('_web._tcp.service.consul', 'SRV'),
  buildQuery('consul-1.node.dc1.consul', 'TXT', { udpSize: 1232 }),
  buildQuery('c0a80081.addr.consul', 'A'),
  buildQuery('consul', 'NS', { udpSize: 4096 }),
  buildQuery('129.0.168.192.in-addr.arpa', 'PTR'),
  buildQuery('0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa', 'PTR', { udpSize: 1232 }),
  buildQuery('example.com', 'A', { udpSize: 1232 }),
  buildQuery('www.example.org', 'AAAA'),
];

/** Bytes that sit on the edges of the wire format's decisions. */
const INTERESTING = [0x00, 0x01, 0x02, 0x3f, 0x40, 0x7f, 0x80, 0xbf, 0xc0, 0xc1, 0xff, 0x29, 0x2e];
const INTERESTING_COUNTS = [0, 1, 2, 3, 0xff, 0x100, 0x7fff, 0x8000, 0xffff];

export function mutate(rng: Rng, input: Buffer): Buffer {
  let b = Buffer.from(input);
  const rounds = 1 + rng.int(4);
  for (let r = 0; r < rounds; r++) {
    switch (rng.int(8)) {
      case 0: // bit flips
        for (let i = 1 + rng.int(4); i > 0 && b.length > 0; i--) b[rng.int(b.length)]! ^= 1 << rng.int(8);
        break;
      case 1: // byte overwrites, often with boundary values
        for (let i = 1 + rng.int(4); i > 0 && b.length > 0; i--) b[rng.int(b.length)] = rng.next() < 0.5 ? rng.pick(INTERESTING) : rng.int(256);
        break;
      case 2: // truncation at a random length
        b = Buffer.from(b.subarray(0, rng.int(b.length + 1)));
        break;
      case 3: {
        // inserted bytes
        const at = rng.int(b.length + 1);
        b = Buffer.concat([b.subarray(0, at), rng.bytes(1 + rng.int(8)), b.subarray(at)]);
        break;
      }
      case 4: {
        // deleted bytes
        const at = rng.int(b.length + 1);
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + rng.int(8))]);
        break;
      }
      case 5: // random section counts in the header
        if (b.length >= 12) b.writeUInt16BE(rng.next() < 0.7 ? rng.pick(INTERESTING_COUNTS) : rng.int(0x10000), 4 + 2 * rng.int(4));
        break;
      case 6: // random flags word (opcode, rcode, Z bits), QR usually clear so the packet is read
        if (b.length >= 4) b.writeUInt16BE(rng.int(0x10000) & (rng.next() < 0.8 ? 0x7fff : 0xffff), 2);
        break;
      case 7: // a random tail appended (extra records, garbage after the question)
        b = Buffer.concat([b, rng.bytes(1 + rng.int(40))]);
        break;
    }
  }
  return b;
}

export interface FuzzPacket {
  bytes: Buffer;
  /** Unique per packet (stamped into bytes 0-1); -1 for packets shorter than 2 bytes. */
  id: number;
  /** Header readable and QR clear: the server must reply exactly once. */
  mustReply: boolean;
}

/** Mutated and purely random packets, each with a unique ID stamped over its first two bytes. */
export function fuzzPackets(rng: Rng, mutated: number, random: number, firstId: number): FuzzPacket[] {
  const out: FuzzPacket[] = [];
  for (let i = 0; i < mutated + random; i++) {
    const bytes = i < mutated ? mutate(rng, rng.pick(FUZZ_SEEDS)) : rng.bytes(rng.int(601));
    let id = -1;
    if (bytes.length >= 2) {
      id = (firstId + i) & 0xffff;
      bytes.writeUInt16BE(id, 0);
    }
    out.push({ bytes, id, mustReply: bytes.length >= 12 && (bytes[2]! & 0x80) === 0 });
  }
  return out;
}

/**
 * The minimal well-formedness every reply to a fuzz packet must have; returns problems found.
 * Beyond ID and QR: the opcode is echoed, SERVFAIL never appears (svcdns only sends it when its
 * handler threw), and a reply either is header-only (FORMERR/NOTIMP; with our OPT when the query's
 * was well formed) or echoes the question.
 */
/** Our OPT in an error reply, in hex: root, type 41, size 1232, extended rcode 0, version 0, no flags, no options. */
export const OUR_OPT = '00002904d0000000000000 (11 bytes)';
/** The same with the DO bit, copied from a query that set it (RFC 3225 3). */
export const OUR_OPT_DO = '00002904d0000080000000 (11 bytes)';

export function checkReply(p: FuzzPacket, reply: Buffer, transport: 'udp' | 'tcp'): string | null {
  const where = `${transport} packet ${hex(p.bytes, 96)} -> reply ${hex(reply, 96)}`;
  if (reply.length < 12) return `reply shorter than a header: ${where}`;
  const r = readHeader(reply);
  const q = readHeader(p.bytes);
  if (r.id !== p.id) return `reply ID ${r.id} != query ID ${p.id}: ${where}`;
  if (!r.qr) return `QR clear in reply: ${where}`;
  if (!p.mustReply) return `reply to a packet that must be dropped: ${where}`;
  if (r.opcode !== q.opcode) return `opcode ${r.opcode} != ${q.opcode}: ${where}`;
  if (r.rcode === RCODE.SERVFAIL) return `SERVFAIL (the handler threw): ${where}`;
  if (transport === 'udp' && reply.length > 4096) return `UDP reply over 4096 bytes: ${where}`;
  if (r.counts[0] === 0) {
    if (r.rcode !== RCODE.FORMERR && r.rcode !== RCODE.NOTIMP) return `no question but rcode ${r.rcode}: ${where}`;
    const withOpt = reply.length === 23 && r.counts[3] === 1 && [OUR_OPT, OUR_OPT_DO].includes(hex(reply.subarray(12)));
    if (reply.length !== 12 && !withOpt) return `error reply is neither header-only nor header and our OPT: ${where}`;
  } else {
    if (r.counts[0] !== 1) return `qdcount ${r.counts[0]}: ${where}`;
    const end = questionEnd(p.bytes);
    if (!reply.subarray(12, end).equals(p.bytes.subarray(12, end))) return `question not copied verbatim: ${where}`;
    try {
      decode(reply);
    } catch (err) {
      return `reply does not decode (${(err as Error).message}): ${where}`;
    }
  }
  return null;
}

/** 'rcode:count' pairs of a set of replies, for the run's diagnostics. */
export function histogram(replies: Iterable<Buffer>): string {
  const counts = new Map<number, number>();
  for (const r of replies) if (r.length >= 4) counts.set(r[3]! & 0xf, (counts.get(r[3]! & 0xf) ?? 0) + 1);
  return [...counts].sort(([a], [b]) => a - b).map(([rcode, n]) => `${rcode}:${n}`).join(' ');
}

