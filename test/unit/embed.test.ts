/**
 * The embedding API from source (src/index.ts): options are the configuration keys in camelCase,
 * every problem comes in one ConfigError, and setCatalog replaces a catalog object only when it is
 * valid (the old one keeps answering). Queries go through node:dns's Resolver to the real server
 * on 127.0.0.1; test/system/embed.test.ts does the same through the built package.
 */

import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { KEYS } from '../../src/config.js';
import { embeddedConfig, optionName } from '../../src/embed/options.js';
import { CatalogError, ConfigError, createServer, type CatalogObject, type Server } from '../../src/index.js';
import { untyped } from '../support/cares.js';

/** Loopback only, and no forwarding to this machine's resolvers. */
const BASE = { listen: ['127.0.0.1:0'], resolvConf: '/dev/null' };

function resolverFor(server: Server): Resolver {
  const resolver = new Resolver({ timeout: 2000, tries: 1 });
  const { host, port } = server.addresses[0]!;
  resolver.setServers([`${host}:${port}`]);
  return resolver;
}

/** The A records of `name` with their TTLs, sorted by address. */
async function aRecords(resolver: Resolver, name: string): Promise<{ address: string; ttl: number }[]> {
  return (await resolver.resolve4(name, { ttl: true })).sort((a, b) => a.address.localeCompare(b.address));
}

/** `web` on one node per address. */
function webCatalog(...addresses: string[]): CatalogObject {
  return { nodes: addresses.map((address, i) => ({ name: `node-${i + 1}`, address, services: [{ name: 'web', port: 80 + i }] })) };
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof Error);
    return err;
  }
  return assert.fail('expected a rejection');
}

test('option names are the configuration keys in camelCase', () => {
  assert.equal(optionName('listen'), 'listen');
  assert.equal(optionName('service-ttl'), 'serviceTtl');
  assert.equal(optionName('alt-domain'), 'altDomain');
  assert.equal(optionName('answer-cache-max-bytes'), 'answerCacheMaxBytes');
});

test('every configuration key is an option: a value of the wrong shape for each is reported by its camelCase name, none as unknown', async () => {
  // `catalog` takes an object too (it is tested below); the rest take only config-file values.
  const keys = Object.keys(KEYS).filter((key) => key !== 'catalog');
  const options = Object.fromEntries(keys.map((key) => [optionName(key), { not: 'a value' }]));
  const err = await rejection(createServer(options));
  assert.ok(err instanceof ConfigError);
  assert.deepEqual(
    err.problems,
    // A map key (serviceTtl) takes a mapping: there the value is what is wrong, found by its
    // component after the shapes are checked.
    [
      ...keys.filter((key) => !KEYS[key]!.map).map((key) => `${optionName(key)}: must be a ${KEYS[key]!.list ? 'list or a ' : ''}single value`),
      ...keys.filter((key) => KEYS[key]!.map).map((key) => `${optionName(key)}: "not=a value": the TTL must be a whole number from 0 to 2147483647`),
    ],
  );
});

test('options reach the server: serviceTtl, nodeTtl, domain and datacenter shape the answers', async (t) => {
  const server = await createServer({
    ...BASE,
    serviceTtl: 7,
    nodeTtl: '9',
    domain: 'example',
    datacenter: 'east',
    catalog: webCatalog('10.0.0.1', '10.0.0.2'),
  });
  t.after(() => server.close());
  assert.equal(server.addresses.length, 1);
  assert.equal(server.addresses[0]!.host, '127.0.0.1');
  assert.notEqual(server.addresses[0]!.port, 0);
  const resolver = resolverFor(server);
  assert.deepEqual(await aRecords(resolver, 'web.service.example'), [
    { address: '10.0.0.1', ttl: 7 },
    { address: '10.0.0.2', ttl: 7 },
  ]);
  assert.deepEqual(await aRecords(resolver, 'node-2.node.east.example'), [{ address: '10.0.0.2', ttl: 9 }]);
});

test('every problem comes in one ConfigError: unknown options, bad values, options the embedding lacks, the catalog object', async () => {
  const err = await rejection(
    createServer({
      ...BASE,
      serviceTtl: 'soon',
      fooBar: 1,
      'service-ttl': 3,
      workers: 2,
      catalog: { nodes: [{ name: 'bad name', address: '10.0.0.1', services: [{ name: 'web', port: 70000 }] }] },
    }),
  );
  assert.ok(err instanceof ConfigError);
  assert.deepEqual(err.problems, [
    'unknown option "fooBar"',
    'unknown option "service-ttl" (options are camelCase: serviceTtl)',
    'workers: not an option of createServer: the server runs in your process; start more processes yourself to use more cores',
    'serviceTtl: must be a whole number from 0 to 2147483647 (got "soon")',
    'catalog: nodes[0].name: must be a DNS label (letters, digits, inner hyphens, at most 63) (got "bad name")',
    'catalog: nodes[0].services[0].port: must be an integer from 0 to 65535 (got 70000)',
  ]);
  assert.equal(err.message, err.problems.join('; '));
});

test('a catalog object and another source are a contradiction: the object serves alone (a catalog file path joins Consul, as --catalog does)', async () => {
  const err = await rejection(createServer({ ...BASE, consul: 'http://127.0.0.1:1', catalog: webCatalog('10.0.0.1') }));
  assert.ok(err instanceof ConfigError);
  assert.deepEqual(err.problems, ['catalog and consul: choose one source of the catalog']);
  const both = embeddedConfig({ consul: 'http://127.0.0.1:1', catalog: 'static.yaml' }, pino({ level: 'silent' }));
  assert.deepEqual([both.source, both.chosenBy, both.config.catalog], [undefined, 'catalog and consul', 'static.yaml']);
});

test('a catalog that is not a mapping is a problem, not an empty catalog', async (t) => {
  for (const catalog of [null, [], 7]) {
    const err = await rejection(createServer({ ...BASE, catalog: catalog as never }));
    assert.ok(err instanceof ConfigError);
    assert.deepEqual(err.problems, ['catalog: must be a mapping']);
  }
  const server = await createServer({ ...BASE, catalog: webCatalog('10.0.0.1') });
  t.after(() => server.close());
  const err = await rejection(server.setCatalog(null as never));
  assert.ok(err instanceof CatalogError);
  assert.equal(err.message, 'catalog: must be a mapping');
  assert.deepEqual(await aRecords(resolverFor(server), 'web.service.consul'), [{ address: '10.0.0.1', ttl: 0 }]);
});

test('setCatalog: a bad catalog is rejected with every problem and the old one keeps answering; a good one replaces it', async (t) => {
  const server = await createServer({ ...BASE, serviceTtl: 5, catalog: webCatalog('10.0.0.1', '10.0.0.2') });
  t.after(() => server.close());
  const resolver = resolverFor(server);
  const before = [
    { address: '10.0.0.1', ttl: 5 },
    { address: '10.0.0.2', ttl: 5 },
  ];
  assert.deepEqual(await aRecords(resolver, 'web.service.consul'), before);

  const bad = { nodes: [{ name: 'node-9', address: '10.0.0.300', services: [{ name: 'web', port: 80, health: 'sick' }] }], extra: 1 };
  const err = await rejection(server.setCatalog(bad as never));
  assert.ok(err instanceof CatalogError);
  assert.deepEqual(err.problems, [
    'extra: unknown key (expected one of: datacenter, nodes, queries)',
    'nodes[0].address: must be an IPv4 or IPv6 address or a hostname (got "10.0.0.300")',
    'nodes[0].services[0].health: must be one of passing, warning, critical (got "sick")',
  ]);
  assert.equal(err.message, `catalog: ${err.problems.join('; ')}`);
  assert.deepEqual(await aRecords(resolver, 'web.service.consul'), before);

  await server.setCatalog(webCatalog('10.0.0.3'));
  assert.deepEqual(await aRecords(resolver, 'web.service.consul'), [{ address: '10.0.0.3', ttl: 5 }]);
  assert.deepEqual(untyped(await resolver.resolveSrv('web.service.consul'), 'SRV'), [{ name: 'node-1.node.dc1.consul', port: 80, priority: 1, weight: 1 }]);
});

test('no catalog and no consul: an empty catalog, which setCatalog fills', async (t) => {
  const server = await createServer(BASE);
  t.after(() => server.close());
  const resolver = resolverFor(server);
  await assert.rejects(resolver.resolve4('web.service.consul'), { code: 'ENOTFOUND' });
  await server.setCatalog(webCatalog('10.0.0.4'));
  assert.deepEqual(await aRecords(resolver, 'web.service.consul'), [{ address: '10.0.0.4', ttl: 0 }]);
});

test('setCatalog on a server whose catalog comes from Consul or a file rejects and changes nothing', async (t) => {
  // Consul's source starts without Consul (nothing listens on port 1): it is never reached here.
  const consul = await createServer({ ...BASE, consul: 'http://127.0.0.1:1' });
  t.after(() => consul.close());
  const fromConsul = await rejection(consul.setCatalog(webCatalog('10.0.0.1')));
  assert.equal(fromConsul.message, "setCatalog: this server's catalog comes from the consul option; only a server created with a catalog object (or no catalog source) takes one");
  assert.equal((fromConsul as NodeJS.ErrnoException).code, 'SVCDNS_CATALOG_NOT_SETTABLE');

  const dir = await mkdtemp(join(tmpdir(), 'svcdns-embed-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'catalog.yaml');
  await writeFile(file, 'nodes: [{name: n1, address: 10.0.0.7, services: [{name: web, port: 80}]}]\n');
  const fromFile = await createServer({ ...BASE, catalog: file });
  t.after(() => fromFile.close());
  const err = await rejection(fromFile.setCatalog(webCatalog('10.0.0.1')));
  assert.equal(err.message, "setCatalog: this server's catalog comes from the catalog option; only a server created with a catalog object (or no catalog source) takes one");
  assert.deepEqual(await aRecords(resolverFor(fromFile), 'web.service.consul'), [{ address: '10.0.0.7', ttl: 0 }]);
});

test('logs go to the logger given, and close() may be called twice', async () => {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  const server = await createServer({ ...BASE, logger, catalog: webCatalog('10.0.0.1', '10.0.0.2') });
  await server.setCatalog(webCatalog('10.0.0.1'));
  await Promise.all([server.close(), server.close()]);
  await server.close();
  const { port } = server.addresses[0]!;
  // (The forwarder's warning that /dev/null names no upstream comes first; it is not ours.)
  assert.deepEqual(
    lines.filter((l) => !String(l.msg).startsWith('no upstream resolvers')).map(({ msg, nodes, instances, address }) => ({ msg, nodes, instances, address })),
    [
      { msg: 'catalog loaded', nodes: 2, instances: 2, address: undefined },
      { msg: 'listening (udp, tcp)', nodes: undefined, instances: undefined, address: `127.0.0.1:${port}` },
      { msg: 'catalog loaded', nodes: 1, instances: 1, address: undefined },
      { msg: 'listeners closing; answering the queries in flight', nodes: undefined, instances: undefined, address: undefined },
      { msg: 'stopped', nodes: undefined, instances: undefined, address: undefined },
    ],
  );
});

test('metrics(): a prom-client registry counting from the first call, the catalog gauges, no process metrics', async (t) => {
  const server = await createServer({ ...BASE, catalog: webCatalog('10.0.0.1', '10.0.0.2') });
  t.after(() => server.close());
  const registry = server.metrics();
  assert.equal(server.metrics(), registry, 'one registry per server');
  const resolver = resolverFor(server);
  for (let i = 0; i < 3; i++) assert.equal((await aRecords(resolver, 'web.service.consul')).length, 2);
  await assert.rejects(resolver.resolve4('nope.service.consul'), { code: 'ENOTFOUND' });
  const text = await registry.metrics();
  const value = (sample: string) => Number(text.split('\n').find((l) => l.startsWith(`${sample} `))?.split(' ')[1]);
  assert.equal(value('svcdns_dns_requests_total{proto="udp",type="A"}'), 4);
  assert.equal(value('svcdns_dns_responses_total{proto="udp",rcode="NOERROR"}'), 3);
  assert.equal(value('svcdns_dns_responses_total{proto="udp",rcode="NXDOMAIN"}'), 1);
  assert.equal(value('svcdns_catalog_instances'), 2);
  assert.equal(value('svcdns_catalog_synced'), 1);
  assert.equal(text.includes('process_cpu_seconds_total'), false);
});

test('serviceTtl takes a mapping of patterns, as the config file does', async (t) => {
  const server = await createServer({ ...BASE, serviceTtl: { web: 7, '*': 3 }, catalog: webCatalog('10.0.0.1') });
  t.after(() => server.close());
  assert.deepEqual(await aRecords(resolverFor(server), 'web.service.consul'), [{ address: '10.0.0.1', ttl: 7 }]);
});
