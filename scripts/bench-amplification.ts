/**
 * Amplification, measured: `npm run bench:amplification` (about a minute). How many bytes svcdns
 * sends for each byte of question, for the questions with the largest replies, as a spoofed-source
 * flood would get them: one client address (the "victim"), the same question over and over, EDNS
 * 4096 advertised, at `--rate` queries a second for `--seconds`.
 *
 * Questions (the worst cases found in issue 15):
 *   - `NODE.node.consul ANY` for a node with 64 meta pairs (Consul's maximum), keys and values long;
 *   - `SERVICE.service.consul SRV` for a service with 300 instances;
 *   - a forwarded name whose TXT record set is 3.8 KB, about the most that fits 4096 bytes (an
 *     upstream on loopback; a first question from another address fills the forward cache).
 * Settings: `--max-udp-size 4096` (the old default) and 1232 (DNS Flag Day 2020), each with RRL off
 * and with `--rrl-responses-per-second 10` (slip 2); the flood comes from 127.0.0.1, and
 * `--rrl-exempt 192.0.2.0/24` takes away loopback's exemption, as for a client on the network.
 *
 * Bytes are DNS payloads (UDP data, no IP/UDP headers), as amplification factors are usually given:
 * the ratio is bytes of replies received ÷ bytes of queries sent (what the victim gets for what the
 * attacker spends); "mean reply ÷ query" is per reply, which replies lost on a busy machine do not
 * move. The flood is paced in batches every 10 ms; replies still arriving 500 ms after the last
 * query are counted (a benchmark may wait: nothing here asserts).
 *
 * Then RRL's own cost per reply, in process (`costPerReply`).
 *
 * Output: the markdown tables on stdout; `--write` puts it into BENCHMARKS.md between the markers
 * of its section ("Amplification"). Every process it starts is stopped at the end and on errors.
 */

import { createSocket } from 'node:dgram';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import * as dnsPacket from 'dns-packet';
import { Diagnostics } from '../src/diagnostics/channels.js';
import { parseCidr } from '../src/net/address.js';
import { DEFAULT_RRL_EXEMPT } from '../src/rrl/config.js';
import { RateLimiter } from '../src/rrl/limiter.js';
import { buildQuery, udpExchange } from '../test/support/client.js';
import { ROOT, startCli, type Running } from '../test/support/spawn.js';
import { startUpstream } from '../test/support/upstream.js';

const { values: args } = parseArgs({
  options: {
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '3' },
    rrl: { type: 'string', default: '10' },
    write: { type: 'boolean', default: false },
  },
});
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const RRL = Number(args.rrl);
const BATCH_MS = 10;

const META_PAIRS = 64;
const INSTANCES = 300;

/** Consul's limits on node meta: 64 pairs, keys up to 128 characters, values up to 512. */
function catalogYaml(): string {
  const meta = Array.from({ length: META_PAIRS }, (_, i) => `      ${`k${String(i).padStart(2, '0')}`.padEnd(128, 'k')}: "${'v'.repeat(512)}"`).join('\n');
  const nodes = Array.from(
    { length: INSTANCES },
    (_, i) => `  - name: n${i}\n    address: 10.${(i >> 8) & 255}.${i & 255}.1\n    services:\n      - {name: big, id: big${i}, port: ${1000 + i}}`,
  ).join('\n');
  return `datacenter: dc1\nnodes:\n  - name: meta\n    address: 10.200.0.1\n    meta:\n${meta}\n${nodes}\n`;
}

interface Case {
  label: string;
  name: string;
  type: string;
}
const CASES: Case[] = [
  { label: `NODE.node ANY, ${META_PAIRS} meta pairs`, name: 'meta.node.consul', type: 'ANY' },
  { label: `SERVICE.service SRV, ${INSTANCES} instances`, name: 'big.service.consul', type: 'SRV' },
  { label: 'forwarded TXT, 3.8 KB record set', name: 'big.example.test', type: 'TXT' },
];

interface Flood {
  sent: number;
  bytesIn: number;
  replies: number;
  /** Replies with answer records. */
  answered: number;
  /** Replies with TC set and no records at all. */
  truncated: number;
  bytesOut: number;
  largest: number;
}

/** One paced flood of `query` from 127.0.0.1. */
async function flood(port: number, query: Buffer): Promise<Flood> {
  // A large receive buffer: the victim's socket must not be what loses replies (capped by net.core.rmem_max).
  const socket = createSocket({ type: 'udp4', recvBufferSize: 1 << 24 });
  const f: Flood = { sent: 0, bytesIn: 0, replies: 0, answered: 0, truncated: 0, bytesOut: 0, largest: 0 };
  socket.on('message', (msg) => {
    f.replies++;
    f.bytesOut += msg.length;
    f.largest = Math.max(f.largest, msg.length);
    // TC and no answer or authority record (an OPT aside): RRL's slipped replies, and replies too big for any record to fit.
    if (msg[2]! & 0x02 && msg.readUInt16BE(6) === 0 && msg.readUInt16BE(8) === 0) f.truncated++;
    else if (msg.readUInt16BE(6) > 0) f.answered++;
  });
  await new Promise<void>((resolve) => socket.bind({ address: '127.0.0.1', port: 0 }, resolve));
  const total = RATE * SECONDS;
  const perBatch = Math.max(1, Math.round((RATE * BATCH_MS) / 1000));
  const start = performance.now();
  for (let batch = 0; f.sent < total; batch++) {
    for (let i = 0; i < perBatch && f.sent < total; i++) {
      query.writeUInt16BE(f.sent & 0xffff, 0);
      socket.send(query, port, '127.0.0.1');
      f.sent++;
      f.bytesIn += query.length;
    }
    const due = start + (batch + 1) * BATCH_MS - performance.now();
    if (due > 0) await sleep(due);
  }
  await sleep(500);
  socket.close();
  return f;
}

interface Row {
  maxUdp: number;
  rrl: boolean;
  c: Case;
  f: Flood;
  querySize: number;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'svcdns-amp-'));
  const txt = Array.from({ length: 15 }, (_, i) => `${String(i).padStart(2, '0')}${'t'.repeat(250)}`);
  const upstream = await startUpstream({ records: [{ name: 'big.example.test', type: 'TXT', ttl: 3600, data: txt }] });
  const running: Running[] = [];
  const rows: Row[] = [];
  try {
    await writeFile(join(dir, 'catalog.yaml'), catalogYaml());
    for (const maxUdp of [4096, 1232]) {
      for (const rrl of [false, true]) {
        const cli = startCli([
          '--listen',
          '127.0.0.1:0',
          '--catalog',
          join(dir, 'catalog.yaml'),
          '--upstream',
          upstream.address,
          '--max-udp-size',
          String(maxUdp),
          ...(rrl ? ['--rrl-responses-per-second', String(RRL), '--rrl-exempt', '192.0.2.0/24'] : []),
        ]);
        running.push(cli);
        const line = await cli.waitForLog((l) => l.msg === 'listening (udp, tcp)', 60_000);
        const port = Number(String(line.address).split(':').pop());
        for (const c of CASES) {
          const query = buildQuery(c.name, c.type, { udpSize: 4096 });
          // Warm the caches from another /24 (not the flood's account), and check the answer.
          const warm = await udpExchange(port, buildQuery(c.name, c.type, { udpSize: 4096 }), 10_000, '127.0.0.1', '127.9.0.1');
          if (!warm || (warm[3]! & 0xf) !== 0 || (warm.readUInt16BE(6) === 0 && (warm[2]! & 0x02) === 0)) throw new Error(`${c.name} ${c.type}: no answer (${warm ? `rcode ${warm[3]! & 0xf}` : 'silence'})`);
          process.stderr.write(`max-udp-size ${maxUdp}, rrl ${rrl ? 'on' : 'off'}: ${c.label}... `);
          const f = await flood(port, query);
          process.stderr.write(`${(f.bytesOut / f.bytesIn).toFixed(1)}×\n`);
          rows.push({ maxUdp, rrl, c, f, querySize: query.length });
        }
        await cli.stop();
      }
    }
  } finally {
    for (const r of running) await r.stop();
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  }
  const table = report(rows, costPerReply());
  process.stdout.write(table);
  if (args.write) await writeSection(table);
}

/**
 * What RRL adds to each UDP reply, in process (no sockets): `RateLimiter.limit` on a 1-record reply,
 * for clients spread over 1,000 prefixes (every reply charged, none limited: the rate is 10^6) and
 * for an exempt loopback client. Median of 5 rounds of 2 million replies.
 */
function costPerReply(): { label: string; ns: number }[] {
  const query = buildQuery('web.service.consul', 'A', { udpSize: 1232 });
  const reply = Buffer.from(
    dnsPacket.encode({
      type: 'response',
      id: 1,
      flags: 0x8400,
      questions: [{ name: 'web.service.consul', type: 'A', class: 'IN' }],
      answers: [{ name: 'web.service.consul', type: 'A', ttl: 0, data: '10.0.0.1' }],
    }),
  );
  const limiter = new RateLimiter({
    config: { responsesPerSecond: 1_000_000, slip: 2, windowSeconds: 15, ipv4PrefixLength: 24, ipv6PrefixLength: 56, exempt: DEFAULT_RRL_EXEMPT.map((c) => parseCidr(c)!), tableSize: 20_000 },
    diagnostics: new Diagnostics(),
  });
  const sets: [string, { address: string; port: number }[]][] = [
    ['IPv4 clients, 1,000 /24s', Array.from({ length: 1000 }, (_, i) => ({ address: `10.${i >> 8}.${i & 255}.7`, port: 5353 }))],
    ['IPv6 clients, 1,000 /56s', Array.from({ length: 1000 }, (_, i) => ({ address: `2001:db8:${i.toString(16)}::7`, port: 5353 }))],
    ['a loopback client (exempt)', [{ address: '127.0.0.1', port: 5353 }]],
  ];
  return sets.map(([label, clients]) => {
    const rounds: number[] = [];
    for (let round = 0; round < 5; round++) {
      const n = 2_000_000;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) limiter.limit(query, reply, clients[i % clients.length]!);
      rounds.push(((performance.now() - t0) * 1e6) / n);
    }
    return { label, ns: rounds.sort((a, b) => a - b)[2]! };
  });
}

function report(rows: Row[], cost: { label: string; ns: number }[]): string {
  const n = (x: number): string => x.toLocaleString('en-US');
  const lines = [
    `**Command:** \`npm run bench:amplification\` (--rate ${RATE} --seconds ${SECONDS} --rrl ${RRL}); ${cpus().length} cores, node ${process.version}, ${new Date().toISOString().slice(0, 16)} UTC.`,
    '',
    '| question (EDNS 4096, one client, same question) | --max-udp-size | RRL | query bytes | largest reply | replies / queries | with answers | TC, empty | mean reply ÷ query | bytes out ÷ bytes in |',
    '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      ({ maxUdp, rrl, c, f, querySize }) =>
        `| ${c.label} | ${maxUdp} | ${rrl ? `${RRL}/s, slip 2` : 'off'} | ${querySize} | ${n(f.largest)} | ${n(f.replies)} / ${n(f.sent)} | ${n(f.answered)} | ${n(f.truncated)} | ${(f.replies === 0 ? 0 : f.bytesOut / f.replies / querySize).toFixed(1)}× | **${(f.bytesOut / f.bytesIn).toFixed(1)}×** |`,
    ),
    '',
    'What RRL costs per UDP reply when on (`RateLimiter.limit`, in process, median of 5 rounds of 2 million; off, the handler is not wrapped at all):',
    '',
    '| client | ns per reply |',
    '|---|---:|',
    ...cost.map(({ label, ns }) => `| ${label} | ${ns.toFixed(0)} |`),
    '',
  ];
  return lines.join('\n');
}

const BEGIN = '<!-- bench:amplification begin -->';
const END = '<!-- bench:amplification end -->';

async function writeSection(table: string): Promise<void> {
  const file = join(ROOT, 'BENCHMARKS.md');
  const text = await readFile(file, 'utf8');
  const at = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (at < 0 || end < at) throw new Error(`BENCHMARKS.md has no ${BEGIN} ... ${END} markers`);
  await writeFile(file, `${text.slice(0, at + BEGIN.length)}\n${table}${text.slice(end)}`);
}

await main();
