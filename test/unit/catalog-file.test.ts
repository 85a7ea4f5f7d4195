/**
 * The catalog file: reloaded on change, a broken edit changes nothing and is reported once, and
 * bad catalogs are described precisely.
 */

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { FileSource, type ReloadOutcome } from '../../src/catalog/file/source.js';
import { CatalogFileError, parseCatalogFile } from '../../src/catalog/file/format.js';
import { CatalogStore } from '../../src/catalog/store.js';
import { CATALOG } from '../support/catalog.js';
import { buildQuery, decode, udpExchange } from '../support/client.js';
import { startServer, type TestServer } from '../support/server.js';
import { loggedDiagnostics } from '../support/diagnostics.js';

/**
 * Waits (bounded) for the source's next reload that changed something or failed. Reloads of
 * unchanged bytes are skipped: any event in the directory (a mkdir, a symlink) triggers one.
 */
async function nextReload(source: FileSource, timeoutMs = 5000): Promise<ReloadOutcome> {
  const signal = AbortSignal.timeout(timeoutMs);
  for (;;) {
    const [outcome] = (await once(source, 'reload', { signal })) as [ReloadOutcome];
    if (!outcome.ok || outcome.changed) return outcome;
  }
}

/** The A records served for `name`, sorted (what `dig +short` prints). */
async function addresses(port: number, name: string): Promise<string[]> {
  const reply = await udpExchange(port, buildQuery(name, 'A'));
  assert.ok(reply, `no reply for ${name}`);
  return (decode(reply).answers ?? []).flatMap((a) => (a.type === 'A' ? [a.data] : [])).sort();
}

describe('catalog file reload', () => {
  let s: TestServer;
  let source: FileSource;
  before(async () => {
    s = await startServer({ catalog: CATALOG });
    source = s.server.source as FileSource;
  });
  after(() => s.close());

  test('an edit in place is served on the next query', async () => {
    assert.deepEqual(await addresses(s.port, 'cache.service.consul'), ['10.0.1.5']);
    const reloaded = nextReload(source);
    await writeFile(s.catalogPath, CATALOG.replace('address: 10.0.1.5', 'address: 10.0.1.6'));
    assert.deepEqual(await reloaded, { ok: true, changed: true });
    assert.deepEqual(await addresses(s.port, 'cache.service.consul'), ['10.0.1.6']);
  });

  test('a file replaced by rename (as editors and ConfigMaps do) is served too', async () => {
    const tmp = join(s.dir, 'catalog.yaml.tmp');
    await writeFile(tmp, CATALOG.replace('address: 10.0.1.5', 'address: 10.0.1.7'));
    const reloaded = nextReload(source);
    await rename(tmp, s.catalogPath);
    assert.deepEqual(await reloaded, { ok: true, changed: true });
    assert.deepEqual(await addresses(s.port, 'cache.service.consul'), ['10.0.1.7']);
  });

  test('a Kubernetes ConfigMap update (an atomic swap of the ..data symlink) is served too', async (t) => {
    // The kubelet's layout: catalog.yaml -> ..data/catalog.yaml, ..data -> ..<timestamp>/;
    // an update writes a new timestamped directory and renames a new ..data link over the old.
    const cm = await mkdtemp(join(tmpdir(), 'svcdns-configmap-'));
    t.after(() => rm(cm, { recursive: true, force: true }));
    await mkdir(join(cm, '..v1'));
    await writeFile(join(cm, '..v1', 'catalog.yaml'), CATALOG);
    await symlink('..v1', join(cm, '..data'));
    await symlink('..data/catalog.yaml', join(cm, 'catalog.yaml'));
    const store = new CatalogStore();
    const cmSource = new FileSource({ path: join(cm, 'catalog.yaml'), defaultDatacenter: 'dc1', log: pino({ level: 'silent' }), diagnostics: loggedDiagnostics(), debounceMs: 10 });
    await cmSource.start(store);
    t.after(() => cmSource.stop());
    assert.equal(store.current()!.service('dc1', 'cache')!.instances[0]!.reach.any!.ip!.text, '10.0.1.5');

    await mkdir(join(cm, '..v2'));
    await writeFile(join(cm, '..v2', 'catalog.yaml'), CATALOG.replace('address: 10.0.1.5', 'address: 10.0.1.8'));
    await symlink('..v2', join(cm, '..data_tmp'));
    const reloaded = nextReload(cmSource);
    await rename(join(cm, '..data_tmp'), join(cm, '..data'));
    assert.deepEqual(await reloaded, { ok: true, changed: true });
    assert.equal(store.current()!.service('dc1', 'cache')!.instances[0]!.reach.any!.ip!.text, '10.0.1.8');
  });

  test('a broken edit keeps the last good catalog serving', async () => {
    const serial = s.server.store.current()!.serial;
    const reloaded = nextReload(source);
    await writeFile(s.catalogPath, 'nodes:\n  - name: node1\n    address: 10.0.0.300\n');
    const outcome = await reloaded;
    assert.equal(outcome.ok, false);
    assert.equal(s.server.store.current()!.serial, serial, 'nothing published');
    assert.deepEqual(await addresses(s.port, 'cache.service.consul'), ['10.0.1.7']);
    assert.deepEqual(await addresses(s.port, 'web.service.consul'), ['10.0.0.1', '10.0.0.2']);
  });
});

describe('catalog file errors are logged once, naming the file and the problem', () => {
  test('one error line per distinct broken content', async () => {
    const lines: Record<string, unknown>[] = [];
    const log = pino(
      { level: 'info' },
      new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
          done();
        },
      }),
    );
    const s = await startServer({ catalog: CATALOG });
    const path = s.catalogPath;
    const store = new CatalogStore();
    const source = new FileSource({ path, defaultDatacenter: 'dc1', log, diagnostics: loggedDiagnostics(), watch: false });
    try {
      await source.start(store);
      await writeFile(path, 'nodes: [ {name: a, address: 10.0.0.1, services: [{name: web, port: 99999}]} ]');
      assert.equal((await source.reload()).ok, false);
      assert.equal((await source.reload()).ok, false);
      const errors = lines.filter((l) => l.level === 50);
      assert.equal(errors.length, 1, 'the same problem is reported once');
      assert.equal(errors[0]!.file, path);
      assert.deepEqual(errors[0]!.problems, ['nodes[0].services[0].port: must be an integer from 0 to 65535 (got 99999)']);
      assert.equal(errors[0]!.msg, 'catalog file rejected; still serving the last good catalog');
      assert.ok(store.current()!.service('dc1', 'web'), 'last good catalog still published');
    } finally {
      await source.stop();
      await s.close();
    }
  });
});

describe('catalog file validation', () => {
  function problems(text: string): readonly string[] {
    try {
      parseCatalogFile(text, 'c.yaml', 'dc1');
    } catch (err) {
      assert.ok(err instanceof CatalogFileError);
      return err.problems;
    }
    assert.fail('expected a CatalogFileError');
  }

  test('every problem is reported with its path', () => {
    assert.deepEqual(
      problems(`
nodes:
  - name: bad_name
    address: 10.0.0.300
    colour: blue
    services:
      - {name: web, port: -1, health: sick, tags: [ok, 7]}
      - {name: web, port: 80}
`),
      [
        'nodes[0].colour: unknown key (expected one of: name, address, datacenter, meta, tagged_addresses, services)',
        'nodes[0].name: must be a DNS label (letters, digits, inner hyphens, at most 63) (got "bad_name")',
        'nodes[0].address: must be an IPv4 or IPv6 address or a hostname (got "10.0.0.300")',
        'nodes[0].services[0].health: must be one of passing, warning, critical (got "sick")',
        'nodes[0].services[0].port: must be an integer from 0 to 65535 (got -1)',
        'nodes[0].services[0].tags[1]: must be a non-empty string (got 7)',
        'nodes[0].services[1].id: service id web appears twice on node bad_name',
      ],
    );
  });

  test("node meta within Consul's limits: keys up to 128 characters, values up to 512, 64 pairs", () => {
    const meta = (m: Record<string, string>) => `nodes: [{name: a, address: 10.0.0.1, meta: ${JSON.stringify(m)}}]`;
    assert.deepEqual(problems(meta({ ['k'.repeat(129)]: 'v', ok: 'x'.repeat(513) })), [
      `nodes[0].meta.${'k'.repeat(129)}: keys are at most 128 characters`,
      'nodes[0].meta.ok: values are at most 512 characters',
    ]);
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']));
    assert.deepEqual(problems(meta(many)), ['nodes[0].meta: at most 64 pairs (got 65)']);
  });

  test('addresses: IPs or hostnames; tagged addresses of the right family', () => {
    assert.deepEqual(
      problems(`
nodes:
  - name: a
    address: db.example.com.
    tagged_addresses: {lan_ipv4: "2001:db8::1", lan_ipv6: "2001:db8::1", wan: -x.example, lan6: 10.0.0.1}
    services:
      - {name: s, port: 1, address: "bad name", tagged_addresses: {wan: {address: 192.0.2.1, port: 70000}, wan_ipv6: 192.0.2.1}}
      - {name: t, port: 1, address: my-rds.abc123.eu-west-1.rds.amazonaws.com}
`),
      [
        'nodes[0].tagged_addresses.lan6: unknown key (expected one of: lan, lan_ipv4, lan_ipv6, wan, wan_ipv4, wan_ipv6)',
        'nodes[0].tagged_addresses.lan_ipv4: must be an IPv4 address (got "2001:db8::1")',
        'nodes[0].tagged_addresses.wan: must be an IPv4 or IPv6 address or a hostname (got "-x.example")',
        'nodes[0].services[0].tagged_addresses.wan.port: must be an integer from 0 to 65535 (got 70000)',
        'nodes[0].services[0].tagged_addresses.wan_ipv6: must be an IPv6 address (got "192.0.2.1")',
        'nodes[0].services[0].address: must be an IPv4 or IPv6 address or a hostname (got "bad name")',
      ],
    );
    const data = parseCatalogFile('nodes: [{name: a, address: DB.example.com., services: [{name: s, port: 1, tagged_addresses: {wan: 192.0.2.1}}]}]', 'c.yaml', 'dc1');
    assert.equal(data.nodes[0]!.address, 'DB.example.com', 'kept as spelled, without the trailing dot');
    assert.deepEqual(data.services[0]!.taggedAddresses, { wan: { address: '192.0.2.1', port: 0 } });
  });

  test('YAML syntax errors, empty files and duplicate nodes', () => {
    assert.match(problems('nodes: [')[0]!, /^not valid YAML or JSON: /);
    assert.deepEqual(problems(''), ['the file is empty']);
    assert.deepEqual(problems('nodes: [{name: a, address: 10.0.0.1}, {name: A, address: 10.0.0.2}]'), [
      'nodes[1].name: node A appears twice in datacenter dc1',
    ]);
  });

  test('queries: each problem with its path, names unique per datacenter, defaults filled in', () => {
    assert.deepEqual(
      problems(`
queries:
  - {name: bad_name, service: web, ttl: -1, only-passing: yes please, failover: [dc_2], colour: red}
  - {name: a.b, tags: [7]}
  - {name: A.B, service: web}
`),
      [
        'queries[0].colour: unknown key (expected one of: name, service, datacenter, tags, only-passing, failover, ttl)',
        'queries[0].name: must be DNS labels joined by dots (got "bad_name")',
        'queries[0].only-passing: must be true or false (got "yes please")',
        'queries[0].failover[0]: must be a DNS label (letters, digits, inner hyphens, at most 63) (got "dc_2")',
        'queries[0].ttl: must be an integer from 0 to 2147483647 (got -1)',
        'queries[1].service: must be a DNS label (letters, digits, inner hyphens, at most 63) (got nothing)',
        'queries[1].tags[0]: must be a non-empty string (got 7)',
        'queries[2].name: query A.B appears twice in datacenter dc1',
      ],
    );
    const data = parseCatalogFile("queries: [{name: web-eu, service: web, tags: ['!canary'], failover: [dc2], ttl: 10}]", 'c.yaml', 'dc1');
    assert.deepEqual(data.queries, [{ name: 'web-eu', datacenter: 'dc1', service: 'web', tags: ['!canary'], onlyPassing: false, failover: ['dc2'], ttl: 10 }]);
    // No queries: the data has none (so a catalog object and a file without them stay as they were).
    assert.equal('queries' in parseCatalogFile('nodes: []', 'c.yaml', 'dc1'), false);
  });

  test('JSON works as well as YAML, with defaults filled in', () => {
    const data = parseCatalogFile(
      JSON.stringify({ nodes: [{ name: 'n1', address: '::1', services: [{ name: 'api', port: 9 }] }] }),
      'c.json',
      'dc7',
    );
    assert.deepEqual(data, {
      nodes: [{ datacenter: 'dc7', name: 'n1', address: '::1', meta: {} }],
      services: [
        { datacenter: 'dc7', node: 'n1', id: 'api', name: 'api', address: '', port: 9, tags: [], weights: { passing: 1, warning: 1 }, health: 'passing' },
      ],
    });
  });
});
