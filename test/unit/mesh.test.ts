/**
 * The service mesh parts in process: the catalog file's mesh keys (and every problem with its
 * path), the snapshot's mesh views and their generations, the name grammar, and the Consul
 * simulator's /v1/health/connect and /v1/health/ingress read through svcdns's own API client.
 */

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { checkCatalog } from '../../src/catalog/file/format.js';
import { Snapshot } from '../../src/catalog/snapshot.js';
import { createConsulApi } from '../../src/catalog/consul/api.js';
import { parseConsulName } from '../../src/answer/naming.js';
import type { CatalogData } from '../../src/catalog/types.js';
import { ConsulSim } from '../support/consul-sim.js';

function catalog(services: unknown[]): unknown {
  return { nodes: [{ name: 'n1', address: '10.0.0.1', services }] };
}

function problems(services: unknown[]): string[] {
  return checkCatalog(catalog(services), 'dc1').problems;
}

test('catalog file: proxies, native services and gateways become mesh entries by the service they serve', () => {
  const { data, problems: found } = checkCatalog(
    catalog([
      { name: 'web', port: 80 },
      { name: 'web-proxy', kind: 'connect-proxy', port: 21000, proxy: { destination: 'web' }, virtual_ip: '240.0.0.7' },
      { name: 'api', port: 9090, connect: { native: true } },
      { name: 'gw', kind: 'ingress-gateway', port: 8443, ingress: [{ service: 'web', port: 8080 }, { service: 'api' }] },
    ]),
    'dc1',
  );
  assert.deepEqual(found, []);
  assert.equal(data.services.length, 4, 'proxies and gateways are services too');
  const summary = (data.mesh ?? []).map((m) => [m.lookup, m.datacenter, m.service, m.instances.map((i) => `${i.id}:${i.port}`), m.virtualIp]);
  assert.deepEqual(summary, [
    ['connect', 'dc1', 'web', ['web-proxy:21000'], '240.0.0.7'],
    ['connect', 'dc1', 'api', ['api:9090'], undefined],
    ['ingress', 'dc1', 'web', ['gw:8080'], undefined],
    ['ingress', 'dc1', 'api', ['gw:8443'], undefined],
  ]);
  assert.equal(checkCatalog(catalog([{ name: 'web', port: 80 }]), 'dc1').data.mesh, undefined, 'no mesh: no entries');
});

test('catalog file: every mesh mistake is reported with its path', () => {
  assert.deepEqual(
    problems([
      { name: 'a', port: 1, kind: 'mesh-gateway' },
      { name: 'b', port: 1, kind: 'connect-proxy' },
      { name: 'c', port: 1, proxy: { destination: 'web' } },
      { name: 'd', port: 1, kind: 'ingress-gateway', ingress: [] },
      { name: 'e', port: 1, kind: 'ingress-gateway', ingress: [{ service: 'web' }, { service: 'WEB', port: 0 }] },
      { name: 'f', port: 1, connect: { native: 'yes' } },
      { name: 'g', port: 1, virtual_ip: '240.0.0.1' },
      { name: 'h', port: 1, connect: { native: true }, virtual_ip: '2001:db8::1' },
      { name: 'i', port: 1, kind: 'connect-proxy', proxy: { destination: 'web' }, virtual_ip: '240.0.0.1' },
      { name: 'j', port: 1, kind: 'connect-proxy', proxy: { destination: 'web' }, virtual_ip: '240.0.0.2' },
      { name: 'k', port: 1, kind: 'connect-proxy', proxy: { destination: 'web' }, connect: { native: true } },
    ]),
    [
      'nodes[0].services[0].kind: must be one of connect-proxy, ingress-gateway (got "mesh-gateway")',
      'nodes[0].services[1].proxy: required with kind: connect-proxy',
      'nodes[0].services[2].proxy: only for kind: connect-proxy',
      'nodes[0].services[3].ingress: must name at least one service',
      'nodes[0].services[4].ingress[1].port: must be an integer from 1 to 65535 (got 0)',
      'nodes[0].services[4].ingress[1].service: WEB is exposed twice by this gateway',
      'nodes[0].services[5].connect.native: must be true or false (got "yes")',
      'nodes[0].services[6].virtual_ip: only for a connect-proxy or a Connect-native service',
      'nodes[0].services[7].virtual_ip: must be an IPv4 address (got "2001:db8::1")',
      'nodes[0].services[9].virtual_ip: web already has virtual IP 240.0.0.1 (nodes[0].services[8].virtual_ip); a service has one',
      'nodes[0].services[10].connect.native: a proxy or gateway cannot be Connect-native',
    ],
  );
});

test('snapshot: mesh views keep their generation while unchanged, apart from the service and each other', () => {
  let next = 0;
  const nextGeneration = (): number => ++next;
  const build = (vip: string, proxyHealth: 'passing' | 'critical', previous: Snapshot | null): Snapshot => {
    const { data, problems: found } = checkCatalog(
      catalog([
        { name: 'web', port: 80 },
        { name: 'web-proxy', kind: 'connect-proxy', port: 21000, proxy: { destination: 'web' }, virtual_ip: vip, health: proxyHealth },
        { name: 'gw', kind: 'ingress-gateway', port: 8443, ingress: [{ service: 'web' }] },
      ]),
      'dc1',
    );
    assert.deepEqual(found, []);
    return new Snapshot(data, { serial: next, previous, nextGeneration });
  };
  const first = build('240.0.0.1', 'passing', null);
  const gens = (s: Snapshot) => [
    s.service('dc1', 'web')?.generation,
    s.meshView('connect', 'dc1', 'web')?.generation,
    s.meshView('ingress', 'dc1', 'web')?.generation,
  ];
  const [service, connect, ingress] = gens(first);
  assert.equal(new Set([service, connect, ingress]).size, 3, 'each view its own generation');
  assert.deepEqual(gens(build('240.0.0.1', 'passing', first)), [service, connect, ingress], 'unchanged: same generations');
  const vipChanged = build('240.0.0.2', 'passing', first);
  assert.equal(vipChanged.meshView('connect', 'dc1', 'web')?.virtualIp?.text, '240.0.0.2');
  assert.deepEqual(gens(vipChanged).map((g, i) => g === [service, connect, ingress][i]), [true, false, true], 'a new VIP: a new connect generation only');
  const proxyDown = build('240.0.0.1', 'critical', first);
  assert.deepEqual(proxyDown.meshView('connect', 'dc1', 'web')?.instances, [], 'critical proxies are not served');
  assert.equal(proxyDown.meshView('connect', 'dc1', 'web')?.virtualIp?.text, '240.0.0.1', 'the virtual IP stays, as Consul\'s does, whatever the health');
  assert.equal(proxyDown.generationOf({ datacenter: 'dc1', service: 'web', generation: 0, lookup: 'ingress' }), ingress);
  assert.equal(proxyDown.generationOf({ datacenter: 'dc1', service: 'nope', generation: 0, lookup: 'connect' }), undefined);
});

test('snapshot: --only-passing leaves warning gateways and proxies out of mesh views, as out of services', () => {
  const { data } = checkCatalog(
    catalog([
      { name: 'web', port: 80 },
      { name: 'web-proxy', kind: 'connect-proxy', port: 21000, proxy: { destination: 'web' }, health: 'warning' },
      { name: 'gw', kind: 'ingress-gateway', port: 8443, ingress: [{ service: 'web' }], health: 'warning' },
    ]),
    'dc1',
  );
  const all = new Snapshot(data, { serial: 1, nextGeneration: () => 1 });
  assert.equal(all.meshView('ingress', 'dc1', 'web')?.instances.length, 1);
  assert.equal(all.meshView('connect', 'dc1', 'web')?.instances[0]?.weight, 1, 'warning weight');
  const passing = new Snapshot(data, { serial: 1, nextGeneration: () => 1, onlyPassing: true });
  assert.equal(passing.meshView('ingress', 'dc1', 'web')?.instances.length, 0);
  assert.equal(passing.meshView('connect', 'dc1', 'web')?.instances.length, 0);
});

test('snapshot: with a partial catalog a listed service\'s mesh view is pending until loaded, an unlisted one is not', () => {
  const data: CatalogData = {
    nodes: [{ datacenter: 'dc1', name: 'n1', address: '10.0.0.1', meta: {} }],
    services: [],
    mesh: [{ lookup: 'connect', datacenter: 'dc1', service: 'api', instances: [] }],
    partial: { datacenters: ['dc1', 'dc2'], serviceListsKnown: ['dc1'], nodeListsKnown: ['dc1'], pending: [{ datacenter: 'dc1', name: 'web' }, { datacenter: 'dc1', name: 'api' }] },
  };
  const s = new Snapshot(data, { serial: 1, nextGeneration: () => 1 });
  assert.equal(s.meshPending('connect', 'dc1', 'web'), true);
  assert.equal(s.meshPending('ingress', 'dc1', 'WEB'), true);
  assert.equal(s.meshPending('connect', 'dc1', 'api'), false, 'loaded, with no endpoints');
  assert.equal(s.meshPending('connect', 'dc1', 'nope'), false, 'not in the service list');
  assert.equal(s.meshPending('connect', 'dc2', 'anything'), true, 'service list not known yet');
});

test('names: .connect, .ingress and .virtual with the datacenter forms; only the last label before the kind counts', () => {
  const parse = (name: string) => parseConsulName(name.split('.'));
  assert.deepEqual(parse('web.connect'), { kind: 'mesh', lookup: 'connect', service: 'web', dc: null });
  assert.deepEqual(parse('v1.web.connect.dc2'), { kind: 'mesh', lookup: 'connect', service: 'web', dc: 'dc2' });
  assert.deepEqual(parse('web.ingress.dc2.dc'), { kind: 'mesh', lookup: 'ingress', service: 'web', dc: 'dc2' });
  assert.deepEqual(parse('web.virtual'), { kind: 'virtual', service: 'web', dc: null });
  assert.deepEqual(parse('web.virtual.peer1'), { kind: 'virtual', service: 'web', dc: 'peer1' });
  assert.deepEqual(parse('connect'), { kind: 'structural', dc: null });
  assert.deepEqual(parse('ingress.dc1'), { kind: 'structural', dc: 'dc1' });
});

async function sim(t: TestContext): Promise<ConsulSim> {
  const s = new ConsulSim();
  await s.start();
  t.after(() => s.stop());
  s.registerNode('dc1', { Node: 'n1', Address: '10.0.0.1' });
  s.registerNode('dc1', { Node: 'gw', Address: '10.0.0.9' });
  s.registerService('dc1', 'n1', { ID: 'web1', Service: 'web', Port: 80 });
  return s;
}

test('simulator: /v1/health/connect/NAME lists proxies and native instances in Consul\'s shape, with the virtual IP', async (t) => {
  const s = await sim(t);
  s.registerMeshService('dc1', 'n1', { ID: 'web1-proxy', Service: 'web-sidecar-proxy', Kind: 'connect-proxy', Port: 21000, Proxy: { DestinationServiceName: 'web' } }, { virtualIps: true });
  s.registerMeshService('dc1', 'n1', { ID: 'web-native', Service: 'web', Port: 81, Connect: { Native: true } }, { virtualIps: true });
  const res = await fetch(`${s.url}/v1/health/connect/web`);
  assert.equal(res.status, 200);
  const body = (await res.json()) as { Service: Record<string, unknown> }[];
  assert.deepEqual(
    body.map((e) => [e.Service.Kind, e.Service.ID, e.Service.Port, e.Service.Proxy, e.Service.Connect, e.Service.TaggedAddresses]),
    [
      [undefined, 'web-native', 81, { Mode: '', MeshGateway: {}, Expose: {} }, { Native: true }, { 'consul-virtual': { Address: '240.0.0.1', Port: 81 } }],
      ['connect-proxy', 'web1-proxy', 21000, { DestinationServiceName: 'web', Mode: '', MeshGateway: {}, Expose: {} }, {}, { 'consul-virtual': { Address: '240.0.0.1', Port: 21000 } }],
    ],
  );
  const plain = (await (await fetch(`${s.url}/v1/health/service/web`)).json()) as { Service: { ID: string } }[];
  assert.deepEqual(plain.map((e) => e.Service.ID), ['web-native', 'web1'], '/v1/health/service/web lists the service, not its proxies');

  // svcdns's own client reads it: endpoints, and the virtual IP.
  const api = createConsulApi({ url: new URL(s.url), token: null, tls: { ca: null, cert: null, key: null, serverName: null, verify: true } });
  const read = await api.mesh('connect', 'web', { dc: 'dc1' });
  assert.deepEqual(read.data.instances.map((i) => [i.id, i.name, i.port, i.health]), [['web-native', 'web', 81, 'passing'], ['web1-proxy', 'web-sidecar-proxy', 21000, 'passing']]);
  assert.equal(read.data.virtualIp, '240.0.0.1');
  assert.ok(read.meta.index > 0n);
});

test('simulator: /v1/health/ingress/NAME lists the gateways whose config entry exposes it, and blocks', async (t) => {
  const s = await sim(t);
  s.registerMeshService('dc1', 'gw', { ID: 'ingress1', Service: 'ingress', Kind: 'ingress-gateway', Port: 8443 });
  const api = createConsulApi({ url: new URL(s.url), token: null, tls: { ca: null, cert: null, key: null, serverName: null, verify: true } });
  const none = await api.mesh('ingress', 'web', { dc: 'dc1' });
  assert.deepEqual(none.data.instances, [], 'no config entry: no gateway');
  // A blocking read (under way before the write) answers with the config entry's write.
  const blocked = api.mesh('ingress', 'web', { dc: 'dc1', index: none.meta.index, waitMs: 10_000 });
  await s.until((r) => r.path === '/v1/health/ingress/web' && r.status === null, 'the blocking read');
  s.setIngressGateway('dc1', 'ingress', ['web']);
  const woken = await blocked;
  assert.deepEqual(woken.data.instances.map((i) => [i.id, i.port, i.address, i.node]), [['ingress1', 8443, '', 'gw']]);
  assert.ok(woken.meta.index > none.meta.index);
  assert.equal(woken.data.virtualIp, undefined);
});

test('svcdns\'s client sends its ACL token on mesh reads (the request is its own, not the consul client\'s)', async (t) => {
  const s = new ConsulSim({ aclTokens: ['s3cret'] });
  await s.start();
  t.after(() => s.stop());
  s.registerNode('dc1', { Node: 'n1', Address: '10.0.0.1' });
  s.registerMeshService('dc1', 'n1', { ID: 'api1', Service: 'api', Port: 9090, Connect: { Native: true } });
  const tls = { ca: null, cert: null, key: null, serverName: null, verify: true };
  const withToken = await createConsulApi({ url: new URL(s.url), token: 's3cret', tls }).mesh('connect', 'api', { dc: 'dc1' });
  assert.deepEqual(withToken.data.instances.map((i) => i.id), ['api1']);
  assert.equal(s.requests.at(-1)?.token, 's3cret');
  const anonymous = await createConsulApi({ url: new URL(s.url), token: null, tls }).mesh('connect', 'api', { dc: 'dc1' });
  assert.deepEqual(anonymous.data.instances, [], 'without a token: filtered to nothing, as Consul does');
  assert.equal(anonymous.meta.defaultAclPolicy, 'deny');
});

test('simulator: PUT /v1/catalog/register takes Kind, Proxy and Connect, and /v1/health/connect/ lists the result', async (t) => {
  const s = await sim(t);
  const put = await fetch(`${s.url}/v1/catalog/register`, {
    method: 'PUT',
    body: JSON.stringify({ Node: 'n1', Address: '10.0.0.1', Service: { ID: 'web1-proxy', Service: 'web-sidecar-proxy', Kind: 'connect-proxy', Port: 21000, Proxy: { DestinationServiceName: 'web' } } }),
  });
  assert.equal(put.status, 200);
  const body = (await (await fetch(`${s.url}/v1/health/connect/web`)).json()) as { Service: Record<string, unknown> }[];
  assert.deepEqual(body.map((e) => [e.Service.Kind, e.Service.ID, (e.Service.Proxy as Record<string, unknown>).DestinationServiceName]), [['connect-proxy', 'web1-proxy', 'web']]);
});
