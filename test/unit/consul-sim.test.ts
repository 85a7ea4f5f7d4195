/**
 * The Consul simulator (test/support/consul-sim.ts) checked through the real `consul` npm client
 * (2.0.1, papi underneath) and plain fetch: JSON shapes, headers, blocking queries, errors, ACLs,
 * faults and restarts. Each test runs its own simulator on 127.0.0.1 and stops it afterwards.
 */

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Agent, type IncomingMessage } from 'node:http';
import { test, type TestContext } from 'node:test';
import Consul from 'consul';
import { ConsulSim, RPC_ERROR_TEXT, parseGoDuration, type SimOptions } from '../support/consul-sim.js';

// ------------------------------------------------------------------------------------------------
// Helpers

type Opts = Record<string, unknown>;
type Method = (opts: Opts) => Promise<unknown>;
type Res = IncomingMessage & { body?: unknown };

interface ClientError extends Error {
  statusCode?: number;
  response?: Res;
  code?: string;
  isTimeout?: boolean;
}

interface Entry {
  Node: Record<string, unknown>;
  Service: Record<string, unknown>;
  Checks: Record<string, unknown>[];
}

/** papi hands back [res, body] when ctx is an EventEmitter with includeResponse set. */
function responseCtx(): EventEmitter {
  return Object.assign(new EventEmitter(), { includeResponse: true });
}

async function call<T>(method: Method, opts: Opts = {}): Promise<{ res: Res; body: T }> {
  const [res, body] = (await method({ ctx: responseCtx(), ...opts })) as [Res, T];
  return { res, body };
}

const health = (c: Consul, service: string, opts: Opts = {}) =>
  call<Entry[]>(c.health.service.bind(c.health) as unknown as Method, { service, ...opts });
const services = (c: Consul, opts: Opts = {}) =>
  call<Record<string, string[]>>(c.catalog.service.list.bind(c.catalog.service), opts);
const nodes = (c: Consul, opts: Opts = {}) =>
  call<Record<string, unknown>[]>(c.catalog.node.list.bind(c.catalog.node), opts);
const datacenters = (c: Consul, opts: Opts = {}) =>
  call<string[]>(c.catalog.datacenters.bind(c.catalog), opts);

function header(res: Res | Response, name: string): string | undefined {
  if (res instanceof Response) return res.headers.get(name) ?? undefined;
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(', ') : v;
}

function indexOf(res: Res | Response): number {
  const v = header(res, 'X-Consul-Index');
  assert.ok(v !== undefined, 'X-Consul-Index is present');
  return Number(v);
}

async function failure(p: Promise<unknown>): Promise<ClientError> {
  try {
    await p;
  } catch (err) {
    return err as ClientError;
  }
  return assert.fail('expected the call to fail');
}

async function until(cond: () => boolean, what: string, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function tracked<T>(p: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let done = false;
  const promise = p.finally(() => {
    done = true;
  });
  promise.catch(() => undefined);
  return { promise, settled: () => done };
}

function client(sim: ConsulSim, extra: { token?: string } = {}): Consul {
  return new Consul({
    host: '127.0.0.1',
    port: sim.port,
    agent: new Agent({ keepAlive: false }),
    ...(extra.token === undefined ? {} : { defaults: { token: extra.token } }),
  });
}

async function setup(t: TestContext, options: SimOptions = {}): Promise<{ sim: ConsulSim; consul: Consul }> {
  const sim = new ConsulSim({ datacenters: ['dc1', 'dc2'], ...options });
  await sim.start(0);
  const consul = client(sim);
  t.after(async () => {
    consul.destroy();
    await sim.stop();
  });
  return { sim, consul };
}

/** Two nodes in dc1 with web (x2) and db, all passing; one node with web in dc2. */
function seed(sim: ConsulSim): void {
  sim.registerNode('dc1', { Node: 'node-a', Address: '10.0.0.1', Meta: { rack: 'r1' } });
  sim.registerNode('dc1', { Node: 'node-b', Address: '10.0.0.2' });
  sim.registerService('dc1', 'node-a', { ID: 'web-a', Service: 'web', Tags: ['v1', 'primary'], Port: 8080 });
  sim.registerService('dc1', 'node-b', { ID: 'web-b', Service: 'web', Tags: ['v2', 'v1'], Port: 8081, Weights: { Passing: 10, Warning: 1 } });
  sim.registerService('dc1', 'node-b', { ID: 'db', Service: 'db', Address: '10.0.0.20', Port: 5432 });
  sim.setCheck('dc1', 'node-a', { CheckID: 'serfHealth', Name: 'Serf Health Status', Status: 'passing' });
  sim.setCheck('dc1', 'node-b', { CheckID: 'serfHealth', Name: 'Serf Health Status', Status: 'passing' });
  sim.setCheck('dc1', 'node-a', { CheckID: 'service:web-a', Status: 'passing', ServiceID: 'web-a' });
  sim.setCheck('dc1', 'node-b', { CheckID: 'service:web-b', Status: 'passing', ServiceID: 'web-b' });
  sim.setCheck('dc1', 'node-b', { CheckID: 'service:db', Status: 'passing', ServiceID: 'db' });
  sim.registerNode('dc2', { Node: 'far', Address: '10.2.0.1' });
  sim.registerService('dc2', 'far', { Service: 'web', Port: 80 });
}

// ------------------------------------------------------------------------------------------------
// Shapes

test('catalog/datacenters lists the datacenters, the agent’s own first, without query meta', async (t) => {
  const { consul } = await setup(t);
  const { res, body } = await datacenters(consul);
  assert.deepEqual(body, ['dc1', 'dc2']);
  assert.equal(header(res, 'Content-Type'), 'application/json');
  assert.equal(header(res, 'X-Consul-Index'), undefined);
});

test('catalog/services maps each service to its tags, deduplicated across instances', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  const { res, body } = await services(consul);
  assert.deepEqual(body, { db: [], web: ['primary', 'v1', 'v2'] });
  assert.equal(header(res, 'Content-Type'), 'application/json');
  assert.equal(header(res, 'X-Consul-Knownleader'), 'true');
  assert.equal(header(res, 'X-Consul-Lastcontact'), '0');
  assert.equal(header(res, 'X-Consul-Effective-Consistency'), 'leader');
  // The services table last changed with the db registration (index 6 in dc1); checks came later.
  assert.equal(indexOf(res), 6);
  assert.ok(sim.index('dc1') > 6);
  sim.setCheck('dc1', 'node-a', { CheckID: 'service:web-a', Status: 'critical', ServiceID: 'web-a' });
  assert.equal(indexOf((await services(consul)).res), 6, 'check changes leave the services index alone');
  sim.registerService('dc1', 'node-a', { ID: 'cache', Service: 'cache', Tags: ['hot'] });
  const after = await services(consul);
  assert.equal(indexOf(after.res), sim.index('dc1'));
  assert.deepEqual(after.body, { cache: ['hot'], db: [], web: ['primary', 'v1', 'v2'] });
  assert.deepEqual((await services(consul, { dc: 'dc2' })).body, { web: [] });
});

test('catalog/nodes lists nodes in Consul’s shape, sorted by name', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  const { res, body } = await nodes(consul);
  assert.equal(body.length, 2);
  const [a, b] = body;
  assert.match(String(a?.ID), /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.deepEqual(a, {
    ID: a?.ID,
    Node: 'node-a',
    Address: '10.0.0.1',
    Datacenter: 'dc1',
    TaggedAddresses: { lan: '10.0.0.1', lan_ipv4: '10.0.0.1', wan: '10.0.0.1', wan_ipv4: '10.0.0.1' },
    Meta: { rack: 'r1' },
    CreateIndex: 2,
    ModifyIndex: 2,
  });
  assert.equal(b?.Node, 'node-b');
  assert.deepEqual(b?.Meta, {});
  // Service registrations touch the nodes table too (catalogInsertService).
  assert.equal(indexOf(res), 6);
});

test('health/service returns node, service and checks in Consul’s shape, node-level checks first', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  const { res, body } = await health(consul, 'web');
  assert.equal(header(res, 'Content-Type'), 'application/json');
  assert.deepEqual(
    body.map((e) => e.Service.ID),
    ['web-a', 'web-b'],
  );
  const b = body[1] as Entry;
  assert.deepEqual(b.Service, {
    ID: 'web-b',
    Service: 'web',
    Tags: ['v2', 'v1'],
    Address: '',
    Meta: {},
    Port: 8081,
    Weights: { Passing: 10, Warning: 1 },
    EnableTagOverride: false,
    Proxy: { Mode: '', MeshGateway: {}, Expose: {} },
    Connect: {},
    PeerName: '',
    CreateIndex: 5,
    ModifyIndex: 5,
  });
  assert.equal(b.Node.Node, 'node-b');
  assert.deepEqual(
    b.Checks.map((c) => [c.CheckID, c.ServiceID]),
    [
      ['serfHealth', ''],
      ['service:web-b', 'web-b'],
    ],
  );
  assert.deepEqual(b.Checks[1], {
    Node: 'node-b',
    CheckID: 'service:web-b',
    Name: 'service:web-b',
    Status: 'passing',
    Notes: '',
    Output: '',
    ServiceID: 'web-b',
    ServiceName: 'web',
    ServiceTags: ['v2', 'v1'],
    Type: '',
    Interval: '',
    Timeout: '',
    ExposedPort: 0,
    Definition: {},
    CreateIndex: 10,
    ModifyIndex: 10,
  });
  assert.deepEqual(b.Checks[0]?.ServiceTags, []);
  // The index is the last change to web's instances or their checks (service:web-b at 10).
  assert.equal(indexOf(res), 10);
  const dc2 = await health(consul, 'web', { dc: 'dc2' });
  assert.deepEqual(dc2.body.map((e) => [e.Node.Node, e.Service.ID, e.Service.Port]), [['far', 'web', 80]]);
});

test('health/service for an unknown service answers 200 [] with a non-zero index', async (t) => {
  const { sim, consul } = await setup(t);
  const empty = await health(consul, 'nothing');
  assert.equal(empty.res.statusCode, 200);
  assert.deepEqual(empty.body, []);
  assert.equal(indexOf(empty.res), 1, 'an empty catalog still answers X-Consul-Index 1, never 0');
  seed(sim);
  sim.deregisterService('dc1', 'node-b', 'db');
  const gone = await health(consul, 'db');
  assert.deepEqual(gone.body, []);
  assert.equal(indexOf(gone.res), sim.index('dc1'), 'a vanished service reports its extinction index');
});

test('X-Consul-Index never goes backwards while the catalog changes', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  let last = { web: 0, services: 0, nodes: 0 };
  const steps: (() => void)[] = [
    () => sim.setCheck('dc1', 'node-a', { CheckID: 'service:web-a', Status: 'warning', ServiceID: 'web-a' }),
    () => sim.registerService('dc1', 'node-a', { ID: 'api', Service: 'api' }),
    () => sim.setCheck('dc1', 'node-b', { CheckID: 'serfHealth', Status: 'critical' }),
    () => sim.removeCheck('dc1', 'node-b', 'serfHealth'),
    () => sim.deregisterService('dc1', 'node-a', 'api'),
    () => sim.registerNode('dc1', { Node: 'node-c', Address: '10.0.0.3' }),
    () => sim.deregisterNode('dc1', 'node-c'),
  ];
  for (const step of steps) {
    step();
    const now = {
      web: indexOf((await health(consul, 'web')).res),
      services: indexOf((await services(consul)).res),
      nodes: indexOf((await nodes(consul)).res),
    };
    assert.ok(now.web >= last.web && now.services >= last.services && now.nodes >= last.nodes, JSON.stringify({ last, now }));
    assert.ok(Math.max(now.web, now.services, now.nodes) <= sim.index('dc1'));
    last = now;
  }
});

// ------------------------------------------------------------------------------------------------
// Blocking queries

test('blocking: a parked query wakes at a relevant change (the write itself answers it) and returns the new data', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  const first = await health(consul, 'web');
  const idx = indexOf(first.res);
  const parked = tracked(health(consul, 'web', { index: String(idx), wait: '10s' }));
  await until(() => sim.waiting() === 1, 'the query to park');
  const record = sim.requests.at(-1)!;
  assert.ok(record.parkedForMs !== null && record.parkedForMs >= 10_000, `parked for ?wait=10s (${record.parkedForMs} ms)`);
  await sleep(30);
  assert.equal(parked.settled(), false, 'nothing changed, so it is still blocked');
  sim.setCheck('dc1', 'node-a', { CheckID: 'service:web-a', Status: 'critical', ServiceID: 'web-a', Output: 'down' });
  // Not by a timer or a poll: by the time the write returns, the query is answered.
  assert.equal(sim.waiting(), 0, 'woken by the write itself');
  assert.equal(record.wokenBy, 'change');
  const { res, body } = await parked.promise;
  assert.equal(record.status, 200);
  assert.ok(indexOf(res) > idx);
  assert.equal(indexOf(res), sim.index('dc1'));
  const check = body[0]?.Checks.find((c) => c.CheckID === 'service:web-a');
  assert.equal(check?.Status, 'critical');
  assert.equal(check?.Output, 'down');
  assert.equal(sim.waiting(), 0);
});

test('blocking: changes to other services and unrelated nodes do not wake the query', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  sim.registerNode('dc1', { Node: 'node-c', Address: '10.0.0.3' });
  sim.registerService('dc1', 'node-c', { ID: 'db-c', Service: 'db' });
  const idx = indexOf((await health(consul, 'web')).res);
  const parked = tracked(health(consul, 'web', { index: String(idx), wait: '10s' }));
  await until(() => sim.waiting() === 1, 'the query to park');
  sim.setCheck('dc1', 'node-b', { CheckID: 'service:db', Status: 'critical', ServiceID: 'db' }); // db on a web node
  sim.registerService('dc1', 'node-a', { ID: 'cache', Service: 'cache' });
  sim.setCheck('dc1', 'node-c', { CheckID: 'serfHealth', Status: 'critical' }); // node without web
  sim.registerNode('dc1', { Node: 'node-c', Address: '10.0.0.33' });
  sim.deregisterService('dc1', 'node-c', 'db-c');
  sim.registerService('dc2', 'far', { ID: 'web-2', Service: 'web' }); // other dc, own index
  // Writes wake queries at once (the test above): after a round trip through the sim, a woken
  // query would have been answered.
  assert.equal(sim.waiting(), 1, 'unrelated writes must not wake a web query');
  await services(consul);
  assert.equal(parked.settled(), false, 'unrelated writes must not wake a web query');
  assert.equal(sim.waiting(), 1);
  sim.setCheck('dc1', 'node-b', { CheckID: 'serfHealth', Status: 'warning' }); // node-level check of a web node
  const { res } = await parked.promise;
  assert.equal(indexOf(res), sim.index('dc1'));
});

test('blocking: with nothing changing it answers after ?wait (+ at most wait/16) with the same index', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  const idx = indexOf((await services(consul)).res);
  sim.setCheck('dc1', 'node-a', { CheckID: 'serfHealth', Status: 'warning' }); // not in the services table
  const started = performance.now();
  const { res, body } = await services(consul, { index: String(idx), wait: '300ms' });
  const elapsed = performance.now() - started;
  // When it answered is the simulator's own record (the wall clock is only trusted not to run fast).
  const blocked = sim.requests.at(-1)!;
  assert.equal(blocked.wokenBy, 'timeout', 'answered by its wait running out');
  assert.ok(blocked.parkedForMs !== null && blocked.parkedForMs >= 300 && blocked.parkedForMs <= 300 * (17 / 16), `parked for ${blocked.parkedForMs} ms`);
  assert.ok(elapsed >= 295, `answered after ${elapsed.toFixed(0)} ms`);
  assert.equal(indexOf(res), idx);
  assert.deepEqual(body, { db: [], web: ['primary', 'v1', 'v2'] });
  // ?index=0 (or absent) never blocks.
  await services(consul, { index: '0', wait: '5s' });
  const unblocked = sim.requests.at(-1)!;
  assert.deepEqual([unblocked.query.index, unblocked.parkedForMs, unblocked.status], ['0', null, 200], 'answered without parking');
});

test('blocking: an index newer than the data (it went backwards) blocks until ?wait, like Consul', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  const started = performance.now();
  const { res } = await health(consul, 'web', { index: '1000', wait: '200ms' });
  assert.ok(performance.now() - started >= 195);
  assert.equal(sim.requests.at(-1)!.wokenBy, 'timeout');
  assert.equal(indexOf(res), 10);
});

test('?passing drops every entry with a non-passing check, node-level checks included', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  sim.registerNode('dc1', { Node: 'node-c', Address: '10.0.0.3' });
  sim.registerService('dc1', 'node-c', { ID: 'web-c', Service: 'web' });
  const ids = async (opts: Opts = {}) => (await health(consul, 'web', opts)).body.map((e) => e.Service.ID);
  assert.deepEqual(await ids({ passing: true }), ['web-a', 'web-b', 'web-c']);
  sim.setCheck('dc1', 'node-a', { CheckID: 'service:web-a', Status: 'warning', ServiceID: 'web-a' });
  // Consul's filterNonPassing swaps the last entry into the hole, so order is not kept.
  assert.deepEqual(await ids({ passing: true }), ['web-c', 'web-b']);
  sim.setCheck('dc1', 'node-b', { CheckID: 'serfHealth', Status: 'critical' });
  assert.deepEqual(await ids({ passing: true }), ['web-c']);
  assert.deepEqual(await ids(), ['web-a', 'web-b', 'web-c'], 'without ?passing everything is listed');
  const bare = await fetch(`${sim.url}/v1/health/service/web?passing`);
  assert.deepEqual(((await bare.json()) as Entry[]).map((e) => e.Service.ID), ['web-c']);
  const bad = await fetch(`${sim.url}/v1/health/service/web?passing=maybe`);
  assert.equal(bad.status, 400);
  assert.equal(await bad.text(), 'Invalid value for ?passing');
});

// ------------------------------------------------------------------------------------------------
// Errors, ACLs, consistency

test('an unknown datacenter answers 500 text/plain "No path to datacenter"', async (t) => {
  const { sim, consul } = await setup(t);
  const err = await failure(health(consul, 'web', { dc: 'nowhere' }));
  assert.equal(err.statusCode, 500);
  assert.equal(err.message, 'No path to datacenter');
  assert.equal(header(err.response as Res, 'Content-Type'), 'text/plain; charset=utf-8');
  const raw = await fetch(`${sim.url}/v1/catalog/services?dc=nowhere`);
  assert.equal(raw.status, 500);
  assert.equal(await raw.text(), 'No path to datacenter');
  // Catalog handlers defer setMeta, so their errors still carry zero query meta.
  assert.equal(raw.headers.get('X-Consul-Index'), '1');
  assert.equal(raw.headers.get('X-Consul-KnownLeader'), 'false');
});

test('ACLs: unknown token 403 "ACL not found", no token reads filtered empty, no token writes 403 "Permission denied"', async (t) => {
  const { sim, consul } = await setup(t, { aclTokens: ['s3cret'] });
  seed(sim);
  // No token: the anonymous token, which has no rights; reads are filtered, not refused.
  const anon = await health(consul, 'web');
  assert.equal(anon.res.statusCode, 200);
  assert.deepEqual(anon.body, []);
  assert.equal(indexOf(anon.res), 10, 'filtered results still carry the real index');
  assert.deepEqual((await services(consul)).body, {});
  assert.deepEqual((await nodes(consul)).body, []);
  assert.equal(header(anon.res, 'X-Consul-Default-Acl-Policy'), 'deny');

  const bad = client(sim, { token: 'wrong' });
  t.after(() => bad.destroy());
  const err = await failure(health(bad, 'web'));
  assert.equal(err.statusCode, 403);
  assert.equal(err.message, 'ACL not found');

  const good = client(sim, { token: 's3cret' });
  t.after(() => good.destroy());
  assert.equal((await health(good, 'web')).body.length, 2);
  const viaQuery = await fetch(`${sim.url}/v1/catalog/services?token=s3cret`);
  assert.deepEqual(await viaQuery.json(), { db: [], web: ['primary', 'v1', 'v2'] });
  const viaBearer = await fetch(`${sim.url}/v1/catalog/nodes`, { headers: { Authorization: 'Bearer s3cret' } });
  assert.equal(((await viaBearer.json()) as unknown[]).length, 2);

  const write = await fetch(`${sim.url}/v1/catalog/register`, { method: 'PUT', body: JSON.stringify({ Node: 'x', Address: '10.9.0.1', Service: { Service: 'api' } }) });
  assert.equal(write.status, 403);
  assert.equal(
    await write.text(),
    'Permission denied: anonymous token lacks permission \'service:write\' on "api". The anonymous token is used implicitly when a request does not specify a token.',
  );
  const nodeWrite = await fetch(`${sim.url}/v1/catalog/register`, { method: 'PUT', body: JSON.stringify({ Node: 'x', Address: '10.9.0.1' }) });
  assert.match(await nodeWrite.text(), /^Permission denied: anonymous token lacks permission 'node:write' on "x"\./);
  const badWrite = await fetch(`${sim.url}/v1/catalog/register`, { method: 'PUT', headers: { 'X-Consul-Token': 'nope' }, body: JSON.stringify({ Node: 'x', Address: '10.9.0.1' }) });
  assert.equal(badWrite.status, 403);
  assert.equal(await badWrite.text(), 'ACL not found');
  const okWrite = await fetch(`${sim.url}/v1/catalog/register`, { method: 'PUT', headers: { 'X-Consul-Token': 's3cret' }, body: JSON.stringify({ Node: 'x', Address: '10.9.0.1' }) });
  assert.equal(await okWrite.text(), 'true');
  // Datacenters are not ACL-protected.
  assert.deepEqual((await datacenters(bad)).body, ['dc1', 'dc2']);
});

test('stale reads report X-Consul-LastContact; default and consistent reads, served by the leader, report 0', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  sim.lastContactMs = 1234;
  const stale = await services(consul, { stale: true });
  assert.equal(header(stale.res, 'X-Consul-Lastcontact'), '1234');
  assert.equal(header(stale.res, 'X-Consul-Knownleader'), 'true');
  assert.equal(header(stale.res, 'X-Consul-Effective-Consistency'), 'stale');
  const def = await services(consul);
  assert.equal(header(def.res, 'X-Consul-Lastcontact'), '0');
  const consistent = await services(consul, { consistent: true });
  assert.equal(header(consistent.res, 'X-Consul-Lastcontact'), '0');
  assert.equal(header(consistent.res, 'X-Consul-Effective-Consistency'), 'consistent');
  const staleHealth = await health(consul, 'web', { stale: true });
  assert.equal(header(staleHealth.res, 'X-Consul-Lastcontact'), '1234');
  const both = await fetch(`${sim.url}/v1/catalog/services?stale&consistent`);
  assert.equal(both.status, 400);
  assert.equal(await both.text(), 'Cannot specify ?stale with ?consistent, conflicting semantics.');
});

test('no leader: stale reads answer with KnownLeader false, other reads and writes 500 "No cluster leader"', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  sim.leader = false;
  sim.lastContactMs = 5000;
  const stale = await health(consul, 'web', { stale: true });
  assert.equal(header(stale.res, 'X-Consul-Knownleader'), 'false');
  assert.equal(header(stale.res, 'X-Consul-Lastcontact'), '5000');
  assert.equal(stale.body.length, 2);
  const err = await failure(health(consul, 'web'));
  assert.equal(err.statusCode, 500);
  assert.equal(err.message, 'No cluster leader');
  assert.equal((await failure(services(consul, { consistent: true }))).message, 'No cluster leader');
  const write = await fetch(`${sim.url}/v1/catalog/register`, { method: 'PUT', body: JSON.stringify({ Node: 'x', Address: '10.9.0.1' }) });
  assert.equal(write.status, 500);
  assert.equal(await write.text(), 'No cluster leader');
  sim.leader = true;
  assert.equal((await health(consul, 'web')).body.length, 2);
});

test('no leader with rpcHoldTimeoutMs: the request waits for a leader, and succeeds if one appears', async (t) => {
  const { sim, consul } = await setup(t, { rpcHoldTimeoutMs: 150 });
  seed(sim);
  sim.leader = false;
  const t0 = performance.now();
  const err = await failure(services(consul));
  assert.ok(performance.now() - t0 >= 140);
  assert.equal(err.statusCode, 500);
  const pending = services(consul);
  // A leader appears while the request waits for one.
  const waiting = await sim.until((r) => r.path === '/v1/catalog/services' && r.status === null, 'the second request');
  sim.leader = true;
  assert.equal((await pending).res.statusCode, 200);
  assert.equal(waiting.status, 200);
});

test('bad ?wait and ?index answer 400 with Consul’s texts; Go durations parse like Go', async (t) => {
  const { sim } = await setup(t);
  const wait = await fetch(`${sim.url}/v1/catalog/services?index=1&wait=10`);
  assert.equal(wait.status, 400);
  assert.equal(await wait.text(), 'Invalid wait time');
  const index = await fetch(`${sim.url}/v1/catalog/services?index=-1`);
  assert.equal(index.status, 400);
  assert.equal(await index.text(), 'Invalid index');
  assert.equal(parseGoDuration('10s'), 10_000);
  assert.equal(parseGoDuration('5m'), 300_000);
  assert.equal(parseGoDuration('500ms'), 500);
  assert.equal(parseGoDuration('1h30m0.5s'), 5_400_500);
  assert.equal(parseGoDuration('0'), 0);
  assert.equal(parseGoDuration('10'), null);
  assert.equal(parseGoDuration('.s'), null);
});

test('routing: unknown paths 404, wrong methods 405 with Allow, OPTIONS lists methods', async (t) => {
  const { sim } = await setup(t);
  const missing = await fetch(`${sim.url}/v1/no/such/thing`);
  assert.equal(missing.status, 404);
  assert.equal(await missing.text(), 'Invalid URL path: not a recognized HTTP API endpoint\n');
  const post = await fetch(`${sim.url}/v1/catalog/services`, { method: 'POST' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('Allow'), 'OPTIONS,GET');
  assert.equal(await post.text(), 'method POST not allowed');
  const options = await fetch(`${sim.url}/v1/catalog/register`, { method: 'OPTIONS' });
  assert.equal(options.status, 200);
  assert.equal(options.headers.get('Allow'), 'OPTIONS,PUT');
  const noName = await fetch(`${sim.url}/v1/health/service/`);
  assert.equal(noName.status, 400);
  assert.equal(await noName.text(), 'Missing service name');
});

// ------------------------------------------------------------------------------------------------
// Faults, restarts

test('fault error500: every call answers 500 "rpc error making call: EOF", blocked queries too, until none', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  const idx = indexOf((await health(consul, 'web')).res);
  const parked = tracked(health(consul, 'web', { index: String(idx), wait: '10s' }));
  await until(() => sim.waiting() === 1, 'the query to park');
  const blocked = sim.requests.at(-1)!;
  await sim.fault('error500');
  const blockedErr = await failure(parked.promise);
  assert.equal(blockedErr.statusCode, 500);
  assert.equal(blockedErr.message, RPC_ERROR_TEXT);
  assert.deepEqual([blocked.wokenBy, blocked.status], ['fault', 500], 'the record says what answered it');
  assert.equal((await failure(services(consul))).statusCode, 500);
  assert.equal((await failure(datacenters(consul))).statusCode, 500);
  const write = await fetch(`${sim.url}/v1/catalog/deregister`, { method: 'PUT', body: JSON.stringify({ Node: 'node-a' }) });
  assert.equal(write.status, 500);
  assert.equal(await write.text(), RPC_ERROR_TEXT);
  await sim.fault('none');
  assert.equal((await health(consul, 'web')).body.length, 2, 'the failed write changed nothing');
});

test('fault hang: requests get no answer (the client times out) and are served once the mode changes', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  await sim.fault('hang');
  const err = await failure(services(consul, { timeout: 200 }));
  assert.equal(err.isTimeout, true, String(err));
  const gaveUp = await sim.until((r) => r.abandoned, 'the request the client gave up on');
  assert.deepEqual([gaveUp.path, gaveUp.status], ['/v1/catalog/services', null]);
  const pending = tracked(fetch(`${sim.url}/v1/catalog/services`));
  await until(() => sim.requests.length >= 2, 'the second request to arrive');
  await sleep(50);
  assert.equal(pending.settled(), false);
  await sim.fault('none');
  const res = await pending.promise;
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { db: [], web: ['primary', 'v1', 'v2'] });
});

test('fault refuse: connections are refused, then the same port serves again', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  const port = sim.port;
  await sim.fault('refuse');
  const err = await failure(services(consul));
  assert.equal(err.code, 'ECONNREFUSED');
  sim.registerService('dc1', 'node-a', { ID: 'late', Service: 'late' }); // the state still takes writes
  await sim.fault('none');
  assert.equal(sim.port, port);
  assert.deepEqual(Object.keys((await services(consul)).body), ['db', 'late', 'web']);
});

test('restart with a lower index: blocked queries drop, later answers carry the lower index', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  const before = indexOf((await health(consul, 'web')).res);
  const parked = tracked(health(consul, 'web', { index: String(before), wait: '10s' }));
  await until(() => sim.waiting() === 1, 'the query to park');
  const port = sim.port;
  await sim.restart();
  const dropped = await failure(parked.promise);
  assert.match(String(dropped.code ?? dropped.message), /ECONNRESET|socket hang up/);
  assert.equal(sim.port, port);
  assert.equal(sim.index('dc1'), 1);
  const now = await health(consul, 'web');
  assert.ok(indexOf(now.res) < before);
  assert.equal(indexOf(now.res), 1);
  assert.equal(now.body.length, 2, 'the catalog survived');
  assert.equal(now.body[0]?.Service.ModifyIndex, 1);
  // A client that keeps the old index is not answered early (Consul only wakes on index > ?index).
  const t0 = performance.now();
  const stuck = await health(consul, 'web', { index: String(before), wait: '250ms' });
  assert.ok(performance.now() - t0 >= 245);
  assert.equal(indexOf(stuck.res), 1);
  // A client that resets to the new index sees the next write at once.
  const next = tracked(health(consul, 'web', { index: '1', wait: '10s' }));
  await until(() => sim.waiting() === 1, 'the query to park');
  sim.setCheck('dc1', 'node-a', { CheckID: 'service:web-a', Status: 'warning', ServiceID: 'web-a' });
  assert.equal(indexOf((await next.promise).res), 2);
});

test('the consul client’s watch follows changes and resets when the index goes backwards', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  const seen: { index: number; ids: unknown[] }[] = [];
  const watch = consul.watch({ method: (opts: Opts) => consul.health.service(opts as never), options: { service: 'web', wait: '400ms' } });
  watch.on('change', (data: Entry[], res: Res) => seen.push({ index: indexOf(res), ids: data.map((e) => e.Service.ID) }));
  watch.on('error', () => undefined);
  t.after(() => watch.end());
  await until(() => seen.length === 1, 'the first change');
  sim.registerNode('dc1', { Node: 'node-c', Address: '10.0.0.3' });
  sim.registerService('dc1', 'node-c', { ID: 'web-c', Service: 'web' });
  await until(() => seen.length === 2, 'the registration');
  assert.deepEqual(seen[1]?.ids, ['web-a', 'web-b', 'web-c']);
  await sim.restart();
  await until(() => seen.some((s) => s.index === 1), 'the reset after restart', 4000);
});

test('stop() closes the port; start() serves the same catalog on the same port', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  const port = sim.port;
  await sim.stop();
  assert.equal((await failure(services(consul))).code, 'ECONNREFUSED');
  await sim.start();
  assert.equal(sim.port, port);
  assert.deepEqual(Object.keys((await services(consul)).body), ['db', 'web']);
});

// ------------------------------------------------------------------------------------------------
// Registration over HTTP, request log

test('PUT /v1/catalog/register and /deregister answer true and change what reads return', async (t) => {
  const { sim, consul } = await setup(t);
  const put = (path: string, body: unknown) => fetch(`${sim.url}${path}`, { method: 'PUT', body: JSON.stringify(body) });
  const reg = await put('/v1/catalog/register', {
    Datacenter: 'dc1',
    Node: 'ext-1',
    Address: '192.0.2.10',
    NodeMeta: { zone: 'z1' },
    Service: { ID: 'pay-1', Service: 'payments', Tags: ['blue'], Port: 9443, Meta: { ver: '2' } },
    Check: { CheckID: 'pay-alive', Name: 'alive', Status: 'passing', ServiceID: 'pay-1' },
  });
  assert.equal(reg.status, 200);
  assert.equal(reg.headers.get('Content-Type'), 'application/json');
  assert.equal(await reg.text(), 'true');
  const [entry] = (await health(consul, 'payments')).body;
  assert.deepEqual(entry?.Node, {
    ID: '',
    Node: 'ext-1',
    Address: '192.0.2.10',
    Datacenter: 'dc1',
    TaggedAddresses: null, // the catalog stores what it is given
    Meta: { zone: 'z1' },
    CreateIndex: 2,
    ModifyIndex: 2,
  });
  assert.deepEqual(entry?.Service.Weights, { Passing: 1, Warning: 1 });
  assert.deepEqual(entry?.Service.Meta, { ver: '2' });
  assert.deepEqual(entry?.Checks.map((c) => [c.CheckID, c.Status, c.ServiceName]), [['pay-alive', 'passing', 'payments']]);

  // Node-only registration, a check without status (Consul defaults it to critical), then removals.
  assert.equal(await (await put('/v1/catalog/register', { Node: 'ext-1', Address: '192.0.2.10', NodeMeta: { zone: 'z1' }, Checks: [{ CheckID: 'disk', Name: 'disk' }] })).text(), 'true');
  const withNodeCheck = (await health(consul, 'payments')).body[0];
  assert.deepEqual(withNodeCheck?.Checks.map((c) => [c.CheckID, c.Status]), [['disk', 'critical'], ['pay-alive', 'passing']]);
  assert.deepEqual((await health(consul, 'payments', { passing: true })).body, []);
  assert.equal(await (await put('/v1/catalog/deregister', { Node: 'ext-1', CheckID: 'disk' })).text(), 'true');
  assert.equal((await health(consul, 'payments', { passing: true })).body.length, 1);
  assert.equal(await (await put('/v1/catalog/deregister', { Node: 'ext-1', ServiceID: 'pay-1' })).text(), 'true');
  assert.deepEqual((await health(consul, 'payments')).body, []);
  assert.equal((await nodes(consul)).body.length, 1);
  assert.equal(await (await put('/v1/catalog/deregister', { Node: 'ext-1' })).text(), 'true');
  assert.deepEqual((await nodes(consul)).body, []);

  // The consul client's own register/deregister calls.
  await consul.catalog.register({ node: 'ext-2', address: '192.0.2.11', service: { id: 'api-1', service: 'api', port: 80, tags: ['x'] } });
  assert.deepEqual((await services(consul)).body, { api: ['x'] });
  await consul.catalog.deregister({ node: 'ext-2', serviceid: 'api-1' });
  assert.deepEqual((await services(consul)).body, {});

  // Errors as Consul words them.
  const noNode = await put('/v1/catalog/register', { Address: '192.0.2.12' });
  assert.equal(noNode.status, 500);
  assert.equal(await noNode.text(), 'Must provide node');
  const garbage = await fetch(`${sim.url}/v1/catalog/register`, { method: 'PUT', body: '{' });
  assert.equal(garbage.status, 400);
  assert.match(await garbage.text(), /^Request decode failed: /);
  const orphanCheck = await put('/v1/catalog/register', { Node: 'ext-3', Address: '192.0.2.13', Check: { CheckID: 'c', ServiceID: 'none' } });
  assert.equal(orphanCheck.status, 500);
  assert.equal(await orphanCheck.text(), 'failed inserting check on node "ext-3": Missing service registration');
  const elsewhere = await put('/v1/catalog/register', { Datacenter: 'dc9', Node: 'n', Address: '192.0.2.14' });
  assert.equal(await elsewhere.text(), 'No path to datacenter');
});

test('requests records every request with its path, query and token', async (t) => {
  const { sim, consul } = await setup(t);
  const started = Date.now();
  const tokened = client(sim, { token: 'tok-1' });
  t.after(() => tokened.destroy());
  await health(tokened, 'web', { passing: true, stale: true });
  await fetch(`${sim.url}/v1/catalog/nodes?dc=dc2&token=tok-2`);
  await fetch(`${sim.url}/v1/nope`);
  await datacenters(consul);
  const at = Date.now();
  assert.deepEqual(
    sim.requests.map(({ method, path, query, token }) => ({ method, path, query, token })),
    [
      { method: 'GET', path: '/v1/health/service/web', query: { passing: 'true', stale: '1' }, token: 'tok-1' },
      { method: 'GET', path: '/v1/catalog/nodes', query: { dc: 'dc2', token: 'tok-2' }, token: 'tok-2' },
      { method: 'GET', path: '/v1/nope', query: {}, token: null },
      { method: 'GET', path: '/v1/catalog/datacenters', query: {}, token: null },
    ],
  );
  assert.ok(sim.requests.every((r) => r.at >= started && r.at <= at), 'each stamped when it arrived');
});

test('large answers are gzipped for clients that ask, like Consul’s gzip handler', async (t) => {
  const { sim } = await setup(t);
  seed(sim);
  for (let i = 0; i < 20; i++) sim.registerService('dc1', 'node-a', { ID: `bulk-${i}`, Service: 'bulk', Port: 1000 + i });
  const res = await fetch(`${sim.url}/v1/health/service/bulk`, { headers: { 'Accept-Encoding': 'gzip' } });
  assert.equal(res.headers.get('Content-Encoding'), 'gzip');
  assert.equal(res.headers.get('Vary'), 'Accept-Encoding');
  assert.equal(((await res.json()) as unknown[]).length, 20);
});

// ------------------------------------------------------------------------------------------------
// Prepared queries

test('prepared queries: create, then execute by name or ID with tags (!tag), OnlyPassing, DNS TTL and failover', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  sim.setCheck('dc1', 'node-b', { CheckID: 'service:web-b', Status: 'warning', ServiceID: 'web-b' });
  const created = await call<{ ID: string }>((o) => consul.query.create(o as never), {
    name: 'web-v1',
    service: { service: 'web', tags: ['v1', '!primary'] },
    dns: { ttl: '10s' },
  });
  assert.match(created.body.ID, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  type Execution = { Service: string; Nodes: Entry[]; DNS: { TTL: string }; Datacenter: string; Failovers: number };
  const byName = await call<Execution>((o) => consul.query.execute(o as never), { query: 'web-v1' });
  assert.equal(byName.body.Service, 'web');
  assert.deepEqual(byName.body.DNS, { TTL: '10s' });
  assert.equal(byName.body.Datacenter, 'dc1');
  assert.equal(byName.body.Failovers, 0);
  assert.deepEqual(byName.body.Nodes.map((e) => e.Service.ID), ['web-b'], 'v1 without primary; warning kept');
  const byId = await call<Execution>((o) => consul.query.execute(o as never), { query: created.body.ID });
  assert.deepEqual(byId.body.Nodes.map((e) => e.Service.ID), ['web-b']);

  // OnlyPassing drops the warning instance; nothing left in dc1, so the failover datacenter answers.
  await call((o) => consul.query.create(o as never), { name: 'web-failover', service: { service: 'web', tags: ['v2'], onlypassing: true, failover: { datacenters: ['nowhere', 'dc2'] } } });
  const failed = await call<Execution>((o) => consul.query.execute(o as never), { query: 'web-failover' });
  // Tags apply in dc2 too: far's web has no v2, so dc2 has nothing either; Failovers counts known datacenters tried.
  assert.deepEqual([failed.body.Nodes.length, failed.body.Datacenter, failed.body.Failovers], [0, 'dc2', 1]);
  await call((o) => consul.query.create(o as never), { name: 'any-web', service: { service: 'web', onlypassing: true, failover: { nearestn: 1 } } });
  sim.setCheck('dc1', 'node-a', { CheckID: 'serfHealth', Name: 'Serf Health Status', Status: 'critical' });
  const near = await call<Execution>((o) => consul.query.execute(o as never), { query: 'any-web' });
  assert.deepEqual([near.body.Nodes.map((e) => e.Node.Node), near.body.Datacenter, near.body.Failovers], [['far'], 'dc2', 1]);

  // The definition, as explain shows it.
  const res = await fetch(`${sim.url}/v1/query/web-v1/explain`);
  const explained = (await res.json()) as { Query: { Name: string; Service: { Near: string; Tags: string[] } } };
  assert.deepEqual([explained.Query.Name, explained.Query.Service.Tags, explained.Query.Service.Near], ['web-v1', ['v1', '!primary'], '']);
});

test('prepared queries: unknown query 404, bad definitions rejected, queries belong to their datacenter', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  const missing = await failure(consul.query.execute({ query: 'nope' } as never));
  assert.equal(missing.statusCode, 404);
  assert.equal(missing.response?.body, 'Query not found');
  const bad = await fetch(`${sim.url}/v1/query`, { method: 'POST', body: JSON.stringify({ Name: 'x', Service: {} }) });
  assert.deepEqual([bad.status, await bad.text()], [500, 'Must provide a Service name to query']);
  const ttl = await fetch(`${sim.url}/v1/query`, { method: 'POST', body: JSON.stringify({ Name: 'x', Service: { Service: 'web' }, DNS: { TTL: 'soon' } }) });
  assert.equal(ttl.status, 500);
  assert.match(await ttl.text(), /^Bad DNS TTL 'soon'/);
  await call((o) => consul.query.create(o as never), { name: 'remote', service: { service: 'web' }, dc: 'dc2' });
  assert.equal((await failure(consul.query.execute({ query: 'remote' } as never))).statusCode, 404, 'not defined in dc1');
  const remote = await call<{ Nodes: Entry[]; Datacenter: string }>((o) => consul.query.execute(o as never), { query: 'remote', dc: 'dc2' });
  assert.deepEqual([remote.body.Nodes.map((e) => e.Node.Node), remote.body.Datacenter], [['far'], 'dc2']);
  const nowhere = await failure(consul.query.execute({ query: 'remote', dc: 'dc9' } as never));
  assert.deepEqual([nowhere.statusCode, nowhere.response?.body], [500, 'No path to datacenter']);
});

// ------------------------------------------------------------------------------------------------
// Liveness: /v1/status/leader and a hang that loses requests (hangLosesRequests)

test('status/leader: the leader address as a JSON string through the client, "" without a leader, 500 under error500', async (t) => {
  const { sim, consul } = await setup(t);
  assert.equal(await consul.status.leader(), '127.0.0.1:8300');
  sim.leader = false;
  const none = await fetch(`${sim.url}/v1/status/leader`);
  assert.deepEqual([none.status, await none.text()], [200, '""']);
  sim.leader = true;
  await sim.fault('error500');
  const err = await failure(consul.status.leader());
  assert.deepEqual([err.statusCode, err.message], [500, RPC_ERROR_TEXT]);
});

test('hangLosesRequests: parked reads are answered neither by a change nor after the hang; requests held by it never; later ones are', async (t) => {
  const { sim, consul } = await setup(t);
  seed(sim);
  sim.hangLosesRequests = true;
  const idx = indexOf((await health(consul, 'web')).res);
  const parked = tracked(health(consul, 'web', { index: String(idx), wait: '10s' }));
  await until(() => sim.waiting() === 1, 'the query to park');
  await sim.fault('hang');
  assert.equal(sim.waiting(), 0, 'no longer parked: stuck');
  const held = tracked(services(consul));
  await until(() => sim.requests.length >= 3, 'the held request to arrive');
  sim.setCheck('dc1', 'node-a', { CheckID: 'service:web-a', Status: 'critical', ServiceID: 'web-a' });
  await sim.fault('none');
  // A request after the hang is served (and sees the change); the two caught by it are not.
  assert.equal((await health(consul, 'web', { passing: true })).body.length, 1);
  assert.deepEqual([parked.settled(), held.settled()], [false, false]);
  const stuck = sim.requests.slice(1, 3);
  assert.deepEqual(stuck.map((r) => [r.path, r.status, r.wokenBy]), [
    ['/v1/health/service/web', null, null],
    ['/v1/catalog/services', null, null],
  ]);
  await sim.stop(); // closes them: their clients see the connection drop
  assert.match(String((await failure(parked.promise)).message), /socket hang up|ECONNRESET/);
  assert.match(String((await failure(held.promise)).message), /socket hang up|ECONNRESET/);
});
