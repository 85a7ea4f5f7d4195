/**
 * The Consul source's prepared query cache (src/catalog/consul/queries.ts), on an injected clock
 * and a scripted API: reuse within the freshness window, one background refresh while in use, the
 * kept result through failures for the stale bound and then `failed`, failures not retried at once,
 * unknown queries, the bound on entries, the client address passed on, and `Near` deciding
 * whether results are per client and kept in Consul's order.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import type { ExecuteOptions } from '../../src/catalog/consul/api.js';
import { FRESH_NO_TTL_MS, QueryCache, RETRY_MS } from '../../src/catalog/consul/queries.js';
import type { QueryResult } from '../../src/catalog/queries.js';

interface Call {
  name: string;
  options: ExecuteOptions;
  settle: (outcome: QueryResult | null | Error) => void;
}

/** The scripted API: executions wait for the test to settle them; definitions answer at once from `near` (absent: no such query). */
function setup(maxEntries?: number, near: Record<string, string> = { web: '', a: '', b: '', c: '' }): { cache: QueryCache; calls: Call[]; explained: string[]; clock: { now: number } } {
  const calls: Call[] = [];
  const explained: string[] = [];
  const clock = { now: 1_000_000 };
  const api = {
    executeQuery(name: string, options: ExecuteOptions): Promise<QueryResult | null> {
      return new Promise((resolve, reject) => {
        calls.push({ name, options, settle: (o) => (o instanceof Error ? reject(o) : resolve(o)) });
      });
    },
    explainQuery(name: string): Promise<{ near: string } | null> {
      explained.push(name);
      const value = near[name.toLowerCase()];
      return Promise.resolve(value === undefined ? null : { near: value });
    },
  };
  const cache = new QueryCache({ api, log: pino({ level: 'silent' }), maxStaleMs: 10_000, timeoutMs: 2000, allowStale: true, maxEntries, now: () => clock.now });
  return { cache, calls, explained, clock };
}

function result(ttl: number | null, address = '10.0.0.1'): QueryResult {
  return {
    service: 'web',
    datacenter: 'dc1',
    ttl,
    sorted: false,
    nodes: [{ datacenter: 'dc1', name: 'n1', address, meta: {} }],
    instances: [{ datacenter: 'dc1', node: 'n1', id: 'web1', name: 'web', address: '', port: 80, tags: [], weights: { passing: 1, warning: 1 }, health: 'passing' }],
  };
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Starts an execution and lets its definition be read, so the execution is asked for. */
async function started(cache: QueryCache, name: string, source = 'c', dc = 'dc1'): Promise<{ done: Promise<void> }> {
  const done = cache.execute(dc, name, source);
  await flush();
  return { done };
}

test('an execution is reused while fresh (its TTL), then refreshed once in the background while in use', async () => {
  const { cache, calls, clock } = setup();
  assert.equal(cache.peek('dc1', 'web', '10.9.0.1'), null, 'nothing known before the first execution');
  const { done: done } = await started(cache, 'web', '10.9.0.1');
  // Questions arriving meanwhile join the execution in flight.
  const joined = cache.execute('dc1', 'WEB', '10.9.0.2');
  await flush();
  assert.equal(calls.length, 1);
  assert.equal(calls[0]!.options.source, '10.9.0.1', "the first question's client is the query's source");
  assert.equal(calls[0]!.options.dc, 'dc1');
  const first = result(5);
  calls[0]!.settle(first);
  await Promise.all([done, joined]);
  assert.deepEqual(cache.peek('dc1', 'web', 'x'), { kind: 'result', result: first });
  clock.now += 4_999;
  cache.peek('dc1', 'web', 'x');
  assert.equal(calls.length, 1, 'fresh for the TTL: Consul not asked');
  clock.now += 1;
  assert.deepEqual(cache.peek('dc1', 'web', '10.9.0.3'), { kind: 'result', result: first }, 'the kept result answers while it is refreshed');
  cache.peek('dc1', 'web', 'x');
  assert.equal(calls.length, 2, 'one refresh, however many questions');
  assert.equal(calls[1]!.options.source, '10.9.0.3');
  const second = result(5, '10.0.0.2');
  calls[1]!.settle(second);
  await flush();
  assert.deepEqual(cache.peek('dc1', 'web', 'x'), { kind: 'result', result: second });
});

test('without a TTL an execution is reused for a couple of seconds', async () => {
  const { cache, calls, clock } = setup();
  const { done: done } = await started(cache, 'web');
  calls[0]!.settle(result(null));
  await done;
  clock.now += FRESH_NO_TTL_MS - 1;
  cache.peek('dc1', 'web', 'c');
  assert.equal(calls.length, 1);
  clock.now += 1;
  cache.peek('dc1', 'web', 'c');
  assert.equal(calls.length, 2);
});

test('an unknown query costs one definition read per couple of seconds, no execution', async () => {
  const { cache, calls, explained, clock } = setup();
  await cache.execute('dc1', 'nope', 'c');
  assert.deepEqual(cache.peek('dc1', 'nope', 'c'), { kind: 'not-found' });
  await cache.execute('dc1', 'nope', 'c');
  assert.deepEqual(explained, ['nope']);
  clock.now += FRESH_NO_TTL_MS;
  assert.equal(cache.peek('dc1', 'nope', 'c'), null, 'to be read again');
  await cache.execute('dc1', 'nope', 'c');
  assert.deepEqual(explained, ['nope', 'nope']);
  assert.equal(calls.length, 0);
});

test('Near: _ip results are kept per client address and sorted; other Near values shared and sorted; none: shared, rotated', async () => {
  const { cache, calls } = setup(undefined, { near: '_ip', agent: '_agent', plain: '' });
  const { done: one } = await started(cache, 'near', '10.9.0.1');
  const { done: two } = await started(cache, 'near', '10.9.0.2');
  assert.deepEqual(calls.map((c) => c.options.source), ['10.9.0.1', '10.9.0.2'], 'one execution per client address');
  calls[0]!.settle(result(30, '10.0.0.1'));
  calls[1]!.settle(result(30, '10.0.0.2'));
  await Promise.all([one, two]);
  const seen = (source: string, name = 'near'): unknown => {
    const o = cache.peek('dc1', name, source);
    return o?.kind === 'result' ? [o.result.nodes[0]!.address, o.result.sorted] : o;
  };
  assert.deepEqual(seen('10.9.0.1'), ['10.0.0.1', true]);
  assert.deepEqual(seen('10.9.0.2'), ['10.0.0.2', true]);
  assert.equal(cache.peek('dc1', 'near', '10.9.0.3'), null, 'a new client waits for its own execution');
  for (const name of ['agent', 'plain']) {
    const { done: done } = await started(cache, name, '10.9.0.1');
    calls.at(-1)!.settle(result(30));
    await done;
    await cache.execute('dc1', name, '10.9.0.2');
    assert.deepEqual(seen('10.9.0.2', name), ['10.0.0.1', name === 'agent'], name);
  }
  assert.equal(calls.length, 4, 'agent and plain: one execution each, shared');
});

test('Consul failing: the kept result serves until the stale bound past its fetch, then failed; no retry at once', async () => {
  const { cache, calls, clock } = setup();
  const fetchedAt = clock.now;
  const { done: done } = await started(cache, 'web');
  const kept = result(1);
  calls[0]!.settle(kept);
  await done;
  clock.now += 1_000;
  assert.deepEqual(cache.peek('dc1', 'web', 'c'), { kind: 'result', result: kept });
  calls[1]!.settle(new Error('connection refused'));
  await flush();
  clock.now += RETRY_MS - 1;
  assert.deepEqual(cache.peek('dc1', 'web', 'c'), { kind: 'result', result: kept }, 'still served after a failure');
  assert.equal(calls.length, 2, 'a failure is not retried at once');
  clock.now += 1;
  cache.peek('dc1', 'web', 'c');
  assert.equal(calls.length, 3, 'retried after RETRY_MS');
  calls[2]!.settle(new Error('connection refused'));
  await flush();
  clock.now = fetchedAt + 10_000;
  assert.deepEqual(cache.peek('dc1', 'web', 'c'), { kind: 'result', result: kept }, 'served up to the bound');
  calls.at(-1)!.settle(new Error('connection refused'));
  await flush();
  clock.now = fetchedAt + 10_001;
  assert.deepEqual(cache.peek('dc1', 'web', 'c'), { kind: 'failed' }, 'then failed (SERVFAIL)');
  // Consul back: the next execution answers again.
  clock.now += RETRY_MS;
  const { done: again } = await started(cache, 'web');
  const fresh = result(1, '10.0.0.9');
  calls.at(-1)!.settle(fresh);
  await again;
  assert.deepEqual(cache.peek('dc1', 'web', 'c'), { kind: 'result', result: fresh });
});

test('a first execution that fails is `failed` at once, not pending', async () => {
  const { cache, calls } = setup();
  const { done: done } = await started(cache, 'web');
  calls[0]!.settle(new Error('500 rpc error'));
  await done;
  assert.deepEqual(cache.peek('dc1', 'web', 'c'), { kind: 'failed' });
  await cache.execute('dc1', 'web', 'c');
  assert.equal(calls.length, 1, 'not asked again within RETRY_MS');
});

test('entries are bounded: the oldest goes first', async () => {
  const { cache, calls } = setup(2);
  for (const name of ['a', 'b', 'c']) {
    const { done: done } = await started(cache, name, 'x');
    calls.at(-1)!.settle(result(30));
    await done;
  }
  assert.equal(cache.size, 2);
  assert.equal(cache.peek('dc1', 'a', 'x'), null, 'evicted');
  assert.notEqual(cache.peek('dc1', 'c', 'x'), null);
});

/** A scripted API whose definition reads wait for the test too (or fail), counting reads in flight. */
function held(options: { maxEntries?: number; maxInFlight?: number; newNamesPerSecond?: number; newClientsPerSecond?: number; maxClientsPerQuery?: number } = {}) {
  const calls: Call[] = [];
  const explains: { name: string; settle: (o: { near: string } | null | Error) => void }[] = [];
  const clock = { now: 1_000_000 };
  let inFlight = 0;
  let maxSeen = 0;
  const count = <T>(p: Promise<T>): Promise<T> => {
    maxSeen = Math.max(maxSeen, ++inFlight);
    return p.finally(() => inFlight--);
  };
  const api = {
    executeQuery: (name: string, options: ExecuteOptions): Promise<QueryResult | null> =>
      count(new Promise((resolve, reject) => calls.push({ name, options, settle: (o) => (o instanceof Error ? reject(o) : resolve(o)) }))),
    explainQuery: (name: string): Promise<{ near: string } | null> =>
      count(new Promise((resolve, reject) => explains.push({ name, settle: (o) => (o instanceof Error ? reject(o) : resolve(o)) }))),
  };
  const cache = new QueryCache({ api, log: pino({ level: 'silent' }), maxStaleMs: 10_000, timeoutMs: 2000, allowStale: true, ...options, now: () => clock.now });
  return { cache, calls, explains, clock, maxInFlight: () => maxSeen };
}

test('concurrent first questions from two clients wait for the one definition read', async () => {
  for (const near of ['_ip', '']) {
    const { cache, calls, explains } = held();
    const a = cache.execute('dc1', 'q', '10.9.0.1');
    const b = cache.execute('dc1', 'q', '10.9.0.2');
    await flush();
    assert.equal(explains.length, 1, 'one definition read');
    assert.equal(calls.length, 0, 'nothing executed before the definition is known');
    explains[0]!.settle({ near });
    await flush();
    assert.deepEqual(calls.map((c) => c.options.source), near === '_ip' ? ['10.9.0.1', '10.9.0.2'] : ['10.9.0.1'], `Near ${near || 'none'}`);
    for (const c of calls) c.settle(result(30, c.options.source));
    await Promise.all([a, b]);
    assert.notEqual(cache.peek('dc1', 'q', '10.9.0.1'), null, 'A has a result');
    assert.notEqual(cache.peek('dc1', 'q', '10.9.0.2'), null, 'B has a result');
  }
});

test('a definition not read (Consul failing): results per client until a read succeeds', async () => {
  const { cache, calls, explains, clock } = held();
  const a = cache.execute('dc1', 'q', '10.9.0.1');
  await flush();
  explains[0]!.settle(new Error('connection refused'));
  await flush();
  calls[0]!.settle(result(30, '10.0.0.1'));
  await a;
  const address = (source: string): unknown => {
    const o = cache.peek('dc1', 'q', source);
    return o?.kind === 'result' ? o.result.nodes[0]!.address : o;
  };
  assert.equal(address('10.9.0.1'), '10.0.0.1');
  assert.equal(address('10.9.0.2'), null, "another client does not get this client's result");
  const b = cache.execute('dc1', 'q', '10.9.0.2');
  await flush();
  assert.equal(calls.at(-1)!.options.source, '10.9.0.2', 'executed for the other client');
  calls.at(-1)!.settle(result(30, '10.0.0.2'));
  await b;
  assert.equal(address('10.9.0.2'), '10.0.0.2');
  assert.equal(cache.perClient('dc1', 'q'), true);
  // Read again soon (RETRY_MS), not after DEFINITION_MS; once it says no Near, results are shared.
  clock.now += RETRY_MS;
  cache.peek('dc1', 'q', '10.9.0.1');
  assert.equal(explains.length, 2, 'read again');
  explains[1]!.settle({ near: '' });
  await flush();
  assert.equal(cache.perClient('dc1', 'q'), false);
});

test('a flood of random names: a budget of new names per second, requests in flight capped, real entries kept', async () => {
  const { cache, calls, explains, clock, maxInFlight } = held({ maxEntries: 4, maxInFlight: 3, newNamesPerSecond: 5 });
  // A real query, in use.
  const web = cache.execute('dc1', 'web', 'c');
  await flush();
  explains[0]!.settle({ near: '' });
  await flush();
  calls[0]!.settle(result(30));
  await web;
  clock.now += 1000;
  const flood: Promise<void>[] = [];
  for (let second = 0; second < 4; second++) {
    for (let i = 0; i < 50; i++) flood.push(cache.execute('dc1', `random-${second}-${i}`, 'c'));
    await flush();
    // Unknown to Consul: answered as they come, at most 3 at once.
    while (explains.some((e) => e.name.startsWith('random-') && !('done' in e))) {
      for (const e of explains.filter((x) => x.name.startsWith('random-') && !('done' in x))) {
        e.settle(null);
        Object.assign(e, { done: true });
      }
      await flush();
    }
    assert.notEqual(cache.peek('dc1', 'web', 'c'), null, 'the real query keeps its entry');
    clock.now += 1000;
  }
  await Promise.all(flood);
  assert.equal(explains.length - 1, 4 * 5, 'at most 5 new names asked per second');
  assert.ok(maxInFlight() <= 3, `${maxInFlight()} requests in flight at most`);
  assert.equal(cache.peek('dc1', 'random-0-49', 'c'), null, 'beyond the budget: no outcome (SERVFAIL)');
  assert.deepEqual(cache.peek('dc1', 'random-3-4', 'c'), { kind: 'not-found' }, 'the latest unknown names are kept (apart from real queries)');
  assert.equal(calls.length, 1);
});

test('a flood of client addresses for a Near: _ip query: new clients per second budgeted, entries per query bounded', async () => {
  const { cache, calls, explains, clock } = held({ newClientsPerSecond: 5, maxClientsPerQuery: 8 });
  const first = cache.execute('dc1', 'near', '10.9.0.0');
  await flush();
  explains[0]!.settle({ near: '_ip' });
  await flush();
  calls[0]!.settle(result(30));
  await first;
  clock.now += 1000;
  for (let second = 0; second < 3; second++) {
    const asked = Array.from({ length: 40 }, (_, i) => cache.execute('dc1', 'near', `10.8.${second}.${i}`));
    await flush();
    for (const c of calls.slice(1)) c.settle(result(30));
    await Promise.all(asked);
    clock.now += 1000;
  }
  assert.equal(calls.length, 1 + 3 * 5, 'at most 5 new clients executed per second');
  assert.equal(cache.size, 8, 'at most 8 client entries kept for the query');
  assert.notEqual(cache.peek('dc1', 'near', '10.8.2.4'), null, 'the most recent clients kept');
  assert.equal(cache.peek('dc1', 'near', '10.9.0.0'), null, 'the least recently used went');
});
