/**
 * A --workers worker's prepared queries (src/catalog/relay/queries.ts), with the IPC to the primary
 * scripted and an injected clock: outcomes keyed per client address when the primary says the
 * query's results are per client, shared otherwise; nothing asked once stopped.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { QueryOutcome, QueryResult } from '../../src/catalog/queries.js';
import { RelayQueries } from '../../src/catalog/relay/queries.js';

interface Asked {
  id: number;
  name: string;
  source: string;
}

function setup(): { relay: RelayQueries; asked: Asked[] } {
  const asked: Asked[] = [];
  const clock = { now: 1_000_000 };
  const relay = new RelayQueries((id, _dc, name, source) => asked.push({ id, name, source }), () => clock.now);
  return { relay, asked };
}

function outcome(address: string): QueryOutcome {
  const result: QueryResult = {
    service: 'web',
    datacenter: 'dc1',
    ttl: 30,
    sorted: true,
    nodes: [{ datacenter: 'dc1', name: 'n1', address, meta: {} }],
    instances: [{ datacenter: 'dc1', node: 'n1', id: 'web1', name: 'web', address: '', port: 80, tags: [], weights: { passing: 1, warning: 1 }, health: 'passing' }],
  };
  return { kind: 'result', result };
}

const address = (o: QueryOutcome | null): string | null => (o?.kind === 'result' ? o.result.nodes[0]!.address : null);

test('a per-client query (the primary says so): each client asks and keeps its own outcome', async () => {
  const { relay, asked } = setup();
  const a = relay.execute('dc1', 'near', '10.9.0.1');
  const b = relay.execute('dc1', 'near', '10.9.0.2');
  assert.deepEqual(asked.map((q) => q.source), ['10.9.0.1', '10.9.0.2'], 'not known to be shared: one question per client');
  relay.settle(asked[0]!.id, outcome('10.0.0.1'), true);
  relay.settle(asked[1]!.id, outcome('10.0.0.2'), true);
  await Promise.all([a, b]);
  assert.equal(address(relay.peek('dc1', 'near', '10.9.0.1')), '10.0.0.1');
  assert.equal(address(relay.peek('dc1', 'near', '10.9.0.2')), '10.0.0.2');
  assert.equal(relay.peek('dc1', 'near', '10.9.0.3'), null, 'a third client asks for its own');
});

test('a shared query (the primary says so): one outcome for every client, one question at a time', async () => {
  const { relay, asked } = setup();
  const a = relay.execute('dc1', 'plain', '10.9.0.1');
  relay.settle(asked[0]!.id, outcome('10.0.0.1'), false);
  await a;
  assert.equal(address(relay.peek('dc1', 'plain', '10.9.0.2')), '10.0.0.1', 'shared');
  const b = relay.execute('dc1', 'plain', '10.9.0.2');
  const c = relay.execute('dc1', 'plain', '10.9.0.3');
  assert.equal(asked.length, 2, 'known to be shared: questions meanwhile join one');
  relay.settle(asked[1]!.id, outcome('10.0.0.1'), false);
  await Promise.all([b, c]);
});

test('after stop nothing is asked: a question fails at once and leaves nothing waiting', async () => {
  const { relay, asked } = setup();
  const waiting = relay.execute('dc1', 'q', '10.9.0.1');
  relay.stop();
  await waiting;
  assert.equal(relay.peek('dc1', 'q', '10.9.0.1'), null);
  await assert.rejects(relay.execute('dc1', 'q', '10.9.0.1'), /stopped/);
  assert.equal(asked.length, 1, 'no message to the primary after stop');
});
