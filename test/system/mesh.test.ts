/**
 * The service mesh names through dig: `NAME.connect` (sidecar proxies, Connect-native instances),
 * `NAME.ingress` (ingress gateways) and `NAME.virtual` (virtual IPs), from a catalog file and from
 * Consul (the simulator), with exact records, TTLs, sections and rcodes. Record sets that rotate
 * are compared sorted.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ConsulSim } from '../support/consul-sim.js';
import { dig, digEach, type DigResult } from '../support/dig.js';
import { eventually } from '../support/eventually.js';
import { TEST_SERIAL, startServer, type TestServer } from '../support/server.js';
import { startCli } from '../support/spawn.js';

/** Distinct service and node TTLs, so each record shows which one it got. */
const TTLS = { 'service-ttl': '30', 'node-ttl': '60' };

const SOA = `consul. 0 IN SOA ns.consul. hostmaster.consul. ${TEST_SERIAL} 3600 600 86400 0`;

/** web: two proxies (one with its own address), a VIP; api: Connect-native; two ingress gateways. */
const MESH_CATALOG = `
datacenter: dc1
nodes:
  - name: node1
    address: 10.0.0.1
    services:
      - {name: web, id: web1, port: 80}
      - {name: web-sidecar-proxy, id: web1-proxy, kind: connect-proxy, port: 21000, proxy: {destination: web}, virtual_ip: 240.0.0.1}
      - {name: api, id: api1, port: 9090, connect: {native: true}}
  - name: node2
    address: 10.0.0.2
    services:
      - {name: web, id: web2, port: 80}
      - name: web-sidecar-proxy
        id: web2-proxy
        kind: connect-proxy
        port: 21001
        address: 10.0.2.2
        proxy: {destination: web}
        virtual_ip: 240.0.0.1
        weights: {passing: 5, warning: 1}
      - {name: api, id: api2, port: 9090, connect: {native: true}, health: critical}
      - {name: db, id: db1, port: 5432}
      - {name: db-sidecar-proxy, id: db1-proxy, kind: connect-proxy, port: 21002, proxy: {destination: db}, health: critical}
  - name: gw1
    address: 10.0.0.9
    services:
      - {name: ingress, id: ingress1, kind: ingress-gateway, port: 8443, ingress: [{service: web, port: 8080}, {service: api}]}
  - name: gw2
    address: 10.0.0.10
    services:
      - {name: ingress, id: ingress2, kind: ingress-gateway, port: 8443, ingress: [{service: web, port: 8080}], health: warning}
  - name: far1
    datacenter: dc2
    address: 10.2.0.1
    services:
      - {name: web, id: web-dc2, port: 80}
      - {name: web-sidecar-proxy, id: web-dc2-proxy, kind: connect-proxy, port: 21000, proxy: {destination: web}}
`;

interface Case {
  q: string;
  type?: string;
  status: string;
  answer?: string[];
  authority?: string[];
  additional?: string[];
}

const sorted = (lines: readonly string[]): string[] => [...lines].sort();

/**
 * Checks each case's reply, section by section (sorted: round robin), through one dig process.
 * `anySerial`: the SOA serial is not compared (Consul's catalog publishes a snapshot per change).
 */
async function check(port: number, cases: readonly Case[], anySerial = false): Promise<void> {
  const results = await digEach(port, cases.map((c) => [c.q, c.type ?? 'A']));
  cases.forEach((c, i) => {
    const r = results[i]!;
    const what = `${c.q} ${c.type ?? 'A'}`;
    assert.equal(r.status, c.status, what);
    assert.ok(r.flags.includes('aa'), `${what}: authoritative`);
    assert.deepEqual(sorted(r.answer), sorted(c.answer ?? []), `${what}: answer`);
    const authority = anySerial ? r.authority.map(sameSerial) : r.authority;
    assert.deepEqual(authority, c.authority ?? [], `${what}: authority`);
    assert.deepEqual(sorted(r.additional), sorted(c.additional ?? []), `${what}: additional`);
  });
}

/** The SOA with the test serial in place of whatever serial it has. */
function sameSerial(line: string): string {
  return line.replace(/^(consul\. \d+ IN SOA \S+ \S+ )\d+/, `$1${TEST_SERIAL}`);
}

const NXDOMAIN = { status: 'NXDOMAIN', authority: [SOA] };
const NODATA = { status: 'NOERROR', authority: [SOA] };

describe('mesh names from the catalog file', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ catalog: MESH_CATALOG, flags: TTLS });
  });
  after(() => s.close());

  test('.connect: the sidecar proxies, at their own address and port, with the service TTL', () =>
    check(s.port, [
      { q: 'web.connect.consul', status: 'NOERROR', answer: ['web.connect.consul. 30 IN A 10.0.0.1', 'web.connect.consul. 30 IN A 10.0.2.2'] },
      {
        q: 'web.connect.consul',
        type: 'SRV',
        status: 'NOERROR',
        // A proxy on its node's address is named by the node; one with its own address by `.addr.`.
        answer: ['web.connect.consul. 30 IN SRV 1 1 21000 node1.node.dc1.consul.', 'web.connect.consul. 30 IN SRV 1 5 21001 0a000202.addr.dc1.consul.'],
        additional: ['node1.node.dc1.consul. 30 IN A 10.0.0.1', '0a000202.addr.dc1.consul. 30 IN A 10.0.2.2'],
      },
      // As in Consul, the labels left of the service are not a tag filter: they are ignored.
      { q: 'v1.web.connect.consul', status: 'NOERROR', answer: ['v1.web.connect.consul. 30 IN A 10.0.0.1', 'v1.web.connect.consul. 30 IN A 10.0.2.2'] },
      { q: 'web.connect.dc2.consul', type: 'SRV', status: 'NOERROR', answer: ['web.connect.dc2.consul. 30 IN SRV 1 1 21000 far1.node.dc2.consul.'], additional: ['far1.node.dc2.consul. 30 IN A 10.2.0.1'] },
      { q: 'web.connect.dc2.dc.consul', status: 'NOERROR', answer: ['web.connect.dc2.dc.consul. 30 IN A 10.2.0.1'] },
      { q: 'web.connect.consul', type: 'AAAA', ...NODATA },
    ]));

  test('.connect: Connect-native instances, health filtered; none servable is NXDOMAIN', () =>
    check(s.port, [
      // api2 is critical: left out, as in `.service`.
      { q: 'api.connect.consul', type: 'SRV', status: 'NOERROR', answer: ['api.connect.consul. 30 IN SRV 1 1 9090 node1.node.dc1.consul.'], additional: ['node1.node.dc1.consul. 30 IN A 10.0.0.1'] },
      // db's only proxy is critical; db itself is not Connect-native.
      { q: 'db.connect.consul', ...NXDOMAIN },
      { q: 'nope.connect.consul', ...NXDOMAIN },
      { q: 'web.connect.dc9.consul', ...NXDOMAIN },
      // The proxy is an ordinary service too.
      { q: 'web-sidecar-proxy.service.consul', status: 'NOERROR', answer: ['web-sidecar-proxy.service.consul. 30 IN A 10.0.0.1', 'web-sidecar-proxy.service.consul. 30 IN A 10.0.2.2'] },
      { q: 'connect.consul', ...NODATA },
    ]));

  test('.ingress: the gateways exposing the service, at the listener port', () =>
    check(s.port, [
      { q: 'web.ingress.consul', status: 'NOERROR', answer: ['web.ingress.consul. 30 IN A 10.0.0.10', 'web.ingress.consul. 30 IN A 10.0.0.9'] },
      {
        q: 'web.ingress.consul',
        type: 'SRV',
        status: 'NOERROR',
        // gw2 is warning: served, with its warning weight (1).
        answer: ['web.ingress.consul. 30 IN SRV 1 1 8080 gw1.node.dc1.consul.', 'web.ingress.consul. 30 IN SRV 1 1 8080 gw2.node.dc1.consul.'],
        additional: ['gw1.node.dc1.consul. 30 IN A 10.0.0.9', 'gw2.node.dc1.consul. 30 IN A 10.0.0.10'],
      },
      // No listener port given: the gateway's own.
      { q: 'api.ingress.consul', type: 'SRV', status: 'NOERROR', answer: ['api.ingress.consul. 30 IN SRV 1 1 8443 gw1.node.dc1.consul.'], additional: ['gw1.node.dc1.consul. 30 IN A 10.0.0.9'] },
      { q: 'db.ingress.consul', ...NXDOMAIN },
    ]));

  test('.virtual: the virtual IP as A with the node TTL, local datacenter only; none is NXDOMAIN', () =>
    check(s.port, [
      { q: 'web.virtual.consul', status: 'NOERROR', answer: ['web.virtual.consul. 60 IN A 240.0.0.1'] },
      { q: 'web.virtual.dc1.consul', status: 'NOERROR', answer: ['web.virtual.dc1.consul. 60 IN A 240.0.0.1'] },
      { q: 'web.virtual.consul', type: 'AAAA', ...NODATA },
      { q: 'web.virtual.consul', type: 'SRV', ...NODATA },
      { q: 'api.virtual.consul', ...NXDOMAIN },
      { q: 'nope.virtual.consul', ...NXDOMAIN },
      { q: 'web.virtual.dc2.consul', ...NXDOMAIN },
    ]));
});

describe('mesh names from Consul', () => {
  let sim: ConsulSim;
  let s: TestServer;
  before(async () => {
    sim = new ConsulSim({ datacenters: ['dc1', 'dc2'] });
    await sim.start();
    sim.registerNode('dc1', { Node: 'n1', Address: '10.0.0.1' });
    sim.registerNode('dc1', { Node: 'n2', Address: '10.0.0.2' });
    sim.registerNode('dc1', { Node: 'gw', Address: '10.0.0.9' });
    sim.registerService('dc1', 'n1', { ID: 'web1', Service: 'web', Port: 80 });
    sim.registerService('dc1', 'n2', { ID: 'web2', Service: 'web', Port: 80 });
    sim.registerService('dc1', 'n1', { ID: 'db1', Service: 'db', Port: 5432 });
    sim.registerMeshService('dc1', 'n1', { ID: 'web1-proxy', Service: 'web-sidecar-proxy', Kind: 'connect-proxy', Port: 21000, Proxy: { DestinationServiceName: 'web' } }, { virtualIps: true });
    sim.registerMeshService('dc1', 'n2', { ID: 'web2-proxy', Service: 'web-sidecar-proxy', Kind: 'connect-proxy', Port: 21001, Address: '10.0.2.2', Proxy: { DestinationServiceName: 'web' } }, { virtualIps: true });
    sim.registerMeshService('dc1', 'n2', { ID: 'api1', Service: 'api', Port: 9090, Connect: { Native: true } });
    sim.registerMeshService('dc1', 'gw', { ID: 'ingress1', Service: 'ingress', Kind: 'ingress-gateway', Port: 8443 });
    sim.setIngressGateway('dc1', 'ingress', ['web']);
    sim.registerNode('dc2', { Node: 'far', Address: '10.2.0.1' });
    sim.registerService('dc2', 'far', { ID: 'web-far', Service: 'web', Port: 80 });
    sim.registerMeshService('dc2', 'far', { ID: 'web-far-proxy', Service: 'web-sidecar-proxy', Kind: 'connect-proxy', Port: 21000, Proxy: { DestinationServiceName: 'web' } });
    // --watch all: the mesh views are still loaded on demand, from their first question.
    s = await startServer({ flags: { ...TTLS, consul: sim.url, 'consul-wait': '2s', watch: 'all' } });
  });
  after(async () => {
    await s.close();
    await sim.stop();
  });

  test('.connect SRV gives the proxies\' ports and targets, fetched on the first question', async () => {
    await eventually(async () => assert.equal((await dig(s.port, ['web.service.consul'])).status, 'NOERROR'));
    const before = sim.requests.filter((r) => r.path.startsWith('/v1/health/connect/')).length;
    assert.equal(before, 0, 'no mesh view is read before it is asked for');
    await check(s.port, [
      {
        q: 'web.connect.consul',
        type: 'SRV',
        status: 'NOERROR',
        answer: ['web.connect.consul. 30 IN SRV 1 1 21000 n1.node.dc1.consul.', 'web.connect.consul. 30 IN SRV 1 1 21001 0a000202.addr.dc1.consul.'],
        additional: ['n1.node.dc1.consul. 30 IN A 10.0.0.1', '0a000202.addr.dc1.consul. 30 IN A 10.0.2.2'],
      },
      { q: 'api.connect.consul', status: 'NOERROR', answer: ['api.connect.consul. 30 IN A 10.0.0.2'] },
      { q: 'db.connect.consul', ...NXDOMAIN },
      { q: 'nope.connect.consul', ...NXDOMAIN },
    ], true);
    assert.ok(sim.requests.some((r) => r.path === '/v1/health/connect/web'), 'read from /v1/health/connect/web');
  });

  test('.ingress, .virtual, and .connect in another datacenter', () =>
    check(s.port, [
      // Consul answers the gateway's own port (its DNS does not read the listeners).
      { q: 'web.ingress.consul', type: 'SRV', status: 'NOERROR', answer: ['web.ingress.consul. 30 IN SRV 1 1 8443 gw.node.dc1.consul.'], additional: ['gw.node.dc1.consul. 30 IN A 10.0.0.9'] },
      { q: 'db.ingress.consul', ...NXDOMAIN },
      // Another datacenter: its lists and then the mesh view fetched with ?dc=dc2 on the first question.
      { q: 'web.connect.dc2.consul', type: 'SRV', status: 'NOERROR', answer: ['web.connect.dc2.consul. 30 IN SRV 1 1 21000 far.node.dc2.consul.'], additional: ['far.node.dc2.consul. 30 IN A 10.2.0.1'] },
      { q: 'web.virtual.consul', status: 'NOERROR', answer: ['web.virtual.consul. 60 IN A 240.0.0.1'] },
      { q: 'api.virtual.consul', ...NXDOMAIN },
    ], true));

  test('health changes reach .connect answers (the reply cache follows the mesh view)', async () => {
    // Answered before the change, both rotations, so the reply cache holds the whole set (dig
    // without its cookie option: the cache keeps only plain queries).
    for (let turn = 0; turn < 2; turn++) {
      assert.deepEqual(sorted((await dig(s.port, ['web.connect.consul', '+nocookie'])).answer), ['web.connect.consul. 30 IN A 10.0.0.1', 'web.connect.consul. 30 IN A 10.0.2.2']);
    }
    sim.setCheck('dc1', 'n2', { CheckID: 'proxy-alive', ServiceID: 'web2-proxy', Status: 'critical' });
    await eventually(async () => {
      assert.deepEqual((await dig(s.port, ['web.connect.consul', '+nocookie'])).answer, ['web.connect.consul. 30 IN A 10.0.0.1']);
    });
    sim.setCheck('dc1', 'n1', { CheckID: 'serfHealth', Status: 'critical' });
    await eventually(async () => {
      const r: DigResult = await dig(s.port, ['web.connect.consul', '+nocookie']);
      assert.equal(r.status, 'NXDOMAIN');
      assert.deepEqual(r.authority.map(sameSerial), [SOA]);
    });
  });
});

test('--workers 2 with Consul: a worker\'s .connect question is fetched by the primary (the lookup crosses the relay)', async (t) => {
  const sim = new ConsulSim();
  await sim.start();
  t.after(() => sim.stop());
  sim.registerNode('dc1', { Node: 'a', Address: '10.30.0.1' });
  sim.registerService('dc1', 'a', { ID: 'web-a', Service: 'web', Port: 80 });
  sim.registerMeshService('dc1', 'a', { ID: 'web-a-proxy', Service: 'web-sidecar-proxy', Kind: 'connect-proxy', Port: 21000, Proxy: { DestinationServiceName: 'web' } });
  const cli = startCli(['--listen', '127.0.0.1:0', '--workers', '2', '--consul', sim.url]);
  t.after(() => cli.stop());
  const listening = await cli.waitForLog((l) => l.msg === 'listening (udp, tcp)');
  const port = Number(String(listening.address).split(':').pop());
  await cli.waitForLog((l) => l.msg === 'consul catalog synced; ready');
  // Over TCP, each connection goes to one worker or the other.
  for (let i = 0; i < 4; i++) {
    const r = await dig(port, ['web.connect.consul', 'SRV', '+tcp']);
    assert.deepEqual(r.answer, ['web.connect.consul. 0 IN SRV 1 1 21000 a.node.dc1.consul.'], `query ${i}`);
  }
  assert.equal(sim.requests.filter((r) => r.path === '/v1/health/connect/web' && r.query.index === undefined).length, 1, 'fetched once, for both workers');
});

test('an idle .connect watch is dropped after --watch-idle (even with --watch all), and the next question fetches again', async (t) => {
  const sim = new ConsulSim();
  await sim.start();
  t.after(() => sim.stop());
  sim.registerNode('dc1', { Node: 'a', Address: '10.30.0.1' });
  sim.registerService('dc1', 'a', { ID: 'web-a', Service: 'web', Port: 80 });
  sim.registerMeshService('dc1', 'a', { ID: 'web-a-proxy', Service: 'web-sidecar-proxy', Kind: 'connect-proxy', Port: 21000, Proxy: { DestinationServiceName: 'web' } });
  const logs: Record<string, unknown>[] = [];
  const s = await startServer({ flags: { consul: sim.url, 'consul-wait': '2s', watch: 'all', 'watch-idle': '400ms' }, logs });
  t.after(() => s.close());
  const connectReads = (): number => sim.requests.filter((r) => r.path === '/v1/health/connect/web').length;
  await eventually(async () => assert.equal((await dig(s.port, ['web.connect.consul'])).status, 'NOERROR'));
  const before = connectReads();
  assert.ok(before >= 1, 'fetched');
  await eventually(() => assert.ok(logs.some((l) => l.msg === 'idle on-demand watch dropped' && l.lookup === 'connect' && l.service === 'web'), 'connect watch dropped'), 3000);
  assert.equal(logs.filter((l) => l.msg === 'idle on-demand watch dropped' && l.lookup === undefined).length, 0, 'service watches stay (--watch all)');
  assert.deepEqual((await dig(s.port, ['web.connect.consul'])).answer, ['web.connect.consul. 0 IN A 10.30.0.1']);
  assert.ok(connectReads() > before, 'fetched again');
});
