/**
 * The process's lifecycle as an operator drives it, with signals: SIGTERM with --lameduck (DNS
 * still answered, then the listeners close, queries in flight answered, exit 0), the drain time's
 * SERVFAIL, a second signal, SIGHUP's outcomes (changed, unchanged, needs a restart, rejected), and
 * the same shutdown under --workers. Queries in flight are held by an upstream the test controls,
 * which answers when the test says so: no sleeps.
 */

import assert from 'node:assert/strict';
import { createSocket, type RemoteInfo } from 'node:dgram';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import * as dnsPacket from 'dns-packet';
import { CATALOG } from '../support/catalog.js';
import { buildQuery, decode, frame, udpExchange, zoneLines } from '../support/client.js';
import { dig } from '../support/dig.js';
import { within } from '../support/eventually.js';
import { startCli, type Running } from '../support/spawn.js';
import { startUpstream } from '../support/upstream.js';

/** An upstream (UDP and TCP on one port) that holds every query until the test answers it. */
interface HeldUpstream {
  address: string;
  /** Resolves with the next query to arrive (or one that already has, unclaimed). */
  nextQuery(): Promise<HeldQuery>;
  /** Queries received so far. */
  readonly received: number;
}

interface HeldQuery {
  name: string;
  transport: 'udp' | 'tcp';
  answer: (ip: string) => void;
}

async function heldUpstream(t: TestContext): Promise<HeldUpstream> {
  const udp = createSocket('udp4');
  udp.bind(0, '127.0.0.1');
  await once(udp, 'listening');
  const port = udp.address().port;
  const tcp = createServer();
  tcp.listen(port, '127.0.0.1');
  await once(tcp, 'listening');
  const connections = new Set<Socket>();
  t.after(() => {
    udp.close();
    for (const c of connections) c.destroy();
    tcp.close();
  });
  const arrived: HeldQuery[] = [];
  const waiting: ((q: HeldQuery) => void)[] = [];
  let received = 0;
  const receive = (packet: Buffer, transport: 'udp' | 'tcp', send: (reply: Buffer) => void): void => {
    const query = dnsPacket.decode(packet);
    const question = query.questions![0]!;
    const answer = (ip: string): void =>
      send(
        dnsPacket.encode({
          type: 'response',
          id: query.id,
          flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
          questions: [question],
          answers: [{ name: question.name, type: 'A', ttl: 60, data: ip }],
        }),
      );
    const held = { name: question.name, transport, answer };
    received++;
    const waiter = waiting.shift();
    if (waiter) waiter(held);
    else arrived.push(held);
  };
  udp.on('message', (packet: Buffer, from: RemoteInfo) => receive(packet, 'udp', (reply) => udp.send(reply, from.port, from.address)));
  tcp.on('connection', (socket) => {
    connections.add(socket);
    socket.on('error', () => socket.destroy());
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const message = buffered.subarray(2, 2 + buffered.readUInt16BE(0));
        buffered = buffered.subarray(2 + message.length);
        receive(message, 'tcp', (reply) => socket.write(frame(reply)));
      }
    });
  });
  return {
    address: `127.0.0.1:${port}`,
    get received() {
      return received;
    },
    nextQuery: () => {
      const first = arrived.shift();
      return first ? Promise.resolve(first) : new Promise((resolve) => waiting.push(resolve));
    },
  };
}

/** Starts the CLI; with the test catalog unless the arguments name a catalog or a config file. */
async function start(t: TestContext, args: string[]): Promise<{ cli: Running; port: number }> {
  const catalog = args.includes('--catalog') || args.includes('--config') ? [] : ['--catalog', await writeCatalog(t)];
  const cli = startCli(['--listen', '127.0.0.1:0', ...catalog, ...args]);
  t.after(() => cli.stop('SIGKILL'));
  await cli.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('started'));
  const listening = await cli.waitForLog((l) => l.msg === 'listening (udp, tcp)');
  return { cli, port: Number(String(listening.address).split(':').pop()) };
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'svcdns-lifecycle-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A TCP connection that collects framed replies; `reply(n)` rejects if the connection closes (or
 * fails) before the nth reply, and `ended` resolves when the server ends its side.
 */
function tcpClient(port: number): { socket: Socket; ended: Promise<void>; reply: (n: number) => Promise<Buffer> } {
  const socket = connect({ port, host: '127.0.0.1' });
  const replies: Buffer[] = [];
  let closed: Error | null = null;
  const waiters: (() => void)[] = [];
  const wake = (): void => void waiters.splice(0).forEach((w) => w());
  let pending = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
      replies.push(pending.subarray(2, 2 + pending.readUInt16BE(0)));
      pending = pending.subarray(2 + pending.readUInt16BE(0));
    }
    wake();
  });
  socket.on('error', (err) => {
    closed = err;
    wake();
  });
  socket.on('close', () => {
    closed ??= new Error('connection closed');
    wake();
  });
  const ended = new Promise<void>((resolve, reject) => {
    socket.once('end', resolve);
    socket.once('close', () => reject(new Error('closed without an end of stream')));
  });
  const reply = async (n: number): Promise<Buffer> => {
    while (replies.length <= n) {
      if (closed) throw new Error(`no reply ${n}: ${closed.message}`);
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
    return replies[n]!;
  };
  return { socket, ended, reply };
}

/** The exit code (null: killed by a signal); bounded, so a process that never exits fails the test. */
function exited(cli: Running): Promise<number | null> {
  if (cli.child.exitCode !== null || cli.child.signalCode !== null) return Promise.resolve(cli.child.exitCode);
  return within(
    once(cli.child, 'exit').then(([code]) => code as number | null),
    20_000,
    'the process exiting',
  );
}

function messages(cli: Running): string[] {
  return cli.logs.map((l) => String(l.msg));
}

test('SIGTERM with --lameduck: DNS still answered (UDP and TCP) during the lameduck, then the listeners close and the process exits 0', async (t) => {
  const { cli, port } = await start(t, ['--lameduck', '3s']);
  assert.deepEqual((await dig(port, ['web.service.consul'])).status, 'NOERROR');
  cli.child.kill('SIGTERM');
  const lameduck = await cli.waitForLog((l) => l.msg === 'lameduck: still answering DNS, no longer ready');
  assert.equal(lameduck.lameduckMs, 3000);
  const udp = await dig(port, ['node1.node.consul']);
  const tcp = await dig(port, ['+tcp', 'node1.node.consul']);
  assert.deepEqual([udp.answer, tcp.answer], [['node1.node.consul. 0 IN A 10.0.0.1'], ['node1.node.consul. 0 IN A 10.0.0.1']]);
  assert.ok(!messages(cli).includes('listeners closing; answering the queries in flight'), 'answered during the lameduck, before the listeners close');
  assert.equal(await exited(cli), 0);
  const order = messages(cli).filter((m) => ['shutting down', 'lameduck: still answering DNS, no longer ready', 'listeners closing; answering the queries in flight', 'stopped'].includes(m));
  assert.deepEqual(order, ['shutting down', 'lameduck: still answering DNS, no longer ready', 'listeners closing; answering the queries in flight', 'stopped']);
});

test('queries in flight when SIGTERM comes (TCP and UDP, forwarded, upstream still silent) get their answers; the TCP connection is ended after its reply; new connections are refused', async (t) => {
  const upstream = await heldUpstream(t);
  const { cli, port } = await start(t, ['--upstream', upstream.address, '--upstream-timeout', '60s']);
  const tcp = tcpClient(port);
  await once(tcp.socket, 'connect');
  tcp.socket.write(frame(buildQuery('held-tcp.example', 'A', { id: 1 })));
  const heldTcp = await upstream.nextQuery();
  const udpReply = udpExchange(port, buildQuery('held-udp.example', 'A', { id: 2 }), 30_000);
  const heldUdp = await upstream.nextQuery();
  assert.deepEqual([heldTcp.name, heldUdp.name], ['held-tcp.example', 'held-udp.example']);
  assert.deepEqual([heldTcp.transport, heldUdp.transport], ['tcp', 'udp'], 'asked over the transport the client used');

  cli.child.kill('SIGTERM');
  const closing = await cli.waitForLog((l) => l.msg === 'listeners closing; answering the queries in flight');
  assert.equal(closing.inFlight, 2);
  await assert.rejects(
    new Promise((resolve, reject) => connect({ port, host: '127.0.0.1' }).once('connect', resolve).once('error', reject)),
    { code: 'ECONNREFUSED' },
    'the TCP listener is closed',
  );
  assert.equal(cli.child.exitCode, null, 'still running while queries are in flight');

  heldTcp.answer('192.0.2.7');
  assert.deepEqual(zoneLines(decode(await tcp.reply(0)).answers), ['held-tcp.example. 60 IN A 192.0.2.7']);
  await tcp.ended;
  assert.equal(cli.child.exitCode, null, 'still running: the UDP query is in flight');
  heldUdp.answer('192.0.2.8');
  const udp = await udpReply;
  assert.ok(udp, 'a UDP reply');
  assert.deepEqual(zoneLines(decode(udp).answers), ['held-udp.example. 60 IN A 192.0.2.8']);
  assert.equal(await exited(cli), 0);
  tcp.socket.destroy();
});

test('past the drain time (--upstream-timeout) a query still in flight gets SERVFAIL, and the process exits 0', async (t) => {
  // Three silent upstreams tried in turn, 2 s each: the forwarder alone would say SERVFAIL after
  // 6 s, having asked the third at 4 s; the drain gives up 2 s after the listeners close.
  const upstreams = [await heldUpstream(t), await heldUpstream(t), await heldUpstream(t)];
  const { cli, port } = await start(t, [...upstreams.flatMap((u) => ['--upstream', u.address]), '--upstream-timeout', '2s']);
  const tcp = tcpClient(port);
  await once(tcp.socket, 'connect');
  tcp.socket.write(frame(buildQuery('never.example', 'A')));
  await upstreams[0]!.nextQuery();
  cli.child.kill('SIGTERM');
  const reply = decode(await tcp.reply(0));
  assert.equal(upstreams[2]!.received, 0, 'given up on before the forwarder got to the third upstream');
  assert.equal((reply.flags ?? 0) & 0xf, 2, 'SERVFAIL');
  assert.equal(reply.questions?.[0]?.name, 'never.example');
  const over = await cli.waitForLog((l) => l.msg === 'drain time over: SERVFAIL to the queries still in flight');
  assert.deepEqual([over.unanswered, over.drainMs], [1, 2000]);
  assert.equal(await exited(cli), 0);
  tcp.socket.destroy();
});

test('a second signal exits at once, with 128 + its number', async (t) => {
  const { cli } = await start(t, ['--lameduck', '10m']);
  cli.child.kill('SIGTERM');
  await cli.waitForLog((l) => l.msg === 'lameduck: still answering DNS, no longer ready');
  cli.child.kill('SIGINT');
  assert.equal(await exited(cli), 130);
  const line = await cli.waitForLog((l) => l.msg === 'second signal: exiting now, without waiting for the queries in flight');
  assert.equal(line.signal, 'SIGINT');
});

async function writeCatalog(t: TestContext): Promise<string> {
  const path = join(await tempDir(t), 'catalog.yaml');
  await writeFile(path, CATALOG);
  return path;
}

test('SIGHUP: one outcome line: unchanged; changed (log level and query log take effect); a change that needs a restart; rejected (every problem, old state serving)', async (t) => {
  const dir = await tempDir(t);
  const catalog = join(dir, 'catalog.yaml');
  await writeFile(catalog, CATALOG);
  const config = join(dir, 'svcdns.yaml');
  const base = `catalog: ${catalog}\n`;
  await writeFile(config, `${base}log-level: info\n`);
  const refusing = await startUpstream({ records: [] });
  t.after(() => refusing.close());
  refusing.behaviour = 'servfail';
  const { cli, port } = await start(t, ['--config', config, '--upstream', refusing.address]);
  const outcomes = (): Record<string, unknown>[] => cli.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('SIGHUP: '));
  const hup = async (count: number): Promise<Record<string, unknown>> => {
    cli.child.kill('SIGHUP');
    await cli.waitForLog(() => outcomes().length === count);
    return outcomes()[count - 1]!;
  };
  const upstreamFailedLines = (): number => cli.logs.filter((l) => l.msg === 'upstream could not answer; trying the next').length;

  assert.equal((await hup(1)).msg, 'SIGHUP: reloaded: unchanged');

  assert.equal((await dig(port, ['one.example'])).status, 'SERVFAIL');
  assert.equal(upstreamFailedLines(), 0, 'no debug lines at info');
  await writeFile(config, `${base}log-level: debug\nquery-log: true\n`);
  const changed = await hup(2);
  assert.deepEqual([changed.msg, changed.changed, changed.level], ['SIGHUP: reloaded: changed', ['log-level', 'query-log'], 30]);
  assert.equal((await dig(port, ['two.example'])).status, 'SERVFAIL');
  await cli.waitForLog((l) => l.msg === 'upstream could not answer; trying the next' && l.level === 20);
  const query = await cli.waitForLog((l) => l.msg === 'query' && l.name === 'two.example');
  assert.equal(query.transport, 'udp');

  await writeFile(config, `${base}log-level: debug\nquery-log: true\nservice-ttl: 30\n`);
  const restart = await hup(3);
  assert.deepEqual([restart.msg, restart.restartNeeded], ['SIGHUP: reloaded: unchanged; some changes need a restart (running values kept)', ['service-ttl']]);
  assert.deepEqual((await dig(port, ['web.service.consul', 'SRV'])).answer[0]?.split(' ')[1], '0', 'the running TTL is kept');

  await writeFile(config, `${base}log-level: loud\nquery-log: false\nservice-ttl: -1\n`);
  await writeFile(catalog, 'nodes: {');
  const rejected = await hup(4);
  assert.equal(rejected.msg, 'SIGHUP: reload rejected; the last good state keeps serving');
  assert.equal(rejected.level, 50);
  const problems = rejected.problems as string[];
  assert.deepEqual(problems.slice(0, 2), ['service-ttl (config file): must be a whole number from 0 to 2147483647 (got "-1")', 'log-level (config file): must be one of fatal, error, warn, info, debug, trace, silent (got "loud")']);
  assert.equal(problems.length, 3);
  assert.match(problems[2]!, /catalog\.yaml/);
  assert.deepEqual((await dig(port, ['node1.node.consul'])).answer, ['node1.node.consul. 0 IN A 10.0.0.1'], 'the last good catalog serves');
  await cli.waitForLog((l) => l.msg === 'query' && l.name === 'node1.node.consul', 5000);
  assert.equal(cli.child.exitCode, null);
});

test('--workers 2: SIGTERM to the primary lameducks and drains the workers: DNS answered during the lameduck, a query in flight answered, then all exit 0', async (t) => {
  const upstream = await heldUpstream(t);
  const { cli, port } = await start(t, ['--workers', '2', '--lameduck', '2s', '--upstream', upstream.address, '--upstream-timeout', '60s']);
  const tcp = tcpClient(port);
  await once(tcp.socket, 'connect');
  tcp.socket.write(frame(buildQuery('held.example', 'A')));
  const held = await upstream.nextQuery();

  cli.child.kill('SIGTERM');
  await cli.waitForLog((l) => l.msg === 'lameduck: still answering DNS, no longer ready' && l.worker !== undefined);
  assert.deepEqual((await dig(port, ['node1.node.consul'])).answer, ['node1.node.consul. 0 IN A 10.0.0.1'], 'answered during the lameduck');
  await cli.waitForLog((l) => l.msg === 'listeners closing; answering the queries in flight' && l.inFlight === 1);
  held.answer('192.0.2.9');
  assert.deepEqual(zoneLines(decode(await tcp.reply(0)).answers), ['held.example. 60 IN A 192.0.2.9']);
  await tcp.ended;
  assert.equal(await exited(cli), 0);
  assert.equal(cli.logs.filter((l) => l.msg === 'stopped').length, 2, 'both workers stopped');
  tcp.socket.destroy();
});
