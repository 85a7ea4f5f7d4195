/**
 * Prepared queries (`NAME.query[.DC].consul`) against the Consul simulator, seen through dig: the
 * query's own TTL, failover to another datacenter (SRV targets name it), unknown names, the client's
 * address passed for `Near: _ip` (and results kept per client for such queries, in Consul's
 * order), executions reused so Consul is not asked once per question, and
 * Consul failing under a cached query (served for --query-max-stale, then SERVFAIL).
 */

import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { after, before, describe, test } from 'node:test';
import { MAX_IN_FLIGHT, NEW_CLIENTS_PER_SECOND, NEW_NAMES_PER_SECOND } from '../../src/catalog/consul/queries.js';
import { ConsulSim, type SimRequest } from '../support/consul-sim.js';
import { buildQuery, udpExchange } from '../support/client.js';
import { dig, digEach } from '../support/dig.js';
import { eventually } from '../support/eventually.js';
import { startServer, type TestServer } from '../support/server.js';

const sorted = (lines: readonly string[]): string[] => [...lines].sort();

/** dc1: web on n1 (v1) and n2 (v2); api only critical in dc1, passing in dc2. */
function seed(sim: ConsulSim): void {
  sim.registerNode('dc1', { Node: 'n1', Address: '10.0.0.1' });
  sim.registerNode('dc1', { Node: 'n2', Address: '10.0.0.2' });
  sim.registerService('dc1', 'n1', { ID: 'web1', Service: 'web', Tags: ['v1'], Port: 80 });
  sim.registerService('dc1', 'n2', { ID: 'web2', Service: 'web', Tags: ['v2'], Port: 8080, Address: '10.0.1.2' });
  sim.registerService('dc1', 'n1', { ID: 'api1', Service: 'api', Port: 9000 });
  sim.setCheck('dc1', 'n1', { CheckID: 'api-check', ServiceID: 'api1', Status: 'critical' });
  sim.registerNode('dc2', { Node: 'm1', Address: '10.2.0.1' });
  sim.registerService('dc2', 'm1', { ID: 'api-dc2', Service: 'api', Port: 9002 });
}

/** Creates a prepared query over the simulator's HTTP API (POST /v1/query, Consul's JSON). */
async function createQuery(sim: ConsulSim, body: Record<string, unknown>, dc = 'dc1'): Promise<void> {
  const res = await fetch(`${sim.url}/v1/query?dc=${dc}`, { method: 'POST', body: JSON.stringify(body) });
  assert.equal(res.status, 200, await res.clone().text());
  assert.match(((await res.json()) as { ID: string }).ID, /^[0-9a-f-]{36}$/);
}

const isExecute = (name: string) => (r: SimRequest): boolean => r.path === `/v1/query/${name}/execute`;

describe('prepared queries from Consul', () => {
  let sim: ConsulSim;
  let s: TestServer;

  before(async () => {
    sim = new ConsulSim({ datacenters: ['dc1', 'dc2'] });
    await sim.start();
    seed(sim);
    await createQuery(sim, { Name: 'web-v2', Service: { Service: 'web', Tags: ['v2'] }, DNS: { TTL: '7s' } });
    await createQuery(sim, { Name: 'web-all', Service: { Service: 'web' } });
    await createQuery(sim, { Name: 'api-anywhere', Service: { Service: 'api', Failover: { Datacenters: ['dc2'] } }, DNS: { TTL: '3s' } });
    await createQuery(sim, { Name: 'web-cached', Service: { Service: 'web', Tags: ['v1', '!v2'] } });
    s = await startServer({ flags: { consul: sim.url, 'consul-wait': '2s', 'query-max-stale': '5s' } });
    await eventually(async () => assert.equal((await dig(s.port, ['web.service.consul'])).status, 'NOERROR', 'catalog synced'));
  });
  after(async () => {
    await s.close();
    await sim.stop();
  });

  test("the query's own TTL, A and SRV with the targets' addresses", async () => {
    const a = await dig(s.port, ['web-v2.query.consul', 'A']);
    assert.equal(a.status, 'NOERROR');
    assert.ok(a.flags.includes('aa'), 'authoritative');
    assert.deepEqual(a.answer, ['web-v2.query.consul. 7 IN A 10.0.1.2']);
    const srv = await dig(s.port, ['web-v2.query.consul', 'SRV']);
    assert.deepEqual(srv.answer, ['web-v2.query.consul. 7 IN SRV 1 1 8080 0a000102.addr.dc1.consul.']);
    assert.deepEqual(srv.additional, ['0a000102.addr.dc1.consul. 7 IN A 10.0.1.2']);
    // The RFC 2782 form names the same query.
    assert.deepEqual((await dig(s.port, ['_web-v2._tcp.query.consul', 'SRV'])).answer, ['_web-v2._tcp.query.consul. 7 IN SRV 1 1 8080 0a000102.addr.dc1.consul.']);
    // No AAAA for an IPv4-only result: NODATA with the SOA.
    const aaaa = await dig(s.port, ['web-v2.query.consul', 'AAAA']);
    assert.equal(aaaa.status, 'NOERROR');
    assert.deepEqual(aaaa.answer, []);
    assert.equal(aaaa.authority.length, 1);
  });

  test('without a DNS TTL the service TTL applies (0 by default)', async () => {
    const a = await dig(s.port, ['web-all.query.consul', 'A']);
    assert.deepEqual(sorted(a.answer), ['web-all.query.consul. 0 IN A 10.0.0.1', 'web-all.query.consul. 0 IN A 10.0.1.2']);
  });

  test('failover to another datacenter: its instances, SRV targets in that datacenter', async () => {
    const srv = await dig(s.port, ['api-anywhere.query.consul', 'SRV']);
    assert.equal(srv.status, 'NOERROR');
    assert.deepEqual(srv.answer, ['api-anywhere.query.consul. 3 IN SRV 1 1 9002 m1.node.dc2.consul.']);
    assert.deepEqual(srv.additional, ['m1.node.dc2.consul. 3 IN A 10.2.0.1']);
    assert.deepEqual((await dig(s.port, ['api-anywhere.query.consul', 'A'])).answer, ['api-anywhere.query.consul. 3 IN A 10.2.0.1']);
  });

  test('unknown query, unknown datacenter: NXDOMAIN with the SOA', async () => {
    for (const name of ['nope.query.consul', 'web-v2.query.dc9.consul']) {
      const r = await dig(s.port, [name, 'A']);
      assert.equal(r.status, 'NXDOMAIN', name);
      assert.deepEqual(r.answer, [], name);
      assert.match(r.authority[0] ?? '', /^consul\. 0 IN SOA ns\.consul\. hostmaster\.consul\. /, name);
    }
  });

  test('a query of another datacenter is executed there', async () => {
    // Defined in dc2 only: `.query.dc2` executes it in dc2, the local name does not exist.
    await createQuery(sim, { Name: 'dc2-api', Service: { Service: 'api' } }, 'dc2');
    assert.deepEqual((await dig(s.port, ['dc2-api.query.dc2.consul', 'A'])).answer, ['dc2-api.query.dc2.consul. 0 IN A 10.2.0.1']);
    assert.equal((await dig(s.port, ['dc2-api.query.consul', 'A'])).status, 'NXDOMAIN');
    const executed = await sim.until((r) => isExecute('dc2-api')(r) && r.query.dc === 'dc2', 'dc2-api executed in dc2');
    assert.equal(executed.status, 200);
  });

  test("the client's address goes to Consul as the query's source (Near: _ip)", async () => {
    await dig(s.port, ['web-v2.query.consul', 'A']);
    const executed = await sim.until(isExecute('web-v2'), 'web-v2 executed');
    assert.equal(executed.forwardedFor, '127.0.0.1');
  });

  test('Near: _ip: executed per client address (each its own source), answers keep Consul\'s order', async () => {
    await createQuery(sim, { Name: 'web-near', Service: { Service: 'web', Near: '_ip' }, DNS: { TTL: '30s' } });
    const expected = ['web-near.query.consul. 30 IN A 10.0.0.1', 'web-near.query.consul. 30 IN A 10.0.1.2'];
    // Consul's order (the sim's: n1, n2) every time: a sorted result is not rotated.
    for (let i = 0; i < 3; i++) assert.deepEqual((await dig(s.port, ['-b', '127.0.0.1', 'web-near.query.consul', 'A'])).answer, expected);
    assert.deepEqual((await dig(s.port, ['-b', '127.0.0.2', 'web-near.query.consul', 'A'])).answer, expected);
    const sources = sim.requests.filter(isExecute('web-near')).map((r) => r.forwardedFor);
    assert.deepEqual(sources, ['127.0.0.1', '127.0.0.2'], 'one execution per client address, with that address');
    // Without Near the result is shared by every client and rotated like a `.service` answer.
    const before = sim.requests.filter(isExecute('web-all')).length;
    const first = (await dig(s.port, ['-b', '127.0.0.2', 'web-all.query.consul', 'A'])).answer;
    const second = (await dig(s.port, ['-b', '127.0.0.3', 'web-all.query.consul', 'A'])).answer;
    assert.deepEqual(sorted(first), sorted(second));
    assert.notDeepEqual(first, second, 'rotated');
    assert.ok(sim.requests.filter(isExecute('web-all')).length - before <= 1, 'shared across clients');
  });

  test('a result whose instance address is a hostname: the CNAME, as a `.service` answer gives it', async () => {
    sim.registerNode('dc1', { Node: 'n3', Address: '10.0.0.3' });
    sim.registerService('dc1', 'n3', { ID: 'ext1', Service: 'ext', Address: 'db.example.net', Port: 5432 });
    await createQuery(sim, { Name: 'ext-q', Service: { Service: 'ext' }, DNS: { TTL: '4s' } });
    // No upstream here: the target does not resolve, so the CNAME alone (NOERROR), not NXDOMAIN.
    const a = await dig(s.port, ['ext-q.query.consul', 'A']);
    assert.equal(a.status, 'NOERROR');
    assert.deepEqual(a.answer, ['ext-q.query.consul. 4 IN CNAME db.example.net.']);
    assert.deepEqual((await dig(s.port, ['ext-q.query.consul', 'SRV'])).answer, ['ext-q.query.consul. 4 IN SRV 1 1 5432 db.example.net.']);
  });

  test('many questions for one name cost Consul about one execution per freshness window', async () => {
    const first = sim.requests.length;
    const started = Date.now();
    const questions = Array.from({ length: 300 }, () => ['web-cached.query.consul', 'A']);
    const results = await digEach(s.port, questions);
    const elapsed = Date.now() - started;
    assert.ok(results.every((r) => r.status === 'NOERROR' && r.answer[0] === 'web-cached.query.consul. 0 IN A 10.0.0.1'), 'every question answered');
    const executions = sim.requests.slice(first).filter(isExecute('web-cached')).length;
    // Without a DNS TTL an execution is reused for 2 s: at most one per 2 s begun, plus the first.
    assert.ok(executions >= 1 && executions <= Math.ceil(elapsed / 2000) + 1, `${executions} executions for 300 questions in ${elapsed} ms`);
  });

  test('a flood of random names: Consul asked for a bounded number per second, at most a few at once; real queries still answer', async () => {
    const first = sim.requests.length;
    const resolver = new Resolver({ timeout: 5000, tries: 1 });
    resolver.setServers([`127.0.0.1:${s.port}`]);
    const started = Date.now();
    const codes = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        resolver.resolve4(`random-${i}-${started}.query.consul`).then(
          () => 'NOERROR',
          (err: NodeJS.ErrnoException) => err.code,
        ),
      ),
    );
    const elapsed = Date.now() - started;
    const asked = sim.requests.slice(first).filter((r) => r.path.startsWith('/v1/query/random-'));
    // The budget counts per whole second: the flood's span touches at most floor(elapsed s) + 2 of them.
    const bound = NEW_NAMES_PER_SECOND * (Math.floor(elapsed / 1000) + 2);
    assert.ok(asked.length <= bound && asked.length < 300, `${asked.length} requests to Consul for 300 random names in ${elapsed} ms (bound ${bound})`);
    assert.ok(asked.every((r) => r.path.endsWith('/explain')), 'only definition reads');
    assert.ok(codes.includes('ENOTFOUND') && codes.includes('ESERVFAIL'), 'those asked: NXDOMAIN; beyond the budget: SERVFAIL');
    const seqs = asked.flatMap((r) => [{ seq: r.seq, d: 1 }, { seq: r.doneSeq ?? Infinity, d: -1 }]).sort((x, y) => x.seq - y.seq);
    let open = 0;
    let most = 0;
    for (const e of seqs) most = Math.max(most, (open += e.d));
    assert.ok(most <= MAX_IN_FLIGHT, `${most} requests in flight at once`);
    assert.deepEqual((await dig(s.port, ['web-v2.query.consul', 'A'])).answer, ['web-v2.query.consul. 7 IN A 10.0.1.2'], 'a real query still answers');
  });

  test('a flood of client addresses for a Near: _ip query: executions bounded per second', async () => {
    await createQuery(sim, { Name: 'web-near-flood', Service: { Service: 'web', Near: '_ip' }, DNS: { TTL: '30s' } });
    // Known first (once the previous test's flood has left budget for a new name again).
    await eventually(async () => assert.equal((await dig(s.port, ['web-near-flood.query.consul', 'A'])).status, 'NOERROR'));
    const first = sim.requests.length;
    // Each question from its own loopback address, all at once (as spoofed UDP sources would come).
    const clients = Array.from({ length: 150 }, (_, i) => `127.1.${i >> 8}.${(i & 255) + 1}`);
    const started = Date.now();
    const rcodes = await Promise.all(
      clients.map(async (from) => {
        const reply = await udpExchange(s.port, buildQuery('web-near-flood.query.consul', 'A'), undefined, '127.0.0.1', from);
        return reply === null ? -1 : reply[3]! & 0xf;
      }),
    );
    const elapsed = Date.now() - started;
    const executed = sim.requests.slice(first).filter(isExecute('web-near-flood'));
    const bound = NEW_CLIENTS_PER_SECOND * (Math.floor(elapsed / 1000) + 2);
    assert.ok(executed.length >= 1 && executed.length <= bound && executed.length < clients.length, `${executed.length} executions for ${clients.length} client addresses in ${elapsed} ms (bound ${bound})`);
    assert.ok(executed.every((r) => r.forwardedFor?.startsWith('127.1.')), "each with its client's address");
    assert.ok(rcodes.includes(0) && rcodes.includes(2), 'within the budget: answered; beyond it: SERVFAIL');
  });
});

describe('prepared queries while Consul fails', () => {
  let sim: ConsulSim;
  let s: TestServer;

  before(async () => {
    sim = new ConsulSim();
    await sim.start();
    sim.registerNode('dc1', { Node: 'n1', Address: '10.0.0.1' });
    sim.registerService('dc1', 'n1', { ID: 'web1', Service: 'web', Port: 80 });
    await createQuery(sim, { Name: 'web', Service: { Service: 'web' }, DNS: { TTL: '1s' } });
    s = await startServer({ flags: { consul: sim.url, 'consul-wait': '2s', 'query-max-stale': '4s' } });
  });
  after(async () => {
    await s.close();
    await sim.stop();
  });

  test('the last result serves for --query-max-stale after it was fetched, then SERVFAIL', async () => {
    await eventually(async () => assert.deepEqual((await dig(s.port, ['web.query.consul', 'A'])).answer, ['web.query.consul. 1 IN A 10.0.0.1'], 'first answer'));
    const fetched = sim.requests.filter(isExecute('web')).at(-1)!;
    assert.equal(fetched.status, 200);
    await sim.fault('error500');
    // Past the 1 s TTL a question starts a refresh, which fails; the kept result still answers.
    await eventually(async () => {
      const r = await dig(s.port, ['web.query.consul', 'A']);
      assert.deepEqual(r.answer, ['web.query.consul. 1 IN A 10.0.0.1'], 'still served');
      assert.ok(sim.requests.some((q) => isExecute('web')(q) && q.status === 500), 'a refresh failed');
    });
    const failedRefresh = sim.requests.find((q) => isExecute('web')(q) && q.status === 500)!;
    assert.ok(failedRefresh.at - fetched.at < 4000, 'the failure was seen within the bound');
    // Then, once the bound has passed since the last good execution: SERVFAIL.
    let servfailAt = 0;
    await eventually(async () => {
      const r = await dig(s.port, ['web.query.consul', 'A']);
      assert.equal(r.status, 'SERVFAIL', 'SERVFAIL after the bound');
      servfailAt = Date.now();
    }, 15_000);
    assert.ok(servfailAt - fetched.at >= 4000, `SERVFAIL ${servfailAt - fetched.at} ms after the last good execution`);
    // Consul back: the next questions get answers again.
    await sim.fault('none');
    await eventually(async () => assert.deepEqual((await dig(s.port, ['web.query.consul', 'A'])).answer, ['web.query.consul. 1 IN A 10.0.0.1'], 'served again'));
  });
});
