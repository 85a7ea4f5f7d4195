/**
 * Row 2: Consul answers HTTP 500 for 4 s (the simulator's 'error500' fault: blocked queries and
 * new requests alike), then recovers. Every one of 20 watched services is changed at recovery;
 * measured: for each, the time until DNS shows it (median, max), and how often "recovered" was logged.
 */

import { ConsulSim } from '../../test/support/consul-sim.js';
import { ask, median, seconds, sleep, type FaultRow } from './row.js';
import { startSvcdns } from './svcdns.js';

const SERVICES = 20;
const FAULT_MS = 4000;
const BOUND_MS = 30_000;

export const consul500: FaultRow = {
  id: 'consul-500',
  fault: `Consul answers HTTP 500 for 4 s, then recovers (${SERVICES} services, each changed at recovery)`,
  target: 'every change in DNS ≤ 3 s after recovery (max); "recovered" logged once',
  async run(ctx) {
    const sim = new ConsulSim();
    await sim.start();
    try {
      for (let i = 0; i < SERVICES; i++) {
        sim.registerNode('dc1', { Node: `n${i}`, Address: `10.31.0.${i + 1}` });
        sim.registerService('dc1', `n${i}`, { ID: `s${i}`, Service: `s${i}`, Port: 80 });
        sim.setCheck('dc1', `n${i}`, { CheckID: `c${i}`, ServiceID: `s${i}`, Status: 'passing' });
      }
      const svc = await startSvcdns(['--consul', sim.url, '--watch', 'all']);
      await svc.waitForLog((l) => l.msg === 'consul catalog synced; ready', 10_000);
      for (let i = 0; i < SERVICES; i++) {
        const a = await ask(svc.port, `s${i}.service.consul`);
        if (a.answers.length !== 1) throw new Error(`s${i}.service.consul: ${a.rcode} ${a.answers.join()} before the fault`);
      }
      await sleep(500); // every watch's blocking read parked

      const faultAt = performance.now();
      await sim.fault('error500');
      await sleep(FAULT_MS);
      await sim.fault('none');
      const recoveredAt = performance.now();
      for (let i = 0; i < SERVICES; i++) sim.setCheck('dc1', `n${i}`, { CheckID: `c${i}`, ServiceID: `s${i}`, Status: 'critical' });
      const seenMs = new Map<number, number>();
      while (seenMs.size < SERVICES && performance.now() - recoveredAt < BOUND_MS) {
        for (let i = 0; i < SERVICES; i++) {
          if (seenMs.has(i)) continue;
          const a = await ask(svc.port, `s${i}.service.consul`, 'A', { timeoutMs: 1000 });
          if ((a.rcode === 'NOERROR' || a.rcode === 'NXDOMAIN') && a.answers.length === 0) seenMs.set(i, performance.now() - recoveredAt);
        }
        await sleep(50);
      }
      // "recovered" may come after the last change is seen: a few seconds more for it.
      await svc.waitForLog((l) => l.at >= faultAt && l.level < 40 && /recover/i.test(l.msg), 5000).catch(() => null);
      const times = [...seenMs.values()];
      const unseen = SERVICES - times.length;
      const rel = (at: number): string => `${((at - faultAt) / 1000).toFixed(2)} s`;
      const notable = svc.logs.filter((l) => l.at >= faultAt && (l.level >= 40 || /recover|again|fine/i.test(l.msg)));
      const failing = notable.filter((l) => l.level >= 40);
      const recovered = notable.filter((l) => l.level < 40);
      ctx.note(`logs from the fault's start (t=0, recovery at ${seconds(recoveredAt - faultAt)}): ${notable.map((l) => `${rel(l.at)} ${l.msg}`).join('; ') || 'none'}`);
      ctx.note(`per service, s after recovery: ${[...seenMs].sort(([a], [b]) => a - b).map(([i, ms]) => `s${i} ${(ms / 1000).toFixed(1)}`).join(', ')}`);
      const max = unseen > 0 ? Infinity : Math.max(...times);
      const figure = [
        `change in DNS after recovery: median **${times.length ? seconds(median(times)) : '–'}**, max **${unseen > 0 ? `> ${seconds(BOUND_MS)} (${unseen} of ${SERVICES} not seen)` : seconds(max)}**`,
        `"failing" logged ${failing.length}×, "recovered" logged ${recovered.length}×${recovered.length ? ` (first at ${rel(recovered[0]!.at)}, recovery at ${rel(recoveredAt)})` : ''}`,
      ].join('; ');
      return { figure, met: max <= 3000 && recovered.length === 1 };
    } finally {
      await sim.stop();
    }
  },
};
