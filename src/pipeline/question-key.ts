/**
 * The hot path's view of a query: its header and question read straight from the bytes, with no
 * decoding and no allocation, into the key of a cached reply.
 *
 * Only the plainest queries are read: a standard query (QR clear, opcode QUERY) with one question,
 * no answer or authority records, and either nothing else or one EDNS version 0 OPT record without
 * options, and nothing after it. Everything else (compression in the question, EDNS options, other
 * EDNS versions, trailing bytes, anything malformed) is refused here and goes the full path of
 * `readQuery`, which decides what such a packet deserves. A packet read here is one `readQuery`
 * accepts, and the reply it got there depends only on what the key holds:
 * - the question name, lower-cased (ASCII only, as DNS compares names), type and class;
 * - the reply size the client can take (512 without EDNS, its EDNS size clamped to [512, 4096] and
 *   capped by --max-udp-size, 65535 over TCP), whether it sent EDNS, and its DO bit;
 * - its AD and CD bits (forwarded answers depend on them).
 * ID, RD, CD and the question's spelling are patched into each copy; nothing else varies.
 */

import { randomBytes } from 'node:crypto';
import { Flag, HEADER_SIZE, MAX_TCP_SIZE, MAX_UDP_SIZE, MIN_UDP_SIZE, OPCODE_MASK, OPT_SIZE, RRType } from '../dns/constants.js';
import { Pointers, walkName } from '../dns/name-walker.js';

/** Header bits that must be clear: QR and the opcode. */
const NOT_A_PLAIN_QUERY = Flag.QR | OPCODE_MASK;
/** Each byte folded to lower case (ASCII only): one load per byte in the hash loop instead of a branch. */
const FOLD = new Uint8Array(256).map((_, c) => (c >= 0x41 && c <= 0x5a ? c | 0x20 : c));

/**
 * Reads one packet at a time into its fields: `read` returns false for packets the hot path leaves
 * alone. One reader per cache; the fields are valid until the next `read`.
 */
export class QuestionReader {
  /** Seeded hash of the key (name folded to lower case, type, class, variant). */
  hash = 0;
  /** End of the question: bytes [12, questionEnd) are the name, type and class. */
  questionEnd = 0;
  /** Everything in the key besides the question: size, EDNS, DO, AD, CD, packed in one number. */
  variant = 0;
  /** Per process: names chosen to collide must be guessed anew for every process. */
  private readonly seed = randomBytes(4).readUInt32LE(0);

  /** `maxUdpSize`: --max-udp-size, the cap on what UDP clients advertise. */
  constructor(private readonly maxUdpSize: number) {}

  read(packet: Buffer, tcp: boolean): boolean {
    const length = packet.length;
    if (length < HEADER_SIZE + 5) return false;
    const flags = (packet[2]! << 8) | packet[3]!;
    if (flags & NOT_A_PLAIN_QUERY) return false;
    // QDCOUNT 1, ANCOUNT 0, NSCOUNT 0: bytes 4..9 are 0 1 0 0 0 0.
    if (packet[4] !== 0 || packet[5] !== 1 || packet[6] !== 0 || packet[7] !== 0 || packet[8] !== 0 || packet[9] !== 0) return false;
    const arcount = (packet[10]! << 8) | packet[11]!;
    if (arcount > 1) return false;

    // The name checked (no compression: that goes the full path), then FNV-1a over its bytes folded
    // to lower case (length bytes are at most 63, below 'A', so folding them is a no-op), type and
    // class, seeded.
    const nameEnd = walkName(packet, HEADER_SIZE, Pointers.REFUSE);
    if (nameEnd < 0) return false;
    const questionEnd = nameEnd + 4;
    if (questionEnd > length) return false;
    // An int32 throughout (XOR and imul only see the low 32 bits): a start of 2^31 or more, which
    // `>>> 0` gives for half the seeds, made TurboFan compile these loops to code twice as slow.
    let hash = 0x811c9dc5 ^ this.seed;
    for (let i = HEADER_SIZE; i < nameEnd; i++) hash = Math.imul(hash ^ FOLD[packet[i]!]!, 0x01000193);
    for (let i = nameEnd; i < questionEnd; i++) hash = Math.imul(hash ^ packet[i]!, 0x01000193);

    let size = MIN_UDP_SIZE;
    let variant = flags & (Flag.AD | Flag.CD);
    if (arcount === 1) {
      // Root owner, type OPT, class = UDP size, TTL = ext-rcode 0, version 0, DO + Z, RDLENGTH 0.
      const o = questionEnd;
      if (length !== o + OPT_SIZE) return false;
      if (packet[o] !== 0 || packet[o + 1] !== 0 || packet[o + 2] !== RRType.OPT) return false;
      if (packet[o + 5] !== 0 || packet[o + 6] !== 0 || packet[o + 9] !== 0 || packet[o + 10] !== 0) return false;
      size = Math.min(MAX_UDP_SIZE, Math.max(MIN_UDP_SIZE, (packet[o + 3]! << 8) | packet[o + 4]!));
      variant |= 0x1 | ((packet[o + 7]! & 0x80) !== 0 ? 0x2 : 0);
    } else if (length !== questionEnd) {
      return false;
    }
    size = tcp ? MAX_TCP_SIZE : Math.min(size, this.maxUdpSize);
    variant |= size << 8;
    this.hash = Math.imul(hash ^ variant, 0x01000193) >>> 0;
    this.questionEnd = questionEnd;
    this.variant = variant;
    return true;
  }
}

/** The question bytes [12, questionEnd) of `packet`, name folded to lower case: a key's stored form. */
export function foldedQuestion(packet: Buffer, questionEnd: number): Buffer {
  const out = Buffer.from(packet.subarray(HEADER_SIZE, questionEnd));
  const nameEnd = out.length - 4;
  for (let i = 0; i < nameEnd; i++) {
    const c = out[i]!;
    if (c >= 0x41 && c <= 0x5a) out[i] = c | 0x20;
  }
  return out;
}

/**
 * Whether the question of `packet` is `folded` (from `foldedQuestion`), case aside in the name.
 * Label length bytes are at most 63, below 'A', so folding every byte of the name is safe.
 */
export function sameQuestion(packet: Buffer, folded: Buffer, questionEnd: number): boolean {
  if (questionEnd - HEADER_SIZE !== folded.length) return false;
  const nameEnd = folded.length - 4;
  for (let i = 0; i < folded.length; i++) {
    let c = packet[HEADER_SIZE + i]!;
    if (i < nameEnd && c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c !== folded[i]) return false;
  }
  return true;
}
