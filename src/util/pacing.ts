/**
 * Pacing: how much work runs at once, and when waiting work goes on. Generic (nothing here knows
 * Consul or DNS) and without timers of its own beyond setImmediate (and `fulfilsWithin`'s and
 * `sleep`'s one):
 * - `Limiter`: at most N tasks in flight; the others wait, in arrival order;
 * - `Pacer`: at most N waiters let go per event-loop turn, so that I/O is handled in between;
 * - `untilOrAborted`: waits for a promise, or no longer once a signal aborts;
 * - `fulfilsWithin`: waits for a promise at most so long, and says whether it came;
 * - `backoffDelay`: how long to wait before a retry, exponential with full jitter, capped (pure);
 * - `sleep`: a wait that an abort cuts short (a backoff, a spread).
 */

/**
 * Runs at most `max` tasks at once, the others in arrival order. A task that fails frees its place
 * like one that succeeds; `run` settles as the task does.
 */
export class Limiter {
  private active = 0;
  private readonly queue: (() => void)[] = [];

  constructor(private readonly max: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((resolve) => this.queue.push(resolve));
    this.active++;
    try {
      return await task();
    } finally {
      this.active--;
      this.queue.shift()?.();
    }
  }
}

/**
 * Lets `perTurn` callers of `turn()` go on per event-loop turn (setImmediate: I/O is handled in
 * between), in the order they called: many starts spread over turns rather than one long turn.
 */
export class Pacer {
  private readonly waiting: (() => void)[] = [];
  private scheduled = false;

  constructor(private readonly perTurn: number) {}

  turn(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.waiting.push(resolve);
      if (!this.scheduled) this.release();
    });
  }

  private release(): void {
    this.scheduled = true;
    setImmediate(() => {
      for (const resolve of this.waiting.splice(0, this.perTurn)) resolve();
      if (this.waiting.length > 0) this.release();
      else this.scheduled = false;
    });
  }
}

/**
 * Resolves when `promise` does or `signal` aborts, whichever is first (at once if already aborted);
 * never rejects, and once resolved leaves no listener on `signal`. `promise` must not reject.
 */
export function untilOrAborted(promise: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = (): void => {
      signal.removeEventListener('abort', done);
      resolve();
    };
    signal.addEventListener('abort', done, { once: true });
    void promise.then(done);
  });
}

/**
 * Whether `promise` fulfils within `ms` (false when the time runs out first); its rejection passes
 * through. The timer is cleared either way, so nothing is left running.
 */
export async function fulfilsWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, ms));
  });
  try {
    return await Promise.race([promise.then(() => true), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** Exponential backoff: the ceiling of the first retry's delay, doubling per failure up to a cap. */
export interface Backoff {
  /** Ceiling of the delay after the first failure, ms. */
  baseMs: number;
  /** No delay reaches this, ms, however many failures. */
  maxMs: number;
}

/**
 * The delay before the next try after `attempt` consecutive failures (1 after the first), ms:
 * exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"),
 * uniform in [0, min(maxMs, baseMs * 2^(attempt - 1))) for `random` drawn uniformly from [0, 1).
 * Pure: the caller counts failures and resets the count to 0 after a success; 0 waits 0.
 */
export function backoffDelay(attempt: number, backoff: Backoff, random: number): number {
  if (attempt < 1) return 0;
  return random * Math.min(backoff.maxMs, backoff.baseMs * 2 ** (attempt - 1));
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects): a backoff a stop can cut short. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
