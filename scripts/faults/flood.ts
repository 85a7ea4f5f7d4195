/**
 * Row 8: a flood of unique forwarded names (~20k q/s, dnsperf) while the only upstream black-holes
 * (a process bound to UDP and TCP, then SIGSTOPped: datagrams and connections vanish, nothing is
 * refused). Measured side by side in one run, in interleaved rounds: the rate of cached Consul
 * names (dnsperf at full speed) without the flood, with it, and with a control flood of one cached
 * name at the same rate (what the flood's packets cost, however cheap their answer); medians. Then the same flood against
 * svcdns under an open-file limit of 1,024: open files at most, TCP queries answered, what is logged.
 * svcdns on core 0, the dnsperf processes on core 1.
 */

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Children, coreTicks, cpuSeconds, freePort } from '../bench/children.js';
import { runDnsperf } from '../bench/dnsperf.js';
import { CATALOG } from '../../test/support/catalog.js';
import { ask, median, sleep, type FaultRow } from './row.js';
import { atInterrupt, startSvcdns } from './svcdns.js';

const ROUNDS = 5;
const ROUND_S = 5;
const FLOOD_QPS = 20_000;

/** A UDP+TCP port that takes everything and answers nothing (started, bound, then stopped). */
async function blackhole(children: Children): Promise<number> {
  const port = await freePort();
  const code = `const d=require('node:dgram').createSocket('udp4');d.bind(${port},'127.0.0.1');require('node:net').createServer().listen({port:${port},host:'127.0.0.1',backlog:1});d.on('listening',()=>process.stderr.write('bound\\n'));`;
  const child = children.spawn('blackhole', process.execPath, ['-e', code]);
  while (!child.stderrLines.includes('bound')) {
    if (child.exited) throw new Error(`blackhole exited: ${child.stderrLines.join(' ')}`);
    await sleep(20);
  }
  children.pause([child]);
  return port;
}

export const flood: FaultRow = {
  id: 'flood',
  fault: `${FLOOD_QPS / 1000}k q/s of unique forwarded names, upstream black-holing`,
  target: 'cached Consul names keep ≥ 0.5× their unflooded rate; under ulimit -n 1024 TCP still answered, the limit logged',
  async run(ctx) {
    const children = new Children();
    const unregister = atInterrupt(() => children.killAllNow());
    try {
      const catalog = join(ctx.dir, 'catalog.yaml');
      writeFileSync(catalog, CATALOG);
      const consulNames = join(ctx.dir, 'consul-names.txt');
      writeFileSync(consulNames, ['web.service.consul A', 'db.service.consul SRV', 'node1.node.consul A', 'cache.service.consul A'].join('\n') + '\n');
      // The control: the same flood, of one cached Consul name. What the flood's packets cost svcdns
      // and its clients (two dnsperfs on core 1) however cheap the answer: the bound on the ratio.
      const controlNames = join(ctx.dir, 'control-names.txt');
      writeFileSync(controlNames, 'cache.service.consul A\n');
      const floodNames = join(ctx.dir, 'flood-names.txt');
      writeFileSync(floodNames, Array.from({ length: FLOOD_QPS * (ROUND_S + 3) * ROUNDS }, (_, i) => `u${i}.flood.test A`).join('\n') + '\n');
      const hole = await blackhole(children);
      const upstream = ['--upstream', `127.0.0.1:${hole}`];

      const svc = await startSvcdns(['--catalog', catalog, ...upstream], { core: 0 });
      // runDnsperf checks its server with assertAlive (a Child): give it the shape it reads.
      const server = { name: 'svcdns', pid: svc.pid, process: svc.child, get exited() { return svc.alive() ? null : { code: null, signal: null }; }, stderrLines: [], done: Promise.resolve() };
      const measure = (tag: string) =>
        runDnsperf(children, { port: svc.port, queryFile: consulNames, seconds: ROUND_S, clients: 4, outstanding: 64, timeoutSeconds: 2, core: 1, outFile: join(ctx.dir, `${tag}.out`), server });
      const quiet: number[] = [];
      const flooded: number[] = [];
      const floodStats: string[] = [];
      const quietCpu: number[] = [];
      const floodCpu: number[] = [];
      /** How busy core 1 (the load generators' core) was in each measurement, by round. */
      const clientCore: Record<'quiet' | 'flooded' | 'control', number[]> = { quiet: [], flooded: [], control: [] };
      /**
       * Runs `measure`, noting svcdns's CPU share (of one core) over it in `cpu`, and how busy the
       * clients' core was: when it is full, the rate measures the clients as much as svcdns.
       */
      const withCpu = async (cpu: number[], run: () => Promise<{ qps: number }>, tag: keyof typeof clientCore): Promise<number> => {
        const cpu0 = cpuSeconds(svc.pid);
        const core0 = coreTicks(1);
        const t0 = performance.now();
        const { qps } = await run();
        cpu.push((cpuSeconds(svc.pid) - cpu0) / ((performance.now() - t0) / 1000));
        const core1 = coreTicks(1);
        clientCore[tag].push((core1.busy - core0.busy) / Math.max(1, core1.total - core0.total));
        return qps;
      };
      /** The Consul names' rate while dnsperf sends `names` at FLOOD_QPS (its summary in `stats`, when given). */
      const underFlood = async (names: string, cpu: number[], tag: 'flooded' | 'control', stats?: string[]): Promise<number> => {
        const f = runDnsperf(children, {
          port: svc.port,
          queryFile: names,
          seconds: ROUND_S + 2,
          clients: 2,
          outstanding: 20000,
          timeoutSeconds: 3,
          maxQps: FLOOD_QPS,
          core: 1,
          outFile: join(ctx.dir, 'flood.out'),
          server,
        });
        await sleep(1000); // the flood is on
        const qps = await withCpu(cpu, () => measure(tag), tag);
        const fr = await f;
        stats?.push(`${Math.round(fr.sent / (ROUND_S + 2))} q/s sent, ${fr.completed} of ${fr.sent} answered (${Object.entries(fr.rcodes).map(([k, v]) => `${k} ${v}`).join(', ')})`);
        return qps;
      };
      const control: number[] = [];
      const controlCpu: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        quiet.push(await withCpu(quietCpu, () => measure('quiet'), 'quiet'));
        flooded.push(await underFlood(floodNames, floodCpu, 'flooded', floodStats));
        await sleep(3000); // the flood's questions in flight time out
        control.push(await underFlood(controlNames, controlCpu, 'control'));
      }
      const list = (xs: number[], f: (x: number) => string): string => xs.map(f).join(' / ');
      const rate = (q: number): string => q.toFixed(0);
      const pct = (c: number): string => `${(c * 100).toFixed(0)} %`;
      ctx.note(`rounds, Consul names q/s: quiet ${list(quiet, rate)}; flooded ${list(flooded, rate)}; control (the same rate of one cached name instead) ${list(control, rate)}; svcdns CPU quiet ${list(quietCpu, pct)}, flooded ${list(floodCpu, pct)}, control ${list(controlCpu, pct)}; core 1 (the dnsperfs) busy: quiet ${list(clientCore.quiet, pct)}, flooded ${list(clientCore.flooded, pct)}, control ${list(clientCore.control, pct)}; the flood (dnsperf -Q ${FLOOD_QPS}): ${floodStats.join(' / ')}`);
      await svc.stop();

      // The same flood under an open-file limit of 1,024.
      const limited = await startSvcdns(['--catalog', catalog, ...upstream], { nofile: 1024, core: 0 });
      const lserver = { ...server, pid: limited.pid, process: limited.child, get exited() { return limited.alive() ? null : { code: null, signal: null }; } };
      const f = runDnsperf(children, { port: limited.port, queryFile: floodNames, seconds: 6, clients: 2, outstanding: 20000, timeoutSeconds: 3, maxQps: FLOOD_QPS, core: 1, outFile: join(ctx.dir, 'flood-limited.out'), server: lserver });
      let maxFiles = 0;
      let tcpAnswered = 0;
      let tcpAsked = 0;
      const t0 = performance.now();
      while (performance.now() - t0 < 5500) {
        try {
          maxFiles = Math.max(maxFiles, limited.openFiles());
        } catch {
          break;
        }
        if ((performance.now() - t0) > 1000) {
          tcpAsked++;
          const a = await ask(limited.port, 'web.service.consul', 'A', { tcp: true, timeoutMs: 1000 });
          if (a.rcode === 'NOERROR') tcpAnswered++;
        } else await sleep(100);
      }
      await f;
      const warned = limited.logs.filter((l) => l.level >= 40);
      ctx.note(`ulimit -n 1024: warn+ lines: ${[...new Set(warned.map((l) => l.msg))].join(' | ') || 'none'}`);
      await limited.stop();
      const ratio = median(flooded) / median(quiet);
      const controlRatio = median(control) / median(quiet);
      const qps = (v: number): string => Math.round(v).toLocaleString('en');
      return {
        figure: `Consul names **${qps(median(quiet))} → ${qps(median(flooded))} q/s (${ratio.toFixed(2)}×)** (medians of ${ROUNDS} interleaved rounds; svcdns CPU ${pct(median(quietCpu))} → ${pct(median(floodCpu))}, the dnsperfs' core ${pct(median(clientCore.quiet))} → ${pct(median(clientCore.flooded))}); control, the same rate of one cached name: ${qps(median(control))} q/s (${controlRatio.toFixed(2)}×); at ulimit -n 1024: up to ${maxFiles} open files, ${tcpAnswered} of ${tcpAsked} TCP queries answered, ${warned.length} warn+ log lines${warned.length ? ` ("${warned[0]!.msg}")` : ''}`,
        met: ratio >= 0.5 && tcpAnswered === tcpAsked && maxFiles < 1024,
      };
    } finally {
      await children.stopAll();
      unregister();
    }
  },
};
