/**
 * The watch registry of the Consul source: every Consul read that repeats on its own, by key, and
 * how its failures are told.
 *
 * - Blocking watches (`watch`): `nodes/DC`, `services/DC`, `health/DC/service`, one BlockingWatch
 *   each. How their reads are made: first reads (index 0) at most FIRST_READS_IN_FLIGHT at once;
 *   until the first sync, blocking reads wait for it and then start REARMS_PER_TURN per event-loop
 *   turn; a stale answer too old (X-Consul-LastContact above --max-stale) is read again from the
 *   leader; a default-deny ACL policy without a token is warned about once.
 * - The polled read (`poll`): the list of datacenters cannot block; it is read now and then every
 *   few minutes, retried with the same backoff as the watches.
 * - New data goes through the caller's `apply`, then `onChange` (a publish).
 * - Every read in flight is tracked by the source's liveness tracker (liveness.ts): a blocking read
 *   past wait + wait/16 + a margin, or a plain read past --fetch-timeout, makes it probe Consul. A
 *   read that fails with no answer or a 5xx asks the tracker: while Consul is down the watch waits
 *   on it (no backoff of its own) and goes on, with a little jitter, the moment Consul is back; a
 *   read the tracker cut (at a recovery, or lost while Consul was up) asks again after that jitter.
 *   Other failures (an ACL refusal, a 500 while Consul answers the probe) back off alone, and that
 *   backoff too ends at a recovery.
 * - Failures and recoveries go out on the diagnostics seam as `state` events under the key
 *   `consul`, one subject per watch; the state logger logs each change of the kind of failure once.
 *   A failure while Consul is down is reported without a message: the tracker's "consul failing"
 *   says it, once. A watch stopped by key no longer counts as failing.
 *
 * Which watches should run is decided elsewhere (datacenters.ts); this only runs them.
 */

import type { Logger } from 'pino';
import type { Diagnostics } from '../../diagnostics/channels.js';
import { backoffDelay, Limiter, Pacer, untilOrAborted, type Backoff } from '../../util/pacing.js';
import { ConsulApiError, type QueryMeta, type Result } from './api.js';
import { BlockingWatch, RETRY_BACKOFF } from './blocking-watch.js';
import { CutByLiveness, isOutage, type ConsulLiveness } from './liveness.js';

/** What the state logger knows Consul's watches by. */
const STATE_KEY = 'consul';

/** Non-blocking reads (index 0) in flight at once; blocking ones are not limited (they park). */
const FIRST_READS_IN_FLIGHT = 32;

/** Blocking reads started per event-loop turn before the first sync, and reads retried at a recovery. */
const REARMS_PER_TURN = 16;

/** One call of a blocking read, as the api's `nodes`, `services` and `health` take it. */
export type BlockingRead<T> = (o: { dc: string; index: bigint; waitMs: number; stale: boolean; signal: AbortSignal }) => Promise<Result<T>>;

export interface WatchRegistryOptions {
  log: Logger;
  /** Watch failures and recoveries are reported here (`state`), and logged by its subscriber. */
  diagnostics: Diagnostics;
  /** Send `?stale` so any server answers (Consul's DNS default). */
  allowStale: boolean;
  /** A stale answer from a server that last heard from the leader longer ago is re-read consistently. */
  maxStaleMs: number;
  /** Blocking wait per call, ms. */
  waitMs: number;
  /** A plain read (index 0, the datacenter list) in flight longer than this makes the tracker probe, ms (--fetch-timeout). */
  plainReadMs: number;
  /** Decides whether Consul is up; tracks every read in flight (liveness.ts). */
  liveness: ConsulLiveness;
  /** How a failed read is retried while Consul is up (default RETRY_BACKOFF). */
  backoff?: Backoff;
  /** Whether an ACL token is sent (to explain an empty catalog under a default-deny policy). */
  hasToken?: boolean;
  random?: () => number;
  /** The first sync: blocking reads wait for it; failure reports say whether a catalog is served. */
  readiness: { readonly isReady: boolean; readonly ready: Promise<void> };
  /** New data was applied. */
  onChange(): void;
}

/** What the registry holds: a watch or a poll, stopped alike. */
interface Running {
  stop(): Promise<void>;
}

export class WatchRegistry {
  private readonly running = new Map<string, Running>();
  private readonly firstReads = new Limiter(FIRST_READS_IN_FLIGHT);
  private readonly rearms = new Pacer(REARMS_PER_TURN);
  private warnedAnonymous = false;

  constructor(private readonly options: WatchRegistryOptions) {}

  has(key: string): boolean {
    return this.running.has(key);
  }

  /** Reads running (blocking watches and the poll), for metrics. */
  get size(): number {
    return this.running.size;
  }

  /**
   * Starts a blocking watch whose results go through `apply` and then trigger a publish. Stale
   * reads that are too stale (X-Consul-LastContact above --max-stale) are read again consistently.
   */
  watch<T>(key: string, dc: string, read: BlockingRead<T>, apply: (data: T) => void): void {
    const { allowStale, maxStaleMs, waitMs, readiness, log } = this.options;
    const watch: BlockingWatch<T> = new BlockingWatch<T>({
      waitMs,
      random: this.options.random,
      fetch: async (index, signal) => {
        let result: Result<T>;
        if (index === 0n) {
          // First reads answer at once: bounded in number, so that 5,000 of them at start do not
          // all hold a connection, a response and its parsed body at the same moment.
          result = await this.firstReads.run(() => this.tracked(signal, false, (s) => read({ dc, index, waitMs, stale: allowStale, signal: s })));
        } else {
          // Until the first sync, the first reads go first: a blocking read asked later still
          // returns at once whatever changed since its index, so nothing is missed.
          // Then they start a few at a time, so that questions are answered in between: 5,000
          // requests started at once would hold the event loop for seconds.
          if (!readiness.isReady) {
            await untilOrAborted(readiness.ready, signal);
            await this.rearms.turn();
          }
          if (signal.aborted) throw new ConsulApiError('request cancelled', 0);
          result = await this.tracked(signal, true, (s) => read({ dc, index, waitMs, stale: allowStale, signal: s }));
        }
        if (allowStale && tooStale(result.meta, maxStaleMs)) {
          log.debug({ watch: key, lastContactMs: result.meta.lastContactMs }, 'stale answer too old; reading from the leader');
          result = await this.tracked(signal, false, (s) => read({ dc, index: 0n, waitMs, stale: false, signal: s }));
        }
        if (result.meta.defaultAclPolicy === 'deny' && !this.options.hasToken && !this.warnedAnonymous) {
          // Consul does not refuse a request without a token: it filters it down to what the
          // anonymous token may read, often nothing. Say so, or an empty catalog is a mystery.
          this.warnedAnonymous = true;
          log.warn('consul denies by default and svcdns has no ACL token: only what the anonymous token may read is served; set --consul-token');
        }
        return { data: result.data, index: result.meta.index };
      },
      onData: (data) => {
        if (this.running.get(key) !== watch) return;
        apply(data);
        this.options.onChange();
      },
      // Reported in `pause`, once the liveness tracker has said whether Consul itself is down.
      onError: () => {},
      onRecover: () => this.reportRecovery(key),
      pause: (err, failures, signal): Promise<void> => this.pause(key, err, failures, signal, () => this.running.get(key) === watch),
    });
    this.running.set(key, watch);
    watch.start();
  }

  /**
   * One read, tracked by the liveness tracker while in flight: overdue past wait + wait/16 + a
   * margin (a blocking read) or --fetch-timeout (a plain one). A read the tracker cut fails with
   * CutByLiveness.
   */
  private async tracked<T>(signal: AbortSignal, blocking: boolean, read: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const { waitMs, plainReadMs, liveness } = this.options;
    const deadline = blocking ? waitMs + waitMs / 16 + Math.min(1_000, waitMs / 4) : plainReadMs;
    const t = liveness.track(deadline, signal, blocking);
    try {
      return await read(t.signal);
    } catch (err) {
      if (t.cut && !signal.aborted) throw new CutByLiveness();
      throw err;
    } finally {
      t.done();
    }
  }

  /**
   * After a failed read: how long the watch or poll under `key` waits before the next (see the
   * file's header), reporting the failure on the way while it is `current`.
   */
  private async pause(key: string, err: unknown, failures: number, signal: AbortSignal, current: () => boolean): Promise<void> {
    const { liveness } = this.options;
    if (err instanceof CutByLiveness) {
      await liveness.spread(signal);
      return this.rearms.turn();
    }
    if (isOutage(err) && (await liveness.check()) === 'down') {
      if (current()) this.reportDown(key, err, failures);
      // Let go over a random spread at the recovery, and then a few per event-loop turn.
      await liveness.whenUp(signal);
      return this.rearms.turn();
    }
    if (current()) this.reportFailure(key, err, failures);
    const random = this.options.random ?? Math.random;
    return liveness.backoff(backoffDelay(failures, this.options.backoff ?? RETRY_BACKOFF, random()), signal);
  }

  /**
   * Reads `read` now and every `everyMs` (for what cannot be watched); its results go through
   * `apply` and then trigger a publish. A failure is retried as a watch's is (`pause`).
   */
  poll<T>(key: string, read: (signal: AbortSignal) => Promise<T>, apply: (data: T) => void, everyMs: number): void {
    const poll: Poll<T> = new Poll<T>({
      read: (signal) => this.tracked(signal, false, read),
      everyMs,
      onData: (data) => {
        apply(data);
        this.options.onChange();
      },
      pause: (err, failures, signal) => this.pause(key, err, failures, signal, () => this.running.get(key) === poll),
      onRecover: () => this.reportRecovery(key),
    });
    this.running.set(key, poll);
    poll.start();
  }

  /** Stops and forgets the watch under `key`, if any (its failures no longer count). */
  stop(key: string): void {
    const watch = this.running.get(key);
    this.running.delete(key);
    if (watch) {
      this.options.diagnostics.state.publish({ key: STATE_KEY, subject: key, problem: null, log: this.options.log });
      void watch.stop();
    }
  }

  /** Stops every watch and poll; resolves when the watches' loops have ended. */
  async stopAll(): Promise<void> {
    const all = [...this.running.values()];
    this.running.clear();
    await Promise.all(all.map((w) => w.stop()));
  }

  /** Starts afresh (a reload): the state logger forgets every failure, and logs nothing for it. */
  forgetFailures(): void {
    this.options.diagnostics.state.publish({ key: STATE_KEY, subject: '', problem: null, forget: true, log: this.options.log });
  }

  /**
   * Reported on every failure; the state logger logs when the kind of failure changes (healthy ->
   * unreachable, unreachable -> ACL refused, ...), not per watch or per retry: an outage is one
   * line however many watches are retrying.
   */
  private reportFailure(key: string, err: unknown, failures: number): void {
    const status = err instanceof ConsulApiError ? err.status : 0;
    const message = err instanceof Error ? err.message : String(err);
    this.options.diagnostics.state.publish({
      key: STATE_KEY,
      subject: key,
      problem: status === 0 ? 'unreachable' : `${status} ${message}`,
      level: status === 403 ? 'error' : 'warn',
      message: status === 403 ? 'consul refused the ACL token; check --consul-token' : 'consul watch failing; retrying with backoff',
      repeat: 'consul watch still failing',
      fields: { watch: key, status, error: message, failures, serving: this.options.readiness.isReady ? 'last good catalog' : 'SERVFAIL until the first sync' },
      log: this.options.log,
    });
  }

  /** A failure while Consul is down: counted and shown by /status, not logged (the tracker said "consul failing"). */
  private reportDown(key: string, err: unknown, failures: number): void {
    const status = err instanceof ConsulApiError ? err.status : 0;
    this.options.diagnostics.state.publish({ key: STATE_KEY, subject: key, problem: 'consul down', fields: { watch: key, status, failures }, log: this.options.log });
  }

  private reportRecovery(key: string): void {
    this.options.diagnostics.state.publish({ key: STATE_KEY, subject: key, problem: null, message: 'consul watches recovered', fields: { watch: key }, log: this.options.log });
  }
}

interface PollOptions<T> {
  read(signal: AbortSignal): Promise<T>;
  /** Between successful reads, ms. */
  everyMs: number;
  onData(data: T): void;
  /** After a failed read: resolves when the next may go (or the signal aborts). */
  pause(err: unknown, failures: number, signal: AbortSignal): Promise<void>;
  onRecover(): void;
}

/**
 * One read that cannot block, repeated: now, then `everyMs` after each success; after a failure,
 * when `pause` says. Its timer does not keep the process alive. `stop()` ends it at once; a read
 * still in flight then is aborted and ignored.
 */
class Poll<T> {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly options: PollOptions<T>) {}

  start(): void {
    void this.run(0);
  }

  stop(): Promise<void> {
    this.controller.abort();
    if (this.timer) clearTimeout(this.timer);
    return Promise.resolve();
  }

  private async run(failures: number): Promise<void> {
    const { signal } = this.controller;
    while (!signal.aborted) {
      try {
        const data = await this.options.read(signal);
        if (signal.aborted) return;
        if (failures > 0) this.options.onRecover();
        this.options.onData(data);
        failures = 0;
        break;
      } catch (err) {
        if (signal.aborted) return;
        failures++;
        await this.options.pause(err, failures, signal);
      }
    }
    if (signal.aborted) return;
    this.timer = setTimeout(() => void this.run(0), this.options.everyMs);
    this.timer.unref();
  }
}

function tooStale(meta: QueryMeta, maxStaleMs: number): boolean {
  return meta.lastContactMs > maxStaleMs;
}
