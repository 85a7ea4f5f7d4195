/**
 * The TCP listener's connection table: who may connect, and which connections to close when room
 * runs short (RFC 7766 6.2.3). Knows nothing of DNS or of sockets; src/listen/tcp.ts owns those.
 *
 * - A per-client cap (`maxPerClient`, counted per IPv4 address and per IPv6 /64: one host usually
 *   holds a whole /64, so counting /128s would cap nobody): a connection beyond it is refused.
 * - A global bound (`maxConnections`): when the table is full, the connection idle the longest is
 *   closed to make room for the new one; only when none is idle is the new one refused.
 * - The idle timeout shrinks as the table fills (`idleTimeoutFor`), and applies to every open
 *   connection at once: one timer for the whole table, armed for the oldest idle connection.
 *
 * "Idle" is the listener's to say (`markIdle` / `markBusy`): a connection with answers outstanding
 * is busy; one the client has stopped reading is not (its replies waiting to be written are the
 * client's doing). Idle time counts from the connection's last activity (`markIdle` again).
 */

import { clientKey } from '../net/clients.js';

export interface TableLimits {
  /** Connections open at once; at the bound, the oldest idle one makes room. */
  maxConnections: number;
  /** Connections open at once from one client (an IPv4 address, an IPv6 /64). */
  maxPerClient: number;
  /** Clients the per-client cap does not apply to (--client-limits-exempt); none when absent. */
  exempt?: (address: string) => boolean;
  /** The idle timeout while the table is at most half full, ms. */
  idleTimeoutMs: number;
}

/** What the table needs of a connection: how to close it, and whose it is. */
export interface TableEntry {
  /** The client's key (`clientKey`), set by `admit`. */
  client: string;
  /** Closes the connection at once; `remove` follows (now or when the socket says it closed). */
  close(why: TableClose): void;
}

/**
 * Why the table closed a connection: `evicted` to make room, `idle` past the configured timeout,
 * `idle-under-pressure` past a timeout shrunk by a fuller table.
 */
export type TableClose = 'evicted' | 'idle' | 'idle-under-pressure';

/** Why a connection was not let in. */
export type Refusal = 'per-client-limit' | 'full';

/** Every reason the listener's rules end a connection: refused at once, or closed later. */
export type TcpClose = Refusal | TableClose;

/** The idle timeout never shrinks below this (ms), unless the configured one is shorter. */
export const MIN_IDLE_TIMEOUT_MS = 1000;

/**
 * The idle timeout for a table `open / max` full: the configured one (`fullMs`) up to half full,
 * then in proportion to the room left (`fullMs * free / 50 %`: 75 % full: half of it, 90 %: a
 * fifth), never below `MIN_IDLE_TIMEOUT_MS` (nor above `fullMs`). With the default 10 s: 10 s up to
 * 500 of 1,000 connections, 5 s at 750, 2 s at 900, 1 s from 950 on. Unbound shrinks in steps past
 * 50 % (to 1 %, 0.2 %, then 0 with a 200 ms floor); a straight line keeps a legitimate client
 * that sends a query every few seconds connected for longer.
 */
export function idleTimeoutFor(fullMs: number, open: number, max: number): number {
  const free = Math.max(0, max - open) / max;
  if (free >= 0.5) return fullMs;
  return Math.min(fullMs, Math.max(MIN_IDLE_TIMEOUT_MS, Math.round((fullMs * free) / 0.5)));
}

export class ConnectionTable<C extends TableEntry> {
  private readonly open = new Set<C>();
  /** Idle connections and since when (ms), least recently active first (re-inserted on activity). */
  private readonly idle = new Map<C, number>();
  private readonly perClient = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  /** When the timer fires (ms); Infinity when none is armed. */
  private timerAt = Infinity;

  constructor(
    private readonly limits: TableLimits,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.open.size;
  }

  /** The idle timeout in force now (it shrinks as the table fills), ms. */
  get idleTimeoutMs(): number {
    return idleTimeoutFor(this.limits.idleTimeoutMs, this.open.size, this.limits.maxConnections);
  }

  /** Whether the idle timeout in force is shorter than the configured one. */
  get underPressure(): boolean {
    return this.idleTimeoutMs < this.limits.idleTimeoutMs;
  }

  /**
   * A new connection from `address`: null when it may come in (and then `add` it), else why not.
   * At the global bound the oldest idle connection is closed first (`close('evicted')`); a client
   * over its own cap never closes anyone else's connection.
   */
  admit(address: string): { client: string; refused: Refusal | null } {
    const client = clientKey(address);
    if ((this.perClient.get(client) ?? 0) >= this.limits.maxPerClient && this.limits.exempt?.(address) !== true) return { client, refused: 'per-client-limit' };
    if (this.open.size >= this.limits.maxConnections) {
      const oldest = this.oldestIdle();
      if (oldest === null) return { client, refused: 'full' };
      this.remove(oldest);
      oldest.close('evicted');
    }
    return { client, refused: null };
  }

  /** Adds an admitted connection, idle from now. */
  add(c: C): void {
    this.open.add(c);
    this.perClient.set(c.client, (this.perClient.get(c.client) ?? 0) + 1);
    this.markIdle(c);
  }

  /** The connection is gone; calling it again is harmless. */
  remove(c: C): void {
    if (!this.open.delete(c)) return;
    this.idle.delete(c);
    const n = (this.perClient.get(c.client) ?? 1) - 1;
    if (n > 0) this.perClient.set(c.client, n);
    else this.perClient.delete(c.client);
    if (this.open.size === 0) this.disarm();
  }

  /** Idle from now on (again): activity moves a connection to the back of the queue. */
  markIdle(c: C): void {
    if (!this.open.has(c)) return;
    this.idle.delete(c);
    this.idle.set(c, this.now());
    this.arm();
  }

  /** Answers are outstanding: not idle until `markIdle`. */
  markBusy(c: C): void {
    this.idle.delete(c);
  }

  /** Stops the timer (the listener is closing; connections close on their own). */
  stop(): void {
    this.disarm();
  }

  private oldestIdle(): C | null {
    for (const c of this.idle.keys()) return c;
    return null;
  }

  /** Arms the timer for the oldest idle connection's deadline, if that is sooner than the one armed. */
  private arm(): void {
    let since: number | undefined;
    for (const s of this.idle.values()) {
      since = s;
      break;
    }
    if (since === undefined) return;
    const at = since + this.idleTimeoutMs;
    if (at >= this.timerAt) return;
    this.disarm();
    this.timerAt = at;
    this.timer = setTimeout(() => this.sweep(), Math.max(0, at - this.now()));
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
  }

  /**
   * Closes every connection idle longer than the timeout in force. The timeout is read once per
   * sweep: closing connections lengthens it, which spares the rest until the next sweep.
   */
  private sweep(): void {
    this.timer = null;
    this.timerAt = Infinity;
    const now = this.now();
    const timeout = this.idleTimeoutMs;
    const why = timeout < this.limits.idleTimeoutMs ? 'idle-under-pressure' : 'idle';
    for (const [c, since] of this.idle) {
      if (since + timeout > now) break;
      this.remove(c);
      c.close(why);
    }
    this.arm();
  }
}
