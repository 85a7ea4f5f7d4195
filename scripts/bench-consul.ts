/**
 * Consul watching, measured: `npm run bench:consul` (part of `npm run bench`).
 *
 * 1. Propagation: 200 health flips in the Consul simulator; for each, the time from the write (when
 *    the simulator answers the blocked query) until a DNS answer from svcdns shows the change,
 *    polled over UDP. Reported as p50/p90/p99/max. The measurement is scripts/bench/propagation.ts's
 *    (shared with `npm run bench:zookeeper`, which puts the two registries side by side).
 * 2. Scale: a datacenter of 5,000 services x 5 instances, with --watch all and --watch on-demand:
 *    time from start to the first full sync, svcdns's resident memory, and the requests per second
 *    svcdns sends Consul at steady state.
 *
 * svcdns runs as a child process (the built CLI, dist/cli.js, as `npm start` runs it; built first),
 * the simulator in this process;
 * all traffic on 127.0.0.1. Prints a table; writes nothing.
 */

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConsulSim } from '../test/support/consul-sim.js';
import { answers, consulPropagation, summarize, summaryCells } from './bench/propagation.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface Svcdns {
  child: ChildProcess;
  port: number;
  /** ms from spawn until the log line 'consul catalog synced; ready'. */
  ready: Promise<number>;
  stop(): Promise<void>;
}

function startSvcdns(consulUrl: string, extra: string[]): Promise<Svcdns> {
  const started = performance.now();
  const child = spawn(process.execPath, ['dist/cli.js', '--listen', '127.0.0.1:0', '--consul', consulUrl, '--log-level', 'info', ...extra], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let buffer = '';
  let resolvePort!: (p: number) => void;
  let resolveReady!: (ms: number) => void;
  const port = new Promise<number>((r) => (resolvePort = r));
  const ready = new Promise<number>((r) => (resolveReady = r));
  child.stderr.on('data', (d: Buffer) => {
    buffer += d.toString();
    let nl: number;
    while ((nl = buffer.indexOf('\n')) !== -1) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      try {
        const rec = JSON.parse(line) as { msg?: string; address?: string };
        if (rec.msg === 'listening (udp, tcp)') resolvePort(Number(String(rec.address).split(':').pop()));
        if (rec.msg === 'consul catalog synced; ready') resolveReady(performance.now() - started);
      } catch {
        // not a log line
      }
    }
  });
  return port.then((p) => ({
    child,
    port: p,
    ready,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  }));
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

interface ScaleResult {
  mode: string;
  syncMs: number;
  rssMiB: number;
  consulRequestsPerSecond: number;
  firstQueryMs: number;
}

async function scale(mode: 'all' | 'on-demand', services: number, perService: number): Promise<ScaleResult> {
  const sim = new ConsulSim();
  await sim.start();
  const nodes = services; // one instance of each of several services per node
  for (let n = 0; n < nodes; n++) sim.registerNode('dc1', { Node: `node-${n}`, Address: `10.${40 + Math.floor(n / 65536)}.${Math.floor(n / 256) % 256}.${n % 256}` });
  for (let s = 0; s < services; s++) {
    for (let i = 0; i < perService; i++) sim.registerService('dc1', `node-${(s * perService + i) % nodes}`, { ID: `svc-${s}-${i}`, Service: `svc-${s}`, Port: 8000 + i });
  }
  const svc = await startSvcdns(sim.url, ['--watch', mode]);
  try {
    const syncMs = await svc.ready;
    // First question for a service (on demand: includes its fetch).
    const q0 = performance.now();
    await answers(svc.port, 'svc-42.service.consul', 'A');
    const firstQueryMs = performance.now() - q0;
    await sleep(2000);
    const before = sim.requests.length;
    await sleep(10_000);
    const consulRequestsPerSecond = (sim.requests.length - before) / 10;
    return { mode, syncMs, rssMiB: rssMiB(svc.child.pid!), consulRequestsPerSecond, firstQueryMs };
  } finally {
    await svc.stop();
    await sim.stop();
  }
}

execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 2, 2] });
const lat = await consulPropagation(200);
console.log('\nPropagation: Consul simulator health flip -> DNS answer changed (200 changes, svcdns --watch all)');
console.log('| p50 | p90 | p99 | max | mean |');
console.log('|---|---|---|---|---|');
console.log(`| ${summaryCells(summarize(lat))} |`);

console.log('\nScale: 5,000 services x 5 instances (25,000 instances on 5,000 nodes)');
console.log('| watch mode | start -> synced | svcdns RSS | Consul requests/s (steady) | first query for a service |');
console.log('|---|---|---|---|---|');
for (const mode of ['all', 'on-demand'] as const) {
  const r = await scale(mode, 5000, 5);
  console.log(`| ${r.mode} | ${(r.syncMs / 1000).toFixed(2)} s | ${r.rssMiB.toFixed(0)} MiB | ${r.consulRequestsPerSecond.toFixed(1)} | ${r.firstQueryMs.toFixed(1)} ms |`);
}
