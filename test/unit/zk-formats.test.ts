/**
 * The ZooKeeper registrars' formats (test/support/zk-registrar.ts) on their own: Java's URL
 * encoding, Dubbo's provider URLs (3.3 and 2.7) and node paths, overrides, and Curator's JSON for a
 * Dubbo 3 application instance. The expected values are written out by hand from the Java sources
 * cited in zk-registrar.ts; the round trip through a real ZooKeeper is test/system/zookeeper-harness.test.ts.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  curatorInstanceJson,
  curatorInstanceNodes,
  curatorUriSpecParts,
  dubboAppInstance,
  dubboOverrideUrl,
  dubboProviderNodes,
  dubboProviderUrl,
  javaUrlEncode,
} from '../support/zk-registrar.js';

test("javaUrlEncode is java.net.URLEncoder's UTF-8 form encoding", () => {
  // Kept: letters, digits, . - * _ ; space → +; everything else %XX in upper case (UTF-8 bytes).
  assert.equal(javaUrlEncode("Az09.-*_ !~'()"), 'Az09.-*_+%21%7E%27%28%29');
  assert.equal(javaUrlEncode('a:b/c?d=e&f,g;h@i#j+k%l'), 'a%3Ab%2Fc%3Fd%3De%26f%2Cg%3Bh%40i%23j%2Bk%25l');
  assert.equal(javaUrlEncode('ü€'), '%C3%BC%E2%82%AC');
});

test('a Dubbo 2.7 provider URL keeps anyhost and pid, sorts parameters and methods', () => {
  const url = dubboProviderUrl({
    host: '192.168.1.5',
    port: 20880,
    interface: 'com.foo.BarService',
    application: 'bar',
    methods: ['zeta', 'alpha'],
    flavor: '2.7',
    pid: 4242,
    timestamp: 1,
    enabled: false,
    params: { revision: '2.0.0' },
  });
  assert.equal(
    url,
    'dubbo://192.168.1.5:20880/com.foo.BarService?anyhost=true&application=bar&deprecated=false&dubbo=2.0.2&dynamic=true&enabled=false&generic=false' +
      '&interface=com.foo.BarService&methods=alpha,zeta&pid=4242&release=2.7.23&revision=2.0.0&side=provider&timestamp=1',
  );
});

test('a dynamic=false provider is persistent; folders carry the local address', () => {
  const nodes = dubboProviderNodes({ host: '10.1.1.1', port: 1, interface: 'a.B', application: 'x', dynamic: false, timestamp: 1, localAddress: '10.9.9.9' });
  assert.deepEqual(
    nodes.map((n) => [n.path.replace(/providers\/.*/, 'providers/URL'), n.mode, n.data.toString()]),
    [
      ['/dubbo', 'persistent', '10.9.9.9'],
      ['/dubbo/a.B', 'persistent', '10.9.9.9'],
      ['/dubbo/a.B/providers', 'persistent', '10.9.9.9'],
      ['/dubbo/a.B/configurators', 'persistent', '10.9.9.9'],
      ['/dubbo/a.B/providers/URL', 'persistent', '10.9.9.9'],
    ],
  );
});

test('an override for every provider (0.0.0.0, no port) with enabled=false', () => {
  assert.equal(
    dubboOverrideUrl({ host: '0.0.0.0', interface: 'a.B', params: { enabled: 'false', application: 'x' } }),
    'override://0.0.0.0/a.B?application=x&category=configurators&dynamic=false&enabled=false',
  );
});

test("Curator's UriSpec parts, and a Dubbo 3 application instance's JSON", () => {
  assert.deepEqual(curatorUriSpecParts('{scheme}://{ address }:{port}/x'), [
    { value: 'scheme', variable: true },
    { value: '://', variable: false },
    { value: 'address', variable: true },
    { value: ':', variable: false },
    { value: 'port', variable: true },
    { value: '/x', variable: false },
  ]);
  const instance = dubboAppInstance({ application: 'demo-provider', host: '10.0.0.7', port: 20880, metadata: { a: '1' }, registrationTimeUTC: 5 });
  assert.equal(
    curatorInstanceJson(instance),
    '{"name":"demo-provider","id":"10.0.0.7:20880","address":"10.0.0.7","port":20880,"sslPort":null,' +
      '"payload":{"@class":"org.apache.dubbo.registry.zookeeper.ZookeeperInstance","id":"10.0.0.7:20880","name":"demo-provider",' +
      '"metadata":{"a":"1","dubbo.endpoints":"[{\\"port\\":20880,\\"protocol\\":\\"dubbo\\"}]","dubbo.metadata.revision":"6a9f8c2b0e5d4f1a","dubbo.metadata.storage-type":"local"}},' +
      '"registrationTimeUTC":5,"serviceType":"DYNAMIC","uriSpec":null}',
  );
  assert.deepEqual(
    curatorInstanceNodes(instance).map((n) => [n.path, n.mode, n.data.length > 0]),
    [
      ['/services', 'persistent', false],
      ['/services/demo-provider', 'persistent', false],
      ['/services/demo-provider/10.0.0.7:20880', 'ephemeral', true],
    ],
  );
  assert.match(curatorInstanceJson({ ...instance, serializeEnabled: true, enabled: false }), /,"enabled":false}$/, 'enabled only when asked for, last');
});
