/**
 * Catalog entries whose address is a hostname (external services, consul-esm, RDS endpoints), and
 * tagged addresses (lan_ipv4/lan_ipv6, wan with --translate-wan-addrs): through dig against the
 * catalog file and the Consul simulator, the hostnames' targets resolved by a real dnsmasq upstream.
 *
 * What a user sees (Consul's behaviour, and where svcdns does better, as issue 14 asks):
 * - A/AAAA of a hostname instance or node: a CNAME (the service or node TTL), then the target's
 *   records as the upstream gave them (its chain and TTLs: dnsmasq's 60 s, never rewritten), for A
 *   and AAAA alike (Consul follows A only); an unresolvable target still answers the CNAME, NOERROR;
 * - a hostname in our own domain is answered from the catalog, one hop, no loop;
 * - SRV: the hostname itself as the target, its addresses as additional records;
 * - a service with IP and hostname instances answers A/AAAA with the IP instances only (Consul's
 *   serviceNodeRecords: a CNAME only when no instance has an address).
 */

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { ConsulSim } from '../support/consul-sim.js';
import { dig, type DigResult } from '../support/dig.js';
import { startDnsmasq, TTL } from '../support/dnsmasq.js';
import { eventually } from '../support/eventually.js';
import { startServer, TEST_SERIAL, type TestServer } from '../support/server.js';
import { startUpstream } from '../support/upstream.js';

const UPSTREAM_DATA = [
  '--host-record=db.example.test,192.0.2.50,2001:db8::50',
  '--cname=api.example.test,api-lb.example.test',
  '--host-record=api-lb.example.test,192.0.2.60',
  '--host-record=mixed-ext.example.test,192.0.2.70',
];

const CATALOG = `
nodes:
  - name: n1
    address: 10.0.0.1
    services:
      - {name: web, port: 80}
  - name: ext
    address: db.example.test
    services:
      - {name: rds, port: 5432}
  - name: n2
    address: 10.0.0.2
    services:
      - {name: api, port: 443, address: api.example.test.}
      - {name: mixed, port: 81}
      - {name: gone, port: 1, address: nowhere.example.test}
      - {name: alias, port: 8080, address: web.service.consul}
      - {name: self, port: 1, address: self.service.consul}
  - name: n3
    address: 10.0.0.3
    services:
      - {name: mixed, port: 82, address: mixed-ext.example.test}
  - name: dual
    address: 10.0.0.4
    tagged_addresses: {lan_ipv4: 10.0.0.4, lan_ipv6: "2001:db8::4"}
    services:
      - {name: both, port: 90}
      - {name: own6, port: 91, tagged_addresses: {lan_ipv6: "2001:db8::91"}}
`;

const SOA = `consul. 0 IN SOA ns.consul. hostmaster.consul. ${TEST_SERIAL} 3600 600 86400 0`;

async function ask(s: TestServer, name: string, type = 'A'): Promise<DigResult> {
  return dig(s.port, [name, type]);
}

function sorted(lines: readonly string[]): string[] {
  return [...lines].sort();
}

/** For a suite's `before`: cleanups run by its `after` (startDnsmasq registers its stop here). */
function cleanups(): { after(fn: () => unknown): void; run(): Promise<void> } {
  const fns: (() => unknown)[] = [];
  return { after: (fn) => void fns.push(fn), run: async () => void (await Promise.all(fns.map((f) => f()))) };
}

describe('hostname addresses, catalog file, dnsmasq upstream', () => {
  const stops = cleanups();
  let s: TestServer;
  before(async () => {
    const dnsmasq = await startDnsmasq(stops, UPSTREAM_DATA);
    s = await startServer({ catalog: CATALOG, flags: { upstream: [dnsmasq.address] } });
  });
  after(async () => {
    await s?.close();
    await stops.run();
  });

  test('A and AAAA of a hostname node: its CNAME, then the upstream target with its own TTL', async () => {
    const a = await ask(s, 'rds.service.consul');
    assert.equal(a.status, 'NOERROR');
    assert.deepEqual(a.answer, ['rds.service.consul. 0 IN CNAME db.example.test.', `db.example.test. ${TTL} IN A 192.0.2.50`]);
    const aaaa = await ask(s, 'rds.service.consul', 'AAAA');
    assert.deepEqual(aaaa.answer, ['rds.service.consul. 0 IN CNAME db.example.test.', `db.example.test. ${TTL} IN AAAA 2001:db8::50`]);
    assert.ok(aaaa.flags.includes('aa'));
    const node = await ask(s, 'ext.node.consul');
    assert.deepEqual(node.answer, ['ext.node.consul. 0 IN CNAME db.example.test.', `db.example.test. ${TTL} IN A 192.0.2.50`]);
  });

  test('a CNAME question gets the CNAME alone; IP-only names have none (NODATA)', async () => {
    assert.deepEqual((await ask(s, 'rds.service.consul', 'CNAME')).answer, ['rds.service.consul. 0 IN CNAME db.example.test.']);
    assert.deepEqual((await ask(s, 'ext.node.consul', 'CNAME')).answer, ['ext.node.consul. 0 IN CNAME db.example.test.']);
    const web = await ask(s, 'web.service.consul', 'CNAME');
    assert.equal(web.status, 'NOERROR');
    assert.deepEqual(web.answer, []);
    assert.deepEqual(web.authority, [SOA]);
  });

  test("a service's own hostname: the upstream's whole chain, in order", async () => {
    const a = await ask(s, 'api.service.consul');
    assert.deepEqual(a.answer, [
      'api.service.consul. 0 IN CNAME api.example.test.',
      `api.example.test. ${TTL} IN CNAME api-lb.example.test.`,
      `api-lb.example.test. ${TTL} IN A 192.0.2.60`,
    ]);
  });

  test('a target the upstream cannot resolve still answers its CNAME, NOERROR', async () => {
    const a = await ask(s, 'gone.service.consul');
    assert.equal(a.status, 'NOERROR');
    assert.deepEqual(a.answer, ['gone.service.consul. 0 IN CNAME nowhere.example.test.']);
    const aaaa = await ask(s, 'api.service.consul', 'AAAA');
    assert.equal(aaaa.status, 'NOERROR');
    assert.deepEqual(aaaa.answer, ['api.service.consul. 0 IN CNAME api.example.test.', `api.example.test. ${TTL} IN CNAME api-lb.example.test.`]);
  });

  test('a hostname in our domain is answered from the catalog, one hop, no loop', async () => {
    assert.deepEqual((await ask(s, 'alias.service.consul')).answer, ['alias.service.consul. 0 IN CNAME web.service.consul.', 'web.service.consul. 0 IN A 10.0.0.1']);
    // An address that is the name asked: the node's address instead (Consul's rule), never a CNAME to itself.
    assert.deepEqual((await ask(s, 'self.service.consul')).answer, ['self.service.consul. 0 IN A 10.0.0.2']);
    assert.deepEqual((await ask(s, 'self.service.consul', 'SRV')).answer, ['self.service.consul. 0 IN SRV 1 1 1 n2.node.dc1.consul.']);
  });

  test("SRV of a target that is a CNAME upstream: the chain once, though both its A and AAAA were asked", async () => {
    const srv = await ask(s, 'api.service.consul', 'SRV');
    assert.deepEqual(srv.answer, ['api.service.consul. 0 IN SRV 1 1 443 api.example.test.']);
    assert.deepEqual(srv.additional, [`api.example.test. ${TTL} IN CNAME api-lb.example.test.`, `api-lb.example.test. ${TTL} IN A 192.0.2.60`]);
  });

  test('SRV: the hostname is the target, its addresses additional', async () => {
    const srv = await ask(s, 'rds.service.consul', 'SRV');
    assert.deepEqual(srv.answer, ['rds.service.consul. 0 IN SRV 1 1 5432 db.example.test.']);
    assert.deepEqual(srv.additional, [`db.example.test. ${TTL} IN A 192.0.2.50`, `db.example.test. ${TTL} IN AAAA 2001:db8::50`]);
    const own = await ask(s, 'alias.service.consul', 'SRV');
    assert.deepEqual(own.answer, ['alias.service.consul. 0 IN SRV 1 1 8080 web.service.consul.']);
    assert.deepEqual(own.additional, ['web.service.consul. 0 IN A 10.0.0.1']);
  });

  test('mixed services: A answers the IP instances only; SRV lists every instance', async () => {
    assert.deepEqual((await ask(s, 'mixed.service.consul')).answer, ['mixed.service.consul. 0 IN A 10.0.0.2']);
    const srv = await ask(s, 'mixed.service.consul', 'SRV');
    assert.deepEqual(sorted(srv.answer), ['mixed.service.consul. 0 IN SRV 1 1 81 n2.node.dc1.consul.', 'mixed.service.consul. 0 IN SRV 1 1 82 mixed-ext.example.test.']);
    assert.deepEqual(sorted(srv.additional), [`mixed-ext.example.test. ${TTL} IN A 192.0.2.70`, 'n2.node.dc1.consul. 0 IN A 10.0.0.2']);
  });

  test('tagged addresses: lan_ipv4 answers A, lan_ipv6 answers AAAA; a service inherits its node\'s unless it has its own', async () => {
    assert.deepEqual((await ask(s, 'both.service.consul')).answer, ['both.service.consul. 0 IN A 10.0.0.4']);
    assert.deepEqual((await ask(s, 'both.service.consul', 'AAAA')).answer, ['both.service.consul. 0 IN AAAA 2001:db8::4']);
    assert.deepEqual((await ask(s, 'own6.service.consul', 'AAAA')).answer, ['own6.service.consul. 0 IN AAAA 2001:db8::91']);
    assert.deepEqual((await ask(s, 'own6.service.consul')).answer, ['own6.service.consul. 0 IN A 10.0.0.4']);
    assert.deepEqual((await ask(s, 'dual.node.consul', 'AAAA')).answer, ['dual.node.consul. 0 IN AAAA 2001:db8::4']);
    // SRV (Consul's "any" translation) prefers the IPv6 tagged address: its .addr. name is the target.
    const srv = await ask(s, 'own6.service.consul', 'SRV');
    assert.deepEqual(srv.answer, ['own6.service.consul. 0 IN SRV 1 1 91 20010db8000000000000000000000091.addr.dc1.consul.']);
    assert.deepEqual(srv.additional, ['20010db8000000000000000000000091.addr.dc1.consul. 0 IN AAAA 2001:db8::91']);
  });

  test('the IPv4-only web service still answers AAAA with NODATA', async () => {
    const r = await ask(s, 'web.service.consul', 'AAAA');
    assert.equal(r.status, 'NOERROR');
    assert.deepEqual(r.answer, []);
    assert.deepEqual(r.authority, [SOA]);
  });
});

describe('hostname targets from a misbehaving upstream', () => {
  const catalog = `nodes: [{name: n1, address: 10.0.0.1, services: [{name: looped, port: 1, address: loop1.test}, {name: slow, port: 1, address: slow.test}]}]`;

  test("a CNAME loop in the upstream's chain is cut where it comes back", async (t) => {
    const upstream = await startUpstream({
      records: [
        { name: 'loop1.test', type: 'CNAME', ttl: 300, data: 'loop2.test' },
        { name: 'loop2.test', type: 'CNAME', ttl: 300, data: 'loop1.test' },
      ],
    });
    t.after(() => upstream.close());
    const s = await startServer({ catalog, flags: { upstream: [upstream.address] } });
    t.after(() => s.close());
    const a = await ask(s, 'looped.service.consul');
    assert.equal(a.status, 'NOERROR');
    assert.deepEqual(a.answer, ['looped.service.consul. 0 IN CNAME loop1.test.', 'loop1.test. 300 IN CNAME loop2.test.', 'loop2.test. 300 IN CNAME loop1.test.']);
  });

  test('an upstream that never answers: the CNAME alone once the wait is over', async (t) => {
    const upstream = await startUpstream({ records: [{ name: 'slow.test', type: 'A', ttl: 300, data: '192.0.2.99' }] });
    upstream.behaviour = 'silent';
    t.after(() => upstream.close());
    const s = await startServer({ catalog, flags: { upstream: [upstream.address] } });
    t.after(() => s.close());
    const a = await dig(s.port, ['slow.service.consul', 'A', '+time=5']);
    assert.equal(a.status, 'NOERROR');
    assert.deepEqual(a.answer, ['slow.service.consul. 0 IN CNAME slow.test.']);
    assert.equal(upstream.received.length, 1, 'asked once');
  });
});

describe('a hostname of ours under the reply cache', () => {
  test('a change to the target reaches the CNAME answer, though its own service did not change', async (t) => {
    const catalog = (web: string) => `nodes: [{name: n1, address: ${web}, services: [{name: web, port: 80}, {name: alias, port: 81, address: web.service.consul}]}]`;
    const s = await startServer({ catalog: catalog('10.0.0.1') });
    t.after(() => s.close());
    // +nocookie: dig's cookie makes a query the reply cache does not key; without it, the cache answers.
    const alias = async (type: string) => (await dig(s.port, ['alias.service.consul', type, '+nocookie'])).answer;
    for (let i = 0; i < 3; i++) assert.deepEqual(await alias('A'), ['alias.service.consul. 0 IN CNAME web.service.consul.', 'web.service.consul. 0 IN A 10.0.0.1']);
    assert.deepEqual(await alias('SRV'), ['alias.service.consul. 0 IN SRV 1 1 81 web.service.consul.']);
    await writeFile(s.catalogPath, catalog('10.0.0.9'));
    await eventually(async () => assert.deepEqual((await dig(s.port, ['web.service.consul', 'A', '+nocookie'])).answer, ['web.service.consul. 0 IN A 10.0.0.9']));
    assert.deepEqual(await alias('A'), ['alias.service.consul. 0 IN CNAME web.service.consul.', 'web.service.consul. 0 IN A 10.0.0.9']);
    assert.deepEqual((await dig(s.port, ['alias.service.consul', 'SRV', '+nocookie'])).additional, ['web.service.consul. 0 IN A 10.0.0.9']);
  });
});

describe('--translate-wan-addrs with a catalog file', () => {
  const catalog = `
datacenter: dc1
nodes:
  - name: near
    address: 10.0.0.1
    tagged_addresses: {wan: 198.51.100.1}
    services: [{name: edge, port: 8443, tagged_addresses: {wan: {address: 198.51.100.9, port: 18443}}}]
  - name: far
    datacenter: dc2
    address: 10.2.0.1
    tagged_addresses: {wan_ipv4: 198.51.100.2, wan_ipv6: "2001:db8:ffff::2"}
    services:
      - {name: edge, port: 8443, tagged_addresses: {wan: {address: 198.51.100.10, port: 18443}}}
      - {name: plain, port: 7000}
`;

  test('other datacenters answer with their WAN addresses and ports; the local one never does', async (t) => {
    const s = await startServer({ catalog, flags: { 'translate-wan-addrs': 'true' } });
    t.after(() => s.close());
    assert.deepEqual((await ask(s, 'edge.service.dc2.consul')).answer, ['edge.service.dc2.consul. 0 IN A 198.51.100.10']);
    assert.deepEqual((await ask(s, 'edge.service.dc2.consul', 'SRV')).answer, ['edge.service.dc2.consul. 0 IN SRV 1 1 18443 c633640a.addr.dc2.consul.']);
    assert.deepEqual((await ask(s, 'plain.service.dc2.consul')).answer, ['plain.service.dc2.consul. 0 IN A 198.51.100.2']);
    assert.deepEqual((await ask(s, 'plain.service.dc2.consul', 'AAAA')).answer, ['plain.service.dc2.consul. 0 IN AAAA 2001:db8:ffff::2']);
    assert.deepEqual((await ask(s, 'far.node.dc2.consul')).answer, ['far.node.dc2.consul. 0 IN A 198.51.100.2']);
    // The local datacenter keeps its LAN addresses, with or without its name in the question.
    assert.deepEqual((await ask(s, 'edge.service.consul')).answer, ['edge.service.consul. 0 IN A 10.0.0.1']);
    assert.deepEqual((await ask(s, 'edge.service.dc1.consul', 'SRV')).answer, ['edge.service.dc1.consul. 0 IN SRV 1 1 8443 near.node.dc1.consul.']);
  });

  test('without the flag, every datacenter answers with its LAN addresses', async (t) => {
    const s = await startServer({ catalog });
    t.after(() => s.close());
    assert.deepEqual((await ask(s, 'edge.service.dc2.consul')).answer, ['edge.service.dc2.consul. 0 IN A 10.2.0.1']);
    assert.deepEqual((await ask(s, 'edge.service.dc2.consul', 'SRV')).answer, ['edge.service.dc2.consul. 0 IN SRV 1 1 8443 far.node.dc2.consul.']);
  });
});

describe('hostname addresses without an upstream', () => {
  test('the CNAME alone, NOERROR', async (t) => {
    const s = await startServer({ catalog: CATALOG });
    t.after(() => s.close());
    const a = await ask(s, 'rds.service.consul');
    assert.equal(a.status, 'NOERROR');
    assert.deepEqual(a.answer, ['rds.service.consul. 0 IN CNAME db.example.test.']);
  });
});

describe('hostname and tagged addresses from Consul', () => {
  const stops = cleanups();
  let sim: ConsulSim;
  let s: TestServer;
  before(async () => {
    const dnsmasq = await startDnsmasq(stops, UPSTREAM_DATA);
    sim = new ConsulSim({ datacenters: ['dc1', 'dc2'] });
    await sim.start();
    // consul-esm's way: an external node whose address is a hostname, registered through the catalog.
    sim.registerNode('dc1', { Node: 'rds', Address: 'db.example.test' });
    sim.registerService('dc1', 'rds', { ID: 'rds1', Service: 'rds', Port: 5432 });
    sim.registerNode('dc1', { Node: 'n1', Address: '10.0.0.1' });
    sim.registerService('dc1', 'n1', { ID: 'api1', Service: 'api', Port: 443, Address: 'api.example.test' });
    sim.registerNode('dc2', { Node: 'far', Address: '10.2.0.1', TaggedAddresses: { lan: '10.2.0.1', lan_ipv4: '10.2.0.1', wan: '198.51.100.1', wan_ipv4: '198.51.100.1' } });
    sim.registerService('dc2', 'far', { ID: 'edge1', Service: 'edge', Port: 8443, TaggedAddresses: { wan: { Address: '198.51.100.9', Port: 18443 } } });
    sim.registerService('dc2', 'far', { ID: 'plain1', Service: 'plain', Port: 7000 });
    sim.registerNode('dc1', { Node: 'dual', Address: '10.0.0.4', TaggedAddresses: { lan: '10.0.0.4', lan_ipv4: '10.0.0.4', lan_ipv6: '2001:db8::4' } });
    sim.registerService('dc1', 'dual', { ID: 'both1', Service: 'both', Port: 90 });
    s = await startServer({ flags: { consul: sim.url, 'consul-wait': '2s', upstream: [dnsmasq.address], 'translate-wan-addrs': 'true' } });
  });
  after(async () => {
    await s?.close();
    await sim?.stop();
    await stops.run();
  });

  test('hostname nodes and services are served, not dropped', async () => {
    await eventually(async () => {
      assert.deepEqual((await ask(s, 'rds.service.consul')).answer, ['rds.service.consul. 0 IN CNAME db.example.test.', `db.example.test. ${TTL} IN A 192.0.2.50`]);
    });
    assert.deepEqual((await ask(s, 'api.service.consul', 'SRV')).answer, ['api.service.consul. 0 IN SRV 1 1 443 api.example.test.']);
    assert.deepEqual((await ask(s, 'rds.node.consul', 'AAAA')).answer, ['rds.node.consul. 0 IN CNAME db.example.test.', `db.example.test. ${TTL} IN AAAA 2001:db8::50`]);
  });

  test('a hostname of ours that is not loaded yet (on demand) is fetched, then answered', async (t) => {
    const od = await startServer({ flags: { consul: sim.url, 'consul-wait': '2s', watch: 'on-demand', 'fetch-timeout': '5s' } });
    t.after(() => od.close());
    sim.registerService('dc1', 'n1', { ID: 'front1', Service: 'front', Port: 8080, Address: 'back.service.consul' });
    sim.registerService('dc1', 'n1', { ID: 'back1', Service: 'back', Port: 9090 });
    await eventually(async () => {
      assert.deepEqual((await ask(od, 'front.service.consul')).answer, ['front.service.consul. 0 IN CNAME back.service.consul.', 'back.service.consul. 0 IN A 10.0.0.1']);
    });
  });

  test("a dual-stack node's lan_ipv4 and lan_ipv6 answer A and AAAA", async () => {
    await eventually(async () => {
      assert.deepEqual((await ask(s, 'both.service.consul')).answer, ['both.service.consul. 0 IN A 10.0.0.4']);
    });
    assert.deepEqual((await ask(s, 'both.service.consul', 'AAAA')).answer, ['both.service.consul. 0 IN AAAA 2001:db8::4']);
    assert.deepEqual((await ask(s, 'dual.node.consul', 'AAAA')).answer, ['dual.node.consul. 0 IN AAAA 2001:db8::4']);
  });

  test('--translate-wan-addrs: another datacenter answers with its WAN addresses and ports', async () => {
    await eventually(async () => {
      assert.deepEqual((await ask(s, 'edge.service.dc2.consul')).answer, ['edge.service.dc2.consul. 0 IN A 198.51.100.9']);
    });
    const srv = await ask(s, 'edge.service.dc2.consul', 'SRV');
    assert.deepEqual(srv.answer, ['edge.service.dc2.consul. 0 IN SRV 1 1 18443 c6336409.addr.dc2.consul.']);
    assert.deepEqual(srv.additional, ['c6336409.addr.dc2.consul. 0 IN A 198.51.100.9']);
    // No service address: the node's WAN address, and (it is not the node's own) an .addr. target, as Consul.
    assert.deepEqual((await ask(s, 'plain.service.dc2.consul')).answer, ['plain.service.dc2.consul. 0 IN A 198.51.100.1']);
    assert.deepEqual((await ask(s, 'plain.service.dc2.consul', 'SRV')).answer, ['plain.service.dc2.consul. 0 IN SRV 1 1 7000 c6336401.addr.dc2.consul.']);
    assert.deepEqual((await ask(s, 'far.node.dc2.consul')).answer, ['far.node.dc2.consul. 0 IN A 198.51.100.1']);
  });
});
