/**
 * The persisted catalog's parts in process: the file format (what is served, what is refused and
 * why) and the writer's pacing (at most one write per interval, the latest catalog in the end, an
 * unchanged catalog not written again, a failing disk logged once), on mocked timers and recorded
 * writes. The whole (the real process against the Consul simulator) is test/system/state.test.ts.
 */

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { pino } from 'pino';
import type { CatalogData } from '../../src/catalog/types.js';
import { catalogJson, decodeState, encodeState } from '../../src/state/format.js';
import { StateWriter } from '../../src/state/writer.js';

const ID = { source: 'consul', datacenter: 'dc1' };

function catalog(port: number): CatalogData {
  return {
    nodes: [{ datacenter: 'dc1', name: 'n1', address: '10.0.0.1', meta: { rack: 'r1' } }],
    services: [{ datacenter: 'dc1', node: 'n1', id: 'web1', name: 'web', address: '', port, tags: ['v1'], weights: { passing: 1, warning: 1 }, health: 'passing' }],
    partial: { datacenters: ['dc1', 'dc2'], serviceListsKnown: ['dc1'], nodeListsKnown: ['dc1'], pending: [{ datacenter: 'dc1', name: 'db' }] },
  };
}

function problemOf(text: string, identity = ID): string {
  const r = decodeState(text, identity);
  assert.ok('problem' in r, 'refused');
  return r.problem;
}

test('format: a written catalog reads back whole, partial catalogs included', () => {
  const text = encodeState(catalogJson(catalog(80)), ID, 1_700_000_000_000);
  assert.deepEqual(decodeState(text, ID), { data: catalog(80), savedAt: 1_700_000_000_000 });
});

test('format: corrupt, truncated and foreign files are refused with the reason', () => {
  const text = encodeState(catalogJson(catalog(80)), ID, 1);
  assert.match(problemOf(text.slice(0, -10)), /^not JSON/);
  assert.match(problemOf(''), /^not JSON/);
  assert.match(problemOf(text.replace('10.0.0.1', '10.0.0.2')), /^checksum mismatch/);
  assert.match(problemOf(text.replace('"version":1', '"version":2')), /^format version 2, this svcdns reads 1/);
  assert.match(problemOf(text, { source: 'zookeeper', datacenter: 'dc1' }), /^written for another source \("consul"\)/);
  assert.match(problemOf(text, { source: 'consul', datacenter: 'dc2' }), /^written for another datacenter \("dc1"\)/);
  assert.match(problemOf('[1,2]'), /^not a svcdns catalog state file/);
  // A header and checksum of ours around records of the wrong shape (another program's, or a bug's).
  const bad = JSON.stringify({ nodes: [], services: [{ name: 'web', port: '80' }] });
  assert.match(problemOf(encodeState(bad, ID, 1)), /^a service record is malformed/);
  assert.match(problemOf(encodeState('{"nodes":[]}', ID, 1)), /^catalog without nodes and services/);
});

/** A writer on a fixed clock whose writes are recorded; `settle` lets its promises run. */
function writer(t: TestContext, options: { fail?: () => boolean } = {}) {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  let now = 10_000;
  const writes: { savedAt: number; port: number }[] = [];
  const lines: Record<string, unknown>[] = [];
  const log = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    }),
  );
  const w = new StateWriter({
    dir: '/nowhere',
    identity: ID,
    log,
    now: () => now,
    writeFile: (_dir, text) => {
      if (options.fail?.()) return Promise.reject(Object.assign(new Error('full'), { code: 'ENOSPC' }));
      const r = decodeState(text, ID);
      assert.ok('data' in r);
      writes.push({ savedAt: r.savedAt, port: r.data.services[0]!.port });
      return Promise.resolve();
    },
  });
  return { w, writes, lines, advance: (ms: number) => (now += ms), settle: () => new Promise<void>((resolve) => setImmediate(resolve)) };
}

test('writer: the first catalog at once, then at most one write a second, the latest one', async (t) => {
  const { w, writes, advance, settle } = writer(t);
  w.offer(catalog(1));
  await settle();
  assert.deepEqual(writes, [{ savedAt: 10_000, port: 1 }]);
  advance(300);
  w.offer(catalog(2));
  w.offer(catalog(3));
  await settle();
  assert.equal(writes.length, 1, 'not within the second');
  advance(700);
  t.mock.timers.tick(700);
  await settle();
  assert.deepEqual(writes, [{ savedAt: 10_000, port: 1 }, { savedAt: 11_000, port: 3 }], 'the latest, once');
  advance(5_000);
  w.offer(catalog(3));
  await settle();
  assert.equal(writes.length, 2, 'unchanged: not written again');
  w.offer(catalog(4));
  await settle();
  assert.deepEqual(writes.at(-1), { savedAt: 16_000, port: 4 });
  advance(10);
  w.offer(catalog(5));
  await w.close();
  assert.deepEqual(writes.at(-1), { savedAt: 16_010, port: 5 }, 'close writes what is pending');
  w.offer(catalog(6));
  await settle();
  assert.equal(writes.length, 4, 'nothing after close');
});

test('writer: a failing disk is logged once, its recovery once', async (t) => {
  let failing = true;
  const { w, writes, lines, advance, settle } = writer(t, { fail: () => failing });
  for (let i = 1; i <= 3; i++) {
    advance(1_000);
    w.offer(catalog(i));
    await settle();
  }
  assert.deepEqual(
    lines.filter((l) => l.level === 40).map((l) => [l.msg, l.error]),
    [['cannot write the catalog state', 'ENOSPC']],
  );
  failing = false;
  advance(1_000);
  w.offer(catalog(4));
  await settle();
  assert.deepEqual(writes, [{ savedAt: 14_000, port: 4 }]);
  assert.equal(lines.filter((l) => l.msg === 'catalog state written again').length, 1);
  await w.close();
});
