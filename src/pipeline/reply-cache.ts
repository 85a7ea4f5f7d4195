/**
 * The hot path, and the pipeline's first stage: replies already encoded, served by copying them and
 * patching a few bytes.
 *
 * A query the `QuestionReader` can read (a plain one: see question-key.ts) is looked up by its
 * key; on a hit the stored reply is copied and gets the query's ID, RD and CD bits, RA for this
 * client, and the question as the client spelled it (the stored reply's names point into the
 * question, so they follow). No decoding, no encoding, no promise, no log line. Everything else,
 * and every miss, goes on to the next stages (the full path), whose reply is then stored here when
 * the answering stage says how long it stays right (`Answer.keep`).
 *
 * What a stored reply stays right for:
 * - an answer listing one service's instances: while that service keeps its generation in the
 *   catalog, across snapshots (a change anywhere else does not touch it);
 * - every other answer about our domain (NXDOMAIN and NODATA carry the SOA, whose serial changes
 *   with each snapshot): the snapshot it came from;
 * - a forwarded answer: the snapshot it came from (a catalog change can make a name ours) and,
 *   since its TTLs count down, until the forward cache's next whole second for it (`validUntil`);
 *   the full path then renders it again, TTLs one second lower, and it is stored again.
 * Round robin: an entry holds the record set's rotations, encoded as the full path produces them
 * (turn k = the instance list started at k), and serves them in turn. A turn not encoded yet is a
 * miss that asks the full path for exactly that turn (`request.turn`), so the order stays 0, 1, 2, ...
 * An entry keeps at most MAX_ENTRY_BYTES of rotations; past that, missing turns are encoded for
 * each query and not kept.
 *
 * Bounds: `maxEntries` keys and `maxBytes` of replies. Eviction is CLOCK (second chance): a hit
 * marks the entry, eviction walks from the oldest, passing over marked entries once. A hit costs
 * one boolean write, and a flood of names asked once cannot push out the names asked all the time.
 */

import { Flag, HEADER_SIZE } from '../dns/constants.js';
import type { ServiceGeneration, Snapshot } from '../catalog/snapshot.js';
import { foldedQuestion, QuestionReader, sameQuestion } from './question-key.js';
import { NEXT, type Answer, type Keep, type Request, type Stage, type StageResult } from './stage.js';

/** One entry's rotations take at most this much; a large record set's other turns are not kept. */
export const MAX_ENTRY_BYTES = 256 * 1024;
/**
 * What an entry and each stored reply cost besides the reply bytes (objects, the key, the map
 * slot; a Buffer of its own), for the byte bound: measured by `npm run bench:memory`.
 */
const ENTRY_OVERHEAD = 500;
const REPLY_OVERHEAD = 240;
const PATCHED_FLAGS = Flag.RD | Flag.CD | Flag.RA;

export interface ReplyCacheOptions {
  /** Keys kept at most (--answer-cache-size); 0 turns the cache off. */
  maxEntries: number;
  /** Bytes of replies kept at most. */
  maxBytes: number;
  /** --max-udp-size: part of every UDP key. */
  maxUdpSize: number;
  /** Clock for forwarded entries, ms (the forward cache's clock). */
  now: () => number;
}

interface Entry {
  readonly hash: number;
  /** The question bytes, name folded to lower case. */
  readonly question: Buffer;
  readonly variant: number;
  /** By rotation turn; one slot when the answer does not rotate. */
  readonly replies: (Buffer | undefined)[];
  /** The turn the next hit serves. */
  next: number;
  bytes: number;
  /** The snapshot this entry is known to be right for. */
  snapshot: Snapshot;
  readonly dependsOn: ServiceGeneration | null;
  readonly forwarded: boolean;
  /** Forwarded: ms on the `now` clock after which the stored copy's TTLs are a second too high. */
  readonly validUntil: number;
  /** The stage that made the replies, and the service they read: what a hit's answer says. */
  readonly by: string | undefined;
  readonly service: ServiceGeneration | null;
  /** CLOCK's mark: hit since eviction last passed. */
  recent: boolean;
}

export interface ReplyCacheStats {
  entries: number;
  bytes: number;
  hits: number;
  misses: number;
}

export class ReplyCache implements Stage {
  readonly name = 'reply-cache';
  private readonly entries = new Map<number, Entry>();
  private readonly reader: QuestionReader;
  private bytes = 0;
  private hits = 0;
  private misses = 0;

  constructor(private readonly options: ReplyCacheOptions) {
    this.reader = new QuestionReader(options.maxUdpSize);
  }

  get enabled(): boolean {
    return this.options.maxEntries > 0;
  }

  /**
   * A patched copy of the stored reply, or NEXT (a miss: the later stages answer, and `answered`
   * stores their reply). A miss for a rotation not encoded yet sets `request.turn` to it.
   */
  handle(request: Request): StageResult {
    const packet = request.packet;
    const r = this.reader;
    if (!r.read(packet, request.transport === 'tcp')) {
      this.misses++; // a question it cannot key (EDNS options, a cookie): the full path answers
      return NEXT;
    }
    const entry = this.entries.get(r.hash);
    if (entry === undefined || !this.isKeyOf(entry, packet)) {
      this.misses++;
      return NEXT;
    }
    if (entry.snapshot !== request.snapshot && !this.stillRight(entry, request.snapshot)) {
      this.remove(entry);
      this.misses++;
      return NEXT;
    }
    let ra: boolean;
    if (entry.forwarded) {
      if (this.options.now() >= entry.validUntil) {
        this.remove(entry);
        this.misses++;
        return NEXT;
      }
      // Not allowed (or no upstream any more): the full path says REFUSED.
      if (!request.recursionAvailable) return NEXT;
      ra = true;
    } else {
      ra = request.recursionAvailable;
    }
    const turn = entry.next;
    const stored = entry.replies[turn];
    if (stored === undefined) {
      request.turn = turn;
      this.misses++;
      return NEXT;
    }
    entry.next = turn + 1 === entry.replies.length ? 0 : turn + 1;
    entry.recent = true;
    this.hits++;

    // TypedArray set and a byte loop for the question, not Buffer#copy: copy checks its arguments
    // and calls into C++ each time, which measured 2 % of the CPU per answer (BENCHMARKS.md).
    const out = Buffer.allocUnsafe(stored.length);
    out.set(stored, 0);
    out[0] = packet[0]!;
    out[1] = packet[1]!;
    const flags = (stored[2]! << 8) | stored[3]!;
    const asked = (packet[2]! << 8) | packet[3]!;
    const patched = (flags & ~PATCHED_FLAGS) | (asked & (Flag.RD | Flag.CD)) | (ra ? Flag.RA : 0);
    out[2] = patched >> 8;
    out[3] = patched & 0xff;
    const end = r.questionEnd;
    for (let i = HEADER_SIZE; i < end; i++) out[i] = packet[i]!;
    // Read here, where the question's end is known: metrics count hits by type without a second walk.
    request.knownType = (packet[end - 4]! << 8) | packet[end - 3]!;
    return { bytes: out, by: entry.by, hit: true, service: entry.service };
  }

  /**
   * Keeps a later stage's reply to `request` when that stage said how long it stays right: answers
   * about our domain (authoritative NOERROR and NXDOMAIN only: SERVFAIL and REFUSED are not
   * answers) and forwarded replies from the forward cache.
   */
  answered(request: Request, answer: Answer): void {
    const keep = answer.keep;
    if (!this.enabled || keep === undefined || answer.bytes === null) return;
    const rotation = keep.rotation ?? { turn: 0, count: 1 };
    this.put(request, answer, keep, rotation.turn, rotation.count);
  }

  stats(): ReplyCacheStats {
    return { entries: this.entries.size, bytes: this.bytes, hits: this.hits, misses: this.misses };
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }

  close(): void {
    this.clear();
  }

  private put(request: Request, answer: Answer, keep: Keep, turn: number, count: number): void {
    const { packet } = request;
    const out = answer.bytes!;
    const { snapshot, dependsOn } = keep;
    const forwarded = keep.validUntil !== null;
    const validUntil = keep.validUntil ?? Infinity;
    const r = this.reader;
    if (!r.read(packet, request.transport === 'tcp')) return;
    let entry = this.entries.get(r.hash);
    const same =
      entry !== undefined &&
      this.isKeyOf(entry, packet) &&
      entry.forwarded === forwarded &&
      entry.replies.length === count &&
      entry.validUntil === validUntil &&
      (entry.snapshot === snapshot || (dependsOn !== null && entry.dependsOn?.generation === dependsOn.generation));
    if (!same) {
      if (entry !== undefined) this.remove(entry);
      entry = {
        hash: r.hash,
        question: foldedQuestion(packet, r.questionEnd),
        variant: r.variant,
        replies: new Array<Buffer | undefined>(count).fill(undefined),
        next: turn,
        bytes: ENTRY_OVERHEAD + r.questionEnd,
        snapshot,
        dependsOn,
        forwarded,
        validUntil,
        by: answer.by,
        service: answer.service ?? null,
        recent: false,
      };
      this.entries.set(r.hash, entry);
      this.bytes += entry.bytes;
    }
    entry = entry!;
    entry.snapshot = snapshot;
    if (entry.replies[turn] === undefined && entry.bytes + out.length + REPLY_OVERHEAD <= MAX_ENTRY_BYTES) {
      // A buffer of its own: a slice of Node's shared pool would keep the whole 8 KB slab alive.
      const copy = Buffer.alloc(out.length);
      out.copy(copy, 0);
      entry.replies[turn] = copy;
      entry.bytes += copy.length + REPLY_OVERHEAD;
      this.bytes += copy.length + REPLY_OVERHEAD;
    }
    entry.next = turn + 1 === count ? 0 : turn + 1;
    this.evict(entry);
  }

  /** Whether `entry` is the one for the packet just read (hashes can collide). */
  private isKeyOf(entry: Entry, packet: Buffer): boolean {
    return entry.variant === this.reader.variant && sameQuestion(packet, entry.question, this.reader.questionEnd);
  }

  /** A service answer from an older snapshot is still right if the service has the same generation. */
  private stillRight(entry: Entry, current: Snapshot | null): boolean {
    const dep = entry.dependsOn;
    if (current === null || dep === null || entry.forwarded) return false;
    if (current.generationOf(dep) !== dep.generation) return false;
    entry.snapshot = current;
    return true;
  }

  private remove(entry: Entry): void {
    if (this.entries.get(entry.hash) !== entry) return;
    this.entries.delete(entry.hash);
    this.bytes -= entry.bytes;
  }

  /** CLOCK: from the oldest, evict unmarked entries; a marked one loses its mark and goes to the back. */
  private evict(keep: Entry): void {
    const { maxEntries, maxBytes } = this.options;
    if (keep.bytes > maxBytes) {
      this.remove(keep);
      return;
    }
    // Each entry is passed over at most once, so this ends within two rounds.
    let budget = 2 * this.entries.size + 1;
    while ((this.entries.size > maxEntries || this.bytes > maxBytes) && budget-- > 0) {
      const oldest = this.entries.values().next().value as Entry;
      this.entries.delete(oldest.hash);
      if (oldest === keep || oldest.recent) {
        oldest.recent = false;
        this.entries.set(oldest.hash, oldest);
      } else {
        this.bytes -= oldest.bytes;
      }
    }
  }
}
