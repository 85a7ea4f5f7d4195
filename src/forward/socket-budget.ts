/**
 * The upstream sockets open at once, held to the open-file budget worked out at start
 * (src/forward/open-files.ts), and the process running out of descriptors anyway (EMFILE: this
 * process; ENFILE: the whole system), reported on the diagnostics seam as one state: logged once
 * when it starts, once when a socket opens again. An exchange that gets no socket fails as a local
 * failure: it says nothing about the upstream's health, and its question, if no other try
 * answers, gets SERVFAIL.
 */

import type { Logger } from 'pino';
import type { Diagnostics } from '../diagnostics/channels.js';

/** The codes by which the kernel says no descriptor is left. */
export function isOutOfFiles(code: string): boolean {
  return code === 'EMFILE' || code === 'ENFILE';
}

/** What an exchange needs: a socket may be opened or not; it was opened, or could not be; it is closed. */
export interface SocketAllowance {
  /** False: the budget is spent; open nothing. True: one socket counted, until `release`. */
  take(): boolean;
  release(): void;
  /** The socket opened (connected): descriptors are there again. */
  opened(): void;
  /** Opening failed for want of descriptors (`code`: EMFILE or ENFILE). */
  outOfFiles(code: string): void;
}

const STATE_KEY = 'open files';

export class SocketBudget implements SocketAllowance {
  private inUse = 0;
  /** Out of descriptors was reported and no socket has opened since. */
  private failing = false;
  private refusals = 0;

  constructor(
    /** Sockets open at once at most. */
    readonly max: number,
    private readonly diagnostics: Diagnostics,
    private readonly log: Logger,
  ) {}

  take(): boolean {
    if (this.inUse >= this.max) {
      this.refusals++;
      return false;
    }
    this.inUse++;
    return true;
  }

  release(): void {
    if (this.inUse > 0) this.inUse--;
  }

  opened(): void {
    if (!this.failing) return;
    this.failing = false;
    this.diagnostics.state.publish({ key: STATE_KEY, subject: 'upstream sockets', problem: null, message: 'upstream sockets open again', log: this.log });
  }

  outOfFiles(code: string): void {
    this.failing = true;
    this.diagnostics.state.publish({
      key: STATE_KEY,
      subject: 'upstream sockets',
      problem: code,
      level: 'error',
      message: 'out of file descriptors: upstream sockets cannot be opened, forwarded questions get SERVFAIL (raise the open-file limit, or lower --upstream-max-inflight)',
      repeat: 'still out of file descriptors',
      fields: { code, upstreamSockets: this.inUse },
      log: this.log,
    });
  }

  /** Sockets open now, and tries not started because the budget was spent. */
  stats(): { readonly inUse: number; readonly max: number; readonly refusals: number } {
    return { inUse: this.inUse, max: this.max, refusals: this.refusals };
  }
}
