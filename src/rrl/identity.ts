/**
 * What makes two replies "identical" for rate limiting, read off the reply bytes (BIND 9's RRL):
 * - an answer (NOERROR, records or none): its question, name (case folded), type and class;
 * - NXDOMAIN: the zone that says the name does not exist (the owner of the SOA in the authority
 *   section), so a flood of random names under one domain is one flood; without an SOA, every
 *   such NXDOMAIN is one class;
 * - any other rcode (SERVFAIL, REFUSED, FORMERR...): one class, whatever the question.
 * The result is a seeded 32-bit hash (`IdentityReader.hash`) and the kind. The bytes are ours
 * (encoded by svcdns, or a forwarded reply already walked by forward/message.ts), but nothing is
 * trusted: a name that does not read falls back to the kind's class alone. No allocation.
 */

import { randomBytes } from 'node:crypto';
import { HEADER_SIZE, Rcode, RRType } from '../dns/constants.js';

export const Kind = {
  ANSWER: 1,
  NXDOMAIN: 2,
  ERROR: 3,
} as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

const PRIME = 0x01000193;
/** At most this many compression pointers followed in one name (each must point backwards anyway). */
const MAX_JUMPS = 64;

export class IdentityReader {
  hash = 0;
  kind: Kind = Kind.ERROR;
  /** Per process, so names chosen to share an account must be guessed anew for each. */
  private readonly seed = randomBytes(4).readUInt32LE(0) | 0;

  /** Reads `reply` (a full DNS message, 12 bytes at least); false when it has no header. */
  read(reply: Buffer): boolean {
    if (reply.length < HEADER_SIZE) return false;
    const rcode = reply[3]! & 0xf;
    const seeded = this.seed;
    if (rcode === Rcode.NOERROR) {
      this.kind = Kind.ANSWER;
      let h = 0;
      nameEnd = -1;
      if (reply[4] === 0 && reply[5] === 1) h = hashName(reply, HEADER_SIZE, Math.imul(seeded ^ Kind.ANSWER, PRIME));
      if (nameEnd < 0 || nameEnd + 4 > reply.length) {
        // No question to read (never from svcdns): one class of its own.
        this.hash = Math.imul(seeded ^ 0xff, PRIME) >>> 0;
        return true;
      }
      for (let i = nameEnd; i < nameEnd + 4; i++) h = Math.imul(h ^ reply[i]!, PRIME);
      this.hash = h >>> 0;
      return true;
    }
    if (rcode === Rcode.NXDOMAIN) {
      this.kind = Kind.NXDOMAIN;
      const start = Math.imul(seeded ^ Kind.NXDOMAIN, PRIME);
      const soa = soaOwner(reply);
      const h = soa < 0 ? start : hashName(reply, soa, start);
      this.hash = (soa < 0 || nameEnd < 0 ? start : h) >>> 0;
      return true;
    }
    this.kind = Kind.ERROR;
    this.hash = Math.imul(seeded ^ Kind.ERROR, PRIME) >>> 0;
    return true;
  }
}

/**
 * Where the last `hashName` ended in place (after the root label or the first pointer); -1 when
 * the name did not read. A module variable, so the hash and the end come back without an object.
 */
let nameEnd = -1;

/**
 * FNV-1a from `start` over the name at `at`, its bytes folded to lower case, pointers followed
 * (strictly backwards). Sets `nameEnd`, -1 when the name does not read (the hash is then meaningless).
 */
function hashName(buf: Buffer, at: number, start: number): number {
  let h = start;
  let off = at;
  let before = at;
  let jumps = 0;
  nameEnd = -1;
  for (;;) {
    if (off >= buf.length) {
      nameEnd = -1;
      return 0;
    }
    const len = buf[off]!;
    if (len === 0) {
      if (nameEnd < 0) nameEnd = off + 1;
      return Math.imul(h, PRIME);
    }
    if (len >= 0xc0) {
      if (off + 2 > buf.length || ++jumps > MAX_JUMPS) {
        nameEnd = -1;
        return 0;
      }
      const target = ((len & 0x3f) << 8) | buf[off + 1]!;
      if (target >= before || target < HEADER_SIZE) {
        nameEnd = -1;
        return 0;
      }
      if (nameEnd < 0) nameEnd = off + 2;
      before = target;
      off = target;
      continue;
    }
    if (len > 63 || off + 1 + len > buf.length) {
      nameEnd = -1;
      return 0;
    }
    const stop = off + 1 + len;
    for (let i = off; i < stop; i++) {
      const c = buf[i]!;
      h = Math.imul(h ^ (c >= 0x41 && c <= 0x5a ? c | 0x20 : c), PRIME);
    }
    off = stop;
  }
}

/** Skips a name in place (to after its root label or first pointer); -1 past the end. */
function skipName(buf: Buffer, off: number): number {
  for (;;) {
    if (off >= buf.length) return -1;
    const len = buf[off]!;
    if (len === 0) return off + 1;
    if (len >= 0xc0) return off + 2 <= buf.length ? off + 2 : -1;
    off += 1 + len;
  }
}

/** Offset of the owner name of the first authority record if it is an SOA; else -1. */
function soaOwner(reply: Buffer): number {
  const qd = (reply[4]! << 8) | reply[5]!;
  const an = (reply[6]! << 8) | reply[7]!;
  const ns = (reply[8]! << 8) | reply[9]!;
  if (ns === 0) return -1;
  let off = HEADER_SIZE;
  for (let q = 0; q < qd; q++) {
    off = skipName(reply, off);
    if (off < 0) return -1;
    off += 4;
  }
  for (let r = 0; r < an; r++) {
    off = skipName(reply, off);
    if (off < 0 || off + 10 > reply.length) return -1;
    off += 10 + ((reply[off + 8]! << 8) | reply[off + 9]!);
  }
  const owner = off;
  off = skipName(reply, off);
  if (off < 0 || off + 2 > reply.length) return -1;
  return ((reply[off]! << 8) | reply[off + 1]!) === RRType.SOA ? owner : -1;
}
