/**
 * Propagation, measured one way for every registry: a change is written, and from the moment the
 * write has completed, svcdns is asked over UDP (127.0.0.1) as fast as it answers until its answer
 * shows the change. `measure` is that loop; `consulPropagation` is its run against the Consul
 * simulator (health flips, as `npm run bench:consul` has always measured it), shared with
 * `npm run bench:zookeeper` so that both registries are measured by the same code in the same run.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import { buildQuery, decode, udpExchange, zoneLines } from '../../test/support/client.js';
import { ConsulSim } from '../../test/support/consul-sim.js';
import { startSvcdns } from '../faults/svcdns.js';

/** A change not seen in DNS this long after its write fails the run (it is a bug, not a figure). */
const CHANGE_BOUND_MS = 5000;
/** Pause between changes, so that one change's answer is never mistaken for the next one's. */
const BETWEEN_MS = 5;

/**
 * The record data of the answer section (`10.0.0.1`; SRV `1 1 8080 target.`), sorted; `['<timeout>']`
 * when svcdns did not answer within 500 ms (never equal to an expected answer, so polling goes on).
 */
export async function answers(port: number, name: string, type: 'A' | 'SRV'): Promise<string[]> {
  const reply = await udpExchange(port, buildQuery(name, type), 500);
  if (!reply) return ['<timeout>'];
  return zoneLines(decode(reply).answers)
    .map((line) => line.split(' ').slice(4).join(' '))
    .sort();
}

export interface Change {
  /** Makes change `i` and resolves once the registry has confirmed the write. */
  write(i: number): Promise<void>;
  /** Whether svcdns's answer now shows change `i`. */
  seen(i: number): Promise<boolean>;
}

/** Milliseconds from each write's completion to the first answer showing it, `changes` times, sorted. */
export async function measure(changes: number, change: Change): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < changes; i++) {
    await change.write(i);
    const t0 = performance.now();
    while (!(await change.seen(i))) {
      if (performance.now() - t0 > CHANGE_BOUND_MS) throw new Error(`change ${i} not seen in DNS within ${CHANGE_BOUND_MS} ms`);
    }
    latencies.push(performance.now() - t0);
    await sleep(BETWEEN_MS);
  }
  return latencies.sort((a, b) => a - b);
}

export interface Summary {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
  n: number;
}

/** Nearest-rank percentile of an ascending list. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function summarize(sorted: readonly number[]): Summary {
  return {
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted.at(-1)!,
    mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
    n: sorted.length,
  };
}

/** One markdown row: `| p50 | p90 | p99 | max | mean |` in ms. */
export function summaryCells(s: Summary): string {
  return [s.p50, s.p90, s.p99, s.max, s.mean].map((v) => `${v.toFixed(1)} ms`).join(' | ');
}

/**
 * Consul: two instances of `web`; change i marks web-a's check critical (even i) or passing (odd
 * i) in the simulator, which answers svcdns's parked blocking query at once; seen when the A
 * answer for web.service.consul lists exactly the passing instances. svcdns runs with --watch all.
 */
export async function consulPropagation(changes: number): Promise<number[]> {
  const sim = new ConsulSim();
  await sim.start();
  try {
    sim.registerNode('dc1', { Node: 'a', Address: '10.30.0.1' });
    sim.registerNode('dc1', { Node: 'b', Address: '10.30.0.2' });
    sim.registerService('dc1', 'a', { ID: 'web-a', Service: 'web', Port: 80 });
    sim.registerService('dc1', 'b', { ID: 'web-b', Service: 'web', Port: 80 });
    const svc = await startSvcdns(['--consul', sim.url, '--watch', 'all', '--log-level', 'info']);
    try {
      await svc.waitForLog((l) => l.msg === 'consul catalog synced; ready', 30_000);
      return await measure(changes, {
        write: (i) => {
          sim.setCheck('dc1', 'a', { CheckID: 'web-a-check', ServiceID: 'web-a', Status: i % 2 === 0 ? 'critical' : 'passing' });
          return Promise.resolve();
        },
        seen: async (i) => (await answers(svc.port, 'web.service.consul', 'A')).join() === (i % 2 === 0 ? '10.30.0.2' : '10.30.0.1,10.30.0.2'),
      });
    } finally {
      await svc.stop();
    }
  } finally {
    await sim.stop();
  }
}
