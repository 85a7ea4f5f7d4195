/**
 * A lost update the review of issue 16 found (this failed before the fix) in the ZooKeeper source's watches, shown deterministically with
 * a scripted stand-in for node-zookeeper-client (the requests are answered one at a time, in the
 * order ZooKeeper answers one session's requests, with watch semantics as ZooKeeper's: a watch is
 * set by a successful read only; a delete fires the node's watches, then its parent's child watch).
 *
 * The sequence: Curator's service folder /services/foo is a CONTAINER node; ZooKeeper deletes it
 * once empty. Its deletion fires foo's child watch (svcdns re-lists foo: request A) and the root's
 * child watch (svcdns re-lists /services: request B). A new instance registers between A and B
 * (Curator creates /services/foo again, and /services/foo/i2): A found no foo (no watch set), B lists
 * foo, which svcdns already has, so foo is never listed again: i2, and every later change under
 * foo, stay out of DNS until a reconnection or SIGHUP.
 */

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import zookeeper from 'node-zookeeper-client';
import pino from 'pino';
import { ZooKeeperSource } from '../../src/catalog/zookeeper/source.js';
import { Diagnostics } from '../../src/diagnostics/channels.js';
import type { CatalogData } from '../../src/catalog/types.js';

const { Event, Exception, State } = zookeeper;
type Watcher = (e: { getPath(): string; getType(): number }) => void;
type Cb = (err: unknown, value?: unknown) => void;
/** ZooKeeper's NoNode as node-zookeeper-client reports it (Exception.create is untyped in its d.ts). */
const noNode = (): unknown => (Exception as unknown as { create(code: number): unknown }).create(Exception.NO_NODE);

/** A one-session ZooKeeper: a tree, the watches set, and the requests not answered yet. */
class ScriptedZooKeeper extends EventEmitter {
  readonly tree = new Map<string, Buffer>([['/', Buffer.alloc(0)]]);
  private readonly childWatches = new Map<string, Watcher>();
  private readonly dataWatches = new Map<string, Watcher>();
  readonly queue: { op: string; path: string; run: () => void }[] = [];

  connect(): void {
    queueMicrotask(() => this.emit('state', State.SYNC_CONNECTED));
  }
  close(): void {}
  getSessionId(): Buffer {
    return Buffer.from('0000000000000001', 'hex');
  }
  private children(path: string): string[] {
    const prefix = path === '/' ? '/' : `${path}/`;
    return [...this.tree.keys()].filter((p) => p !== path && p.startsWith(prefix) && !p.slice(prefix.length).includes('/')).map((p) => p.slice(prefix.length));
  }
  getChildren(path: string, watcher: Watcher, cb: Cb): void {
    this.queue.push({
      op: 'getChildren',
      path,
      run: () => {
        if (!this.tree.has(path)) return cb(noNode());
        this.childWatches.set(path, watcher);
        cb(null, this.children(path));
      },
    });
  }
  getData(path: string, watcher: Watcher, cb: Cb): void {
    this.queue.push({
      op: 'getData',
      path,
      run: () => {
        if (!this.tree.has(path)) return cb(noNode());
        this.dataWatches.set(path, watcher);
        cb(null, this.tree.get(path));
      },
    });
  }
  exists(path: string, watcher: Watcher, cb: Cb): void {
    this.queue.push({
      op: 'exists',
      path,
      run: () => {
        this.dataWatches.set(path, watcher);
        cb(null, this.tree.has(path) ? {} : null);
      },
    });
  }
  private fire(watches: Map<string, Watcher>, path: string, type: number): void {
    const w = watches.get(path);
    if (!w) return;
    watches.delete(path);
    w({ getPath: () => path, getType: () => type });
  }
  private parent(path: string): string {
    return path.slice(0, path.lastIndexOf('/')) || '/';
  }
  /** Another session's write, with the events ZooKeeper's DataTree fires for it. */
  create(path: string, data: Buffer = Buffer.alloc(0)): void {
    this.tree.set(path, data);
    this.fire(this.dataWatches, path, Event.NODE_CREATED);
    this.fire(this.childWatches, this.parent(path), Event.NODE_CHILDREN_CHANGED);
  }
  delete(path: string): void {
    this.tree.delete(path);
    this.fire(this.dataWatches, path, Event.NODE_DELETED);
    this.fire(this.childWatches, path, Event.NODE_DELETED);
    this.fire(this.childWatches, this.parent(path), Event.NODE_CHILDREN_CHANGED);
  }
  /** Answers the oldest request. */
  answerOne(): { op: string; path: string } {
    const r = this.queue.shift();
    assert.ok(r, 'a request to answer');
    r.run();
    return { op: r.op, path: r.path };
  }
  answerAll(): void {
    while (this.queue.length > 0) this.answerOne();
  }
}

const instance = (id: string): Buffer<ArrayBuffer> => Buffer.from(JSON.stringify({ name: 'foo', id, address: `10.0.0.${id.slice(1)}`, port: 8080, sslPort: null, payload: null }));

test("a Curator service folder deleted (a container reaped) and created again between svcdns's two re-reads: its new instances reach DNS", async () => {
  const zk = new ScriptedZooKeeper();

  zk.create('/services');
  zk.create('/services/foo');
  zk.create('/services/foo/i1', instance('i1'));
  let last: CatalogData | null = null;
  const source = new ZooKeeperSource({ servers: ['127.0.0.1:2181'], root: '', servicesPath: '/services', dubboPath: null, datacenter: 'zk', sessionTimeoutMs: 30_000, log: pino({ level: 'silent' }), diagnostics: new Diagnostics(), connectGraceMs: 60_000, createClient: () => zk as unknown as zookeeper.Client });
  await source.start({ replace: (d: CatalogData) => void (last = d) });
  await new Promise<void>((resolve) => queueMicrotask(resolve));
  zk.answerAll();
  const addresses = (): string[] => (last?.services ?? []).filter((s) => s.name === 'foo').map((s) => last!.nodes.find((n) => n.name === s.node)!.address);
  assert.deepEqual(addresses(), ['10.0.0.1'], 'first sync');

  // The last instance goes; ZooKeeper's container reaper then deletes the empty folder.
  zk.delete('/services/foo/i1');
  zk.answerAll();
  assert.deepEqual(addresses(), [], 'i1 gone');
  zk.delete('/services/foo');
  assert.deepEqual(zk.queue.map((r) => `${r.op} ${r.path}`), ['getChildren /services/foo', 'getChildren /services'], 'A, then B');
  assert.deepEqual(zk.answerOne(), { op: 'getChildren', path: '/services/foo' }, 'A: no node, no watch');
  // Curator registers a new instance (creatingParentContainersIfNeeded) before B is answered.
  zk.create('/services/foo');
  zk.create('/services/foo/i2', instance('i2'));
  zk.answerAll();
  // And another one later: a watch on foo would see this one at least.
  zk.create('/services/foo/i3', instance('i3'));
  zk.answerAll();
  await source.stop();
  assert.deepEqual(addresses(), ['10.0.0.2', '10.0.0.3'], 'foo\'s instances in DNS (got none: foo is never listed again)');
});
