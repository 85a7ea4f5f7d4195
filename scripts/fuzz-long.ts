/**
 * The long fuzz run of issue 15: `npm run fuzz:long [-- --packets N --seconds S --seed X]`, not
 * part of `npm test`. The generators and the reply check are hostile.test.ts's own
 * (test/support/fuzz.ts: mutated valid queries and random bytes, seeded): here a million packets
 * and more, ~90 % over UDP and ~10 % over TCP (4 connections at a time, each a chunk of frames
 * written in random pieces), at the built svcdns serving the bundled example catalog.
 *
 * Checked: every reply passes `checkReply` (well-formed, ID and opcode echoed, question copied,
 * never SERVFAIL) and comes once; packets that must be dropped get nothing; svcdns never exits.
 * Its resident memory (VmRSS, /proc/PID/status) is sampled every 10,000 packets and reported as
 * first / max / last. Bounded: it stops at N packets or S seconds, whichever comes first.
 * Exit code 1 when any problem was found.
 */

import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { parseArgs } from 'node:util';
import { frame } from '../test/support/client.js';
import { checkReply, fuzzPackets, histogram, type FuzzPacket } from '../test/support/fuzz.js';
import { Rng } from '../test/support/random.js';
import { hex } from '../test/support/wire.js';
import { killAllNow, ROOT, startSvcdns, stopAllSvcdns } from './faults/svcdns.js';

const USAGE = 'usage: npm run fuzz:long -- [--packets N] [--seconds S] [--seed X]';
let opts: { packets: string; seconds: string; seed: string };
try {
  opts = parseArgs({ options: { packets: { type: 'string', default: '1000000' }, seconds: { type: 'string', default: '900' }, seed: { type: 'string', default: '0x10f022' } } }).values;
} catch (err) {
  process.stderr.write(`fuzz-long: ${(err as Error).message.replace(/\s*\n\s*/g, ' ')} (${USAGE})\n`);
  process.exit(2);
}
const TOTAL = Number(opts.packets);
const BOUND_MS = Number(opts.seconds) * 1000;
const SEED = Number(opts.seed) >>> 0;
const bad = [
  !(Number.isInteger(TOTAL) && TOTAL > 0) && `--packets ${opts.packets} is not a positive integer`,
  !(BOUND_MS > 0) && `--seconds ${opts.seconds} is not a positive number`,
  Number.isNaN(Number(opts.seed)) && `--seed ${opts.seed} is not a number`,
].filter(Boolean);
if (bad.length > 0) {
  process.stderr.write(`fuzz-long: ${bad.join('; ')} (${USAGE})\n`);
  process.exit(2);
}

const TCP_SHARE = 0.1;
const UDP_WINDOW = 128;
const UDP_REPLY_MS = 2000;
const TCP_CONNECTIONS = 4;
const TCP_CHUNK = 200;
const RSS_EVERY = 10_000;
const CHUNK = 10_000;

process.on('SIGINT', () => {
  killAllNow();
  process.exit(130);
});

execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 2, 2] });
const svc = await startSvcdns(['--example'], { core: 0 });
const rng = new Rng(SEED);
const problems: string[] = [];
const problem = (text: string): void => {
  if (problems.length < 1000) problems.push(text);
};
const rss: number[] = [];
const sampleRss = (): void => {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${svc.pid}/status`, 'utf8'))?.[1]);
  rss.push(kb / 1024);
};
sampleRss();

const started = performance.now();
const timeLeft = (): boolean => performance.now() - started < BOUND_MS && svc.alive();
let sentTotal = 0;
let nextRss = RSS_EVERY;
const counted = (n: number): void => {
  sentTotal += n;
  while (sentTotal >= nextRss) {
    nextRss += RSS_EVERY;
    if (svc.alive()) sampleRss();
  }
};

/** The next chunk of packets of either transport, from the one seeded generator, in order. */
let chunkNo = 0;
function nextChunk(count: number): FuzzPacket[] {
  const mutated = Math.round((count * 5) / 6);
  return fuzzPackets(rng, mutated, count - mutated, (chunkNo++ * count) & 0xffff);
}

// ---------------------------------------------------------------------------------------------
// UDP: a window of outstanding packets that must be answered; the others sent alongside.

const udpStats = { sent: 0, mustReply: 0, answered: 0, lost: 0, strays: 0, replies: [] as Buffer[] };

async function udpRun(budget: number): Promise<void> {
  const socket = createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  /** The packet last sent with each ID, to judge a reply (IDs repeat every 65,536 packets). */
  const byId: (FuzzPacket | undefined)[] = new Array<FuzzPacket | undefined>(65536);
  const outstanding = new Map<number, number>(); // id -> sent at
  let wake: (() => void) | null = null;
  socket.on('message', (msg) => {
    if (msg.length < 2) {
      problem(`udp reply of ${msg.length} bytes`);
      return;
    }
    const id = msg.readUInt16BE(0);
    const p = byId[id];
    if (!outstanding.delete(id)) {
      if (p && !p.mustReply) problem(`udp reply to a packet that must be dropped: ${hex(p.bytes, 96)} -> ${hex(msg, 96)}`);
      else udpStats.strays++; // a second reply, or one after we stopped waiting
      return;
    }
    udpStats.answered++;
    if (udpStats.replies.length < 200_000) udpStats.replies.push(msg);
    const bad = p && checkReply(p, msg, 'udp');
    if (bad) problem(bad);
    wake?.();
  });
  let chunk: FuzzPacket[] = [];
  let next = 0;
  while (udpStats.sent < budget && timeLeft()) {
    if (next >= chunk.length) {
      chunk = nextChunk(CHUNK);
      next = 0;
    }
    // Give up on replies overdue (UDP may lose them even on loopback; counted, not retried).
    const now = performance.now();
    for (const [id, at] of outstanding) {
      if (now - at < UDP_REPLY_MS) break;
      outstanding.delete(id);
      udpStats.lost++;
    }
    if (outstanding.size >= UDP_WINDOW) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        wake = () => {
          clearTimeout(timer);
          wake = null;
          resolve();
        };
      });
      continue;
    }
    const p = chunk[next++]!;
    if (p.id >= 0) byId[p.id] = p;
    if (p.mustReply) {
      outstanding.set(p.id, performance.now());
      udpStats.mustReply++;
    }
    socket.send(p.bytes, svc.port, '127.0.0.1');
    udpStats.sent++;
    counted(1);
    if (udpStats.sent % 64 === 0) await new Promise((r) => setImmediate(r));
  }
  // The last replies.
  const end = performance.now() + UDP_REPLY_MS;
  while (outstanding.size > 0 && performance.now() < end) await new Promise((r) => setTimeout(r, 20));
  udpStats.lost += outstanding.size;
  socket.close();
}

// ---------------------------------------------------------------------------------------------
// TCP: each connection carries one chunk of frames, written in random pieces; replies in order.

const tcpStats = { sent: 0, mustReply: 0, answered: 0, connections: 0, closedEarly: 0, replies: [] as Buffer[] };

function tcpChunk(packets: FuzzPacket[]): Promise<void> {
  return new Promise((resolve) => {
    const expected = packets.filter((p) => p.mustReply);
    const replies: Buffer[] = [];
    let pending = Buffer.alloc(0);
    const socket = connect({ port: svc.port, host: '127.0.0.1' });
    tcpStats.connections++;
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.destroy();
      if (replies.length < expected.length) {
        tcpStats.closedEarly++;
        problem(`tcp: ${replies.length} replies for ${expected.length} answerable frames`);
      }
      expected.forEach((p, i) => {
        const reply = replies[i];
        if (!reply) return;
        const bad = checkReply(p, reply, 'tcp');
        if (bad) problem(bad);
      });
      tcpStats.answered += Math.min(replies.length, expected.length);
      if (tcpStats.replies.length < 50_000) tcpStats.replies.push(...replies);
      resolve();
    };
    const timer = setTimeout(finish, 10_000);
    socket.on('error', () => finish());
    socket.on('close', () => finish());
    socket.on('data', (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        replies.push(pending.subarray(2, 2 + pending.readUInt16BE(0)));
        pending = pending.subarray(2 + pending.readUInt16BE(0));
      }
      if (replies.length > expected.length) problem(`tcp: more replies (${replies.length}) than answerable frames (${expected.length})`);
      if (replies.length >= expected.length) finish();
    });
    socket.once('connect', () => {
      const stream = frame(...packets.map((p) => p.bytes));
      for (let off = 0; off < stream.length; ) {
        const n = 1 + rng.int(1500);
        socket.write(stream.subarray(off, off + n));
        off += n;
      }
      if (expected.length === 0) setTimeout(finish, 50);
    });
    tcpStats.sent += packets.length;
    tcpStats.mustReply += expected.length;
    counted(packets.length);
  });
}

async function tcpRun(budget: number): Promise<void> {
  const worker = async (): Promise<void> => {
    while (tcpStats.sent < budget && timeLeft()) await tcpChunk(nextChunk(TCP_CHUNK));
  };
  await Promise.all(Array.from({ length: TCP_CONNECTIONS }, worker));
}

let exitCode = 0;
try {
  await Promise.all([udpRun(TOTAL * (1 - TCP_SHARE)), tcpRun(TOTAL * TCP_SHARE)]);
  const alive = svc.alive();
  if (!alive) problem(`svcdns exited: ${svc.logs.slice(-5).map((l) => l.msg).join(' | ')}`);
  else sampleRss();
  const seconds = (performance.now() - started) / 1000;
  const total = udpStats.sent + tcpStats.sent;
  const warn = svc.logs.filter((l) => l.level >= 40);
  const mib = (v: number): string => `${v.toFixed(1)} MiB`;
  console.log(`\nfuzz:long, seed 0x${SEED.toString(16)}: ${total.toLocaleString('en')} packets in ${seconds.toFixed(0)} s (${(total / seconds).toFixed(0)}/s)${total < TOTAL ? ` (stopped at the ${opts.seconds} s bound)` : ''}`);
  console.log(`  udp: ${udpStats.sent.toLocaleString('en')} sent, ${udpStats.mustReply.toLocaleString('en')} must be answered, ${udpStats.answered.toLocaleString('en')} answered, ${udpStats.lost} unanswered within ${UDP_REPLY_MS} ms, ${udpStats.strays} stray/late; rcodes (first 200,000) ${histogram(udpStats.replies)}`);
  console.log(`  tcp: ${tcpStats.sent.toLocaleString('en')} frames on ${tcpStats.connections} connections, ${tcpStats.mustReply.toLocaleString('en')} must be answered, ${tcpStats.answered.toLocaleString('en')} answered; rcodes ${histogram(tcpStats.replies)}`);
  console.log(`  svcdns: ${alive ? 'alive' : 'EXITED'}; RSS first / max / last: ${mib(rss[0]!)} / ${mib(Math.max(...rss))} / ${mib(rss.at(-1)!)} (${rss.length} samples, every ${RSS_EVERY.toLocaleString('en')} packets); ${warn.length} warn+ log lines${warn.length ? ` (${[...new Set(warn.map((l) => l.msg))].slice(0, 3).join(' | ')})` : ''}`);
  console.log(`  problems: ${problems.length}${problems.length ? `\n    ${problems.slice(0, 10).join('\n    ')}` : ''}`);
  if (problems.length > 0 || !alive) exitCode = 1;
} finally {
  await stopAllSvcdns();
}
process.exit(exitCode);
