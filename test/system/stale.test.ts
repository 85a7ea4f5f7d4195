/**
 * Serve-stale (RFC 8767) and failing fast, against test upstreams on loopback (test/support/upstream.ts)
 * made to fail on cue: an expired forwarded answer, positive or negative, is served with TTL 30 and
 * the Extended DNS Error "Stale Answer" when the upstream refuses, says SERVFAIL, is black-holed or
 * slow; it is refreshed in the background and replaced; --serve-stale bounds it (0: never). With
 * every upstream unhealthy, a question is answered within the client response timer although one
 * try takes 20 s, and one question at a time goes upstream until one is back.
 *
 * Time is the server's injected clock (cache ages, the failure recheck), moved by the test; waits
 * on real events use eventually(), never a fixed sleep.
 */

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type * as dnsPacket from 'dns-packet';
import { dig } from '../support/dig.js';
import { eventually } from '../support/eventually.js';
import { parseMetrics } from '../support/metrics.js';
import { startServer, TEST_NOW_MS, type StartOptions, type TestServer } from '../support/server.js';
import { soaRecord, startUpstream, type Behaviour, type TestUpstream } from '../support/upstream.js';

const OLD = '192.0.2.10';
const NEW = '192.0.2.99';
const records = (address: string): dnsPacket.Answer[] => [{ name: 'www.example.test', type: 'A', ttl: 10, data: address }];

interface Setup {
  server: TestServer;
  upstreams: TestUpstream[];
  clock: { now: number };
  logs: Record<string, unknown>[];
}

async function setup(t: TestContext, options: { count?: number; flags?: StartOptions['flags']; probeMs?: number } = {}): Promise<Setup> {
  const upstreams: TestUpstream[] = [];
  for (let i = 0; i < (options.count ?? 1); i++) upstreams.push(await startUpstream({ records: records(OLD), soa: soaRecord('test', 300, 5) }));
  t.after(() => Promise.all(upstreams.map((u) => u.close())));
  const clock = { now: TEST_NOW_MS };
  const logs: Record<string, unknown>[] = [];
  const server = await startServer({
    flags: { upstream: upstreams.map((u) => u.address), 'query-log': 'true', ...options.flags },
    now: () => clock.now,
    logs,
    ...(options.probeMs !== undefined && { upstreamProbeIntervalMs: options.probeMs }),
  });
  t.after(() => server.close());
  server.server.metrics(); // made on first use: counting from the start
  return { server, upstreams, clock, logs };
}

/** +nocookie: without a cookie the reply cache keys the query, so a stale reply it wrongly kept would show. */
const ask = (s: TestServer, name: string, type = 'A', ...extra: string[]) => dig(s.port, [name, type, '+nocookie', '+time=5', ...extra]);

async function staleAnswers(s: TestServer): Promise<number> {
  return parseMetrics(await s.server.metrics().text()).get('svcdns_forward_stale_answers_total') ?? 0;
}

/** Every upstream fails fast (a malformed reply), three questions in a row: all marked unhealthy. */
async function makeUnhealthy(server: TestServer, upstreams: TestUpstream[], logs: Record<string, unknown>[]): Promise<void> {
  for (const u of upstreams) u.override = malformed;
  for (const name of ['m1', 'm2', 'm3']) assert.equal((await ask(server, `${name}.example.test`)).status, 'SERVFAIL');
  for (const u of upstreams) {
    assert.ok(logs.some((l) => l.msg === 'upstream marked unhealthy: tried last until it answers a probe' && l.upstream === u.address), `${u.address} unhealthy`);
  }
  // Its `. NS` probe (sent at once) gets the malformed reply too: down, so questions fail fast.
  await eventually(() => {
    for (const u of upstreams) assert.ok(logs.some((l) => l.msg === DOWN && l.upstream === u.address), `${u.address} down`);
  });
}

const DOWN = 'upstream does not answer its probe either: down (while every upstream is, questions fail fast)';

/**
 * The query itself sent back, claiming one answer record more than it holds: malformed, whether the
 * query had an OPT record (a client's) or not (the `. NS` health probe).
 */
function malformed(query: Buffer): Buffer {
  const out = Buffer.from(query);
  out.writeUInt16BE(out.readUInt16BE(2) | 0x8080, 2); // QR, RA
  out.writeUInt16BE(out.readUInt16BE(6) + 1, 6);
  return out;
}

for (const behaviour of ['servfail', 'refused', 'silent'] as const satisfies readonly Behaviour[]) {
  test(`an expired answer is served stale (TTL 30, EDE 3) while the upstream is ${behaviour}; refreshed once it is back`, async (t) => {
    const { server, upstreams, clock, logs } = await setup(t);
    const upstream = upstreams[0]!;
    assert.deepEqual((await ask(server, 'www.example.test')).answer, [`www.example.test. 10 IN A ${OLD}`]);
    upstream.behaviour = behaviour;
    upstream.records = records(NEW);
    clock.now += 11_000;

    // Refused and SERVFAIL end the refresh at once; a black hole at the 1.8 s client response timer.
    const stale = await ask(server, 'www.example.test');
    assert.equal(stale.status, 'NOERROR', stale.raw);
    assert.deepEqual(stale.answer, [`www.example.test. 30 IN A ${OLD}`], stale.raw);
    assert.match(stale.raw, /EDE: 3 \(Stale Answer\)/, stale.raw);
    assert.equal(upstream.received.length, 2, 'the refresh was tried');
    assert.ok(
      logs.some((l) => l.msg === 'query' && l.name === 'www.example.test' && l.stale === true),
      'the query log says stale',
    );
    // The black-holed refresh ends at its 2 s timeout; then, as after the others, the failure recheck holds.
    if (behaviour === 'silent') {
      await eventually(() => assert.ok(logs.some((l) => l.msg === 'upstream try failed' && l.reason === 'timeout'), 'the refresh timed out'));
    }
    upstream.behaviour = 'answer';
    const again = await ask(server, 'www.example.test');
    assert.deepEqual(again.answer, [`www.example.test. 30 IN A ${OLD}`], 'stale at once within the failure recheck');
    assert.equal(upstream.received.length, 2, 'not asked again within 30 s of the failed refresh');
    assert.equal(await staleAnswers(server), 2);

    clock.now += 30_000;
    const fresh = await ask(server, 'www.example.test');
    assert.deepEqual(fresh.answer, [`www.example.test. 10 IN A ${NEW}`], fresh.raw);
    assert.doesNotMatch(fresh.raw, /EDE/);
    assert.deepEqual((await ask(server, 'www.example.test')).answer, [`www.example.test. 10 IN A ${NEW}`], 'the refreshed answer replaced it');
    assert.equal(upstream.received.length, 3);
  });
}

test('NXDOMAIN and NODATA are served stale too: the SOA with TTL 30', async (t) => {
  const { server, upstreams, clock } = await setup(t);
  const nx = await ask(server, 'nope.example.test');
  assert.equal(nx.status, 'NXDOMAIN');
  assert.deepEqual(nx.authority, ['test. 5 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 5']);
  const nodata = await ask(server, 'www.example.test', 'AAAA');
  assert.deepEqual([nodata.status, nodata.answer.length], ['NOERROR', 0]);
  upstreams[0]!.behaviour = 'servfail';
  clock.now += 6_000;
  const staleNx = await ask(server, 'nope.example.test');
  assert.equal(staleNx.status, 'NXDOMAIN', staleNx.raw);
  assert.deepEqual(staleNx.authority, ['test. 30 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 5'], staleNx.raw);
  // RFC 8914 4.20: a stale NXDOMAIN says so with its own INFO-CODE; a stale NODATA is a stale answer.
  assert.match(staleNx.raw, /EDE: 19 \(Stale NXDOMAIN Answer\)/, staleNx.raw);
  const staleNodata = await ask(server, 'www.example.test', 'AAAA');
  assert.deepEqual([staleNodata.status, staleNodata.answer, staleNodata.authority], ['NOERROR', [], ['test. 30 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 5']]);
  assert.match(staleNodata.raw, /EDE: 3 \(Stale Answer\)/, staleNodata.raw);
});

test('a slow upstream: stale after the client response timer, then the background refresh replaces it', async (t) => {
  const { server, upstreams, clock } = await setup(t, { flags: { 'upstream-timeout': '8s' } });
  const upstream = upstreams[0]!;
  await ask(server, 'www.example.test');
  upstream.records = records(NEW);
  upstream.delayMs = 3000;
  clock.now += 11_000;
  assert.deepEqual((await ask(server, 'www.example.test')).answer, [`www.example.test. 30 IN A ${OLD}`]);
  await eventually(async () => assert.deepEqual((await ask(server, 'www.example.test')).answer, [`www.example.test. 10 IN A ${NEW}`]));
  assert.equal(upstream.received.length, 2, 'one refresh for every client that asked meanwhile');
});

test('--serve-stale 0 turns it off: SERVFAIL; past --serve-stale the expired answer is gone too', async (t) => {
  await t.test('0', async (t) => {
    const { server, upstreams, clock } = await setup(t, { flags: { 'serve-stale': '0' } });
    await ask(server, 'www.example.test');
    upstreams[0]!.behaviour = 'servfail';
    clock.now += 11_000;
    assert.equal((await ask(server, 'www.example.test')).status, 'SERVFAIL');
  });
  await t.test('1m', async (t) => {
    const { server, upstreams, clock } = await setup(t, { flags: { 'serve-stale': '1m' } });
    await ask(server, 'www.example.test');
    upstreams[0]!.behaviour = 'servfail';
    clock.now += 10_000 + 59_000;
    assert.deepEqual((await ask(server, 'www.example.test')).answer, [`www.example.test. 30 IN A ${OLD}`], 'within the minute');
    clock.now += 1_000;
    assert.equal((await ask(server, 'www.example.test')).status, 'SERVFAIL', 'a minute past expiry');
  });
});

test('--prefetch: a hit in the last tenth of the TTL refreshes it in the background', async (t) => {
  const { server, upstreams, clock } = await setup(t, { flags: { prefetch: 'true' } });
  const upstream = upstreams[0]!;
  upstream.records = [{ name: 'www.example.test', type: 'A', ttl: 100, data: OLD }];
  await ask(server, 'www.example.test');
  upstream.records = [{ name: 'www.example.test', type: 'A', ttl: 100, data: NEW }];
  clock.now += 89_000;
  assert.deepEqual((await ask(server, 'www.example.test')).answer, [`www.example.test. 11 IN A ${OLD}`]);
  assert.equal(upstream.received.length, 1, 'not yet in the last tenth');
  clock.now += 1_000;
  assert.deepEqual((await ask(server, 'www.example.test')).answer, [`www.example.test. 10 IN A ${OLD}`], 'still the cached answer');
  await eventually(() => assert.equal(upstream.received.length, 2, 'prefetched'));
  // The reply cache keeps the old copy for the rest of its second (its TTLs are right for that long).
  clock.now += 1_000;
  await eventually(async () => assert.deepEqual((await ask(server, 'www.example.test')).answer, [`www.example.test. 99 IN A ${NEW}`]));
  assert.equal(upstream.received.length, 2);
});

test('every upstream black-holed and unhealthy: answered within the client response timer, not after 2 x 20 s; one question at a time goes up', async (t) => {
  const { server, upstreams, clock, logs } = await setup(t, { count: 2, flags: { 'upstream-timeout': '20s' }, probeMs: 3_600_000 });
  assert.deepEqual((await ask(server, 'www.example.test')).answer, [`www.example.test. 10 IN A ${OLD}`]);
  await makeUnhealthy(server, upstreams, logs);
  for (const u of upstreams) {
    u.override = null;
    u.behaviour = 'silent';
  }
  // The first new question goes upstream (its round runs on, 40 s); its client gets SERVFAIL in 1.8 s.
  const first = await ask(server, 'first.example.test');
  assert.equal(first.status, 'SERVFAIL', first.raw);
  assert.equal(upstreams[0]!.received.at(-1)?.name, 'first.example.test');
  // Meanwhile another question is answered at once, and nobody is asked.
  const second = await ask(server, 'second.example.test');
  assert.equal(second.status, 'SERVFAIL', second.raw);
  assert.equal(upstreams.some((u) => u.received.some((q) => q.name === 'second.example.test')), false, 'one question at a time');
  // An expired answer is served stale at once.
  clock.now += 11_000;
  assert.deepEqual((await ask(server, 'www.example.test')).answer, [`www.example.test. 30 IN A ${OLD}`]);
});

test('every upstream unhealthy: once one answers again, normal service resumes', async (t) => {
  const { server, upstreams, logs } = await setup(t, { count: 2, flags: { 'upstream-timeout': '20s' }, probeMs: 3_600_000 });
  await makeUnhealthy(server, upstreams, logs);
  upstreams[1]!.override = null;
  assert.deepEqual((await ask(server, 'www.example.test')).answer, [`www.example.test. 10 IN A ${OLD}`], 'the question let through finds it back');
  assert.ok(logs.some((l) => l.msg === 'upstream is answering again' && l.upstream === upstreams[1]!.address), 'recovery logged');
  assert.equal((await ask(server, 'nope.example.test')).status, 'NXDOMAIN');
});

test('one domain timing out marks the upstream unhealthy, but its probe answers: no failing fast, other names are still forwarded', async (t) => {
  const { server, upstreams, logs } = await setup(t, { flags: { 'upstream-timeout': '300ms' } });
  const upstream = upstreams[0]!;
  // The upstream itself is fine; only names under slow.test never get an answer (a dead authority).
  upstream.blackHole = (name) => name.toLowerCase().endsWith('.slow.test');
  const slow = await Promise.all(['a', 'b', 'c'].map((n) => ask(server, `${n}.slow.test`)));
  assert.deepEqual(slow.map((r) => r.status), ['SERVFAIL', 'SERVFAIL', 'SERVFAIL']);
  assert.ok(logs.some((l) => l.msg === 'upstream marked unhealthy: tried last until it answers a probe'), 'three timeouts in a row: unhealthy');
  // Another slow name in flight (under failing fast it would be the one question let through) ...
  const stillSlow = ask(server, 'd.slow.test');
  // ... and a name the upstream answers: forwarded as usual, not SERVFAIL at once.
  assert.deepEqual((await ask(server, 'www.example.test')).answer, [`www.example.test. 10 IN A ${OLD}`]);
  assert.equal((await stillSlow).status, 'SERVFAIL');
});

test('no upstream healthy, their probes not failed yet: a client still waits at most the client response timer', async (t) => {
  const { server, upstreams, logs } = await setup(t, { count: 2, flags: { 'upstream-timeout': '20s' }, probeMs: 3_600_000 });
  // Malformed replies to questions mark both unhealthy at once; the `. NS` probes (root question)
  // get no answer, so for their 1.5 s neither upstream is known to be down.
  for (const u of upstreams) {
    u.behaviour = 'silent';
    u.override = (query) => (query[12] === 0 ? undefined : malformed(query));
  }
  for (const name of ['m1', 'm2', 'm3']) assert.equal((await ask(server, `${name}.example.test`)).status, 'SERVFAIL');
  assert.equal(logs.filter((l) => l.msg === 'upstream marked unhealthy: tried last until it answers a probe').length, 2);
  for (const u of upstreams) u.override = null;
  // Silent now: the round would take 2 x 20 s; the client gets SERVFAIL within dig's 5 s all the same.
  assert.equal((await ask(server, 'first.example.test')).status, 'SERVFAIL');
});
