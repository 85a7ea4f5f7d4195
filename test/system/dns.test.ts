/**
 * What a `dig` user sees: a table of questions and the exact reply, section by section, from a real
 * server on loopback serving test/support/catalog.ts. Record sets whose order rotates (round robin)
 * are compared sorted; rotation itself is tested in sizes.test.ts and reply-cache.test.ts.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CATALOG, bigCatalog } from '../support/catalog.js';
import { dig, digEach, type DigResult } from '../support/dig.js';
import { TEST_SERIAL, startServer, type TestServer } from '../support/server.js';

interface Case {
  q: string;
  type?: string;
  /** Extra dig arguments. */
  args?: string[];
  status: string;
  aa?: boolean;
  answer?: string[];
  authority?: string[];
  additional?: string[];
}

const SOA = (domain = 'consul') =>
  `${domain}. 0 IN SOA ns.${domain}. hostmaster.${domain}. ${TEST_SERIAL} 3600 600 86400 0`;

/** node1's meta (rack: r1, rfc1035-note: raw value) as the TXT records owned by `owner`. */
const NODE1_META = (owner: string) => [`${owner}. 0 IN TXT "rack=r1"`, `${owner}. 0 IN TXT "raw value"`];

const CASES: Case[] = [
  // Services: A/AAAA, one record per healthy instance (critical left out, warning kept).
  { q: 'web.service.consul', status: 'NOERROR', answer: ['web.service.consul. 0 IN A 10.0.0.1', 'web.service.consul. 0 IN A 10.0.0.2'] },
  { q: 'web.service.dc1.consul', status: 'NOERROR', answer: ['web.service.dc1.consul. 0 IN A 10.0.0.1', 'web.service.dc1.consul. 0 IN A 10.0.0.2'] },
  { q: 'web.service.dc2.consul', status: 'NOERROR', answer: ['web.service.dc2.consul. 0 IN A 10.2.0.1'] },
  { q: 'web.service.dc2.dc.consul', status: 'NOERROR', answer: ['web.service.dc2.dc.consul. 0 IN A 10.2.0.1'] },
  { q: 'db.service.consul', status: 'NOERROR', answer: ['db.service.consul. 0 IN A 10.0.0.1', 'db.service.consul. 0 IN A 10.0.0.2'] },
  // The answer uses the question's spelling; matching ignores case (names and tags).
  { q: 'WeB.SeRvIcE.CoNsUl', status: 'NOERROR', answer: ['WeB.SeRvIcE.CoNsUl. 0 IN A 10.0.0.1', 'WeB.SeRvIcE.CoNsUl. 0 IN A 10.0.0.2'] },
  { q: 'pRIMARY.web.service.consul', status: 'NOERROR', answer: ['pRIMARY.web.service.consul. 0 IN A 10.0.0.1'] },
  { q: 'v1.web.service.consul', status: 'NOERROR', answer: ['v1.web.service.consul. 0 IN A 10.0.0.1'] },
  { q: 'v2.web.service.consul', status: 'NOERROR', answer: ['v2.web.service.consul. 0 IN A 10.0.0.2'] },
  { q: 'cache.service.consul', status: 'NOERROR', answer: ['cache.service.consul. 0 IN A 10.0.1.5'] },
  // A tag may contain dots: everything left of the service name is the tag.
  { q: 'canary.eu.web.service.consul', status: 'NOERROR', answer: ['canary.eu.web.service.consul. 0 IN A 10.0.0.2'] },
  { q: 'v6only.service.consul', type: 'AAAA', status: 'NOERROR', answer: ['v6only.service.consul. 0 IN AAAA 2001:db8::6'] },
  { q: 'dual.service.consul', type: 'ANY', status: 'NOERROR', answer: ['dual.service.consul. 0 IN A 10.0.0.4', 'dual.service.consul. 0 IN AAAA 2001:db8::6'] },
  { q: 'web.service.consul', type: 'ANY', status: 'NOERROR', answer: ['web.service.consul. 0 IN A 10.0.0.1', 'web.service.consul. 0 IN A 10.0.0.2'] },

  // NODATA: the name exists, the type does not (musl needs NOERROR for AAAA of a v4-only name).
  { q: 'web.service.consul', type: 'AAAA', status: 'NOERROR', answer: [], authority: [SOA()] },
  { q: 'v6only.service.consul', type: 'A', status: 'NOERROR', answer: [], authority: [SOA()] },
  { q: 'web.service.consul', type: 'TXT', status: 'NOERROR', answer: [], authority: [SOA()] },
  { q: 'web.service.consul', type: 'MX', status: 'NOERROR', answer: [], authority: [SOA()] },

  // NXDOMAIN: unknown service, tag, datacenter, name shape; a service with only critical instances.
  { q: 'nope.service.consul', status: 'NXDOMAIN', answer: [], authority: [SOA()] },
  { q: 'v9.web.service.consul', status: 'NXDOMAIN', answer: [], authority: [SOA()] },
  { q: 'down.service.consul', status: 'NXDOMAIN', answer: [], authority: [SOA()] },
  { q: 'web.service.dc9.consul', status: 'NXDOMAIN', answer: [], authority: [SOA()] },
  { q: 'web.service.dc1.extra.consul', status: 'NXDOMAIN', answer: [], authority: [SOA()] },
  { q: 'foo.bar.consul', status: 'NXDOMAIN', answer: [], authority: [SOA()] },
  { q: 'dc9.consul', status: 'NXDOMAIN', answer: [], authority: [SOA()] },
  { q: 'web.query.consul', status: 'NXDOMAIN', answer: [], authority: [SOA()] },
  // Cluster peering and sameness groups are not served (README: where svcdns differs from Consul).
  { q: 'web.service.p1.peer.consul', status: 'NXDOMAIN', answer: [], authority: [SOA()] },
  { q: 'web.service.default.ns.p1.peer.consul', type: 'SRV', status: 'NXDOMAIN', answer: [], authority: [SOA()] },
  { q: 'web.service.g1.sg.consul', status: 'NXDOMAIN', answer: [], authority: [SOA()] },

  // Empty non-terminals exist (names live below them): NODATA, not NXDOMAIN (RFC 8020).
  { q: 'service.consul', status: 'NOERROR', answer: [], authority: [SOA()] },
  { q: 'node.dc1.consul', status: 'NOERROR', answer: [], authority: [SOA()] },
  { q: 'dc2.consul', status: 'NOERROR', answer: [], authority: [SOA()] },
  { q: '_tcp.service.consul', type: 'SRV', status: 'NOERROR', answer: [], authority: [SOA()] },
  { q: 'eu.web.service.consul', status: 'NOERROR', answer: [], authority: [SOA()] },
  { q: 'us.web.service.consul', status: 'NXDOMAIN', answer: [], authority: [SOA()] },

  // SRV: priority 1, weight by health state, node targets with their addresses as additional data,
  // and (as Consul adds them) the meta of each target's node as RFC 1464 TXT.
  // The same record set under the plain name and the RFC 2782 forms (_tcp/_udp: no tag filter),
  // with or without the `service` label (Consul's `_NAME._TAG[.DC].DOMAIN`).
  ...['db.service.consul', '_db._tcp.service.consul', '_db._udp.service.consul', '_db._tcp.consul', '_db._tcp.dc1.consul', '_db._tcp.dc1.dc.consul'].map(
    (q): Case => ({
      q,
      type: 'SRV',
      status: 'NOERROR',
      answer: [`${q}. 0 IN SRV 1 10 5432 node1.node.dc1.consul.`, `${q}. 0 IN SRV 1 2 5432 node2.node.dc1.consul.`],
      additional: ['node1.node.dc1.consul. 0 IN A 10.0.0.1', 'node2.node.dc1.consul. 0 IN A 10.0.0.2', ...NODE1_META('node1.node.dc1.consul')],
    }),
  ),
  {
    q: '_web._tcp.dc2.consul',
    type: 'SRV',
    status: 'NOERROR',
    answer: ['_web._tcp.dc2.consul. 0 IN SRV 1 1 80 far1.node.dc2.consul.'],
    additional: ['far1.node.dc2.consul. 0 IN A 10.2.0.1'],
  },
  // The bare RFC 2782 name holds SRV records only: NODATA for other types (Consul: NXDOMAIN).
  { q: '_db._tcp.consul', type: 'A', status: 'NOERROR', answer: [], authority: [SOA()] },
  { q: '_db._tcp.consul', type: 'TXT', status: 'NOERROR', answer: [], authority: [SOA()] },
  { q: '_nope._tcp.consul', type: 'SRV', status: 'NXDOMAIN', answer: [], authority: [SOA()] },
  { q: '_nope._tcp.consul', type: 'A', status: 'NXDOMAIN', answer: [], authority: [SOA()] },
  { q: '_db._v9.consul', type: 'SRV', status: 'NXDOMAIN', answer: [], authority: [SOA()] },
  { q: '_db._tcp.dc9.consul', type: 'SRV', status: 'NXDOMAIN', answer: [], authority: [SOA()] },
  { q: 'x._db._tcp.consul', type: 'SRV', status: 'NXDOMAIN', answer: [], authority: [SOA()] },
  { q: '_tcp.consul', type: 'SRV', status: 'NOERROR', answer: [], authority: [SOA()] },
  {
    q: '_db._replica.service.consul',
    type: 'SRV',
    status: 'NOERROR',
    answer: ['_db._replica.service.consul. 0 IN SRV 1 2 5432 node2.node.dc1.consul.'],
    additional: ['node2.node.dc1.consul. 0 IN A 10.0.0.2'],
  },
  {
    // A tag in the bare form.
    q: '_web._v1.consul',
    type: 'SRV',
    status: 'NOERROR',
    answer: ['_web._v1.consul. 0 IN SRV 1 1 80 node1.node.dc1.consul.'],
    additional: ['node1.node.dc1.consul. 0 IN A 10.0.0.1', ...NODE1_META('node1.node.dc1.consul')],
  },
  {
    q: 'cache.service.consul',
    type: 'SRV',
    status: 'NOERROR',
    answer: ['cache.service.consul. 0 IN SRV 1 1 6379 0a000105.addr.dc1.consul.'],
    additional: ['0a000105.addr.dc1.consul. 0 IN A 10.0.1.5'],
  },
  {
    q: 'web.service.dc2.consul',
    type: 'SRV',
    status: 'NOERROR',
    answer: ['web.service.dc2.consul. 0 IN SRV 1 1 80 far1.node.dc2.consul.'],
    additional: ['far1.node.dc2.consul. 0 IN A 10.2.0.1'],
  },
  { q: '_nope._tcp.service.consul', type: 'SRV', status: 'NXDOMAIN', answer: [], authority: [SOA()] },

  // Nodes, with node meta as RFC 1464 TXT: the answer to TXT, additional data with A/AAAA.
  { q: 'node1.node.consul', status: 'NOERROR', answer: ['node1.node.consul. 0 IN A 10.0.0.1'], additional: NODE1_META('node1.node.consul') },
  { q: 'NODE1.node.dc1.consul', status: 'NOERROR', answer: ['NODE1.node.dc1.consul. 0 IN A 10.0.0.1'], additional: NODE1_META('NODE1.node.dc1.consul') },
  { q: 'node6.node.consul', type: 'AAAA', status: 'NOERROR', answer: ['node6.node.consul. 0 IN AAAA 2001:db8::6'] },
  { q: 'node1.node.consul', type: 'AAAA', status: 'NOERROR', answer: [], authority: [SOA()] },
  { q: 'node1.node.consul', type: 'TXT', status: 'NOERROR', answer: ['node1.node.consul. 0 IN TXT "rack=r1"', 'node1.node.consul. 0 IN TXT "raw value"'] },
  // Meta longer than a 255-byte character-string continues in a second string of the same record.
  { q: 'longmeta.node.consul', type: 'TXT', status: 'NOERROR', answer: [`longmeta.node.consul. 0 IN TXT "note=${'x'.repeat(250)}" "${'x'.repeat(50)}"`] },
  { q: 'far1.node.dc2.consul', status: 'NOERROR', answer: ['far1.node.dc2.consul. 0 IN A 10.2.0.1'] },
  { q: 'far1.node.consul', status: 'NXDOMAIN', answer: [], authority: [SOA()] },
  { q: 'nope.node.consul', status: 'NXDOMAIN', answer: [], authority: [SOA()] },

  // Addresses encoded in the name.
  { q: '0a000105.addr.dc1.consul', status: 'NOERROR', answer: ['0a000105.addr.dc1.consul. 0 IN A 10.0.1.5'] },
  { q: '0a000105.addr.dc1.consul', type: 'AAAA', status: 'NOERROR', answer: [], authority: [SOA()] },
  { q: '20010db8000000000000000000000006.addr.dc1.consul', type: 'AAAA', status: 'NOERROR', answer: ['20010db8000000000000000000000006.addr.dc1.consul. 0 IN AAAA 2001:db8::6'] },
  { q: 'zz.addr.dc1.consul', status: 'NXDOMAIN', answer: [], authority: [SOA()] },

  // The domain apex: SOA, NS (the nodes of the `consul` service, with glue), NODATA otherwise.
  { q: 'consul', type: 'SOA', status: 'NOERROR', answer: [SOA()] },
  { q: 'consul', type: 'NS', status: 'NOERROR', answer: ['consul. 0 IN NS node1.node.dc1.consul.'], additional: ['node1.node.dc1.consul. 0 IN A 10.0.0.1'] },
  { q: 'consul', type: 'A', status: 'NOERROR', answer: [], authority: [SOA()] },

  // Reverse lookups of catalog addresses.
  { q: '10.0.0.1', args: ['-x'], status: 'NOERROR', answer: ['1.0.0.10.in-addr.arpa. 0 IN PTR node1.node.dc1.consul.'] },
  { q: '10.0.1.5', args: ['-x'], status: 'NOERROR', answer: ['5.1.0.10.in-addr.arpa. 0 IN PTR cache.service.dc1.consul.'] },
  {
    q: '2001:db8::6',
    args: ['-x'],
    status: 'NOERROR',
    answer: ['6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 0 IN PTR node6.node.dc1.consul.'],
  },

  // Not ours: REFUSED (forwarding arrives in its own issue), not authoritative.
  { q: 'example.com', status: 'REFUSED', aa: false, answer: [], authority: [] },
  { q: '10.99.99.99', args: ['-x'], status: 'REFUSED', aa: false, answer: [], authority: [] },
];

function sorted(lines: readonly string[]): string[] {
  return [...lines].sort();
}

function check(c: Case, r: DigResult): void {
  const what = `${c.q} ${c.type ?? 'A'}`;
  if (!c.args) assert.deepEqual(r.question, [`${c.q}. IN ${c.type ?? 'A'}`], `${what}: the question, as asked\n${r.raw}`);
  assert.equal(r.status, c.status, `${what}: status\n${r.raw}`);
  assert.ok(r.flags.includes('qr'), `${what}: qr flag`);
  assert.equal(r.flags.includes('aa'), c.aa ?? true, `${what}: aa flag\n${r.raw}`);
  assert.ok(!r.flags.includes('tc'), `${what}: tc flag`);
  assert.ok(!r.flags.includes('ra'), `${what}: ra flag (no recursion yet)`);
  if (c.answer) assert.deepEqual(sorted(r.answer), sorted(c.answer), `${what}: answer\n${r.raw}`);
  if (c.authority) assert.deepEqual(r.authority, c.authority, `${what}: authority\n${r.raw}`);
  assert.deepEqual(sorted(r.additional), sorted(c.additional ?? []), `${what}: additional\n${r.raw}`);
}

describe('dig against the test catalog', () => {
  let s: TestServer;
  /** Each case's reply over UDP and over TCP: every question asked by one dig per transport. */
  let overUdp: DigResult[];
  let overTcp: DigResult[];
  before(async () => {
    s = await startServer({ catalog: CATALOG });
    const questions = CASES.map((c) => [...(c.args ?? []), c.q, ...(c.args ? [] : [c.type ?? 'A'])]);
    overUdp = await digEach(s.port, questions);
    overTcp = await digEach(s.port, questions, ['+tcp']);
  });
  after(() => s.close());

  CASES.forEach((c, i) => {
    test(`${c.q} ${c.type ?? (c.args ? 'PTR' : 'A')} -> ${c.status}`, () => {
      check(c, overUdp[i]!); // UDP, but for ANY: dig asks ANY over TCP
      // The same question over TCP gets the same reply.
      assert.equal(overTcp[i]!.transport, 'TCP');
      check(c, overTcp[i]!);
    });
  });

  test('EDNS: the OPT record is echoed with the DO bit copied; without EDNS there is none', async () => {
    const withEdns = await dig(s.port, ['+dnssec', 'web.service.consul']);
    assert.match(withEdns.edns ?? '', /^version: 0, flags: do; udp: 1232$/);
    const plain = await dig(s.port, ['+noedns', 'web.service.consul']);
    assert.equal(plain.edns, null);
    assert.equal(plain.answer.length, 2);
  });
});

describe('settings that change answers', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({
      catalog: CATALOG,
      flags: { 'alt-domain': 'cluster.local', 'service-ttl': '30', 'node-ttl': '10', datacenter: 'dc1' },
    });
  });
  after(() => s.close());

  test('service and node TTLs', async () => {
    assert.deepEqual(sorted((await dig(s.port, ['web.service.consul'])).answer), ['web.service.consul. 30 IN A 10.0.0.1', 'web.service.consul. 30 IN A 10.0.0.2']);
    assert.deepEqual((await dig(s.port, ['node1.node.consul'])).answer, ['node1.node.consul. 10 IN A 10.0.0.1']);
  });

  test('the alt domain is answered identically, with its own names in targets and SOA', async () => {
    const srv = await dig(s.port, ['_db._primary.service.cluster.local', 'SRV']);
    assert.equal(srv.status, 'NOERROR');
    assert.deepEqual(srv.answer, ['_db._primary.service.cluster.local. 30 IN SRV 1 10 5432 node1.node.dc1.cluster.local.']);
    assert.deepEqual(srv.additional, ['node1.node.dc1.cluster.local. 30 IN A 10.0.0.1', 'node1.node.dc1.cluster.local. 30 IN TXT "rack=r1"', 'node1.node.dc1.cluster.local. 30 IN TXT "raw value"']);
    const nx = await dig(s.port, ['nope.service.cluster.local']);
    assert.equal(nx.status, 'NXDOMAIN');
    assert.deepEqual(nx.authority, [SOA('cluster.local')]);
    const primary = await dig(s.port, ['nope.service.consul']);
    assert.deepEqual(primary.authority, [SOA('consul')]);
  });

  test('names outside both domains are still refused', async () => {
    assert.equal((await dig(s.port, ['web.service.local'])).status, 'REFUSED');
  });
});

describe('listening on IPv6 loopback', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ catalog: CATALOG, flags: { listen: ['[::1]:0'] } });
  });
  after(() => s.close());

  test('[::1]:PORT answers over UDP and TCP', async () => {
    assert.equal(s.host, '::1');
    for (const transport of ['+notcp', '+tcp']) {
      const r = await dig(s.port, [transport, 'v1.web.service.consul'], '::1');
      assert.deepEqual(r.answer, ['v1.web.service.consul. 0 IN A 10.0.0.1'], transport);
    }
  });
});

describe('a catalog without a consul service: svcdns names itself as the name server', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ catalog: 'nodes: [{name: n1, address: 10.0.0.1, services: [{name: web, port: 80}]}]' });
  });
  after(() => s.close());

  test('NS is ns.consul, with the listen address as glue, and ns.consul resolves to it', async () => {
    const ns = await dig(s.port, ['consul', 'NS']);
    assert.deepEqual(ns.answer, ['consul. 0 IN NS ns.consul.']);
    assert.deepEqual(ns.additional, ['ns.consul. 0 IN A 127.0.0.1']);
    const a = await dig(s.port, ['ns.consul']);
    assert.equal(a.status, 'NOERROR');
    assert.deepEqual(a.answer, ['ns.consul. 0 IN A 127.0.0.1']);
    const aaaa = await dig(s.port, ['ns.consul', 'AAAA']);
    assert.equal(aaaa.status, 'NOERROR');
    assert.deepEqual(aaaa.answer, []);
  });
});

describe('a record set too big for a 512-byte UDP reply (sizes are tested in test/unit/sizes.test.ts)', () => {
  const NAME = 'big.service.consul';
  const COUNT = 100;
  /** As many A records as fit in 512 bytes: header, question, then 16 bytes per record. */
  const FIT = Math.floor((512 - 12 - (NAME.length + 2 + 4)) / 16);
  let s: TestServer;
  before(async () => {
    s = await startServer({ catalog: bigCatalog({ big: COUNT }) });
  });
  after(() => s.close());

  test('dig retries over TCP on TC and shows the whole set (as glibc does)', async () => {
    const r = await dig(s.port, ['+noedns', NAME]);
    assert.equal(r.transport, 'TCP');
    assert.equal(r.answer.length, COUNT);
    const ignoring = await dig(s.port, ['+noedns', '+ignore', NAME]);
    assert.ok(ignoring.flags.includes('tc'));
    assert.equal(ignoring.answer.length, FIT);
  });
});

describe('per-service TTLs, SOA timers and --a-record-limit, as configured', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({
      catalog: CATALOG,
      flags: {
        'service-ttl': ['5', 'd*=20', 'db*=30', 'web=10'],
        'node-ttl': '3',
        'soa-refresh': '7200',
        'soa-retry': '300',
        'soa-expire': '604800',
        'soa-min-ttl': '60',
        'a-record-limit': '1',
      },
    });
  });
  after(() => s.close());

  test('TTL precedence: the exact name, else the longest prefix, else *; SRV glue and node meta take the service TTL', async () => {
    const [web, db, dual, cache, srv] = await digEach(s.port, [['web.service.consul', 'SRV'], ['db.service.consul', 'SRV'], ['dual.service.consul', 'SRV'], ['cache.service.consul'], ['_db._primary.consul', 'SRV']]);
    assert.deepEqual(sorted(web!.answer), ['web.service.consul. 10 IN SRV 1 1 80 node1.node.dc1.consul.', 'web.service.consul. 10 IN SRV 1 1 80 node2.node.dc1.consul.'], 'exact: web');
    assert.deepEqual(sorted(db!.answer), ['db.service.consul. 30 IN SRV 1 10 5432 node1.node.dc1.consul.', 'db.service.consul. 30 IN SRV 1 2 5432 node2.node.dc1.consul.'], 'db* beats d*');
    assert.deepEqual(dual!.answer.map((l) => l.split(' ')[1]), ['20', '20'], 'd*');
    assert.deepEqual(cache!.answer, ['cache.service.consul. 5 IN A 10.0.1.5'], '*');
    assert.deepEqual(srv!.answer, ['_db._primary.consul. 30 IN SRV 1 10 5432 node1.node.dc1.consul.']);
    assert.deepEqual(srv!.additional, ['node1.node.dc1.consul. 30 IN A 10.0.0.1', 'node1.node.dc1.consul. 30 IN TXT "rack=r1"', 'node1.node.dc1.consul. 30 IN TXT "raw value"']);
  });

  test('nodes take the node TTL, their meta too; PTR of a service address its service TTL', async () => {
    const [node, ptr] = await digEach(s.port, [['node1.node.consul'], ['-x', '10.0.1.5']]);
    assert.deepEqual(node!.answer, ['node1.node.consul. 3 IN A 10.0.0.1']);
    assert.deepEqual(node!.additional, ['node1.node.consul. 3 IN TXT "rack=r1"', 'node1.node.consul. 3 IN TXT "raw value"']);
    assert.deepEqual(ptr!.answer, ['5.1.0.10.in-addr.arpa. 5 IN PTR cache.service.dc1.consul.']);
  });

  test('the SOA carries the timers, and its minimum as its own TTL in NXDOMAIN and NODATA answers (RFC 2308)', async () => {
    const soa = `consul. 60 IN SOA ns.consul. hostmaster.consul. ${TEST_SERIAL} 7200 300 604800 60`;
    const [apex, nx, nodata] = await digEach(s.port, [['consul', 'SOA'], ['nope.service.consul'], ['web.service.consul', 'AAAA']]);
    assert.deepEqual([apex!.status, apex!.answer], ['NOERROR', [soa]]);
    assert.deepEqual([nx!.status, nx!.authority], ['NXDOMAIN', [soa]]);
    assert.deepEqual([nodata!.status, nodata!.answer, nodata!.authority], ['NOERROR', [], [soa]]);
  });

  test('--a-record-limit 1: one address per answer, a different one each time; SRV keeps every instance', async () => {
    const answers = await digEach(s.port, [['web.service.consul'], ['web.service.consul'], ['web.service.consul', 'SRV']]);
    assert.deepEqual(answers.slice(0, 2).map((r) => r.answer.length), [1, 1]);
    assert.deepEqual(sorted(answers.slice(0, 2).flatMap((r) => r.answer)), ['web.service.consul. 10 IN A 10.0.0.1', 'web.service.consul. 10 IN A 10.0.0.2']);
    assert.equal(answers[2]!.answer.length, 2);
  });
});

describe('--no-node-meta-txt', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ catalog: CATALOG, flags: { 'node-meta-txt': 'false' } });
  });
  after(() => s.close());

  test('no meta in the additional section of SRV and node answers; TXT questions still get it', async () => {
    const [srv, node, txt] = await digEach(s.port, [['db.service.consul', 'SRV'], ['node1.node.consul'], ['node1.node.consul', 'TXT']]);
    assert.deepEqual(sorted(srv!.additional), ['node1.node.dc1.consul. 0 IN A 10.0.0.1', 'node2.node.dc1.consul. 0 IN A 10.0.0.2']);
    assert.deepEqual([node!.answer, node!.additional], [['node1.node.consul. 0 IN A 10.0.0.1'], []]);
    assert.deepEqual(txt!.answer, ['node1.node.consul. 0 IN TXT "rack=r1"', 'node1.node.consul. 0 IN TXT "raw value"']);
  });
});

describe("node meta as RFC 1464 TXT, escaped as Consul's encodeKVasRFC1464 escapes it", () => {
  let s: TestServer;
  before(async () => {
    const meta = JSON.stringify({ 'a=b': 'c`d', ' lead': 'v', 'trail  ': 'v', '`q': 'x', 'RFC1035-Raw': 'bare=yes', 'in side': 'v w' });
    s = await startServer({ catalog: `nodes: [{name: odd, address: 10.9.0.1, meta: ${meta}, services: [{name: api, port: 1}]}]` });
  });
  after(() => s.close());

  test('= and backquotes in keys, leading and trailing spaces of keys, backquotes in values; rfc1035- in any case', async () => {
    const expected = ['"a`=b=c``d"', '"` lead=v"', '"trail` ` =v"', '"``q=x"', '"bare=yes"', '"in side=v w"'];
    const [txt, srv] = await digEach(s.port, [['odd.node.consul', 'TXT'], ['_api._tcp.consul', 'SRV']]);
    assert.deepEqual(txt!.answer, expected.map((t) => `odd.node.consul. 0 IN TXT ${t}`));
    assert.deepEqual(srv!.additional, ['odd.node.dc1.consul. 0 IN A 10.9.0.1', ...expected.map((t) => `odd.node.dc1.consul. 0 IN TXT ${t}`)]);
  });
});

describe('a reply that must shrink loses its node meta TXT first, then the glue, then answers', () => {
  const COUNT = 6;
  let s: TestServer;
  before(async () => {
    const nodes = Array.from({ length: COUNT }, (_, i) => `  - {name: n${i}, address: 10.5.0.${i + 1}, meta: {note: ${'m'.repeat(100)}}, services: [{name: web, port: 80}]}`);
    s = await startServer({ catalog: `nodes:\n${nodes.join('\n')}\n`, flags: { 'max-udp-size': '4096' } });
  });
  after(() => s.close());

  test('512 bytes: every SRV record and its glue, no TXT, no TC; with room, the TXT too', async () => {
    const small = await dig(s.port, ['+noedns', '+ignore', '_web._tcp.consul', 'SRV']);
    assert.equal(small.answer.length, COUNT);
    assert.deepEqual(sorted(small.additional), Array.from({ length: COUNT }, (_, i) => `n${i}.node.dc1.consul. 0 IN A 10.5.0.${i + 1}`));
    assert.ok(!small.flags.includes('tc'), small.raw);
    const large = await dig(s.port, ['+bufsize=4096', '_web._tcp.consul', 'SRV']);
    assert.equal(large.answer.length, COUNT);
    assert.equal(large.additional.filter((l) => l.includes(' IN TXT ')).length, COUNT);
    assert.equal(large.additional.filter((l) => l.includes(' IN A ')).length, COUNT);
  });
});
