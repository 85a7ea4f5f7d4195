/**
 * The Consul source's on-demand waits (src/catalog/consul/waits.ts) and its publisher
 * (publisher.ts), each alone: fake datacenter state, a fake or real publisher, no Consul.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { DcState } from '../../src/catalog/consul/datacenters.js';
import { Publisher } from '../../src/catalog/consul/publisher.js';
import { Waits, type Loader, type PublishState } from '../../src/catalog/consul/waits.js';
import type { CatalogData } from '../../src/catalog/types.js';

/** Datacenter states made on first use; records which services were asked to load. */
function fakeLoader(): Loader & { states: Map<string, DcState>; loaded: string[] } {
  const states = new Map<string, DcState>();
  const loaded: string[] = [];
  return {
    states,
    loaded,
    use(dc) {
      let state = states.get(dc);
      if (!state) {
        state = { name: dc, local: false, nodes: null, serviceNames: null, health: new Map(), lastUsed: new Map(), mesh: new Map(), meshLastUsed: new Map(), lastUsedDc: 0 };
        states.set(dc, state);
      }
      return state;
    },
    useService(state, key) {
      loaded.push(`${state.name}/${key}`);
    },
    useMesh(state, lookup, key) {
      loaded.push(`${lookup}:${state.name}/${key}`);
    },
  };
}

/** A publisher that counts scheduled publishes; the test publishes by hand. */
function fakePublisher(): PublishState & { isReady: boolean; scheduled: boolean; schedules: number } {
  return {
    isReady: true,
    scheduled: false,
    schedules: 0,
    schedule() {
      this.schedules++;
      this.scheduled = true;
    },
  };
}

/** Marks each promise settled as it settles. */
function track(promises: Promise<void>[]): { settled: () => number } {
  let n = 0;
  for (const p of promises) void p.then(() => n++);
  return { settled: () => n };
}

const HEALTH = { instances: [], nodes: [] };

test('questions for one thing share one Wait, which ends at the first publish that has it', async () => {
  const loader = fakeLoader();
  const publisher = fakePublisher();
  const waits = new Waits(loader, publisher);
  const questions = track(Array.from({ length: 50 }, () => waits.want('DC2', null)));
  assert.equal(publisher.schedules, 1, 'one wait for 50 questions about the node list of dc2');

  publisher.scheduled = false;
  waits.published();
  await nextTurn();
  assert.equal(questions.settled(), 0, 'the node list has not arrived');

  loader.states.get('dc2')!.nodes = [];
  waits.published();
  await nextTurn();
  assert.equal(questions.settled(), 50);
});

test('a service the list lacks loads nothing and ends with the list; one it has is loaded, then waited for', async () => {
  const loader = fakeLoader();
  const publisher = fakePublisher();
  const waits = new Waits(loader, publisher);
  const madeUp = track([waits.want('dc1', 'made-up')]);
  const web = track([waits.want('dc1', 'Web'), waits.want('dc1', 'web')]);
  const state = loader.states.get('dc1')!;
  state.serviceNames = new Map([['web', 'Web']]);
  publisher.scheduled = false;
  waits.published();
  await nextTurn();
  assert.equal(madeUp.settled(), 1, 'not in the list: answered (NXDOMAIN) from this snapshot');
  assert.deepEqual(loader.loaded, ['dc1/web', 'dc1/web'], 'only the listed service is loaded, once per question');
  assert.equal(web.settled(), 0, 'its instances are not loaded yet');

  state.health.set('web', HEALTH);
  publisher.scheduled = false;
  waits.published();
  await nextTurn();
  assert.equal(web.settled(), 2);
});

test('a change not published yet waits for that publish; a published one answers at once', async () => {
  const loader = fakeLoader();
  const publisher = fakePublisher();
  const waits = new Waits(loader, publisher);
  loader.use('dc1').nodes = [];
  publisher.scheduled = true;
  const pending = track([waits.want('dc1', null)]);
  await nextTurn();
  assert.equal(pending.settled(), 0);
  publisher.scheduled = false;
  waits.published();
  await nextTurn();
  assert.equal(pending.settled(), 1);
  await waits.want('dc1', null);

  publisher.isReady = false;
  const beforeReady = track([waits.want('dc1', null)]);
  await nextTurn();
  assert.equal(beforeReady.settled(), 0, 'nothing is answered from before the first sync');
});

test('a dropped datacenter ends its waits only; stop ends all', async () => {
  const loader = fakeLoader();
  const waits = new Waits(loader, fakePublisher());
  loader.use('dc2').serviceNames = new Map([['web', 'web']]);
  const dc2 = track([waits.want('dc2', 'web'), waits.want('dc2', null)]);
  const dc22 = track([waits.want('dc22', null)]);
  await nextTurn();
  assert.equal(dc2.settled(), 0);
  waits.endDatacenter('dc2');
  await nextTurn();
  assert.equal(dc2.settled(), 2);
  assert.equal(dc22.settled(), 0, 'dc22 shares a prefix with dc2 but is not dropped');
  waits.endAll();
  await nextTurn();
  assert.equal(dc22.settled(), 1);
});

/** A publisher over `data`, with its sink's snapshots and its log lines. */
function publisherFor(synced: () => boolean) {
  const lines: { msg: string; level: number }[] = [];
  const log = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as { msg: string; level: number });
        done();
      },
    }),
  );
  const data: Required<Omit<CatalogData, 'queries'>> = { nodes: [], services: [], mesh: [], partial: { datacenters: ['dc1'], serviceListsKnown: [], nodeListsKnown: [], pending: [] } };
  let published = 0;
  const publisher = new Publisher({ log, synced, data: () => data, onPublished: () => published++ });
  const snapshots: CatalogData[] = [];
  return { publisher, snapshots, lines, published: () => published };
}

test('Publisher: nothing before the first sync; then one snapshot per turn however many changes', async () => {
  let synced = false;
  const p = publisherFor(() => synced);
  p.publisher.sink = { replace: (d) => p.snapshots.push(d) };
  p.publisher.schedule();
  await nextTurn();
  assert.equal(p.snapshots.length, 0);
  assert.equal(p.publisher.isReady, false);

  synced = true;
  p.publisher.schedule();
  p.publisher.schedule();
  assert.equal(p.publisher.scheduled, true);
  p.publisher.schedule();
  await nextTurn();
  assert.equal(p.snapshots.length, 1, 'three changes in one turn, one snapshot');
  assert.equal(p.publisher.scheduled, false);
  assert.equal(p.publisher.isReady, true);
  await p.publisher.ready;
  assert.equal(p.published(), 1);
  assert.equal(p.lines.filter((l) => l.msg === 'consul catalog synced; ready').length, 1);

  synced = false;
  p.publisher.schedule();
  await nextTurn();
  assert.equal(p.snapshots.length, 2, 'once ready, every scheduled publish goes out');
});

test('Publisher: a refused snapshot is logged and changes nothing; no sink, no publish', async () => {
  const p = publisherFor(() => true);
  p.publisher.schedule();
  await nextTurn();
  assert.equal(p.publisher.isReady, false, 'no sink (not started, or stopped)');

  p.publisher.sink = {
    replace: () => {
      throw new Error('inconsistent');
    },
  };
  p.publisher.schedule();
  await nextTurn();
  assert.equal(p.publisher.isReady, false);
  assert.equal(p.published(), 0);
  assert.equal(p.lines.filter((l) => l.msg === 'consul catalog not published').length, 1);
});
