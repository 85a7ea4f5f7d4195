/**
 * Promise wrappers over node-zookeeper-client's callback API, for tests and the registrar child:
 * reads, creates, removes, and one-shot watches turned into promises ("resolves when this node is
 * deleted / these children change"), so a test waits on ZooKeeper's own event, never on a sleep.
 */

import zookeeper from 'node-zookeeper-client';

const { Exception } = zookeeper;

/** node-zookeeper-client's Exception inherits from Error at run time (util.inherits); its types do not say so. */
function asError(err: Error | zookeeper.Exception): Error {
  return err as Error;
}

/** Whether `err` is ZooKeeper's error `code` (Exception.NO_NODE, NODE_EXISTS ...). */
export function isZkError(err: unknown, code: number): boolean {
  return err instanceof Exception && err.getCode() === code;
}

export function getData(client: zookeeper.Client, path: string): Promise<{ data: Buffer; stat: zookeeper.Stat }> {
  return new Promise((resolve, reject) => client.getData(path, (err, data, stat) => (err ? reject(asError(err)) : resolve({ data: data ?? Buffer.alloc(0), stat }))));
}

export function getChildren(client: zookeeper.Client, path: string): Promise<string[]> {
  return new Promise((resolve, reject) => client.getChildren(path, (err, children) => (err ? reject(asError(err)) : resolve(children))));
}

/** The node's Stat, or null when it does not exist. */
export function exists(client: zookeeper.Client, path: string): Promise<zookeeper.Stat | null> {
  return new Promise((resolve, reject) => client.exists(path, (err, stat) => (err ? reject(asError(err)) : resolve(stat ?? null))));
}

/** Creates one node (no parents); rejects with NODE_EXISTS / NO_NODE as ZooKeeper says. */
export function create(client: zookeeper.Client, path: string, data: Buffer, mode: number): Promise<string> {
  return new Promise((resolve, reject) => client.create(path, data, mode, (err, created) => (err ? reject(asError(err)) : resolve(created))));
}

export function remove(client: zookeeper.Client, path: string): Promise<void> {
  return new Promise((resolve, reject) => client.remove(path, -1, (err) => (err ? reject(asError(err)) : resolve())));
}

export function setData(client: zookeeper.Client, path: string, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => client.setData(path, data, -1, (err) => (err ? reject(asError(err)) : resolve())));
}

/**
 * Resolves once `path` does not exist: at once if it is already gone, else on ZooKeeper's
 * NODE_DELETED watch event (an ephemeral node goes when its session ends or expires).
 */
export function whenDeleted(client: zookeeper.Client, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const arm = (): void =>
      client.exists(
        path,
        (event) => (event.getType() === zookeeper.Event.NODE_DELETED ? resolve() : arm()),
        (err, stat) => {
          if (err) reject(asError(err));
          else if (!stat) resolve();
        },
      );
    arm();
  });
}

/** Resolves once `path` exists: at once, or on the NODE_CREATED watch event. */
export function whenCreated(client: zookeeper.Client, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const arm = (): void =>
      client.exists(
        path,
        (event) => (event.getType() === zookeeper.Event.NODE_CREATED ? resolve() : arm()),
        (err, stat) => {
          if (err) reject(asError(err));
          else if (stat) resolve();
        },
      );
    arm();
  });
}
