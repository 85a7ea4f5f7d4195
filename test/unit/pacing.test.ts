/**
 * The generic pacing helpers (src/util/pacing.ts): how many tasks run at once, how many waiters go
 * on per event-loop turn, a wait that an abort ends, and the retry backoff. No sleeps: turns are
 * counted with setImmediate, and the backoff is a pure function of its arguments.
 */

import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Limiter, Pacer, backoffDelay, untilOrAborted } from '../../src/util/pacing.js';

/** A promise and the functions that settle it. */
function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: Error) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

test('Limiter runs at most max tasks at once, the others in arrival order', async () => {
  const limiter = new Limiter(2);
  const gates = [0, 1, 2, 3, 4].map(() => deferred<number>());
  const started: number[] = [];
  let active = 0;
  let most = 0;
  const results = gates.map((gate, i) =>
    limiter.run(async () => {
      started.push(i);
      most = Math.max(most, ++active);
      try {
        return await gate.promise;
      } finally {
        active--;
      }
    }),
  );
  await nextTurn();
  assert.deepEqual(started, [0, 1]);
  gates[1]!.resolve(1);
  await nextTurn();
  assert.deepEqual(started, [0, 1, 2]);
  for (const [i, gate] of gates.entries()) gate.resolve(i);
  assert.deepEqual(await Promise.all(results), [0, 1, 2, 3, 4]);
  assert.deepEqual(started, [0, 1, 2, 3, 4]);
  assert.equal(most, 2);
});

test('Limiter: a failing task frees its place and its run rejects', async () => {
  const limiter = new Limiter(1);
  const failing = limiter.run(() => Promise.reject(new Error('boom')));
  const next = limiter.run(() => Promise.resolve('next'));
  await assert.rejects(failing, /boom/);
  assert.equal(await next, 'next');
});

test('Pacer lets perTurn waiters go per event-loop turn, in order', async () => {
  const pacer = new Pacer(2);
  const released: number[] = [];
  const all = [0, 1, 2, 3, 4].map((i) => pacer.turn().then(() => released.push(i)));
  assert.deepEqual(released, [], 'nobody goes on in the turn that asked');
  await nextTurn();
  assert.deepEqual(released, [0, 1]);
  await nextTurn();
  assert.deepEqual(released, [0, 1, 2, 3]);
  await nextTurn();
  assert.deepEqual(released, [0, 1, 2, 3, 4]);
  await Promise.all(all);
  // Idle again: a later caller goes on in the next turn.
  let late = false;
  void pacer.turn().then(() => (late = true));
  await nextTurn();
  assert.equal(late, true);
});

test('untilOrAborted resolves with the promise, and removes its abort listener', async () => {
  const controller = new AbortController();
  const gate = deferred();
  let done = false;
  const wait = untilOrAborted(gate.promise, controller.signal).then(() => (done = true));
  await nextTurn();
  assert.equal(done, false);
  assert.equal(getEventListeners(controller.signal, 'abort').length, 1);
  gate.resolve();
  await wait;
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
});

test('untilOrAborted resolves when the signal aborts first, or at once if it already has', async () => {
  const controller = new AbortController();
  const never = new Promise<void>(() => {});
  const wait = untilOrAborted(never, controller.signal);
  controller.abort();
  await wait;
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
  await untilOrAborted(never, controller.signal);
});

const BACKOFF = { baseMs: 250, maxMs: 30_000 };
/** The largest value below 1 that Math.random() can return. */
const ALMOST_ONE = 1 - 2 ** -53;

test('backoffDelay: full jitter, in [0, base * 2^(attempt - 1)) while under the cap', () => {
  for (let attempt = 1; attempt <= 7; attempt++) {
    const ceiling = 250 * 2 ** (attempt - 1);
    assert.equal(backoffDelay(attempt, BACKOFF, 0), 0);
    assert.equal(backoffDelay(attempt, BACKOFF, 0.5), ceiling / 2);
    const top = backoffDelay(attempt, BACKOFF, ALMOST_ONE);
    assert.ok(top < ceiling && top > ceiling * 0.999, `attempt ${attempt}: ${top} vs ${ceiling}`);
  }
  assert.deepEqual(
    [1, 2, 3, 4].map((n) => backoffDelay(n, { baseMs: 10, maxMs: 1_000 }, 0.5)),
    [5, 10, 20, 40],
  );
});

test('backoffDelay: capped at maxMs, however many failures', () => {
  // 250 * 2^7 = 32,000 > 30,000: from the 8th failure on, the cap is the ceiling.
  for (const attempt of [8, 9, 20, 100, 1_100, Number.MAX_SAFE_INTEGER]) {
    assert.equal(backoffDelay(attempt, BACKOFF, 0.5), 15_000, `attempt ${attempt}`);
    assert.ok(backoffDelay(attempt, BACKOFF, ALMOST_ONE) < 30_000);
  }
});

test('backoffDelay: after a reset the count starts again from the base', () => {
  // The caller resets its count to 0 after a success: no wait, and the next failure waits as the first did.
  assert.equal(backoffDelay(0, BACKOFF, 0.5), 0);
  assert.equal(backoffDelay(-1, BACKOFF, 0.5), 0);
  const first = backoffDelay(1, BACKOFF, 0.5);
  backoffDelay(12, BACKOFF, 0.5);
  assert.equal(backoffDelay(1, BACKOFF, 0.5), first);
  assert.equal(first, 125);
});
