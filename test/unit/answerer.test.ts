/** The answerer's contract with the store: SERVFAIL for our domain until the first catalog sync. */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Answerer, isPending, isQueryPending } from '../../src/answer/answerer.js';
import type { Reply } from '../../src/dns/codec.js';
import { CatalogStore } from '../../src/catalog/store.js';
import { Rcode } from '../../src/dns/constants.js';
import { readQuery, type Query } from '../../src/dns/wire.js';
import { buildQuery } from '../support/client.js';
import { ServiceTtls } from '../../src/answer/ttl.js';
import { encodeRfc1464, metaTxtStrings } from '../../src/answer/rfc1464.js';
import { type AnswererOptions } from '../../src/answer/answerer.js';
import type { RR } from '../../src/dns/codec.js';

const answerer = new Answerer({
  domain: 'consul',
  altDomain: null,
  datacenter: 'dc1',
  serviceTtl: new ServiceTtls(),
  nodeTtl: 0,
  soa: { refresh: 3600, retry: 600, expire: 86400, minimum: 0 },
  nameserverAddresses: [],
});

function asReply(r: ReturnType<Answerer['answer']>): Reply | null {
  assert.ok(!isPending(r) && !isQueryPending(r), 'a full catalog never leaves an answer pending');
  return r;
}

function query(name: string, type = 'A'): Query {
  const r = readQuery(buildQuery(name, type));
  assert.equal(r.kind, 'query');
  return (r as { query: Query }).query;
}

test('before the first sync: SERVFAIL for our names (never NXDOMAIN), not ours for others', () => {
  const store = new CatalogStore();
  assert.equal(store.current(), null);
  const reply = asReply(answerer.answer(query('web.service.consul'), store.current()));
  assert.equal(reply?.rcode, Rcode.SERVFAIL);
  assert.equal(reply?.answers.length, 0);
  assert.equal(answerer.answer(query('example.com'), store.current()), null);
});

test('after the first sync the same name is answered from the snapshot', () => {
  const store = new CatalogStore();
  store.replace({
    nodes: [{ datacenter: 'dc1', name: 'n1', address: '10.0.0.1', meta: {} }],
    services: [{ datacenter: 'dc1', node: 'n1', id: 'web', name: 'web', address: '', port: 80, tags: [], weights: { passing: 1, warning: 1 }, health: 'passing' }],
  });
  const reply = asReply(answerer.answer(query('web.service.consul'), store.current()));
  assert.equal(reply?.rcode, Rcode.NOERROR);
  assert.equal(reply?.answers.length, 1);
});

test('a service keeps its generation when a reload leaves it unchanged', () => {
  const store = new CatalogStore();
  const node = { datacenter: 'dc1', name: 'n1', address: '10.0.0.1', meta: {} };
  const svc = (name: string, port: number) => ({ datacenter: 'dc1', node: 'n1', id: name, name, address: '', port, tags: [], weights: { passing: 1, warning: 1 }, health: 'passing' as const });
  const first = store.replace({ nodes: [node], services: [svc('web', 80), svc('db', 5432)] });
  const second = store.replace({ nodes: [node], services: [svc('web', 80), svc('db', 5433)] });
  assert.equal(second.service('dc1', 'web')!.generation, first.service('dc1', 'web')!.generation);
  assert.notEqual(second.service('dc1', 'db')!.generation, first.service('dc1', 'db')!.generation);
  assert.ok(second.serial > first.serial, 'SOA serial grows');
});

test("RFC 1464 as Consul's encodeKVasRFC1464 writes it: =, backquotes, leading and trailing spaces of keys escaped", () => {
  const table: [string, string, string][] = [
    ['colour', 'blue', 'colour=blue'],
    ['=colour', 'blue', '`=colour=blue'],
    ['name=colour', 'blue', 'name`=colour=blue'],
    ['`', 'x', '``=x'],
    ['a`=b', 'c`d', 'a```=b=c``d'],
    [' lead', 'v', '` lead=v'],
    ['trail  ', 'v', 'trail` ` =v'],
    ['  both ', ' v ', '` ` both` = v '],
    ['in side', 'v', 'in side=v'],
    // Only spaces: leading ones first, then what that left trailing (Consul's order, and its result).
    ['  ', 'v', '` `` =v'],
    ['', 'v', '=v'],
    ['k', '', 'k='],
  ];
  for (const [key, value, text] of table) assert.equal(encodeRfc1464(key, value), text, JSON.stringify(key));
  // rfc1035- keys, in any case, give the bare value.
  assert.deepEqual(metaTxtStrings({ 'rfc1035-00': 'value0', 'RFC1035-x': 'a=b', 'Rfc1035-': '', key0: 'value1', 'rfc1035': 'no' }), ['value0', 'a=b', '', 'key0=value1', 'rfc1035=no']);
});

/** A two-node catalog: web on both nodes (one with its own address), db on n1; n1 has meta. */
function metaStore(): CatalogStore {
  const store = new CatalogStore();
  const svc = (node: string, id: string, name: string, port: number, address = '') => ({ datacenter: 'dc1', node, id, name, address, port, tags: [], weights: { passing: 1, warning: 1 }, health: 'passing' as const });
  store.replace({
    nodes: [
      { datacenter: 'dc1', name: 'n1', address: '10.0.0.1', meta: { rack: 'r1', 'consul-network-segment': '' } },
      { datacenter: 'dc1', name: 'n2', address: '10.0.0.2', meta: { 'a=b': 'c' } },
    ],
    services: [svc('n1', 'web1', 'web', 80), svc('n2', 'web2', 'web', 81, '10.0.0.3'), svc('n2', 'web3', 'web', 82), svc('n1', 'db1', 'db', 5432)],
  });
  return store;
}

function answererWith(options: Partial<AnswererOptions>): Answerer {
  return new Answerer({ domain: 'consul', altDomain: null, datacenter: 'dc1', serviceTtl: new ServiceTtls(), nodeTtl: 0, soa: { refresh: 3600, retry: 600, expire: 86400, minimum: 0 }, nameserverAddresses: [], ...options });
}

function text(rr: RR): string {
  const data = 'address' in rr ? [...rr.address].join('.') : 'target' in rr ? `${'port' in rr ? `${rr.port} ` : ''}${rr.target}` : 'strings' in rr ? rr.strings.join('') : '';
  return `${rr.name} ${rr.ttl} ${rr.type} ${data}`;
}

test("TTLs as Consul's: the asked service's TTL on its SRV records, their glue and their nodes' meta; the node TTL on nodes", () => {
  const a = answererWith({ serviceTtl: new ServiceTtls([['*', 5], ['we*', 7], ['web', 9]]), nodeTtl: 3 });
  const snapshot = metaStore().current();
  const srv = asReply(a.answer(query('web.service.consul', 'SRV'), snapshot, 0))!;
  assert.deepEqual(srv.answers.map(text), ['web.service.consul 9 33 80 n1.node.dc1.consul', 'web.service.consul 9 33 81 0a000003.addr.dc1.consul', 'web.service.consul 9 33 82 n2.node.dc1.consul']);
  assert.deepEqual(srv.additional.map(text), ['n1.node.dc1.consul 9 1 10.0.0.1', '0a000003.addr.dc1.consul 9 1 10.0.0.3', 'n2.node.dc1.consul 9 1 10.0.0.2']);
  // Meta once per node, owned by the node's name whatever the target, after the glue.
  assert.deepEqual(srv.optionalAdditional?.map(text), ['n1.node.dc1.consul 9 16 rack=r1', 'n1.node.dc1.consul 9 16 consul-network-segment=', 'n2.node.dc1.consul 9 16 a`=b=c']);
  assert.deepEqual(asReply(a.answer(query('db.service.consul', 'SRV'), snapshot, 0))!.answers.map((r) => r.ttl), [5]);
  const node = asReply(a.answer(query('n1.node.consul'), snapshot))!;
  assert.deepEqual([node.answers.map(text), node.optionalAdditional?.map(text)], [['n1.node.consul 3 1 10.0.0.1'], ['n1.node.consul 3 16 rack=r1', 'n1.node.consul 3 16 consul-network-segment=']]);
  // TXT and ANY have the meta in the answer, not again in the additional section.
  assert.equal(asReply(a.answer(query('n1.node.consul', 'TXT'), snapshot))!.optionalAdditional, undefined);
  // A negative answer carries its SOA with the SOA's own minimum as TTL, and no meta.
  const soaTtl = answererWith({ soa: { refresh: 1, retry: 2, expire: 3, minimum: 30 } });
  const nodata = asReply(soaTtl.answer(query('n1.node.consul', 'AAAA'), snapshot))!;
  assert.deepEqual([nodata.answers.length, nodata.authority.map((r) => r.ttl), nodata.optionalAdditional], [0, [30], undefined]);
});

test('--no-node-meta-txt: no meta in additional sections; TXT questions still get it', () => {
  const a = answererWith({ nodeMetaTxt: false });
  const snapshot = metaStore().current();
  assert.equal(asReply(a.answer(query('web.service.consul', 'SRV'), snapshot))!.optionalAdditional, undefined);
  assert.equal(asReply(a.answer(query('n1.node.consul'), snapshot))!.optionalAdditional, undefined);
  assert.equal(asReply(a.answer(query('n1.node.consul', 'TXT'), snapshot))!.answers.length, 2);
});

test('a-record-limit: at most N address records, each turn another window; SRV is not limited', () => {
  const a = answererWith({ aRecordLimit: 2 });
  const snapshot = metaStore().current();
  const windows = [0, 1, 2].map((turn) => asReply(a.answer(query('web.service.consul'), snapshot, turn))!.answers.map((r) => ('address' in r ? [...r.address].join('.') : '')));
  assert.deepEqual(windows, [['10.0.0.1', '10.0.0.3'], ['10.0.0.3', '10.0.0.2'], ['10.0.0.2', '10.0.0.1']]);
  assert.equal(asReply(a.answer(query('web.service.consul', 'SRV'), snapshot))!.answers.length, 3);
  assert.equal(asReply(answererWith({}).answer(query('web.service.consul'), snapshot))!.answers.length, 3, '0: no limit');
});

test('_NAME._TAG[.DC].DOMAIN: SRV as for the .service form; other types NODATA where the SRV exists, NXDOMAIN where not', () => {
  const a = answererWith({});
  const snapshot = metaStore().current();
  const bare = asReply(a.answer(query('_web._tcp.consul', 'SRV'), snapshot, 0))!;
  const full = asReply(a.answer(query('_web._tcp.service.consul', 'SRV'), snapshot, 0))!;
  assert.deepEqual(bare.answers.map((r) => text(r).replace('_web._tcp.consul', 'X')), full.answers.map((r) => text(r).replace('_web._tcp.service.consul', 'X')));
  assert.equal(asReply(a.answer(query('_web._tcp.dc1.consul', 'SRV'), snapshot))!.answers.length, 3);
  for (const type of ['A', 'AAAA', 'TXT', 'ANY']) {
    const r = asReply(a.answer(query('_web._tcp.consul', type), snapshot))!;
    assert.deepEqual([r.rcode, r.answers.length, r.authority.length], [Rcode.NOERROR, 0, 1], type);
  }
  for (const [name, type] of [['_nope._tcp.consul', 'SRV'], ['_nope._tcp.consul', 'A'], ['_web._tcp.dc9.consul', 'SRV'], ['_web._v9.consul', 'SRV']] as const) {
    assert.equal(asReply(a.answer(query(name, type), snapshot))!.rcode, Rcode.NXDOMAIN, `${name} ${type}`);
  }
  assert.equal(asReply(a.answer(query('_tcp.consul', 'SRV'), snapshot))!.rcode, Rcode.NOERROR, 'the empty non-terminal above');
});
