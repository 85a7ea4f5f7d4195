/**
 * Consul's liveness, shared by every watch (src/catalog/consul/liveness.ts), through the real
 * server against the simulator: one probe decides that Consul is down ("consul failing", once);
 * the watches wait on it; the moment it answers again ("consul recovered", once) every watch goes
 * on and every request left hanging is aborted and asked again.
 *
 * No assertion is about time. Each test is set up so that only the mechanism can recover within
 * the test's bounds: with Consul's default 5 min blocking wait, a read caught by a stuck Consul
 * would hang for 5 min; with a 1 h retry backoff, a watch backing off alone after a run of 500s
 * would wait for up to an hour.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConsulSim } from '../support/consul-sim.js';
import { dig } from '../support/dig.js';
import { eventually } from '../support/eventually.js';
import { parseMetrics } from '../support/metrics.js';
import { startServer, type TestServer } from '../support/server.js';

/** A retry backoff no test outlives: a watch that backed off alone would not retry in time. */
const HOUR_BACKOFF = { baseMs: 3_600_000, maxMs: 3_600_000 };

type Logs = Record<string, unknown>[];

/** A small datacenter: two nodes, web on both, db on one. */
function seed(sim: ConsulSim): void {
  sim.registerNode('dc1', { Node: 'n1', Address: '10.0.0.1' });
  sim.registerNode('dc1', { Node: 'n2', Address: '10.0.0.2' });
  sim.registerService('dc1', 'n1', { ID: 'web1', Service: 'web', Port: 80 });
  sim.registerService('dc1', 'n2', { ID: 'web2', Service: 'web', Port: 80 });
  sim.registerService('dc1', 'n1', { ID: 'db1', Service: 'db', Port: 5432 });
}

/** The liveness lines logged so far, in order. */
function livenessLines(logs: Logs): string[] {
  return logs.filter((l) => l.msg === 'consul failing' || l.msg === 'consul recovered').map((l) => String(l.msg));
}

/** Every warning or error logged (pino levels: 40 warn, 50 error). */
function warnings(logs: Logs): string[] {
  return logs.filter((l) => (l.level as number) >= 40).map((l) => String(l.msg));
}

async function addresses(s: TestServer, name: string): Promise<string[]> {
  return (await dig(s.port, [name, 'A'])).answer.sort();
}

async function consulUp(s: TestServer): Promise<number | undefined> {
  return parseMetrics(await s.server.metrics().text()).get('svcdns_consul_up');
}

async function start(t: { after(fn: () => Promise<void>): void }, sim: ConsulSim, flags: Record<string, string>, logs: Logs): Promise<TestServer> {
  await sim.start();
  seed(sim);
  const s = await startServer({ flags: { consul: sim.url, ...flags }, logs, retryBackoff: HOUR_BACKOFF });
  t.after(async () => {
    await s.close();
    await sim.stop();
  });
  await eventually(() => assert.ok(logs.some((l) => l.msg === 'consul catalog synced; ready'), 'synced'));
  return s;
}

describe('Consul stuck (every request caught by the hang is never answered, even after it)', () => {
  test('a service first asked during the hang: SERVFAIL, then its records after recovery; a change made after recovery reaches DNS; failing and recovered logged once each, in order', async (t) => {
    const sim = new ConsulSim();
    sim.hangLosesRequests = true;
    const logs: Logs = [];
    const s = await start(t, sim, { watch: 'on-demand', 'fetch-timeout': '1s' }, logs);
    // The node and service lists' blocking reads (5 min wait) are parked: the hang catches them.
    await eventually(() => assert.equal(sim.waiting(), 2, 'both lists parked'));
    assert.equal(await consulUp(s), 1);

    await sim.fault('hang');
    const during = await dig(s.port, ['db.service.consul', 'A']);
    assert.equal(during.status, 'SERVFAIL', during.raw);
    // The fetch passed --fetch-timeout: the probe ran, met the hang, and said so.
    await eventually(() => assert.deepEqual(livenessLines(logs), ['consul failing']));
    assert.equal(await consulUp(s), 0);

    const caught = sim.requests.filter((r) => r.status === null && !r.abandoned && r.path !== '/v1/status/leader');
    assert.deepEqual(caught.map((r) => r.path).sort(), ['/v1/catalog/nodes', '/v1/catalog/services', '/v1/health/service/db']);
    await sim.fault('none');
    sim.registerService('dc1', 'n2', { ID: 'api1', Service: 'api', Port: 9000 });
    await eventually(async () => assert.deepEqual(await addresses(s, 'db.service.consul'), ['db.service.consul. 0 IN A 10.0.0.1']));
    // Only a service list read again after the recovery knows `api`: the parked one was lost.
    await eventually(async () => assert.deepEqual(await addresses(s, 'api.service.consul'), ['api.service.consul. 0 IN A 10.0.0.2']));
    assert.deepEqual(livenessLines(logs), ['consul failing', 'consul recovered']);
    assert.deepEqual(warnings(logs), ['consul failing'], 'no watch logs a failure of its own');
    assert.equal(await consulUp(s), 1);
    // svcdns gave up on what the hang caught (the parked lists and db's first read), and asked again.
    assert.deepEqual(caught.map((r) => [r.path, r.status, r.abandoned]), caught.map((r) => [r.path, null, true]));
  });

  test('--watch all: a change made after the hang reaches DNS', async (t) => {
    const sim = new ConsulSim({ datacenters: ['dc1', 'dc2'] });
    sim.hangLosesRequests = true;
    const logs: Logs = [];
    const s = await start(t, sim, { watch: 'all', 'fetch-timeout': '1s' }, logs);
    await eventually(() => assert.equal(sim.waiting(), 4, 'nodes, services, web and db parked'));
    await sim.fault('hang');
    // A new datacenter's first reads are plain reads: overdue at --fetch-timeout, they start the probe.
    assert.equal((await dig(s.port, ['web.service.dc2.consul', 'A'])).status, 'SERVFAIL');
    await eventually(() => assert.deepEqual(livenessLines(logs), ['consul failing']));
    await sim.fault('none');
    sim.registerService('dc1', 'n2', { ID: 'db2', Service: 'db', Port: 5432 });
    await eventually(async () => assert.deepEqual(await addresses(s, 'db.service.consul'), ['db.service.consul. 0 IN A 10.0.0.1', 'db.service.consul. 0 IN A 10.0.0.2']));
    assert.deepEqual(livenessLines(logs), ['consul failing', 'consul recovered']);
  });

  test('--watch all, nothing asked during the hang: the heartbeat sees it, and the reads it lost are asked again at the recovery', async (t) => {
    const sim = new ConsulSim();
    sim.hangLosesRequests = true;
    const logs: Logs = [];
    // Every watch parked on a 5 min wait: nothing fails and nothing is overdue; only the heartbeat can tell.
    const s = await start(t, sim, { watch: 'all', 'consul-heartbeat': '200ms' }, logs);
    await eventually(() => assert.equal(sim.waiting(), 4, 'nodes, services, web and db parked'));
    await sim.fault('hang');
    // A change the hang swallows: the parked reads it would wake are lost with the hang.
    sim.registerService('dc1', 'n2', { ID: 'db2', Service: 'db', Port: 5432 });
    await eventually(() => assert.deepEqual(livenessLines(logs), ['consul failing']));
    await sim.fault('none');
    await eventually(async () => assert.deepEqual(await addresses(s, 'db.service.consul'), ['db.service.consul. 0 IN A 10.0.0.1', 'db.service.consul. 0 IN A 10.0.0.2']));
    assert.deepEqual(livenessLines(logs), ['consul failing', 'consul recovered']);
    assert.deepEqual(warnings(logs), ['consul failing']);
  });
});

describe('Consul answering 500s', () => {
  test('watches wait on the probe, not on their own (1 h) backoff: a change made after recovery reaches DNS; failing and recovered logged once each, in order', async (t) => {
    const sim = new ConsulSim();
    const logs: Logs = [];
    const s = await start(t, sim, { watch: 'all' }, logs);
    await eventually(() => assert.equal(sim.waiting(), 4, 'nodes, services, web and db parked'));

    await sim.fault('error500'); // the parked reads are answered 500 at once
    await eventually(() => assert.deepEqual(livenessLines(logs), ['consul failing']));
    const failing = logs.find((l) => l.msg === 'consul failing')!;
    assert.deepEqual([failing.status, failing.error, failing.serving], [500, 'rpc error making call: EOF', 'last good catalog']);
    assert.deepEqual(await addresses(s, 'web.service.consul'), ['web.service.consul. 0 IN A 10.0.0.1', 'web.service.consul. 0 IN A 10.0.0.2'], 'the last good catalog serves');

    await sim.fault('none');
    sim.deregisterService('dc1', 'n1', 'web1');
    await eventually(async () => assert.deepEqual(await addresses(s, 'web.service.consul'), ['web.service.consul. 0 IN A 10.0.0.2']));
    assert.deepEqual(livenessLines(logs), ['consul failing', 'consul recovered']);
    assert.deepEqual(warnings(logs), ['consul failing'], 'no watch logs a failure of its own');
  });
});
