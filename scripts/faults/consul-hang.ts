/**
 * Row 1: Consul hangs 4 s (accepts, never answers: the HangProxy in front of the simulator), then
 * recovers. Measured: the time from recovery to a change made at recovery being in DNS; when the
 * "failing" and "recovered" lines were logged; and what an on-demand service first asked during
 * the hang got, and for how long. Bounded: the change is waited for at most BOUND_MS.
 */

import { ConsulSim } from '../../test/support/consul-sim.js';
import { HangProxy } from './hang-proxy.js';
import { ask, pollUntil, seconds, sleep, tally, type FaultRow } from './row.js';
import { startSvcdns } from './svcdns.js';

const HANG_MS = 4000;
const BOUND_MS = 25_000;

export const consulHang: FaultRow = {
  id: 'consul-hang',
  fault: 'Consul hangs 4 s (accepts, never answers), then recovers',
  target: 'change in DNS ≤ 3 s after recovery; "failing"/"recovered" logged once each; on-demand fetch ≤ --fetch-timeout',
  async run(ctx) {
    const sim = new ConsulSim();
    await sim.start();
    const proxy = new HangProxy(sim.port);
    try {
      await proxy.start();
      sim.registerNode('dc1', { Node: 'a', Address: '10.30.0.1' });
      sim.registerNode('dc1', { Node: 'b', Address: '10.30.0.2' });
      sim.registerService('dc1', 'a', { ID: 'web-a', Service: 'web', Port: 80 });
      sim.registerService('dc1', 'b', { ID: 'late-b', Service: 'late', Port: 81 });
      // On demand, so that `late` is first fetched during the hang.
      const svc = await startSvcdns(['--consul', proxy.url, '--watch', 'on-demand']);
      await svc.waitForLog((l) => l.msg === 'consul catalog synced; ready', 10_000);
      const first = await pollUntil(svc.port, 'web.service.consul', (a) => a.answers.length === 1, 5000);
      if (!first) throw new Error('web.service.consul never answered before the fault');
      await sleep(500); // the web watch's blocking read is parked in the simulator

      const hangAt = performance.now();
      proxy.hang();
      // The on-demand service, asked every 250 ms from the start of the hang until it answers.
      const lateAnswers: { at: number; rcode: string; answers: number; ms: number }[] = [];
      // It goes on after web's change is seen: a question asked during the hang may end (SERVFAIL at
      // --fetch-timeout) after the recovery, and the first answer after it is what the row reports.
      const lateLoop = (async () => {
        while (performance.now() - hangAt < HANG_MS + BOUND_MS) {
          const a = await ask(svc.port, 'late.service.consul', 'A', { timeoutMs: 3000 });
          lateAnswers.push({ at: performance.now() - hangAt, rcode: a.rcode, answers: a.answers.length, ms: a.ms });
          if (a.rcode === 'NOERROR' && a.answers.length > 0) break;
          await sleep(250);
        }
      })();
      await sleep(HANG_MS);
      proxy.recover();
      const recoveredAt = performance.now();
      sim.registerService('dc1', 'b', { ID: 'web-b', Service: 'web', Port: 80 });
      const seen = await pollUntil(svc.port, 'web.service.consul', (a) => a.answers.length === 2, BOUND_MS);
      const changeMs = seen ? seen.at - recoveredAt : null;
      await lateLoop;

      const rel = (at: number): string => `${((at - hangAt) / 1000).toFixed(2)} s`;
      const notable = svc.logs.filter((l) => l.at >= hangAt && (l.level >= 40 || /recover|again|fine/i.test(l.msg)));
      const failing = notable.filter((l) => l.level >= 40);
      const recovered = notable.filter((l) => l.level < 40);
      const lateFirstOk = lateAnswers.find((a) => a.rcode === 'NOERROR' && a.answers > 0);
      const lateBad = lateAnswers.filter((a) => !(a.rcode === 'NOERROR' && a.answers > 0));
      ctx.note(`logs after the hang began (t=0): ${notable.map((l) => `${rel(l.at)} ${l.msg}`).join('; ') || 'none'}`);
      ctx.note(`late.service.consul answers: ${lateAnswers.map((a) => `${(a.at / 1000).toFixed(1)}s ${a.rcode}(${a.answers}) in ${a.ms.toFixed(0)}ms`).join(', ')}`);
      const longest = Math.max(0, ...lateAnswers.map((a) => a.ms));
      const figure = [
        changeMs === null ? `change made at recovery **not in DNS within ${seconds(BOUND_MS)}** (the row's bound)` : `change in DNS **${seconds(changeMs)}** after recovery`,
        `logged: ${failing.length ? `"${failing[0]!.msg}" at ${rel(failing[0]!.at)}` : 'no failing line'} (${failing.length} warn+), ${recovered.length ? `"${recovered[0]!.msg}" at ${rel(recovered[0]!.at)}` : 'no recovered line'} (hang 0–${seconds(HANG_MS)}, bound ${seconds(HANG_MS + BOUND_MS)})`,
        `on-demand service first asked during the hang: ${tally(lateBad.map((a) => a.rcode)) || 'nothing bad'}${lateFirstOk ? `, first answer at ${(lateFirstOk.at / 1000).toFixed(1)} s` : `, no answer within ${seconds(HANG_MS + BOUND_MS)}`}; slowest reply ${longest.toFixed(0)} ms`,
      ].join('; ');
      const met = changeMs !== null && changeMs <= 3000 && failing.length === 1 && recovered.length === 1 && longest <= 2500;
      return { figure, met };
    } finally {
      await proxy.stop();
      await sim.stop();
    }
  },
};
