/**
 * The one walk over a name in wire format (RFC 1035 3.1, 4.1.4), shared by every reader of untrusted
 * bytes: the query reader (src/dns/wire.ts), the reply cache's key reader (src/pipeline/question-key.ts)
 * and the check of upstream replies (src/forward/message.ts).
 *
 * `walkName` checks a name and returns where it ends in place, or a negative `NameError`: no
 * exception, no allocation, no callback unless one is asked for. Callers that need the bytes of the
 * name do their own pass over [start, end) afterwards: a checked name in place is length bytes
 * (at most 63, below 'A') and label bytes, ended by the root label, so folding ASCII case over every
 * byte of it is safe and a hash of it needs no label boundaries. That keeps the hot path one tight
 * loop per label here and one per byte at the caller, with no call per label.
 *
 * What a compression pointer means depends on where the name is, so the caller says (`Pointers`):
 * - `REFUSE`: an error. The question is the first name of a message, with nothing before it but the
 *   header, so a pointer there is malformed; so are the obsolete 0x40/0x80 label types everywhere.
 * - `STOP`: the pointer (2 bytes) ends the name and is not followed: for skipping records whose
 *   names are not read. The name's total length is not checked in this mode, since the rest of it
 *   is not read (its labels in place still are).
 * - `FOLLOW`: followed, each to a position strictly before the previous pointer's target (the first
 *   before the name's start) and past the header: "a prior occurrence" (RFC 1035 4.1.4). Loops and
 *   forward references are impossible, so a message cut at any record boundary keeps no dangling
 *   pointer. The labels behind pointers count towards the 255-byte limit.
 */

import { HEADER_SIZE, MAX_LABEL_LENGTH, MAX_NAME_LENGTH } from './constants.js';

export const Pointers = {
  REFUSE: 0,
  STOP: 1,
  FOLLOW: 2,
} as const;
export type PointerRule = (typeof Pointers)[keyof typeof Pointers];

/** Why a name does not walk: the negative results of `walkName`. */
export const NameError = {
  /** A length byte, or a label's bytes, lie past the end of the buffer. */
  PAST_END: -1,
  /** A pointer's second byte lies past the end of the buffer. */
  POINTER_PAST_END: -2,
  /** `FOLLOW`: a pointer to itself, forward, to or after an earlier target, or into the header. */
  NOT_BACKWARDS: -3,
  /** A length byte 0x40-0xbf: the obsolete extended label types (RFC 6891 9). */
  BAD_LABEL_TYPE: -4,
  /** More than 255 bytes, length bytes and the root label included. */
  TOO_LONG: -5,
  /** `REFUSE`: a compression pointer. */
  POINTER: -6,
} as const;

const MESSAGES: Record<number, string> = {
  [NameError.PAST_END]: 'name runs past the end',
  [NameError.POINTER_PAST_END]: 'pointer runs past the end',
  [NameError.NOT_BACKWARDS]: 'compression pointer does not point backwards',
  [NameError.BAD_LABEL_TYPE]: 'bad label type',
  [NameError.TOO_LONG]: 'name longer than 255 bytes',
  [NameError.POINTER]: 'compression pointer where none may be',
};

/** The words for a negative result of `walkName`. */
export function nameError(code: number): string {
  return MESSAGES[code] ?? `not a name error: ${code}`;
}

/**
 * Checks the name at `start` of `buf` and returns the offset just after it in place (after its root
 * label, or after its first compression pointer), or a negative `NameError`.
 *
 * `visit`, when given, is called with the offset of each label's length byte (never the root's), in
 * order, once the label is known to lie inside `buf`; under `FOLLOW`, labels reached through
 * pointers too. For callers that build strings anyway: the hot path passes none.
 */
export function walkName(buf: Uint8Array, start: number, pointers: PointerRule, visit?: (labelAt: number) => void): number {
  const size = buf.length;
  let off = start;
  /** Where the name ends in place, once a pointer has been followed. */
  let end = -1;
  /** `FOLLOW`: the next pointer must point before this. */
  let before = start;
  /** Bytes of the name so far, the root label included. */
  let length = 1;
  for (;;) {
    if (off >= size) return NameError.PAST_END;
    const len = buf[off]!;
    if (len === 0) return end === -1 ? off + 1 : end;
    if (len > MAX_LABEL_LENGTH) {
      if (len < 0xc0) return NameError.BAD_LABEL_TYPE;
      if (pointers === Pointers.REFUSE) return NameError.POINTER;
      if (off + 2 > size) return NameError.POINTER_PAST_END;
      if (pointers === Pointers.STOP) return off + 2;
      const target = ((len & 0x3f) << 8) | buf[off + 1]!;
      if (target >= before || target < HEADER_SIZE) return NameError.NOT_BACKWARDS;
      if (end === -1) end = off + 2;
      before = target;
      off = target;
      continue;
    }
    length += len + 1;
    if (length > MAX_NAME_LENGTH && pointers !== Pointers.STOP) return NameError.TOO_LONG;
    const next = off + 1 + len;
    if (next > size) return NameError.PAST_END;
    if (visit !== undefined) visit(off);
    off = next;
  }
}
