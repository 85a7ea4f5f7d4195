/**
 * Encoding of the replies svcdns builds itself: header, the question copied byte for byte from the
 * query, the three record sections with name compression, and the OPT record.
 *
 * Why not dns-packet's encoder: it never compresses names, so a 512-byte reply holds about half the
 * records it could, and musl clients (Alpine, busybox) never retry over TCP; they keep what fits.
 *
 * Fitting a reply to the client's size is one function, `encodeReply`, following RFC 2181 9:
 * 1. everything fits: send it;
 * 2. else drop the reply's optional additional records (node meta TXT), keeping the rest of the
 *    additional section (SRV targets' addresses), if that fits (TC stays clear);
 * 3. else drop the additional section (it is optional data; TC stays clear);
 * 4. else keep as many whole answer records as fit, drop authority, and set TC so the client knows
 *    to retry over TCP. Because compression pointers only point backwards, cutting at a record
 *    boundary never leaves a dangling pointer, so the message is encoded once and cut.
 */

import {
  Flag,
  HEADER_SIZE,
  MAX_CHARACTER_STRING_LENGTH,
  MAX_LABEL_LENGTH,
  MAX_NAME_LENGTH,
  MAX_TCP_SIZE,
  OPCODE_MASK,
  OPT_SIZE,
  RRClass,
  RRType,
} from './constants.js';
import { writeOpt } from './opt.js';
import type { Query } from './wire.js';

interface RRBase {
  /** Owner name, dotted, no trailing dot. */
  name: string;
  ttl: number;
}

export type RR =
  | (RRBase & { type: typeof RRType.A | typeof RRType.AAAA; address: Buffer })
  | (RRBase & { type: typeof RRType.SRV; priority: number; weight: number; port: number; target: string })
  | (RRBase & { type: typeof RRType.PTR | typeof RRType.NS | typeof RRType.CNAME; target: string })
  | (RRBase & {
      type: typeof RRType.SOA;
      mname: string;
      rname: string;
      serial: number;
      refresh: number;
      retry: number;
      expire: number;
      minimum: number;
    })
  | (RRBase & { type: typeof RRType.TXT; strings: string[] });

export interface Reply {
  /** Up to 12 bits; values above 15 need an OPT record to carry the upper bits (RFC 6891 6.1.3). */
  rcode: number;
  authoritative: boolean;
  recursionAvailable: boolean;
  answers: readonly RR[];
  authority: readonly RR[];
  additional: readonly RR[];
  /**
   * Additional records written after `additional`, and the first to go when the reply must shrink
   * (node meta TXT: an SRV answer's glue addresses are worth more to a client than its meta).
   */
  optionalAdditional?: readonly RR[];
}

/** Defined with the other DNS numbers; still exported here for the modules that import it from the codec. */
export { OPT_SIZE };


/** Where the records of an encoded message end, for `fitMessage`. */
export interface Layout {
  questionEnd: number;
  /** End offset of each answer record. */
  answerEnds: readonly number[];
  /** End of the authority section (the last answer's end, or the question's, when it is empty). */
  authorityEnd: number;
  authority: number;
  /** End of the additional section: the whole message. */
  end: number;
  additional: number;
  /** Every answer and authority record is present. */
  throughAuthority: boolean;
  /** Every record is present (nothing was cut before fitting). */
  whole: boolean;
  /**
   * When the additional section ends with optional records (`Reply.optionalAdditional`) and every
   * record before them is present: where those before them end, and how many they are.
   */
  beforeOptional?: { end: number; count: number };
}

export interface Cut {
  end: number;
  answer: number;
  authority: number;
  additional: number;
  truncated: boolean;
}

/**
 * The RFC 2181 9 cut of a message to `limit` bytes: all of it if it fits; else without the additional
 * section (optional data: TC stays clear); else as many whole answers as fit, no authority, and TC.
 */
export function fitMessage(m: Layout, limit: number): Cut {
  if (m.whole && m.end <= limit) return { end: m.end, answer: m.answerEnds.length, authority: m.authority, additional: m.additional, truncated: false };
  if (m.beforeOptional && m.throughAuthority && m.beforeOptional.end <= limit) {
    return { end: m.beforeOptional.end, answer: m.answerEnds.length, authority: m.authority, additional: m.beforeOptional.count, truncated: false };
  }
  if (m.throughAuthority && m.authorityEnd <= limit) {
    return { end: m.authorityEnd, answer: m.answerEnds.length, authority: m.authority, additional: 0, truncated: false };
  }
  let kept = 0;
  while (kept < m.answerEnds.length && m.answerEnds[kept]! <= limit) kept++;
  return { end: kept === 0 ? m.questionEnd : m.answerEnds[kept - 1]!, answer: kept, authority: 0, additional: 0, truncated: true };
}

/** Thrown by the writer when a record would not fit the scratch buffer. */
class Full extends Error {}

/**
 * A byte writer over a reused scratch buffer with an RFC 1035 4.1.4 compression table.
 * Encoding is synchronous, so one scratch buffer serves every reply.
 */
class Writer {
  static readonly scratch = Buffer.allocUnsafe(MAX_TCP_SIZE);
  readonly buf = Writer.scratch;
  off = 0;
  private readonly names = new Map<string, number>();

  ensure(n: number): void {
    if (this.off + n > MAX_TCP_SIZE) throw new Full();
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.off++] = v;
  }

  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16BE(v, this.off);
    this.off += 2;
  }

  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.off);
    this.off += 4;
  }

  bytes(src: Buffer, start = 0, end = src.length): void {
    this.ensure(end - start);
    src.copy(this.buf, this.off, start, end);
    this.off += end - start;
  }

  /** Makes the suffixes of an already written name available as compression targets. */
  remember(key: string, offset: number): void {
    if (offset < 0x4000 && !this.names.has(key)) this.names.set(key, offset);
  }

  /**
   * Writes a dotted name. With `compress`, the longest known suffix becomes a pointer; either way
   * the suffixes written here become targets for later names.
   */
  name(name: string, compress: boolean): void {
    if (name === '' || name === '.') {
      this.u8(0);
      return;
    }
    // A name is at most 255 bytes on the wire: its text plus the first length byte and the root.
    if (name.length + 2 > MAX_NAME_LENGTH) throw new RangeError(`name longer than 255 bytes: ${JSON.stringify(name)}`);
    const key = name.toLowerCase();
    let start = 0;
    for (;;) {
      const suffix = start === 0 ? key : key.slice(start);
      if (compress) {
        const ptr = this.names.get(suffix);
        if (ptr !== undefined) {
          this.u16(0xc000 | ptr);
          return;
        }
      }
      this.remember(suffix, this.off);
      const dot = name.indexOf('.', start);
      const end = dot === -1 ? name.length : dot;
      const len = end - start;
      if (len === 0 || len > MAX_LABEL_LENGTH) throw new RangeError(`bad label in name ${JSON.stringify(name)}`);
      this.ensure(1 + len);
      this.buf[this.off] = len;
      this.buf.write(name.slice(start, end), this.off + 1, 'latin1');
      this.off += 1 + len;
      if (dot === -1) break;
      start = dot + 1;
    }
    this.u8(0);
  }

  rr(rr: RR): void {
    this.name(rr.name, true);
    this.u16(rr.type);
    this.u16(RRClass.IN);
    this.u32(rr.ttl);
    const lengthAt = this.off;
    this.u16(0);
    switch (rr.type) {
      case RRType.A:
      case RRType.AAAA:
        this.bytes(rr.address);
        break;
      case RRType.SRV:
        this.u16(rr.priority);
        this.u16(rr.weight);
        this.u16(rr.port);
        // RFC 2782: the target is never compressed; later names may still point into it.
        this.name(rr.target, false);
        break;
      case RRType.PTR:
      case RRType.NS:
      case RRType.CNAME:
        this.name(rr.target, true);
        break;
      case RRType.SOA:
        this.name(rr.mname, true);
        this.name(rr.rname, true);
        this.u32(rr.serial);
        this.u32(rr.refresh);
        this.u32(rr.retry);
        this.u32(rr.expire);
        this.u32(rr.minimum);
        break;
      case RRType.TXT:
        // A character-string holds at most 255 bytes; longer text continues in the next one of
        // the same record (as miekg/dns, and so Consul, encode long node meta).
        for (const s of rr.strings) {
          const b = Buffer.from(s, 'utf8');
          let at = 0;
          do {
            const end = Math.min(at + MAX_CHARACTER_STRING_LENGTH, b.length);
            this.u8(end - at);
            this.bytes(b, at, end);
            at = end;
          } while (at < b.length);
        }
        break;
    }
    this.buf.writeUInt16BE(this.off - lengthAt - 2, lengthAt);
  }
}

/**
 * Encodes `reply` as the answer to `query` (read from `packet`), fitted to `maxSize` bytes
 * (the client's UDP size, or 65535 over TCP). Returns a new buffer the caller owns.
 */
export function encodeReply(query: Query, packet: Buffer, reply: Reply, maxSize: number): Buffer {
  if (reply.answers.length === 0 && reply.authority.length === 0 && reply.additional.length === 0 && !reply.optionalAdditional?.length) {
    return encodeEmpty(query, packet, reply);
  }
  const w = new Writer();
  w.off = HEADER_SIZE;
  w.bytes(packet, HEADER_SIZE, query.questionEnd);
  if (query.plain) {
    let suffixStart = 0;
    for (let i = 0; i < query.labels.length; i++) {
      w.remember(query.key.slice(suffixStart), query.labelOffsets[i]!);
      suffixStart += query.labels[i]!.length + 1;
    }
  }

  // Encode every record once, noting where each ends; stop at the first that does not fit at all.
  const optional = reply.optionalAdditional ?? [];
  const sections = [reply.answers, reply.authority, optional.length > 0 ? [...reply.additional, ...optional] : reply.additional];
  const ends: number[][] = [[], [], []];
  try {
    for (let s = 0; s < 3; s++) {
      for (const rr of sections[s]!) {
        w.rr(rr);
        ends[s]!.push(w.off);
      }
    }
  } catch (err) {
    if (!(err instanceof Full)) throw err;
  }

  const optSize = query.edns ? OPT_SIZE : 0;
  const [answerEnds, authorityEnds, additionalEnds] = ends as [number[], number[], number[]];
  const authorityEnd = authorityEnds.at(-1) ?? answerEnds.at(-1) ?? query.questionEnd;
  const throughAuthority = answerEnds.length === reply.answers.length && authorityEnds.length === reply.authority.length;
  const required = reply.additional.length;
  const beforeOptional =
    optional.length > 0 && throughAuthority && additionalEnds.length >= required
      ? { end: required === 0 ? authorityEnd : additionalEnds[required - 1]!, count: required }
      : undefined;
  const cut = fitMessage(
    {
      questionEnd: query.questionEnd,
      answerEnds,
      authorityEnd,
      authority: authorityEnds.length,
      end: additionalEnds.at(-1) ?? authorityEnd,
      additional: additionalEnds.length,
      throughAuthority,
      whole: throughAuthority && additionalEnds.length === sections[2]!.length,
      ...(beforeOptional ? { beforeOptional } : {}),
    },
    Math.min(maxSize, MAX_TCP_SIZE) - optSize,
  );
  const end = cut.end;

  const buf = w.buf;
  w.off = end;
  if (query.edns) {
    w.ensure(OPT_SIZE);
    w.off = writeOpt(buf, w.off, reply.rcode >> 4, query.edns.do);
  }
  writeHeader(buf, query, reply, cut.truncated, cut.answer, cut.authority, cut.additional);
  return Buffer.from(buf.subarray(0, w.off));
}

/**
 * A reply with no records (an error: SERVFAIL, REFUSED; or an empty NOERROR): header, the question
 * copied, our OPT if the query had one. Always fits (a question is at most 259 bytes), so none of the
 * writer, the compression table or the fitting is needed: while every upstream is down, every
 * forwarded question of a flood is answered this way.
 */
function encodeEmpty(query: Query, packet: Buffer, reply: Reply): Buffer {
  const out = Buffer.allocUnsafe(query.questionEnd + (query.edns ? OPT_SIZE : 0));
  packet.copy(out, HEADER_SIZE, HEADER_SIZE, query.questionEnd);
  if (query.edns) writeOpt(out, query.questionEnd, reply.rcode >> 4, query.edns.do);
  writeHeader(out, query, reply, false, 0, 0, 0);
  return out;
}

/** The reply's header: ID, flags (opcode, RD and CD echoed), one question, the section counts (our OPT counted). */
function writeHeader(buf: Buffer, query: Query, reply: Reply, truncated: boolean, answers: number, authority: number, additional: number): void {
  buf.writeUInt16BE(query.id, 0);
  buf.writeUInt16BE(
    Flag.QR |
      (query.flags & (OPCODE_MASK | Flag.RD | Flag.CD)) |
      (reply.authoritative ? Flag.AA : 0) |
      (truncated ? Flag.TC : 0) |
      (reply.recursionAvailable ? Flag.RA : 0) |
      (reply.rcode & 0xf),
    2,
  );
  buf.writeUInt16BE(1, 4);
  buf.writeUInt16BE(answers, 6);
  buf.writeUInt16BE(authority, 8);
  buf.writeUInt16BE(additional + (query.edns ? 1 : 0), 10);
}
