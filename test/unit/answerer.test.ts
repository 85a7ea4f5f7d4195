/** The answerer's contract with the store: SERVFAIL for our domain until the first catalog sync. */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Answerer, isPending } from '../../src/answer/answerer.js';
import type { Reply } from '../../src/dns/codec.js';
import { CatalogStore } from '../../src/catalog/store.js';
import { Rcode } from '../../src/dns/constants.js';
import { readQuery, type Query } from '../../src/dns/wire.js';
import { buildQuery } from '../support/client.js';
import { ServiceTtls } from '../../src/answer/ttl.js';

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
  assert.ok(!isPending(r), 'a full catalog never leaves an answer pending');
  return r;
}

function query(name: string): Query {
  const r = readQuery(buildQuery(name, 'A'));
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
