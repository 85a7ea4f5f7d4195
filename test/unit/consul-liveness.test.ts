/**
 * The Consul liveness tracker (src/catalog/consul/liveness.ts) in process, with a probe the test
 * answers by hand: one probe for many failing reads, the verdicts, reads waiting while Consul is
 * down and let go at its recovery, reads in flight cut, and the two log lines. Waits are on
 * events (a probe asked for, a promise settled), never on a clock.
 */

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { ConsulApiError } from '../../src/catalog/consul/api.js';
import { ConsulLiveness, CutByLiveness, isOutage, PROBE_TIMEOUT_MS, STALL_MS } from '../../src/catalog/consul/liveness.js';
import { eventually } from '../support/eventually.js';
import { loggedDiagnostics } from '../support/diagnostics.js';

interface Probe {
  answer(): void;
  fail(err?: Error): void;
}

function setup(t: TestContext): { liveness: ConsulLiveness; probes: Probe[]; logs: Record<string, unknown>[] } {
  const logs: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const probes: Probe[] = [];
  const liveness = new ConsulLiveness({
    probe: (signal) =>
      new Promise<void>((resolve, reject) => {
        probes.push({ answer: resolve, fail: (err: Error = new ConsulApiError('connect ECONNREFUSED', 0)) => reject(err) });
        signal.addEventListener('abort', () => reject(new ConsulApiError('request cancelled', 0)), { once: true });
      }),
    diagnostics: loggedDiagnostics(),
    log,
    address: 'http://127.0.0.1:8500',
    serving: () => 'last good catalog',
  });
  // The tracker's timers do not keep a process alive (a server's sockets do): this one does.
  const alive = setInterval(() => {}, 1_000);
  t.after(() => {
    liveness.stop();
    clearInterval(alive);
  });
  return { liveness, probes, logs };
}

const lines = (logs: Record<string, unknown>[]) => logs.filter((l) => l.msg === 'consul failing' || l.msg === 'consul recovered').map((l) => l.msg);

function settled<T>(p: Promise<T>): { promise: Promise<T>; done: () => boolean } {
  let done = false;
  const promise = p.finally(() => (done = true));
  return { promise, done: () => done };
}

test('what may mean Consul is down: no answer or a 5xx; not a 4xx', () => {
  assert.deepEqual(
    [0, 500, 503, 403, 404, 400].map((status) => isOutage(new ConsulApiError('x', status))),
    [true, true, true, false, false, false],
  );
  assert.equal(isOutage(new Error('other')), false);
});

test('many failing reads share one probe; an answered probe is trusted for a moment (no second probe)', async (t) => {
  const { liveness, probes } = setup(t);
  const verdicts = Promise.all([liveness.check(), liveness.check(), liveness.check()]);
  assert.equal(probes.length, 1);
  probes[0]!.answer();
  assert.deepEqual(await verdicts, ['up', 'up', 'up']);
  assert.equal(await liveness.check(), 'up');
  assert.equal(probes.length, 1, 'trusted: no new probe');
});

test('down: said once; reads wait; the probe repeats; at the first answer: recovered once, waiting reads go on, reads in flight are cut', async (t) => {
  const { liveness, probes, logs } = setup(t);
  const controller = new AbortController();
  const inFlight = liveness.track(60_000, controller.signal, true);
  const verdict = liveness.check();
  probes[0]!.fail();
  assert.equal(await verdict, 'down');
  assert.equal(liveness.isUp, false);
  assert.equal(await liveness.check(), 'down', 'no probe needed while down');
  const waiting = settled(liveness.whenUp(controller.signal));
  const backingOff = settled(liveness.backoff(3_600_000, controller.signal));
  await eventually(() => assert.equal(probes.length, 2, 'probed again'));
  probes[1]!.fail(new ConsulApiError('rpc error making call: EOF', 500));
  await eventually(() => assert.equal(probes.length, 3, 'probed again'));
  assert.deepEqual([waiting.done(), backingOff.done(), inFlight.signal.aborted], [false, false, false]);
  probes[2]!.answer();
  await waiting.promise;
  await backingOff.promise; // an hour's backoff ends at the recovery too
  assert.deepEqual([inFlight.signal.aborted, inFlight.cut, liveness.isUp], [true, true, true]);
  inFlight.done();
  assert.deepEqual(lines(logs), ['consul failing', 'consul recovered']);
  assert.equal(logs.filter((l) => l.msg === 'consul probe failed').length, 1, 'the second failed probe at debug level');
  const failing = logs.find((l) => l.msg === 'consul failing')!;
  assert.deepEqual([failing.status, failing.error, failing.serving], [0, 'connect ECONNREFUSED', 'last good catalog']);
});

test('an overdue blocking read while Consul answers is lost: cut at once; an overdue plain read is only slow: left', async (t) => {
  const { liveness, probes } = setup(t);
  const signal = new AbortController().signal;
  const blocking = liveness.track(0, signal, true);
  const plain = liveness.track(0, signal, false);
  await eventually(() => assert.equal(probes.length, 1, 'overdue: probed'));
  probes[0]!.answer();
  await eventually(() => assert.equal(blocking.signal.aborted, true, 'the blocking read cut'));
  assert.deepEqual([blocking.cut, plain.cut, plain.signal.aborted], [true, false, false]);
  plain.done();
  assert.equal(liveness.tracked, 0);
});

test("the caller's own abort passes through (not a cut); a cut read is told by CutByLiveness's name", (t) => {
  const { liveness } = setup(t);
  const controller = new AbortController();
  const read = liveness.track(60_000, controller.signal, true);
  controller.abort();
  assert.deepEqual([read.signal.aborted, read.cut], [true, false]);
  read.done();
  assert.equal(new CutByLiveness().name, 'CutByLiveness');
});

test('a probe that failed only because this process stalled (well past the timeout) is asked again before Consul is called down', async (t) => {
  const { liveness, probes, logs } = setup(t);
  const verdict = liveness.check();
  await eventually(() => assert.equal(probes.length, 1, 'the first probe asked'));
  // The event loop blocked past the probe's timeout (as a long GC or a flood would): the timer
  // fires late, the probe fails, and Consul had no say in it.
  const until = performance.now() + PROBE_TIMEOUT_MS + STALL_MS + 100;
  while (performance.now() < until);
  await eventually(() => assert.equal(probes.length, 2, 'asked once more'));
  probes[1]!.answer();
  assert.equal(await verdict, 'up');
  assert.deepEqual(lines(logs), [], 'never called down');
});
