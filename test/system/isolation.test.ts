/**
 * Load isolation, through the real process: a client flooding unique forwarded names at a
 * black-holing upstream takes at most --upstream-max-per-client places in flight (its further
 * questions get SERVFAIL at once, never reaching the upstream), while another client still has its
 * names forwarded and everyone gets Consul-domain answers; under a low open-file limit (prlimit)
 * the bound is lowered to what fits, with one warning giving the numbers; and a process out of
 * descriptors says so once, answers SERVFAIL to forwarded questions, and recovers.
 */

import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type * as dnsPacket from 'dns-packet';
import { FAILURES_TO_UNHEALTHY } from '../../src/forward/upstreams.js';
import { CATALOG } from '../support/catalog.js';
import { buildQuery, decode, frame, udpExchange, zoneLines } from '../support/client.js';
import { dig } from '../support/dig.js';
import { eventually } from '../support/eventually.js';
import { get, parseMetrics } from '../support/metrics.js';
import { CLI, ROOT, startCli, startCommand, type Running } from '../support/spawn.js';
import { startUpstream, type TestUpstream } from '../support/upstream.js';

const RECORDS: dnsPacket.Answer[] = [{ name: 'www.example.test', type: 'A', ttl: 100, data: '192.0.2.10' }];
const WEB = ['web.service.consul. 0 IN A 10.0.0.1', 'web.service.consul. 0 IN A 10.0.0.2'];
const WARNING = 'open-file limit too low for --upstream-max-inflight beside the TCP connections: bound lowered (raise the hard limit: systemd LimitNOFILE=, ulimit -Hn)';
const TCP_WARNING = 'open-file limit too low for every TCP connection the listeners allow: at the limit new ones are closed unanswered (raise the hard limit: systemd LimitNOFILE=, ulimit -Hn)';
const PER_CLIENT = 'a client has too many questions waiting on upstreams (--upstream-max-per-client): its new ones are dropped (UDP) or answered SERVFAIL (TCP)';
const OUT_OF_FILES = 'out of file descriptors: upstream sockets cannot be opened, forwarded questions get SERVFAIL (raise the open-file limit, or lower --upstream-max-inflight)';

/** An upstream answering www.example.test and black-holing every name under flood.test (until released); `start` closes it. */
async function floodUpstream(): Promise<TestUpstream> {
  const upstream = await startUpstream({ records: RECORDS });
  upstream.blackHole = (name) => name.toLowerCase().endsWith('.flood.test');
  return upstream;
}

/**
 * svcdns from the test catalog, forwarding to `upstream`; `prlimit` runs it under that open-file
 * limit (soft and hard, so Node cannot raise it). Stopped (gracefully) by the test.
 */
async function start(t: TestContext, upstream: TestUpstream, args: string[], prlimit?: number): Promise<{ cli: Running; port: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'svcdns-isolation-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const catalog = join(dir, 'catalog.yaml');
  await writeFile(catalog, CATALOG);
  // A long timeout: black-holed questions stay in flight for the whole test, whatever the machine's pace.
  // The test's clients are all on loopback: no exemption from the per-client bounds (by default the
  // host's 127.0.0.1 is exempt), so that the flooder on 127.0.0.1 meets them.
  const all = ['--listen', '127.0.0.1:0', '--catalog', catalog, '--upstream', upstream.address, '--upstream-timeout', '60s', '--client-limits-exempt', '192.0.2.1/32', ...args];
  const cli = prlimit === undefined ? startCli(all) : startCommand('prlimit', [`--nofile=${prlimit}:${prlimit}`, process.execPath, ...CLI, ...all], { cwd: ROOT });
  // The black hole released first, so the server has no question left waiting when it is stopped.
  t.after(async () => {
    upstream.releaseHeld();
    await cli.stop();
    await upstream.close();
  });
  const listening = await cli.waitForLog((l) => l.msg === 'listening (udp, tcp)');
  return { cli, port: Number(String(listening.address).split(':')[1]) };
}

/** One UDP socket on `from` sending many questions; replies collected by ID. */
async function floodClient(t: TestContext, from: string): Promise<{ socket: UdpSocket; replies: Map<number, dnsPacket.DecodedPacket> }> {
  const socket = createSocket('udp4');
  const replies = new Map<number, dnsPacket.DecodedPacket>();
  socket.on('message', (m) => {
    const reply = decode(m);
    replies.set(reply.id!, reply);
  });
  await new Promise<void>((resolve) => socket.bind({ address: from, port: 0 }, resolve));
  t.after(() => socket.close());
  return { socket, replies };
}

const rcodeOf = (reply: dnsPacket.DecodedPacket): number => reply.flags! & 0xf;
const floodNames = (upstream: TestUpstream): string[] => upstream.received.filter((r) => r.name.endsWith('.flood.test')).map((r) => r.name);

test('a client flooding unique forwarded names gets --upstream-max-per-client in flight, the rest dropped (UDP) or SERVFAIL (TCP) at once; others are still answered', async (t) => {
  const upstream = await floodUpstream();
  const { cli, port } = await start(t, upstream, ['--upstream-max-inflight', '8', '--upstream-max-per-client', '5', '--http-listen', '127.0.0.1:0']);
  const flood = await floodClient(t, '127.0.0.1');
  for (let id = 1; id <= 12; id++) flood.socket.send(buildQuery(`n${id}.flood.test`, 'A', { id }), port, '127.0.0.1');
  // A Consul name last, from the same socket: its reply means the twelve before it were handled.
  flood.socket.send(buildQuery('web.service.consul', 'A', { id: 99 }), port, '127.0.0.1');

  // The first five wait on the black hole; the seven after them are dropped without being asked upstream.
  await eventually(() => assert.ok(flood.replies.has(99), `replies so far: ${[...flood.replies.keys()].join(', ')}`));
  assert.deepEqual([...flood.replies.keys()], [99], 'no reply to the seven refused');
  await eventually(() => assert.deepEqual(floodNames(upstream).sort(), ['n1.flood.test', 'n2.flood.test', 'n3.flood.test', 'n4.flood.test', 'n5.flood.test']));
  // Over TCP too: the bound is the client's, whatever the transport.
  assert.equal((await dig(port, ['+tcp', 'n13.flood.test', 'A'])).status, 'SERVFAIL');

  // Another client (127.0.0.2) still has its names forwarded (the global bound, 8, has room: the
  // flooder holds 5), and gets Consul-domain answers; so does the flooder.
  const other = await udpExchange(port, buildQuery('www.example.test', 'A', { id: 77 }), 5000, '127.0.0.1', '127.0.0.2');
  assert.ok(other, 'answered');
  assert.equal(rcodeOf(decode(other)), 0);
  assert.deepEqual(zoneLines(decode(other).answers), ['www.example.test. 100 IN A 192.0.2.10']);
  for (const from of ['127.0.0.2', '127.0.0.1']) {
    const consul = await dig(port, ['-b', from, 'web.service.consul', 'A']);
    assert.equal(consul.status, 'NOERROR');
    assert.deepEqual(consul.answer.sort(), WEB);
  }
  assert.equal(floodNames(upstream).length, 5, 'the refused questions never reached the upstream');
  const warned = cli.logs.filter((l) => l.msg === PER_CLIENT);
  assert.equal(warned.length, 1, 'logged once');
  assert.equal(warned[0]!.client, '127.0.0.1');
  assert.equal(warned[0]!.maxInflight, 8);
  const http = await cli.waitForLog((l) => String(l.msg).startsWith('listening (http'));
  const metrics = parseMetrics((await get(Number(String(http.address).split(':').pop()), '/metrics')).body);
  assert.deepEqual(
    ['svcdns_forward_refused_total{bound="client"}', 'svcdns_forward_refused_total{bound="global"}', 'svcdns_forward_max_inflight'].map((k) => metrics.get(k)),
    [8, 0, 8],
  );

  // The black hole lifted: the five get their answers, and their places are the flooder's again.
  upstream.releaseHeld();
  await eventually(() => assert.equal(flood.replies.size, 6));
  for (const id of [1, 2, 3, 4, 5]) assert.equal(rcodeOf(flood.replies.get(id)!), 3, 'NXDOMAIN from the upstream');
  upstream.blackHole = null;
  assert.equal((await dig(port, ['n14.flood.test', 'A'])).status, 'NXDOMAIN');
});

test('under an open-file limit the bound does not fit: lowered to what fits, one warning with the numbers; TCP still answered during a flood', async (t) => {
  const upstream = await floodUpstream();
  const LIMIT = 256;
  const { cli, port } = await start(t, upstream, ['--upstream-max-per-client', '1000'], LIMIT);
  const warnings = cli.logs.filter((l) => l.msg === WARNING);
  assert.equal(warnings.length, 1);
  const w = warnings[0]!;
  const open = w.openFiles as number;
  // The arithmetic (src/forward/open-files.ts): what is open, the two listening sockets and 64
  // kept for the rest come first; the 1,000 TCP connections and forwarding then share the room.
  const room = LIMIT - open - 2 - 64;
  const effective = room - Math.floor(room / 2);
  assert.deepEqual(
    { ...w, openFiles: undefined },
    {
      ...w,
      openFiles: undefined,
      level: 40,
      openFileLimit: LIMIT,
      upstreamMaxInflight: 1000,
      tcpConnections: 1000,
      tcpReserved: Math.floor(room / 2),
      reserve: LIMIT - effective,
      effectiveMaxInflight: effective,
      upstreamSockets: effective,
    },
  );
  assert.ok(open > 0 && effective > 10, `plausible: ${open} open, ${effective} in flight`);

  // The lowered bound is the one in force: of a flood of effective + 3 unique names, effective are
  // asked upstream and 3 dropped (the Consul name sent after them answers once all were handled).
  const flood = await floodClient(t, '127.0.0.1');
  for (let id = 1; id <= effective + 3; id++) flood.socket.send(buildQuery(`n${id}.flood.test`, 'A', { id }), port, '127.0.0.1');
  flood.socket.send(buildQuery('web.service.consul', 'A', { id: 0xffff }), port, '127.0.0.1');
  await eventually(() => assert.ok(flood.replies.has(0xffff), 'the Consul name sent last is answered'));
  assert.equal(flood.replies.size, 1, 'no reply to the refused ones');
  await eventually(() => assert.equal(floodNames(upstream).length, effective));
  assert.ok(cli.logs.some((l) => String(l.msg).startsWith('too many questions waiting on upstreams (--upstream-max-inflight)')), 'the global bound said so');
  // With the flood's sockets open, TCP clients are still served.
  const tcp = await dig(port, ['+tcp', 'web.service.consul', 'A']);
  assert.equal(tcp.transport, 'TCP');
  assert.deepEqual(tcp.answer.sort(), WEB);
  assert.equal(cli.logs.filter((l) => l.msg === WARNING).length, 1, 'warned once');
});

test('under the same limit, a bound that fits is kept, without that warning; the TCP connections that do not fit are warned of', async (t) => {
  const upstream = await floodUpstream();
  const { cli, port } = await start(t, upstream, ['--upstream-max-inflight', '20'], 256);
  assert.deepEqual((await dig(port, ['www.example.test', 'A'])).answer, ['www.example.test. 100 IN A 192.0.2.10']);
  assert.equal(cli.logs.filter((l) => l.msg === WARNING).length, 0);
  const tcp = cli.logs.filter((l) => l.msg === TCP_WARNING);
  assert.equal(tcp.length, 1);
  assert.deepEqual([tcp[0]!.upstreamMaxInflight, tcp[0]!.effectiveMaxInflight, tcp[0]!.tcpConnections], [20, 20, 1000]);
});

test('out of file descriptors (TCP clients took them all): one error line, forwarded questions SERVFAIL, Consul names answered, the upstream not blamed; then it recovers', async (t) => {
  const upstream = await floodUpstream();
  const LIMIT = 128;
  // The per-client TCP cap lifted: here one client (the test) is to take every descriptor.
  const { cli, port } = await start(t, upstream, ['--tcp-max-per-client', '1000'], LIMIT);
  // More TCP connections than the process has descriptors: each asks a Consul name, and is either
  // answered (svcdns holds it open) or closed unanswered (accepted and closed by libuv at EMFILE).
  const sockets: Socket[] = [];
  t.after(() => {
    for (const s of sockets) s.destroy();
  });
  const outcomes = await Promise.all(
    Array.from({ length: LIMIT + 20 }, () => {
      const socket = connect({ port, host: '127.0.0.1' });
      sockets.push(socket);
      return new Promise<'answered' | 'closed'>((resolve) => {
        socket.on('error', () => resolve('closed'));
        socket.on('close', () => resolve('closed'));
        socket.once('data', () => resolve('answered'));
        socket.write(frame(buildQuery('web.service.consul', 'A')));
      });
    }),
  );
  assert.ok(outcomes.includes('closed'), 'some connections found no descriptor');
  assert.ok(outcomes.includes('answered'));

  // No descriptor for an upstream socket: SERVFAIL, said once; Consul names need none. As many
  // failures as would mark an upstream unhealthy, were they counted against it.
  for (let i = 0; i < FAILURES_TO_UNHEALTHY; i++) assert.equal((await dig(port, [`www${i}.example.test`, 'A'])).status, 'SERVFAIL');
  assert.deepEqual((await dig(port, ['web.service.consul', 'A'])).answer.sort(), WEB);
  const errors = cli.logs.filter((l) => l.msg === OUT_OF_FILES);
  assert.equal(errors.length, 1);
  assert.equal(errors[0]!.code, 'EMFILE');
  assert.equal(upstream.received.length, 0, 'nothing could be sent');

  // Descriptors back: forwarding works again, said once; the upstream was never marked failing.
  for (const s of sockets) s.destroy();
  await eventually(async () => assert.deepEqual((await dig(port, ['www.example.test', 'A'])).answer, ['www.example.test. 100 IN A 192.0.2.10']));
  await cli.waitForLog((l) => l.msg === 'upstream sockets open again');
  assert.equal(cli.logs.filter((l) => l.msg === OUT_OF_FILES).length, 1);
  assert.deepEqual(
    cli.logs.filter((l) => String(l.msg).startsWith('upstream marked unhealthy')).map((l) => l.msg),
    [],
    'no upstream marked failing',
  );
});
