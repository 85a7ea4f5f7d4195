/**
 * Memory per cached answer (the hot path's reply cache): `npm run bench:memory`.
 *
 * An in-process server with a catalog of 5,000 services x 3 instances; every service is asked
 * for A and SRV, three times each (three rotations), straight through the server's handler (no
 * sockets: only the cache grows). Memory is read after a forced GC before and after; the table
 * gives the growth per cached question, next to the bytes the cache itself accounts for.
 *
 * Run with --expose-gc (the npm script does).
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { resolveConfig } from '../src/config.js';
import { SvcdnsServer } from '../src/server.js';
import { buildQuery } from '../test/support/client.js';

const SERVICES = 5000;
const INSTANCES = 3;

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  process.stderr.write('run with node --expose-gc\n');
  process.exit(2);
}

function used(): number {
  gc!();
  gc!();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

const dir = await mkdtemp(join(tmpdir(), 'svcdns-mem-'));
const catalog = join(dir, 'catalog.yaml');
// 15,000 nodes, one instance each.
const lines: string[] = ['nodes:'];
for (let n = 0; n < SERVICES * INSTANCES; n++) {
  lines.push(`  - {name: n${n}, address: 10.${n >> 16}.${(n >> 8) & 255}.${n & 255}, services: [{name: s${n % SERVICES}, id: i${n}, port: 80}]}`);
}
await writeFile(catalog, lines.join('\n') + '\n');
const names = Array.from({ length: SERVICES }, (_, s) => `s${s}`);
const config = resolveConfig({ flags: { listen: ['127.0.0.1:0'], catalog, 'resolv-conf': '/dev/null', 'answer-cache-size': '100000', 'answer-cache-max-bytes': String(1 << 30) }, env: {} });
const server = await SvcdnsServer.start({ config, log: pino({ level: 'silent' }) });
try {
  const client = { address: '127.0.0.1', port: 5353 };
  const packets = names.flatMap((name) => [buildQuery(`${name}.service.consul`, 'A'), buildQuery(`${name}.service.consul`, 'SRV')]);
  const before = used();
  for (let round = 0; round < INSTANCES; round++) for (const p of packets) void server.handler(p, 'udp', client);
  const after = used();
  const stats = server.replyCache.stats();
  const perEntry = (after - before) / stats.entries;
  console.log(`\nReply cache memory: ${SERVICES} services x ${INSTANCES} instances, A and SRV, all ${INSTANCES} rotations each`);
  console.log('| cached questions | replies encoded | heap + external growth | per question | per reply | accounted by the cache (per question) |');
  console.log('|---|---|---|---|---|---|');
  console.log(
    `| ${stats.entries} | ${stats.entries * INSTANCES} | ${((after - before) / 2 ** 20).toFixed(1)} MiB | ${perEntry.toFixed(0)} B | ${(perEntry / INSTANCES).toFixed(0)} B | ${(stats.bytes / stats.entries).toFixed(0)} B |`,
  );
} finally {
  await server.close();
  await rm(dir, { recursive: true, force: true });
}
