/**
 * Consul's blocking-query rules, driven by a scripted server: what index each call carries, what
 * is delivered, and that the loop never spins.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BlockingWatch, type WatchResult } from '../../src/catalog/consul/blocking-watch.js';

type Step = WatchResult<string> | Error;

/** Runs a watch over `script` (one step per call) and records the index each call carried. */
async function run(script: Step[], options: { waitMs?: number; minIntervalMs?: number; backoff?: { baseMs: number; maxMs: number } } = {}) {
  const indexes: bigint[] = [];
  const delivered: string[] = [];
  const errors: number[] = [];
  let recovered = 0;
  let calls = 0;
  const times: number[] = [];
  await new Promise<void>((resolve) => {
    const watch: BlockingWatch<string> = new BlockingWatch<string>({
      waitMs: options.waitMs ?? 1000,
      minIntervalMs: options.minIntervalMs ?? 0,
      backoff: options.backoff ?? { baseMs: 1, maxMs: 4 },
      random: () => 0.5,
      fetch: async (index, signal) => {
        indexes.push(index);
        times.push(Date.now());
        const step = script[calls++];
        if (step === undefined) {
          // The script is over: park like a blocking query until stop() aborts the call.
          const parked = new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));
          void watch.stop().then(resolve);
          return parked;
        }
        await Promise.resolve();
        if (step instanceof Error) throw step;
        return step;
      },
      onData: (d) => delivered.push(d),
      onError: (_e, n) => errors.push(n),
      onRecover: () => recovered++,
    });
    watch.start();
  });
  return { indexes, delivered, errors, recovered, times };
}

test('the first call has no index; each next call carries the last X-Consul-Index', async () => {
  const r = await run([
    { data: 'a', index: 5n },
    { data: 'b', index: 9n },
    { data: 'c', index: 12n },
  ]);
  assert.deepEqual(r.indexes, [0n, 5n, 9n, 12n]);
  assert.deepEqual(r.delivered, ['a', 'b', 'c']);
});

test('an unchanged index delivers nothing and asks again', async () => {
  const r = await run([
    { data: 'a', index: 5n },
    { data: 'a', index: 5n },
    { data: 'b', index: 6n },
  ]);
  assert.deepEqual(r.indexes, [0n, 5n, 5n, 6n]);
  assert.deepEqual(r.delivered, ['a', 'b']);
});

test('an index that goes backwards resets to 0 (the data is delivered), then blocks on the new index', async () => {
  const r = await run([
    { data: 'a', index: 100n },
    { data: 'after restart', index: 3n },
    { data: 'fresh', index: 4n },
  ]);
  assert.deepEqual(r.indexes, [0n, 100n, 0n, 4n]);
  assert.deepEqual(r.delivered, ['a', 'after restart', 'fresh']);
});

test('an index of 0 is treated as 1, so the next call still blocks', async () => {
  const r = await run([
    { data: 'a', index: 0n },
    { data: 'b', index: 2n },
  ]);
  assert.deepEqual(r.indexes, [0n, 1n, 2n]);
});

test('errors back off exponentially, capped, and a success resets the count', async () => {
  const r = await run(
    [new Error('down'), new Error('down'), new Error('down'), new Error('down'), { data: 'a', index: 1n }, new Error('again'), { data: 'b', index: 2n }],
    { backoff: { baseMs: 20, maxMs: 50 } },
  );
  assert.deepEqual(r.errors, [1, 2, 3, 4, 1]);
  assert.equal(r.recovered, 2);
  assert.deepEqual(r.delivered, ['a', 'b']);
  // random() = 0.5: delays of 10, 20, 25 (capped), 25 ms between the failing calls.
  const gaps = r.times.slice(1, 5).map((t, i) => t - r.times[i]!);
  const expected = [10, 20, 25, 25];
  gaps.forEach((g, i) => assert.ok(g >= expected[i]! - 2, `gap ${i} was ${g} ms, expected about ${expected[i]}`));
});

test('a server that ignores the index (returns at once, unchanged) is polled at most every minIntervalMs', async () => {
  const same = { data: 'a', index: 7n };
  const r = await run([same, same, same, same], { minIntervalMs: 40, waitMs: 10_000 });
  assert.deepEqual(r.delivered, ['a']);
  // random() = 0.5: each early unchanged answer waits 0.75 × 40 = 30 ms.
  const gaps = r.times.slice(2).map((t, i) => t - r.times[i + 1]!);
  for (const g of gaps) assert.ok(g >= 28, `re-polled after ${g} ms`);
});
