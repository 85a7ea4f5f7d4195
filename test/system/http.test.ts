/**
 * The HTTP endpoint (--http-listen) as operators use it: /metrics scraped while DNS traffic runs,
 * with exact counter deltas after a known number of queries; /health, /ready before and after the
 * first Consul sync; /status; --workers summed by the primary; bad addresses.
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { CATALOG } from '../support/catalog.js';
import { ConsulSim } from '../support/consul-sim.js';
import { dig, digEach } from '../support/dig.js';
import { deltas, get, scrape } from '../support/metrics.js';
import { runCli, startCli, type Running } from '../support/spawn.js';
import { startUpstream, type TestUpstream } from '../support/upstream.js';
import type { Status } from '../../src/http/status.js';

interface Started {
  cli: Running;
  dns: number;
  http: number;
}

/** Starts the CLI with an HTTP endpoint on a free port (stopped after `scope`); resolves once DNS listens too. */
async function start(scope: { after: TestContext['after'] }, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Started> {
  const cli = startCli(['--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', ...args], env);
  scope.after(() => cli.stop());
  const http = await cli.waitForLog((l) => String(l.msg).startsWith('listening (http'));
  const dns = await cli.waitForLog((l) => l.msg === 'listening (udp, tcp)');
  return { cli, dns: portOf(dns), http: portOf(http) };
}

const portOf = (line: Record<string, unknown>): number => Number(String(line.address).split(':').pop());

describe('one process, a catalog file and a forwarding upstream', () => {
  let dir: string;
  let upstream: TestUpstream;
  let s: Started;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'svcdns-http-'));
    await writeFile(join(dir, 'catalog.yaml'), CATALOG);
    upstream = await startUpstream({ records: [{ name: 'www.example.test', type: 'A', ttl: 300, data: '192.0.2.10' }] });
    s = await start({ after: (fn) => void stops.push(fn as () => Promise<unknown>) }, ['--catalog', join(dir, 'catalog.yaml'), '--upstream', upstream.address]);
  });
  const stops: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const stop of stops) await stop();
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('metrics: exact deltas after a known number of queries, cache hits included', async () => {
    const keys = [
      'svcdns_dns_requests_total{proto="udp",type="A"}',
      'svcdns_dns_requests_total{proto="udp",type="SRV"}',
      'svcdns_dns_requests_total{proto="tcp",type="A"}',
      'svcdns_dns_requests_total{proto="udp",type="other"}',
      'svcdns_dns_responses_total{proto="udp",rcode="NOERROR"}',
      'svcdns_dns_responses_total{proto="udp",rcode="NXDOMAIN"}',
      'svcdns_dns_responses_total{proto="tcp",rcode="NOERROR"}',
      'svcdns_dns_request_duration_seconds_count{proto="udp"}',
      'svcdns_dns_request_duration_seconds_count{proto="tcp"}',
      'svcdns_dns_request_duration_seconds_bucket{proto="udp",le="+Inf"}',
      'svcdns_reply_cache_hits_total',
      'svcdns_reply_cache_misses_total',
      'svcdns_forward_cache_hits_total',
      'svcdns_forward_cache_misses_total',
      `svcdns_forward_requests_total{upstream="${upstream.address}"}`,
      `svcdns_forward_responses_total{upstream="${upstream.address}",rcode="NOERROR"}`,
      `svcdns_forward_request_duration_seconds_count{upstream="${upstream.address}"}`,
    ];
    const first = await scrape(s.http);
    assert.equal(first.get(`svcdns_upstream_healthy{upstream="${upstream.address}"}`), 1);
    assert.equal(first.get('svcdns_catalog_synced'), 1);
    assert.equal(first.get('svcdns_catalog_services'), 9, 'web, db, consul, rr, cache, down, v6only, dual in dc1; web in dc2');
    assert.equal(first.get('svcdns_catalog_instances'), 15);
    assert.ok(first.has('process_cpu_seconds_total') && first.has('nodejs_heap_size_used_bytes'), 'the standard process and Node.js metrics');
    assert.equal([...first.keys()].filter((k) => k.startsWith('svcdns_build_info{')).length, 1);

    // 4 x web A over UDP without a cookie (keyable by the reply cache), 3 x NXDOMAIN, 2 x SRV,
    // 2 x A over TCP, 1 x type 99 (no name: counted as `other`), and a forwarded name twice with
    // dig's cookie (the reply cache cannot key it: the forward cache answers the second).
    const udp = await digEach(s.dns, [
      ['web.service.consul', 'A'],
      ['web.service.consul', 'A'],
      ['web.service.consul', 'A'],
      ['web.service.consul', 'A'],
      ['nope.service.consul', 'A'],
      ['nope.service.consul', 'A'],
      ['nope.service.consul', 'A'],
      ['db.service.consul', 'SRV'],
      ['db.service.consul', 'SRV'],
      ['web.service.consul', 'TYPE99'],
    ], ['+nocookie']);
    assert.deepEqual(udp.map((r) => r.status), ['NOERROR', 'NOERROR', 'NOERROR', 'NOERROR', 'NXDOMAIN', 'NXDOMAIN', 'NXDOMAIN', 'NOERROR', 'NOERROR', 'NOERROR']);
    const tcp = await digEach(s.dns, [['web.service.consul', 'A'], ['db.service.consul', 'A']], ['+tcp']);
    assert.deepEqual(tcp.map((r) => r.status), ['NOERROR', 'NOERROR']);
    const forwarded = await digEach(s.dns, [['www.example.test', 'A'], ['www.example.test', 'A']], ['+cookie']);
    assert.deepEqual(forwarded.map((r) => r.answer[0]?.split(/\s+/).pop()), ['192.0.2.10', '192.0.2.10']);

    const second = await scrape(s.http);
    assert.deepEqual(deltas(first, second, keys), {
      'svcdns_dns_requests_total{proto="udp",type="A"}': 9,
      'svcdns_dns_requests_total{proto="udp",type="SRV"}': 2,
      'svcdns_dns_requests_total{proto="tcp",type="A"}': 2,
      'svcdns_dns_requests_total{proto="udp",type="other"}': 1,
      'svcdns_dns_responses_total{proto="udp",rcode="NOERROR"}': 9,
      'svcdns_dns_responses_total{proto="udp",rcode="NXDOMAIN"}': 3,
      'svcdns_dns_responses_total{proto="tcp",rcode="NOERROR"}': 2,
      'svcdns_dns_request_duration_seconds_count{proto="udp"}': 12,
      'svcdns_dns_request_duration_seconds_count{proto="tcp"}': 2,
      'svcdns_dns_request_duration_seconds_bucket{proto="udp",le="+Inf"}': 12,
      // Every query passes the reply cache first: hits + misses is every query. Hits: web A has
      // two instances, so two rotations to encode (2 misses) before 2 hits; NXDOMAIN 1 miss, 2 hits.
      'svcdns_reply_cache_hits_total': 2 + 2,
      'svcdns_reply_cache_misses_total': 14 - 4,
      'svcdns_forward_cache_hits_total': 1,
      'svcdns_forward_cache_misses_total': 1,
      [`svcdns_forward_requests_total{upstream="${upstream.address}"}`]: 1,
      [`svcdns_forward_responses_total{upstream="${upstream.address}",rcode="NOERROR"}`]: 1,
      [`svcdns_forward_request_duration_seconds_count{upstream="${upstream.address}"}`]: 1,
    });
  });

  test('scrapes while DNS traffic runs: every scrape answers, counters only grow', async () => {
    const name = 'svcdns_dns_requests_total{proto="udp",type="A"}';
    const traffic = digEach(s.dns, Array.from({ length: 200 }, () => ['web.service.consul', 'A']), ['+nocookie']);
    const seen: number[] = [];
    let done = false;
    void traffic.finally(() => (done = true));
    while (!done && seen.length < 500) seen.push((await scrape(s.http)).get(name) ?? 0);
    const results = await traffic;
    assert.equal(results.filter((r) => r.status === 'NOERROR').length, 200);
    seen.push((await scrape(s.http)).get(name)!);
    assert.ok(seen.length >= 2);
    assert.deepEqual(seen, [...seen].sort((a, b) => a - b), 'monotonic');
    assert.equal(seen.at(-1)! - seen[0]! <= 200, true);
  });

  test('/health, /ready, /status, and what is not there', async () => {
    assert.deepEqual(await get(s.http, '/health'), { status: 200, type: 'text/plain; charset=utf-8', body: 'ok\n' });
    assert.deepEqual(await get(s.http, '/ready'), { status: 200, type: 'text/plain; charset=utf-8', body: `ready: serving the catalog from file ${join(dir, 'catalog.yaml')}\n` });
    assert.equal((await get(s.http, '/ready', 'HEAD')).body, '');
    assert.equal((await get(s.http, '/nope')).status, 404);
    assert.equal((await get(s.http, '/metrics', 'POST')).status, 405);

    const reply = await get(s.http, '/status');
    assert.equal(reply.type, 'application/json; charset=utf-8');
    const status = JSON.parse(reply.body) as Status;
    assert.equal(status.ready, true);
    assert.equal(status.workers, 1);
    assert.deepEqual(status.source, { kind: 'file', description: `file ${join(dir, 'catalog.yaml')}`, synced: true, stale: null, failing: [] });
    assert.equal(status.catalog.services, 9);
    assert.equal(status.catalog.instances, 15);
    assert.equal(status.consul, null);
    assert.equal(status.upstreams.length, 1);
    assert.equal(status.upstreams[0]!.upstream, upstream.address);
    assert.equal(status.upstreams[0]!.healthy, true);
    assert.equal(typeof status.upstreams[0]!.recentLatencyMs, 'number');
    assert.equal(status.caches.forward.hits, 1);
    assert.equal(status.caches.forward.hitRatio, 0.5);
    assert.ok(status.caches.reply.hits >= 4);
    assert.ok(status.queries.total >= 214);
    assert.match(status.version, /^\d+\.\d+\.\d+/);
  });

  test('SIGUSR1 logs the status summary and opens no debugger', async () => {
    s.cli.child.kill('SIGUSR1');
    const line = await s.cli.waitForLog((l) => l.msg === 'status');
    assert.equal(line.ready, true);
    assert.equal(line.source, 'file');
    assert.equal(line.services, 9);
    assert.equal(line.upstreamsHealthy, '1/1');
    assert.ok(Number(line.queries) >= 214);
    assert.equal(s.cli.logs.filter((l) => typeof l.raw === 'string' && l.raw.includes('Debugger listening')).length, 0);
    assert.equal((await dig(s.dns, ['web.service.consul', 'A'])).status, 'NOERROR', 'still serving');
  });
});

test('/ready: 503 with the reason until the first Consul sync, 200 after it', async (t) => {
  const sim = new ConsulSim();
  await sim.start();
  t.after(() => sim.stop());
  sim.registerNode('dc1', { Node: 'n1', Address: '10.0.0.1' });
  sim.registerService('dc1', 'n1', { ID: 'web1', Service: 'web', Port: 80 });
  await sim.fault('error500');
  const s = await start(t, ['--consul', sim.url]);
  await s.cli.waitForLog((l) => l.msg === 'consul failing');
  const notYet = await get(s.http, '/ready');
  assert.deepEqual(notYet, { status: 503, type: 'text/plain; charset=utf-8', body: `waiting for the first catalog from consul ${sim.url}\n` });
  assert.equal((await get(s.http, '/health')).status, 200, 'alive all the same');
  assert.equal((await scrape(s.http)).get('svcdns_catalog_synced'), 0);
  const status = JSON.parse((await get(s.http, '/status')).body) as Status;
  assert.equal(status.source.synced, false);
  assert.deepEqual(
    status.source.failing.map((f) => [f.key, f.problem]),
    [
      [`consul ${sim.url}`, 'down'],
      ['consul', 'consul down'],
    ],
    'Consul is down (said once); its watches wait on it (not said again)',
  );
  assert.equal(status.consul?.up, false);
  assert.equal((await scrape(s.http)).get('svcdns_consul_up'), 0);

  await sim.fault('none');
  await s.cli.waitForLog((l) => l.msg === 'consul catalog synced; ready', 20_000);
  const ready = await get(s.http, '/ready');
  assert.equal(ready.status, 200, ready.body);
  const after = await scrape(s.http);
  assert.equal(after.get('svcdns_catalog_synced'), 1);
  assert.equal(after.get('svcdns_consul_up'), 1);
  assert.ok((after.get('svcdns_consul_watch_errors_total') ?? 0) >= 1);
  assert.ok((after.get('svcdns_consul_watches') ?? 0) >= 2, 'at least the services and nodes watches');
  assert.deepEqual((await dig(s.dns, ['web.service.consul', 'A', '+short'])).raw.trim().split('\n').pop(), '10.0.0.1');
});

test('/ready turns 503 the moment SIGTERM starts the lameduck; DNS and /health keep answering; exit 0', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'svcdns-http-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'catalog.yaml'), CATALOG);
  const s = await start(t, ['--catalog', join(dir, 'catalog.yaml'), '--lameduck', '3s']);
  await s.cli.waitForLog((l) => String(l.msg).startsWith('started: serving'));
  assert.equal((await get(s.http, '/ready')).status, 200);
  const exited = new Promise<number | null>((resolve) => s.cli.child.once('exit', (code) => resolve(code)));
  s.cli.child.kill('SIGTERM');
  await s.cli.waitForLog((l) => l.msg === 'lameduck: still answering DNS, no longer ready');
  assert.deepEqual(await get(s.http, '/ready'), { status: 503, type: 'text/plain; charset=utf-8', body: 'lameduck: stopping, still answering DNS for now\n' });
  assert.equal((await get(s.http, '/health')).status, 200);
  assert.equal((await dig(s.dns, ['web.service.consul', 'A'])).status, 'NOERROR');
  assert.equal(await exited, 0);
});

test('--workers 2: one scrape is the sum over both workers', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'svcdns-http-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'catalog.yaml'), CATALOG);
  const s = await start(t, ['--catalog', join(dir, 'catalog.yaml'), '--workers', '2']);
  await s.cli.waitForLog((l) => String(l.msg).startsWith('started: serving'));
  const name = 'svcdns_dns_requests_total{proto="udp",type="SRV"}';
  const before = await scrape(s.http);
  // 40 queries, each from its own dig socket (a new source port): the kernel spreads them over both workers.
  const results = await Promise.all(Array.from({ length: 40 }, () => dig(s.dns, ['web.service.consul', 'SRV', '+nocookie'])));
  assert.equal(results.filter((r) => r.status === 'NOERROR').length, 40);
  const after = await scrape(s.http);
  assert.equal((after.get(name) ?? 0) - (before.get(name) ?? 0), 40);
  assert.equal(after.get('svcdns_catalog_services'), 9, 'the same catalog in every process: not added up');
  const status = JSON.parse((await get(s.http, '/status')).body) as Status;
  assert.equal(status.workers, 2);
  assert.equal(status.ready, true);
});

describe('bad --http-listen', () => {
  test('not an address: exit 2, one line', async () => {
    const r = await runCli(['--catalog', '/dev/null', '--listen', '127.0.0.1:0', '--http-listen', 'localhost:9153']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^svcdns: error: http-listen: "localhost:9153" is not HOST:PORT with an IP address/m);
  });

  test('a port in use: exit 1 naming it', async (t) => {
    const taken = createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => taken.once('listening', resolve));
    t.after(() => taken.close());
    const port = (taken.address() as { port: number }).port;
    const dir = await mkdtemp(join(tmpdir(), 'svcdns-http-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'catalog.yaml'), CATALOG);
    const r = await runCli(['--catalog', join(dir, 'catalog.yaml'), '--listen', '127.0.0.1:0', '--http-listen', `127.0.0.1:${port}`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^svcdns: error: cannot listen on 127\\.0\\.0\\.1:${port} \\(http\\): address already in use$`, 'm'));
  });
});
