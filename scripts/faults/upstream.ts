/**
 * Rows 4, 5 and 9: forwarding under upstream faults, with the test upstream
 * (test/support/upstream.ts) and svcdns serving the test catalog:
 * - 4: the upstream goes silent just as a forwarded name's TTL runs out: stale answer or SERVFAIL?
 * - 5: every upstream black-holed and already marked unhealthy: how long a question takes;
 * - 9: the upstream answering garbage (random bytes behind the right ID): what clients get.
 */

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CATALOG } from '../../test/support/catalog.js';
import { Rng } from '../../test/support/random.js';
import { startUpstream, type TestUpstream } from '../../test/support/upstream.js';
import { ask, median, seconds, sleep, tally, type FaultRow, type RowContext } from './row.js';
import { startSvcdns } from './svcdns.js';

function catalogFile(ctx: RowContext): string {
  const path = join(ctx.dir, 'catalog.yaml');
  writeFileSync(path, CATALOG);
  return path;
}

async function withUpstreams<T>(count: number, run: (ups: TestUpstream[]) => Promise<T>): Promise<T> {
  const ups: TestUpstream[] = [];
  try {
    for (let i = 0; i < count; i++) ups.push(await startUpstream({ records: [{ name: 'stale.test', type: 'A', ttl: 1, data: '192.0.2.10' }] }));
    return await run(ups);
  } finally {
    await Promise.all(ups.map((u) => u.close()));
  }
}

export const upstreamStale: FaultRow = {
  id: 'upstream-stale',
  fault: 'upstream unreachable, forwarded name just expired',
  target: 'stale answer with TTL 30 (serve-stale, RFC 8767)',
  run: (ctx) =>
    withUpstreams(1, async ([up]) => {
      const svc = await startSvcdns(['--catalog', catalogFile(ctx), '--upstream', up!.address]);
      const fresh = await ask(svc.port, 'stale.test');
      if (fresh.rcode !== 'NOERROR' || fresh.answers.length !== 1) throw new Error(`stale.test: ${fresh.rcode} before the fault`);
      await sleep(2200); // the TTL (1 s) has run out
      up!.behaviour = 'silent';
      const a = await ask(svc.port, 'stale.test', 'A', { timeoutMs: 10_000 });
      const b = await ask(svc.port, 'stale.test', 'A', { timeoutMs: 10_000 });
      const show = (x: typeof a): string => `${x.rcode}${x.answers.length ? ` ${x.answers.join(', ')} TTL ${x.ttl}` : ''} after ${x.ms.toFixed(0)} ms`;
      ctx.note(`fresh: ${show(fresh)}; expired + silent upstream: ${show(a)}; again: ${show(b)}`);
      return { figure: `**${show(a)}**; asked again: ${show(b)}`, met: a.rcode === 'NOERROR' && a.answers.length === 1 && a.ttl === 30 };
    }),
};

export const upstreamBlackhole: FaultRow = {
  id: 'upstream-blackhole',
  fault: 'every upstream (2) black-holed and already marked unhealthy',
  target: 'answered (stale or SERVFAIL) ≤ 2 s',
  run: (ctx) =>
    withUpstreams(2, async (ups) => {
      const svc = await startSvcdns(['--catalog', catalogFile(ctx), ...ups.flatMap((u) => ['--upstream', u.address])]);
      for (const u of ups) u.behaviour = 'silent';
      // Three failed questions in a row mark an upstream unhealthy (src/forward/upstreams.ts).
      const unhealthy = (l: { msg: string }): boolean => /unhealthy/.test(l.msg);
      for (let round = 0; round < 6 && svc.logs.filter(unhealthy).length < ups.length; round++) {
        await Promise.all([0, 1, 2].map((i) => ask(svc.port, `warm${round}-${i}.test`, 'A', { timeoutMs: 10_000 })));
      }
      ctx.note(`marked unhealthy: ${svc.logs.filter(unhealthy).length} of ${ups.length} upstreams`);
      const asked = [];
      for (let i = 0; i < 5; i++) asked.push(await ask(svc.port, `q${i}.test`, 'A', { timeoutMs: 10_000 }));
      const ms = asked.map((a) => a.ms);
      ctx.note(`each: ${asked.map((a) => `${a.rcode} ${a.ms.toFixed(0)} ms`).join(', ')}`);
      return {
        figure: `${tally(asked.map((a) => a.rcode))} after median **${seconds(median(ms))}**, max ${seconds(Math.max(...ms))} (5 questions, one at a time)`,
        met: Math.max(...ms) <= 2000 && asked.every((a) => a.rcode !== 'timeout'),
      };
    }),
};

export const upstreamGarbage: FaultRow = {
  id: 'upstream-garbage',
  fault: 'upstream answering garbage (malformed replies behind the right ID)',
  target: 'none in the issue (what clients get); here: a well-formed reply (SERVFAIL) to every question, process alive',
  run: (ctx) =>
    withUpstreams(1, async ([up]) => {
      const rng = new Rng(0x6a7b);
      up!.override = (query) => {
        switch (rng.int(3)) {
          case 0: // random bytes
            return rng.bytes(2 + rng.int(300));
          case 1: {
            // the query echoed as a response claiming records it does not have
            const out = Buffer.concat([query, rng.bytes(rng.int(40))]);
            out.writeUInt16BE(0x8180, 2);
            out.writeUInt16BE(1 + rng.int(0xffff), 6);
            return out;
          }
          default: {
            // a response whose question is cut mid-name
            const out = Buffer.from(query.subarray(0, 12 + rng.int(Math.max(1, query.length - 12))));
            out.writeUInt16BE(0x8180, 2);
            return out;
          }
        }
      };
      const svc = await startSvcdns(['--catalog', catalogFile(ctx), '--upstream', up!.address]);
      const asked = [];
      for (let i = 0; i < 20; i++) asked.push(await ask(svc.port, `g${i}.test`, 'A', { timeoutMs: 10_000 }));
      const alive = svc.alive();
      const web = await ask(svc.port, 'web.service.consul');
      const ms = asked.map((a) => a.ms);
      ctx.note(`upstream got ${up!.received.length} queries; svcdns warn+ lines: ${svc.logs.filter((l) => l.level >= 40).length}`);
      const quick = ms.filter((x) => x < 1000).length;
      return {
        figure: `${tally(asked.map((a) => a.rcode))} (20 names): ${quick} at once (median ${median(ms).toFixed(0)} ms), ${20 - quick} after the upstream timeout (max ${seconds(Math.max(...ms))}: a reply whose question does not match is ignored, as a forged one would be); svcdns ${alive ? 'alive' : 'DIED'}, web.service.consul ${web.rcode}`,
        met: alive && asked.every((a) => a.rcode === 'SERVFAIL' || a.rcode === 'NOERROR' || a.rcode === 'NXDOMAIN'),
      };
    }),
};
