/**
 * Forwarding: names outside the Consul domain go to upstream resolvers (a test upstream on
 * loopback, test/support/upstream.ts), and come back with the client's ID, question and flags,
 * cached for their TTL, failed over when an upstream is silent or refuses, and refused to clients
 * outside --allow-recursion.
 */

import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { once } from 'node:events';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import * as dnsPacket from 'dns-packet';
import { buildQuery, decode, tcpExchange, frame, udpExchange, zoneLines } from '../support/client.js';
import { untyped } from '../support/cares.js';
import { dig } from '../support/dig.js';
import { eventually } from '../support/eventually.js';
import { startServer, TEST_NOW_MS, type StartOptions, type TestServer } from '../support/server.js';
import { FORGED_ADDRESS, startUpstream, type TestUpstream } from '../support/upstream.js';

const RECORDS: dnsPacket.Answer[] = [
  { name: 'www.example.test', type: 'A', ttl: 100, data: '192.0.2.10' },
  { name: 'www.example.test', type: 'A', ttl: 100, data: '192.0.2.11' },
  { name: 'www.example.test', type: 'AAAA', ttl: 100, data: '2001:db8::10' },
  { name: 'www.example.test', type: 'TXT', ttl: 100, data: ['v=spf1 -all'] },
  { name: 'example.test', type: 'MX', ttl: 100, data: { preference: 10, exchange: 'mail.example.test' } },
  { name: 'alias.example.test', type: 'CNAME', ttl: 50, data: 'hop.example.test' },
  { name: 'hop.example.test', type: 'CNAME', ttl: 70, data: 'www.example.test' },
  { name: 'long.example.test', type: 'A', ttl: 86400, data: '192.0.2.20' },
  { name: 'web.service.consul.example.test', type: 'A', ttl: 100, data: '192.0.2.30' },
  // 120 A records: about 2 KB, more than a UDP reply of 1232 bytes holds.
  ...Array.from({ length: 120 }, (_, i): dnsPacket.Answer => ({ name: 'big.example.test', type: 'A', ttl: 100, data: `198.51.100.${i + 1}` })),
];

interface Setup {
  server: TestServer;
  upstreams: TestUpstream[];
  clock: { now: number };
  logs: Record<string, unknown>[];
}

/** A server forwarding to `count` test upstreams (in order), with a clock the test moves. */
async function setup(t: TestContext, options: { count?: number; flags?: StartOptions['flags']; probeMs?: number } = {}): Promise<Setup> {
  const upstreams: TestUpstream[] = [];
  for (let i = 0; i < (options.count ?? 1); i++) upstreams.push(await startUpstream({ records: RECORDS }));
  t.after(() => Promise.all(upstreams.map((u) => u.close())));
  const clock = { now: TEST_NOW_MS };
  const logs: Record<string, unknown>[] = [];
  const server = await startServer({
    flags: { upstream: upstreams.map((u) => u.address), ...options.flags },
    now: () => clock.now,
    logs,
    ...(options.probeMs !== undefined && { upstreamProbeIntervalMs: options.probeMs }),
  });
  t.after(() => server.close());
  return { server, upstreams, clock, logs };
}

test('A, AAAA, TXT and MX are forwarded and come back with RA, without AA, exactly as the upstream sent them', async (t) => {
  const { server, upstreams } = await setup(t);
  const a = await dig(server.port, ['www.example.test', 'A']);
  assert.equal(a.status, 'NOERROR');
  assert.deepEqual(a.flags, ['qr', 'rd', 'ra']);
  assert.deepEqual(a.answer, ['www.example.test. 100 IN A 192.0.2.10', 'www.example.test. 100 IN A 192.0.2.11']);
  assert.deepEqual((await dig(server.port, ['www.example.test', 'AAAA'])).answer, ['www.example.test. 100 IN AAAA 2001:db8::10']);
  assert.deepEqual((await dig(server.port, ['www.example.test', 'TXT'])).answer, ['www.example.test. 100 IN TXT "v=spf1 -all"']);
  assert.deepEqual((await dig(server.port, ['example.test', 'MX'])).answer, ['example.test. 100 IN MX 10 mail.example.test.']);
  assert.deepEqual(
    upstreams[0]!.received.map((r) => `${r.name} ${r.type} ${r.transport}`),
    ['www.example.test A udp', 'www.example.test AAAA udp', 'www.example.test TXT udp', 'example.test MX udp'],
  );
});

test('a CNAME chain comes back whole and in order, cached for its smallest TTL', async (t) => {
  const { server, upstreams, clock } = await setup(t);
  const first = await dig(server.port, ['alias.example.test', 'A']);
  assert.deepEqual(first.answer, [
    'alias.example.test. 50 IN CNAME hop.example.test.',
    'hop.example.test. 70 IN CNAME www.example.test.',
    'www.example.test. 100 IN A 192.0.2.10',
    'www.example.test. 100 IN A 192.0.2.11',
  ]);
  clock.now += 49_000;
  assert.deepEqual((await dig(server.port, ['alias.example.test', 'A'])).answer, [
    'alias.example.test. 1 IN CNAME hop.example.test.',
    'hop.example.test. 21 IN CNAME www.example.test.',
    'www.example.test. 51 IN A 192.0.2.10',
    'www.example.test. 51 IN A 192.0.2.11',
  ]);
  assert.equal(upstreams[0]!.received.length, 1, 'the second answer came from the cache');
  clock.now += 1_000;
  await dig(server.port, ['alias.example.test', 'A']);
  assert.equal(upstreams[0]!.received.length, 2, 'after the smallest TTL the chain is asked for again');
});

test('the upstream gets a fresh random ID, RD, and the question lower-cased; the client gets its own ID and spelling back', async (t) => {
  const { server, upstreams } = await setup(t);
  const reply = await udpExchange(server.port, buildQuery('WwW.Example.TEST', 'A', { id: 777 }));
  assert.ok(reply, 'a reply');
  const decoded = decode(reply);
  assert.equal(decoded.id, 777);
  assert.equal(decoded.questions?.[0]?.name, 'WwW.Example.TEST');
  // Records are as the upstream wrote them (this one does not compress names, so they keep its spelling).
  assert.deepEqual(zoneLines(decoded.answers), ['www.example.test. 100 IN A 192.0.2.10', 'www.example.test. 100 IN A 192.0.2.11']);
  assert.equal(decoded.additionals?.length ?? 0, 0, 'no OPT for a client that sent none');
  const asked = upstreams[0]!.received[0]!;
  assert.equal(asked.name, 'www.example.test');
  assert.notEqual(asked.id, 777, 'the upstream query has its own ID');
  assert.ok(asked.flags & 0x0100, 'RD is set upstream');
  assert.equal(asked.edns, true, 'svcdns speaks EDNS upstream');
  // IDs differ from query to query (16 random bits: a repeat in 5 is a 1-in-6,500 chance).
  for (const name of ['a1', 'a2', 'a3', 'a4']) await dig(server.port, [`${name}.example.test`, 'A']);
  const ids = new Set(upstreams[0]!.received.map((r) => r.id));
  assert.equal(ids.size, 5, `distinct upstream IDs: ${[...ids].join(', ')}`);
});

test('NXDOMAIN and NODATA carry the SOA, and are cached for the SOA minimum (RFC 2308)', async (t) => {
  const { server, upstreams, clock } = await setup(t);
  const nx = await dig(server.port, ['nope.example.test', 'A']);
  assert.equal(nx.status, 'NXDOMAIN');
  assert.deepEqual(nx.answer, []);
  // The SOA's TTL (300) is lowered to the negative TTL: min(TTL, MINIMUM) = 30.
  assert.deepEqual(nx.authority, ['test. 30 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 30']);
  const nodata = await dig(server.port, ['example.test', 'A']);
  assert.equal(nodata.status, 'NOERROR');
  assert.deepEqual(nodata.answer, []);
  assert.deepEqual(nodata.authority, ['test. 30 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 30']);
  assert.equal(upstreams[0]!.received.length, 2);

  clock.now += 20_000;
  const again = await dig(server.port, ['nope.example.test', 'A']);
  assert.equal(again.status, 'NXDOMAIN');
  assert.deepEqual(again.authority, ['test. 10 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 30']);
  assert.equal((await dig(server.port, ['example.test', 'A'])).status, 'NOERROR');
  assert.equal(upstreams[0]!.received.length, 2, 'both negative answers came from the cache');

  clock.now += 10_000;
  await dig(server.port, ['nope.example.test', 'A']);
  assert.equal(upstreams[0]!.received.length, 3, 'expired after 30 s');
});

test('a negative answer without an SOA is not cached', async (t) => {
  const { server, upstreams } = await setup(t);
  upstreams[0]!.soa = null;
  assert.equal((await dig(server.port, ['nope.example.test', 'A'])).status, 'NXDOMAIN');
  assert.equal((await dig(server.port, ['nope.example.test', 'A'])).status, 'NXDOMAIN');
  assert.equal(upstreams[0]!.received.length, 2);
});

test('TTLs count down in cached answers and never exceed --cache-max-ttl', async (t) => {
  const { server, upstreams, clock } = await setup(t, { flags: { 'cache-max-ttl': '60' } });
  assert.deepEqual((await dig(server.port, ['long.example.test', 'A'])).answer, ['long.example.test. 60 IN A 192.0.2.20']);
  clock.now += 59_500;
  assert.deepEqual((await dig(server.port, ['long.example.test', 'A'])).answer, ['long.example.test. 1 IN A 192.0.2.20']);
  assert.equal(upstreams[0]!.received.length, 1);
  clock.now += 500;
  assert.deepEqual((await dig(server.port, ['long.example.test', 'A'])).answer, ['long.example.test. 60 IN A 192.0.2.20']);
  assert.equal(upstreams[0]!.received.length, 2, 'asked again once --cache-max-ttl passed');
});

test('--cache-size 0 turns the cache off; a full cache evicts the least recently used', async (t) => {
  await t.test('size 0', async (t) => {
    const { server, upstreams } = await setup(t, { flags: { 'cache-size': '0' } });
    await dig(server.port, ['www.example.test', 'A']);
    await dig(server.port, ['www.example.test', 'A']);
    assert.equal(upstreams[0]!.received.length, 2);
  });
  await t.test('size 2', async (t) => {
    const { server, upstreams } = await setup(t, { flags: { 'cache-size': '2' } });
    for (const name of ['www', 'long', 'www', 'hop']) await dig(server.port, [`${name}.example.test`, 'A']);
    // www was used last before hop came in, so long was evicted.
    assert.deepEqual(upstreams[0]!.received.map((r) => r.name), ['www.example.test', 'long.example.test', 'hop.example.test']);
    await dig(server.port, ['www.example.test', 'A']);
    await dig(server.port, ['long.example.test', 'A']);
    assert.deepEqual(upstreams[0]!.received.map((r) => r.name).slice(3), ['long.example.test']);
  });
});

test('identical questions asked at the same time share one upstream query', async (t) => {
  const { server, upstreams } = await setup(t);
  upstreams[0]!.delayMs = 150;
  const replies = await Promise.all(
    [1, 2, 3, 4, 5].map((id) => udpExchange(server.port, buildQuery(id % 2 ? 'shared.example.test' : 'SHARED.example.test', 'A', { id }), 2000)),
  );
  assert.deepEqual(
    replies.map((r) => (r ? decode(r).id : null)),
    [1, 2, 3, 4, 5],
  );
  for (const r of replies) assert.equal(decode(r!).flags! & 0xf, 3, 'NXDOMAIN');
  assert.equal(upstreams[0]!.received.length, 1);
});

test('--upstream-max-inflight: questions beyond it are refused at once (TCP: SERVFAIL; UDP: dropped, isolation.test.ts); joining one in flight is free', async (t) => {
  const { server, upstreams, logs } = await setup(t, { flags: { 'upstream-max-inflight': '1' } });
  upstreams[0]!.delayMs = 1500;
  let answered = false;
  const first = udpExchange(server.port, buildQuery('www.example.test', 'A', { id: 1 }), 5000).finally(() => (answered = true));
  const joined = udpExchange(server.port, buildQuery('www.example.test', 'A', { id: 2 }), 5000);
  // The first question is in flight once the upstream has it (the second, sent before the third, joins it).
  await eventually(() => assert.equal(upstreams[0]!.received.length, 1, 'the first question reached the upstream'));
  const over = await dig(server.port, ['+tcp', 'long.example.test', 'A']);
  assert.equal(over.status, 'SERVFAIL');
  assert.equal(answered, false, 'refused at once: the question in flight is still waiting on the upstream');
  assert.equal(upstreams[0]!.received.length, 1, 'never asked upstream');
  assert.deepEqual(
    (await Promise.all([first, joined])).map((r) => zoneLines(decode(r!).answers)),
    [
      ['www.example.test. 100 IN A 192.0.2.10', 'www.example.test. 100 IN A 192.0.2.11'],
      ['www.example.test. 100 IN A 192.0.2.10', 'www.example.test. 100 IN A 192.0.2.11'],
    ],
  );
  assert.ok(logs.some((l) => l.level === 40 && String(l.msg).startsWith('too many questions waiting on upstreams')), 'logged');
  assert.equal((await dig(server.port, ['long.example.test', 'A'])).status, 'NOERROR', 'room again once the first is answered');
});

test('an answer truncated over UDP is fetched again over TCP, and fitted to each client', async (t) => {
  // The whole set (3.9 KB) fits a UDP reply only with --max-udp-size 4096 (the default is 1232).
  const { server, upstreams } = await setup(t, { flags: { 'max-udp-size': '4096' } });
  const whole = await dig(server.port, ['big.example.test', 'A', '+bufsize=4096', '+ignore']);
  assert.equal(whole.flags.includes('tc'), false);
  assert.equal(whole.answer.length, 120);
  assert.deepEqual(whole.answer.slice(0, 2), ['big.example.test. 100 IN A 198.51.100.1', 'big.example.test. 100 IN A 198.51.100.2']);
  assert.deepEqual(
    upstreams[0]!.received.map((r) => r.transport),
    ['udp', 'tcp'],
  );
  // A client without EDNS gets every record that fits in 512 bytes, and TC.
  const small = await dig(server.port, ['big.example.test', 'A', '+noedns', '+ignore']);
  assert.ok(small.flags.includes('tc'), `TC set: ${small.flags.join(' ')}`);
  // 12 header + 22 question, then 32 bytes per A record (the test upstream does not compress
  // names; svcdns keeps the upstream's bytes): 14 fit.
  assert.equal(small.answer.length, 14);
  assert.deepEqual(small.answer, whole.answer.slice(0, 14));
  // And glibc-style, it retries over TCP and gets them all (from the cache).
  const tcp = await dig(server.port, ['big.example.test', 'A', '+noedns']);
  assert.equal(tcp.transport, 'TCP');
  assert.equal(tcp.answer.length, 120);
  assert.equal(upstreams[0]!.received.length, 2);
});

test('a UDP answer cut mid-record with TC is fetched again over TCP', async (t) => {
  // The whole set (3.9 KB) fits a UDP reply only with --max-udp-size 4096 (the default is 1232).
  const { server, upstreams } = await setup(t, { flags: { 'max-udp-size': '4096' } });
  upstreams[0]!.behaviour = 'cut-mid-record';
  const r = await dig(server.port, ['big.example.test', 'A', '+bufsize=4096', '+ignore']);
  assert.equal(r.answer.length, 120);
  assert.deepEqual(upstreams[0]!.received.map((q) => q.transport), ['udp', 'tcp']);
});

test('a slow upstream is not given up when the next is asked: the first answer from either wins', async (t) => {
  const { server, upstreams } = await setup(t, { count: 2, flags: { 'upstream-timeout': '300ms' } });
  const [slow, silent] = upstreams as [TestUpstream, TestUpstream];
  slow.delayMs = 450;
  silent.behaviour = 'silent';
  const r = await dig(server.port, ['www.example.test', 'AAAA']);
  assert.deepEqual(r.answer, ['www.example.test. 100 IN AAAA 2001:db8::10'], 'the slow one answered after its 300 ms');
  assert.equal(silent.received.length, 1, 'the next one was asked at 300 ms');
});

test('a referral (the upstream does not recurse) is a failure: the next upstream is asked', async (t) => {
  const { server, upstreams } = await setup(t, { count: 2 });
  upstreams[0]!.behaviour = 'referral';
  assert.deepEqual((await dig(server.port, ['www.example.test', 'AAAA'])).answer, ['www.example.test. 100 IN AAAA 2001:db8::10']);
  assert.equal(upstreams[1]!.received.length, 1);
});

test('upstream queries ask for AD (RFC 6840), whatever the client asked', async (t) => {
  const { server, upstreams } = await setup(t);
  await dig(server.port, ['www.example.test', 'A', '+noadflag']);
  assert.ok(upstreams[0]!.received[0]!.flags & 0x0020, 'AD set upstream');
});

test('a name with a dot inside a label does not share the cache entry of the dotted name', async (t) => {
  const { server, upstreams } = await setup(t);
  // One label "www.example" and one "test": two labels, not three, and the same length on the wire.
  const name = Buffer.from([11, ...Buffer.from('www.example'), 4, ...Buffer.from('test'), 0]);
  const header = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  const tail = Buffer.from([0, 1, 0, 1]);
  // The upstream says that name does not exist (its question bytes echoed, as servers do).
  upstreams[0]!.override = (q) => {
    if (q[12] !== 11) return undefined;
    const reply = dnsPacket.encode({
      type: 'response',
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | 3,
      questions: [{ name: 'www.example.test', type: 'A', class: 'IN' }],
      authorities: [{ name: 'test', type: 'SOA', ttl: 300, data: { mname: 'ns.test', rname: 'h.test', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 300 } }],
    });
    q.copy(reply, 12, 12, 12 + name.length + 4);
    return reply;
  };
  const odd = await udpExchange(server.port, Buffer.concat([header, name, tail]));
  assert.ok(odd, 'a reply');
  assert.equal(decode(odd).flags! & 0xf, 3, 'NXDOMAIN for the two-label name');
  const real = await dig(server.port, ['www.example.test', 'A']);
  assert.deepEqual(real.answer, ['www.example.test. 100 IN A 192.0.2.10', 'www.example.test. 100 IN A 192.0.2.11'], 'not the cached NXDOMAIN');
  assert.equal(upstreams[0]!.received.length, 2);
});

test('an upstream that cannot even be connected to (a link-local address without its zone) is SERVFAIL, and svcdns lives on', async (t) => {
  const server = await startServer({ flags: { upstream: ['[fe80::1]:53'] } });
  t.after(() => server.close());
  assert.equal((await dig(server.port, ['www.example.test', 'A'])).status, 'SERVFAIL');
  assert.equal((await dig(server.port, ['web.service.consul', 'A'])).status, 'NOERROR');
});

test('TCP: pipelined questions are forwarded at the same time, and a client waiting on them is not idle', async (t) => {
  const { server, upstreams } = await setup(t, { flags: { 'tcp-idle-timeout': '1' } });
  upstreams[0]!.delayMs = 1200;
  const started = performance.now();
  const names = ['p1', 'p2', 'p3', 'p4'];
  const { replies } = await tcpExchange(server.port, frame(...names.map((n, i) => buildQuery(`${n}.example.test`, 'A', { id: i + 1 }))), 4, 6000);
  const took = performance.now() - started;
  assert.deepEqual(replies.map((b) => decode(b).id), [1, 2, 3, 4], 'all four, in order');
  assert.ok(took < 3000, `about one upstream delay, not four: ${took.toFixed(0)} ms`);
});

test('more than 100 clients waiting on one question: the rest are dropped (they retry into the cache)', async (t) => {
  const { server, upstreams } = await setup(t);
  upstreams[0]!.delayMs = 400;
  const replies = await Promise.all(Array.from({ length: 130 }, (_, i) => udpExchange(server.port, buildQuery('www.example.test', 'A', { id: i }), 1500)));
  assert.equal(replies.filter((r) => r !== null).length, 100);
  assert.equal(upstreams[0]!.received.length, 1);
});

test('a question that arrives over TCP goes upstream over TCP', async (t) => {
  const { server, upstreams } = await setup(t);
  const r = await dig(server.port, ['www.example.test', 'AAAA', '+tcp']);
  assert.deepEqual(r.answer, ['www.example.test. 100 IN AAAA 2001:db8::10']);
  assert.deepEqual(upstreams[0]!.received.map((q) => q.transport), ['tcp']);
  // Pipelined over one connection, each gets its own reply.
  const { replies } = await tcpExchange(server.port, frame(buildQuery('www.example.test', 'A', { id: 1 }), buildQuery('long.example.test', 'A', { id: 2 })), 2);
  assert.deepEqual(
    replies.map((b) => [decode(b).id, zoneLines(decode(b).answers)]),
    [
      [1, ['www.example.test. 100 IN A 192.0.2.10', 'www.example.test. 100 IN A 192.0.2.11']],
      [2, ['long.example.test. 3600 IN A 192.0.2.20']],
    ],
  );
});

test('a silent upstream: the next one answers within the timeout; after 3 failures it is tried last, and probed back', async (t) => {
  const { server, upstreams, logs } = await setup(t, { count: 2, flags: { 'upstream-timeout': '300ms' }, probeMs: 100 });
  const [silent, good] = upstreams as [TestUpstream, TestUpstream];
  silent.behaviour = 'silent';
  const started = performance.now();
  const r = await dig(server.port, ['www.example.test', 'A']);
  const took = performance.now() - started;
  assert.deepEqual(r.answer, ['www.example.test. 100 IN A 192.0.2.10', 'www.example.test. 100 IN A 192.0.2.11']);
  assert.ok(took >= 290 && took < 1500, `answered after one timeout, took ${took.toFixed(0)} ms`);
  for (const name of ['a', 'b']) assert.equal((await dig(server.port, [`${name}.example.test`, 'A'])).status, 'NXDOMAIN');
  assert.equal(silent.received.filter((q) => q.name !== '.').length, 3, 'three questions (and, once unhealthy, its probes)');
  assert.ok(logs.some((l) => l.msg === 'upstream marked unhealthy: tried last until it answers a probe' && l.upstream === silent.address), 'unhealthy is logged');
  // Now tried last: the good one answers first.
  assert.equal((await dig(server.port, ['c.example.test', 'A'])).status, 'NXDOMAIN');
  assert.deepEqual(
    silent.received.filter((q) => q.name !== '.').map((q) => q.name),
    ['www.example.test', 'a.example.test', 'b.example.test'],
  );
  // It answers probes again: healthy, and first again.
  silent.behaviour = 'answer';
  await eventually(() => assert.ok(logs.some((l) => l.msg === 'upstream is answering again' && l.upstream === silent.address), 'recovery is logged'), 3000);
  const probes = silent.received.filter((q) => q.name === '.').length;
  assert.ok(probes >= 1, 'probed with . NS');
  await dig(server.port, ['d.example.test', 'A']);
  assert.equal(silent.received.at(-1)?.name, 'd.example.test');
  assert.equal(good.received.some((q) => q.name === 'd.example.test'), false);
});

test('SERVFAIL and REFUSED fail over for that question only: the upstream stays first (split DNS)', async (t) => {
  for (const behaviour of ['servfail', 'refused'] as const) {
    await t.test(behaviour, async (t) => {
      const { server, upstreams, logs } = await setup(t, { count: 2 });
      upstreams[0]!.behaviour = behaviour;
      assert.deepEqual((await dig(server.port, ['www.example.test', 'AAAA'])).answer, ['www.example.test. 100 IN AAAA 2001:db8::10']);
      assert.equal(upstreams[0]!.received.length, 1);
      assert.equal(upstreams[1]!.received.length, 1);
      for (const name of ['a', 'b', 'c', 'd']) await dig(server.port, [`${name}.example.test`, 'A']);
      assert.equal(upstreams[0]!.received.length, 5, 'still asked first after 5 refusals');
      assert.equal(logs.some((l) => String(l.msg).startsWith('upstream marked unhealthy')), false, 'not marked unhealthy');
    });
  }
});

test('every upstream failing is SERVFAIL, within the time budget; nothing failed is cached', async (t) => {
  const { server, upstreams } = await setup(t, { count: 2, flags: { 'upstream-timeout': '200ms' } });
  for (const u of upstreams) u.behaviour = 'silent';
  const started = performance.now();
  const r = await dig(server.port, ['www.example.test', 'A']);
  const took = performance.now() - started;
  assert.equal(r.status, 'SERVFAIL');
  assert.deepEqual(r.flags, ['qr', 'rd', 'ra']);
  assert.ok(took >= 390 && took < 1500, `SERVFAIL after two timeouts of 200 ms, took ${took.toFixed(0)} ms`);
  upstreams[1]!.behaviour = 'answer';
  assert.equal((await dig(server.port, ['www.example.test', 'A'])).status, 'NOERROR', 'the failure was not cached');
});

test('an upstream port nobody listens on fails at once (ICMP), not at the timeout', async (t) => {
  const closed = await startUpstream({ records: [] });
  const address = closed.address;
  await closed.close();
  const server = await startServer({ flags: { upstream: [address], 'upstream-timeout': '5s' } });
  t.after(() => server.close());
  const started = performance.now();
  const r = await dig(server.port, ['www.example.test', 'A']);
  assert.equal(r.status, 'SERVFAIL');
  assert.ok(performance.now() - started < 2500, 'well before the 5 s timeout');
});

test('forged replies are ignored: a wrong ID, or the right ID from another port', async (t) => {
  for (const behaviour of ['wrong-id-first', 'other-port-first'] as const) {
    await t.test(behaviour, async (t) => {
      const { server, upstreams } = await setup(t);
      upstreams[0]!.behaviour = behaviour;
      const r = await dig(server.port, ['www.example.test', 'A']);
      assert.deepEqual(r.answer, ['www.example.test. 100 IN A 192.0.2.10', 'www.example.test. 100 IN A 192.0.2.11']);
      assert.equal(r.answer.some((line) => line.includes(FORGED_ADDRESS)), false);
    });
  }
});

test('an upstream that answers FORMERR to EDNS is asked again without it', async (t) => {
  const { server, upstreams } = await setup(t);
  upstreams[0]!.behaviour = 'formerr-edns';
  assert.deepEqual((await dig(server.port, ['www.example.test', 'AAAA'])).answer, ['www.example.test. 100 IN AAAA 2001:db8::10']);
  assert.deepEqual(upstreams[0]!.received.map((q) => q.edns), [true, false]);
});

test('recursion only for --allow-recursion clients; the Consul domain answers everyone', async (t) => {
  const { server, upstreams } = await setup(t, { flags: { 'allow-recursion': ['127.0.0.1/32'] } });
  const outsider = await dig(server.port, ['-b', '127.0.0.2', 'www.example.test', 'A']);
  assert.equal(outsider.status, 'REFUSED');
  assert.deepEqual(outsider.flags, ['qr', 'rd'], 'no RA for a client that may not recurse');
  assert.equal(upstreams[0]!.received.length, 0);
  const consul = await dig(server.port, ['-b', '127.0.0.2', 'web.service.consul', 'A']);
  assert.equal(consul.status, 'NOERROR');
  assert.deepEqual(consul.flags, ['qr', 'aa', 'rd']);
  assert.equal(consul.answer.length, 3);
  const insider = await dig(server.port, ['-b', '127.0.0.1', 'web.service.consul', 'A']);
  assert.deepEqual(insider.flags, ['qr', 'aa', 'rd', 'ra'], 'RA for a client that may');
  assert.equal((await dig(server.port, ['-b', '127.0.0.1', 'www.example.test', 'A'])).status, 'NOERROR');
});

test('DNSSEC wishes travel: DO goes upstream and AD comes back only to clients that asked', async (t) => {
  const { server, upstreams } = await setup(t);
  upstreams[0]!.authenticData = true;
  const secure = await dig(server.port, ['www.example.test', 'A', '+dnssec']);
  assert.deepEqual(secure.flags, ['qr', 'rd', 'ra', 'ad']);
  assert.match(secure.edns ?? '', /flags: do;/);
  assert.equal(upstreams[0]!.received[0]!.dnssecOk, true);
  const plain = await dig(server.port, ['www.example.test', 'A', '+noadflag']);
  assert.deepEqual(plain.flags, ['qr', 'rd', 'ra'], 'no AD for a client that did not ask');
  assert.equal(upstreams[0]!.received[1]!.dnssecOk, false, 'DO and plain answers are cached apart');
  assert.deepEqual((await dig(server.port, ['www.example.test', 'A', '+adflag'])).flags, ['qr', 'rd', 'ra', 'ad'], 'AD for a client that set AD');
});

test('a search-domain expansion of a Consul name is forwarded like any other name', async (t) => {
  const { server, upstreams } = await setup(t);
  const r = await dig(server.port, ['web.service.consul.example.test', 'A']);
  assert.deepEqual(r.answer, ['web.service.consul.example.test. 100 IN A 192.0.2.30']);
  assert.equal(upstreams[0]!.received[0]!.name, 'web.service.consul.example.test');
});

test('c-ares (Node dns.Resolver) resolves forwarded names through svcdns', async (t) => {
  const { server } = await setup(t);
  const resolver = new Resolver({ timeout: 2000, tries: 1 });
  resolver.setServers([`127.0.0.1:${server.port}`]);
  assert.deepEqual((await resolver.resolve4('www.example.test', { ttl: true })).sort((a, b) => a.address.localeCompare(b.address)), [
    { address: '192.0.2.10', ttl: 100 },
    { address: '192.0.2.11', ttl: 100 },
  ]);
  assert.deepEqual(await resolver.resolveCname('alias.example.test'), ['hop.example.test']);
  assert.deepEqual(untyped(await resolver.resolveMx('example.test'), 'MX'), [{ priority: 10, exchange: 'mail.example.test' }]);
  await assert.rejects(resolver.resolve4('nope.example.test'), { code: 'ENOTFOUND' });
  // c-ares retries over TCP on TC: all 120 records.
  assert.equal((await resolver.resolve4('big.example.test')).length, 120);
});

test('--query-log says where forwarded answers came from: the upstream, the forward cache, then the reply cache', async (t) => {
  const { server, upstreams, logs } = await setup(t, { flags: { 'query-log': 'true' } });
  const upstream = upstreams[0]!.address;
  // No cookie (an EDNS option): the reply cache keys plain queries only. The clock stands still, so
  // the forward cache's reply stays right for the reply cache's third ask.
  for (let i = 0; i < 3; i++) await dig(server.port, ['www.example.test', 'AAAA', '+nocookie']);
  await dig(server.port, ['nope.example.test', 'A']);
  await dig(server.port, ['web.service.consul', 'A']);
  const lines = logs.filter((l) => l.msg === 'query').map((l) => [l.name, l.type, l.rcode, l.answers, l.from, l.cache ?? null, l.upstream ?? null]);
  assert.deepEqual(lines, [
    ['www.example.test', 'AAAA', 'NOERROR', 1, 'forward', null, upstream],
    ['www.example.test', 'AAAA', 'NOERROR', 1, 'forward', 'forward', null],
    ['www.example.test', 'AAAA', 'NOERROR', 1, 'forward', 'reply', null],
    ['nope.example.test', 'A', 'NXDOMAIN', 0, 'forward', null, upstream],
    ['web.service.consul', 'A', 'NOERROR', 3, 'catalog', null, null],
  ]);
  assert.equal(upstreams[0]!.received.length, 2, 'asked once per name');
});

test('upstreams from resolv.conf follow the file: REFUSED without RA, then forwarded with RA once it names one', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'svcdns-resolv-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'resolv.conf');
  await writeFile(path, 'search example.test\n');
  const logs: Record<string, unknown>[] = [];
  const s = await startServer({ flags: { 'resolv-conf': path }, logs });
  t.after(() => s.close());
  const before = await dig(s.port, ['www.example.test', 'A']);
  assert.deepEqual([before.status, before.flags], ['REFUSED', ['qr', 'rd']]);
  // 127.0.0.153:53: on loopback, and nothing listens there, so the try fails at once (ICMP).
  await writeFile(`${path}.new`, 'nameserver 127.0.0.153\n');
  await rename(`${path}.new`, path);
  await eventually(() => assert.ok(logs.some((l) => l.msg === 'upstreams changed'), 'the change is logged'));
  const after = await dig(s.port, ['www.example.test', 'A']);
  assert.deepEqual([after.status, after.flags], ['SERVFAIL', ['qr', 'rd', 'ra']], 'forwarded now (and the upstream is down)');
  assert.deepEqual((await dig(s.port, ['web.service.consul', 'A'])).flags, ['qr', 'aa', 'rd', 'ra']);
});

test('without upstreams other names are REFUSED and RA is never set', async (t) => {
  const server = await startServer({ flags: { 'resolv-conf': '/dev/null' } });
  t.after(() => server.close());
  const r = await dig(server.port, ['www.example.test', 'A']);
  assert.equal(r.status, 'REFUSED');
  assert.deepEqual(r.flags, ['qr', 'rd']);
});

test('IPv6 all the way: a client on ::1, an upstream on [::1]', async (t) => {
  const upstream = await startUpstream({ records: RECORDS, host: '::1' });
  t.after(() => upstream.close());
  const server = await startServer({ flags: { listen: ['[::1]:0'], upstream: [upstream.address] } });
  t.after(() => server.close());
  const r = await dig(server.port, ['www.example.test', 'AAAA'], '::1');
  assert.deepEqual(r.answer, ['www.example.test. 100 IN AAAA 2001:db8::10']);
  assert.deepEqual(r.flags, ['qr', 'rd', 'ra'], '::1 is in the default --allow-recursion');
  assert.deepEqual(await dig(server.port, ['www.example.test', 'A', '+tcp'], '::1').then((d) => d.answer), [
    'www.example.test. 100 IN A 192.0.2.10',
    'www.example.test. 100 IN A 192.0.2.11',
  ]);
  assert.deepEqual(upstream.received.map((q) => q.transport), ['udp', 'tcp']);
  // The same upstream written the long way round still matches its replies.
  const longhand = await startServer({ flags: { listen: ['[::1]:0'], upstream: [`[0:0:0:0:0:0:0:1]:${upstream.port}`] } });
  t.after(() => longhand.close());
  assert.deepEqual((await dig(longhand.port, ['www.example.test', 'AAAA'], '::1')).answer, ['www.example.test. 100 IN AAAA 2001:db8::10']);
});

test('TCP: replies behind a slow forwarded answer keep their order; after a long wait the idle timeout still closes', async (t) => {
  const { server, upstreams } = await setup(t, { flags: { 'tcp-idle-timeout': '1', 'upstream-timeout': '1500ms' } });
  upstreams[0]!.behaviour = 'silent';
  // One slow question, then 40 answered at once (class CH: REFUSED), more than the 32 held per connection.
  const queries = [buildQuery('slow.example.test', 'A', { id: 1000 }), ...Array.from({ length: 40 }, (_, i) => buildQuery('version.bind', 'TXT', { id: i, class: 'CH' }))];
  const started = performance.now();
  const { replies, closed } = await tcpExchange(server.port, frame(...queries), 42, 8000);
  const took = performance.now() - started;
  assert.deepEqual(
    replies.map((b) => decode(b).id),
    [1000, ...Array.from({ length: 40 }, (_, i) => i)],
    'in order',
  );
  assert.equal(decode(replies[0]!).flags! & 0xf, 2, 'SERVFAIL for the silent upstream');
  assert.equal(closed, true, 'closed for idleness after the answers');
  assert.ok(took < 5000, `closed about a second after the last reply: ${took.toFixed(0)} ms`);
});

test('TCP: a client that sends its questions and half-closes still gets every reply', async (t) => {
  const { server, upstreams } = await setup(t);
  upstreams[0]!.delayMs = 200;
  const socket = connect(server.port, '127.0.0.1');
  t.after(() => socket.destroy());
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  await once(socket, 'connect');
  socket.end(frame(buildQuery('www.example.test', 'A', { id: 1 }), buildQuery('web.service.consul', 'A', { id: 2 })));
  await once(socket, 'close');
  const all = Buffer.concat(chunks);
  const ids: number[] = [];
  for (let off = 0; off + 2 <= all.length; off += 2 + all.readUInt16BE(off)) ids.push(decode(all.subarray(off + 2, off + 2 + all.readUInt16BE(off))).id!);
  assert.deepEqual(ids, [1, 2]);
});
