/**
 * The hot path (src/pipeline/reply-cache.ts): replies stored after the full path answered once, served as
 * patched copies. Every test checks that the cache was really used (its hit counter), so none can
 * pass by the full path answering instead; and the replies are compared with what the full path
 * gives (a second server with --answer-cache-size 0), byte for byte where order cannot differ.
 */

import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { writeFile } from 'node:fs/promises';
import { test, type TestContext } from 'node:test';
import type * as dnsPacket from 'dns-packet';
import { QuestionReader } from '../../src/pipeline/question-key.js';
import { bigCatalog, CATALOG } from '../support/catalog.js';
import { buildQuery, decode, frame, tcpExchange, udpExchange } from '../support/client.js';
import { eventually } from '../support/eventually.js';
import { Rng } from '../support/random.js';
import { startServer, TEST_NOW_MS, TEST_SERIAL, type StartOptions, type TestServer } from '../support/server.js';
import { startUpstream } from '../support/upstream.js';

const RD = 0x0100;
const CD = 0x0010;
const AD = 0x0020;
const RA = 0x0080;
const TC = 0x0200;

async function serve(t: TestContext, options: StartOptions = {}): Promise<TestServer> {
  const s = await startServer({ catalog: CATALOG, ...options });
  t.after(() => s.close());
  return s;
}

function hits(s: TestServer): number {
  return s.server.replyCache.stats().hits;
}

/** A query with the flags word set as given. */
function withFlags(packet: Buffer, flags: number): Buffer {
  const copy = Buffer.from(packet);
  copy.writeUInt16BE(flags, 2);
  return copy;
}

function addresses(reply: Buffer): string[] {
  return (decode(reply).answers ?? []).map((a) => String((a as dnsPacket.StringAnswer).data));
}

/** UDP from a chosen loopback address (127.0.0.2 is outside an allow list of 127.0.0.1/32). */
function udpFrom(local: string, port: number, packet: Buffer): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    const timer = setTimeout(() => done(null), 5000);
    const done = (reply: Buffer | null): void => {
      clearTimeout(timer);
      socket.close();
      resolve(reply);
    };
    socket.on('message', (m) => done(m));
    socket.on('error', reject);
    socket.bind(0, local, () => socket.send(packet, port, '127.0.0.1'));
  });
}

test('a cached answer is a copy with the query’s own ID, RD, CD and spelling; AA and the records are kept', async (t) => {
  const s = await serve(t);
  // db has two instances: two rotations to encode before the cache can serve both in turn. CD is
  // part of the key (forwarded answers depend on it), so these ask with CD too.
  const first = (await udpExchange(s.port, withFlags(buildQuery('db.service.consul', 'SRV', { id: 1 }), RD | CD)))!;
  await udpExchange(s.port, withFlags(buildQuery('db.service.consul', 'SRV', { id: 2 }), RD | CD));
  const before = hits(s);
  const query = withFlags(buildQuery('Db.SERVICE.cOnSuL', 'SRV', { id: 0xbeef }), CD);
  const second = (await udpExchange(s.port, query))!;
  assert.equal(hits(s), before + 1, 'answered from the cache');
  assert.equal(second.readUInt16BE(0), 0xbeef);
  const flags = second.readUInt16BE(2);
  assert.equal(flags & RD, 0, 'RD as asked (clear)');
  assert.equal(flags & CD, CD, 'CD as asked');
  assert.equal(flags & 0x0400, 0x0400, 'AA');
  assert.equal(flags & RA, 0, 'no RA: nothing to forward to');
  const d = decode(second);
  assert.equal(d.questions![0]!.name, 'Db.SERVICE.cOnSuL', 'the question as spelled');
  assert.deepEqual(
    d.answers!.map((a) => a.name),
    d.answers!.map(() => 'Db.SERVICE.cOnSuL'),
    'answer owners follow the question',
  );
  // Apart from ID, flags, spelling and the rotation, the same reply as the first.
  const a = decode(first);
  const sorted = (p: dnsPacket.DecodedPacket) => JSON.stringify([...(p.answers ?? [])].map((r) => ({ ...r, name: r.name.toLowerCase() })).sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y))));
  assert.equal(sorted(d), sorted(a));
  assert.equal(second.length, first.length);
});

test('round robin from the cache: the same sequence of rotations as the full path, one step per answer', async (t) => {
  const cached = await serve(t);
  const uncached = await serve(t, { flags: { 'answer-cache-size': '0' } });
  for (const type of ['A', 'SRV']) {
    const seen: string[][] = [];
    for (let i = 0; i < 8; i++) {
      const q = buildQuery('rr.service.consul', type, { id: i });
      const [x, y] = await Promise.all([udpExchange(cached.port, q), udpExchange(uncached.port, q)]);
      assert.deepEqual(x, y, `${type} answer ${i}: the same bytes with and without the cache`);
      const order = decode(x!).answers!.map((r) => JSON.stringify((r as dnsPacket.StringAnswer).data));
      if (i > 0) assert.deepEqual(order, [...seen[i - 1]!.slice(1), seen[i - 1]![0]!], `${type} answer ${i} is the last rotated by one`);
      seen.push(order);
    }
  }
  assert.ok(hits(cached) >= 10, `most answers came from the cache (${hits(cached)} hits)`);
  assert.equal(hits(uncached), 0);
});

test('a changed service is answered anew at once; answers about unchanged services stay cached', async (t) => {
  const s = await serve(t);
  const web = buildQuery('web.service.consul', 'A');
  const nx = buildQuery('nope.service.consul', 'A');
  await udpExchange(s.port, web);
  await udpExchange(s.port, web); // both rotations
  await udpExchange(s.port, nx);
  await udpExchange(s.port, buildQuery('cache.service.consul', 'A'));
  const cache = async () => addresses((await udpExchange(s.port, buildQuery('cache.service.consul', 'A')))!);
  assert.deepEqual(await cache(), ['10.0.1.5']);

  // cache moves to another address; web does not change.
  await writeFile(s.catalogPath, CATALOG.replace('address: 10.0.1.5', 'address: 10.0.1.6'));
  await eventually(async () => assert.deepEqual(await cache(), ['10.0.1.6'], 'the new address is served'));

  const before = s.server.replyCache.stats();
  const answer = (await udpExchange(s.port, web))!;
  assert.deepEqual(addresses(answer).sort(), ['10.0.0.1', '10.0.0.2']);
  const after = s.server.replyCache.stats();
  assert.equal(after.hits, before.hits + 1, 'web, unchanged, is still answered from the cache');
  // NXDOMAIN carries the SOA, whose serial moves with every catalog: answered anew.
  const negative = decode((await udpExchange(s.port, nx))!);
  assert.equal(negative.flags! & 0xf, 3, 'NXDOMAIN');
  assert.equal((negative.authorities![0] as dnsPacket.SoaAnswer).data.serial, TEST_SERIAL + 1, 'the new catalog’s serial');
  assert.equal(s.server.replyCache.stats().hits, after.hits, 'not from the cache');
});

test('forwarded answers: served from the cache within a second, TTLs one lower each second, gone at expiry', async (t) => {
  const upstream = await startUpstream({ records: [{ name: 'www.example.test', type: 'A', ttl: 5, data: '192.0.2.10' }] });
  t.after(() => upstream.close());
  const clock = { now: TEST_NOW_MS };
  const s = await serve(t, { flags: { upstream: [upstream.address] }, now: () => clock.now });
  const q = buildQuery('www.example.test', 'A');
  const ttl = async () => {
    const reply = (await udpExchange(s.port, q))!;
    assert.equal(reply.readUInt16BE(2) & RA, RA);
    return (decode(reply).answers![0] as dnsPacket.StringAnswer).ttl;
  };
  assert.equal(await ttl(), 5, 'from the upstream');
  assert.equal(await ttl(), 5, 'from the forward cache, stored in the reply cache');
  const before = hits(s);
  assert.equal(await ttl(), 5);
  clock.now += 400;
  assert.equal(await ttl(), 5, 'same second');
  assert.equal(hits(s), before + 2, 'both from the reply cache');
  clock.now += 700; // 1.1 s old
  assert.equal(await ttl(), 4, 'a second later: one lower');
  assert.equal(await ttl(), 4);
  assert.equal(hits(s), before + 3, 'the new second is cached again');
  clock.now += 3000; // 4.1 s
  assert.equal(await ttl(), 1);
  clock.now += 1000; // 5.1 s: expired
  assert.equal(upstream.received.length, 1);
  assert.equal(await ttl(), 5, 'asked again');
  assert.equal(upstream.received.length, 2, 'the upstream was asked again at expiry');
});

test('RA is set per client on cached answers; a cached forwarded answer is still REFUSED outside --allow-recursion', async (t) => {
  const upstream = await startUpstream({ records: [{ name: 'www.example.test', type: 'A', ttl: 100, data: '192.0.2.10' }] });
  t.after(() => upstream.close());
  const s = await serve(t, { flags: { upstream: [upstream.address], 'allow-recursion': ['127.0.0.1/32'] } });
  const ours = buildQuery('web.service.consul', 'A');
  const theirs = buildQuery('www.example.test', 'A');
  for (let i = 0; i < 3; i++) {
    await udpExchange(s.port, ours);
    await udpExchange(s.port, theirs);
  }
  const before = hits(s);
  const inside = (await udpFrom('127.0.0.1', s.port, ours))!;
  const outside = (await udpFrom('127.0.0.2', s.port, ours))!;
  assert.equal(inside.readUInt16BE(2) & RA, RA, 'RA for a client allowed recursion');
  assert.equal(outside.readUInt16BE(2) & RA, 0, 'no RA for one that is not');
  assert.equal(hits(s), before + 2, 'both from the cache');
  const refused = decode((await udpFrom('127.0.0.2', s.port, theirs))!);
  assert.equal(refused.flags! & 0xf, 5, 'REFUSED');
  assert.equal(addresses((await udpFrom('127.0.0.1', s.port, theirs))!).join(), '192.0.2.10');
});

test('each reply size is its own entry: a 512-byte client gets the truncated answer with every record that fits, a 4096 one all', async (t) => {
  const s = await serve(t, { catalog: bigCatalog({ big: 60 }) });
  const small = buildQuery('big.service.consul', 'A');
  const large = buildQuery('big.service.consul', 'A', { udpSize: 4096 });
  const smallFirst = (await udpExchange(s.port, small))!;
  // 60 instances: 60 rotations per entry, each encoded by the full path the first time it is due.
  for (let i = 0; i < 60; i++) await udpExchange(s.port, large);
  for (let i = 1; i < 60; i++) await udpExchange(s.port, small);
  const before = hits(s);
  const smallAgain = (await udpExchange(s.port, small))!;
  const largeAgain = (await udpExchange(s.port, large))!;
  assert.equal(hits(s), before + 2);
  assert.equal(smallAgain.readUInt16BE(2) & TC, TC, 'TC for the 512-byte client');
  assert.ok(smallAgain.length <= 512, `fits 512 bytes (${smallAgain.length})`);
  assert.equal(addresses(smallAgain).length, addresses(smallFirst).length);
  assert.equal(addresses(smallAgain).length, Math.floor((512 - 12 - 24) / 16), 'every record that fits');
  assert.equal(largeAgain.readUInt16BE(2) & TC, 0);
  assert.equal(addresses(largeAgain).length, 60);
  // Over TCP: another entry again, the whole set.
  const tcp = await tcpExchange(s.port, frame(...Array.from({ length: 62 }, () => small)), 62);
  assert.deepEqual(new Set(tcp.replies.map((r) => addresses(r).length)), new Set([60]));
  assert.equal(hits(s), before + 4, 'the 61st and 62nd over TCP from the cache');
});

test('--answer-cache-size bounds the entries; names asked all the time survive a stream of names asked once', async (t) => {
  const s = await serve(t, { flags: { 'answer-cache-size': '4' } });
  const web = buildQuery('web.service.consul', 'A');
  await udpExchange(s.port, web);
  await udpExchange(s.port, web); // both rotations
  let webHits = 0;
  for (let i = 0; i < 30; i++) {
    await udpExchange(s.port, buildQuery(`n${i}.service.consul`, 'A'));
    const before = hits(s);
    await udpExchange(s.port, web);
    webHits += hits(s) - before;
    assert.ok(s.server.replyCache.stats().entries <= 4, `at most 4 entries (${s.server.replyCache.stats().entries})`);
  }
  assert.equal(webHits, 30, 'web was answered from the cache every time');
});

test('differential: 1500 random plain and not-so-plain queries get the same replies with and without the cache', async (t) => {
  const cached = await serve(t);
  const uncached = await serve(t, { flags: { 'answer-cache-size': '0' } });
  const rng = new Rng(0x5eed);
  const names = [
    'web.service.consul', 'v1.web.service.consul', 'db.service.consul', 'primary.db.service.consul', 'cache.service.consul',
    'rr.service.consul', 'dual.service.consul', 'v6only.service.consul', 'web.service.dc2.consul', 'node1.node.consul',
    'longmeta.node.consul', 'nope.service.consul', 'service.consul', 'consul', 'ns.consul', '1.0.0.10.in-addr.arpa',
    'web.service.dc9.consul', '_web._tcp.service.consul', 'canary.eu.web.service.consul', 'www.example.test',
  ];
  const types = ['A', 'AAAA', 'SRV', 'TXT', 'ANY', 'PTR', 'SOA', 'NS', 'MX'];
  const respell = (name: string) => [...name].map((c) => (rng.chance(0.3) ? c.toUpperCase() : c)).join('');
  const sortedSection = (records: readonly dnsPacket.Answer[] | undefined) =>
    (records ?? []).map((r) => JSON.stringify({ ...r, name: r.name.toLowerCase() })).sort();
  // Queries are sent in rounds of one question each, so that rotation counters see the same order.
  for (let i = 0; i < 1500; i++) {
    const edns = rng.pick([null, null, null, 1232, 4096, 700]);
    let q = buildQuery(respell(rng.pick(names)), rng.pick(types), {
      id: rng.int(65536),
      ...(edns !== null && { udpSize: edns, dnssecOk: rng.chance(0.1) }),
    });
    q = withFlags(q, (rng.chance(0.8) ? RD : 0) | (rng.chance(0.05) ? CD : 0) | (rng.chance(0.05) ? AD : 0));
    if (edns !== null && rng.chance(0.2)) {
      // An EDNS cookie option: not the hot path's to answer.
      q = Buffer.concat([q.subarray(0, q.length - 2), Buffer.from([0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])]);
    }
    const [x, y] = await Promise.all([udpExchange(cached.port, q), udpExchange(uncached.port, q)]);
    assert.ok(x && y, `query ${i} answered by both`);
    const dx = decode(x);
    const dy = decode(y);
    if ((dx.answers ?? []).length <= 1) {
      assert.deepEqual(x, y, `query ${i} (${dx.questions![0]!.name} ${dx.questions![0]!.type}): the same bytes`);
    } else {
      assert.deepEqual(x.subarray(0, 12), y.subarray(0, 12), `query ${i}: the same header`);
      assert.equal(x.length, y.length, `query ${i}: the same size`);
      assert.deepEqual(sortedSection(dx.answers), sortedSection(dy.answers), `query ${i}: the same answers`);
      assert.deepEqual(sortedSection(dx.additionals), sortedSection(dy.additionals), `query ${i}: the same additional records`);
    }
  }
  const stats = cached.server.replyCache.stats();
  assert.ok(stats.hits > 500, `many came from the cache (${stats.hits} hits, ${stats.entries} entries)`);
});

test('QuestionReader: reads only plain queries; the key folds case and tells sizes, EDNS, DO, AD, CD and TCP apart', () => {
  const reader = new QuestionReader(4096);
  const key = (packet: Buffer, tcp = false) => (reader.read(packet, tcp) ? `${reader.hash}/${reader.variant}/${reader.questionEnd}` : null);
  const plain = buildQuery('web.service.consul', 'A');
  assert.ok(key(plain));
  assert.equal(key(buildQuery('WEB.Service.CONSUL', 'A')), key(plain), 'case folded');
  assert.notEqual(key(buildQuery('web.service.consul', 'AAAA')), key(plain), 'type');
  assert.notEqual(key(buildQuery('web.service.consul', 'A', { class: 'CH' })), key(plain), 'class');
  assert.notEqual(key(plain, true), key(plain), 'TCP');
  const edns = buildQuery('web.service.consul', 'A', { udpSize: 1232 });
  assert.notEqual(key(edns), key(plain), 'EDNS');
  assert.notEqual(key(buildQuery('web.service.consul', 'A', { udpSize: 1232, dnssecOk: true })), key(edns), 'DO');
  assert.notEqual(key(buildQuery('web.service.consul', 'A', { udpSize: 4000 })), key(edns), 'size');
  assert.equal(key(buildQuery('web.service.consul', 'A', { udpSize: 100 })), key(buildQuery('web.service.consul', 'A', { udpSize: 512 })), 'sizes below 512 are 512');
  assert.notEqual(key(withFlags(plain, AD)), key(plain), 'AD');
  assert.notEqual(key(withFlags(plain, CD)), key(plain), 'CD');
  assert.equal(key(withFlags(plain, 0)), key(plain), 'RD is not part of the key');
  // A different name of the same length and bytes but for case in a non-ASCII letter is another key.
  assert.notEqual(key(buildQuery('w\u00c9b.service.consul', 'A')), key(buildQuery('w\u00e9b.service.consul', 'A')));

  const refused: [string, Buffer][] = [
    ['a response', withFlags(plain, 0x8100)],
    ['opcode 2', withFlags(plain, 0x1100)],
    ['two questions', Buffer.concat([plain.subarray(0, 4), Buffer.from([0, 2]), plain.subarray(6)])],
    ['an answer record', Buffer.concat([plain.subarray(0, 6), Buffer.from([0, 1]), plain.subarray(8)])],
    ['trailing bytes', Buffer.concat([plain, Buffer.from([0])])],
    ['cut short', plain.subarray(0, plain.length - 1)],
    ['EDNS version 1', (() => { const b = Buffer.from(edns); b[b.length - 5] = 1; return b; })()],
    ['an EDNS option', Buffer.concat([edns.subarray(0, edns.length - 2), Buffer.from([0, 4, 0, 8, 0, 0])])],
    ['a compression pointer', Buffer.concat([plain.subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])])],
  ];
  for (const [what, packet] of refused) assert.equal(key(packet), null, what);
});

test('--query-log logs every query, cache hits included, and the cache stays on: the same lines as without it, hits marked cache: reply', async (t) => {
  const logs: Record<string, unknown>[] = [];
  const s = await serve(t, { flags: { 'query-log': 'true' }, logs });
  const web = buildQuery('Web.Service.Consul', 'A');
  const missing = buildQuery('nope.service.consul', 'A');
  for (let i = 0; i < 3; i++) {
    await udpExchange(s.port, web);
    await udpExchange(s.port, missing);
  }
  // web has two instances: its two rotations are encoded by the full path, the third question is a hit.
  assert.equal(hits(s), 3, 'answered from the cache: web once, nope twice');
  const lines = logs.filter((l) => l.msg === 'query').map((l) => [l.name, l.type, l.rcode, l.answers, l.transport, l.from, l.cache ?? null]);
  const webLine = ['Web.Service.Consul', 'A', 'NOERROR', 2, 'udp', 'catalog'];
  const nopeLine = ['nope.service.consul', 'A', 'NXDOMAIN', 0, 'udp', 'catalog'];
  assert.deepEqual(lines, [
    [...webLine, null],
    [...nopeLine, null],
    [...webLine, null],
    [...nopeLine, 'reply'],
    [...webLine, 'reply'],
    [...nopeLine, 'reply'],
  ]);
});
