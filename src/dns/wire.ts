/**
 * The read of an untrusted DNS query, in two stages as miekg/dns does it: the 12-byte header first,
 * then exactly one question and the EDNS OPT record, and nothing more.
 *
 * Contract (what the listener does with each outcome):
 * - `drop`: no reply at all. Anything without a readable header, and every response (QR set), so that
 *   svcdns can never be used to bounce or amplify traffic and two servers can never ping-pong.
 * - `error`: a header was readable but the rest is not a query svcdns serves; reply with the rcode
 *   (FORMERR, NOTIMP) and no question, built by `errorReply`, with an OPT record when the query had a
 *   well-formed one (`edns`; RFC 6891 6.1.1: a responder includes OPT when the request had it).
 * - `query`: one well-formed question. Names are read as latin1 so every byte maps to one char and
 *   nothing is lost; `key` is the lower-cased name used for lookups.
 */

import { writeOpt } from './opt.js';
import { Flag, HEADER_SIZE, MAX_UDP_SIZE, MIN_UDP_SIZE, OPCODE_MASK, OPT_SIZE, Rcode, RRType } from './constants.js';
import { nameError, Pointers, walkName } from './name-walker.js';

export interface Edns {
  /** The client's advertised UDP payload size, clamped to [512, 4096]. */
  udpSize: number;
  version: number;
  /** DNSSEC OK: copied into the reply's OPT (RFC 3225). */
  do: boolean;
}

export interface Query {
  id: number;
  /** The raw 16-bit flags word as sent. */
  flags: number;
  opcode: number;
  /** Question name as sent (latin1, labels joined by '.', no trailing dot; '' for the root). */
  name: string;
  /** `name` lower-cased (ASCII only, as DNS compares names). */
  key: string;
  /** Lower-cased labels, left to right. */
  labels: string[];
  /** Byte offset of each label of the question name in the packet, parallel to `labels`. */
  labelOffsets: number[];
  /**
   * True when every label is free of '.' bytes, so `key` split on '.' gives back the labels.
   * Names that are not plain can never match the catalog; they still get a correct reply.
   */
  plain: boolean;
  type: number;
  class: number;
  /** End of the question section: bytes [12, questionEnd) are copied verbatim into replies. */
  questionEnd: number;
  edns: Edns | null;
}

export type ReadResult =
  | { kind: 'query'; query: Query }
  | { kind: 'error'; id: number; flags: number; rcode: number; edns: Edns | null }
  | { kind: 'drop'; reason: string };

class Malformed extends Error {}

/** Reads a query packet; never throws. */
export function readQuery(buf: Buffer): ReadResult {
  if (buf.length < HEADER_SIZE) return { kind: 'drop', reason: 'short' };
  const id = buf.readUInt16BE(0);
  const flags = buf.readUInt16BE(2);
  if (flags & Flag.QR) return { kind: 'drop', reason: 'response' };
  const opcode = (flags >> 11) & 0xf;
  if (opcode !== 0) return { kind: 'error', id, flags, rcode: Rcode.NOTIMP, edns: queryOpt(buf) };
  const qdcount = buf.readUInt16BE(4);
  if (qdcount !== 1) return { kind: 'error', id, flags, rcode: Rcode.FORMERR, edns: queryOpt(buf) };
  try {
    return { kind: 'query', query: readBody(buf, id, flags) };
  } catch (err) {
    // Malformed: whatever OPT it has is not trusted (two OPTs are FORMERR without one, RFC 6891 7).
    if (err instanceof Malformed) return { kind: 'error', id, flags, rcode: Rcode.FORMERR, edns: null };
    throw err;
  }
}

/**
 * The OPT record of a query read again outside the reader's path (an error reply's, RRL's slipped
 * reply), when the message is well formed up to and including exactly one in its additional
 * section; null otherwise. Never throws.
 */
export function queryOpt(buf: Buffer): Edns | null {
  if (buf.length < HEADER_SIZE) return null;
  try {
    let off = HEADER_SIZE;
    for (let q = buf.readUInt16BE(4); q > 0; q--) {
      off = skipName(buf, off) + 4;
      if (off > buf.length) return null;
    }
    return readEdns(buf, off);
  } catch (err) {
    if (err instanceof Malformed) return null;
    throw err;
  }
}

function readBody(buf: Buffer, id: number, flags: number): Query {
  const labelOffsets: number[] = [];
  // A compression pointer in the first name of a message can only point into the header, and the
  // 0x40/0x80 label types are obsolete (RFC 6891 9): both are malformed here.
  let off = walkName(buf, HEADER_SIZE, Pointers.REFUSE, (at) => void labelOffsets.push(at));
  if (off < 0) throw new Malformed(nameError(off));
  if (off + 4 > buf.length) throw new Malformed('question runs past the end');
  const type = buf.readUInt16BE(off);
  const qclass = buf.readUInt16BE(off + 2);
  const nameEnd = off;
  off += 4;
  const questionEnd = off;

  // The name's bytes read once as one string (latin1: a char per byte); each label is a slice of it,
  // and the lower-cased labels slices of the lower-cased whole (the length bytes between the labels,
  // 1 to 63, are never letters: lower-casing leaves them alone).
  const raw = buf.toString('latin1', HEADER_SIZE, nameEnd);
  const lowerRaw = asciiLower(raw);
  const labels: string[] = new Array<string>(labelOffsets.length);
  const lower: string[] = new Array<string>(labelOffsets.length);
  let plain = true;
  for (let i = 0; i < labelOffsets.length; i++) {
    const from = labelOffsets[i]! - HEADER_SIZE + 1;
    const to = from + buf[labelOffsets[i]!]!;
    labels[i] = raw.slice(from, to);
    lower[i] = lowerRaw.slice(from, to);
    if (plain && labels[i]!.includes('.')) plain = false;
  }
  const edns = readEdns(buf, off);
  return {
    id,
    flags,
    opcode: 0,
    name: labels.join('.'),
    key: lower.join('.'),
    labels: lower,
    labelOffsets,
    plain,
    type,
    class: qclass,
    questionEnd,
    edns,
  };
}

/**
 * Walks the answer, authority and additional sections looking for the OPT record. Records are
 * skipped without decoding; any that runs past the end makes the whole query malformed, and so do
 * a second OPT and an OPT outside the additional section (RFC 6891 6.1.1).
 */
function readEdns(buf: Buffer, start: number): Edns | null {
  const total = buf.readUInt16BE(6) + buf.readUInt16BE(8) + buf.readUInt16BE(10);
  const firstAdditional = buf.readUInt16BE(6) + buf.readUInt16BE(8);
  let off = start;
  let edns: Edns | null = null;
  for (let i = 0; i < total; i++) {
    const nameStart = off;
    off = skipName(buf, off);
    if (off + 10 > buf.length) throw new Malformed('record runs past the end');
    const type = buf.readUInt16BE(off);
    const rdlength = buf.readUInt16BE(off + 8);
    if (type === RRType.OPT) {
      if (i < firstAdditional) throw new Malformed('OPT outside the additional section');
      if (edns) throw new Malformed('two OPT records');
      if (off - nameStart !== 1) throw new Malformed('OPT owner is not the root');
      const udpSize = buf.readUInt16BE(off + 2);
      const ttl = buf.readUInt32BE(off + 4);
      edns = {
        udpSize: Math.min(MAX_UDP_SIZE, Math.max(MIN_UDP_SIZE, udpSize)),
        version: (ttl >>> 16) & 0xff,
        do: (ttl & 0x8000) !== 0,
      };
    }
    off += 10 + rdlength;
    if (off > buf.length) throw new Malformed('rdata runs past the end');
  }
  return edns;
}

/** Skips a possibly compressed name without following pointers (a pointer ends a name). */
function skipName(buf: Buffer, start: number): number {
  const end = walkName(buf, start, Pointers.STOP);
  if (end < 0) throw new Malformed(nameError(end));
  return end;
}

/** Lower-cases A-Z only: DNS names compare case-insensitively for ASCII letters (RFC 4343). */
export function asciiLower(s: string): string {
  // Fast path: most names arrive lower-case already.
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
  }
  return s;
}

/**
 * The reply to a query whose header is readable but whose body is not served (FORMERR, NOTIMP, and
 * SERVFAIL when handling failed): ID and opcode copied, QR set, no question (it may be what was
 * wrong), our OPT record when `edns` (the query had a well-formed one). RD and CD are copied for QUERY only: RFC 1035 4.1.1 and RFC 4035 3.2.2 define
 * them (copied into the response) for standard queries, and what they mean under an opcode svcdns
 * does not implement it cannot know, so such a reply sets no flag but QR, as ISC's genreport
 * expects (`opcode`, `opcodeflg`: any of RD, CD, AD, RA, AA, TC, Z in a NOTIMP is a fault) and as
 * miekg/dns's SetReply copies them (QUERY only). Consul differs here: miekg/dns's reject path
 * answers NOTIMP with the query's own flags (AA and Z cleared), which genreport counts as faults.
 */
export function errorReply(id: number, queryFlags: number, rcode: number, edns: Edns | null = null): Buffer {
  const out = Buffer.alloc(HEADER_SIZE + (edns !== null ? OPT_SIZE : 0));
  out.writeUInt16BE(id, 0);
  const echoed = (queryFlags & OPCODE_MASK) === 0 ? OPCODE_MASK | Flag.RD | Flag.CD : OPCODE_MASK;
  out.writeUInt16BE(Flag.QR | (queryFlags & echoed) | (rcode & 0xf), 2);
  if (edns !== null) {
    // Our OPT, the query's DO bit copied (RFC 3225 3).
    out.writeUInt16BE(1, 10);
    writeOpt(out, HEADER_SIZE, rcode >> 4, edns.do);
  }
  return out;
}
