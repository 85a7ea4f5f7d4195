/**
 * Bounded polling for tests: retries `check` until it passes or `timeoutMs` runs out, then throws
 * its last failure.
 *
 * Assertions inside must carry a message: a failing `assert.ok(x)` without one makes Node parse the
 * test's source to describe `x`, which on tsx-compiled files takes seconds per call and starves the
 * event loop the server under test runs on.
 */

import { setTimeout as sleep } from 'node:timers/promises';

export async function eventually(check: () => void | Promise<void>, timeoutMs = 3000, intervalMs = 20): Promise<void> {
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
