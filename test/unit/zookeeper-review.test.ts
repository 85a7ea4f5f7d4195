/**
 * The ZooKeeper source's rules where Dubbo's own are subtle (found by the review of issue 16; each
 * failed before its fix): an endpoint registered both by Dubbo and by Curator (Dubbo 3's default
 * register-mode=all), override matching and order (Dubbo's AbstractConfigurator, Configurator.compareTo),
 * `absent://` rules, node names two hosts share.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyOverrides, readOverride, readProvider, type DubboOverride, type DubboProvider } from '../../src/catalog/zookeeper/dubbo.js';
import { toCatalog } from '../../src/catalog/zookeeper/mapping.js';

/** A node name as Dubbo's ZookeeperRegistry makes it: java.net.URLEncoder over the full URL. */
const encode = (url: string): string => encodeURIComponent(url).replace(/%20/g, '+');

const IFACE = 'org.apache.dubbo.demo.DemoService';
const PROVIDER = `dubbo://192.168.1.5:20880/${IFACE}?anyhost=true&application=demo-provider&dubbo=2.0.2&interface=${IFACE}&methods=sayHello&pid=4242&release=3.2.0&side=provider&timestamp=1700000000000&version=1.0.0&weight=200`;

const provider = (url = PROVIDER): DubboProvider => readProvider(encode(url), IFACE) as DubboProvider;
const override = (url: string): DubboOverride => {
  const o = readOverride(encode(url));
  assert.ok(o !== null, `override ${url} read`);
  return o;
};

test('Dubbo 3 register-mode=all (its default): the Curator app-level instance must not hide the provider URL\'s weight and a disabled override', () => {
  // Dubbo 3 writes the same provider twice: /services/demo-provider/192.168.1.5:20880 (Curator JSON)
  // and /dubbo/IFACE/providers/dubbo%3A%2F%2F... ; an admin then disables the provider by override.
  const disabled = applyOverrides(provider(), [override(`override://192.168.1.5:20880/${IFACE}?category=configurators&disabled=true&dynamic=false`)]);
  assert.equal(disabled.enabled, false, 'the override disables the provider');
  const data = toCatalog(
    {
      curator: new Map([['demo-provider', [{ name: 'demo-provider', id: '192.168.1.5:20880', address: '192.168.1.5', port: 20880, ssl: false, enabled: true }]]]),
      dubbo: [disabled],
    },
    'zk',
    () => {},
  );
  const app = data.services.filter((s) => s.name === 'demo-provider');
  assert.equal(app.length, 1, 'one endpoint');
  assert.equal(app[0]!.health, 'critical', 'Dubbo consumers skip the disabled provider: demo-provider.service must too (got passing: the Curator copy won the endpoint)');
  assert.equal(app[0]!.weights.passing, 200, "the SRV weight is Dubbo's weight=200 (got Curator's 1)");
});

test('one endpoint serving two interfaces, one disabled by an override: the application name keeps it for the other', () => {
  const greeter = 'org.apache.dubbo.demo.GreetingService';
  const demoDisabled = { ...provider(), enabled: false };
  const greeting = provider(PROVIDER.replaceAll(IFACE, greeter));
  const data = toCatalog({ curator: new Map(), dubbo: [demoDisabled, greeting] }, 'zk', () => {});
  const app = data.services.filter((s) => s.name === 'demo-provider');
  assert.equal(app.length, 1, 'one endpoint');
  assert.equal(app[0]!.health, 'passing', 'the endpoint still serves GreetingService (got critical: the first interface in sort order decided)');
});

test('two hosts whose node names collide (10.0.0.5 and the hostname 10-0-0-5) keep their own addresses', () => {
  const data = toCatalog(
    {
      curator: new Map([
        ['a', [{ name: 'a', id: 'a1', address: '10.0.0.5', port: 80, ssl: false, enabled: true }]],
        ['b', [{ name: 'b', id: 'b1', address: '10-0-0-5', port: 80, ssl: false, enabled: true }]],
      ]),
      dubbo: [],
    },
    'zk',
    () => {},
  );
  const b = data.services.find((s) => s.name === 'b')!;
  const node = data.nodes.find((n) => n.name === b.node)!;
  const served = b.address !== '' ? b.address : node.address;
  assert.equal(served, '10-0-0-5', `b's instance is served at ${served}: another host's address`);
});

test("Dubbo's AbstractConfigurator: an override without a port and without configVersion names a consumer; providers ignore it", () => {
  // configureDeprecated: port 0 and a provider URL -> configureIfMatch(0.0.0.0, url): only host 0.0.0.0 matches.
  const out = applyOverrides(provider(), [override(`override://192.168.1.5/${IFACE}?category=configurators&disabled=true&dynamic=false`)]);
  assert.equal(out.enabled, true, 'Dubbo consumers keep using the provider');
});

test("Dubbo's AbstractConfigurator: anyhost=true on an override does not make it global (only host 0.0.0.0 does)", () => {
  // Dubbo removes anyhost from an override's parameters as "added automatically" (Configurator.toConfigurators)
  // and configureIfMatch compares the host only.
  const other = provider(PROVIDER.replace('192.168.1.5', '192.168.1.6'));
  const out = applyOverrides(other, [override(`override://192.168.1.5:20880/${IFACE}?anyhost=true&category=configurators&disabled=true&dynamic=false`)]);
  assert.equal(out.enabled, true, 'the override is for 192.168.1.5:20880 only');
});

test('Dubbo sorts configurators (host, then priority): a host-specific override beats 0.0.0.0 whatever the znode order', () => {
  const specific = override(`override://192.168.1.5:20880/${IFACE}?category=configurators&weight=300`);
  const global = override(`override://0.0.0.0/${IFACE}?category=configurators&weight=50`);
  // ZooKeeper lists children in no defined order: both orders must give Dubbo's answer.
  assert.equal(applyOverrides(provider(), [global, specific]).weight, 300, 'global first');
  assert.equal(applyOverrides(provider(), [specific, global]).weight, 300, 'specific first');
});

test("Dubbo's AbsentConfigurator (absent://) only fills parameters a provider lacks: it does not override weight=200", () => {
  // AbsentConfigurator.doConfigure: currentUrl.addParametersIfAbsent(configUrl.getParameters()).
  const out = applyOverrides(provider(), [override(`absent://0.0.0.0/${IFACE}?category=configurators&weight=50`)]);
  assert.equal(out.weight, 200, 'the provider URL says weight=200');
});
