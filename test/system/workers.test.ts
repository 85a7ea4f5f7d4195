/**
 * --workers N, as a user runs it: the CLI starts a primary and N worker processes sharing the
 * listen sockets; the primary runs the one catalog source (file or Consul) and feeds every worker.
 * Which worker answered is read from the query log (each line names its worker).
 */

import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type * as dnsPacket from 'dns-packet';
import { CATALOG } from '../support/catalog.js';
import { buildQuery, decode, frame, tcpExchange, udpExchange } from '../support/client.js';
import { ConsulSim } from '../support/consul-sim.js';
import { dig } from '../support/dig.js';
import { eventually } from '../support/eventually.js';
import { runCli, startCli, type Running } from '../support/spawn.js';
import { workerPids } from '../support/workers.js';

async function catalogFile(t: TestContext, text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'svcdns-workers-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'catalog.yaml');
  await writeFile(path, text);
  return path;
}

async function start(t: TestContext, args: string[]): Promise<{ cli: Running; port: number }> {
  const cli = startCli(['--listen', '127.0.0.1:0', '--query-log', ...args]);
  t.after(() => cli.stop());
  await cli.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('started'));
  const listening = await cli.waitForLog((l) => l.msg === 'listening (udp, tcp)');
  return { cli, port: Number(String(listening.address).split(':').pop()) };
}


function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function address(reply: Buffer): string[] {
  return (decode(reply).answers ?? []).map((a) => String((a as dnsPacket.StringAnswer).data)).sort();
}

/** One query per TCP connection: node:cluster hands connections to the workers in turn. */
async function overTcp(port: number, name: string, connections: number): Promise<string[][]> {
  const out: string[][] = [];
  for (let i = 0; i < connections; i++) {
    const { replies } = await tcpExchange(port, frame(buildQuery(name, 'A')), 1);
    out.push(address(replies[0]!));
  }
  return out;
}

function workersSeen(cli: Running): Set<unknown> {
  return new Set(cli.logs.filter((l) => l.msg === 'query').map((l) => l.worker));
}

test('--workers 2: both processes answer, over UDP and TCP, from one catalog file; a change reaches both; SIGTERM stops them all', async (t) => {
  const path = await catalogFile(t, CATALOG);
  const { cli, port } = await start(t, ['--workers', '2', '--catalog', path]);
  const workers = await workerPids(cli.child.pid!);
  assert.equal(workers.length, 2, `two worker processes (${workers.join()})`);

  assert.deepEqual(await overTcp(port, 'cache.service.consul', 6), Array.from({ length: 6 }, () => ['10.0.1.5']));
  assert.deepEqual(address((await udpExchange(port, buildQuery('cache.service.consul', 'A')))!), ['10.0.1.5']);
  await eventually(() => assert.deepEqual(workersSeen(cli), new Set([1, 2]), 'queries answered by both workers'));

  await writeFile(path, CATALOG.replace('address: 10.0.1.5', 'address: 10.0.1.6'));
  await eventually(async () => {
    assert.deepEqual(await overTcp(port, 'cache.service.consul', 4), Array.from({ length: 4 }, () => ['10.0.1.6']), 'every worker has the new catalog');
  });
  for (let i = 0; i < 10; i++) assert.deepEqual(address((await udpExchange(port, buildQuery('cache.service.consul', 'A')))!), ['10.0.1.6']);

  assert.equal(await cli.stop(), 0);
  await eventually(() => assert.deepEqual(workers.filter(alive), [], 'no worker left running'));
});

test('--workers: a worker that dies is replaced, and the others answer meanwhile', async (t) => {
  const path = await catalogFile(t, CATALOG);
  const { cli, port } = await start(t, ['--workers', '2', '--catalog', path]);
  const [victim, survivor] = await workerPids(cli.child.pid!);
  process.kill(victim!, 'SIGKILL');
  await cli.waitForLog((l) => l.msg === 'worker exited; starting another');
  for (let i = 0; i < 5; i++) assert.deepEqual(address((await udpExchange(port, buildQuery('cache.service.consul', 'A')))!), ['10.0.1.5']);
  await eventually(async () => {
    const now = await workerPids(cli.child.pid!);
    assert.equal(now.length, 2, `two workers again (${now.join()})`);
    assert.ok(now.includes(survivor!) && !now.includes(victim!), 'the survivor and a new one');
  }, 10_000);
  assert.deepEqual(await overTcp(port, 'cache.service.consul', 4), Array.from({ length: 4 }, () => ['10.0.1.5']));
  const stop = await cli.stop();
  assert.equal(stop, 0);
});

test('--workers 2 with Consul: one set of watches in the primary feeds both workers', async (t) => {
  const sim = new ConsulSim();
  await sim.start();
  t.after(() => sim.stop());
  sim.registerNode('dc1', { Node: 'a', Address: '10.30.0.1' });
  sim.registerNode('dc1', { Node: 'b', Address: '10.30.0.2' });
  sim.registerService('dc1', 'a', { ID: 'web-a', Service: 'web', Port: 80 });
  sim.registerService('dc1', 'b', { ID: 'web-b', Service: 'web', Port: 80 });
  const { cli, port } = await start(t, ['--workers', '2', '--consul', sim.url, '--watch', 'all']);
  await cli.waitForLog((l) => l.msg === 'consul catalog synced; ready');
  assert.deepEqual(await overTcp(port, 'web.service.consul', 4), Array.from({ length: 4 }, () => ['10.30.0.1', '10.30.0.2']));

  const first = (path: string) => sim.requests.filter((r) => r.path === path && r.query.index === undefined).length;
  assert.equal(first('/v1/catalog/services'), 1, 'one service list watch, not one per worker');
  assert.equal(first('/v1/health/service/web'), 1, 'one health watch for web');

  sim.setCheck('dc1', 'a', { CheckID: 'web-a-check', ServiceID: 'web-a', Status: 'critical' });
  await eventually(async () => {
    assert.deepEqual(await overTcp(port, 'web.service.consul', 4), Array.from({ length: 4 }, () => ['10.30.0.2']), 'both workers see the change');
  });
});

test('--consul-token on the command line: a warning that names the safer ways (never the token); the workers never get it', async (t) => {
  const sim = new ConsulSim({ aclTokens: ['s3cret-token-value'] });
  await sim.start();
  t.after(() => sim.stop());
  sim.registerNode('dc1', { Node: 'a', Address: '10.30.0.1' });
  sim.registerService('dc1', 'a', { ID: 'web-a', Service: 'web', Port: 80 });
  const { cli, port } = await start(t, ['--workers', '2', '--consul', sim.url, '--consul-token', 's3cret-token-value', '--watch', 'all']);
  await cli.waitForLog((l) => l.msg === 'consul catalog synced; ready');
  assert.deepEqual(await overTcp(port, 'web.service.consul', 2), [['10.30.0.1'], ['10.30.0.1']], 'the primary read Consul with the token');
  const warning = cli.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('--consul-token on the command line'));
  assert.equal(warning.length, 1, 'warned once, by the primary');
  assert.match(String(warning[0]!.msg), /--consul-token-file or CONSUL_HTTP_TOKEN/);
  assert.ok(!JSON.stringify(cli.logs).includes('s3cret-token-value'), 'the token is in no log line');
  const workers = await workerPids(cli.child.pid!);
  assert.equal(workers.length, 2);
  for (const pid of workers) {
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    assert.ok(cmdline.includes('--consul'), `worker ${pid} has the other flags`);
    assert.ok(!cmdline.some((a) => a.includes('s3cret-token-value') || a.startsWith('--consul-token')), `worker ${pid}: ${cmdline.join(' ')}`);
  }
});

test('--workers: a port that cannot be bound stops the whole server with status 1 and the reason', async () => {
  const taken = createSocket('udp4');
  taken.bind(0, '127.0.0.1');
  await once(taken, 'listening');
  try {
    const { code, stderr } = await runCli(['--example', '--listen', `127.0.0.1:${taken.address().port}`, '--workers', '2']);
    assert.equal(code, 1);
    assert.match(stderr, /address already in use/);
  } finally {
    taken.close();
  }
});

test('--workers 2 with Consul on demand: a worker’s first question for a service is fetched by the primary and answered', async (t) => {
  const sim = new ConsulSim();
  await sim.start();
  t.after(() => sim.stop());
  sim.registerNode('dc1', { Node: 'a', Address: '10.30.0.1' });
  sim.registerService('dc1', 'a', { ID: 'api-a', Service: 'api', Port: 80 });
  const { cli, port } = await start(t, ['--workers', '2', '--consul', sim.url, '--watch', 'on-demand']);
  await cli.waitForLog((l) => l.msg === 'consul catalog synced; ready');
  assert.equal(sim.requests.filter((r) => r.path === '/v1/health/service/api').length, 0, 'not fetched before it is asked for');
  assert.deepEqual(await overTcp(port, 'api.service.consul', 4), Array.from({ length: 4 }, () => ['10.30.0.1']));
  assert.equal(sim.requests.filter((r) => r.path === '/v1/health/service/api' && r.query.index === undefined).length, 1, 'fetched once, for both workers');
});

test('--workers 2: prepared queries, executed by the primary for Consul, from the catalog for a file', async (t) => {
  const sim = new ConsulSim();
  await sim.start();
  t.after(() => sim.stop());
  sim.registerNode('dc1', { Node: 'a', Address: '10.30.0.1' });
  sim.registerService('dc1', 'a', { ID: 'api-a', Service: 'api', Port: 80 });
  const created = await fetch(`${sim.url}/v1/query`, { method: 'POST', body: JSON.stringify({ Name: 'api-q', Service: { Service: 'api' }, DNS: { TTL: '30s' } }) });
  assert.equal(created.status, 200);
  const { cli, port } = await start(t, ['--workers', '2', '--consul', sim.url]);
  await cli.waitForLog((l) => l.msg === 'consul catalog synced; ready');
  assert.deepEqual(await overTcp(port, 'api-q.query.consul', 4), Array.from({ length: 4 }, () => ['10.30.0.1']));
  const nope = await udpExchange(port, buildQuery('nope.query.consul', 'A'));
  assert.equal(nope && nope[3]! & 0xf, 3, 'NXDOMAIN');
  assert.equal(workersSeen(cli).size, 2, 'both workers answered');
  // The primary's cache: one execution (its TTL is 30 s) for both workers' questions.
  assert.equal(sim.requests.filter((r) => r.path === '/v1/query/api-q/execute').length, 1, 'executed once');
  assert.equal(sim.requests.find((r) => r.path === '/v1/query/api-q/execute')?.forwardedFor, '127.0.0.1', "the DNS client's address");

  const file = await catalogFile(t, 'nodes: [{name: n, address: 10.40.0.1, services: [{name: web, port: 80}]}]\nqueries: [{name: web-q, service: web}]\n');
  const second = await start(t, ['--workers', '2', '--catalog', file]);
  assert.deepEqual(await overTcp(second.port, 'web-q.query.consul', 4), Array.from({ length: 4 }, () => ['10.40.0.1']));
  const none = await udpExchange(second.port, buildQuery('nope.query.consul', 'A'));
  assert.equal(none && none[3]! & 0xf, 3, 'NXDOMAIN');
});

test('--workers: a Near: _ip query is executed and kept per client address in the workers too', async (t) => {
  const sim = new ConsulSim();
  await sim.start();
  t.after(() => sim.stop());
  sim.registerNode('dc1', { Node: 'a', Address: '10.30.0.1' });
  sim.registerService('dc1', 'a', { ID: 'api-a', Service: 'api', Port: 80 });
  const created = await fetch(`${sim.url}/v1/query`, { method: 'POST', body: JSON.stringify({ Name: 'near-q', Service: { Service: 'api', Near: '_ip' }, DNS: { TTL: '30s' } }) });
  assert.equal(created.status, 200);
  const { cli, port } = await start(t, ['--workers', '2', '--consul', sim.url]);
  await cli.waitForLog((l) => l.msg === 'consul catalog synced; ready');
  // Over TCP the workers take connections in turn: each worker gets a question from 127.0.0.1,
  // then one from 127.0.0.2 while it still keeps the first client's outcome (1 s).
  for (const from of ['127.0.0.1', '127.0.0.1', '127.0.0.2', '127.0.0.2']) {
    assert.deepEqual((await dig(port, ['+tcp', '-b', from, 'near-q.query.consul', 'A'])).answer, ['near-q.query.consul. 30 IN A 10.30.0.1'], from);
  }
  const answered = cli.logs.filter((l) => l.msg === 'query').map((l) => `${String(l.worker)} ${String(l.client)}`);
  assert.equal(new Set(answered).size, 4, `each worker answered each client: ${answered.join(', ')}`);
  const sources = sim.requests.filter((r) => r.path === '/v1/query/near-q/execute').map((r) => r.forwardedFor);
  assert.deepEqual(sources.sort(), ['127.0.0.1', '127.0.0.2'], "each client's own execution, with its address");
});
