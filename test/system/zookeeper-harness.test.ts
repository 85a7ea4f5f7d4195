/**
 * The ZooKeeper test harness itself, against a real ZooKeeper (Debian's package): the server
 * starts and restarts on its port and data directory, the registrars write Dubbo's and Curator's
 * exact paths and bytes (the expected values are spelled out here by hand, not rebuilt with the
 * functions under test), and ephemeral nodes go when the registrar's session ends: at once on a
 * clean close, after the session timeout when the registrar is killed.
 *
 * No assertion is about time: a closed session is proved by a 60 s session timeout that the test's
 * 10 s bound could never outlast; an expiry by the node surviving the kill and then going.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type zookeeper from 'node-zookeeper-client';
import { within } from '../support/eventually.js';
import { exists, getChildren, getData, whenDeleted } from '../support/zk-client.js';
import { applyNodes, curatorInstanceNodes, dubboOverrideNodes, dubboProviderNodes, springCloudInstance, startRegistrar, type DubboProvider } from '../support/zk-registrar.js';
import { startZooKeeper, type ZooKeeper } from '../support/zookeeper.js';

const PROVIDER: DubboProvider = {
  host: '10.0.0.5',
  port: 20880,
  interface: 'org.apache.dubbo.demo.DemoService',
  application: 'demo-provider',
  version: '1.0.0',
  group: 'g1',
  weight: 200,
  timestamp: 1733500000000,
};
const PROVIDER_URL =
  'dubbo://10.0.0.5:20880/org.apache.dubbo.demo.DemoService?application=demo-provider&deprecated=false&dubbo=2.0.2&dynamic=true&generic=false&group=g1' +
  '&interface=org.apache.dubbo.demo.DemoService&methods=sayHello,sayHelloAsync&release=3.3.0&service-name-mapping=true&side=provider&timestamp=1733500000000&version=1.0.0&weight=200';
const PROVIDER_NODE =
  'dubbo%3A%2F%2F10.0.0.5%3A20880%2Forg.apache.dubbo.demo.DemoService%3Fapplication%3Ddemo-provider%26deprecated%3Dfalse%26dubbo%3D2.0.2%26dynamic%3Dtrue' +
  '%26generic%3Dfalse%26group%3Dg1%26interface%3Dorg.apache.dubbo.demo.DemoService%26methods%3DsayHello%2CsayHelloAsync%26release%3D3.3.0' +
  '%26service-name-mapping%3Dtrue%26side%3Dprovider%26timestamp%3D1733500000000%26version%3D1.0.0%26weight%3D200';
const PROVIDERS = '/dubbo/org.apache.dubbo.demo.DemoService/providers';

const INSTANCE = springCloudInstance({ name: 'orders', id: '3f2a7c1e-0b6d-4e8a-9c55-1d2e3f4a5b6c', address: 'orders-7f9c.internal', port: 8080, registrationTimeUTC: 1733500000123 });
const INSTANCE_PATH = '/services/orders/3f2a7c1e-0b6d-4e8a-9c55-1d2e3f4a5b6c';
const INSTANCE_JSON =
  '{"name":"orders","id":"3f2a7c1e-0b6d-4e8a-9c55-1d2e3f4a5b6c","address":"orders-7f9c.internal","port":8080,"sslPort":null,' +
  '"payload":{"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance","id":"orders","name":"orders","metadata":{"instance_status":"UP"}},' +
  '"registrationTimeUTC":1733500000123,"serviceType":"DYNAMIC","uriSpec":{"parts":[{"value":"scheme","variable":true},{"value":"://","variable":false},' +
  '{"value":"address","variable":true},{"value":":","variable":false},{"value":"port","variable":true}]}}';

const sessionHex = (stat: zookeeper.Stat): string => stat.ephemeralOwner.toString('hex');

describe('ZooKeeper harness', () => {
  let zk: ZooKeeper;
  let reader: zookeeper.Client;
  // One server for the suite, stopped by the suite's after hook: an after() called inside a before
  // hook does not wait for the suite's end (seen: the server was gone before the first test).
  const cleanups: (() => Promise<void>)[] = [];
  before(async () => {
    zk = await startZooKeeper({ after: (fn) => cleanups.push(fn) });
    reader = await zk.connect();
  });
  after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });

  test('a Dubbo provider and a Curator instance, as the frameworks write them; a killed registrar expires', async (t) => {
    const registrar = await startRegistrar(t, zk.connectString, { sessionTimeoutMs: 2000, reregister: false });
    assert.equal(registrar.sessionTimeoutMs(), 2000, 'the server grants a 2 s session (its range is 1 s .. 60 s)');
    await registrar.register(dubboProviderNodes(PROVIDER));
    await registrar.register(curatorInstanceNodes(INSTANCE));

    assert.deepEqual(await getChildren(reader, PROVIDERS), [PROVIDER_NODE], 'one provider node, named by its encoded URL');
    assert.equal(decodeURIComponent(PROVIDER_NODE), PROVIDER_URL, 'the node name decodes to the full provider URL');
    const provider = await getData(reader, `${PROVIDERS}/${PROVIDER_NODE}`);
    assert.equal(provider.data.toString(), '10.0.0.5', "Curator's default data: the registering host's IP");
    assert.equal(sessionHex(provider.stat), registrar.sessionId(), "the provider node is ephemeral, owned by the registrar's session");
    assert.deepEqual((await getChildren(reader, '/dubbo/org.apache.dubbo.demo.DemoService')).sort(), ['configurators', 'providers'], "the provider's folders");
    const folder = await getData(reader, PROVIDERS);
    assert.equal(sessionHex(folder.stat), '0000000000000000', 'the providers folder is persistent');
    assert.equal(folder.data.toString(), '10.0.0.5', 'folders carry the default data too');

    const instance = await getData(reader, INSTANCE_PATH);
    assert.equal(instance.data.toString(), INSTANCE_JSON, "Curator's JSON, byte for byte");
    assert.equal(sessionHex(instance.stat), registrar.sessionId(), 'the Curator instance is ephemeral (DYNAMIC)');
    assert.equal((await getData(reader, '/services/orders')).data.length, 0, 'service folders are empty');

    await registrar.kill();
    // Killed, the session is not closed: the nodes stay until ZooKeeper expires it.
    assert.ok(await exists(reader, `${PROVIDERS}/${PROVIDER_NODE}`), 'the provider outlives its process until the session expires');
    const started = Date.now();
    await within(Promise.all([whenDeleted(reader, `${PROVIDERS}/${PROVIDER_NODE}`), whenDeleted(reader, INSTANCE_PATH)]), 10_000, 'ephemeral nodes deleted on expiry');
    t.diagnostic(`ephemeral nodes went ${Date.now() - started} ms after SIGKILL (session timeout 2000 ms, tick 500 ms)`);
    assert.ok(await exists(reader, PROVIDERS), 'persistent folders stay');
    assert.ok(await exists(reader, '/services/orders'), 'persistent service folder stays');
  });

  test('a registrar whose session expired while it hung registers again, as Dubbo and Curator do', async (t) => {
    const registrar = await startRegistrar(t, zk.connectString, { sessionTimeoutMs: 1000 });
    await registrar.register(dubboProviderNodes(PROVIDER));
    const first = registrar.sessionId();
    const path = `${PROVIDERS}/${PROVIDER_NODE}`;
    registrar.pause();
    await within(whenDeleted(reader, path), 10_000, 'provider deleted when its session expired');
    const again = registrar.reregistered();
    registrar.resume();
    await within(again, 10_000, 're-registration after expiry');
    const provider = await getData(reader, path);
    assert.notEqual(registrar.sessionId(), first, 'a new session');
    assert.equal(sessionHex(provider.stat), registrar.sessionId(), 'the provider is back, owned by the new session');
    await registrar.close();
    await within(whenDeleted(reader, path), 10_000, 'provider gone after close');
  });

  test('a closed registrar takes its nodes at once', async (t) => {
    // 60 s, Dubbo's and Curator's default: only closeSession can remove the nodes within the bound.
    const registrar = await startRegistrar(t, zk.connectString, { sessionTimeoutMs: 60_000 });
    assert.equal(registrar.sessionTimeoutMs(), 60_000, 'the server grants the frameworks’ default 60 s');
    await registrar.register(curatorInstanceNodes(INSTANCE));
    assert.ok(await exists(reader, INSTANCE_PATH), 'registered');
    await registrar.close();
    await within(whenDeleted(reader, INSTANCE_PATH), 10_000, 'instance deleted by closeSession');
  });

  test('an override node, and ZooKeeper restarting keeps persistent nodes and live sessions', async (t) => {
    const override = dubboOverrideNodes({ host: '10.0.0.5', port: 20880, interface: PROVIDER.interface, params: { disabled: 'true' } });
    await applyNodes(reader, override);
    assert.deepEqual(
      await getChildren(reader, '/dubbo/org.apache.dubbo.demo.DemoService/configurators'),
      ['override%3A%2F%2F10.0.0.5%3A20880%2Forg.apache.dubbo.demo.DemoService%3Fcategory%3Dconfigurators%26disabled%3Dtrue%26dynamic%3Dfalse'],
      'the override, as dubbo-admin writes it',
    );
    const registrar = await startRegistrar(t, zk.connectString, { sessionTimeoutMs: 10_000 });
    await registrar.register(dubboProviderNodes(PROVIDER));
    const before = registrar.sessionId();

    await zk.restart();
    const fresh = await zk.connect();
    assert.deepEqual((await getChildren(fresh, '/dubbo/org.apache.dubbo.demo.DemoService/configurators')).length, 1, 'the override survived the restart');
    assert.ok(await exists(fresh, '/services/orders'), 'an earlier test’s persistent folder survived the restart');
    const provider = await getData(fresh, `${PROVIDERS}/${PROVIDER_NODE}`);
    assert.equal(sessionHex(provider.stat), before, 'the ephemeral node survived: the registrar’s session outlived the restart');
    assert.equal(registrar.sessionId(), before, 'the registrar kept its session');
    await registrar.close();
    await within(whenDeleted(fresh, `${PROVIDERS}/${PROVIDER_NODE}`), 10_000, 'provider gone after close');
  });
});
