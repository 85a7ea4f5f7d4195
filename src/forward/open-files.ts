/**
 * The open-file budget of forwarding, worked out once at start: every forwarded question may hold
 * a socket (a UDP socket per try, a TCP connection for a truncated answer; racing upstreams, one
 * per upstream asked), and so does every TCP client, the HTTP endpoint's clients, Consul's
 * connections and the files svcdns reads. When --upstream-max-inflight does not fit the process's
 * open-file limit beside the rest, a flood of unique names would take the last descriptors and TCP
 * clients would be refused without a word (libuv accepts and closes them at EMFILE, and Node hears
 * nothing). So the bound is lowered to what fits, and a warning gives the numbers.
 *
 * The limit is the soft RLIMIT_NOFILE as the process has it. Node raises the soft limit to the hard
 * one as it starts (`prlimit --nofile=1024:4096 node` runs with 4096), so there is nothing left for
 * svcdns to raise: an operator raises the hard limit (systemd: LimitNOFILE=, as the unit does;
 * a shell: ulimit -Hn). Linux tells it in /proc/self/limits; where that cannot be read, no check.
 */

import { readdirSync, readFileSync } from 'node:fs';
import type { Logger } from 'pino';

/** Descriptors kept for everything but DNS traffic: the HTTP endpoint's clients, Consul, files and watchers, IPC. */
export const OTHER_FILES_RESERVE = 64;

/** The process's soft open-file limit; null where it cannot be read (not Linux) or is unlimited. */
export function openFileLimit(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): number | null {
  let text: string;
  try {
    text = read('/proc/self/limits');
  } catch {
    return null;
  }
  const line = /^Max open files\s+(\S+)/m.exec(text);
  if (!line || line[1] === 'unlimited') return null;
  const soft = Number(line[1]);
  return Number.isSafeInteger(soft) && soft > 0 ? soft : null;
}

/** Descriptors open now; null where that cannot be read. */
export function openFileCount(): number | null {
  try {
    // The directory's own descriptor, open while it is read, is in the list: not counted.
    return readdirSync('/proc/self/fd').length - 1;
  } catch {
    return null;
  }
}

export interface BudgetInput {
  /** The soft open-file limit. */
  limit: number;
  /** Descriptors open now (listening sockets not yet bound are in `tcpConnections`' share). */
  open: number;
  /** The TCP connections the listeners may hold at once, all of them. */
  tcpConnections: number;
  /** Listening sockets still to be opened (UDP and TCP per listen address, HTTP). */
  listening: number;
  /** --upstream-max-inflight as configured. */
  maxInflight: number;
}

export interface Budget {
  /** The bound on questions in flight to use: the configured one, or lower when it does not fit. */
  maxInflight: number;
  /**
   * Upstream sockets open at once at most: what is left for forwarding. Racing tries beyond it are
   * not started (their question waits on the tries it has); at least 1.
   */
  sockets: number;
  /** Descriptors kept for everything else: open now, listening sockets, TCP clients, OTHER_FILES_RESERVE. */
  reserve: number;
  /** TCP connections the reserve holds room for (fewer than `tcpConnections` when even they do not fit). */
  tcpReserved: number;
  /** The configured bound on questions in flight fits (it was not lowered). */
  fits: boolean;
  /** Every TCP connection the listeners allow fits too (the TCP bound is not this module's to lower: it is warned of). */
  tcpFits: boolean;
}

/**
 * Splits the open-file limit: first what is open and the fixed reserve, then the TCP connections,
 * which get at most half of what is left when they and forwarding cannot both have all they ask
 * for (so neither starves the other), then forwarding. Never below one upstream socket: forwarding
 * slows down to nothing rather than stop.
 */
export function fitBudget(input: BudgetInput): Budget {
  const fixed = input.open + input.listening + OTHER_FILES_RESERVE;
  const room = Math.max(0, input.limit - fixed);
  const tcpReserved = room >= input.tcpConnections + input.maxInflight ? input.tcpConnections : Math.min(input.tcpConnections, Math.floor(room / 2));
  const sockets = Math.max(1, room - tcpReserved);
  const maxInflight = Math.min(input.maxInflight, sockets);
  return { maxInflight, sockets, reserve: fixed + tcpReserved, tcpReserved, fits: maxInflight === input.maxInflight, tcpFits: tcpReserved === input.tcpConnections };
}

export interface OpenFilesCheck {
  /** The bound on questions in flight to use. */
  maxInflight: number;
  /** Upstream sockets open at once at most; undefined where the limit is not known (no bound but maxInflight's). */
  maxSockets: number | undefined;
}

/**
 * The check at start: the budget for this process's limit, and one warning with the numbers when
 * the configured bounds do not fit (lowered, never refused: svcdns starts and answers).
 */
export function checkOpenFiles(wanted: Omit<BudgetInput, 'limit' | 'open'>, log: Logger, read?: (path: string) => string): OpenFilesCheck {
  const limit = openFileLimit(read);
  const open = openFileCount();
  if (limit === null || open === null) {
    log.debug('open-file limit unknown (no /proc/self/limits): --upstream-max-inflight not checked against it');
    return { maxInflight: wanted.maxInflight, maxSockets: undefined };
  }
  const budget = fitBudget({ ...wanted, limit, open });
  const numbers = {
    openFileLimit: limit,
    openFiles: open,
    reserve: budget.reserve,
    tcpConnections: wanted.tcpConnections,
    tcpReserved: budget.tcpReserved,
    upstreamMaxInflight: wanted.maxInflight,
    effectiveMaxInflight: budget.maxInflight,
    upstreamSockets: budget.sockets,
  };
  if (!budget.fits) {
    log.warn(numbers, 'open-file limit too low for --upstream-max-inflight beside the TCP connections: bound lowered (raise the hard limit: systemd LimitNOFILE=, ulimit -Hn)');
  } else if (!budget.tcpFits) {
    // Said once, here, because nobody hears of it later: at EMFILE libuv accepts and closes a TCP client unanswered.
    log.warn(numbers, 'open-file limit too low for every TCP connection the listeners allow: at the limit new ones are closed unanswered (raise the hard limit: systemd LimitNOFILE=, ulimit -Hn)');
  }
  return { maxInflight: budget.maxInflight, maxSockets: budget.sockets };
}
