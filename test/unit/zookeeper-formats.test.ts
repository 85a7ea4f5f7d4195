/**
 * What the ZooKeeper source reads, as the frameworks write it: Dubbo provider and override URLs
 * (URL-encoded node names), Curator instance JSON, and the mapping of both to catalog records.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readInstance } from '../../src/catalog/zookeeper/curator.js';
import { applyOverrides, interfaceLabel, readOverride, readProvider, type DubboProvider } from '../../src/catalog/zookeeper/dubbo.js';
import { nodeName, toCatalog } from '../../src/catalog/zookeeper/mapping.js';

/** A node name as Dubbo's ZookeeperRegistry makes it: java.net.URLEncoder over the full URL. */
const encode = (url: string): string => encodeURIComponent(url).replace(/%20/g, '+');

const PROVIDER =
  'dubbo://192.168.1.5:20880/org.apache.dubbo.demo.DemoService?anyhost=true&application=demo-provider&deprecated=false&dubbo=2.0.2&dynamic=true&generic=false&group=g1&interface=org.apache.dubbo.demo.DemoService&methods=sayHello,sayHelloAsync&pid=4242&release=3.2.0&side=provider&timestamp=1700000000000&version=1.0.0&weight=200';

test('a Dubbo provider node: host, port, application, group, version and weight from its URL', () => {
  assert.deepEqual(readProvider(encode(PROVIDER), 'org.apache.dubbo.demo.DemoService'), {
    interfaceName: 'org.apache.dubbo.demo.DemoService',
    protocol: 'dubbo',
    host: '192.168.1.5',
    port: 20880,
    application: 'demo-provider',
    group: 'g1',
    version: '1.0.0',
    weight: 200,
    enabled: true,
    set: { weight: true, enabled: false },
  });
});

test('Dubbo providers: default weight 100, IPv6 hosts, enabled/disabled, and what is not a provider', () => {
  const p = readProvider(encode('tri://[2001:db8::5]:50051/com.example.Greeter?application=greeter&side=provider'), 'com.example.Greeter') as DubboProvider;
  assert.equal(p.host, '2001:db8::5');
  assert.equal(p.port, 50051);
  assert.equal(p.weight, 100);
  assert.equal(p.protocol, 'tri');
  assert.equal((readProvider(encode(`${PROVIDER}&enabled=false`), 'x') as DubboProvider).enabled, false);
  // `disabled` decides when present (Dubbo's RegistryDirectory).
  assert.equal((readProvider(encode(`${PROVIDER}&enabled=false&disabled=false`), 'x') as DubboProvider).enabled, true);
  assert.equal(readProvider('not%a-url', 'x'), 'not a URL-encoded Dubbo URL');
  assert.equal(readProvider(encode('dubbo://10.0.0.1/com.example.X?side=provider'), 'x'), 'no port');
  assert.equal(readProvider(encode('consumer://10.0.0.9/com.example.X?side=consumer'), 'x'), 'a consumer, not a provider');
});

test('Dubbo overrides: disabled and weight, for all hosts or one host:port, application-scoped; a switched-off rule is no rule', () => {
  const provider = readProvider(encode(PROVIDER), 'org.apache.dubbo.demo.DemoService') as DubboProvider;
  const disableAll = readOverride(encode('override://0.0.0.0/org.apache.dubbo.demo.DemoService?category=configurators&dynamic=false&disabled=true'))!;
  assert.equal(applyOverrides(provider, [disableAll]).enabled, false);
  const otherHost = readOverride(encode('override://10.9.9.9:20880/org.apache.dubbo.demo.DemoService?disabled=true'))!;
  assert.equal(applyOverrides(provider, [otherHost]).enabled, true);
  const weight = readOverride(encode('override://192.168.1.5:20880/org.apache.dubbo.demo.DemoService?weight=5'))!;
  assert.equal(applyOverrides(provider, [weight]).weight, 5);
  const otherApp = readOverride(encode('override://0.0.0.0/org.apache.dubbo.demo.DemoService?application=someone-else&disabled=true'))!;
  assert.equal(applyOverrides(provider, [otherApp]).enabled, true);
  assert.equal(readOverride(encode('override://0.0.0.0/org.apache.dubbo.demo.DemoService?disabled=true&enabled=false')), null);
  assert.equal(readOverride(encode('override://0.0.0.0/org.apache.dubbo.demo.DemoService?timeout=5000')), null);
});

test('interface names as DNS labels: dots, $ and _ as dashes, lower case; too long is none', () => {
  assert.equal(interfaceLabel('org.apache.dubbo.demo.DemoService'), 'org-apache-dubbo-demo-demoservice');
  assert.equal(interfaceLabel('com.example.Outer$Inner_Api'), 'com-example-outer-inner-api');
  assert.equal(interfaceLabel(`com.example.${'x'.repeat(60)}`), null);
  assert.equal(nodeName('10.0.0.5'), '10-0-0-5');
  assert.equal(nodeName('2001:db8::5'), '2001-db8-0-0-0-0-0-5');
  assert.equal(nodeName('::1'), '0-0-0-0-0-0-0-1');
  assert.equal(nodeName('::ffff:10.0.0.5'), '0-0-0-0-0-ffff-a00-5');
  assert.equal(nodeName('-bad.example'), null);
  assert.equal(nodeName('App1.Example.com'), 'app1-example-com');
});

test('a Curator instance: address and port; sslPort only when there is no port; disabled and OUT_OF_SERVICE', () => {
  const json = (o: object): Buffer => Buffer.from(JSON.stringify(o));
  const base = { name: 'orders', id: 'a1b2', address: '10.0.0.7', port: 8080, sslPort: null, payload: null, registrationTimeUTC: 1700000000000, serviceType: 'DYNAMIC', uriSpec: null };
  assert.deepEqual(readInstance(json(base)), { name: 'orders', id: 'a1b2', address: '10.0.0.7', port: 8080, ssl: false, enabled: true });
  assert.deepEqual(readInstance(json({ ...base, port: null, sslPort: 8443 })), { name: 'orders', id: 'a1b2', address: '10.0.0.7', port: 8443, ssl: true, enabled: true });
  assert.equal((readInstance(json({ ...base, sslPort: 8443 })) as { port: number }).port, 8080);
  assert.equal((readInstance(json({ ...base, enabled: false })) as { enabled: boolean }).enabled, false);
  const spring = { '@class': 'org.springframework.cloud.zookeeper.discovery.ZookeeperInstance', id: 'orders', name: 'orders', metadata: { instance_status: 'OUT_OF_SERVICE' } };
  assert.equal((readInstance(json({ ...base, payload: spring })) as { enabled: boolean }).enabled, false);
  assert.equal(readInstance(Buffer.from('{not json')), 'not JSON');
  assert.equal(readInstance(json({ ...base, port: null })), 'no "port" or "sslPort"');
  assert.equal(readInstance(json({ ...base, address: '' })), 'no "address"');
  assert.equal(readInstance(Buffer.alloc(0)), 'no data');
});

test('the mapping: a provider answers by application and by interface, tagged, one endpoint per service with every tag of it; nodes by address', () => {
  const p = readProvider(encode(PROVIDER), 'org.apache.dubbo.demo.DemoService') as DubboProvider;
  const second = readProvider(encode(PROVIDER.replace('org.apache.dubbo.demo.DemoService?', 'org.apache.dubbo.demo.GreetingService?').replace('interface=org.apache.dubbo.demo.DemoService', 'interface=org.apache.dubbo.demo.GreetingService').replace('version=1.0.0', 'version=2.0.0')), 'x') as DubboProvider;
  const skipped: string[] = [];
  const data = toCatalog(
    { curator: new Map([['Orders_Api', [{ name: 'Orders_Api', id: 'i1', address: '10.0.0.7', port: 8080, ssl: false, enabled: true }]]]), dubbo: [p, second, { ...p, host: '192.168.1.6', enabled: false }] },
    'zk',
    (s) => skipped.push(s.what),
  );
  assert.deepEqual(skipped, []);
  const rows = data.services.map((s) => `${s.name} ${s.node} ${s.port} w${s.weights.passing} ${s.health} [${s.tags.join(',')}]`);
  assert.deepEqual(rows, [
    'orders-api 10-0-0-7 8080 w1 passing []',
    'org-apache-dubbo-demo-demoservice 192-168-1-5 20880 w200 passing [dubbo,group-g1,version-1-0-0]',
    'demo-provider 192-168-1-5 20880 w200 passing [dubbo,group-g1,version-1-0-0,version-2-0-0]',
    'org-apache-dubbo-demo-demoservice 192-168-1-6 20880 w200 critical [dubbo,group-g1,version-1-0-0]',
    'demo-provider 192-168-1-6 20880 w200 critical [dubbo,group-g1,version-1-0-0]',
    'org-apache-dubbo-demo-greetingservice 192-168-1-5 20880 w200 passing [dubbo,group-g1,version-2-0-0]',
  ]);
  assert.deepEqual(
    data.nodes.map((n) => `${n.datacenter} ${n.name} ${n.address}`),
    ['zk 10-0-0-7 10.0.0.7', 'zk 192-168-1-5 192.168.1.5', 'zk 192-168-1-6 192.168.1.6'],
  );
});
