/**
 * Prepared queries of a catalog file (`queries:`), seen through dig: tag filters (with `!tag`),
 * only-passing, the query's TTL, failover to another datacenter (SRV targets name it), unknown
 * queries; and the bundled example catalog's queries (`--example`). Exact records, sections and
 * rcodes; round-robin sets compared sorted.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { dig } from '../support/dig.js';
import { TEST_SERIAL, startServer, type TestServer } from '../support/server.js';

const SOA = `consul. 0 IN SOA ns.consul. hostmaster.consul. ${TEST_SERIAL} 3600 600 86400 0`;
const sorted = (lines: readonly string[]): string[] => [...lines].sort();

const CATALOG = `
datacenter: dc1
nodes:
  - name: n1
    address: 10.0.0.1
    services:
      - {name: web, id: web1, port: 80, tags: [v1, canary]}
      - {name: api, id: api1, port: 9000, health: critical}
  - name: n2
    address: 10.0.0.2
    services:
      - {name: web, id: web2, port: 80, tags: [v1], health: warning, weights: {passing: 5, warning: 2}}
      - {name: web, id: web3, port: 8080, tags: [v2], address: 10.0.1.3}
  - name: m1
    datacenter: dc2
    address: 10.2.0.1
    services:
      - {name: api, id: api-dc2, port: 9002}
queries:
  - {name: stable, service: web, tags: [v1, '!canary'], ttl: 30}
  - {name: healthy-v1, service: web, tags: [v1], only-passing: true}
  - {name: api, service: api, failover: [dc9, dc2], ttl: 5}
  - {name: api-local, service: api}
  - {name: web.eu, service: web, tags: [v2]}
  - {name: remote, service: api, datacenter: dc2}
`;

describe('prepared queries of a catalog file', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ catalog: CATALOG });
  });
  after(async () => {
    await s.close();
  });

  test('tags (all present, !tag absent) and the query TTL', async () => {
    const r = await dig(s.port, ['stable.query.consul', 'A']);
    assert.equal(r.status, 'NOERROR');
    assert.ok(r.flags.includes('aa'), 'authoritative');
    assert.deepEqual(r.answer, ['stable.query.consul. 30 IN A 10.0.0.2']);
    const srv = await dig(s.port, ['stable.query.consul', 'SRV']);
    // The warning instance keeps its warning weight, as in `.service` answers.
    assert.deepEqual(srv.answer, ['stable.query.consul. 30 IN SRV 1 2 80 n2.node.dc1.consul.']);
    assert.deepEqual(srv.additional, ['n2.node.dc1.consul. 30 IN A 10.0.0.2']);
  });

  test('only-passing leaves warning instances out; no TTL: the service TTL', async () => {
    assert.deepEqual((await dig(s.port, ['healthy-v1.query.consul', 'A'])).answer, ['healthy-v1.query.consul. 0 IN A 10.0.0.1']);
  });

  test('failover: unknown datacenters skipped, the first with instances answers, SRV targets in it', async () => {
    const srv = await dig(s.port, ['api.query.consul', 'SRV']);
    assert.equal(srv.status, 'NOERROR');
    assert.deepEqual(srv.answer, ['api.query.consul. 5 IN SRV 1 1 9002 m1.node.dc2.consul.']);
    assert.deepEqual(srv.additional, ['m1.node.dc2.consul. 5 IN A 10.2.0.1']);
  });

  test('no instance anywhere, unknown query, unknown datacenter: NXDOMAIN with the SOA', async () => {
    for (const name of ['api-local.query.consul', 'nope.query.consul', 'stable.query.dc9.consul', 'stable.query.dc2.consul']) {
      const r = await dig(s.port, [name, 'A']);
      assert.equal(r.status, 'NXDOMAIN', name);
      assert.deepEqual(r.answer, [], name);
      assert.deepEqual(r.authority, [SOA], name);
    }
  });

  test('dotted names, the datacenter label, the RFC 2782 form, NODATA', async () => {
    assert.deepEqual((await dig(s.port, ['web.eu.query.consul', 'A'])).answer, ['web.eu.query.consul. 0 IN A 10.0.1.3']);
    assert.deepEqual((await dig(s.port, ['web.eu.query.consul', 'SRV'])).answer, ['web.eu.query.consul. 0 IN SRV 1 1 8080 0a000103.addr.dc1.consul.']);
    assert.deepEqual((await dig(s.port, ['remote.query.dc2.consul', 'A'])).answer, ['remote.query.dc2.consul. 0 IN A 10.2.0.1']);
    assert.deepEqual((await dig(s.port, ['_stable._tcp.query.consul', 'SRV'])).answer, ['_stable._tcp.query.consul. 30 IN SRV 1 2 80 n2.node.dc1.consul.']);
    const aaaa = await dig(s.port, ['stable.query.consul', 'AAAA']);
    assert.equal(aaaa.status, 'NOERROR');
    assert.deepEqual(aaaa.answer, []);
    assert.deepEqual(aaaa.authority, [SOA]);
  });
});

describe('the example catalog shows prepared queries', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer();
  });
  after(async () => {
    await s.close();
  });

  test('web-v2 with its TTL, web-fallback failing over to dc2', async () => {
    assert.deepEqual(sorted((await dig(s.port, ['web-v2.query.consul', 'A'])).answer), ['web-v2.query.consul. 10 IN A 192.168.0.130', 'web-v2.query.consul. 10 IN A 192.168.0.131']);
    const srv = await dig(s.port, ['web-fallback.query.consul', 'SRV']);
    assert.deepEqual(srv.answer, ['web-fallback.query.consul. 0 IN SRV 1 1 8080 remote-1.node.dc2.consul.']);
    assert.deepEqual(srv.additional, ['remote-1.node.dc2.consul. 0 IN A 10.1.0.10']);
  });
});

describe('a query without a TTL takes the TTL --service-ttl gives its service', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ catalog: CATALOG, flags: { 'service-ttl': ['web=9', '*=4'] } });
  });
  after(async () => {
    await s.close();
  });

  test("the service's TTL without a query TTL; the query's own TTL wins", async () => {
    assert.deepEqual((await dig(s.port, ['healthy-v1.query.consul', 'A'])).answer, ['healthy-v1.query.consul. 9 IN A 10.0.0.1']);
    assert.deepEqual((await dig(s.port, ['stable.query.consul', 'A'])).answer, ['stable.query.consul. 30 IN A 10.0.0.2']);
  });
});
