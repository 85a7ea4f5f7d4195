/**
 * Rows 6 and 7: TCP abuse, against svcdns serving the test catalog.
 * - 6: 1,000 connections from one client (127.0.0.2), each sending a query every 8 s, for 40 s;
 *   meanwhile a legitimate client (127.0.0.1) asks over a new TCP connection every 250 ms:
 *   the share of its queries answered.
 * - 7: 300 TCP clients writing pipelined queries without ever reading a reply, for 7 s: svcdns's
 *   CPU and the share of UDP probes (20 a second) answered.
 */

import { writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { cpuSeconds, peakRssKiB } from '../bench/children.js';
import { buildQuery, frame } from '../../test/support/client.js';
import { CATALOG } from '../../test/support/catalog.js';
import { ask, sleep, tally, type FaultRow, type RowContext } from './row.js';
import { startSvcdns } from './svcdns.js';

function catalogFile(ctx: RowContext): string {
  const path = join(ctx.dir, 'catalog.yaml');
  writeFileSync(path, CATALOG);
  return path;
}

function open(port: number, localAddress: string): Promise<Socket | null> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1', localAddress });
    s.once('connect', () => resolve(s));
    s.once('error', () => resolve(null));
    s.setTimeout(5000, () => {
      s.destroy();
      resolve(null);
    });
  });
}

const ATTACK_CONNECTIONS = 1000;
const ATTACK_MS = 40_000;

export const tcpKeepalive: FaultRow = {
  id: 'tcp-keepalive',
  fault: '1,000 TCP connections from one client (127.0.0.2), each a query every 8 s, for 40 s',
  target: '≥ 95 % of legitimate TCP queries (127.0.0.1) answered',
  async run(ctx) {
    const svc = await startSvcdns(['--catalog', catalogFile(ctx)]);
    const sockets: Socket[] = [];
    const timers: NodeJS.Timeout[] = [];
    let attackerReplies = 0;
    let attackerClosed = 0;
    try {
      const query = frame(buildQuery('web.service.consul', 'A'));
      for (let i = 0; i < ATTACK_CONNECTIONS; i++) {
        const s = await open(svc.port, '127.0.0.2');
        if (!s) continue;
        s.setTimeout(0);
        s.on('data', () => attackerReplies++);
        s.on('close', () => attackerClosed++);
        s.on('error', () => s.destroy());
        sockets.push(s);
        // Every 8 s, staggered over the connections: the first within 8 s of connecting, so that
        // no connection is idle for svcdns's 10 s timeout.
        const offset = (i * 8000) / ATTACK_CONNECTIONS;
        const send = (): void => void (s.writable && s.write(query));
        timers.push(
          setTimeout(() => {
            send();
            timers.push(setInterval(send, 8000));
          }, offset),
        );
      }
      ctx.note(`attacker: ${sockets.length} of ${ATTACK_CONNECTIONS} connections opened`);
      const start = performance.now();
      let sent = 0;
      let answered = 0;
      const failed: string[] = [];
      while (performance.now() - start < ATTACK_MS) {
        sent++;
        const a = await ask(svc.port, 'web.service.consul', 'A', { tcp: true, timeoutMs: 2000 });
        if (a.rcode === 'NOERROR' && a.answers.length > 0) answered++;
        else failed.push(a.rcode);
        await sleep(250);
      }
      ctx.note(`legitimate queries that failed: ${tally(failed) || 'none'} (2 s timeout each)`);
      ctx.note(`attacker: ${attackerReplies} replies read, ${attackerClosed} connections closed by svcdns`);
      const share = answered / sent;
      return {
        figure: `**${answered} of ${sent} legitimate TCP queries answered (${(share * 100).toFixed(1)} %)**; attacker's connections closed by svcdns: ${attackerClosed} of ${sockets.length}`,
        met: share >= 0.95,
      };
    } finally {
      for (const t of timers) clearInterval(t);
      for (const s of sockets) s.destroy();
      await svc.stop();
    }
  },
};

const PIPELINERS = 300;
const PIPELINE_MS = 7000;

export const tcpPipeline: FaultRow = {
  id: 'tcp-pipeline',
  fault: '300 TCP clients pipelining queries without reading, for 7 s',
  target: 'UDP keeps its share: ≥ 95 % of UDP probes answered',
  async run(ctx) {
    const svc = await startSvcdns(['--catalog', catalogFile(ctx)]);
    const sockets: Socket[] = [];
    try {
      // 1,000 queries a write, written again whenever the kernel takes more; replies never read.
      const burst = frame(...Array.from({ length: 1000 }, (_, i) => buildQuery('web.service.consul', 'SRV', { id: i, udpSize: 4096 })));
      for (let i = 0; i < PIPELINERS; i++) {
        const s = await open(svc.port, '127.0.0.3');
        if (!s) continue;
        s.setTimeout(0);
        s.pause(); // never read
        s.on('error', () => s.destroy());
        const pump = (): void => {
          while (s.writable && s.write(burst));
        };
        s.on('drain', pump);
        sockets.push(s);
      }
      const cpu0 = cpuSeconds(svc.pid);
      const t0 = performance.now();
      for (const s of sockets) s.write(burst);
      let sent = 0;
      let answered = 0;
      const probes: Promise<void>[] = [];
      while (performance.now() - t0 < PIPELINE_MS) {
        sent++;
        probes.push(ask(svc.port, 'web.service.consul', 'A', { timeoutMs: 1000 }).then((a) => void (a.rcode === 'NOERROR' && answered++)));
        await sleep(50);
      }
      await Promise.all(probes);
      const wall = (performance.now() - t0) / 1000;
      const cpu = (cpuSeconds(svc.pid) - cpu0) / wall;
      ctx.note(`${sockets.length} pipelining connections; svcdns ${svc.alive() ? `alive, peak RSS ${(peakRssKiB(svc.pid) / 1024).toFixed(0)} MiB` : 'DIED'}`);
      return {
        figure: `svcdns CPU **${(cpu * 100).toFixed(0)} %** over ${wall.toFixed(1)} s; **${answered} of ${sent} UDP probes answered** (1 s timeout)`,
        met: answered / sent >= 0.95,
      };
    } finally {
      for (const s of sockets) s.destroy();
      await svc.stop();
    }
  },
};
