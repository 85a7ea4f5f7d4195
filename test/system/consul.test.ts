/**
 * svcdns watching Consul (the simulator in test/support/consul-sim.ts), seen through DNS:
 * changes in Consul reach answers; failures in Consul never take answers away.
 */

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildQuery, udpExchange } from '../support/client.js';
import { ConsulSim } from '../support/consul-sim.js';
import { dig, type DigResult } from '../support/dig.js';
import { eventually } from '../support/eventually.js';
import { startServer, type TestServer } from '../support/server.js';


/** Asserts a log record with this message was written (an explicit assertion message: see eventually). */
function assertLogged(logs: readonly Record<string, unknown>[], msg: string): void {
  assert.ok(logs.some((l) => l.msg === msg), `no log record "${msg}"`);
}

/** Failed retries svcdns has handled (logged at debug level, as `failures` >= 2 of some watch). */
function retries(logs: readonly Record<string, unknown>[]): number {
  return logs.filter((l) => l.msg === 'consul watch still failing' && typeof l.failures === 'number' && l.failures >= 2).length;
}

/** Liveness probes that failed while Consul was down (logged at debug level, after the first). */
function probesFailed(logs: readonly Record<string, unknown>[]): number {
  return logs.filter((l) => l.msg === 'consul probe failed').length;
}

function sorted(lines: readonly string[]): string[] {
  return [...lines].sort();
}

async function answers(port: number, name: string, type = 'A'): Promise<DigResult> {
  return dig(port, [name, type]);
}

/** A small datacenter: two nodes, web on both, db on one. */
function seed(sim: ConsulSim): void {
  sim.registerNode('dc1', { Node: 'n1', Address: '10.0.0.1', Meta: { rack: 'r1' } });
  sim.registerNode('dc1', { Node: 'n2', Address: '10.0.0.2' });
  sim.registerService('dc1', 'n1', { ID: 'web1', Service: 'web', Tags: ['v1'], Port: 80 });
  sim.registerService('dc1', 'n2', { ID: 'web2', Service: 'web', Tags: ['v2'], Port: 80, Weights: { Passing: 10, Warning: 3 } });
  sim.registerService('dc1', 'n1', { ID: 'db1', Service: 'db', Port: 5432 });
  sim.setCheck('dc1', 'n1', { CheckID: 'serfHealth', Status: 'passing' });
  sim.setCheck('dc1', 'n2', { CheckID: 'serfHealth', Status: 'passing' });
}

const FLAGS = { 'consul-wait': '2s' };

describe('answers follow Consul', () => {
  let sim: ConsulSim;
  let s: TestServer;
  before(async () => {
    sim = new ConsulSim();
    await sim.start();
    seed(sim);
    s = await startServer({ flags: { ...FLAGS, consul: sim.url } });
  });
  after(async () => {
    await s.close();
    await sim.stop();
  });

  test('services, tags and nodes are served once synced', async () => {
    await eventually(async () => {
      assert.deepEqual(sorted((await answers(s.port, 'web.service.consul')).answer), ['web.service.consul. 0 IN A 10.0.0.1', 'web.service.consul. 0 IN A 10.0.0.2']);
    });
    assert.deepEqual((await answers(s.port, 'v2.web.service.consul')).answer, ['v2.web.service.consul. 0 IN A 10.0.0.2']);
    assert.deepEqual((await answers(s.port, 'n1.node.consul')).answer, ['n1.node.consul. 0 IN A 10.0.0.1']);
    assert.deepEqual((await answers(s.port, 'n1.node.consul', 'TXT')).answer, ['n1.node.consul. 0 IN TXT "rack=r1"']);
    assert.deepEqual((await dig(s.port, ['-x', '10.0.0.2'])).answer, ['2.0.0.10.in-addr.arpa. 0 IN PTR n2.node.dc1.consul.']);
  });

  test('a registration appears', async () => {
    sim.registerNode('dc1', { Node: 'n3', Address: '10.0.0.3' });
    sim.registerService('dc1', 'n3', { ID: 'api1', Service: 'api', Port: 9000 });
    await eventually(async () => {
      assert.deepEqual((await answers(s.port, 'api.service.consul', 'SRV')).answer, ['api.service.consul. 0 IN SRV 1 1 9000 n3.node.dc1.consul.']);
    });
  });

  test('a critical check removes the instance; warning keeps it with its warning weight', async () => {
    sim.setCheck('dc1', 'n1', { CheckID: 'web-http', ServiceID: 'web1', Status: 'critical' });
    await eventually(async () => {
      assert.deepEqual((await answers(s.port, 'web.service.consul')).answer, ['web.service.consul. 0 IN A 10.0.0.2']);
    });
    sim.setCheck('dc1', 'n2', { CheckID: 'web-http2', ServiceID: 'web2', Status: 'warning' });
    await eventually(async () => {
      assert.deepEqual((await answers(s.port, 'web.service.consul', 'SRV')).answer, ['web.service.consul. 0 IN SRV 1 3 80 n2.node.dc1.consul.']);
    });
    sim.setCheck('dc1', 'n1', { CheckID: 'web-http', ServiceID: 'web1', Status: 'passing' });
    sim.setCheck('dc1', 'n2', { CheckID: 'web-http2', ServiceID: 'web2', Status: 'passing' });
    await eventually(async () => {
      assert.deepEqual(sorted((await answers(s.port, 'web.service.consul', 'SRV')).answer), [
        'web.service.consul. 0 IN SRV 1 1 80 n1.node.dc1.consul.',
        'web.service.consul. 0 IN SRV 1 10 80 n2.node.dc1.consul.',
      ]);
    });
  });

  test('a failing node-level check (serfHealth) removes every instance on the node', async () => {
    sim.setCheck('dc1', 'n1', { CheckID: 'serfHealth', Status: 'critical' });
    await eventually(async () => {
      assert.equal((await answers(s.port, 'db.service.consul')).status, 'NXDOMAIN');
      assert.deepEqual((await answers(s.port, 'web.service.consul')).answer, ['web.service.consul. 0 IN A 10.0.0.2']);
    });
    sim.setCheck('dc1', 'n1', { CheckID: 'serfHealth', Status: 'passing' });
    await eventually(async () => {
      assert.deepEqual((await answers(s.port, 'db.service.consul')).answer, ['db.service.consul. 0 IN A 10.0.0.1']);
    });
  });

  test('tag and weight changes', async () => {
    sim.registerService('dc1', 'n1', { ID: 'web1', Service: 'web', Tags: ['v1', 'canary'], Port: 80, Weights: { Passing: 7, Warning: 1 } });
    await eventually(async () => {
      assert.deepEqual((await answers(s.port, '_web._canary.service.consul', 'SRV')).answer, ['_web._canary.service.consul. 0 IN SRV 1 7 80 n1.node.dc1.consul.']);
    });
  });

  test('a deregistration becomes NXDOMAIN', async () => {
    sim.deregisterService('dc1', 'n3', 'api1');
    await eventually(async () => {
      const r = await answers(s.port, 'api.service.consul');
      assert.equal(r.status, 'NXDOMAIN');
      assert.equal(r.authority.length, 1);
    });
  });

  test('reads are stale (any server answers), as Consul DNS does by default', () => {
    // catalog/datacenters and the liveness probe's status/leader have no consistency mode (Consul's API
    // docs, "Status HTTP API": Consistency Modes none); the probe runs when a read is overdue, which a
    // loaded machine makes happen. Every other read asks for a stale answer.
    const reads = sim.requests.filter((r) => r.method === 'GET' && r.path.startsWith('/v1/') && r.path !== '/v1/catalog/datacenters' && r.path !== '/v1/status/leader');
    assert.ok(reads.length > 0, 'some reads were made');
    for (const r of reads) assert.ok('stale' in r.query, `${r.path} without ?stale`);
  });
});

describe('before the first sync', () => {
  let sim: ConsulSim;
  let s: TestServer;
  beforeEach(async () => {
    sim = new ConsulSim();
    await sim.start();
    seed(sim);
  });
  afterEach(async () => {
    await s?.close();
    await sim.stop();
  });

  test('names in the domain get SERVFAIL (never NXDOMAIN) until Consul answers, then real answers', async () => {
    await sim.fault('hang');
    const logs: Record<string, unknown>[] = [];
    s = await startServer({ flags: { ...FLAGS, consul: sim.url }, logs });
    const early = await answers(s.port, 'web.service.consul');
    assert.equal(early.status, 'SERVFAIL');
    assert.equal((await answers(s.port, 'nope.service.consul')).status, 'SERVFAIL');
    await sim.fault('none');
    await eventually(async () => assert.equal((await answers(s.port, 'web.service.consul')).answer.length, 2));
    assertLogged(logs, 'consul catalog synced; ready');
  });

  test('an unknown ACL token: one error naming the problem, SERVFAIL, and no token in any log', async () => {
    await sim.stop();
    sim = new ConsulSim({ aclTokens: ['good-token'] });
    await sim.start();
    seed(sim);
    const logs: Record<string, unknown>[] = [];
    s = await startServer({ flags: { ...FLAGS, consul: sim.url, 'consul-token': 'bad-token' }, logs });
    await eventually(() => assertLogged(logs, 'consul refused the ACL token; check --consul-token'));
    const error = logs.find((l) => l.level === 50)!;
    assert.equal(error.status, 403);
    assert.equal(error.error, 'ACL not found');
    assert.equal((await answers(s.port, 'web.service.consul')).status, 'SERVFAIL');
    // Retries meet the same refusal; none of them logs again.
    await eventually(() => assert.ok(retries(logs) >= 2, `retries handled: ${retries(logs)}`), 10_000);
    assert.equal(logs.filter((l) => (l.level as number) >= 40).length, 1);
    assert.ok(!JSON.stringify(logs).includes('bad-token'), 'the token never appears in logs');
    assert.ok(sim.requests.every((r) => r.token === 'bad-token'), 'every request carries the token');
  });
});

describe('when Consul fails, the last good catalog keeps serving', () => {
  let sim: ConsulSim;
  let s: TestServer;
  const logs: Record<string, unknown>[] = [];
  before(async () => {
    sim = new ConsulSim({ aclTokens: ['good-token'] });
    await sim.start();
    seed(sim);
    // A 500 ms blocking wait: svcdns gives up on a request Consul leaves unanswered after about 0.8 s.
    s = await startServer({ flags: { ...FLAGS, 'consul-wait': '500ms', consul: sim.url, 'consul-token': 'good-token' }, logs });
    await eventually(async () => assert.equal((await answers(s.port, 'web.service.consul')).answer.length, 2));
  });
  after(async () => {
    await s.close();
    await sim.stop();
  });

  const webServed = async () => assert.deepEqual(sorted((await answers(s.port, 'web.service.consul')).answer), ['web.service.consul. 0 IN A 10.0.0.1', 'web.service.consul. 0 IN A 10.0.0.2']);

  test('Consul refusing connections: answers unchanged, failure logged once, recovery logged, catalog refreshed', async () => {
    logs.length = 0;
    await sim.fault('refuse');
    await eventually(() => assertLogged(logs, 'consul failing'));
    await webServed();
    // The watches wait on the liveness probe, which keeps trying; none of its tries logs again.
    await eventually(() => assert.ok(probesFailed(logs) >= 2, `probes failed: ${probesFailed(logs)}`), 10_000);
    await webServed();
    assert.equal(logs.filter((l) => l.msg === 'consul failing').length, 1, 'logged once, not per retry');
    sim.registerService('dc1', 'n2', { ID: 'db2', Service: 'db', Port: 5432 });
    await sim.fault('none');
    await eventually(() => assertLogged(logs, 'consul recovered'), 10_000);
    await eventually(async () => assert.equal((await answers(s.port, 'db.service.consul')).answer.length, 2), 5000);
  });

  test('Consul hanging (requests never answered): answers unchanged', async () => {
    logs.length = 0;
    const before = new Set(sim.requests);
    await sim.fault('hang');
    // svcdns has met the hang once a request of its own is overdue (the 500 ms wait, its jitter
    // and a margin) and the liveness probe, unanswered too, has said Consul is down.
    await eventually(() => assertLogged(logs, 'consul failing'), 10_000);
    assert.equal(logs.find((l) => l.msg === 'consul failing')!.status, 0, 'no answer, not an HTTP error');
    const waiting = sim.requests.filter((r) => !before.has(r) && r.status === null);
    assert.ok(waiting.some((r) => r.path === '/v1/status/leader'), 'the probe met the hang');
    await webServed();
    await sim.fault('none');
    await eventually(() => assertLogged(logs, 'consul recovered'), 10_000);
    await webServed();
  });

  test('Consul answering 500s: answers unchanged', async () => {
    logs.length = 0;
    const before = new Set(sim.requests.filter((r) => r.status === 500));
    await sim.fault('error500');
    // Parked blocking reads are answered 500 at once; the probe is answered 500 too.
    await sim.until((r) => r.status === 500 && !before.has(r), 'request answered 500');
    await eventually(() => assertLogged(logs, 'consul failing'), 5000);
    assert.equal(logs.find((l) => l.msg === 'consul failing')!.status, 500, 'the 500 is what failed');
    await webServed();
    await sim.fault('none');
    await eventually(() => assertLogged(logs, 'consul recovered'), 10_000);
    await webServed();
  });

  test('a revoked token: one error log, the last catalog keeps serving', async () => {
    logs.length = 0;
    sim.setAclTokens(['rotated-token']);
    // Blocked queries already running finish normally; the next request meets the revoked token.
    sim.registerService('dc1', 'n2', { ID: 'cache1', Service: 'cache', Port: 6379 });
    await eventually(() => assertLogged(logs, 'consul refused the ACL token; check --consul-token'), 10_000);
    await webServed();
    sim.setAclTokens(['good-token']);
  });

  test('Consul restarted with a lower index: the catalog converges', async () => {
    await sim.restart({ indexBase: 1 });
    sim.deregisterService('dc1', 'n1', 'web1');
    await eventually(async () => assert.deepEqual((await answers(s.port, 'web.service.consul')).answer, ['web.service.consul. 0 IN A 10.0.0.2']), 40_000);
    sim.registerService('dc1', 'n1', { ID: 'web1', Service: 'web', Tags: ['v1'], Port: 80 });
    await eventually(webServed, 5000);
  });
});

describe('--max-stale', () => {
  test('a stale answer from a server out of touch with the leader is re-read from the leader', async (t) => {
    const sim = new ConsulSim();
    await sim.start();
    seed(sim);
    sim.lastContactMs = 5000;
    const s = await startServer({ flags: { ...FLAGS, consul: sim.url, 'max-stale': '1s' } });
    t.after(async () => {
      await s.close();
      await sim.stop();
    });
    await eventually(async () => assert.equal((await answers(s.port, 'web.service.consul')).answer.length, 2));
    const paths = (stale: boolean) => sim.requests.filter((r) => r.path === '/v1/health/service/web' && 'stale' in r.query === stale);
    assert.ok(paths(true).length >= 1, 'tried stale first');
    assert.ok(paths(false).length >= 1, 're-read from the leader');
  });
});

describe('--only-passing', () => {
  test('warning instances are left out too', async (t) => {
    const sim = new ConsulSim();
    await sim.start();
    seed(sim);
    sim.setCheck('dc1', 'n2', { CheckID: 'web-http2', ServiceID: 'web2', Status: 'warning' });
    const s = await startServer({ flags: { ...FLAGS, consul: sim.url, 'only-passing': 'true' } });
    t.after(async () => {
      await s.close();
      await sim.stop();
    });
    await eventually(async () => assert.deepEqual((await answers(s.port, 'web.service.consul')).answer, ['web.service.consul. 0 IN A 10.0.0.1']));
    sim.setCheck('dc1', 'n1', { CheckID: 'web-http', ServiceID: 'web1', Status: 'warning' });
    await eventually(async () => assert.equal((await answers(s.port, 'web.service.consul')).status, 'NXDOMAIN'));
  });
});

describe('--watch on-demand', () => {
  let sim: ConsulSim;
  let s: TestServer;
  const logs: Record<string, unknown>[] = [];
  const healthReads = (service: string) => sim.requests.filter((r) => r.path === `/v1/health/service/${service}`).length;
  before(async () => {
    sim = new ConsulSim();
    await sim.start();
    seed(sim);
    s = await startServer({ flags: { ...FLAGS, consul: sim.url, watch: 'on-demand', 'watch-idle': '400ms', 'fetch-timeout': '800ms' }, logs });
    await eventually(() => assertLogged(logs, 'consul catalog synced; ready'));
  });
  after(async () => {
    await s.close();
    await sim.stop();
  });

  test('no service is fetched until it is asked for; the first question waits for the fetch', async () => {
    assert.equal(healthReads('web') + healthReads('db'), 0, 'nothing fetched at start');
    const r = await answers(s.port, 'web.service.consul');
    assert.deepEqual(sorted(r.answer), ['web.service.consul. 0 IN A 10.0.0.1', 'web.service.consul. 0 IN A 10.0.0.2']);
    assert.ok(healthReads('web') >= 1, 'web fetched');
    assert.equal(healthReads('db'), 0, 'db still not fetched');
  });

  test('a service that does not exist is NXDOMAIN at once, without a fetch', async () => {
    const r = await answers(s.port, 'nope.service.consul');
    assert.equal(r.status, 'NXDOMAIN');
    assert.equal(healthReads('nope'), 0);
  });

  test('changes to a watched service still arrive', async () => {
    sim.setCheck('dc1', 'n1', { CheckID: 'web-http', ServiceID: 'web1', Status: 'critical' });
    await eventually(async () => assert.deepEqual((await answers(s.port, 'web.service.consul')).answer, ['web.service.consul. 0 IN A 10.0.0.2']));
    sim.removeCheck('dc1', 'n1', 'web-http');
  });

  test('a watch unused for --watch-idle is dropped, and the next question fetches again', async () => {
    const before = healthReads('web');
    await eventually(() => assertLogged(logs, 'idle on-demand watch dropped'), 3000);
    const r = await answers(s.port, 'web.service.consul');
    assert.equal(r.answer.length, 2);
    assert.ok(healthReads('web') > before, 'fetched again');
  });

  test('a fetch that does not finish within --fetch-timeout is SERVFAIL, never NXDOMAIN', async () => {
    await sim.fault('hang');
    const started = Date.now();
    const r = await answers(s.port, 'db.service.consul');
    assert.equal(r.status, 'SERVFAIL');
    assert.ok(Date.now() - started < 2500, `answered after ${Date.now() - started} ms`);
    await sim.fault('none');
    await eventually(async () => assert.deepEqual((await answers(s.port, 'db.service.consul')).answer, ['db.service.consul. 0 IN A 10.0.0.1']), 10_000);
  });
});

describe('--watch auto', () => {
  test('watches everything up to --watch-all-limit services, on demand beyond', async (t) => {
    const sim = new ConsulSim();
    await sim.start();
    seed(sim); // two services: web, db
    const logs: Record<string, unknown>[] = [];
    const s = await startServer({ flags: { ...FLAGS, consul: sim.url, 'watch-all-limit': '1' }, logs });
    t.after(async () => {
      await s.close();
      await sim.stop();
    });
    await eventually(() => assertLogged(logs, 'consul watch mode chosen'));
    const chosen = logs.find((l) => l.msg === 'consul watch mode chosen')!;
    assert.deepEqual([chosen.mode, chosen.services, chosen.limit], ['on-demand', 2, 1]);
    assert.equal((await answers(s.port, 'db.service.consul')).answer.length, 1);
  });
});

describe('--watch all in a large datacenter', () => {
  test('at most 32 first reads in flight, and no blocking read before the first sync', async (t) => {
    const sim = new ConsulSim();
    await sim.start();
    const SERVICES = 300;
    for (let n = 0; n < 30; n++) sim.registerNode('dc1', { Node: `n${n}`, Address: `10.1.0.${n + 1}` });
    for (let i = 0; i < SERVICES; i++) sim.registerService('dc1', `n${i % 30}`, { ID: `s${i}`, Service: `s${i}`, Port: 8000 });
    sim.latencyMs = 50; // so that reads pile up unless svcdns bounds them
    const s = await startServer({ flags: { ...FLAGS, consul: sim.url, watch: 'all' } });
    t.after(async () => {
      await s.close();
      await sim.stop();
    });
    await eventually(async () => assert.deepEqual((await answers(s.port, `s${SERVICES - 1}.service.consul`)).answer.length, 1, 'last service served'));

    const firstReads = sim.requests.filter((r) => r.path.startsWith('/v1/health/service/') && !('index' in r.query));
    assert.equal(new Set(firstReads.map((r) => r.path)).size, SERVICES, 'every service read once without an index');
    // The most first reads in flight at once, from arrival and completion order.
    const events = firstReads.flatMap((r) => [
      { seq: r.seq, delta: 1 },
      { seq: r.doneSeq ?? Infinity, delta: -1 },
    ]);
    let inFlight = 0;
    let most = 0;
    for (const e of events.sort((a, b) => a.seq - b.seq)) most = Math.max(most, (inFlight += e.delta));
    assert.ok(most <= 32, `at most 32 first reads in flight (saw ${most})`);
    assert.ok(most >= 2, `first reads overlap (saw ${most})`);

    const lastFirstRead = Math.max(...firstReads.map((r) => r.doneSeq ?? Infinity));
    const early = sim.requests.filter((r) => 'index' in r.query && r.seq < lastFirstRead);
    assert.deepEqual(early.map((r) => r.path), [], 'no blocking read before every first read was answered');
    assert.ok(sim.requests.some((r) => 'index' in r.query), 'blocking reads follow the first sync');
  });
});

describe('other datacenters', () => {
  let sim: ConsulSim;
  let s: TestServer;
  before(async () => {
    sim = new ConsulSim({ datacenters: ['dc1', 'dc2'] });
    await sim.start();
    seed(sim);
    sim.registerNode('dc2', { Node: 'far1', Address: '10.2.0.1' });
    sim.registerService('dc2', 'far1', { ID: 'web-far', Service: 'web', Port: 80 });
    s = await startServer({ flags: { ...FLAGS, consul: sim.url } });
    await eventually(async () => assert.equal((await answers(s.port, 'web.service.consul')).answer.length, 2));
  });
  after(async () => {
    await s.close();
    await sim.stop();
  });

  test('made-up names in another datacenter start no watches: only its service list is read', async () => {
    // First in this suite: dc2 has not been asked about yet, so its service list is not known.
    // Asked at once from this process, not by 30 dig processes: spawning them blocks this event
    // loop, which is also the server's, long enough for the first digs to time out on a busy machine.
    const names = Array.from({ length: 30 }, (_, i) => `made-up-${i}.service.dc2.consul`);
    const replies = await Promise.all(names.map((n) => udpExchange(s.port, buildQuery(n, 'A'), 5000)));
    const RCODES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN'];
    assert.deepEqual([...new Set(replies.map((r) => (r ? (RCODES[r.readUInt16BE(2) & 0xf] ?? 'other') : 'no reply')))], ['NXDOMAIN']);
    const madeUp = sim.requests.filter((r) => r.path.startsWith('/v1/health/service/made-up-'));
    assert.equal(madeUp.length, 0, `health reads for made-up names: ${madeUp.map((r) => r.path).join(', ')}`);
  });

  test('a service in another datacenter is fetched with ?dc on its first question', async () => {
    assert.deepEqual((await answers(s.port, 'web.service.dc2.consul')).answer, ['web.service.dc2.consul. 0 IN A 10.2.0.1']);
    assert.ok(sim.requests.some((r) => r.path === '/v1/health/service/web' && r.query.dc === 'dc2'), 'asked Consul with dc=dc2');
    assert.deepEqual((await answers(s.port, 'web.service.dc2.consul', 'SRV')).additional, ['far1.node.dc2.consul. 0 IN A 10.2.0.1']);
  });

  test('nodes of another datacenter, and changes there', async () => {
    assert.deepEqual((await answers(s.port, 'far1.node.dc2.consul')).answer, ['far1.node.dc2.consul. 0 IN A 10.2.0.1']);
    sim.registerNode('dc2', { Node: 'far2', Address: '10.2.0.2' });
    sim.registerService('dc2', 'far2', { ID: 'web-far2', Service: 'web', Port: 80 });
    await eventually(async () => assert.equal((await answers(s.port, 'web.service.dc2.consul')).answer.length, 2));
  });

  test('an unknown datacenter, or a service a known one lacks, is NXDOMAIN', async () => {
    assert.equal((await answers(s.port, 'web.service.dc9.consul')).status, 'NXDOMAIN');
    assert.equal((await answers(s.port, 'nope.service.dc2.consul')).status, 'NXDOMAIN');
    assert.equal((await answers(s.port, 'nope.node.dc2.consul')).status, 'NXDOMAIN');
  });
});

describe('service names as Consul spells them', () => {
  for (const watch of ['all', 'on-demand']) {
    test(`a service registered as "Web-API" answers web-api.service.consul in any case (--watch ${watch})`, async (t) => {
      const sim = new ConsulSim();
      await sim.start();
      sim.registerNode('dc1', { Node: 'n1', Address: '10.0.0.1' });
      sim.registerService('dc1', 'n1', { ID: 'w1', Service: 'Web-API', Port: 80, Tags: ['Blue'] });
      const logs: Record<string, unknown>[] = [];
      const s = await startServer({ flags: { ...FLAGS, consul: sim.url, watch }, logs });
      t.after(async () => {
        await s.close();
        await sim.stop();
      });
      await eventually(() => assertLogged(logs, 'consul catalog synced; ready'));
      for (const name of ['web-api.service.consul', 'WEB-API.service.consul', 'blue.Web-Api.service.consul']) {
        assert.deepEqual((await answers(s.port, name)).answer, [`${name}. 0 IN A 10.0.0.1`], name);
      }
    });
  }
});

describe('a first fetch slower than --watch-idle', () => {
  test('is not dropped while a question waits for it', async (t) => {
    const sim = new ConsulSim();
    await sim.start();
    seed(sim);
    const logs: Record<string, unknown>[] = [];
    const s = await startServer({ flags: { ...FLAGS, consul: sim.url, watch: 'on-demand', 'watch-idle': '500ms', 'fetch-timeout': '2s' }, logs });
    t.after(async () => {
      await s.close();
      await sim.stop();
    });
    await eventually(() => assertLogged(logs, 'consul catalog synced; ready'));
    await sim.fault('hang');
    const lift = setTimeout(() => void sim.fault('none'), 750);
    t.after(() => clearTimeout(lift));
    const r = await answers(s.port, 'db.service.consul');
    assert.equal(r.status, 'NOERROR', `the fetch finished after 750 ms, inside the 2 s fetch timeout\n${r.raw}`);
    assert.deepEqual(r.answer, ['db.service.consul. 0 IN A 10.0.0.1']);
  });
});

describe('--consul-token-file (CONSUL_HTTP_TOKEN_FILE)', () => {
  test('the token is read from the file, trimmed, and sent; an unreadable file stops start-up naming the file', async (t) => {
    const sim = new ConsulSim({ aclTokens: ['file-token'] });
    await sim.start();
    seed(sim);
    const dir = await mkdtemp(join(tmpdir(), 'svcdns-token-'));
    const tokenFile = join(dir, 'token');
    await writeFile(tokenFile, 'file-token\n');
    const s = await startServer({ flags: { ...FLAGS, consul: sim.url, 'consul-token-file': tokenFile } });
    t.after(async () => {
      await s.close();
      await sim.stop();
      await rm(dir, { recursive: true, force: true });
    });
    await eventually(async () => assert.equal((await answers(s.port, 'web.service.consul')).answer.length, 2));
    assert.ok(sim.requests.every((r) => r.token === 'file-token'), 'every request carries the token from the file');
    await assert.rejects(
      startServer({ flags: { ...FLAGS, consul: sim.url, 'consul-token-file': join(dir, 'missing') } }),
      { message: `cannot read consul token file ${join(dir, 'missing')}: ENOENT` },
    );
  });
});

describe('Consul with a default-deny ACL policy and no token', () => {
  test('warns once that only what the anonymous token may read is served', async (t) => {
    const sim = new ConsulSim({ aclTokens: ['secret'] });
    await sim.start();
    seed(sim);
    const logs: Record<string, unknown>[] = [];
    const s = await startServer({ flags: { ...FLAGS, consul: sim.url }, logs });
    t.after(async () => {
      await s.close();
      await sim.stop();
    });
    await eventually(() => assertLogged(logs, 'consul catalog synced; ready'));
    const warning = 'consul denies by default and svcdns has no ACL token: only what the anonymous token may read is served; set --consul-token';
    assertLogged(logs, warning);
    // Consul filters what the anonymous token may not read: an empty catalog, hence NXDOMAIN.
    assert.equal((await answers(s.port, 'web.service.consul')).status, 'NXDOMAIN');
    sim.registerService('dc1', 'n1', { ID: 'db2', Service: 'db', Port: 5433 });
    // The service-list watch wakes, reads the change (with the deny policy header again) and asks
    // again with the new index: by then svcdns has handled that answer.
    const index = String(sim.index('dc1'));
    await sim.until((r) => r.path === '/v1/catalog/services' && r.query.index === index, 'service-list read after the change');
    assert.equal(logs.filter((l) => l.msg === warning).length, 1, 'said once');
  });
});

describe('names, TTLs and records Consul users rely on, from Consul', () => {
  let sim: ConsulSim;
  let s: TestServer;
  before(async () => {
    sim = new ConsulSim();
    await sim.start();
    // Consul's agents register their node with this meta (agent/agent.go: the network segment).
    sim.registerNode('dc1', { Node: 'consul-1', Address: '192.168.0.129', Meta: { 'consul-network-segment': '' } });
    sim.registerNode('dc1', { Node: 'app-1', Address: '192.168.0.130', Meta: { 'RFC1035-info': 'v=1' } });
    sim.registerService('dc1', 'consul-1', { ID: 'web1', Service: 'web', Port: 8080 });
    sim.registerService('dc1', 'app-1', { ID: 'web2', Service: 'web', Port: 8081, Address: '192.168.0.131' });
    sim.registerService('dc1', 'app-1', { ID: 'db1', Service: 'db-main', Port: 5432 });
    s = await startServer({ flags: { ...FLAGS, consul: sim.url, 'service-ttl': ['1', 'db*=20', 'web=15'], 'node-ttl': '4', 'soa-min-ttl': '30' } });
    await eventually(async () => assert.equal((await answers(s.port, 'web.service.consul')).status, 'NOERROR'));
  });
  after(async () => {
    await s.close();
    await sim.stop();
  });

  test('dig SRV: node meta TXT in the additional section, as Consul shows it, with the service TTL', async () => {
    const r = await answers(s.port, '_web._tcp.consul', 'SRV');
    assert.deepEqual(sorted(r.answer), ['_web._tcp.consul. 15 IN SRV 1 1 8080 consul-1.node.dc1.consul.', '_web._tcp.consul. 15 IN SRV 1 1 8081 c0a80083.addr.dc1.consul.']);
    assert.deepEqual(sorted(r.additional), [
      'app-1.node.dc1.consul. 15 IN TXT "v=1"',
      'c0a80083.addr.dc1.consul. 15 IN A 192.168.0.131',
      'consul-1.node.dc1.consul. 15 IN A 192.168.0.129',
      'consul-1.node.dc1.consul. 15 IN TXT "consul-network-segment="',
    ]);
    const db = await answers(s.port, 'db-main.service.consul', 'SRV');
    assert.deepEqual(db.answer, ['db-main.service.consul. 20 IN SRV 1 1 5432 app-1.node.dc1.consul.']);
    const node = await answers(s.port, 'consul-1.node.consul');
    assert.deepEqual([node.answer, node.additional], [['consul-1.node.consul. 4 IN A 192.168.0.129'], ['consul-1.node.consul. 4 IN TXT "consul-network-segment="']]);
    const nx = await answers(s.port, '_nope._tcp.consul', 'SRV');
    assert.deepEqual([nx.status, nx.authority.map((l) => l.split(' ').slice(0, 2).join(' '))], ['NXDOMAIN', ['consul. 30']]);
  });

  test('a change of node meta alone reaches the SRV answers (and their cached replies)', async () => {
    // Every rotation of the answer asked once, so the reply cache holds them all (+nocookie: dig's
    // cookie is an EDNS option, and queries with options bypass the reply cache).
    const ask = () => dig(s.port, ['+nocookie', 'web.service.consul', 'SRV']);
    for (let i = 0; i < 4; i++) assert.ok(!(await ask()).additional.some((l) => l.includes('rack=')));
    sim.registerNode('dc1', { Node: 'consul-1', Address: '192.168.0.129', Meta: { 'consul-network-segment': '', rack: 'r9' } });
    await eventually(async () => {
      const r = await ask();
      assert.ok(r.additional.includes('consul-1.node.dc1.consul. 15 IN TXT "rack=r9"'), r.raw);
    });
  });
});
