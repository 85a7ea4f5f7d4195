/**
 * One Consul blocking query, repeated forever: Consul's "Blocking Queries" rules in one place.
 *
 * - The first call has no index and answers at once; each next call carries the last
 *   X-Consul-Index and blocks until something changed or the wait ran out.
 * - An index that goes backwards (Consul restarted, or a snapshot was restored) resets to 0, so
 *   the next call answers at once with a fresh index; the data that came with it is delivered.
 * - An index <= 0 is treated as 1, so a buggy zero never turns the loop into a busy poll.
 * - An unchanged index means nothing changed: ask again without delivering anything. If such a
 *   call returned early (a proxy that ignores `index`), wait `minIntervalMs` before the next one.
 * - Errors back off exponentially with full jitter, capped (`backoffDelay`), and reset after a success;
 *   or, given `pause`, wait as it says (the Consul source waits on its liveness tracker).
 * So the loop never spins, whatever the server does.
 */

import { backoffDelay, sleep, type Backoff } from '../../util/pacing.js';

/** How failed Consul reads are retried unless told otherwise: the delay's ceiling starts at 250 ms and doubles up to 30 s. */
export const RETRY_BACKOFF: Backoff = { baseMs: 250, maxMs: 30_000 };

export interface WatchResult<T> {
  data: T;
  index: bigint;
}

export interface BlockingWatchOptions<T> {
  /** One call: the blocking read for `index` (0n: answer at once). */
  fetch(index: bigint, signal: AbortSignal): Promise<WatchResult<T>>;
  /** A new result (first, or index changed). */
  onData(data: T): void;
  /** A call failed; `failures` counts consecutive failures (1 on the first). */
  onError(err: unknown, failures: number): void;
  /** The first success after one or more failures. */
  onRecover?(): void;
  /**
   * After a failed call (`onError` told): resolves when the next call may go, or when `signal`
   * aborts. Default: the backoff's delay.
   */
  pause?(err: unknown, failures: number, signal: AbortSignal): Promise<void>;
  /** Blocking wait of each call, ms; an unchanged result sooner than this counts as early. */
  waitMs: number;
  /** Retry delays after errors; RETRY_BACKOFF by default. */
  backoff?: Backoff;
  minIntervalMs?: number;
  random?: () => number;
  now?: () => number;
}

export class BlockingWatch<T> {
  private readonly controller = new AbortController();
  private running: Promise<void> | null = null;
  private index = 0n;

  constructor(private readonly options: BlockingWatchOptions<T>) {}

  start(): void {
    this.running ??= this.loop();
  }

  /** Stops the loop and aborts the call in flight; resolves when the loop has ended. */
  async stop(): Promise<void> {
    this.controller.abort();
    await this.running;
  }

  private async loop(): Promise<void> {
    const { signal } = this.controller;
    const random = this.options.random ?? Math.random;
    const now = this.options.now ?? Date.now;
    const backoff = this.options.backoff ?? RETRY_BACKOFF;
    const minIntervalMs = this.options.minIntervalMs ?? 1_000;
    let failures = 0;
    while (!signal.aborted) {
      const started = now();
      let result: WatchResult<T>;
      try {
        result = await this.options.fetch(this.index, signal);
      } catch (err) {
        if (signal.aborted) return;
        failures++;
        this.options.onError(err, failures);
        await (this.options.pause ? this.options.pause(err, failures, signal) : sleep(backoffDelay(failures, backoff, random()), signal));
        continue;
      }
      if (signal.aborted) return;
      if (failures > 0) this.options.onRecover?.();
      failures = 0;

      const previous = this.index;
      const next = result.index <= 0n ? 1n : result.index;
      if (previous !== 0n && next === previous) {
        if (now() - started < Math.min(minIntervalMs, this.options.waitMs)) await sleep(minIntervalMs * (0.5 + random() / 2), signal);
        continue;
      }
      this.index = previous !== 0n && next < previous ? 0n : next;
      this.options.onData(result.data);
    }
  }
}
