/**
 * The work per query, without sockets: `npm run bench:hot`.
 *
 * Two in-process servers on the benchmark's catalog (scripts/bench/zones.ts: svc3 and svc20),
 * one with the reply cache (the default) and one with `--answer-cache-size 0` (every query
 * decoded, answered and encoded). Each question (EDNS 4096, as dnsperf -e asks) goes straight
 * to the server's handler (also with one empty subscriber on the diagnostics seam's query channel,
 * the cost of being observed, and with the metrics counting: src/diagnostics/metrics.ts, as
 * --http-listen runs them); beside them, in the same run, the only work the bare Node server of
 * `npm run bench:dns` does per query: copy the same reply and patch its ID. Each figure is the
 * median of 7 runs of 200,000 calls (10,000 for the full path).
 *
 * What it shows: how much of a reply's cost is svcdns's own (the rest, socket and kernel, is
 * the same for any Node server and is what bench:dns measures).
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { resolveConfig } from '../src/config.js';
import { SvcdnsServer } from '../src/server.js';
import { buildQuery } from '../test/support/client.js';
import { catalogYaml, serviceName, SERVICES } from './bench/zones.js';

const CALLS = 200_000;
/** The full path is 25-70 times slower: fewer calls keep the run under a minute. */
const FULL_PATH_CALLS = 10_000;
const RUNS = 7;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

/** ns per call of `f`, median of RUNS runs of `calls` (after one warm-up run). */
function time(f: () => void, calls = CALLS): number {
  const runs: number[] = [];
  for (let run = 0; run <= RUNS; run++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) f();
    if (run > 0) runs.push(Number(process.hrtime.bigint() - t0) / calls);
  }
  return median(runs);
}

const dir = await mkdtemp(join(tmpdir(), 'svcdns-hot-'));
const catalog = join(dir, 'catalog.yaml');
await writeFile(catalog, catalogYaml());
const start = (extra: Record<string, string>): Promise<SvcdnsServer> =>
  SvcdnsServer.start({
    config: resolveConfig({ flags: { listen: ['127.0.0.1:0'], catalog, 'resolv-conf': '/dev/null', ...extra }, env: {} }),
    log: pino({ level: 'silent' }),
  });
const cached = await start({});
const uncached = await start({ 'answer-cache-size': '0' });
const metered = await start({});
metered.metrics();
try {
  const client = { address: '127.0.0.1', port: 5353 };
  const rows: string[] = [];
  // Warm every path first, so that the first row is not also measuring the JIT.
  for (const s of SERVICES) {
    for (const type of ['A', 'SRV']) {
      const packet = buildQuery(serviceName(s), type, { udpSize: 4096 });
      for (let i = 0; i < CALLS; i++) {
        void cached.handler(packet, 'udp', client);
        void metered.handler(packet, 'udp', client);
        if (i % 100 === 0) void uncached.handler(packet, 'udp', client);
      }
    }
  }
  for (const s of SERVICES) {
    for (const type of ['A', 'SRV']) {
      const packet = buildQuery(serviceName(s), type, { udpSize: 4096 });
      const reply = cached.handler(packet, 'udp', client);
      if (!(reply instanceof Buffer)) throw new Error(`no synchronous reply to ${serviceName(s)} ${type}`);
      const hot = time(() => void cached.handler(packet, 'udp', client));
      // The same hits with one (empty) subscriber on the diagnostics seam's query channel: what a
      // query log or metrics subscriber costs before doing anything itself.
      const stop = cached.diagnostics.query.subscribe(() => {});
      const observed = time(() => void cached.handler(packet, 'udp', client));
      stop();
      const withMetrics = time(() => void metered.handler(packet, 'udp', client));
      const full = time(() => void uncached.handler(packet, 'udp', client), FULL_PATH_CALLS);
      const copy = time(() => {
        const out = Buffer.from(reply);
        out[0] = packet[0]!;
        out[1] = packet[1]!;
      });
      rows.push(
        `| ${serviceName(s)} ${type} | ${reply.length} B | ${hot.toFixed(0)} ns | ${observed.toFixed(0)} ns | ${withMetrics.toFixed(0)} ns | ${full.toFixed(0)} ns | ${copy.toFixed(0)} ns | ${(hot - copy).toFixed(0)} ns |`,
      );
    }
  }
  const stats = cached.replyCache.stats();
  console.log(`\nWork per query in the handler, no sockets (median of ${RUNS} runs of ${CALLS.toLocaleString('en')} calls, ${FULL_PATH_CALLS.toLocaleString('en')} for the full path; node ${process.version})`);
  console.log(
    "| question | reply | reply cache hit | hit, one query subscriber | hit, metrics on | full path (no reply cache) | bare server's work (copy + ID) | svcdns beyond the bare work |",
  );
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const row of rows) console.log(row);
  console.log(`\nReply cache: ${stats.hits.toLocaleString('en')} hits, ${stats.misses} misses (the misses encode each rotation once).`);
} finally {
  await cached.close();
  await uncached.close();
  await metered.close();
  await rm(dir, { recursive: true, force: true });
}
