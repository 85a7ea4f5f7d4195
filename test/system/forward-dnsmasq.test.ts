/**
 * Forwarding through a real resolver: dnsmasq (Debian's dnsmasq-base), started by each test on
 * 127.0.0.1 and a free port, with local data only (no upstreams of its own, no /etc files read;
 * `--local=/test/` makes it answer NXDOMAIN for unknown names under .test and REFUSED elsewhere),
 * behind svcdns with `--upstream`. Queried with dig and with Node's resolver (c-ares).
 *
 * dnsmasq rotates record sets between replies, so sets of more than one record are compared sorted;
 * a CNAME chain is compared in order. Its negative answers carry no SOA.
 */

import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { test, type TestContext } from 'node:test';
import { untyped } from '../support/cares.js';
import { dig, type DigResult } from '../support/dig.js';
import { queriesSeen, startDnsmasq, TTL, type Dnsmasq } from '../support/dnsmasq.js';
import { eventually } from '../support/eventually.js';
import { TEST_NOW_MS, TEST_SERIAL, startServer, type TestServer } from '../support/server.js';

/** dnsmasq's local data, as its flags. */
const DATA = [
  '--host-record=www.example.test,192.0.2.10,2001:db8::10',
  '--host-record=www.example.test,192.0.2.11',
  '--host-record=v4only.example.test,192.0.2.20',
  '--cname=alias.example.test,hop.example.test',
  '--cname=hop.example.test,host.example.test',
  '--host-record=host.example.test,192.0.2.30',
  '--txt-record=www.example.test,v=spf1 -all',
  '--txt-record=multi.example.test,first string,second string',
  '--mx-host=example.test,mail.example.test,10',
  '--mx-host=example.test,backup.example.test,20',
  '--host-record=mail.example.test,192.0.2.25',
  '--srv-host=_sip._tcp.example.test,sip.example.test,5060,1,2',
  '--host-record=sip.example.test,192.0.2.40',
];

const CATALOG = 'nodes: [{name: n1, address: 10.0.0.1, services: [{name: web, port: 80}]}]';
const SOA = `consul. 0 IN SOA ns.consul. hostmaster.consul. ${TEST_SERIAL} 3600 600 86400 0`;

interface Setup {
  dnsmasq: Dnsmasq;
  server: TestServer;
  resolver: Resolver;
  clock: { now: number };
}

async function setup(t: TestContext, flags: Record<string, string> = {}): Promise<Setup> {
  const dnsmasq = await startDnsmasq(t, DATA);
  const clock = { now: TEST_NOW_MS };
  const server = await startServer({ catalog: CATALOG, flags: { upstream: [dnsmasq.address], ...flags }, now: () => clock.now });
  t.after(() => server.close());
  const resolver = new Resolver({ timeout: 2000, tries: 1 });
  resolver.setServers([`127.0.0.1:${server.port}`]);
  return { dnsmasq, server, resolver, clock };
}

function sorted(lines: readonly string[]): string[] {
  return [...lines].sort();
}

interface Case {
  name: string;
  type: string;
  status: string;
  /** Compared in order (a CNAME chain). */
  ordered?: string[];
  /** Compared sorted (dnsmasq rotates sets). */
  answer?: string[];
  additional?: string[];
}

const CASES: Case[] = [
  { name: 'www.example.test', type: 'A', status: 'NOERROR', answer: [`www.example.test. ${TTL} IN A 192.0.2.10`, `www.example.test. ${TTL} IN A 192.0.2.11`] },
  { name: 'www.example.test', type: 'AAAA', status: 'NOERROR', answer: [`www.example.test. ${TTL} IN AAAA 2001:db8::10`] },
  {
    name: 'alias.example.test',
    type: 'A',
    status: 'NOERROR',
    ordered: [`alias.example.test. ${TTL} IN CNAME hop.example.test.`, `hop.example.test. ${TTL} IN CNAME host.example.test.`, `host.example.test. ${TTL} IN A 192.0.2.30`],
  },
  { name: 'www.example.test', type: 'TXT', status: 'NOERROR', answer: [`www.example.test. ${TTL} IN TXT "v=spf1 -all"`] },
  { name: 'multi.example.test', type: 'TXT', status: 'NOERROR', answer: [`multi.example.test. ${TTL} IN TXT "first string" "second string"`] },
  {
    name: 'example.test',
    type: 'MX',
    status: 'NOERROR',
    answer: [`example.test. ${TTL} IN MX 10 mail.example.test.`, `example.test. ${TTL} IN MX 20 backup.example.test.`],
    additional: [`mail.example.test. ${TTL} IN A 192.0.2.25`],
  },
  {
    name: '_sip._tcp.example.test',
    type: 'SRV',
    status: 'NOERROR',
    answer: [`_sip._tcp.example.test. ${TTL} IN SRV 1 2 5060 sip.example.test.`],
    additional: [`sip.example.test. ${TTL} IN A 192.0.2.40`],
  },
  // NXDOMAIN: unknown under --local=/test/. NODATA: the name exists, the type does not.
  { name: 'nope.example.test', type: 'A', status: 'NXDOMAIN', answer: [] },
  { name: 'v4only.example.test', type: 'AAAA', status: 'NOERROR', answer: [] },
  { name: 'www.example.test', type: 'MX', status: 'NOERROR', answer: [] },
];

function check(c: Case, r: DigResult, transport: string): void {
  const what = `${c.name} ${c.type} over ${transport}`;
  assert.equal(r.transport, transport, `${what}: transport\n${r.raw}`);
  assert.equal(r.status, c.status, `${what}: status\n${r.raw}`);
  // Forwarded: recursion available, not authoritative (dnsmasq set AA on its local data).
  assert.deepEqual(r.flags, ['qr', 'rd', 'ra'], `${what}: flags\n${r.raw}`);
  if (c.ordered) assert.deepEqual(r.answer, c.ordered, `${what}: answer\n${r.raw}`);
  else assert.deepEqual(sorted(r.answer), sorted(c.answer ?? []), `${what}: answer\n${r.raw}`);
  assert.deepEqual(r.authority, [], `${what}: authority (dnsmasq sends no SOA)\n${r.raw}`);
  assert.deepEqual(sorted(r.additional), sorted(c.additional ?? []), `${what}: additional\n${r.raw}`);
}

test('dig: A, AAAA, a CNAME chain, TXT, MX, SRV, NXDOMAIN and NODATA come back from dnsmasq exactly, over UDP and TCP', async (t) => {
  // No cache here, so that every question reaches dnsmasq over the client's own transport.
  const { dnsmasq, server } = await setup(t, { 'cache-size': '0' });
  for (const c of CASES) {
    check(c, await dig(server.port, [c.name, c.type]), 'UDP');
    check(c, await dig(server.port, ['+tcp', c.name, c.type]), 'TCP');
  }
  const expected = CASES.flatMap((c) => [`query[${c.type}] ${c.name}`, `query[${c.type}] ${c.name}`]);
  await eventually(() => assert.deepEqual(queriesSeen(dnsmasq), expected, `dnsmasq's log:\n${dnsmasq.log()}`));
});

test("Node's resolver (c-ares) gets the same records through svcdns", async (t) => {
  const { resolver: r } = await setup(t);
  const byAddress = (a: { address: string }, b: { address: string }) => a.address.localeCompare(b.address);
  assert.deepEqual((await r.resolve4('www.example.test', { ttl: true })).sort(byAddress), [
    { address: '192.0.2.10', ttl: TTL },
    { address: '192.0.2.11', ttl: TTL },
  ]);
  assert.deepEqual(await r.resolve6('www.example.test'), ['2001:db8::10']);
  // The chain is followed to its address; a CNAME question gets the first link.
  assert.deepEqual(await r.resolve4('alias.example.test'), ['192.0.2.30']);
  assert.deepEqual(await r.resolveCname('alias.example.test'), ['hop.example.test']);
  assert.deepEqual(await r.resolveTxt('www.example.test'), [['v=spf1 -all']]);
  assert.deepEqual(await r.resolveTxt('multi.example.test'), [['first string', 'second string']]);
  assert.deepEqual(
    untyped(await r.resolveMx('example.test'), 'MX').sort((a, b) => a.priority - b.priority),
    [
      { exchange: 'mail.example.test', priority: 10 },
      { exchange: 'backup.example.test', priority: 20 },
    ],
  );
  assert.deepEqual(untyped(await r.resolveSrv('_sip._tcp.example.test'), 'SRV'), [{ name: 'sip.example.test', port: 5060, priority: 1, weight: 2 }]);
  await assert.rejects(r.resolve4('nope.example.test'), (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, 'ENOTFOUND', `NXDOMAIN: ${err.message}`);
    return true;
  });
  await assert.rejects(r.resolve6('v4only.example.test'), (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, 'ENODATA', `NODATA: ${err.message}`);
    return true;
  });
  assert.deepEqual(await r.resolve4('web.service.consul'), ['10.0.0.1']);
});

test('consul names are still answered by svcdns itself, authoritatively, and never reach dnsmasq', async (t) => {
  const { dnsmasq, server } = await setup(t);
  const web = await dig(server.port, ['web.service.consul', 'A']);
  assert.equal(web.status, 'NOERROR', web.raw);
  assert.deepEqual(web.flags, ['qr', 'aa', 'rd', 'ra'], web.raw);
  assert.deepEqual(web.answer, ['web.service.consul. 0 IN A 10.0.0.1'], web.raw);
  const nx = await dig(server.port, ['nope.service.consul', 'A']);
  assert.equal(nx.status, 'NXDOMAIN', nx.raw);
  assert.deepEqual(nx.flags, ['qr', 'aa', 'rd', 'ra'], nx.raw);
  assert.deepEqual(nx.authority, [SOA], nx.raw);
  // Then a forwarded name: dnsmasq logs questions in order, so once it has logged this one, it
  // would have logged the consul ones before it had they been forwarded.
  assert.equal((await dig(server.port, ['www.example.test', 'AAAA'])).status, 'NOERROR');
  await eventually(() => assert.deepEqual(queriesSeen(dnsmasq), ['query[AAAA] www.example.test'], `dnsmasq's log:\n${dnsmasq.log()}`));
});

test("the client's spelling of the name comes back; dnsmasq is asked in lower case", async (t) => {
  const { dnsmasq, server } = await setup(t);
  const r = await dig(server.port, ['WwW.Example.TEST', 'AAAA']);
  assert.equal(r.status, 'NOERROR', r.raw);
  assert.deepEqual(r.question, ['WwW.Example.TEST. IN AAAA'], r.raw);
  // dnsmasq compresses the owner name to a pointer at the question, which now holds the client's spelling.
  assert.deepEqual(r.answer, [`WwW.Example.TEST. ${TTL} IN AAAA 2001:db8::10`], r.raw);
  await eventually(() => assert.deepEqual(queriesSeen(dnsmasq), ['query[AAAA] www.example.test'], `dnsmasq's log:\n${dnsmasq.log()}`));
});

test('a name dnsmasq refuses (outside its local data) is SERVFAIL', async (t) => {
  const { dnsmasq, server } = await setup(t);
  const r = await dig(server.port, ['example.com', 'A']);
  assert.equal(r.status, 'SERVFAIL', r.raw);
  assert.deepEqual(r.flags, ['qr', 'rd', 'ra'], r.raw);
  assert.deepEqual(r.answer, [], r.raw);
  await eventually(() => assert.deepEqual(queriesSeen(dnsmasq), ['query[A] example.com'], `dnsmasq's log:\n${dnsmasq.log()}`));
});

test('after dnsmasq is gone the cache still answers, TTLs counted down; what was not cached is SERVFAIL', async (t) => {
  const { dnsmasq, server, resolver, clock } = await setup(t);
  const first = await dig(server.port, ['www.example.test', 'A']);
  assert.deepEqual(sorted(first.answer), [`www.example.test. ${TTL} IN A 192.0.2.10`, `www.example.test. ${TTL} IN A 192.0.2.11`], first.raw);
  const chain = await dig(server.port, ['alias.example.test', 'A']);
  assert.equal(chain.answer.length, 3, chain.raw);
  // dnsmasq's NXDOMAIN has no SOA, so it says nothing about how long it may be cached: it is not.
  assert.equal((await dig(server.port, ['nope.example.test', 'A'])).status, 'NXDOMAIN');

  await dnsmasq.stop();
  clock.now += 5_000;

  const again = await dig(server.port, ['www.example.test', 'A']);
  assert.equal(again.status, 'NOERROR', again.raw);
  assert.deepEqual(again.flags, ['qr', 'rd', 'ra'], again.raw);
  assert.deepEqual(sorted(again.answer), [`www.example.test. ${TTL - 5} IN A 192.0.2.10`, `www.example.test. ${TTL - 5} IN A 192.0.2.11`], again.raw);
  // The cached reply is the bytes dnsmasq sent, so its order is kept: the chain is still in order.
  assert.deepEqual(
    (await dig(server.port, ['alias.example.test', 'A'])).answer,
    [
      `alias.example.test. ${TTL - 5} IN CNAME hop.example.test.`,
      `hop.example.test. ${TTL - 5} IN CNAME host.example.test.`,
      `host.example.test. ${TTL - 5} IN A 192.0.2.30`,
    ],
  );
  const byAddress = (a: { address: string }, b: { address: string }) => a.address.localeCompare(b.address);
  assert.deepEqual((await resolver.resolve4('www.example.test', { ttl: true })).sort(byAddress), [
    { address: '192.0.2.10', ttl: TTL - 5 },
    { address: '192.0.2.11', ttl: TTL - 5 },
  ]);
  assert.equal((await dig(server.port, ['nope.example.test', 'A'])).status, 'SERVFAIL', 'the NXDOMAIN was not cached');
  assert.equal((await dig(server.port, ['www.example.test', 'AAAA'])).status, 'SERVFAIL', 'never asked, nobody to ask');
});
