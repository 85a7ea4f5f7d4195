/**
 * Consul's liveness: one tracker per Consul source, shared by every watch, deciding whether Consul
 * is up, so that an outage is met once rather than by each watch on its own.
 *
 * - A probe (`/v1/status/leader`, bounded by PROBE_TIMEOUT_MS) runs only when something looks
 *   wrong: a read failed with no answer or a 5xx (`check`), or a read in flight is older than
 *   Consul allows (`track`'s deadline). A probe that answers means up; one that fails or times
 *   out means down (unless it failed well past its timeout: this process stalled, and it is asked
 *   once more). One probe at a time; a verdict of up is trusted for UP_FRESH_MS, so 1,000
 *   watches failing together cost one probe.
 * - While down: "consul failing" is said once (a `state` event; state-log.ts logs it), the probe
 *   repeats every PROBE_EVERY_MS plus up to a quarter more (jitter), and reads that failed wait on
 *   the tracker (`whenUp`) instead of backing off alone.
 * - At the first probe that answers: "consul recovered" once; every read still in flight is cut
 *   (aborted: after a hang its request may never be answered, and asking again is one request);
 *   every read waiting on the tracker, or sleeping its own backoff (`backoff`), goes on after a
 *   random delay in [0, SPREAD_MS), so 1,000 watches do not retry in the same instant.
 * - The heartbeat (--consul-heartbeat): while blocking reads are in flight and Consul is taken to be
 *   up, the probe also runs every `heartbeatMs`. Without it, a Consul that hangs while every watch
 *   is parked on a 5-minute wait shows nothing overdue or failing for minutes, and requests it lost
 *   during the hang (a stuck process, a partition) would be noticed only when their wait runs out;
 *   with it, the hang is seen within heartbeatMs + PROBE_TIMEOUT_MS, and the recovery cuts them.
 * - A read overdue while Consul is up was lost on the way (Consul answers a blocking read within
 *   wait + wait/16): it is cut at once and asked again. A plain read overdue while Consul is up is
 *   only slow: it goes on, bounded by its request timeout.
 *
 * Nothing here knows the catalog; watches.ts decides which failures are Consul's (`isOutage`).
 */

import type { Logger } from 'pino';
import type { Diagnostics } from '../../diagnostics/channels.js';
import { sleep } from '../../util/pacing.js';
import { ConsulApiError } from './api.js';

/** A probe not answered within this is a failed probe, ms. */
export const PROBE_TIMEOUT_MS = 1_000;
/** Between probes while Consul is down (plus up to a quarter more), ms: recovery is seen within about PROBE_TIMEOUT_MS + this. */
export const PROBE_EVERY_MS = 250;
/** After a recovery, each waiting read goes on after a random delay below this, ms. */
export const SPREAD_MS = 250;
/** A failed probe that took this much longer than PROBE_TIMEOUT_MS was delayed by this process, not by Consul, ms. */
export const STALL_MS = 250;
/** A verdict of up is trusted this long by reads failing on their own (a 500 for one service), ms. */
export const UP_FRESH_MS = 1_000;

export type Verdict = 'up' | 'down';

export interface LivenessOptions {
  /** One probe: resolves when Consul answers as a live agent should; rejects otherwise; stops when `signal` aborts. */
  probe(signal: AbortSignal, timeoutMs: number): Promise<void>;
  diagnostics: Diagnostics;
  log: Logger;
  /** Where Consul is, for the state key (never the token). */
  address: string;
  /** What is served meanwhile, for the failing line. */
  serving(): string;
  random?: () => number;
  now?: () => number;
  /** The heartbeat's period while blocking reads are in flight, ms; 0: none. */
  heartbeatMs?: number;
}

/** A read in flight, as the tracker sees it. */
export interface TrackedRead {
  /** Aborts the request: when the caller's signal does, or the tracker cuts it. */
  readonly signal: AbortSignal;
  /** Whether the tracker cut it (after a recovery, or lost while Consul was up): ask again at once. */
  readonly cut: boolean;
  /** The read settled: stop tracking it. */
  done(): void;
}

interface Entry {
  readonly controller: AbortController;
  timer: NodeJS.Timeout;
  /** Cut only when overdue and Consul up: a blocking read (Consul guarantees its answer time). */
  readonly lostWhenOverdue: boolean;
  cut: boolean;
}

/** The error a read cut by the tracker fails with: not a failure of Consul's, ask again. */
export class CutByLiveness extends Error {
  constructor() {
    super('request cut by the liveness tracker');
    this.name = 'CutByLiveness';
  }
}

/** Whether a failed read may mean Consul is down: no answer at all, or a 5xx. */
export function isOutage(err: unknown): boolean {
  return err instanceof ConsulApiError && (err.status === 0 || err.status >= 500);
}

export class ConsulLiveness {
  private down = false;
  private downSince = 0;
  private lastUpAt = Number.NEGATIVE_INFINITY;
  private probing: Promise<Verdict> | null = null;
  private probeTimer: NodeJS.Timeout | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  /** Blocking reads in flight (the heartbeat runs while there are any). */
  private blockingReads = 0;
  private readonly probeStop = new AbortController();
  private stopped = false;
  private readonly inFlight = new Set<Entry>();
  /** Reads waiting for a recovery (`whenUp`, `backoff`): each is let go once, after its spread. */
  private readonly waiting = new Set<() => void>();
  private readonly key: string;
  private readonly random: () => number;
  private readonly now: () => number;

  constructor(private readonly options: LivenessOptions) {
    this.key = `consul ${options.address}`;
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
  }

  /** Whether Consul is taken to be up (the last probe answered, or none was needed). */
  get isUp(): boolean {
    return !this.down;
  }

  /** Reads in flight that the tracker watches (for tests and status). */
  get tracked(): number {
    return this.inFlight.size;
  }

  /**
   * A read failed in a way that may mean Consul is down (`isOutage`): the probe decides. Resolves
   * with the verdict; 'down' at once while Consul is down.
   */
  check(): Promise<Verdict> {
    if (this.stopped || this.down) return Promise.resolve(this.down ? 'down' : 'up');
    if (this.now() - this.lastUpAt < UP_FRESH_MS) return Promise.resolve('up');
    return this.probeNow();
  }

  /**
   * Tracks a read about to start: past `deadlineMs` it is overdue and the probe runs. A blocking
   * read (`blocking`) overdue while Consul is up is cut; any read still in flight at a recovery is.
   */
  track(deadlineMs: number, signal: AbortSignal, blocking: boolean): TrackedRead {
    const controller = new AbortController();
    const onAbort = (): void => controller.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    const entry: Entry = { controller, timer: setTimeout(() => this.overdue(entry), Math.max(0, deadlineMs)), lostWhenOverdue: blocking, cut: false };
    entry.timer.unref();
    this.inFlight.add(entry);
    if (blocking) {
      this.blockingReads++;
      this.heartbeat();
    }
    if (signal.aborted) controller.abort();
    let settled = false;
    return {
      signal: controller.signal,
      get cut() {
        return entry.cut;
      },
      done: () => {
        if (settled) return;
        settled = true;
        clearTimeout(entry.timer);
        signal.removeEventListener('abort', onAbort);
        this.inFlight.delete(entry);
        if (blocking) this.blockingReads--;
      },
    };
  }

  /**
   * Keeps the heartbeat running while blocking reads are in flight: each beat probes unless one
   * runs, Consul is already down (the down probes repeat on their own), or it answered recently.
   */
  private heartbeat(): void {
    const every = this.options.heartbeatMs ?? 0;
    if (every <= 0 || this.heartbeatTimer !== null || this.stopped) return;
    this.heartbeatTimer = setTimeout(() => {
      this.heartbeatTimer = null;
      if (this.stopped || this.blockingReads === 0) return;
      if (!this.down && this.now() - this.lastUpAt >= every / 2) void this.probeNow();
      this.heartbeat();
    }, every);
    this.heartbeatTimer.unref();
  }

  /** Resolves once Consul is up: at once if it is, else at the recovery plus a random spread; or when `signal` aborts. */
  whenUp(signal: AbortSignal): Promise<void> {
    if (!this.down || this.stopped) return Promise.resolve();
    return this.untilRecovery(signal);
  }

  /** A read's own backoff: `ms`, or less if Consul recovers meanwhile (then the spread); or until `signal` aborts. */
  backoff(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    // One signal for the waiter: the caller's, or the backoff running out (which unregisters it).
    const local = new AbortController();
    const onAbort = (): void => local.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(onAbort, ms);
    return this.untilRecovery(local.signal).then(() => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    });
  }

  /** A random delay in [0, SPREAD_MS), or until `signal` aborts: a read cut by a recovery asks again after it. */
  spread(signal: AbortSignal): Promise<void> {
    return sleep(this.random() * SPREAD_MS, signal);
  }

  /** Stops probing and lets every waiting read go (their own signals end them). */
  stop(): void {
    this.stopped = true;
    this.probeStop.abort();
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = null;
    if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = null;
    for (const release of [...this.waiting]) release();
    this.waiting.clear();
  }

  private untilRecovery(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted || this.stopped) return resolve();
      let timer: NodeJS.Timeout | null = null;
      const done = (): void => {
        if (timer) clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.waiting.delete(release);
        resolve();
      };
      // At a recovery: after a random spread, so that the retries are spread too.
      const release = (): void => {
        this.waiting.delete(release);
        if (this.stopped) return done();
        timer = setTimeout(done, this.random() * SPREAD_MS);
        timer.unref();
      };
      this.waiting.add(release);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  private overdue(entry: Entry): void {
    if (!this.inFlight.has(entry)) return;
    void this.check().then((verdict) => {
      // Down: it is cut at the recovery, with every other read in flight.
      if (verdict === 'up' && entry.lostWhenOverdue && this.inFlight.has(entry)) this.cut(entry);
    });
  }

  private cut(entry: Entry): void {
    entry.cut = true;
    this.inFlight.delete(entry);
    clearTimeout(entry.timer);
    entry.controller.abort();
  }

  private probeNow(): Promise<Verdict> {
    this.probing ??= this.probe().finally(() => {
      this.probing = null;
    });
    return this.probing;
  }

  private async probe(retried = false): Promise<Verdict> {
    const controller = new AbortController();
    const stop = (): void => controller.abort();
    this.probeStop.signal.addEventListener('abort', stop, { once: true });
    const timer = setTimeout(stop, PROBE_TIMEOUT_MS);
    const started = performance.now();
    let error: unknown = null;
    try {
      await this.options.probe(controller.signal, PROBE_TIMEOUT_MS);
    } catch (err) {
      error = controller.signal.aborted && !this.stopped ? new ConsulApiError(`no answer within ${PROBE_TIMEOUT_MS} ms`, 0, { cause: err }) : err;
    } finally {
      clearTimeout(timer);
      this.probeStop.signal.removeEventListener('abort', stop);
    }
    if (this.stopped) return this.down ? 'down' : 'up';
    // A failure that took well past the timeout means this process's event loop was stalled (GC, a
    // flood), not that Consul was slow: the answer may have been waiting unread. Asked once more
    // before Consul is called down (which would cut and re-issue every blocking read).
    if (error !== null && !retried && !this.down && performance.now() - started > PROBE_TIMEOUT_MS + STALL_MS) return this.probe(true);
    if (error === null) {
      this.lastUpAt = this.now();
      if (this.down) this.recovered();
      return 'up';
    }
    this.failing(error);
    this.probeTimer = setTimeout(() => {
      this.probeTimer = null;
      void this.probeNow();
    }, PROBE_EVERY_MS * (1 + this.random() / 4));
    this.probeTimer.unref();
    return 'down';
  }

  /** A probe failed: the first one says so (once per outage); the next ones at debug level. */
  private failing(error: unknown): void {
    if (!this.down) {
      this.down = true;
      this.downSince = this.now();
    }
    const status = error instanceof ConsulApiError ? error.status : 0;
    const message = error instanceof Error ? error.message : String(error);
    this.options.diagnostics.state.publish({
      key: this.key,
      subject: 'liveness',
      problem: 'down',
      level: 'warn',
      message: 'consul failing',
      repeat: 'consul probe failed',
      fields: { status, error: message, serving: this.options.serving(), probe: '/v1/status/leader' },
      log: this.options.log,
    });
  }

  /** The first probe that answers after an outage: said once; reads in flight cut; waiting reads let go. */
  private recovered(): void {
    this.down = false;
    const downMs = this.now() - this.downSince;
    const cut = [...this.inFlight];
    for (const entry of cut) this.cut(entry);
    const waiting = [...this.waiting];
    this.waiting.clear();
    this.options.diagnostics.state.publish({
      key: this.key,
      subject: 'liveness',
      problem: null,
      message: 'consul recovered',
      fields: { downMs, retrying: waiting.length + cut.length },
      log: this.options.log,
    });
    for (const release of waiting) release();
  }
}
