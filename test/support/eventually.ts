/**
 * Bounded polling for tests: retries `check` until it passes or `timeoutMs` runs out, then throws
 * its last failure.
 *
 * Assertions inside must carry a message: a failing `assert.ok(x)` without one makes Node parse the
 * test's source to describe `x`, which on tsx-compiled files takes seconds per call and starves the
 * event loop the server under test runs on.
 */

import { setTimeout as sleep } from 'node:timers/promises';

/**
 * The default bound is generous (10 s): it is how long a check that will never pass takes to fail,
 * not a claim about speed, and a busy machine must not turn a slow pass into a failure.
 */
export async function eventually(check: () => void | Promise<void>, timeoutMs = 10_000, intervalMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(intervalMs);
    }
  }
}

/**
 * Resolves as `promise` does, or rejects naming `what` once `timeoutMs` has passed. Its timer is
 * cleared either way, so it never keeps the test process alive after the test.
 */
export async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
