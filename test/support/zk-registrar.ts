/**
 * Registers and removes service instances in a real ZooKeeper exactly as the Java frameworks do:
 * Dubbo's interface-level registry (`/dubbo/<interface>/providers/<encoded URL>`) and Apache
 * Curator's service discovery (`/services/<name>/<id>`, JSON), as used by Spring Cloud Zookeeper
 * and Dubbo 3's application-level discovery.
 *
 * Two halves: the formats (pure functions from an instance to the znodes the framework creates:
 * path, bytes, mode), and the registrar, which applies them from a CHILD process holding its own
 * ZooKeeper session (zk-registrar-child.ts), so a test can SIGKILL it and watch the session expire
 * (ephemeral nodes go after the session timeout) or close it (they go at once). `applyNodes` does
 * the same in-process, for tests that only need data in ZooKeeper.
 *
 * Sources followed (commits: apache/dubbo 324c6255, apache/curator 88dee99a,
 * spring-cloud/spring-cloud-zookeeper 6118f7ab):
 * - Dubbo paths: dubbo-registry/dubbo-registry-zookeeper/.../ZookeeperRegistry.java (toUrlPath:
 *   root + URL.encode(interface) + "/" + category + "/" + URL.encode(url.toFullString()); doRegister:
 *   EPHEMERAL unless the URL says dynamic=false; doSubscribe creates the category folders).
 * - Dubbo node data: dubbo-remoting/dubbo-remoting-zookeeper-curator5/.../Curator5ZookeeperClient.java
 *   creates every node with `client.create().forPath(path)`, no data, so Curator writes its default
 *   data: CuratorFrameworkFactory.java `defaultData = LOCAL_ADDRESS` =
 *   InetAddress.getLocalHost().getHostAddress() — the registering machine's IP as text, on the
 *   provider node and on every parent folder Dubbo creates.
 * - Dubbo URL text: dubbo-common/.../URL.java (toFullString: parameters sorted by key (TreeMap),
 *   values raw, not encoded; URL.encode is java.net.URLEncoder.encode(value, "UTF-8")), parameters
 *   from dubbo-config/dubbo-config-api/.../ServiceConfig.java (side, dubbo/release/timestamp/pid
 *   from AbstractInterfaceConfig.appendRuntimeParameters, interface, methods sorted (TreeSet),
 *   generic, deprecated, dynamic, service-name-mapping, anyhost), of which Dubbo 3.3's
 *   dubbo-registry/dubbo-registry-api/.../DefaultServiceURLCustomizer.java removes pid, anyhost,
 *   background, bind.ip, bind.port, qos.* before registering (Dubbo 2.7 keeps anyhost and pid).
 * - Curator: curator-x-discovery/.../details/ServiceDiscoveryImpl.java (internalRegisterService:
 *   path basePath/name/id; DYNAMIC → EPHEMERAL, DYNAMIC_SEQUENTIAL → EPHEMERAL_SEQUENTIAL, else
 *   PERSISTENT; parents by creatingParentContainersIfNeeded, i.e. CONTAINER nodes with empty data),
 *   details/JsonInstanceSerializer.java + details/OldServiceInstance.java (Jackson, fields in
 *   declaration order: name, id, address, port, sslPort, payload, registrationTimeUTC, serviceType,
 *   uriSpec; nulls written; `enabled` only when compatibleSerializationMode is false, and every
 *   default constructor uses true), ServiceInstance.java (payload @JsonTypeInfo(use = CLASS): an
 *   "@class" property first), UriSpec.java (parts split on {…}: {"parts":[{"value","variable"}]}).
 * - Spring Cloud Zookeeper: spring-cloud-zookeeper-discovery/.../ZookeeperInstance.java (payload
 *   fields id, name, metadata), serviceregistry/ZookeeperAutoServiceRegistrationAutoConfiguration
 *   (address = instanceHost, the HOSTNAME unless preferIpAddress; payload id = the application
 *   context's id; metadata.instance_status = "UP"; uriSpec "{scheme}://{address}:{port}";
 *   instance id a random UUID from ServiceInstance.builder()), root "/services".
 * - Dubbo 3 application-level: dubbo-registry/dubbo-registry-zookeeper/.../util/CuratorFrameworkUtils.java
 *   (id = host + ":" + port, name = application, payload org.apache.dubbo.registry.zookeeper.ZookeeperInstance
 *   with the instance's sorted metadata, no uriSpec, no sslPort).
 *
 * Not reproduced: Curator makes its parent folders CONTAINER nodes (which ZooKeeper deletes once
 * empty, checked every znode.container.checkIntervalMs, 60 s by default); node-zookeeper-client has
 * no createContainer request, so here they are PERSISTENT with the same (empty) data.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import zookeeper from 'node-zookeeper-client';
import { create, exists, isZkError, remove } from './zk-client.js';

// ---------------------------------------------------------------------------------------------
// The znodes a framework creates

export type NodeMode = 'persistent' | 'ephemeral';

/** One znode to create. Parents come first in a list; a parent that exists is left as it is. */
export interface ZNode {
  path: string;
  data: Buffer;
  mode: NodeMode;
}

/** java.net.URLEncoder.encode(s, "UTF-8"): keeps [A-Za-z0-9.*_-], space → '+', the rest %XX (upper case). */
export function javaUrlEncode(s: string): string {
  return encodeURIComponent(s)
    .replace(/[!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+');
}

/** The parent folders of `path` (not `path` itself), outermost first: /a/b/c → /a, /a/b. */
function parents(path: string): string[] {
  const parts = path.split('/').filter(Boolean);
  return parts.slice(0, -1).map((_, i) => `/${parts.slice(0, i + 1).join('/')}`);
}

// --- Dubbo interface-level registry -----------------------------------------------------------

export interface DubboProvider {
  /** The address the provider registers (Dubbo's registry IP); also its node data unless `localAddress`. */
  host: string;
  port: number;
  /** The Java interface's fully qualified name, e.g. org.apache.dubbo.demo.DemoService. */
  interface: string;
  application: string;
  /** 'dubbo' (default) or 'tri'. */
  protocol?: string;
  /** Method names; Dubbo writes them sorted and comma-separated. Default ['sayHello', 'sayHelloAsync']. */
  methods?: string[];
  version?: string;
  group?: string;
  /** Only written when set: Dubbo's load balancer defaults to 100 (rpc/cluster/Constants.DEFAULT_WEIGHT). */
  weight?: number;
  /** Written as enabled=false when false (a provider registered disabled). */
  enabled?: boolean;
  /** false: Dubbo registers a PERSISTENT node (dynamic=false). Default true (EPHEMERAL). */
  dynamic?: boolean;
  /** Which Dubbo wrote it: 3.3 (default) or 2.7 (adds anyhost=true and pid, no service-name-mapping). */
  flavor?: '3.3' | '2.7';
  timestamp?: number;
  pid?: number;
  /** The `release` parameter (Dubbo's own version). Default 3.3.0, or 2.7.23 for flavor 2.7. */
  release?: string;
  /** More parameters (or replacements), e.g. { revision: '1.0.0', token: '...' }. */
  params?: Record<string, string>;
  /** The data Curator writes on Dubbo's nodes: the registering machine's IP. Default `host`. */
  localAddress?: string;
  /** The registry's root (Dubbo's registry `group`). Default /dubbo. */
  root?: string;
}

/** The provider URL exactly as Dubbo's URL.toFullString() writes it (parameters sorted by key, raw). */
export function dubboProviderUrl(p: DubboProvider): string {
  const flavor = p.flavor ?? '3.3';
  const params: Record<string, string> = {
    application: p.application,
    deprecated: 'false',
    dubbo: '2.0.2',
    dynamic: String(p.dynamic ?? true),
    generic: 'false',
    interface: p.interface,
    methods: [...(p.methods ?? ['sayHello', 'sayHelloAsync'])].sort().join(','),
    release: p.release ?? (flavor === '2.7' ? '2.7.23' : '3.3.0'),
    side: 'provider',
    timestamp: String(p.timestamp ?? Date.now()),
  };
  if (flavor === '2.7') {
    params.anyhost = 'true';
    params.pid = String(p.pid ?? process.pid);
  } else {
    params['service-name-mapping'] = 'true';
  }
  if (p.version !== undefined) params.version = p.version;
  if (p.group !== undefined) params.group = p.group;
  if (p.weight !== undefined) params.weight = String(p.weight);
  if (p.enabled === false) params.enabled = 'false';
  Object.assign(params, p.params);
  return `${p.protocol ?? 'dubbo'}://${p.host}:${p.port}/${p.interface}?${javaQuery(params)}`;
}

/** key=value&... sorted by key as Java's TreeMap<String, …> does (UTF-16 code units), values trimmed. */
function javaQuery(params: Record<string, string>): string {
  return Object.keys(params)
    .filter((k) => k !== '')
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((k) => `${k}=${params[k]!.trim()}`)
    .join('&');
}

/** /dubbo/<URL.encode(interface)> */
export function dubboServicePath(iface: string, root = '/dubbo'): string {
  return `${root === '/' ? '' : root}/${javaUrlEncode(iface)}`;
}

/** The provider's node path: /dubbo/<iface>/providers/<URL.encode(full URL)>. */
export function dubboProviderPath(p: DubboProvider, url = dubboProviderUrl(p)): string {
  return `${dubboServicePath(p.interface, p.root)}/providers/${javaUrlEncode(url)}`;
}

/**
 * What a Dubbo provider's registration leaves in ZooKeeper: the persistent folders /dubbo,
 * /dubbo/<iface>, .../providers, .../configurators (the provider subscribes to its overrides,
 * which creates that folder), and its EPHEMERAL URL node; every node's data is the local IP.
 * Pass `url` to register a URL built once (its timestamp is part of the path).
 */
export function dubboProviderNodes(p: DubboProvider, url = dubboProviderUrl(p)): ZNode[] {
  const data = Buffer.from(p.localAddress ?? p.host);
  const service = dubboServicePath(p.interface, p.root);
  const folders = [...parents(service), service, `${service}/providers`, `${service}/configurators`];
  return [
    ...folders.map((path): ZNode => ({ path, data, mode: 'persistent' })),
    { path: dubboProviderPath(p, url), data, mode: p.dynamic === false ? 'persistent' : 'ephemeral' },
  ];
}

/**
 * A consumer's side: the folders it subscribes to (providers, configurators, routers) and its own
 * EPHEMERAL consumer:// URL under consumers/ (ZookeeperRegistry.doSubscribe/doRegister).
 */
export function dubboConsumerNodes(c: { host: string; interface: string; application: string; timestamp?: number; root?: string }): ZNode[] {
  const data = Buffer.from(c.host);
  const service = dubboServicePath(c.interface, c.root);
  const url = `consumer://${c.host}/${c.interface}?${javaQuery({
    application: c.application,
    category: 'consumers',
    check: 'false',
    dubbo: '2.0.2',
    interface: c.interface,
    release: '3.3.0',
    side: 'consumer',
    timestamp: String(c.timestamp ?? Date.now()),
  })}`;
  const folders = [...parents(service), service, ...['consumers', 'providers', 'configurators', 'routers'].map((f) => `${service}/${f}`)];
  return [...folders.map((path): ZNode => ({ path, data, mode: 'persistent' })), { path: `${service}/consumers/${javaUrlEncode(url)}`, data, mode: 'ephemeral' }];
}

/**
 * An override (what dubbo-admin or `registry.register(URL.valueOf("override://..."))` writes) under
 * /dubbo/<iface>/configurators: PERSISTENT (dynamic=false), e.g. disabled=true for one provider
 * address (host:port; host 0.0.0.0 = every provider, no port = consumer side). Dubbo applies it
 * in RegistryDirectory.mergeUrl → AbstractConfigurator.configure (configureDeprecated when the
 * override has no configVersion: the port must equal the provider's, the host must equal the
 * provider's or be 0.0.0.0), then RegistryDirectory.toInvokers skips a provider whose merged URL
 * has disabled=true (or, with no `disabled`, enabled=false).
 */
export function dubboOverrideUrl(o: { host: string; port?: number; interface: string; params: Record<string, string> }): string {
  const address = o.port ? `${o.host}:${o.port}` : o.host;
  return `override://${address}/${o.interface}?${javaQuery({ category: 'configurators', dynamic: 'false', ...o.params })}`;
}

export function dubboOverrideNodes(o: { host: string; port?: number; interface: string; params: Record<string, string>; localAddress?: string; root?: string }): ZNode[] {
  const data = Buffer.from(o.localAddress ?? '127.0.0.1');
  const service = dubboServicePath(o.interface, o.root);
  const folders = [...parents(service), service, `${service}/configurators`];
  return [...folders.map((path): ZNode => ({ path, data, mode: 'persistent' })), { path: `${service}/configurators/${javaUrlEncode(dubboOverrideUrl(o))}`, data, mode: 'persistent' }];
}

// --- Curator service discovery ----------------------------------------------------------------

export type CuratorServiceType = 'DYNAMIC' | 'STATIC' | 'PERMANENT' | 'DYNAMIC_SEQUENTIAL';

/** The payload: a Java object; "@class" names its class (Jackson's @JsonTypeInfo(use = CLASS)). */
export type CuratorPayload = { '@class': string } & Record<string, unknown>;

export interface CuratorInstance {
  name: string;
  id: string;
  /** An IP, or a host name (Spring Cloud Zookeeper registers the host name unless preferIpAddress). */
  address: string | null;
  port: number | null;
  sslPort?: number | null;
  payload?: CuratorPayload | null;
  registrationTimeUTC?: number;
  serviceType?: CuratorServiceType;
  /** e.g. "{scheme}://{address}:{port}"; null/absent writes "uriSpec":null. */
  uriSpec?: string | null;
  /** Only serialized with `serializeEnabled` (JsonInstanceSerializer(..., false)); no framework does by default. */
  enabled?: boolean;
  serializeEnabled?: boolean;
}

/** UriSpec(rawSpec): text and {variables} as parts, as Curator's UriSpec constructor splits it. */
export function curatorUriSpecParts(raw: string): { value: string; variable: boolean }[] {
  const parts: { value: string; variable: boolean }[] = [];
  for (const m of raw.matchAll(/\{([^{}]*)\}|[^{}]+/g)) {
    if (m[1] !== undefined) parts.push({ value: m[1].trim(), variable: true });
    else parts.push({ value: m[0], variable: false });
  }
  return parts;
}

/** The bytes Curator's JsonInstanceSerializer writes for `i` (Jackson's compact JSON, field order kept). */
export function curatorInstanceJson(i: CuratorInstance): string {
  const json: Record<string, unknown> = {
    name: i.name,
    id: i.id,
    address: i.address,
    port: i.port,
    sslPort: i.sslPort ?? null,
    payload: i.payload ?? null,
    registrationTimeUTC: i.registrationTimeUTC ?? Date.now(),
    serviceType: i.serviceType ?? 'DYNAMIC',
    uriSpec: i.uriSpec == null ? null : { parts: curatorUriSpecParts(i.uriSpec) },
  };
  if (i.serializeEnabled) json.enabled = i.enabled ?? true;
  return JSON.stringify(json);
}

/** /services/<name>/<id> (ServiceDiscoveryImpl.pathForInstance; ZKPaths.makePath). */
export function curatorInstancePath(i: Pick<CuratorInstance, 'name' | 'id'>, basePath = '/services'): string {
  return `${basePath === '/' ? '' : basePath}/${i.name}/${i.id}`;
}

/** The base path and service folders (empty data), then the instance node in its serviceType's mode. */
export function curatorInstanceNodes(i: CuratorInstance, basePath = '/services'): ZNode[] {
  const path = curatorInstancePath(i, basePath);
  const type = i.serviceType ?? 'DYNAMIC';
  // DYNAMIC_SEQUENTIAL would need EPHEMERAL_SEQUENTIAL (a suffix ZooKeeper picks); not offered here.
  assert.notEqual(type, 'DYNAMIC_SEQUENTIAL', 'DYNAMIC_SEQUENTIAL instances are not supported by the test registrar');
  return [
    ...parents(path).map((p): ZNode => ({ path: p, data: Buffer.alloc(0), mode: 'persistent' })),
    { path, data: Buffer.from(curatorInstanceJson(i)), mode: type === 'DYNAMIC' ? 'ephemeral' : 'persistent' },
  ];
}

/** Spring Cloud Zookeeper's registration of one application instance (its defaults; override what you need). */
export function springCloudInstance(o: {
  name: string;
  address: string;
  port: number;
  id?: string;
  metadata?: Record<string, string>;
  sslPort?: number;
  registrationTimeUTC?: number;
}): CuratorInstance {
  return {
    name: o.name,
    id: o.id ?? crypto.randomUUID(),
    address: o.address,
    port: o.port,
    sslPort: o.sslPort ?? null,
    payload: {
      '@class': 'org.springframework.cloud.zookeeper.discovery.ZookeeperInstance',
      // The Spring ApplicationContext's id: spring.application.name unless set otherwise.
      id: o.name,
      name: o.name,
      metadata: { instance_status: 'UP', ...o.metadata },
    },
    registrationTimeUTC: o.registrationTimeUTC ?? Date.now(),
    serviceType: 'DYNAMIC',
    uriSpec: '{scheme}://{address}:{port}',
  };
}

/** Dubbo 3's application-level registration (ZookeeperServiceDiscovery via CuratorFrameworkUtils.build). */
export function dubboAppInstance(o: { application: string; host: string; port: number; metadata?: Record<string, string>; registrationTimeUTC?: number }): CuratorInstance {
  const id = `${o.host}:${o.port}`;
  const metadata = {
    'dubbo.endpoints': `[{"port":${o.port},"protocol":"dubbo"}]`,
    'dubbo.metadata.revision': '6a9f8c2b0e5d4f1a',
    'dubbo.metadata.storage-type': 'local',
    ...o.metadata,
  };
  // ServiceInstance.getSortedMetadata(): a TreeMap, so keys in order.
  const sorted = Object.fromEntries(Object.entries(metadata).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return {
    name: o.application,
    id,
    address: o.host,
    port: o.port,
    sslPort: null,
    payload: { '@class': 'org.apache.dubbo.registry.zookeeper.ZookeeperInstance', id, name: o.application, metadata: sorted },
    registrationTimeUTC: o.registrationTimeUTC ?? Date.now(),
    serviceType: 'DYNAMIC',
    uriSpec: null,
  };
}

// ---------------------------------------------------------------------------------------------
// Applying znodes with a client (in-process, and inside the registrar child)

/**
 * Creates `nodes` in order as the frameworks do: a persistent node that exists is left alone
 * (Dubbo checks and skips; Curator's creatingParents… ignores NodeExists); an ephemeral node that
 * exists (an old session's, not yet expired) is deleted and created again (Dubbo's faultTolerant
 * createEphemeral; Curator's internalRegisterService does the same "so that watchers fire").
 */
export async function applyNodes(client: zookeeper.Client, nodes: readonly ZNode[]): Promise<void> {
  for (const node of nodes) {
    const mode = node.mode === 'ephemeral' ? zookeeper.CreateMode.EPHEMERAL : zookeeper.CreateMode.PERSISTENT;
    if (node.mode === 'persistent' && (await exists(client, node.path))) continue;
    try {
      await create(client, node.path, node.data, mode);
    } catch (err) {
      if (!isZkError(err, zookeeper.Exception.NODE_EXISTS)) throw err;
      if (node.mode === 'ephemeral') {
        await remove(client, node.path).catch((e: unknown) => {
          if (!isZkError(e, zookeeper.Exception.NO_NODE)) throw e;
        });
        await create(client, node.path, node.data, mode);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The registrar child process

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHILD = 'test/support/zk-registrar-child.ts';

export interface RegistrarOptions {
  /**
   * The session timeout the registrar asks for (ms; the server clamps it to its bounds). Dubbo's
   * and Curator's default is 60 000 (Curator5ZookeeperClient DEFAULT_SESSION_TIMEOUT_MS,
   * CuratorFrameworkFactory DEFAULT_SESSION_TIMEOUT_MS, Spring Cloud ZookeeperProperties.sessionTimeout);
   * tests ask for little (the test server's minimum is 1 s).
   */
  sessionTimeoutMs: number;
  /**
   * On session expiry, open a new session and create the nodes again, as Dubbo
   * (ZookeeperRegistry: NEW_SESSION_CREATED → recover()) and Curator (ServiceDiscoveryImpl
   * reRegisterServices on RECONNECTED) do. Default true.
   */
  reregister?: boolean;
}

export interface Registrar {
  /** The child's current ZooKeeper session id (hex). */
  sessionId(): string;
  /** The session timeout the server granted (ms). */
  sessionTimeoutMs(): number;
  /** Creates the nodes (parents first) under the child's session. */
  register(nodes: readonly ZNode[]): Promise<void>;
  /** Deletes one node (an unregistration: Dubbo's doUnregister, Curator's unregisterService). */
  unregister(path: string): Promise<void>;
  /** Resolves on the child's next re-registration after its session expired. */
  reregistered(): Promise<void>;
  /** SIGSTOP / SIGCONT: the registrar hangs (a long GC pause); held past its timeout, the session expires. */
  pause(): void;
  resume(): void;
  /** SIGKILL: the session is not closed; ZooKeeper expires it after its timeout. */
  kill(): Promise<void>;
  /** A clean stop: the session is closed, its ephemeral nodes go at once. */
  close(): Promise<void>;
}

interface Reply {
  id?: number;
  ok?: boolean;
  error?: string;
  event?: string;
  sessionId?: string;
  timeout?: number;
}

/** Starts a registrar child connected to `connectString`; stopped (SIGKILL) after the test if still running. */
export async function startRegistrar(t: { after(fn: () => Promise<void>): void }, connectString: string, options: RegistrarOptions): Promise<Registrar> {
  const args = ['--import', 'tsx', CHILD, connectString, String(options.sessionTimeoutMs), String(options.reregister ?? true)];
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = once(child, 'exit');
      child.kill('SIGKILL');
      await gone;
    }
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let session = { id: '', timeout: 0 };
  const pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  const eventWaiters: { event: string; resolve: () => void }[] = [];
  let nextId = 1;
  const exited = once(child, 'exit');
  const lines = createInterface({ input: child.stdout });
  lines.on('line', (text) => {
    const reply = JSON.parse(text) as Reply;
    if (reply.sessionId) session = { id: reply.sessionId, timeout: reply.timeout ?? 0 };
    if (reply.event) {
      for (const w of eventWaiters.filter((w) => w.event === reply.event)) {
        eventWaiters.splice(eventWaiters.indexOf(w), 1);
        w.resolve();
      }
    }
    if (reply.id !== undefined) {
      const p = pending.get(reply.id);
      pending.delete(reply.id);
      if (reply.ok) p?.resolve();
      else p?.reject(new Error(`registrar: ${reply.error}`));
    }
  });
  void exited.then(() => {
    for (const p of pending.values()) p.reject(new Error(`registrar exited:\n${stderr}`));
    pending.clear();
  });
  const waitEvent = (event: string): Promise<void> => new Promise((resolve) => eventWaiters.push({ event, resolve }));
  const send = (message: Record<string, unknown>): Promise<void> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      child.stdin.write(`${JSON.stringify({ id, ...message })}\n`);
    });

  // Bounded: the child starts Node and tsx (about a second) and opens its session.
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    waitEvent('connected').then(() => 'connected'),
    exited.then(() => 'exited'),
    new Promise((resolve) => (timer = setTimeout(resolve, 20_000, 'no session within 20 s'))),
  ]);
  clearTimeout(timer);
  assert.equal(outcome, 'connected', `registrar child did not connect to ${connectString} (${String(outcome)}):\n${stderr}`);

  return {
    sessionId: () => session.id,
    sessionTimeoutMs: () => session.timeout,
    register: (nodes) => send({ op: 'register', nodes: nodes.map((n) => ({ path: n.path, data: n.data.toString('base64'), mode: n.mode })) }),
    unregister: (path) => send({ op: 'unregister', path }),
    reregistered: () => waitEvent('reregistered'),
    pause: () => void child.kill('SIGSTOP'),
    resume: () => void child.kill('SIGCONT'),
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.stdin.end(); // the child closes its session when its stdin ends, then exits
      // Bounded: a child that cannot close its session is killed, and the test told.
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([exited.then(([code]) => `exit ${String(code)}`), new Promise((resolve) => (timer = setTimeout(resolve, 45_000, 'still running after 45 s')))]);
      clearTimeout(timer);
      if (outcome !== 'exit 0') {
        child.kill('SIGKILL');
        assert.fail(`registrar child did not close its session and exit (${String(outcome)}):\n${stderr}`);
      }
    },
  };
}
