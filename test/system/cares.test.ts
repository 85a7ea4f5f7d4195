/**
 * The same server through Node's own resolver (c-ares): what an application calling
 * dns.promises.Resolver gets, including the error codes that rcodes become.
 */

import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { after, before, describe, test } from 'node:test';
import { CATALOG, bigCatalog } from '../support/catalog.js';
import { untyped, withoutType } from '../support/cares.js';
import { TEST_SERIAL, startServer, type TestServer } from '../support/server.js';

function resolverFor(s: TestServer): Resolver {
  const r = new Resolver({ timeout: 2000, tries: 1 });
  r.setServers([`${s.host}:${s.port}`]);
  return r;
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, code);
    return true;
  });
}

describe('c-ares (node:dns Resolver)', () => {
  let s: TestServer;
  let r: Resolver;
  before(async () => {
    s = await startServer({ catalog: `${CATALOG.trimEnd()}\n${bigCatalog({ many: 60 }).replace(/^nodes:\n/, '')}` });
    r = resolverFor(s);
  });
  after(() => s.close());

  test('A and AAAA of services, with TTLs', async () => {
    assert.deepEqual((await r.resolve4('web.service.consul')).sort(), ['10.0.0.1', '10.0.0.2']);
    assert.deepEqual(await r.resolve4('v2.web.service.consul', { ttl: true }), [{ address: '10.0.0.2', ttl: 0 }]);
    assert.deepEqual(await r.resolve6('v6only.service.consul'), ['2001:db8::6']);
  });

  test('SRV, plain and RFC 2782 forms', async () => {
    const expected = [
      { name: 'node1.node.dc1.consul', port: 5432, priority: 1, weight: 10 },
      { name: 'node2.node.dc1.consul', port: 5432, priority: 1, weight: 2 },
    ];
    const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
    assert.deepEqual(untyped(await r.resolveSrv('db.service.consul'), 'SRV').sort(byName), expected);
    assert.deepEqual(untyped(await r.resolveSrv('_db._tcp.service.consul'), 'SRV').sort(byName), expected);
  });

  test('NODATA is ENODATA, NXDOMAIN is ENOTFOUND, REFUSED is EREFUSED', async () => {
    await rejectsWith(r.resolve6('web.service.consul'), 'ENODATA');
    await rejectsWith(r.resolve4('nope.service.consul'), 'ENOTFOUND');
    await rejectsWith(r.resolve4('down.service.consul'), 'ENOTFOUND');
    await rejectsWith(r.resolve4('example.com'), 'EREFUSED');
  });

  test('nodes, node meta TXT, reverse lookups', async () => {
    assert.deepEqual(await r.resolve4('node1.node.consul'), ['10.0.0.1']);
    assert.deepEqual((await r.resolveTxt('node1.node.consul')).sort(), [['rack=r1'], ['raw value']]);
    assert.deepEqual(await r.reverse('10.0.0.1'), ['node1.node.dc1.consul']);
    assert.deepEqual(await r.reverse('2001:db8::6'), ['node6.node.dc1.consul']);
  });

  test('SOA and NS of the domain', async () => {
    const soa = withoutType(await r.resolveSoa('consul'), 'SOA');
    assert.deepEqual(soa, {
      nsname: 'ns.consul',
      hostmaster: 'hostmaster.consul',
      serial: TEST_SERIAL,
      refresh: 3600,
      retry: 600,
      expire: 86400,
      minttl: 0,
    });
    assert.deepEqual(await r.resolveNs('consul'), ['node1.node.dc1.consul']);
  });

  test('a set too big for UDP arrives whole (c-ares retries over TCP on TC)', async () => {
    const got = await r.resolve4('many.service.consul');
    assert.equal(got.length, 60);
    assert.equal(new Set(got).size, 60);
  });
});
