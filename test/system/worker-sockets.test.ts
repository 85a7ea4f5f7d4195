/**
 * --workers and their sockets (--worker-sockets, src/listen/worker-sockets.ts), as an operator
 * sees them: which mode the log says, the UDP sockets `ss -ulpn` shows on the port and who holds
 * them, which worker answered (the query log names it), and a dead worker's replacement.
 * On a Node with dgram reusePort (22.12+: run the tier with such a node first in PATH) `auto` is
 * `reuseport`; on Node 20 it is `shared`, and the reusePort tests are skipped.
 */

import assert from 'node:assert/strict';
import { createSocket, type SocketOptions } from 'node:dgram';
import { once } from 'node:events';
import { test, type TestContext } from 'node:test';
import type * as dnsPacket from 'dns-packet';
import { buildQuery, decode, frame, tcpExchange, udpExchange } from '../support/client.js';
import { eventually } from '../support/eventually.js';
import { runCli, startCli, type Running } from '../support/spawn.js';
import { nodeHasReusePort, udpSockets, workerPids } from '../support/workers.js';

const REUSEPORT = nodeHasReusePort();
const NAME = 'web.service.consul';
/** The example catalog's web instances. */
const WEB = ['192.168.0.129', '192.168.0.130', '192.168.0.131'];

async function start(t: TestContext, args: string[]): Promise<{ cli: Running; port: number; mode: unknown }> {
  const cli = startCli(['--example', '--listen', '127.0.0.1:0', '--query-log', '--workers', '2', ...args]);
  t.after(() => cli.stop());
  const sockets = await cli.waitForLog((l) => l.msg === 'worker sockets');
  const started = await cli.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('started'));
  const port = Number(/127\.0\.0\.1:(\d+)/.exec(String(started.msg))?.[1]);
  return { cli, port, mode: sockets.mode };
}

function addresses(reply: Buffer | null): string[] {
  assert.ok(reply, 'a reply');
  return (decode(reply).answers ?? []).map((a) => String((a as dnsPacket.StringAnswer).data)).sort();
}

/** Which workers answered over `transport`, from the query log (each line names its worker). */
function answeredBy(cli: Running, transport: 'udp' | 'tcp'): Set<unknown> {
  return new Set(cli.logs.filter((l) => l.msg === 'query' && l.transport === transport).map((l) => l.worker));
}

/** One UDP query from a new socket (a new source port: with reusePort, a new flow for the kernel to place). */
async function askUdp(port: number): Promise<void> {
  assert.deepEqual(addresses(await udpExchange(port, buildQuery(NAME, 'A'))), WEB, 'the web instances over UDP');
}

async function askTcp(port: number): Promise<void> {
  const { replies } = await tcpExchange(port, frame(buildQuery(NAME, 'A')), 1);
  assert.deepEqual(addresses(replies[0] ?? null), WEB, 'the web instances over TCP');
}

test('--workers 2 (auto): reusePort where Node has it, else the shared handle; the log says which; ss shows the sockets; both workers answer', async (t) => {
  const { cli, port, mode } = await start(t, []);
  assert.equal(mode, REUSEPORT ? 'reuseport' : 'shared', `the mode on node ${process.version}`);
  const workers = await workerPids(cli.child.pid!);
  assert.equal(workers.length, 2, `two workers (${workers.join()})`);
  const sockets = await udpSockets(port);
  if (REUSEPORT) {
    // The done-when of issue 17: two UDP sockets on the address, one per worker, none in the primary.
    assert.deepEqual(sockets.flat().sort((a, b) => a - b), workers, `one UDP socket per worker: ${JSON.stringify(sockets)}`);
    assert.equal(sockets.length, 2, `two UDP sockets: ${JSON.stringify(sockets)}`);
  } else {
    assert.deepEqual(sockets, [[cli.child.pid!, ...workers].sort((a, b) => a - b)], 'one UDP socket, held by the primary and both workers');
  }
  // New source ports until both workers have answered over UDP: the kernel spreads the flows
  // (reusePort); the shared socket goes to whichever worker reads first, so there only the
  // answers are checked, and TCP (handed out in turn) reaches both.
  if (REUSEPORT) {
    await eventually(async () => {
      await askUdp(port);
      assert.deepEqual(answeredBy(cli, 'udp'), new Set([1, 2]), 'both workers answered UDP queries');
    }, 30_000);
  } else {
    for (let i = 0; i < 10; i++) await askUdp(port);
  }
  for (let i = 0; i < 4; i++) await askTcp(port);
  await eventually(() => assert.deepEqual(answeredBy(cli, 'tcp'), new Set([1, 2]), 'both workers answered TCP connections'));
});

test('--worker-sockets shared: one UDP socket shared by the workers, on any Node', async (t) => {
  const { cli, port, mode } = await start(t, ['--worker-sockets', 'shared']);
  assert.equal(mode, 'shared');
  assert.equal(cli.logs.find((l) => l.msg === 'worker sockets')?.choice, 'shared');
  const workers = await workerPids(cli.child.pid!);
  assert.deepEqual(await udpSockets(port), [[cli.child.pid!, ...workers].sort((a, b) => a - b)], 'one UDP socket, held by the primary and both workers');
  for (let i = 0; i < 10; i++) await askUdp(port);
  for (let i = 0; i < 4; i++) await askTcp(port);
});

for (const choice of ['shared', 'reuseport'] as const) {
  test(`--worker-sockets ${choice}: a killed worker is replaced; every query is answered meanwhile; the new worker binds and answers`, { skip: choice === 'reuseport' && !REUSEPORT && `node ${process.version} has no dgram reusePort` }, async (t) => {
    const { cli, port, mode } = await start(t, ['--worker-sockets', choice]);
    assert.equal(mode, choice);
    const [victim, survivor] = await workerPids(cli.child.pid!);
    process.kill(victim!, 'SIGKILL');
    await cli.waitForLog((l) => l.msg === 'worker exited; starting another');
    // The victim's socket is gone (reusePort: it left the group), so no flow is lost to it.
    for (let i = 0; i < 20; i++) await askUdp(port);
    const listening = (): number => cli.logs.filter((l) => l.msg === 'listening (udp, tcp)').length;
    await cli.waitForLog((l) => l.msg === 'listening (udp, tcp)' && l.worker === 3);
    assert.equal(listening(), 3, 'two workers at start, then the replacement');
    const now = await workerPids(cli.child.pid!);
    assert.equal(now.length, 2, `two workers again (${now.join()})`);
    assert.ok(now.includes(survivor!) && !now.includes(victim!), `the survivor and a new one (${now.join()})`);
    const sockets = await udpSockets(port);
    if (choice === 'reuseport') {
      assert.deepEqual(sockets.flat().sort((a, b) => a - b), now, `the new worker bound its own socket: ${JSON.stringify(sockets)}`);
      await eventually(async () => {
        await askUdp(port);
        assert.ok(answeredBy(cli, 'udp').has(3), 'the new worker answers UDP queries');
      }, 30_000);
    } else {
      assert.deepEqual(sockets, [[cli.child.pid!, ...now].sort((a, b) => a - b)], 'still one UDP socket, the new worker holding it too');
      await eventually(async () => {
        await askTcp(port);
        assert.ok(answeredBy(cli, 'tcp').has(3), 'the new worker answers TCP connections');
      });
    }
  });
}

test('--worker-sockets reuseport on a Node without it: exit 1 with the reason', { skip: REUSEPORT && `node ${process.version} has dgram reusePort` }, async () => {
  const { code, stderr } = await runCli(['--example', '--listen', '127.0.0.1:0', '--workers', '2', '--worker-sockets', 'reuseport']);
  assert.equal(code, 1);
  assert.match(stderr, /--worker-sockets reuseport: node v20\.\S+ cannot give each worker its own UDP socket \(dgram reusePort needs Node 22\.12\+ on Linux\)/);
});

test('--workers with reusePort: a port another reusePort socket holds is refused (exit 1), not joined', { skip: !REUSEPORT && `node ${process.version} has no dgram reusePort` }, async () => {
  // Another server of the same user on the port with SO_REUSEPORT: the workers' own binds would
  // join its group and split the clients with it; the primary's plain bind refuses the port.
  const other = createSocket({ type: 'udp4', reusePort: true } as SocketOptions & { reusePort: boolean });
  other.bind(0, '127.0.0.1');
  await once(other, 'listening');
  try {
    const { code, stderr } = await runCli(['--example', '--listen', `127.0.0.1:${other.address().port}`, '--workers', '2']);
    assert.equal(code, 1);
    assert.match(stderr, /cannot listen on 127\.0\.0\.1:\d+ \(udp\): address already in use/);
  } finally {
    other.close();
  }
});

test('--worker-sockets: a bad value exits 2 naming the choices', async () => {
  const { code, stderr } = await runCli(['--example', '--workers', '2', '--worker-sockets', 'each']);
  assert.equal(code, 2);
  assert.match(stderr, /worker-sockets.*must be one of auto, shared, reuseport/);
});
