/** The Consul name grammar as a table: labels in, lookup out. */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { domainLabels, matchDomain, parseConsulName, parseReverseName, type ConsulName } from '../../src/answer/naming.js';

function parse(name: string): ConsulName | null {
  const labels = name.toLowerCase().split('.');
  const match = matchDomain(labels, [domainLabels('consul'), domainLabels('cluster.local')]);
  return match ? parseConsulName(match.rest) : null;
}

function addr(name: string): string | null {
  const r = parse(name);
  return r?.kind === 'addr' ? r.address.text : null;
}

test('service names', () => {
  const table: [string, ConsulName][] = [
    ['web.service.consul', { kind: 'service', service: 'web', tag: null, dc: null }],
    ['web.service.dc2.consul', { kind: 'service', service: 'web', tag: null, dc: 'dc2' }],
    ['web.service.dc2.dc.consul', { kind: 'service', service: 'web', tag: null, dc: 'dc2' }],
    ['v1.web.service.consul', { kind: 'service', service: 'web', tag: 'v1', dc: null }],
    ['v1.primary.db.service.consul', { kind: 'service', service: 'db', tag: 'v1.primary', dc: null }],
    ['_web._tcp.service.consul', { kind: 'service', service: 'web', tag: null, dc: null }],
    ['_web._udp.service.dc1.consul', { kind: 'service', service: 'web', tag: null, dc: 'dc1' }],
    ['_web._v1.service.consul', { kind: 'service', service: 'web', tag: 'v1', dc: null }],
    ['WEB.Service.CONSUL', { kind: 'service', service: 'web', tag: null, dc: null }],
    ['web.service.cluster.local', { kind: 'service', service: 'web', tag: null, dc: null }],
    // A datacenter literally named "dc" still works in the short form.
    ['web.service.dc.consul', { kind: 'service', service: 'web', tag: null, dc: 'dc' }],
  ];
  for (const [name, expected] of table) assert.deepEqual(parse(name), expected, name);
});

test("RFC 2782 without the service label, as Consul's parser reads it: _NAME._TAG[.DC]", () => {
  const table: [string, ConsulName][] = [
    ['_web._tcp.consul', { kind: 'srv', service: 'web', tag: null, dc: null }],
    ['_web._udp.consul', { kind: 'srv', service: 'web', tag: null, dc: null }],
    ['_web._v1.consul', { kind: 'srv', service: 'web', tag: 'v1', dc: null }],
    ['_web._tcp.dc2.consul', { kind: 'srv', service: 'web', tag: null, dc: 'dc2' }],
    ['_web._tcp.dc2.dc.consul', { kind: 'srv', service: 'web', tag: null, dc: 'dc2' }],
    ['_Web._TCP.cluster.local', { kind: 'srv', service: 'web', tag: null, dc: null }],
    // Above _web._tcp.consul: an empty non-terminal, like _tcp.service.consul.
    ['_tcp.consul', { kind: 'structural', dc: null }],
    ['_tcp.dc2.consul', { kind: 'structural', dc: 'dc2' }],
    // A lookup kind to the right of the underscore label decides (the forms with "service").
    ['_web._tcp.service.consul', { kind: 'service', service: 'web', tag: null, dc: null }],
    ['_web._tcp.node.consul', { kind: 'node', node: '_web._tcp', dc: null }],
  ];
  for (const [name, expected] of table) assert.deepEqual(parse(name), expected, name);
  // More than _NAME._TAG before the datacenter, a first label without "_", or more than a datacenter after it.
  for (const name of ['x._web._tcp.consul', 'web._tcp.consul', '_web._tcp.dc1.x.consul', '_web._tcp.dc1.dc.x.consul', 'web.service._x.consul']) {
    assert.equal(parse(name)?.kind, 'invalid', name);
  }
});

test('nodes, addresses and the apex', () => {
  assert.deepEqual(parse('node1.node.consul'), { kind: 'node', node: 'node1', dc: null });
  assert.deepEqual(parse('node1.node.dc2.consul'), { kind: 'node', node: 'node1', dc: 'dc2' });
  assert.deepEqual(parse('consul'), { kind: 'apex' });
  assert.equal(addr('c0a80001.addr.dc1.consul'), '192.168.0.1');
  assert.equal(addr('c0a80001.addr.consul'), '192.168.0.1');
  assert.equal(addr('20010db8000000000000000000000001.addr.dc1.consul'), '2001:db8::1');
});

test('prepared query names: dotted names, the datacenter, the RFC 2782 form', () => {
  assert.deepEqual(parse('web.query.consul'), { kind: 'query', name: 'web', dc: null });
  assert.deepEqual(parse('web.query.dc2.consul'), { kind: 'query', name: 'web', dc: 'dc2' });
  assert.deepEqual(parse('web.query.dc2.dc.consul'), { kind: 'query', name: 'web', dc: 'dc2' });
  // As Consul's dispatch: every label left of `query` is the name, dots included.
  assert.deepEqual(parse('v1.web.query.consul'), { kind: 'query', name: 'v1.web', dc: null });
  // `_NAME._PROTO.query`: the protocol label is dropped, and the first underscore.
  assert.deepEqual(parse('_web._tcp.query.consul'), { kind: 'query', name: 'web', dc: null });
  assert.deepEqual(parse('_a.b._udp.query.dc2.consul'), { kind: 'query', name: 'a.b', dc: 'dc2' });
});

test('empty non-terminals are structural, not invalid', () => {
  for (const name of ['service.consul', 'node.consul', 'addr.consul', 'query.consul', 'service.dc1.consul', 'dc1.consul', 'dc1.dc.consul', 'service.dc1.dc.consul', '_tcp.service.consul']) {
    assert.equal(parse(name)?.kind, 'structural', name);
  }
});

test('invalid names inside the domain', () => {
  for (const name of ['foo.bar.consul', 'web.service.dc1.extra.consul', 'web.query.dc1.extra.consul', '_._tcp.query.consul', 'zz.addr.consul', 'c0a8000.addr.consul', 'a.c0a80001.addr.consul', '_._x.service.consul']) {
    assert.equal(parse(name)?.kind, 'invalid', name);
  }
});

test('names outside the domains are not ours', () => {
  assert.equal(parse('example.com'), null);
  assert.equal(parse('consul.example.com'), null);
  assert.equal(parse('local'), null);
});

test('the longest matching domain wins', () => {
  const m = matchDomain(['web', 'service', 'a', 'b'], [['b'], ['a', 'b']]);
  assert.deepEqual(m, { index: 1, rest: ['web', 'service'] });
});

test('reverse names', () => {
  assert.equal(parseReverseName('1.0.168.192.in-addr.arpa'.split('.'))?.text, '192.168.0.1');
  assert.equal(parseReverseName('1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa'.split('.'))?.text, '2001:db8::1');
  for (const bad of ['0.168.192.in-addr.arpa', '256.0.168.192.in-addr.arpa', '01.0.168.192.in-addr.arpa', 'x.0.168.192.in-addr.arpa', '1.ip6.arpa']) {
    assert.equal(parseReverseName(bad.split('.')), null, bad);
  }
});
