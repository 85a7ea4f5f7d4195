/**
 * Upstream messages at the byte level: the query svcdns sends, the check of what comes back, and the
 * reply rebuilt from it for each client.
 *
 * Forwarded answers are never decoded into records and re-encoded: they may hold any record type,
 * and re-encoding would change their compression. Instead the upstream's reply is walked once to
 * find its record boundaries and TTL fields, kept as bytes, and every client gets a copy with its own
 * ID, flags and question spelling, TTLs counted down, and the RFC 2181 cut when it is too big.
 * Cutting at record boundaries is safe because the walk rejects compression pointers that do not
 * point backwards (RFC 1035 4.1.4: "a prior occurrence"), so no kept record refers to a cut one.
 */

import { fitMessage } from '../dns/codec.js';
import { writeOpt } from '../dns/opt.js';
import { Flag, HEADER_SIZE, OPT_SIZE, Rcode, RRType } from '../dns/constants.js';
import { nameError, Pointers, walkName } from '../dns/name-walker.js';
import type { Query } from '../dns/wire.js';

/** RFC 2181 8: a TTL with the top bit set is read as 0. */
const MAX_TTL = 0x7fffffff;

/** Upper-case ASCII letters of a question copied into `out` are lower-cased (one cache entry per name). */
function lowerAscii(out: Buffer, start: number, end: number): void {
  for (let i = start; i < end; i++) {
    const c = out[i]!;
    if (c >= 65 && c <= 90) out[i] = c + 32;
  }
}

/**
 * The query sent upstream for a client's question: a fresh ID, RD and AD set, CD copied, the name
 * lower-cased, and an OPT record (our size, the client's DO bit) unless `edns` is false.
 */
export function buildUpstreamQuery(query: Query, packet: Buffer, id: number, edns = true): Buffer {
  const questionLength = query.questionEnd - HEADER_SIZE;
  const out = Buffer.alloc(HEADER_SIZE + questionLength + (edns ? OPT_SIZE : 0));
  out.writeUInt16BE(id, 0);
  // AD asks a validating upstream to say whether the data is authenticated (RFC 6840 5.7); each
  // client then gets AD only if it asked (renderReply), so the cached answer serves everyone.
  out.writeUInt16BE(Flag.RD | Flag.AD | (query.flags & Flag.CD), 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(edns ? 1 : 0, 10);
  packet.copy(out, HEADER_SIZE, HEADER_SIZE, query.questionEnd);
  lowerAscii(out, HEADER_SIZE, HEADER_SIZE + questionLength - 4);
  if (edns) writeOpt(out, HEADER_SIZE + questionLength, 0, query.edns?.do ?? false);
  return out;
}

/** An upstream reply, checked and walked; the bytes are kept without its OPT (and anything after it). */
export interface UpstreamMessage {
  /** The full rcode, extended bits from the OPT record included. */
  rcode: number;
  flags: number;
  truncated: boolean;
  /** Header, question and the kept records; TTLs already capped. */
  bytes: Buffer;
  questionEnd: number;
  /** End offset of each answer record, in order. */
  answerEnds: number[];
  authorityEnd: number;
  counts: { answer: number; authority: number; additional: number };
  /** Offsets of the TTL field of every kept record, in message order. */
  ttlOffsets: number[];
  /**
   * How long this reply may be cached, seconds: the smallest answer TTL for answers; for NXDOMAIN
   * and NODATA the SOA's min(TTL, MINIMUM) (RFC 2308 5), or 0 when there is no SOA to say.
   */
  cacheTtl: number;
  /** True for NXDOMAIN and NODATA. */
  negative: boolean;
  /** No answer, no SOA, NS records and RA clear: a referral from a server that does not recurse. */
  referral: boolean;
}

export type ReplyCheck = { kind: 'mismatch'; reason: string } | { kind: 'malformed'; reason: string } | { kind: 'ok'; message: UpstreamMessage };

class Malformed extends Error {}

/**
 * Checks that `reply` answers `sent` (QR, ID, opcode, and the same question, case aside) and walks it.
 * A reply that does not answer our query is a `mismatch`, to be ignored (it may be spoofed);
 * one that does but cannot be walked is `malformed`. Record TTLs are capped at `maxTtl`.
 */
export function checkUpstreamReply(reply: Buffer, sent: Buffer, maxTtl: number): ReplyCheck {
  if (reply.length < HEADER_SIZE) return { kind: 'mismatch', reason: 'short' };
  if (reply.readUInt16BE(0) !== sent.readUInt16BE(0)) return { kind: 'mismatch', reason: 'id' };
  const flags = reply.readUInt16BE(2);
  if (!(flags & Flag.QR) || ((flags >> 11) & 0xf) !== 0) return { kind: 'mismatch', reason: 'not a query response' };
  const qdcount = reply.readUInt16BE(4);
  const questionEnd = sent.length - (sent.readUInt16BE(10) === 1 ? OPT_SIZE : 0);
  if (qdcount === 0) {
    // Some servers leave the question out of FORMERR/REFUSED/NOTIMP; such a reply is only ever a failure.
    if ((flags & 0xf) === Rcode.NOERROR || (flags & 0xf) === Rcode.NXDOMAIN) return { kind: 'mismatch', reason: 'no question' };
    return { kind: 'ok', message: failureOnly(reply, sent, questionEnd, flags) };
  }
  if (qdcount !== 1 || reply.length < questionEnd) return { kind: 'mismatch', reason: 'question' };
  // The name compares case aside (we sent it lower-cased); type and class exactly.
  for (let i = HEADER_SIZE; i < questionEnd; i++) {
    let c = reply[i]!;
    if (i < questionEnd - 4 && c >= 65 && c <= 90) c += 32;
    if (c !== sent[i]) return { kind: 'mismatch', reason: 'question' };
  }
  try {
    return { kind: 'ok', message: walk(reply, flags, questionEnd, maxTtl) };
  } catch (err) {
    if (err instanceof Malformed) return { kind: 'malformed', reason: err.message };
    throw err;
  }
}

/** A question-less failure reply, kept with our own question so that it renders like any other. */
function failureOnly(reply: Buffer, sent: Buffer, questionEnd: number, flags: number): UpstreamMessage {
  const bytes = Buffer.allocUnsafeSlow(questionEnd);
  reply.copy(bytes, 0, 0, HEADER_SIZE);
  sent.copy(bytes, HEADER_SIZE, HEADER_SIZE, questionEnd);
  bytes.writeUInt16BE(1, 4);
  bytes.fill(0, 6, HEADER_SIZE);
  return {
    rcode: flags & 0xf,
    flags,
    truncated: false,
    bytes,
    questionEnd,
    answerEnds: [],
    authorityEnd: questionEnd,
    counts: { answer: 0, authority: 0, additional: 0 },
    ttlOffsets: [],
    cacheTtl: 0,
    negative: false,
    referral: false,
  };
}

function walk(reply: Buffer, flags: number, questionEnd: number, maxTtl: number): UpstreamMessage {
  const an = reply.readUInt16BE(6);
  const ns = reply.readUInt16BE(8);
  const ar = reply.readUInt16BE(10);
  const truncated = (flags & Flag.TC) !== 0;
  // A buffer of its own, not a slice of Node's shared 8 KiB pool: a cached reply kept for an hour
  // must not pin a whole pool slab.
  const bytes = Buffer.allocUnsafeSlow(reply.length);
  reply.copy(bytes);
  const answerEnds: number[] = [];
  const ttlOffsets: number[] = [];
  let off = questionEnd;
  let authorityEnd = off;
  let keptEnd = off;
  let additional = 0;
  let extendedRcode = 0;
  let minAnswerTtl = MAX_TTL;
  let soaTtl: number | null = null;
  const soaTtlOffsets: number[] = [];
  let answerCount = an;
  let authorityCount = ns;
  let nsRecords = 0;
  for (let i = 0; i < an + ns + ar; i++) {
    let ownerEnd: number;
    try {
      ownerEnd = checkName(bytes, off);
      if (ownerEnd + 10 > bytes.length) throw new Malformed('record runs past the end');
      if (ownerEnd + 10 + bytes.readUInt16BE(ownerEnd + 8) > bytes.length) throw new Malformed('rdata runs past the end');
    } catch (err) {
      // A truncated reply may stop anywhere, even inside a record (RFC 2181 9): keep the whole
      // records before that point (the caller retries over TCP anyway).
      if (!(err instanceof Malformed) || !truncated) throw err;
      if (i < an) {
        answerCount = i;
        authorityCount = 0;
      } else if (i < an + ns) authorityCount = i - an;
      break;
    }
    const type = bytes.readUInt16BE(ownerEnd);
    const ttlAt = ownerEnd + 4;
    const rdStart = ownerEnd + 10;
    const rdEnd = rdStart + bytes.readUInt16BE(ownerEnd + 8);
    if (i >= an + ns && (type === RRType.OPT || type === RRType.TSIG)) {
      // svcdns adds its own OPT per client; a TSIG is not ours to pass on. Records after either go too.
      if (type === RRType.OPT) extendedRcode = bytes[ttlAt]!;
      break;
    }
    if (type === RRType.OPT) throw new Malformed('OPT outside the additional section');
    checkRdata(bytes, type, rdStart, rdEnd);
    let ttl = bytes.readUInt32BE(ttlAt);
    if (ttl > MAX_TTL) ttl = 0;
    if (ttl > maxTtl) ttl = maxTtl;
    bytes.writeUInt32BE(ttl, ttlAt);
    ttlOffsets.push(ttlAt);
    if (i < an) {
      answerEnds.push(rdEnd);
      if (ttl < minAnswerTtl) minAnswerTtl = ttl;
    } else if (i < an + ns) {
      if (type === RRType.NS) nsRecords++;
      if (type === RRType.SOA && rdEnd - rdStart >= 22) {
        const negativeTtl = Math.min(ttl, bytes.readUInt32BE(rdEnd - 4), maxTtl);
        soaTtl = soaTtl === null ? negativeTtl : Math.min(soaTtl, negativeTtl);
        soaTtlOffsets.push(ttlAt);
      }
    } else additional++;
    off = rdEnd;
    keptEnd = rdEnd;
    if (i < an + ns) authorityEnd = rdEnd;
  }
  const rcode = (extendedRcode << 4) | (flags & 0xf);
  const negative = rcode === Rcode.NXDOMAIN || (rcode === Rcode.NOERROR && answerCount === 0);
  // RFC 2308 5: a negative answer is served with the SOA's TTL lowered to the negative TTL, so the
  // client's own cache keeps it no longer than we do.
  if (negative && soaTtl !== null) for (const at of soaTtlOffsets) bytes.writeUInt32BE(soaTtl, at);
  return {
    rcode,
    flags,
    truncated,
    bytes: bytes.subarray(0, keptEnd),
    questionEnd,
    answerEnds,
    authorityEnd,
    counts: { answer: answerCount, authority: authorityCount, additional },
    ttlOffsets,
    // Every record the answer holds must still be live while it is cached: a CNAME before an
    // NXDOMAIN, or an SOA after a CNAME that leads to no data, bounds it too.
    cacheTtl: negative ? Math.min(soaTtl ?? 0, minAnswerTtl) : answerCount > 0 ? Math.min(minAnswerTtl, soaTtl ?? MAX_TTL) : 0,
    negative,
    referral: rcode === Rcode.NOERROR && answerCount === 0 && soaTtl === null && nsRecords > 0 && (flags & Flag.RA) === 0,
  };
}

/**
 * Checks the name at `start` and returns where it ends in place. Every compression pointer is
 * followed, and each must point strictly before the previous one (RFC 1035 4.1.4: "a prior
 * occurrence"; `Pointers.FOLLOW` in name-walker.ts), which rules out loops and forward references,
 * so a cut at any record boundary never leaves a pointer dangling. Labels of at most 63 bytes, names
 * of at most 255 (RFC 1035 2.3.4).
 */
function checkName(buf: Buffer, start: number): number {
  const end = walkName(buf, start, Pointers.FOLLOW);
  if (end < 0) throw new Malformed(nameError(end));
  return end;
}

/**
 * Rdata must have its type's shape (RFC 1035 3.3, RFC 3596, RFC 2782): a client rejects a whole
 * message over one bad record, so such a reply is malformed here and the next upstream is asked.
 * Types svcdns does not know pass as opaque bytes (RFC 3597).
 */
function checkRdata(buf: Buffer, type: number, start: number, end: number): void {
  const nameThenFixed = (at: number, fixed: number): void => {
    if (checkName(buf, at) + fixed !== end) throw new Malformed(`type ${type} rdata has the wrong length`);
  };
  switch (type) {
    case RRType.A:
      if (end - start !== 4) throw new Malformed('A rdata is not 4 bytes');
      return;
    case RRType.AAAA:
      if (end - start !== 16) throw new Malformed('AAAA rdata is not 16 bytes');
      return;
    case RRType.NS:
    case RRType.CNAME:
    case RRType.PTR:
    case RRType.DNAME:
      nameThenFixed(start, 0);
      return;
    case RRType.MX:
      if (end - start < 3) throw new Malformed('MX rdata too short');
      nameThenFixed(start + 2, 0);
      return;
    case RRType.SRV:
      if (end - start < 7) throw new Malformed('SRV rdata too short');
      nameThenFixed(start + 6, 0);
      return;
    case RRType.SOA:
      nameThenFixed(checkName(buf, start), 20);
      return;
    case RRType.TXT: {
      let off = start;
      if (off === end) throw new Malformed('TXT rdata is empty');
      while (off < end) off += 1 + buf[off]!;
      if (off !== end) throw new Malformed('TXT strings do not fill the rdata');
      return;
    }
    default:
      return;
  }
}

/** EDNS option code of an Extended DNS Error (RFC 8914 2), and its INFO-CODEs 3, "Stale Answer", and 19, "Stale NXDOMAIN Answer". */
const EDE_OPTION = 15;
const EDE_STALE_ANSWER = 3;
const EDE_STALE_NXDOMAIN = 19;
/** The option as it goes into the OPT record's rdata: code, length 2, the INFO-CODE (no EXTRA-TEXT). */
const EDE_SIZE = 6;

/**
 * The reply for one client from a kept upstream message: the client's ID, question spelling, RD and
 * CD; RA set; AD kept only for clients that asked for DNSSEC data (DO or AD, RFC 6840 5.8); AA cleared
 * (svcdns is not the authority); TTLs reduced by `elapsed` seconds; our own OPT when the client sent
 * one; and the RFC 2181 cut (additional first, then whole answers with TC) to fit `maxSize`.
 *
 * `staleTtl` (an expired answer served stale, RFC 8767 4): every record's TTL is that instead, and
 * the OPT, for a client that sent one, carries the Extended DNS Error "Stale Answer" (RFC 8914 4.4),
 * or "Stale NXDOMAIN Answer" for an NXDOMAIN (4.20).
 */
export function renderReply(message: UpstreamMessage, query: Query, packet: Buffer, elapsed: number, maxSize: number, staleTtl?: number): Buffer {
  const stale = staleTtl !== undefined;
  const opt = query.edns ? OPT_SIZE + (stale ? EDE_SIZE : 0) : 0;
  const { bytes, counts } = message;
  const complete = !message.truncated;
  const cut = fitMessage(
    {
      questionEnd: message.questionEnd,
      answerEnds: message.answerEnds,
      authorityEnd: message.authorityEnd,
      authority: counts.authority,
      end: bytes.length,
      additional: counts.additional,
      throughAuthority: complete,
      whole: complete,
    },
    maxSize - opt,
  );
  const out = Buffer.allocUnsafe(cut.end + opt);
  bytes.copy(out, 0, 0, cut.end);
  packet.copy(out, HEADER_SIZE, HEADER_SIZE, query.questionEnd);
  const wantsAd = (query.edns?.do ?? false) || (query.flags & Flag.AD) !== 0;
  out.writeUInt16BE(query.id, 0);
  out.writeUInt16BE(
    Flag.QR |
      Flag.RA |
      (query.flags & (Flag.RD | Flag.CD)) |
      (wantsAd ? message.flags & Flag.AD : 0) |
      (cut.truncated || message.truncated ? Flag.TC : 0) |
      (message.rcode & 0xf),
    2,
  );
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(cut.answer, 6);
  out.writeUInt16BE(cut.authority, 8);
  out.writeUInt16BE(cut.additional + (opt ? 1 : 0), 10);
  if (stale) {
    for (const at of message.ttlOffsets) {
      if (at >= cut.end) break;
      out.writeUInt32BE(staleTtl, at);
    }
  } else if (elapsed > 0) {
    for (const at of message.ttlOffsets) {
      if (at >= cut.end) break;
      const ttl = out.readUInt32BE(at);
      out.writeUInt32BE(ttl > elapsed ? ttl - elapsed : 0, at);
    }
  }
  if (opt) {
    const end = writeOpt(out, cut.end, 0, query.edns!.do);
    if (stale) {
      out.writeUInt16BE(EDE_SIZE, end - 2); // the OPT's RDLENGTH
      out.writeUInt16BE(EDE_OPTION, end);
      out.writeUInt16BE(2, end + 2);
      out.writeUInt16BE(message.rcode === Rcode.NXDOMAIN ? EDE_STALE_NXDOMAIN : EDE_STALE_ANSWER, end + 4);
    }
  }
  return out;
}
