/**
 * Consul's address translation as reach.ts works it out (agent/translate_addr.go and
 * nodeServiceRecords in agent/dns.go): which address answers A, AAAA and SRV questions for a node
 * and an instance, in the LAN and the WAN view.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { instanceReach, nodeReach, parseHostname, reachText } from '../../src/catalog/reach.js';

describe('reach', () => {
  test('a node: tagged addresses per family, else its address when of that family or a hostname', () => {
    assert.equal(reachText(nodeReach('10.0.0.1', undefined, false)), '10.0.0.1 - 10.0.0.1 0');
    assert.equal(reachText(nodeReach('10.0.0.1', { lan_ipv6: '2001:db8::1' }, false)), '10.0.0.1 2001:db8::1 2001:db8::1 0');
    assert.equal(reachText(nodeReach('db.example.com', undefined, false)), 'host:db.example.com host:db.example.com host:db.example.com 0');
    assert.equal(reachText(nodeReach('2001:db8::1', undefined, false)), '- 2001:db8::1 2001:db8::1 0');
  });

  test('the WAN view replaces each address its wan tag names, and nothing else', () => {
    const tagged = { lan_ipv4: '10.0.0.1', wan: '198.51.100.1', wan_ipv4: '198.51.100.1' };
    assert.equal(reachText(nodeReach('10.0.0.1', tagged, true)), '198.51.100.1 - 198.51.100.1 0');
    assert.equal(reachText(nodeReach('10.0.0.1', tagged, false)), '10.0.0.1 - 10.0.0.1 0');
    assert.equal(reachText(nodeReach('10.0.0.1', { lan_ipv4: '10.0.0.1' }, true)), '10.0.0.1 - 10.0.0.1 0');
  });

  test("an instance: its own address for the kind when it has one, else its node's", () => {
    const node = { address: '10.0.0.1', tagged: { lan_ipv6: '2001:db8::1' } };
    // No address of its own: the node's, the SRV target the node's name (viaNode) only where the node's own address is used.
    assert.equal(reachText(instanceReach({ address: '', port: 80, tagged: undefined }, node, false)), '10.0.0.1@node 2001:db8::1 2001:db8::1 80');
    // Its own IPv4: A from it; AAAA falls back to the node's IPv6.
    assert.equal(reachText(instanceReach({ address: '10.0.0.9', port: 80, tagged: undefined }, node, false)), '10.0.0.9 2001:db8::1 10.0.0.9 80');
    // The same address as the node's: the node's name stays the SRV target (svcdns, as before).
    assert.equal(reachText(instanceReach({ address: '10.0.0.1', port: 80, tagged: undefined }, { address: '10.0.0.1', tagged: undefined }, false)), '10.0.0.1@node - 10.0.0.1@node 80');
    // A hostname of its own answers every kind.
    assert.equal(reachText(instanceReach({ address: 'api.example.com', port: 443, tagged: undefined }, node, false)), 'host:api.example.com host:api.example.com host:api.example.com 443');
  });

  test("an instance's wan address and port, in the WAN view only", () => {
    const service = { address: '10.0.0.9', port: 80, tagged: { wan: { address: '198.51.100.9', port: 8080 } } };
    const node = { address: '10.0.0.1', tagged: undefined };
    assert.equal(reachText(instanceReach(service, node, true)), '198.51.100.9 - 198.51.100.9 8080');
    assert.equal(reachText(instanceReach(service, node, false)), '10.0.0.9 - 10.0.0.9 80');
    // A wan address with port 0 keeps the service's port.
    assert.equal(instanceReach({ ...service, tagged: { wan: { address: '198.51.100.9', port: 0 } } }, node, true).port, 80);
  });

  test('hostnames: DNS names, trailing dot dropped; addresses and mistyped addresses are not', () => {
    assert.equal(parseHostname('db.example.com.'), 'db.example.com');
    assert.equal(parseHostname('_srv.example'), '_srv.example');
    assert.equal(parseHostname('10.0.0.1'), null);
    assert.equal(parseHostname('10.0.0.300'), null);
    assert.equal(parseHostname('a..b'), null);
    assert.equal(parseHostname('-a.b'), null);
    assert.equal(parseHostname(`${'a'.repeat(64)}.b`), null);
    assert.equal(parseHostname(''), null);
  });
});
