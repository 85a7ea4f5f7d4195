/**
 * The ZooKeeper catalog source: Curator service discovery (`/services/NAME/ID`) and Dubbo's
 * interface-level providers (`/dubbo/INTERFACE/providers`, with `configurators` overrides) kept in
 * a mirror by ZooKeeper watches, never by polling, and published as one catalog (mapping.ts).
 *
 * Watches are one-shot: every event re-reads the node it fired for (children or data) and so arms
 * the next watch; a folder that does not exist yet is watched for its creation. Every read counts
 * as pending until its answer is in; the catalog is published when nothing is pending (a change
 * and the reads it starts land together), or at the latest PUBLISH_WITHIN_MS after a change under
 * constant churn.
 *
 * Faults, as for Consul (source.ts's contract): until the first full read nothing is published (DNS
 * says SERVFAIL for the datacenter's names); a lost connection keeps the last catalog serving, said
 * once (`zookeeper failing`) and its recovery once; at every new connection the whole tree is read
 * again (so nothing missed while away stays missed), and at a session's expiry (its watches are
 * gone) a new session is opened. A node that cannot be read as an instance (bad JSON, a bad URL) is
 * left out with one log line naming its path, never fatal.
 */

import type { Logger } from 'pino';
import zookeeper from 'node-zookeeper-client';
import type { Diagnostics } from '../../diagnostics/channels.js';
import type { CatalogSink, CatalogSource } from '../source.js';
import { readInstance, type CuratorInstance } from './curator.js';
import { applyOverrides, readOverride, readProvider, type DubboOverride, type DubboProvider } from './dubbo.js';
import { toCatalog, type Skipped } from './mapping.js';

const { createClient, Event, Exception, State } = zookeeper;
type Client = zookeeper.Client;
type ZkEvent = zookeeper.Event;

export interface ZooKeeperSourceOptions {
  servers: readonly string[];
  /** Chroot ('' for none). */
  root: string;
  servicesPath: string | null;
  dubboPath: string | null;
  datacenter: string;
  sessionTimeoutMs: number;
  log: Logger;
  diagnostics: Diagnostics;
  /** How long without a connection at start before it is said to be failing, ms. */
  connectGraceMs?: number;
  /** Makes the client (tests: a scripted stand-in, to replay a race deterministically); default node-zookeeper-client's. */
  createClient?: typeof createClient;
}

/** Under constant churn, a change is published at the latest this long after it, ms. */
const PUBLISH_WITHIN_MS = 500;
const STATE_KEY = 'zookeeper';
/** Folders under Dubbo's root that are not interfaces (config center, metadata report, service-name mapping). */
const NOT_INTERFACES = new Set(['config', 'metadata', 'mapping']);

/** What a watched path is, by where it sits under the two roots. */
type Role =
  | { kind: 'curator-root' }
  | { kind: 'curator-service'; service: string }
  | { kind: 'curator-instance'; service: string; id: string }
  | { kind: 'dubbo-root' }
  | { kind: 'dubbo-providers'; iface: string }
  | { kind: 'dubbo-configurators'; iface: string };

export class ZooKeeperSource implements CatalogSource {
  readonly kind = 'zookeeper';
  readonly description: string;
  readonly firstSync: Promise<void>;
  private resolveFirstSync!: () => void;
  private readonly log: Logger;
  private sink: CatalogSink | null = null;
  private client: Client | null = null;
  private stopped = false;
  private connected = false;
  private everSynced = false;
  /** Reads sent and not answered yet. */
  private pending = 0;
  /** A change not published yet, and the timer that publishes it at the latest. */
  private dirty = false;
  /** A read was cut by a lost connection: nothing is published until a new connection's full read. */
  private incomplete = false;
  private publishTimer: NodeJS.Timeout | null = null;
  private connectTimer: NodeJS.Timeout | null = null;
  private reopenTimer: NodeJS.Timeout | null = null;

  /** Curator: service folder → instance id → the instance (null: its node could not be read as one). */
  private readonly curator = new Map<string, Map<string, CuratorInstance | null>>();
  /** Dubbo: interface → provider node name → provider (null: not one). */
  private readonly providers = new Map<string, Map<string, DubboProvider | null>>();
  /** Dubbo: interface → configurator node name → override (null: says nothing DNS serves). */
  private readonly overrides = new Map<string, Map<string, DubboOverride | null>>();
  /** Paths with a watch armed (children, data or existence). */
  private readonly watched = new Set<string>();
  /** Paths and names already logged as unreadable or unnamable (each said once while it stays so). */
  private readonly said = new Set<string>();

  constructor(private readonly options: ZooKeeperSourceOptions) {
    this.log = options.log.child({ component: 'zookeeper' });
    this.description = `zookeeper ${options.servers.join(',')}${options.root}`;
    this.firstSync = new Promise((resolve) => (this.resolveFirstSync = resolve));
  }

  /** Whether svcdns holds a connected session now, and the paths watched (children, data, existence). */
  get zookeeper(): { up: boolean; watches: number } {
    return { up: this.connected, watches: this.watched.size };
  }

  start(sink: CatalogSink): Promise<void> {
    this.sink = sink;
    this.open();
    // Like Consul: the registry may be down at start; DNS says SERVFAIL for its names until the first read.
    return Promise.resolve();
  }

  reload(): Promise<unknown> {
    if (this.client !== null && this.connected) this.readAll(this.client);
    return Promise.resolve();
  }

  stop(): Promise<void> {
    this.stopped = true;
    if (this.publishTimer) clearTimeout(this.publishTimer);
    if (this.connectTimer) clearTimeout(this.connectTimer);
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    this.client?.close();
    this.client = null;
    return Promise.resolve();
  }

  /** The session's id as ZooKeeper's logs and four-letter words write it (`0x1000...`); '' without one. */
  private sessionId(): string {
    const id = this.client?.getSessionId();
    return id ? `0x${id.toString('hex').replace(/^0+(?=.)/, '')}` : '';
  }

  /** A new session (at start, and after one expired). */
  private open(): void {
    const client = (this.options.createClient ?? createClient)(this.options.servers.join(',') + this.options.root, {
      sessionTimeout: this.options.sessionTimeoutMs,
      spinDelay: 200,
      retries: 0,
    });
    this.client = client;
    this.armConnectTimer();
    client.on('state', (state) => {
      if (client !== this.client || this.stopped) return;
      if (state === State.SYNC_CONNECTED || state === State.CONNECTED_READ_ONLY) {
        this.connected = true;
        if (this.connectTimer) clearTimeout(this.connectTimer);
        if (this.reopenTimer) clearTimeout(this.reopenTimer);
        this.options.diagnostics.state.publish({ key: STATE_KEY, subject: 'session', problem: null, message: 'zookeeper recovered', log: this.log });
        this.readAll(client);
      } else if (state === State.DISCONNECTED) {
        this.connected = false;
        this.incomplete = true;
        this.failing('connection lost', 'zookeeper failing: connection lost, serving the last catalog read');
        this.armConnectTimer();
      } else if (state === State.EXPIRED) {
        this.connected = false;
        this.failing('session expired', 'zookeeper session expired: opening a new one, serving the last catalog read');
        client.close();
        this.watched.clear();
        this.open();
      } else if (state === State.AUTH_FAILED) {
        this.failing('authentication failed', 'zookeeper authentication failed');
      }
    });
    client.connect();
  }

  /** Not connected within the grace time: said once (a first connection, or a reconnection). */
  private armConnectTimer(): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    const client = this.client;
    this.connectTimer = setTimeout(() => {
      if (!this.connected && !this.stopped) this.failing('unreachable', this.everSynced ? 'zookeeper failing: cannot reconnect, serving the last catalog read' : 'zookeeper failing: cannot connect; its names get SERVFAIL until the first read');
    }, this.options.connectGraceMs ?? 2000);
    this.connectTimer.unref();
    // node-zookeeper-client waits for ever on a connection ZooKeeper accepted but never answered (a
    // server still starting, or stopped mid-handshake): its connect timer ends at the TCP connect. Not
    // connected for a whole session timeout (any session is expired by then anyway): a new client.
    this.reopenTimer = setTimeout(() => {
      if (this.connected || this.stopped || client !== this.client || client === null) return;
      this.log.debug({ zookeeper: this.options.servers.join(',') }, 'zookeeper: still not connected after a session timeout; opening a new client');
      client.close();
      this.watched.clear();
      this.open();
    }, this.options.sessionTimeoutMs);
    this.reopenTimer.unref();
  }

  private failing(problem: string, message: string): void {
    this.options.diagnostics.state.publish({
      key: STATE_KEY,
      subject: 'session',
      problem,
      level: 'warn',
      message,
      fields: { zookeeper: this.options.servers.join(','), synced: this.everSynced },
      log: this.log,
    });
  }

  /** The whole tree read again (a new connection, a reload): every folder re-listed, every instance re-read. */
  private readAll(client: Client): void {
    this.incomplete = false;
    if (this.options.servicesPath !== null) this.readChildren(client, this.options.servicesPath, { kind: 'curator-root' }, true);
    if (this.options.dubboPath !== null) this.readChildren(client, this.options.dubboPath, { kind: 'dubbo-root' }, true);
    if (this.pending === 0) this.settle();
  }

  /** What `path` is, from where it sits; null for paths svcdns does not watch. */
  private roleOf(path: string): Role | null {
    const { servicesPath, dubboPath } = this.options;
    if (servicesPath !== null && (path === servicesPath || path.startsWith(`${servicesPath}/`))) {
      const parts = path.slice(servicesPath.length).split('/').slice(1);
      if (parts.length === 0) return { kind: 'curator-root' };
      if (parts.length === 1) return { kind: 'curator-service', service: parts[0]! };
      if (parts.length === 2) return { kind: 'curator-instance', service: parts[0]!, id: parts[1]! };
    }
    if (dubboPath !== null && (path === dubboPath || path.startsWith(`${dubboPath}/`))) {
      const parts = path.slice(dubboPath.length).split('/').slice(1);
      if (parts.length === 0) return { kind: 'dubbo-root' };
      if (parts.length === 2 && parts[1] === 'providers') return { kind: 'dubbo-providers', iface: parts[0]! };
      if (parts.length === 2 && parts[1] === 'configurators') return { kind: 'dubbo-configurators', iface: parts[0]! };
    }
    return null;
  }

  /** One watcher for every path: the event says which, and what to read again. */
  private readonly watcher = (event: ZkEvent): void => {
    const client = this.client;
    const path = event.getPath();
    this.watched.delete(path);
    if (client === null || this.stopped) return;
    const role = this.roleOf(path);
    if (role === null) return;
    if (role.kind === 'curator-instance') {
      if (event.getType() === Event.NODE_DELETED) {
        this.curator.get(role.service)?.delete(role.id);
        this.forget(path);
        this.changed();
      } else this.readInstance(client, path, role.service, role.id);
      return;
    }
    // A folder: listed again (if it was deleted, the read finds it gone and watches for its return).
    this.readChildren(client, path, role, false);
  };

  /**
   * Lists `path`'s children (arming the children watch) and reconciles them: children gone are
   * dropped, new ones read; with `all`, every child is read again. A folder that does not exist is
   * watched for its creation, and what it held is dropped.
   */
  private readChildren(client: Client, path: string, role: Role, all: boolean): void {
    this.pending++;
    this.watched.add(path);
    client.getChildren(path, this.watcher, (err, children) => {
      this.pending--;
      if (client !== this.client || this.stopped) return;
      if (err) {
        if (isNoNode(err)) {
          if (role.kind === 'curator-service') {
            // Gone (Curator's folders are containers: ZooKeeper deletes them once empty). Dropped, so
            // that the root's next listing reads it as new if it is back by then (not a stale entry).
            if (this.curator.delete(role.service)) this.changed();
          } else {
            this.apply(client, path, role, [], all);
            // Roots and Dubbo's folders may come later: watched for their creation.
            this.watchExistence(client, path);
          }
        } else this.readFailed(path, err);
      } else this.apply(client, path, role, children, all);
      this.settleLater();
    });
  }

  private watchExistence(client: Client, path: string): void {
    this.pending++;
    this.watched.add(path);
    client.exists(path, this.watcher, (err, stat) => {
      this.pending--;
      if (client !== this.client || this.stopped) return;
      // Created between the two reads: list it now (its creation event will not come).
      if (!err && stat) this.readChildren(client, path, this.roleOf(path)!, false);
      else if (err) this.readFailed(path, err);
      this.settleLater();
    });
  }

  private apply(client: Client, path: string, role: Role, children: readonly string[], all: boolean): void {
    switch (role.kind) {
      case 'curator-root':
        this.reconcile(this.curator, children, all, (name) => this.readChildren(client, `${path}/${name}`, { kind: 'curator-service', service: name }, all));
        break;
      case 'dubbo-root':
        this.reconcile(
          this.providers,
          // Dubbo's config center, metadata and service-name mapping live beside the interfaces: not interfaces.
          children.filter((name) => !NOT_INTERFACES.has(name)),
          all,
          (iface) => {
            this.readChildren(client, `${path}/${iface}/providers`, { kind: 'dubbo-providers', iface }, all);
            this.readChildren(client, `${path}/${iface}/configurators`, { kind: 'dubbo-configurators', iface }, all);
          },
          (iface) => this.overrides.delete(iface),
        );
        break;
      case 'curator-service': {
        // Listed no more by its root (a late answer, or a watch outliving its folder): nothing to do.
        const instances = this.curator.get(role.service);
        if (instances === undefined) return;
        this.reconcile(instances, children, all, (id) => this.readInstance(client, `${path}/${id}`, role.service, id), (id) => this.forget(`${path}/${id}`), null);
        break;
      }
      case 'dubbo-providers':
        if (!this.providers.has(role.iface)) return;
        this.providers.set(role.iface, this.named(children, path, this.providers.get(role.iface)!, (name) => readProvider(name, role.iface)));
        break;
      case 'dubbo-configurators':
        if (!this.providers.has(role.iface)) return;
        this.overrides.set(role.iface, new Map(children.map((name) => [name, readOverride(name)])));
        break;
      case 'curator-instance':
        break;
    }
    this.changed();
  }

  /**
   * Reconciles a folder's entries with its children now: gone ones dropped (and `gone` told), new
   * ones (with `all`, every one) read; a new entry starts empty (`empty()`) unless `empty` is null
   * (its read fills it in).
   */
  private reconcile<V>(map: Map<string, V>, children: readonly string[], all: boolean, read: (name: string) => void, gone?: (name: string) => void, empty: (() => V) | null = () => new Map() as V): void {
    const now = new Set(children);
    for (const name of [...map.keys()]) {
      if (!now.has(name)) {
        map.delete(name);
        gone?.(name);
      }
    }
    for (const name of children) {
      if (!all && map.has(name)) continue;
      if (empty !== null && !map.has(name)) map.set(name, empty());
      read(name);
    }
  }

  /** Provider nodes parsed by their names; one that is not a provider is logged once and kept as null. */
  private named(children: readonly string[], path: string, before: ReadonlyMap<string, DubboProvider | null>, parse: (name: string) => DubboProvider | string): Map<string, DubboProvider | null> {
    const out = new Map<string, DubboProvider | null>();
    // A bad node gone is forgotten (provider names carry a timestamp: each restart is a new one).
    const now = new Set(children);
    for (const name of before.keys()) if (!now.has(name)) this.forget(`${path}/${name}`);
    for (const name of children) {
      const p = parse(name);
      if (typeof p === 'string') {
        // Consumers registered under providers are not a problem worth a line.
        if (p !== 'a consumer, not a provider') this.sayOnce(`${path}/${name}`, { path: `${path}/${name}`, reason: p }, 'zookeeper node skipped: not a Dubbo provider');
        out.set(name, null);
      } else out.set(name, p);
    }
    return out;
  }

  private readInstance(client: Client, path: string, service: string, id: string): void {
    this.pending++;
    this.watched.add(path);
    client.getData(path, this.watcher, (err, data) => {
      this.pending--;
      if (client !== this.client || this.stopped) return;
      const instances = this.curator.get(service);
      if (err) {
        if (isNoNode(err)) {
          instances?.delete(id);
          this.watched.delete(path);
          this.forget(path);
        } else this.readFailed(path, err);
      } else if (instances !== undefined) {
        const read = readInstance(data);
        if (typeof read === 'string') {
          this.sayOnce(path, { path, reason: read }, 'zookeeper node skipped: not a Curator service instance');
          instances.set(id, null);
        } else {
          this.forget(path);
          instances.set(id, read);
        }
      }
      this.changed();
      this.settleLater();
    });
  }

  private readFailed(path: string, err: unknown): void {
    // A lost connection says so once through its state, and what was read since is not published
    // (it may be part of a tree): the next connection reads it all again. Anything else (no auth on
    // a node) once per path.
    if (err instanceof Exception && (err.getCode() === Exception.CONNECTION_LOSS || err.getCode() === Exception.SESSION_EXPIRED)) {
      this.incomplete = true;
      return;
    }
    this.sayOnce(`read ${path}`, { path, err: String(err) }, 'zookeeper read failed: the last catalog keeps serving');
  }

  private sayOnce(key: string, fields: Record<string, unknown>, message: string): void {
    if (this.said.has(key)) return;
    this.said.add(key);
    this.log.warn(fields, message);
  }

  private forget(key: string): void {
    this.said.delete(key);
  }

  private changed(): void {
    this.dirty = true;
  }

  /** After each answer: publish when nothing is pending, or soon anyway under churn. */
  private settleLater(): void {
    if (this.pending === 0) {
      this.settle();
      return;
    }
    if (this.dirty && this.everSynced && this.publishTimer === null) {
      this.publishTimer = setTimeout(() => this.settle(), PUBLISH_WITHIN_MS);
      this.publishTimer.unref();
    }
  }

  private settle(): void {
    if (this.publishTimer) {
      clearTimeout(this.publishTimer);
      this.publishTimer = null;
    }
    if (this.sink === null || this.stopped || this.incomplete || (!this.dirty && this.everSynced)) return;
    this.dirty = false;
    const overrides = (iface: string): DubboOverride[] => [...(this.overrides.get(iface)?.values() ?? [])].filter((o): o is DubboOverride => o !== null);
    const dubbo: DubboProvider[] = [];
    for (const [iface, providers] of this.providers) {
      const o = overrides(iface);
      for (const p of providers.values()) if (p !== null) dubbo.push(applyOverrides(p, o));
    }
    const curator = new Map<string, CuratorInstance[]>();
    for (const [service, instances] of this.curator) {
      const valid = [...instances.values()].filter((i): i is CuratorInstance => i !== null);
      if (valid.length > 0) curator.set(service, valid);
    }
    const data = toCatalog({ curator, dubbo }, this.options.datacenter, (s: Skipped) => this.sayOnce(`name ${s.what}`, { what: s.what, reason: s.reason }, 'zookeeper name left out of DNS'));
    try {
      this.sink.replace(data);
    } catch (err) {
      this.log.error({ err }, 'zookeeper catalog rejected: the last one keeps serving');
      return;
    }
    if (!this.everSynced) {
      this.everSynced = true;
      this.log.info({ services: new Set(data.services.map((s) => s.name)).size, instances: data.services.length, session: this.sessionId() }, 'zookeeper synced');
      this.resolveFirstSync();
    }
  }
}

function isNoNode(err: unknown): boolean {
  return err instanceof Exception && err.getCode() === Exception.NO_NODE;
}
