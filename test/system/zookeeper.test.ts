/**
 * The ZooKeeper source against a real ZooKeeper (Debian's package, test/support/zookeeper.ts):
 * providers and instances registered the way Dubbo and Curator register them (test/support/
 * zk-registrar.ts: their exact paths, URL encoding and JSON, from a child process holding its own
 * session), asked for with dig.
 *
 * No assertion is about time: a change is waited for (bounded) in DNS; what must not happen is
 * shown by the state after an event that would have caused it.
 */

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import zookeeper from 'node-zookeeper-client';
import { CATALOG } from '../support/catalog.js';
import { ConsulSim } from '../support/consul-sim.js';
import { dig } from '../support/dig.js';
import { eventually } from '../support/eventually.js';
import { parseMetrics } from '../support/metrics.js';
import { startServer, type TestServer } from '../support/server.js';
import { startCli } from '../support/spawn.js';
import { create, remove } from '../support/zk-client.js';
import { applyNodes, curatorInstanceNodes, dubboOverrideNodes, dubboProviderNodes, springCloudInstance, startRegistrar, type DubboProvider } from '../support/zk-registrar.js';
import { startZooKeeper, type ZooKeeper } from '../support/zookeeper.js';

type Logs = Record<string, unknown>[];

/**
 * The bound on waiting for svcdns to reconnect to a ZooKeeper that came back: a bound, not a speed
 * (a connection attempt to a JVM still starting waits out its connect timeout; CI machines are loaded).
 */
const RECONNECT_MS = 45_000;
type T = { after(fn: () => Promise<void>): void };

const DEMO: DubboProvider = { host: '192.168.1.5', port: 20880, interface: 'org.apache.dubbo.demo.DemoService', application: 'demo-provider', version: '1.0.0', group: 'g1', weight: 200 };

async function svcdns(t: T, zk: ZooKeeper, logs: Logs = [], flags: Record<string, string> = {}): Promise<TestServer> {
  const s = await startServer({ flags: { zookeeper: zk.connectString, 'zookeeper-session-timeout': '2s', ...flags }, logs });
  t.after(() => s.close());
  return s;
}

/** SRV answers as `weight port target`, sorted. */
async function srv(s: TestServer, name: string): Promise<string[]> {
  return (await dig(s.port, [name, 'SRV'])).answer.map((a) => a.split(' ').slice(5).join(' ')).sort();
}

async function status(s: TestServer, name: string, type = 'A'): Promise<string> {
  return (await dig(s.port, [name, type])).status;
}

describe('ZooKeeper source', () => {
  test('a Dubbo provider answers by application and by interface, with its port, weight and tags', async (t) => {
    const zk = await startZooKeeper(t);
    const reg = await startRegistrar(t, zk.connectString, { sessionTimeoutMs: 60_000 });
    await reg.register(dubboProviderNodes(DEMO));
    await reg.register(dubboProviderNodes({ ...DEMO, host: '192.168.1.6', weight: undefined }));
    const s = await svcdns(t, zk);
    await eventually(async () => assert.equal((await srv(s, 'demo-provider.service.consul')).length, 2, 'both providers in DNS'));
    assert.deepEqual(await srv(s, 'demo-provider.service.consul'), ['100 20880 192-168-1-6.node.dc1.consul.', '200 20880 192-168-1-5.node.dc1.consul.']);
    assert.deepEqual(await srv(s, 'org-apache-dubbo-demo-demoservice.service.consul'), ['100 20880 192-168-1-6.node.dc1.consul.', '200 20880 192-168-1-5.node.dc1.consul.']);
    assert.deepEqual((await dig(s.port, ['demo-provider.service.consul', 'A'])).answer.map((a) => a.split(' ').at(-1)).sort(), ['192.168.1.5', '192.168.1.6']);
    assert.deepEqual(await srv(s, 'version-1-0-0.demo-provider.service.consul'), ['100 20880 192-168-1-6.node.dc1.consul.', '200 20880 192-168-1-5.node.dc1.consul.']);
    assert.equal((await srv(s, '_demo-provider._group-g1.service.consul')).length, 2);
    assert.equal(await status(s, 'version-9-9-9.demo-provider.service.consul'), 'NXDOMAIN');
    assert.deepEqual((await dig(s.port, ['192-168-1-5.node.consul', 'A'])).answer.map((a) => a.split(' ').at(-1)), ['192.168.1.5']);
  });

  test('a Curator instance (Spring Cloud Zookeeper) answers by its service name; a bad node is skipped with one line naming it', async (t) => {
    const zk = await startZooKeeper(t);
    const reg = await startRegistrar(t, zk.connectString, { sessionTimeoutMs: 60_000 });
    await reg.register(curatorInstanceNodes(springCloudInstance({ name: 'orders', address: '10.0.0.7', port: 8080 })));
    const admin = await zk.connect();
    await create(admin, '/services/orders/broken', Buffer.from('{"name":'), zookeeper.CreateMode.PERSISTENT);
    const logs: Logs = [];
    const s = await svcdns(t, zk, logs);
    await eventually(async () => assert.deepEqual(await srv(s, 'orders.service.consul'), ['1 8080 10-0-0-7.node.dc1.consul.'], 'orders in DNS'));
    const skipped = logs.filter((l) => l.msg === 'zookeeper node skipped: not a Curator service instance');
    assert.deepEqual(skipped.map((l) => [l.path, l.reason]), [['/services/orders/broken', 'not JSON']]);
  });

  test("a provider's session ending removes it: at once when closed, after the session timeout when killed", async (t) => {
    const zk = await startZooKeeper(t);
    const closing = await startRegistrar(t, zk.connectString, { sessionTimeoutMs: 60_000 });
    const dying = await startRegistrar(t, zk.connectString, { sessionTimeoutMs: 1_000, reregister: false });
    const stays = await startRegistrar(t, zk.connectString, { sessionTimeoutMs: 60_000 });
    await closing.register(dubboProviderNodes({ ...DEMO, host: '10.1.0.1' }));
    await dying.register(dubboProviderNodes({ ...DEMO, host: '10.1.0.2' }));
    await stays.register(dubboProviderNodes({ ...DEMO, host: '10.1.0.3' }));
    const s = await svcdns(t, zk);
    const hosts = async (): Promise<string[]> => (await dig(s.port, ['demo-provider.service.consul', 'A'])).answer.map((a) => a.split(' ').at(-1)!).sort();
    await eventually(async () => assert.deepEqual(await hosts(), ['10.1.0.1', '10.1.0.2', '10.1.0.3'], 'three providers'));
    await closing.close();
    await eventually(async () => assert.deepEqual(await hosts(), ['10.1.0.2', '10.1.0.3'], 'closed session gone'));
    // SIGKILL: nobody closes the session; ZooKeeper expires it after its 1 s timeout, and its node goes.
    await dying.kill();
    await eventually(async () => assert.deepEqual(await hosts(), ['10.1.0.3'], 'expired session gone'), 15_000);
  });

  test('a Dubbo override disables one provider and reweights another; removing it restores them', async (t) => {
    const zk = await startZooKeeper(t);
    const reg = await startRegistrar(t, zk.connectString, { sessionTimeoutMs: 60_000 });
    await reg.register(dubboProviderNodes({ ...DEMO, host: '10.2.0.1' }));
    await reg.register(dubboProviderNodes({ ...DEMO, host: '10.2.0.2' }));
    const s = await svcdns(t, zk);
    await eventually(async () => assert.equal((await srv(s, 'demo-provider.service.consul')).length, 2, 'both providers'));
    const admin = await zk.connect();
    const disable = dubboOverrideNodes({ host: '10.2.0.1', port: 20880, interface: DEMO.interface, params: { category: 'configurators', dynamic: 'false', disabled: 'true' } });
    const reweigh = dubboOverrideNodes({ host: '10.2.0.2', port: 20880, interface: DEMO.interface, params: { category: 'configurators', dynamic: 'false', weight: '7' } });
    for (const n of [...disable, ...reweigh]) await create(admin, n.path, n.data ?? Buffer.alloc(0), zookeeper.CreateMode.PERSISTENT).catch(() => undefined);
    await eventually(async () => assert.deepEqual(await srv(s, 'demo-provider.service.consul'), ['7 20880 10-2-0-2.node.dc1.consul.'], 'override applied'));
    await remove(admin, disable.at(-1)!.path);
    await eventually(async () => assert.deepEqual(await srv(s, 'demo-provider.service.consul'), ['200 20880 10-2-0-1.node.dc1.consul.', '7 20880 10-2-0-2.node.dc1.consul.'], 'disable override removed'));
  });

  test('ZooKeeper down at start: SERVFAIL, said once; up: answers. Restarted: the last catalog serves, then changes are seen again', async (t) => {
    const zk = await startZooKeeper(t);
    const port = zk.port;
    await zk.stop();
    const logs: Logs = [];
    const s = await svcdns(t, zk, logs, { 'zookeeper-session-timeout': '4s' });
    // Counting from now (metrics are made on first use; with --http-listen, at start).
    const metric = async (name: string): Promise<number | undefined> => parseMetrics(await s.server.metrics().text()).get(name);
    assert.equal(await metric('svcdns_zookeeper_errors_total'), 0);
    await eventually(() => assert.ok(logs.some((l) => l.msg === 'zookeeper failing: cannot connect; its names get SERVFAIL until the first read'), 'failing said'));
    assert.equal(await status(s, 'demo-provider.service.consul'), 'SERVFAIL');
    assert.equal(await metric('svcdns_zookeeper_up'), 0);
    assert.equal(await metric('svcdns_catalog_synced'), 0);
    await zk.restart();
    assert.equal(zk.port, port);
    const reg = await startRegistrar(t, zk.connectString, { sessionTimeoutMs: 60_000 });
    await reg.register(dubboProviderNodes({ ...DEMO, host: '10.3.0.1' }));
    // The log in the message: if this ever fails, what svcdns said is the first thing to read.
    await eventually(async () => assert.equal(await status(s, 'demo-provider.service.consul'), 'NOERROR', `answers once ZooKeeper is up; svcdns said: ${logs.map((l) => String(l.msg)).join(' | ')}`), RECONNECT_MS);
    assert.equal(await metric('svcdns_zookeeper_up'), 1);
    // Watched: /services and /dubbo, the interface's providers and configurators folders.
    assert.equal(await metric('svcdns_zookeeper_watches'), 4);
    assert.equal(await metric('svcdns_zookeeper_errors_total'), 1);
    const st = await s.server.status();
    assert.deepEqual(st.zookeeper, { up: true, watches: 4, errors: 1 });
    assert.equal(st.source.kind, 'zookeeper');
    assert.equal(st.source.synced, true);

    // A restart: svcdns's session survives it (its timeout is longer than the restart), the catalog keeps serving meanwhile.
    await zk.stop();
    assert.equal(await status(s, 'demo-provider.service.consul'), 'NOERROR');
    await zk.restart();
    const again = await startRegistrar(t, zk.connectString, { sessionTimeoutMs: 60_000 });
    await again.register(dubboProviderNodes({ ...DEMO, host: '10.3.0.2' }));
    await eventually(async () => assert.ok((await dig(s.port, ['demo-provider.service.consul', 'A'])).answer.some((a) => a.endsWith('10.3.0.2')), 'a change after the restart is seen'), RECONNECT_MS);
    const failing = logs.filter((l) => String(l.msg).startsWith('zookeeper failing'));
    const recovered = logs.filter((l) => l.msg === 'zookeeper recovered');
    assert.ok(failing.length >= 1 && recovered.length >= 1, `failing and recovered said: ${JSON.stringify(logs.map((l) => l.msg))}`);
  });

  test("svcdns's own session expires (the process stopped past its timeout): a new session, the tree read again, changes made meanwhile seen", async (t) => {
    const zk = await startZooKeeper(t);
    const reg = await startRegistrar(t, zk.connectString, { sessionTimeoutMs: 60_000 });
    const gone = dubboProviderNodes({ ...DEMO, host: '10.5.0.1' });
    await reg.register(gone);
    const svc = startCli(['--zookeeper', zk.connectString, '--zookeeper-session-timeout', '1s', '--listen', '127.0.0.1:0', '--log-format', 'json'], { CONSUL_HTTP_ADDR: '' });
    t.after(async () => void (await svc.stop('SIGKILL')));
    const port = Number(String((await svc.waitForLog((l) => l.msg === 'listening (udp, tcp)')).address).split(':').at(-1));
    const session = String((await svc.waitForLog((l) => l.msg === 'zookeeper synced')).session);
    assert.match(session, /^0x[0-9a-f]+$/);
    const hosts = async (): Promise<string[]> => (await dig(port, ['demo-provider.service.consul', 'A'])).answer.map((a) => a.split(' ').at(-1)!).sort();
    assert.deepEqual(await hosts(), ['10.5.0.1']);
    // Stopped: no pings; ZooKeeper expires the session (1 s), closes its connection and drops its
    // watches. The changes made after that fire no watch svcdns holds: only a new session's full
    // read can find them.
    svc.child.kill('SIGSTOP');
    await eventually(async () => assert.ok(!(await zk.fourLetter('cons')).includes(`sid=${session}`), 'session expired'), 15_000);
    await reg.unregister(gone.at(-1)!.path);
    await reg.register(dubboProviderNodes({ ...DEMO, host: '10.5.0.2' }));
    svc.child.kill('SIGCONT');
    await svc.waitForLog((l) => String(l.msg).startsWith('zookeeper session expired'));
    await eventually(async () => assert.deepEqual(await hosts(), ['10.5.0.2'], 'the new session read the tree'), RECONNECT_MS);
  });

  test('--state-dir: restarted while ZooKeeper is down, svcdns serves the last catalog it read', async (t) => {
    const zk = await startZooKeeper(t);
    const reg = await startRegistrar(t, zk.connectString, { sessionTimeoutMs: 60_000 });
    await reg.register(dubboProviderNodes({ ...DEMO, host: '10.6.0.1' }));
    const stateDir = await mkdtemp(join(tmpdir(), 'svcdns-zk-state-'));
    t.after(() => rm(stateDir, { recursive: true, force: true }));
    const first = await startServer({ flags: { zookeeper: zk.connectString, 'state-dir': stateDir } });
    await eventually(async () => assert.equal(await status(first, 'demo-provider.service.consul'), 'NOERROR', 'synced'));
    await eventually(() => assert.ok(existsSync(join(stateDir, 'catalog.json')), 'catalog persisted'));
    await first.close();
    await zk.stop();
    const logs: Logs = [];
    const second = await startServer({ flags: { zookeeper: zk.connectString, 'state-dir': stateDir }, logs });
    t.after(() => second.close());
    assert.deepEqual((await dig(second.port, ['demo-provider.service.consul', 'A'])).answer.map((a) => a.split(' ').at(-1)), ['10.6.0.1']);
    assert.ok(logs.some((l) => String(l.msg).startsWith('serving the persisted catalog')), JSON.stringify(logs.map((l) => l.msg)));
  });

  test('beside a catalog file: ZooKeeper in its own datacenter, both answered, a ZooKeeper change leaves the file alone', async (t) => {
    const zk = await startZooKeeper(t);
    const reg = await startRegistrar(t, zk.connectString, { sessionTimeoutMs: 60_000 });
    await reg.register(dubboProviderNodes({ ...DEMO, host: '10.7.0.1' }));
    const s = await startServer({ catalog: CATALOG, flags: { zookeeper: zk.connectString, 'zookeeper-datacenter': 'zk' } });
    t.after(() => s.close());
    await eventually(async () => assert.deepEqual(await srv(s, 'demo-provider.service.zk.consul'), ['200 20880 10-7-0-1.node.zk.consul.'], 'ZooKeeper in zk'));
    assert.equal(await status(s, 'demo-provider.service.consul'), 'NXDOMAIN');
    const web = await srv(s, 'web.service.consul');
    assert.deepEqual(web, ['1 80 node1.node.dc1.consul.', '1 80 node2.node.dc1.consul.']);
    await reg.register(dubboProviderNodes({ ...DEMO, host: '10.7.0.2' }));
    await eventually(async () => assert.equal((await srv(s, 'demo-provider.service.zk.consul')).length, 2, 'the second provider'));
    assert.deepEqual(await srv(s, 'web.service.consul'), web);
    const st = await s.server.status();
    assert.deepEqual(st.source.members?.map((m) => [m.kind, m.synced, m.datacenters]), [['zookeeper', true, ['zk']], ['file', true, ['dc1', 'dc2']]]);
  });

  test('--zookeeper-root (a chroot) and other base paths: what is under them is read, what is outside is not', async (t) => {
    const zk = await startZooKeeper(t);
    const admin = await zk.connect();
    // Spring Cloud with its root at /apps and its own services path; a Dubbo registry group "shop".
    await applyNodes(admin, curatorInstanceNodes(springCloudInstance({ name: 'inside', address: '10.8.0.1', port: 8080 }), '/apps/discovery'));
    await applyNodes(admin, dubboProviderNodes({ ...DEMO, host: '10.8.0.2', root: '/apps/shop' }));
    await applyNodes(admin, curatorInstanceNodes(springCloudInstance({ name: 'outside', address: '10.8.0.3', port: 8080 })));
    const s = await svcdns(t, zk, [], { 'zookeeper-root': '/apps', 'zookeeper-services-path': '/discovery', 'zookeeper-dubbo-path': '/shop' });
    await eventually(async () => assert.deepEqual(await srv(s, 'inside.service.consul'), ['1 8080 10-8-0-1.node.dc1.consul.'], 'the chrooted Curator instance'));
    assert.deepEqual(await srv(s, 'demo-provider.service.consul'), ['200 20880 10-8-0-2.node.dc1.consul.']);
    assert.equal(await status(s, 'outside.service.consul'), 'NXDOMAIN');
  });

  test('beside Consul: ZooKeeper in its own datacenter; ZooKeeper down leaves Consul\'s names answered, and its own last catalog serving', async (t) => {
    const sim = new ConsulSim();
    await sim.start();
    t.after(() => sim.stop());
    sim.registerNode('dc1', { Node: 'c1', Address: '10.9.0.1' });
    sim.registerService('dc1', 'c1', { ID: 'web1', Service: 'web', Port: 80 });
    const zk = await startZooKeeper(t);
    const reg = await startRegistrar(t, zk.connectString, { sessionTimeoutMs: 60_000 });
    await reg.register(dubboProviderNodes({ ...DEMO, host: '10.9.0.2' }));
    const logs: Logs = [];
    const s = await startServer({ flags: { consul: sim.url, zookeeper: zk.connectString, 'zookeeper-datacenter': 'zk', 'zookeeper-session-timeout': '30s' }, logs });
    t.after(() => s.close());
    await eventually(async () => assert.deepEqual(await srv(s, 'demo-provider.service.zk.consul'), ['200 20880 10-9-0-2.node.zk.consul.'], 'ZooKeeper in zk'));
    await eventually(async () => assert.deepEqual(await srv(s, 'web.service.consul'), ['1 80 c1.node.dc1.consul.'], 'Consul in dc1'));
    await zk.stop();
    await eventually(() => assert.ok(logs.some((l) => String(l.msg).startsWith('zookeeper failing')), 'ZooKeeper failing said'));
    sim.registerService('dc1', 'c1', { ID: 'web2', Service: 'web', Port: 81 });
    await eventually(async () => assert.deepEqual(await srv(s, 'web.service.consul'), ['1 80 c1.node.dc1.consul.', '1 81 c1.node.dc1.consul.'], 'a Consul change while ZooKeeper is down'));
    assert.deepEqual(await srv(s, 'demo-provider.service.zk.consul'), ['200 20880 10-9-0-2.node.zk.consul.']);
    assert.equal(logs.filter((l) => String(l.msg).startsWith('consul failing')).length, 0);
  });

  test('a server that accepts the connection and never answers (a JVM still starting): svcdns opens a new client after a session timeout', async (t) => {
    const zk = await startZooKeeper(t);
    const reg = await startRegistrar(t, zk.connectString, { sessionTimeoutMs: 60_000 });
    await reg.register(dubboProviderNodes({ ...DEMO, host: '10.10.0.1' }));
    // A proxy in front of ZooKeeper: the first connection is held open and never answered, the next
    // ones are passed through. node-zookeeper-client alone waits on the first for ever.
    let held = 0;
    const sockets = new Set<Socket>();
    const proxy = createServer((client) => {
      sockets.add(client);
      client.on('error', () => undefined);
      if (held++ === 0) return;
      const upstream = connect(zk.port, '127.0.0.1');
      sockets.add(upstream);
      upstream.on('error', () => client.destroy());
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    t.after(async () => {
      for (const sock of sockets) sock.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    });
    const port = (proxy.address() as AddressInfo).port;
    const s = await startServer({ flags: { zookeeper: `127.0.0.1:${port}`, 'zookeeper-session-timeout': '1s' } });
    t.after(() => s.close());
    await eventually(async () => assert.equal(await status(s, 'demo-provider.service.consul'), 'NOERROR', 'synced through a second client'), RECONNECT_MS);
    assert.ok(held >= 2, `connections to the proxy: ${held}`);
  });

  test('churn: hundreds of registrations and removals, then DNS equals ZooKeeper', async (t) => {
    const zk = await startZooKeeper(t);
    const reg = await startRegistrar(t, zk.connectString, { sessionTimeoutMs: 60_000 });
    const s = await svcdns(t, zk);
    await eventually(async () => assert.equal(await status(s, 'demo-provider.service.consul'), 'NXDOMAIN', 'synced, empty'));
    const host = (i: number): string => `10.4.${i >> 8}.${i & 255}`;
    const paths: string[] = [];
    for (let i = 1; i <= 150; i++) {
      const nodes = dubboProviderNodes({ ...DEMO, host: host(i) });
      await reg.register(nodes);
      paths.push(nodes.at(-1)!.path);
    }
    for (let i = 1; i <= 150; i += 3) await reg.unregister(paths[i - 1]!);
    const expected = Array.from({ length: 150 }, (_, k) => k + 1).filter((i) => (i - 1) % 3 !== 0).map(host).sort();
    await eventually(async () => {
      const got = (await dig(s.port, ['demo-provider.service.consul', 'A', '+tcp'])).answer.map((a) => a.split(' ').at(-1)!).sort();
      assert.deepEqual(got, expected, 'DNS equals ZooKeeper');
    }, 20_000);
  });
});
