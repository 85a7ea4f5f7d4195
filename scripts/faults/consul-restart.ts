/**
 * Row 3: svcdns restarted while Consul is down (the simulator's port closed: 'refuse'), with and
 * without --state-dir (the latter only where svcdns has the flag). Measured: what a Consul name
 * gets right after the restart, and 2 s later.
 */

import { join } from 'node:path';
import { ConsulSim } from '../../test/support/consul-sim.js';
import { ask, sleep, type Asked, type FaultRow } from './row.js';
import { startSvcdns } from './svcdns.js';

const show = (a: Asked): string => `${a.rcode}${a.answers.length ? ` (${a.answers.length} records)` : ''}`;

export const consulRestart: FaultRow = {
  id: 'consul-restart',
  fault: 'svcdns restarted while Consul is down',
  target: 'Consul names answered (from --state-dir)',
  async run(ctx) {
    const variants: { label: string; args: string[] }[] = [{ label: 'without --state-dir', args: [] }];
    if (ctx.flags.has('state-dir')) variants.push({ label: 'with --state-dir', args: ['--state-dir', join(ctx.dir, 'state')] });
    else ctx.note('svcdns has no --state-dir: measured without it only');
    const parts: string[] = [];
    let met = false;
    for (const v of variants) {
      const sim = new ConsulSim();
      await sim.start();
      try {
        sim.registerNode('dc1', { Node: 'a', Address: '10.32.0.1' });
        sim.registerService('dc1', 'a', { ID: 'web-a', Service: 'web', Port: 80 });
        const first = await startSvcdns(['--consul', sim.url, ...v.args]);
        await first.waitForLog((l) => l.msg === 'consul catalog synced; ready', 10_000);
        const before = await ask(first.port, 'web.service.consul');
        await sleep(1500); // a state writer writes at most once a second
        await first.stop();
        await sim.fault('refuse');
        const second = await startSvcdns(['--consul', sim.url, ...v.args]);
        const atOnce = await ask(second.port, 'web.service.consul', 'A', { timeoutMs: 3000 });
        await sleep(2000);
        const later = await ask(second.port, 'web.service.consul', 'A', { timeoutMs: 3000 });
        ctx.note(`${v.label}: before the restart ${show(before)}; logs after it: ${second.logs.filter((l) => l.level >= 40 || /stale|state/i.test(l.msg)).map((l) => l.msg).join('; ') || 'none'}`);
        parts.push(`${v.label}: **${show(atOnce)}** at once, ${show(later)} 2 s later`);
        if (v.args.length && atOnce.rcode === 'NOERROR' && atOnce.answers.length > 0) met = true;
        await second.stop();
      } finally {
        await sim.stop();
      }
    }
    return { figure: parts.join('; '), met };
  },
};
