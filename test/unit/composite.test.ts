/**
 * Several catalog sources as one (src/catalog/composite/): the merge's rule (a datacenter belongs
 * to one source, the first in precedence order; records never merged across sources), what an
 * unsynced owner's datacenter looks like (pending, or the persisted catalog's), per-service
 * generations across a member's change, and the composite source's routing and clash reports.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { mergeCatalogs, type MemberCatalog } from '../../src/catalog/composite/merge.js';
import { CompositeSource } from '../../src/catalog/composite/source.js';
import { Snapshot } from '../../src/catalog/snapshot.js';
import type { CatalogSink, CatalogSource } from '../../src/catalog/source.js';
import { datacenterClashes, type ChoosableKind, type SourcesConfig } from '../../src/catalog/sources.js';
import { CatalogStore } from '../../src/catalog/store.js';
import type { CatalogData, ServiceRecord } from '../../src/catalog/types.js';
import { Diagnostics, type StateEvent } from '../../src/diagnostics/channels.js';

const silent = pino({ level: 'silent' });

function instance(dc: string, name: string, id: string, address: string, port = 80): ServiceRecord {
  return { datacenter: dc, node: `n-${dc}`, id, name, address, port, tags: [], weights: { passing: 1, warning: 1 }, health: 'passing' };
}

/** One node per datacenter, the given instances on it. */
function catalog(...services: ServiceRecord[]): CatalogData {
  const dcs = [...new Set(services.map((s) => s.datacenter))];
  return { nodes: dcs.map((dc) => ({ datacenter: dc, name: `n-${dc}`, address: '10.9.9.9', meta: {} })), services };
}

const ids = (data: CatalogData) => data.services.map((s) => `${s.datacenter}/${s.id}`);
const snapshotOf = (data: CatalogData) => new Snapshot(data, { serial: 1, nextGeneration: (() => { let n = 0; return () => ++n; })() });

test('disjoint datacenters: every member contributes its own, whole', () => {
  const consul: MemberCatalog = { kind: 'consul', declared: ['dc1'], data: catalog(instance('dc1', 'web', 'web-1', '10.0.0.1')) };
  const file: MemberCatalog = { kind: 'file', declared: [], data: catalog(instance('static', 'db', 'db-1', '10.0.1.1')) };
  const merged = mergeCatalogs([consul, file], null);
  assert.deepEqual(ids(merged.data), ['dc1/web-1', 'static/db-1']);
  assert.deepEqual([...merged.owners], [['dc1', 0], ['static', 1]]);
  assert.deepEqual(merged.clashes, []);
  assert.equal(merged.data.partial, undefined, 'all members full and synced: a full catalog');
});

test('a clash: the first member keeps the datacenter, the other one\'s records for it are left out (never a union)', () => {
  const consul: MemberCatalog = { kind: 'consul', declared: ['dc1'], data: catalog(instance('dc1', 'web', 'web-1', '10.0.0.1')) };
  const file: MemberCatalog = { kind: 'file', declared: [], data: catalog(instance('DC1', 'web', 'web-file', '10.0.0.2'), instance('static', 'db', 'db-1', '10.0.1.1')) };
  const merged = mergeCatalogs([consul, file], null);
  assert.deepEqual(ids(merged.data), ['dc1/web-1', 'static/db-1']);
  assert.deepEqual(merged.clashes, [{ datacenter: 'dc1', kept: 0, leftOut: 1 }]);
  assert.deepEqual(merged.data.nodes.map((n) => `${n.datacenter}/${n.name}`), ['dc1/n-dc1', 'static/n-static'], "the file's node in dc1 is left out too");
});

test("queries and mesh views go with their datacenter's owner", () => {
  const query = (dc: string, name: string) => ({ name, datacenter: dc, service: 'web', tags: [], onlyPassing: false, failover: [], ttl: null });
  const fileData: CatalogData = {
    ...catalog(instance('dc1', 'web', 'web-file', '10.0.0.2'), instance('static', 'web', 'web-s', '10.0.1.2')),
    queries: [query('dc1', 'q-left-out'), query('static', 'q-kept')],
    mesh: [
      { lookup: 'connect', datacenter: 'dc1', service: 'web', instances: [instance('dc1', 'web-proxy', 'p1', '10.0.0.2')] },
      { lookup: 'connect', datacenter: 'static', service: 'web', instances: [instance('static', 'web-proxy', 'p2', '10.0.1.2')] },
    ],
  };
  const merged = mergeCatalogs([{ kind: 'consul', declared: ['dc1'], data: catalog(instance('dc1', 'web', 'web-1', '10.0.0.1')) }, { kind: 'file', declared: [], data: fileData }], null);
  assert.deepEqual(merged.data.queries?.map((q) => `${q.datacenter}/${q.name}`), ['static/q-kept']);
  assert.deepEqual(merged.data.mesh?.map((m) => `${m.datacenter}/${m.instances[0]!.id}`), ['static/p2']);
});

test('prepared query executions go to the owner that executes them; elsewhere there is no such query', async () => {
  const asked: string[] = [];
  const consul = new FakeSource('consul');
  Object.assign(consul, {
    queries: {
      peek: (dc: string, name: string) => (asked.push(`peek ${dc}/${name}`), null),
      execute: (dc: string, name: string) => (asked.push(`execute ${dc}/${name}`), Promise.resolve()),
    },
  });
  const composite = new CompositeSource([{ source: consul, declared: ['dc1'] }, { source: new FakeSource('file'), declared: [] }], silent, new Diagnostics());
  assert.equal(composite.queries!.peek('DC1', 'q', '192.0.2.1'), null);
  await composite.queries!.execute('dc1', 'q', '192.0.2.1');
  assert.deepEqual(composite.queries!.peek('static', 'q', '192.0.2.1'), { kind: 'not-found' });
  assert.deepEqual(asked, ['peek DC1/q', 'execute dc1/q']);
});

test('a declared datacenter is claimed before its owner syncs: the clash holds, and its names are pending (SERVFAIL, not NXDOMAIN)', () => {
  const consul: MemberCatalog = { kind: 'consul', declared: ['dc1'], data: null };
  const file: MemberCatalog = { kind: 'file', declared: [], data: catalog(instance('dc1', 'web', 'web-file', '10.0.0.2'), instance('static', 'db', 'db-1', '10.0.1.1')) };
  const merged = mergeCatalogs([consul, file], null);
  assert.deepEqual(ids(merged.data), ['static/db-1']);
  assert.deepEqual(merged.clashes, [{ datacenter: 'dc1', kept: 0, leftOut: 1 }]);
  const s = snapshotOf(merged.data);
  assert.equal(s.hasDatacenter('dc1'), true, 'dc1 exists');
  assert.equal(s.servicePending('dc1', 'web'), true, "Consul's services wait for its sync");
  assert.equal(s.nodesPending('dc1'), true, "Consul's nodes wait for its sync");
  assert.equal(s.servicePending('static', 'nosuch'), false, "the file's datacenter is whole: an unknown service is NXDOMAIN");
  assert.equal(s.nodesPending('static'), false);
  assert.equal(s.meshPending('connect', 'static', 'db'), false, 'a file service has no mesh view: none, not pending');
});

test("a lazy member's partial catalog is kept for its datacenters; the full member's stay whole", () => {
  const consulData: CatalogData = {
    ...catalog(instance('dc1', 'web', 'web-1', '10.0.0.1')),
    partial: { datacenters: ['dc1', 'dc2', 'static'], serviceListsKnown: ['dc1', 'static'], nodeListsKnown: [], pending: [{ datacenter: 'dc1', name: 'api' }, { datacenter: 'static', name: 'x' }] },
  };
  const merged = mergeCatalogs([{ kind: 'consul', declared: ['dc1'], data: consulData }, { kind: 'file', declared: [], data: catalog(instance('static', 'db', 'db-1', '10.0.1.1')) }], null);
  assert.deepEqual(merged.clashes, [{ datacenter: 'static', kept: 0, leftOut: 1 }], 'Consul lists static among its datacenters: it keeps it');
  const s = snapshotOf(merged.data);
  assert.equal(s.servicePending('dc1', 'api'), true);
  assert.equal(s.servicePending('dc1', 'nosuch'), false);
  assert.equal(s.servicePending('dc2', 'web'), true, 'dc2: its service list is not known yet');
  assert.equal(s.nodesPending('dc1'), true);
  assert.equal(s.service('static', 'db'), undefined, "the file's static records are left out");

  const apart = mergeCatalogs(
    [{ kind: 'consul', declared: ['dc1'], data: { ...consulData, partial: { ...consulData.partial!, datacenters: ['dc1'], serviceListsKnown: ['dc1'], pending: [] } } }, { kind: 'file', declared: [], data: catalog(instance('static', 'db', 'db-1', '10.0.1.1')) }],
    null,
  );
  const t = snapshotOf(apart.data);
  assert.equal(t.service('static', 'db')?.instances.length, 1);
  assert.equal(t.nodesPending('static'), false, 'the file datacenter is whole inside a partial catalog');
  assert.equal(t.meshPending('connect', 'static', 'db'), false);
  assert.equal(t.meshPending('connect', 'dc1', 'web'), true, "Consul's mesh views still load on demand");
});

test('the persisted catalog serves the datacenters of members not synced yet, and nothing once all are', () => {
  const persisted = catalog(instance('dc1', 'web', 'web-old', '10.0.0.9'), instance('static', 'db', 'db-old', '10.0.1.9'), instance('dc2', 'web', 'web-dc2', '10.0.2.9'));
  const file: MemberCatalog = { kind: 'file', declared: [], data: catalog(instance('static', 'db', 'db-1', '10.0.1.1')) };
  const early = mergeCatalogs([{ kind: 'consul', declared: ['dc1'], data: null }, file], persisted);
  assert.deepEqual(ids(early.data), ['static/db-1', 'dc1/web-old', 'dc2/web-dc2'], "the file live; Consul's dc1 and the unclaimed dc2 persisted");
  assert.deepEqual([...early.persisted].sort(), ['dc1', 'dc2']);
  const synced = mergeCatalogs([{ kind: 'consul', declared: ['dc1'], data: catalog(instance('dc1', 'web', 'web-1', '10.0.0.1')) }, file], persisted);
  assert.deepEqual(ids(synced.data), ['dc1/web-1', 'static/db-1']);
  assert.equal(synced.persisted.size, 0);
});

test("a change in one member moves only that member's services' generations", () => {
  const store = new CatalogStore({ now: () => 1_000_000 });
  const consul = catalog(instance('dc1', 'web', 'web-1', '10.0.0.1'));
  const first = store.replace(mergeCatalogs([{ kind: 'consul', declared: ['dc1'], data: consul }, { kind: 'file', declared: [], data: catalog(instance('static', 'db', 'db-1', '10.0.1.1')) }], null).data);
  const second = store.replace(mergeCatalogs([{ kind: 'consul', declared: ['dc1'], data: consul }, { kind: 'file', declared: [], data: catalog(instance('static', 'db', 'db-1', '10.0.1.2')) }], null).data);
  assert.equal(second.service('dc1', 'web')!.generation, first.service('dc1', 'web')!.generation, "Consul's service keeps its generation");
  assert.notEqual(second.service('static', 'db')!.generation, first.service('static', 'db')!.generation, "the file's changed service gets a new one");
});

/** A member whose publishes the test drives. */
class FakeSource implements CatalogSource {
  sink: CatalogSink | null = null;
  wanted: string[] = [];
  reloads = 0;
  stopped = false;
  constructor(
    readonly kind: string,
    private readonly outcome: unknown = undefined,
    lazy = false,
  ) {
    if (lazy) this.want = (dc: string, service: string | null) => (this.wanted.push(`${dc}/${service}`), Promise.resolve());
  }
  get description(): string {
    return `${this.kind} here`;
  }
  want?: (dc: string, service: string | null) => Promise<void>;
  start(sink: CatalogSink): Promise<void> {
    this.sink = sink;
    return Promise.resolve();
  }
  reload(): Promise<unknown> {
    this.reloads++;
    return Promise.resolve(this.outcome);
  }
  stop(): Promise<void> {
    this.stopped = true;
    return Promise.resolve();
  }
}

test('the composite source: merged publishes, want routed to the owner, a clash reported once and its end, members() per source', async () => {
  const diagnostics = new Diagnostics();
  const events: StateEvent[] = [];
  diagnostics.state.subscribe((e) => events.push(e));
  const consul = new FakeSource('consul', undefined, true);
  const file = new FakeSource('file', { ok: true, changed: true });
  const composite = new CompositeSource([{ source: consul, declared: ['dc1'] }, { source: file, declared: [] }], silent, diagnostics);
  assert.equal(composite.kind, 'consul+file');
  assert.equal(composite.description, 'consul here, file here');
  const store = new CatalogStore();
  await composite.start(store);

  file.sink!.replace(catalog(instance('dc1', 'web', 'web-file', '10.0.0.2'), instance('static', 'db', 'db-1', '10.0.1.1')));
  assert.deepEqual([...store.current()!.allServices()].map((s) => `${s.datacenter}/${s.name}`), ['static/db']);
  assert.deepEqual(composite.members().map((m) => [m.kind, m.synced, m.datacenters, m.leftOut]), [
    ['consul', false, ['dc1'], []],
    ['file', true, ['static'], ['dc1']],
  ]);
  // A question about dc1 waits for Consul; one about the file's datacenter has nothing to wait for.
  await composite.want('dc1', 'web');
  await composite.want('static', 'db');
  assert.deepEqual(consul.wanted, ['dc1/web']);

  consul.sink!.replace(catalog(instance('dc1', 'web', 'web-1', '10.0.0.1')));
  file.sink!.replace(catalog(instance('dc1', 'web', 'web-file', '10.0.0.3'), instance('static', 'db', 'db-1', '10.0.1.1')));
  const clash = events.filter((e) => e.key === 'datacenter dc1');
  assert.deepEqual(clash.map((e) => [e.subject, e.problem]), [['file', 'published by consul and file']], 'reported once, however often both publish');

  file.sink!.replace(catalog(instance('static', 'db', 'db-1', '10.0.1.1')));
  assert.deepEqual(events.filter((e) => e.key === 'datacenter dc1').map((e) => e.problem), ['published by consul and file', null], 'and its end');
  assert.deepEqual(store.current()!.service('dc1', 'web')!.instances.map((i) => i.id), ['web-1']);

  assert.deepEqual(await composite.reload(), { ok: true, changed: true });
  assert.deepEqual([consul.reloads, file.reloads], [1, 1], 'a reload reloads every member');
  await composite.stop();
  assert.deepEqual([consul.stopped, file.stopped], [true, true]);
});

test('an owner that loads everything: a question waits for its first publish', async () => {
  const a = new FakeSource('consul');
  const b = new FakeSource('file');
  const composite = new CompositeSource([{ source: a, declared: ['dc1'] }, { source: b, declared: [] }], silent, new Diagnostics());
  await composite.start(new CatalogStore());
  let done = false;
  const waiting = composite.want('dc1', 'web').then(() => (done = true));
  await Promise.resolve();
  assert.equal(done, false);
  a.sink!.replace(catalog(instance('dc1', 'web', 'web-1', '10.0.0.1')));
  await waiting;
  assert.equal(done, true);
});

test('configuration: two sources certain to publish one datacenter are a problem naming the fix', () => {
  const kind = (key: string, dc: ((c: { datacenter: string }) => { name: string; key: string }) | null): ChoosableKind => ({
    key,
    configured: () => true,
    ...(dc && { datacenter: dc }),
    create: () => Promise.reject(new Error('not here')),
  });
  const config = { datacenter: 'dc1' } as unknown as SourcesConfig & { datacenter: string };
  const consul = kind('consul', (c) => ({ name: c.datacenter, key: 'datacenter' }));
  assert.deepEqual(datacenterClashes(config, [kind('catalog', null), consul, kind('zookeeper', () => ({ name: 'DC1', key: 'zookeeper-datacenter' }))]), [
    'consul and zookeeper: both would publish datacenter DC1 (a datacenter belongs to one source): give zookeeper a datacenter of its own with --zookeeper-datacenter',
  ]);
  assert.deepEqual(datacenterClashes(config, [consul, kind('zookeeper', () => ({ name: 'zk', key: 'zookeeper-datacenter' }))]), []);
  assert.deepEqual(datacenterClashes(config, [consul, kind('catalog', null)]), [], "a file's datacenters are not known from the configuration");
});
