/**
 * A Consul HTTP API simulator for tests: no real Consul can run here, so this answers the parts of
 * Consul's HTTP API that svcdns uses, with Consul's own JSON shapes, headers, blocking-query and
 * error semantics. Loopback only (127.0.0.1); node: built-ins only.
 *
 * Sources (hashicorp/consul, read for this file; "CE" = the open-source build):
 *  - website/content/api-docs/features/blocking.mdx: `index`/`wait`, 5 min default, 10 min cap,
 *    jitter of up to wait/16, the index may go backwards (clients must reset), index is never 0.
 *  - agent/blockingquery/blockingquery.go Query(): index 0 answers at once; otherwise re-run the query
 *    until the result's index > MinQueryIndex or the timeout — so an index that went *backwards*
 *    (restore/restart) blocks until the timeout, then answers the lower index.
 *  - agent/consul/server.go RPCQueryTimeout(): wait > max -> max, wait <= 0 -> default, + jitter.
 *  - agent/consul/rpc.go SetQueryMeta(): leader answers LastContact 0 / KnownLeader true; a follower
 *    (stale read) answers its last contact; Index < 1 is sent as 1. forwardRPC(): unknown dc ->
 *    "No path to datacenter"; non-stale reads and all writes go to the leader -> "No cluster leader"
 *    after rpc_hold_timeout (7 s in Consul; `rpcHoldTimeoutMs` here, default 0).
 *  - agent/http.go: wrap() (403 for ACL errors, 500 otherwise, text body; 405 + Allow; OPTIONS),
 *    setIndex/setKnownLeader/setLastContact/setConsistency/setQueryBackend, parseWait ("Invalid wait
 *    time", "Invalid index"), parseConsistency ("Cannot specify ?stale with ?consistent, conflicting
 *    semantics."), token from ?token, then X-Consul-Token, then Authorization: Bearer; Index() 404 text;
 *    X-Consul-Default-ACL-Policy on every wrapped response; gzip (>= 1400 bytes) + Vary.
 *  - agent/catalog_endpoint.go: `defer setMeta(...)` so catalog errors still carry X-Consul-Index 1,
 *    KnownLeader false, LastContact 0; nil list/map -> []/{}.
 *  - agent/health_endpoint.go healthServiceNodes(): `?passing` (bare or ParseBool) drops every entry
 *    with any non-passing check (filterNonPassing, which swaps the last entry into the hole), nil
 *    Checks/Tags/ServiceTags -> [].
 *  - agent/consul/state/catalog.go + catalog_ce.go: which write bumps which index. Node insert bumps
 *    the nodes table and every service index on that node; service insert bumps services + nodes
 *    tables and `service.<name>`; a service check bumps `service.<name>`, a node-level check bumps
 *    every service on the node; removing the last instance of a service sets
 *    `service_last_extinction`; identical re-registrations write nothing (IsSame). Health results
 *    are ordered by node then service ID; node-level checks come first in Checks.
 *  - agent/structs/structs.go: JSON field names/omitempty of Node, NodeService, HealthCheck,
 *    ConnectProxyConfig (empty proxy renders {"Mode":"","MeshGateway":{},"Expose":{}}), default
 *    Weights {1,1}.
 *  - acl/errors.go: "ACL not found", "Permission denied: anonymous token lacks permission
 *    'node:write' on \"n1\". The anonymous token is used implicitly when a request does not specify
 *    a token."
 *
 * Modelling choices (where Consul is not copied literally):
 *  - Blocking is per *result index*, computed as Consul's state store computes it: catalog/services
 *    = services table index, catalog/nodes = nodes table index, health/service/:name = the
 *    `service.<name>` index (bumped only by that service's instances, their checks, node-level
 *    checks and node changes of nodes hosting it), or for an absent service the last
 *    service-extinction index, or (none yet) max(nodes, services, checks). A parked query is
 *    re-evaluated after every write in its dc and answers as soon as that index exceeds `?index`,
 *    so a health flip of one service never wakes a query for another.
 *  - ACLs (`aclTokens` non-null): default policy deny; listed tokens may do everything; an unknown
 *    token gets 403 "ACL not found"; no token is the anonymous token, which Consul does NOT reject
 *    on these reads — results are filtered by ACL, i.e. 200 with [] / {} — but writes get 403
 *    "Permission denied: anonymous token lacks permission ...".
 *  - The JS API models agent-registered entries: registerNode fills TaggedAddresses like an agent
 *    (lan/wan + lan_ipv4|lan_ipv6/wan_ipv4|wan_ipv6 = Address), Meta {} and a stable UUID ID;
 *    registerService defaults Meta to {}. PUT /v1/catalog/register stores exactly what it is given
 *    (absent maps are null), as Consul's catalog does. Names are matched case-insensitively.
 *  - Prepared queries (section "Prepared queries" at the end of this file): see SimPreparedQueries.
 *  - Liveness (section "Liveness: the status endpoint and a stuck process" at the end of this
 *    file): GET /v1/status/leader, and `hangLosesRequests`, a hang as a stuck process shows it.
 *  - The service mesh (section "Service mesh" below): sidecar proxies, Connect-native services,
 *    ingress gateways and virtual IPs (Kind, Proxy, Connect also read from PUT /v1/catalog/register;
 *    virtual IPs and ingress config entries through the JS API only); /v1/health/connect/:name and
 *    /v1/health/ingress/:name, blocking like /v1/health/service/:name.
 *  - Not modelled: terminating/mesh gateways, namespaces/partitions/peers, ?filter and ?node-meta
 *    (answered 400 "consul-sim: ... is not supported" rather than silently ignored), ?cached (always
 *    fresh), ?near (no coordinates, so Consul would not sort either), max_stale, X-Cache.
 */

import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { isIP, type AddressInfo, type Socket } from 'node:net';
import { gzipSync } from 'node:zlib';

export interface SimOptions {
  /** Datacenters served; the first is the agent's own (used when ?dc is absent). Default ['dc1']. */
  datacenters?: string[];
  /** Valid ACL tokens (each may do everything); null (default) = ACLs off. */
  aclTokens?: string[] | null;
  /** Blocking wait when ?wait is absent or <= 0. Default 5 min, like Consul. */
  defaultWaitMs?: number;
  /** Cap on ?wait. Default 10 min, like Consul. */
  maxWaitMs?: number;
  /** How long a leader-bound request waits for a leader before "No cluster leader" (Consul: 7 s). Default 0. */
  rpcHoldTimeoutMs?: number;
  /**
   * Serve HTTPS with this key and certificate (PEM), like Consul's HTTPS port; with `ca`, require
   * client certificates signed by it (Consul's `verify_incoming`).
   */
  tls?: { key: string; cert: string; ca?: string };
}

export type CheckStatus = 'passing' | 'warning' | 'critical';
export type FaultMode = 'none' | 'error500' | 'hang' | 'refuse';

export interface SimNode {
  Node: string;
  Address: string;
  Meta?: Record<string, string>;
  ID?: string;
  /** Default: as an agent sets them (lan, wan and lan_ipv4/wan_ipv4 or lan_ipv6/wan_ipv6 = Address). */
  TaggedAddresses?: Record<string, string>;
}

export interface SimService {
  ID?: string;
  Service: string;
  Tags?: string[];
  Address?: string;
  Port?: number;
  Meta?: Record<string, string>;
  Weights?: { Passing: number; Warning: number };
  /** Service tagged addresses (lan_ipv4, lan_ipv6, wan, ...); default none, as the agent registers services. */
  TaggedAddresses?: Record<string, ServiceAddress>;
  /** Consul's ServiceKind: absent for a typical service. */
  Kind?: 'connect-proxy' | 'ingress-gateway';
  /** connect-proxy: the service it fronts. */
  Proxy?: { DestinationServiceName: string };
  /** Connect-native: the service speaks mTLS itself. */
  Connect?: { Native?: boolean };
}

export interface SimCheck {
  CheckID: string;
  Status: CheckStatus;
  /** '' or absent: a node-level check, which counts for every service on the node. */
  ServiceID?: string;
  Name?: string;
  Output?: string;
}

export interface SimRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  token: string | null;
  /** The X-Forwarded-For header as sent (Consul takes a query's source address from it), or null. */
  forwardedFor: string | null;
  at: number;
  /**
   * Order of events: `seq` when it arrived, `doneSeq` when its response was written in full (null
   * until then), from one counter; so the requests in flight at any moment can be told exactly.
   */
  seq: number;
  doneSeq: number | null;
  /** The HTTP status of the response, once it has been written in full (null until then). */
  status: number | null;
  /**
   * A blocking read that was parked: how long it was given (?wait, capped or defaulted, plus the
   * jitter), and what answered it: a write moving its index ('change'), its wait running out
   * ('timeout'), or fault('error500') ('fault'). Null for requests never parked.
   */
  parkedForMs: number | null;
  wokenBy: 'change' | 'timeout' | 'fault' | null;
  /** The client closed the connection before the response was written (it gave up on the request). */
  abandoned: boolean;
}

/** What a failing RPC to the servers looks like from the agent's HTTP API. */
export const RPC_ERROR_TEXT = 'rpc error making call: EOF';

// ---------------------------------------------------------------------------------------------
// State store

interface Weights {
  Passing: number;
  Warning: number;
}

interface NodeRec {
  ID: string;
  Node: string;
  Address: string;
  Datacenter: string;
  TaggedAddresses: Record<string, string> | null;
  Meta: Record<string, string> | null;
  CreateIndex: number;
  ModifyIndex: number;
}

export interface ServiceAddress {
  Address: string;
  Port: number;
}

interface ServiceRec {
  Node: string;
  ID: string;
  Service: string;
  Tags: string[] | null;
  Address: string;
  TaggedAddresses: Record<string, ServiceAddress> | null;
  Meta: Record<string, string> | null;
  Port: number;
  Weights: Weights;
  EnableTagOverride: boolean;
  /** The mesh (registered through the JS API only); absent: a typical service. */
  Kind?: string;
  Proxy?: { DestinationServiceName: string };
  Connect?: { Native: boolean };
  CreateIndex: number;
  ModifyIndex: number;
}

interface CheckRec {
  Node: string;
  CheckID: string;
  Name: string;
  Status: string;
  Notes: string;
  Output: string;
  ServiceID: string;
  ServiceName: string;
  ServiceTags: string[] | null;
  Type: string;
  Interval: string;
  Timeout: string;
  ExposedPort: number;
  Definition: Record<string, unknown>;
  CreateIndex: number;
  ModifyIndex: number;
}

/** Input shapes of a registration (one raft write), after decoding. */
interface RegisterInput {
  node: Omit<NodeRec, 'CreateIndex' | 'ModifyIndex'>;
  service: Omit<ServiceRec, 'CreateIndex' | 'ModifyIndex' | 'Node'> | null;
  checks: Omit<CheckRec, 'CreateIndex' | 'ModifyIndex'>[];
}

class SimError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const lc = (s: string): string => s.toLowerCase();
const key2 = (a: string, b: string): string => `${lc(a)}\u0000${lc(b)}`;

/** Canonical JSON (sorted keys) for Go-style DeepEqual comparisons: null and {} differ, as in Go. */
function canon(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canon).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    return `{${Object.keys(obj)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canon(obj[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** Go marshals maps with sorted keys. */
function sortedMap<T>(map: Record<string, T> | null): Record<string, T> | null {
  if (map === null) return null;
  const out: Record<string, T> = {};
  for (const k of Object.keys(map).sort()) out[k] = map[k] as T;
  return out;
}

function validWeights(w: Weights | null | undefined): Weights {
  // structs.NodeService.ToServiceNode: default {1,1}; invalid weights are replaced by the default.
  if (!w) return { Passing: 1, Warning: 1 };
  if (w.Passing < 1 || w.Warning < 0 || w.Passing > 65535 || w.Warning > 65535) return { Passing: 1, Warning: 1 };
  return { Passing: w.Passing, Warning: w.Warning };
}

class DcState {
  raft = 1;
  readonly nodes = new Map<string, NodeRec>();
  readonly services = new Map<string, ServiceRec>();
  readonly checks = new Map<string, CheckRec>();
  tableNodes = 0;
  tableServices = 0;
  tableChecks = 0;
  /** `service.<name>` index entries (lower-cased name). */
  readonly serviceIndex = new Map<string, number>();
  /** `service_last_extinction`; 0 = never set. */
  extinction = 0;
  /** Ingress gateway config entries: gateway name (lower-cased) -> the services its listeners expose. */
  readonly ingressConfig = new Map<string, string[]>();
  /** Index of the last config entry write (the ingress mapping). */
  tableConfig = 0;
  /** Virtual IPs by service name (lower-cased), as Consul's service-virtual-ip table. */
  readonly virtualIps = new Map<string, string>();

  constructor(readonly name: string) {}

  next(): number {
    this.raft += 1;
    return this.raft;
  }

  node(name: string): NodeRec | undefined {
    return this.nodes.get(lc(name));
  }

  service(node: string, id: string): ServiceRec | undefined {
    return this.services.get(key2(node, id));
  }

  servicesOnNode(node: string): ServiceRec[] {
    return [...this.services.values()].filter((s) => lc(s.Node) === lc(node));
  }

  private bumpService(name: string, idx: number): void {
    const k = lc(name);
    this.serviceIndex.set(k, Math.max(this.serviceIndex.get(k) ?? 0, idx));
  }

  private bumpAllServicesOfNode(node: string, idx: number): void {
    for (const s of this.servicesOnNode(node)) this.bumpService(s.Service, idx);
  }

  ensureNode(idx: number, n: Omit<NodeRec, 'CreateIndex' | 'ModifyIndex'>): void {
    const existing = this.node(n.Node);
    if (existing && existing.ID === n.ID && lc(existing.Node) === lc(n.Node) && existing.Address === n.Address &&
      existing.Datacenter === n.Datacenter && canon(existing.TaggedAddresses) === canon(n.TaggedAddresses) &&
      canon(existing.Meta) === canon(n.Meta)) {
      return; // Node.IsSame: nothing written, no index moves
    }
    this.nodes.set(lc(n.Node), { ...n, CreateIndex: existing?.CreateIndex ?? idx, ModifyIndex: idx });
    this.tableNodes = Math.max(this.tableNodes, idx);
    this.bumpAllServicesOfNode(n.Node, idx);
  }

  ensureService(idx: number, nodeName: string, s: Omit<ServiceRec, 'CreateIndex' | 'ModifyIndex' | 'Node'>): void {
    const node = this.node(nodeName);
    if (!node) throw new SimError(500, 'Missing node registration');
    const existing = this.service(nodeName, s.ID);
    const entry: ServiceRec = { ...s, Node: node.Node, CreateIndex: existing?.CreateIndex ?? idx, ModifyIndex: idx };
    if (existing && canon({ ...existing, CreateIndex: 0, ModifyIndex: 0 }) === canon({ ...entry, CreateIndex: 0, ModifyIndex: 0 })) {
      return; // IsSameService
    }
    this.services.set(key2(nodeName, s.ID), entry);
    this.tableServices = Math.max(this.tableServices, idx);
    this.tableNodes = Math.max(this.tableNodes, idx);
    this.bumpService(entry.Service, idx);
    // Consul bumps only the new name; bumping a renamed instance's old name too keeps its watchers honest.
    if (existing && lc(existing.Service) !== lc(entry.Service)) this.afterServiceRemoved(existing.Service, idx);
  }

  ensureCheck(idx: number, c: Omit<CheckRec, 'CreateIndex' | 'ModifyIndex'>): void {
    const node = this.node(c.Node);
    if (!node) throw new SimError(500, 'Missing node registration');
    const existing = this.checks.get(key2(c.Node, c.CheckID));
    const hc: CheckRec = { ...c, Node: node.Node, Status: c.Status === '' ? 'critical' : c.Status, CreateIndex: existing?.CreateIndex ?? idx, ModifyIndex: existing?.ModifyIndex ?? idx };
    const same = (): boolean =>
      existing !== undefined && lc(existing.Node) === lc(hc.Node) && existing.CheckID === hc.CheckID && existing.Name === hc.Name &&
      existing.Status === hc.Status && existing.Notes === hc.Notes && existing.Output === hc.Output &&
      existing.ServiceID === hc.ServiceID && existing.ServiceName === hc.ServiceName &&
      canon(existing.ServiceTags) === canon(hc.ServiceTags) && canon(existing.Definition) === canon(hc.Definition);
    if (hc.ServiceID !== '') {
      const svc = this.service(hc.Node, hc.ServiceID);
      if (!svc) throw new SimError(500, `failed inserting check on node "${c.Node}": Missing service registration`);
      hc.ServiceName = svc.Service;
      hc.ServiceTags = svc.Tags === null ? null : [...svc.Tags];
      if (same()) return;
      this.bumpService(svc.Service, idx);
    } else {
      if (same()) return;
      this.bumpAllServicesOfNode(hc.Node, idx);
    }
    hc.ModifyIndex = idx;
    this.checks.set(key2(hc.Node, hc.CheckID), hc);
    this.tableChecks = Math.max(this.tableChecks, idx);
  }

  deleteCheck(idx: number, node: string, checkId: string): void {
    const existing = this.checks.get(key2(node, checkId));
    if (!existing) return;
    if (existing.ServiceID !== '') {
      this.bumpService(existing.ServiceName, idx);
    } else {
      this.bumpAllServicesOfNode(existing.Node, idx);
      this.tableServices = Math.max(this.tableServices, idx);
    }
    this.checks.delete(key2(node, checkId));
    this.tableChecks = Math.max(this.tableChecks, idx);
  }

  private afterServiceRemoved(name: string, idx: number): void {
    const remaining = [...this.services.values()].some((s) => lc(s.Service) === lc(name));
    if (remaining) {
      this.bumpService(name, idx);
    } else {
      this.serviceIndex.delete(lc(name));
      this.extinction = Math.max(this.extinction, idx);
    }
  }

  deleteService(idx: number, node: string, serviceId: string): void {
    const svc = this.service(node, serviceId);
    if (!svc) return;
    for (const c of [...this.checks.values()]) {
      if (lc(c.Node) === lc(node) && lc(c.ServiceID) === lc(serviceId)) this.deleteCheck(idx, node, c.CheckID);
    }
    this.tableChecks = Math.max(this.tableChecks, idx);
    this.services.delete(key2(node, serviceId));
    this.tableServices = Math.max(this.tableServices, idx);
    this.tableNodes = Math.max(this.tableNodes, idx);
    this.afterServiceRemoved(svc.Service, idx);
  }

  deleteNode(idx: number, node: string): void {
    if (!this.node(node)) return;
    const svcs = this.servicesOnNode(node);
    for (const s of svcs) this.bumpService(s.Service, idx);
    for (const s of svcs) this.deleteService(idx, node, s.ID);
    for (const c of [...this.checks.values()]) {
      if (lc(c.Node) === lc(node)) this.deleteCheck(idx, node, c.CheckID);
    }
    this.nodes.delete(lc(node));
    this.tableNodes = Math.max(this.tableNodes, idx);
  }

  /** Consul's restart/restore: everything now carries `base` as its index. */
  reindex(base: number): void {
    this.raft = base;
    for (const rec of [...this.nodes.values(), ...this.services.values(), ...this.checks.values()]) {
      rec.CreateIndex = base;
      rec.ModifyIndex = base;
    }
    if (this.tableNodes > 0) this.tableNodes = base;
    if (this.tableServices > 0) this.tableServices = base;
    if (this.tableChecks > 0) this.tableChecks = base;
    for (const k of this.serviceIndex.keys()) this.serviceIndex.set(k, base);
    if (this.extinction > 0) this.extinction = base;
  }

  // --- reads -------------------------------------------------------------------------------

  private catalogMax(): number {
    return Math.max(this.tableNodes, this.tableServices, this.tableChecks);
  }

  /**
   * Services by lower-case name and checks by lower-case node, derived from the tables and rebuilt
   * when the raft index moves (every write moves it), so a read costs its own result, not a scan of
   * the catalog: a 5,000-service sync is 5,000 reads.
   */
  private derived: { raft: number; byName: Map<string, ServiceRec[]>; checksByNode: Map<string, CheckRec[]> } | null = null;

  private lookups(): { byName: Map<string, ServiceRec[]>; checksByNode: Map<string, CheckRec[]> } {
    if (this.derived?.raft !== this.raft) {
      const byName = new Map<string, ServiceRec[]>();
      for (const svc of this.services.values()) {
        const list = byName.get(lc(svc.Service));
        if (list) list.push(svc);
        else byName.set(lc(svc.Service), [svc]);
      }
      const checksByNode = new Map<string, CheckRec[]>();
      for (const c of this.checks.values()) {
        const list = checksByNode.get(lc(c.Node));
        if (list) list.push(c);
        else checksByNode.set(lc(c.Node), [c]);
      }
      this.derived = { raft: this.raft, byName, checksByNode };
    }
    return this.derived;
  }

  healthIndex(serviceName: string): number {
    const exists = (this.lookups().byName.get(lc(serviceName))?.length ?? 0) > 0;
    if (!exists) return this.extinction > 0 ? this.extinction : this.catalogMax();
    return this.serviceIndex.get(lc(serviceName)) ?? this.catalogMax();
  }

  healthEntries(serviceName: string, tags: string[] | null): { Node: unknown; Service: unknown; Checks: unknown[] }[] {
    const { byName } = this.lookups();
    const instances = (byName.get(lc(serviceName)) ?? [])
      .filter((s) => tags === null || tags.every((t) => (s.Tags ?? []).some((x) => lc(x) === lc(t))));
    return this.entriesOf(instances);
  }

  /** Health entries of these instances, ordered by node then service ID, node-level checks first. */
  entriesOf(list: ServiceRec[]): { Node: unknown; Service: unknown; Checks: unknown[] }[] {
    const { checksByNode } = this.lookups();
    const instances = [...list].sort((a, b) => cmp(lc(a.Node), lc(b.Node)) || cmp(lc(a.ID), lc(b.ID)));
    return instances.map((s) => {
      const node = this.node(s.Node);
      if (!node) throw new SimError(500, 'Missing node registration');
      const mine = checksByNode.get(lc(s.Node)) ?? [];
      const byId = (a: CheckRec, b: CheckRec): number => cmp(lc(a.CheckID), lc(b.CheckID));
      const checks = [
        ...mine.filter((c) => c.ServiceID === '').sort(byId),
        ...mine.filter((c) => c.ServiceID !== '' && lc(c.ServiceID) === lc(s.ID)).sort(byId),
      ];
      return { Node: nodeJson(node), Service: serviceJson(s), Checks: checks.map(checkJson) };
    });
  }

  catalogServices(): Record<string, string[]> {
    const tags = new Map<string, { name: string; tags: Set<string> }>();
    for (const s of this.services.values()) {
      const entry = tags.get(s.Service) ?? { name: s.Service, tags: new Set<string>() };
      for (const t of s.Tags ?? []) entry.tags.add(t);
      tags.set(s.Service, entry);
    }
    const out: Record<string, string[]> = {};
    // Consul's tag order comes from a Go map (unspecified); sorted here so tests are repeatable.
    for (const name of [...tags.keys()].sort()) out[name] = [...(tags.get(name)?.tags ?? [])].sort();
    return out;
  }

  catalogNodes(): unknown[] {
    return [...this.nodes.values()].sort((a, b) => cmp(lc(a.Node), lc(b.Node))).map(nodeJson);
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function nodeJson(n: NodeRec): Record<string, unknown> {
  return {
    ID: n.ID,
    Node: n.Node,
    Address: n.Address,
    Datacenter: n.Datacenter,
    TaggedAddresses: sortedMap(n.TaggedAddresses),
    Meta: sortedMap(n.Meta),
    CreateIndex: n.CreateIndex,
    ModifyIndex: n.ModifyIndex,
  };
}

function serviceJson(s: ServiceRec): Record<string, unknown> {
  const out: Record<string, unknown> = s.Kind ? { Kind: s.Kind } : {}; // `json:",omitempty"`, first in NodeService
  Object.assign(out, { ID: s.ID, Service: s.Service, Tags: s.Tags ?? [], Address: s.Address });
  if (s.TaggedAddresses && Object.keys(s.TaggedAddresses).length > 0) out.TaggedAddresses = sortedMap(s.TaggedAddresses);
  out.Meta = sortedMap(s.Meta);
  if (s.Port !== 0) out.Port = s.Port; // `json:",omitempty"`
  out.Weights = { Passing: s.Weights.Passing, Warning: s.Weights.Warning };
  out.EnableTagOverride = s.EnableTagOverride;
  out.Proxy = s.Proxy ? { DestinationServiceName: s.Proxy.DestinationServiceName, Mode: '', MeshGateway: {}, Expose: {} } : { Mode: '', MeshGateway: {}, Expose: {} };
  out.Connect = s.Connect?.Native ? { Native: true } : {};
  out.PeerName = '';
  out.CreateIndex = s.CreateIndex;
  out.ModifyIndex = s.ModifyIndex;
  return out;
}

function checkJson(c: CheckRec): Record<string, unknown> {
  return {
    Node: c.Node,
    CheckID: c.CheckID,
    Name: c.Name,
    Status: c.Status,
    Notes: c.Notes,
    Output: c.Output,
    ServiceID: c.ServiceID,
    ServiceName: c.ServiceName,
    ServiceTags: c.ServiceTags ?? [],
    Type: c.Type,
    Interval: c.Interval,
    Timeout: c.Timeout,
    ExposedPort: c.ExposedPort,
    Definition: c.Definition,
    CreateIndex: c.CreateIndex,
    ModifyIndex: c.ModifyIndex,
  };
}

function stableUuid(seed: string): string {
  const h = createHash('sha256').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

function agentTaggedAddresses(address: string): Record<string, string> {
  // A hostname: an external node (consul-esm registers those through the catalog API), which has none.
  if (!isIP(address)) return {};
  const v6 = address.includes(':');
  return v6
    ? { lan: address, lan_ipv6: address, wan: address, wan_ipv6: address }
    : { lan: address, lan_ipv4: address, wan: address, wan_ipv4: address };
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

/** Go's time.ParseDuration, in milliseconds; null when Go would fail. */
export function parseGoDuration(text: string): number | null {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let s = text;
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') return null;
  let total = 0;
  const re = /^(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)/u;
  while (s !== '') {
    const m = re.exec(s);
    if (!m || (m[1] === '' && (m[2] === undefined || m[2] === ''))) return null;
    const num = Number(`${m[1] || '0'}.${m[2] || '0'}`);
    total += num * (units[m[3] ?? ''] ?? NaN);
    s = s.slice(m[0].length);
  }
  return Number.isFinite(total) ? sign * total : null;
}

/** Go's encoding/json escapes <, >, & and U+2028/2029; MarshalIndent uses 4 spaces and a final newline. */
function goJson(value: unknown, pretty: boolean): string {
  const text = pretty ? `${JSON.stringify(value, null, 4)}\n` : JSON.stringify(value);
  return text.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function firstParams(params: URLSearchParams): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of params) if (!(k in out)) out[k] = v;
  return out;
}

function decodePath(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

function tokenOf(req: IncomingMessage, params: URLSearchParams): string | null {
  const q = params.get('token');
  if (q) return q;
  const h = req.headers['x-consul-token'];
  if (typeof h === 'string' && h !== '') return h;
  const auth = req.headers.authorization;
  if (typeof auth === 'string') {
    const parts = auth.split(' ');
    if (parts.length > 1 && lc(parts[0] ?? '') === 'bearer') {
      const value = parts.slice(1).join(' ').trim().split(' ')[0]?.trim() ?? '';
      if (value !== '') return value;
    }
  }
  return null;
}

/** Case-insensitive field lookup, like Go's encoding/json. */
function field(obj: Record<string, unknown>, name: string): unknown {
  if (name in obj) return obj[name];
  const k = Object.keys(obj).find((key) => lc(key) === lc(name));
  return k === undefined ? undefined : obj[k];
}

class DecodeError extends Error {}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function dStr(obj: Record<string, unknown>, name: string, where: string): string {
  const v = field(obj, name);
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new DecodeError(`json: cannot unmarshal ${jsonKind(v)} into Go struct field ${where}.${name} of type string`);
  return v;
}

function dInt(obj: Record<string, unknown>, name: string, where: string): number {
  const v = field(obj, name);
  if (v === undefined || v === null) return 0;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new DecodeError(`json: cannot unmarshal ${jsonKind(v)} into Go struct field ${where}.${name} of type int`);
  return v;
}

function dBool(obj: Record<string, unknown>, name: string, where: string): boolean {
  const v = field(obj, name);
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw new DecodeError(`json: cannot unmarshal ${jsonKind(v)} into Go struct field ${where}.${name} of type bool`);
  return v;
}

function dStrMap(obj: Record<string, unknown>, name: string, where: string): Record<string, string> | null {
  const v = field(obj, name);
  if (v === undefined || v === null) return null;
  if (!isObj(v) || !Object.values(v).every((x) => typeof x === 'string')) {
    throw new DecodeError(`json: cannot unmarshal ${jsonKind(v)} into Go struct field ${where}.${name} of type map[string]string`);
  }
  return { ...(v as Record<string, string>) };
}

function dStrList(obj: Record<string, unknown>, name: string, where: string): string[] | null {
  const v = field(obj, name);
  if (v === undefined || v === null) return null;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
    throw new DecodeError(`json: cannot unmarshal ${jsonKind(v)} into Go struct field ${where}.${name} of type []string`);
  }
  return [...v];
}

function jsonKind(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return `number ${String(v)}`;
  return typeof v === 'object' ? 'object' : typeof v;
}

function checkTypeOf(def: Record<string, unknown>): string {
  const has = (k: string): boolean => {
    const v = field(def, k);
    return v !== undefined && v !== null && v !== '' && v !== 0 && v !== false;
  };
  const interval = has('Interval');
  if (has('GRPC') && interval) return 'grpc';
  if (has('HTTP') && interval) return 'http';
  if (has('TTL')) return 'ttl';
  if (has('TCP') && interval) return 'tcp';
  if (has('UDP') && interval) return 'udp';
  if (has('AliasNode') || has('AliasService')) return 'alias';
  if (has('H2PING') && interval) return 'h2ping';
  return '';
}

function validUuid(id: string): string | null {
  if (id.length !== 36) return 'uuid string is wrong length';
  if (!/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(id)) return 'uuid is improperly formatted';
  return null;
}

function anonymousDenied(resource: 'node' | 'service', name: string): SimError {
  return new SimError(
    403,
    `Permission denied: anonymous token lacks permission '${resource}:write' on "${name}". ` +
      'The anonymous token is used implicitly when a request does not specify a token.',
  );
}

// ---------------------------------------------------------------------------------------------
// The simulator

type ReadKind = 'services' | 'nodes' | 'health' | 'connect' | 'ingress';

interface ReadQuery {
  kind: ReadKind;
  dc: DcState;
  serviceName: string;
  tags: string[] | null;
  stale: boolean;
  consistent: boolean;
  minIndex: number;
  anonymous: boolean;
  pretty: boolean;
  params: URLSearchParams;
}

interface Parked {
  query: ReadQuery;
  req: IncomingMessage;
  res: ServerResponse;
  timer: NodeJS.Timeout;
  record: SimRequest | undefined;
}

type Acl = 'off' | 'token' | 'anonymous' | 'unknown';

const ROUTES: Record<string, { methods: string[] }> = {
  '/v1/catalog/datacenters': { methods: ['GET'] },
  '/v1/catalog/services': { methods: ['GET'] },
  '/v1/catalog/nodes': { methods: ['GET'] },
  '/v1/health/service/': { methods: ['GET'] },
  '/v1/health/connect/': { methods: ['GET'] },
  '/v1/health/ingress/': { methods: ['GET'] },
  '/v1/catalog/register': { methods: ['PUT'] },
  '/v1/catalog/deregister': { methods: ['PUT'] },
  '/v1/query': { methods: ['GET', 'POST'] },
  '/v1/query/': { methods: ['GET'] },
  '/v1/status/leader': { methods: ['GET'] },
};

export class ConsulSim {
  /** Default true; false: X-Consul-KnownLeader false and non-stale reads/all writes fail "No cluster leader". */
  leader = true;
  /** Sent as X-Consul-LastContact on stale reads (0 on default/consistent reads, which the leader serves). */
  lastContactMs = 0;
  /** Every request received (token from ?token, X-Consul-Token or Authorization: Bearer). */
  readonly requests: SimRequest[] = [];
  private events = 0;
  /** Requests not answered yet; stop()/restart()/refuse drop them (not `abandoned`: the sim closed them). */
  private readonly inFlight = new Set<SimRequest>();
  private readonly records = new WeakMap<IncomingMessage, SimRequest>();
  /** Callers of until(), re-checked whenever a request arrives, is answered or is abandoned. */
  private readonly waiters = new Set<() => void>();
  /** Each request is handled this long after it arrives (a slow network or server). */
  latencyMs = 0;

  private readonly dcs = new Map<string, DcState>();
  private readonly dcNames: string[];
  private aclTokens: Set<string> | null;
  private readonly defaultWaitMs: number;
  private readonly maxWaitMs: number;
  private readonly rpcHoldTimeoutMs: number;
  private readonly tls: { key: string; cert: string; ca?: string } | null;

  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private readonly parked = new Set<Parked>();
  /** Requests waiting for a leader (rpcHoldTimeoutMs): released by stop()/restart()/refuse. */
  private readonly holdWaiters = new Map<NodeJS.Timeout, () => void>();
  private hung: { req: IncomingMessage; res: ServerResponse }[] = [];
  /** Requests a stuck process will never answer (`hangLosesRequests`); closed only by their clients or stop(). */
  private lost: { req: IncomingMessage; res: ServerResponse }[] = [];
  /**
   * How fault('hang') treats requests (section "Liveness" at the end of this file). false (default):
   * requests arriving during the hang are held and served when it ends; blocking reads already
   * parked go on as usual. true: as a stuck Consul process: every request in flight when the hang
   * starts (parked blocking reads included) or arriving during it is never answered, even after
   * the hang ends; only requests arriving later are served.
   */
  hangLosesRequests = false;
  private mode: FaultMode = 'none';
  private running = false;
  private desiredPort = 0;
  private boundPort = 0;

  constructor(options: SimOptions = {}) {
    this.dcNames = [...(options.datacenters ?? ['dc1'])];
    if (this.dcNames.length === 0) throw new Error('ConsulSim: at least one datacenter is needed');
    for (const name of this.dcNames) this.dcs.set(name, new DcState(name));
    this.aclTokens = options.aclTokens === null || options.aclTokens === undefined ? null : new Set(options.aclTokens);
    this.defaultWaitMs = options.defaultWaitMs ?? 5 * 60_000;
    this.maxWaitMs = options.maxWaitMs ?? 10 * 60_000;
    this.rpcHoldTimeoutMs = options.rpcHoldTimeoutMs ?? 0;
    this.tls = options.tls ?? null;
  }

  get port(): number {
    return this.boundPort;
  }

  /**
   * Replaces the valid ACL tokens (a token revoked or rotated in Consul); takes effect from the
   * next request. Queries already blocked keep running, as in Consul.
   */
  setAclTokens(tokens: string[]): void {
    if (this.aclTokens === null) throw new Error('ConsulSim: ACLs are off (construct with aclTokens)');
    this.aclTokens = new Set(tokens);
  }

  get url(): string {
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.boundPort}`;
  }

  /** Binds 127.0.0.1 (port 0 = random; omitted = the previous port, if any). Restartable after stop(). */
  async start(port?: number): Promise<void> {
    if (this.running) throw new Error('ConsulSim: already started');
    if (port !== undefined) this.desiredPort = port;
    this.running = true;
    if (this.mode !== 'refuse') await this.listen();
  }

  /** Closes the server and destroys every open connection (blocked queries included). */
  async stop(): Promise<void> {
    this.running = false;
    await this.closeListener();
  }

  /**
   * error500: every API call answers 500 "rpc error making call: EOF" (queries already blocked answer so too);
   * hang: new requests get no answer until the mode changes (then they are served) or stop();
   * refuse: the port is closed (connections refused) until a mode other than 'refuse' re-listens on it.
   */
  async fault(mode: FaultMode): Promise<void> {
    const previous = this.mode;
    this.mode = mode;
    if (mode === 'hang' && previous !== 'hang' && this.hangLosesRequests) this.loseParked();
    if (mode === 'refuse' && previous !== 'refuse') await this.closeListener();
    if (mode === 'error500') {
      for (const p of [...this.parked]) this.finishParked(p, 'fault', () => this.failRead(p.req, p.res, p.query.kind, 500, RPC_ERROR_TEXT));
    }
    if (previous === 'refuse' && mode !== 'refuse' && this.running && this.server === null) await this.listen();
    if (previous === 'hang' && mode !== 'hang') {
      const released = this.hung;
      this.hung = [];
      if (this.hangLosesRequests) return this.loseForGood(released);
      for (const { req, res } of released) if (!res.destroyed && !res.writableEnded) this.dispatch(req, res);
    }
  }

  /** A Consul restart: connections drop, the catalog stays, every dc's index restarts at indexBase (default 1). */
  async restart(options: { indexBase?: number } = {}): Promise<void> {
    const base = options.indexBase ?? 1;
    await this.closeListener();
    for (const dc of this.dcs.values()) dc.reindex(base);
    this.running = true;
    if (this.mode !== 'refuse') await this.listen();
  }

  index(dc: string): number {
    return this.dcState(dc).raft;
  }

  waiting(): number {
    return this.parked.size;
  }

  /**
   * Resolves with the first request, already recorded or still to come, for which `test` holds
   * (checked again whenever a request arrives, is answered or is abandoned by its client); rejects
   * naming `what` after `timeoutMs`. For tests that wait on what the client did, not on a clock.
   */
  until(test: (r: SimRequest) => boolean, what: string, timeoutMs = 10_000): Promise<SimRequest> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.requests.find(test);
        if (!found) return;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve(found);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        const recent = this.requests.slice(-10).map((r) => `${r.method} ${r.path} status ${r.status}${r.abandoned ? ' abandoned' : ''}`);
        reject(new Error(`ConsulSim: no ${what} within ${timeoutMs} ms; last requests: ${recent.join('; ')}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  private notify(): void {
    for (const check of [...this.waiters]) check();
  }

  // --- JS state API (each call is one raft write in its dc) ---------------------------------

  registerNode(dc: string, node: SimNode): void {
    const state = this.dcState(dc);
    if (!node.Node) throw new Error('Must provide node');
    if (!node.Address) throw new Error('Must provide address');
    const input: RegisterInput = {
      node: {
        ID: node.ID ?? stableUuid(`${dc}/${lc(node.Node)}`),
        Node: node.Node,
        Address: node.Address,
        Datacenter: dc,
        TaggedAddresses: node.TaggedAddresses ? { ...node.TaggedAddresses } : agentTaggedAddresses(node.Address),
        Meta: { ...(node.Meta ?? {}) },
      },
      service: null,
      checks: [],
    };
    this.write(state, (idx) => state.ensureNode(idx, input.node));
  }

  deregisterNode(dc: string, node: string): void {
    const state = this.dcState(dc);
    this.write(state, (idx) => state.deleteNode(idx, node));
  }

  registerService(dc: string, node: string, svc: SimService): void {
    const state = this.dcState(dc);
    if (!state.node(node)) throw new Error(`Missing node registration: ${node}`);
    if (!svc.Service) throw new Error('Must provide service name');
    const rec = {
      ID: svc.ID ?? svc.Service,
      Service: svc.Service,
      Tags: svc.Tags ? [...svc.Tags] : null,
      Address: svc.Address ?? '',
      TaggedAddresses: svc.TaggedAddresses ? { ...svc.TaggedAddresses } : null,
      Meta: { ...(svc.Meta ?? {}) },
      Port: svc.Port ?? 0,
      Weights: validWeights(svc.Weights),
      EnableTagOverride: false,
    };
    this.write(state, (idx) => state.ensureService(idx, node, rec));
  }

  deregisterService(dc: string, node: string, serviceId: string): void {
    const state = this.dcState(dc);
    this.write(state, (idx) => state.deleteService(idx, node, serviceId));
  }

  setCheck(dc: string, node: string, check: SimCheck): void {
    const state = this.dcState(dc);
    const nodeRec = state.node(node);
    if (!nodeRec) throw new Error(`Missing node registration: ${node}`);
    const serviceId = check.ServiceID ?? '';
    if (serviceId !== '' && !state.service(node, serviceId)) throw new Error(`Missing service registration: ${serviceId}`);
    const rec: Omit<CheckRec, 'CreateIndex' | 'ModifyIndex'> = {
      Node: nodeRec.Node,
      CheckID: check.CheckID,
      Name: check.Name ?? check.CheckID,
      Status: check.Status,
      Notes: '',
      Output: check.Output ?? '',
      ServiceID: serviceId,
      ServiceName: '',
      ServiceTags: null,
      Type: '',
      Interval: '',
      Timeout: '',
      ExposedPort: 0,
      Definition: {},
    };
    this.write(state, (idx) => state.ensureCheck(idx, rec));
  }

  removeCheck(dc: string, node: string, checkId: string): void {
    const state = this.dcState(dc);
    this.write(state, (idx) => state.deleteCheck(idx, node, checkId));
  }

  // --- the service mesh (see "Service mesh" below) ------------------------------------------

  /**
   * Registers a sidecar proxy, a Connect-native service or an ingress gateway (`svc.Kind`, `Proxy`,
   * `Connect`) as registerService does. With `virtualIps`, a proxy or native service gets its
   * service's virtual IP as the `consul-virtual` tagged address, as Consul's state store does.
   */
  registerMeshService(dc: string, node: string, svc: SimService, options: { virtualIps?: boolean } = {}): void {
    const state = this.dcState(dc);
    if (!state.node(node)) throw new Error(`Missing node registration: ${node}`);
    if (svc.Kind === 'connect-proxy' && !svc.Proxy?.DestinationServiceName) throw new Error('Proxy.DestinationServiceName must be set');
    const rec = {
      ID: svc.ID ?? svc.Service,
      Service: svc.Service,
      Tags: svc.Tags ? [...svc.Tags] : null,
      Address: svc.Address ?? '',
      TaggedAddresses: null as Record<string, ServiceAddress> | null,
      Meta: { ...(svc.Meta ?? {}) },
      Port: svc.Port ?? 0,
      Weights: validWeights(svc.Weights),
      EnableTagOverride: false,
      ...(svc.Kind ? { Kind: svc.Kind } : {}),
      ...(svc.Proxy ? { Proxy: { DestinationServiceName: svc.Proxy.DestinationServiceName } } : {}),
      ...(svc.Connect?.Native ? { Connect: { Native: true } } : {}),
    };
    this.write(state, (idx) => {
      const served = meshServed(rec);
      if (options.virtualIps && served !== null) rec.TaggedAddresses = { 'consul-virtual': { Address: assignVirtualIp(state, served), Port: rec.Port } };
      state.ensureService(idx, node, rec);
    });
  }

  /**
   * Writes an ingress-gateway config entry: the gateway `gateway` exposes `services` on its
   * listeners (ports are not modelled: Consul's /v1/health/ingress/ answers gateway instances).
   */
  setIngressGateway(dc: string, gateway: string, services: string[]): void {
    const state = this.dcState(dc);
    this.write(state, (idx) => {
      state.ingressConfig.set(lc(gateway), [...services]);
      state.tableConfig = Math.max(state.tableConfig, idx);
    });
  }

  // --- internals: state ----------------------------------------------------------------------

  private dcState(dc: string): DcState {
    const state = this.dcs.get(dc);
    if (!state) throw new Error(`ConsulSim: unknown datacenter ${dc}`);
    return state;
  }

  /** One raft write: the index moves even when the write changes nothing or fails in the FSM. */
  private write(state: DcState, apply: (idx: number) => void): void {
    const idx = state.next();
    try {
      apply(idx);
    } finally {
      this.wake(state);
    }
  }

  private resultIndex(q: ReadQuery): number {
    const idx =
      q.kind === 'services' ? q.dc.tableServices
      : q.kind === 'nodes' ? q.dc.tableNodes
      : q.kind === 'health' ? q.dc.healthIndex(q.serviceName)
      : meshIndex(q.dc);
    return Math.max(idx, 1); // SetQueryMeta: never 0
  }

  private wake(state: DcState): void {
    for (const p of [...this.parked]) {
      if (p.query.dc === state && this.resultIndex(p.query) > p.query.minIndex) {
        this.finishParked(p, 'change', () => this.answerRead(p.req, p.res, p.query));
      }
    }
  }

  private finishParked(p: Parked, reason: 'change' | 'timeout' | 'fault', answer: () => void): void {
    if (!this.parked.delete(p)) return;
    clearTimeout(p.timer);
    if (p.record) p.record.wokenBy = reason;
    if (!p.res.destroyed && !p.res.writableEnded) answer();
  }

  private resolveAcl(token: string | null): Acl {
    if (this.aclTokens === null) return 'off';
    if (token === null) return 'anonymous';
    return this.aclTokens.has(token) ? 'token' : 'unknown';
  }

  // --- internals: server lifecycle ---------------------------------------------------------

  private async listen(): Promise<void> {
    const handler = (req: IncomingMessage, res: ServerResponse): void => this.onRequest(req, res);
    const tls = this.tls;
    const server: Server = tls
      ? createHttpsServer({ key: tls.key, cert: tls.cert, ...(tls.ca ? { ca: tls.ca, requestCert: true, rejectUnauthorized: true } : {}) }, handler)
      : createServer(handler);
    // TLS servers report sockets on 'secureConnection'; plain 'connection' covers both for stop().
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.desiredPort, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.boundPort = (server.address() as AddressInfo).port;
    this.desiredPort = this.boundPort;
    this.server = server;
  }

  private async closeListener(): Promise<void> {
    this.inFlight.clear(); // dropped by the sim, not abandoned by their clients
    for (const p of this.parked) clearTimeout(p.timer);
    this.parked.clear();
    for (const [timer, release] of this.holdWaiters) {
      clearTimeout(timer);
      release();
    }
    this.holdWaiters.clear();
    this.hung = [];
    this.lost = [];
    const server = this.server;
    this.server = null;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    await closed;
  }

  // --- internals: HTTP ---------------------------------------------------------------------

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const record: SimRequest = {
      method: req.method ?? 'GET',
      path: decodePath(url.pathname),
      query: firstParams(url.searchParams),
      token: tokenOf(req, url.searchParams),
      forwardedFor: typeof req.headers['x-forwarded-for'] === 'string' ? req.headers['x-forwarded-for'] : null,
      at: Date.now(),
      seq: this.events++,
      doneSeq: null,
      status: null,
      parkedForMs: null,
      wokenBy: null,
      abandoned: false,
    };
    this.requests.push(record);
    this.records.set(req, record);
    this.inFlight.add(record);
    res.once('finish', () => {
      record.doneSeq = this.events++;
      record.status = res.statusCode;
      this.inFlight.delete(record);
      this.notify();
    });
    res.once('close', () => {
      if (!this.inFlight.delete(record)) return;
      record.abandoned = true;
      this.notify();
    });
    this.notify();
    if (this.mode === 'hang') {
      this.hung.push({ req, res });
      return;
    }
    if (this.latencyMs > 0) setTimeout(() => this.dispatch(req, res), this.latencyMs);
    else this.dispatch(req, res);
  }

  private dispatch(req: IncomingMessage, res: ServerResponse): void {
    Promise.resolve()
      .then(() => this.route(req, res))
      .catch((err: unknown) => {
        if (res.destroyed || res.writableEnded) return;
        if (err instanceof SimError) this.sendText(req, res, err.status, err.message, true);
        else this.sendText(req, res, 500, err instanceof Error ? err.message : String(err), true);
      });
  }

  private route(req: IncomingMessage, res: ServerResponse): Promise<void> | void {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const path = decodePath(url.pathname);
    const method = req.method ?? 'GET';
    const subtree = ['/v1/health/service/', '/v1/health/connect/', '/v1/health/ingress/', '/v1/query/'].find((p) => path.startsWith(p));
    const pattern = subtree ?? path;
    const route = ROUTES[pattern];
    if (!route) {
      if (path === '/v1/health/service') {
        // Go's ServeMux redirects a subtree root without its slash.
        res.writeHead(301, { Location: '/v1/health/service/', 'Content-Type': 'text/html; charset=utf-8' });
        res.end(method === 'GET' ? '<a href="/v1/health/service/">Moved Permanently</a>.\n\n' : undefined);
        return;
      }
      // HTTPHandlers.Index: not wrapped, so none of the Consul headers.
      if (path === '/') {
        this.sendRaw(res, 200, 'Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent configuration and restart.', 'text/plain; charset=utf-8');
        return;
      }
      this.sendRaw(
        res,
        404,
        path.includes('/v1/')
          ? 'Invalid URL path: not a recognized HTTP API endpoint\n'
          : "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n",
        'text/plain; charset=utf-8',
      );
      return;
    }
    if (method === 'OPTIONS') {
      this.wrapHeaders(res);
      res.setHeader('Allow', ['OPTIONS', ...route.methods].join(','));
      res.writeHead(200, { 'Content-Length': 0 });
      res.end();
      return;
    }
    if (!route.methods.includes(method)) {
      res.setHeader('Allow', ['OPTIONS', ...route.methods].join(','));
      this.sendText(req, res, 405, `method ${method} not allowed`, true);
      return;
    }
    switch (pattern) {
      case '/v1/catalog/datacenters':
        return this.handleDatacenters(req, res, url.searchParams);
      case '/v1/catalog/services':
        return this.handleRead(req, res, url.searchParams, 'services', '');
      case '/v1/catalog/nodes':
        return this.handleRead(req, res, url.searchParams, 'nodes', '');
      case '/v1/health/service/':
        return this.handleRead(req, res, url.searchParams, 'health', path.slice('/v1/health/service/'.length));
      case '/v1/health/connect/':
        return this.handleRead(req, res, url.searchParams, 'connect', path.slice('/v1/health/connect/'.length));
      case '/v1/health/ingress/':
        return this.handleRead(req, res, url.searchParams, 'ingress', path.slice('/v1/health/ingress/'.length));
      case '/v1/catalog/register':
        return this.handleWrite(req, res, url.searchParams, 'register');
      case '/v1/catalog/deregister':
        return this.handleWrite(req, res, url.searchParams, 'deregister');
      case '/v1/query':
      case '/v1/query/':
        return this.handleQuery(req, res, url.searchParams, path);
      case '/v1/status/leader':
        return this.handleStatusLeader(req, res, url.searchParams);
    }
  }

  private wrapHeaders(res: ServerResponse): void {
    res.setHeader('Vary', 'Accept-Encoding');
    res.setHeader('X-Consul-Default-Acl-Policy', this.aclTokens === null ? 'allow' : 'deny');
  }

  private sendRaw(res: ServerResponse, status: number, body: string, contentType: string): void {
    const buf = Buffer.from(body);
    res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': buf.length });
    res.end(buf);
  }

  /** A wrapped (Consul-handler) response: Consul headers, gzip when asked for and >= 1400 bytes. */
  private sendBody(req: IncomingMessage, res: ServerResponse, status: number, body: string, contentType: string): void {
    this.wrapHeaders(res);
    let buf = Buffer.from(body);
    const accept = req.headers['accept-encoding'];
    if (typeof accept === 'string' && /\bgzip\b/i.test(accept) && buf.length >= 1400) {
      buf = gzipSync(buf);
      res.setHeader('Content-Encoding', 'gzip');
    }
    res.setHeader('Content-Type', contentType);
    res.setHeader('Content-Length', buf.length);
    res.writeHead(status);
    res.end(buf);
  }

  private sendText(req: IncomingMessage, res: ServerResponse, status: number, text: string, wrapped: boolean): void {
    if (wrapped) this.sendBody(req, res, status, text, 'text/plain; charset=utf-8');
    else this.sendRaw(res, status, text, 'text/plain; charset=utf-8');
  }

  private sendJson(req: IncomingMessage, res: ServerResponse, value: unknown, params: URLSearchParams): void {
    this.sendBody(req, res, 200, goJson(value, params.has('pretty')), 'application/json');
  }

  /** Waits (up to rpcHoldTimeoutMs) for a leader; false when there is none (or the client left). */
  private async waitForLeader(res: ServerResponse): Promise<boolean> {
    if (this.leader) return true;
    const deadline = Date.now() + this.rpcHoldTimeoutMs;
    while (!this.leader && Date.now() < deadline && !res.destroyed && this.server !== null) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.holdWaiters.delete(timer);
          resolve();
        }, Math.min(20, Math.max(1, deadline - Date.now())));
        this.holdWaiters.set(timer, resolve);
      });
    }
    return this.leader;
  }

  private handleDatacenters(req: IncomingMessage, res: ServerResponse, params: URLSearchParams): void {
    if (this.mode === 'error500') {
      this.sendText(req, res, 500, RPC_ERROR_TEXT, true);
      return;
    }
    // Catalog.ListDatacenters: no ACL, no meta headers; the agent's own dc first (ordered by RTT).
    this.sendJson(req, res, [...this.dcNames], params);
  }

  /** Errors of read endpoints: catalog handlers defer setMeta, so zero meta (index 1) goes out too. */
  private failRead(req: IncomingMessage, res: ServerResponse, kind: ReadKind, status: number, text: string): void {
    if (kind === 'services' || kind === 'nodes') {
      res.setHeader('X-Consul-Lastcontact', '0');
      res.setHeader('X-Consul-Index', '1');
      res.setHeader('X-Consul-Knownleader', 'false');
    }
    this.sendText(req, res, status, text, true);
  }

  private async handleRead(req: IncomingMessage, res: ServerResponse, params: URLSearchParams, kind: ReadKind, serviceName: string): Promise<void> {
    // s.parse(): dc, token, consistency, wait/index.
    const dcName = params.get('dc') || (this.dcNames[0] as string);
    const token = tokenOf(req, params);
    const stale = params.has('stale');
    const consistent = params.has('consistent');
    if (stale && consistent) {
      this.sendText(req, res, 400, 'Cannot specify ?stale with ?consistent, conflicting semantics.', true);
      return;
    }
    const waitText = params.get('wait') ?? '';
    let waitMs = 0;
    if (waitText !== '') {
      const parsed = parseGoDuration(waitText);
      if (parsed === null) {
        this.sendText(req, res, 400, 'Invalid wait time', true);
        return;
      }
      waitMs = parsed;
    }
    const indexText = params.get('index') ?? '';
    let minIndex = 0;
    if (indexText !== '') {
      if (!/^\d+$/.test(indexText) || BigInt(indexText) > 0xffffffffffffffffn) {
        this.sendText(req, res, 400, 'Invalid index', true);
        return;
      }
      minIndex = Number(indexText);
    }
    for (const unsupported of ['filter', 'node-meta']) {
      if (params.has(unsupported)) {
        this.sendText(req, res, 400, `consul-sim: ?${unsupported} is not supported`, true);
        return;
      }
    }
    if ((kind === 'health' || kind === 'connect' || kind === 'ingress') && serviceName === '') {
      this.sendText(req, res, 400, 'Missing service name', true);
      return;
    }

    // The RPC: dc routing, then the leader (unless stale), then the token.
    if (this.mode === 'error500') return this.failRead(req, res, kind, 500, RPC_ERROR_TEXT);
    const dc = this.dcs.get(dcName);
    if (!dc) return this.failRead(req, res, kind, 500, 'No path to datacenter');
    if (!stale && !(await this.waitForLeader(res))) {
      if (res.destroyed) return;
      return this.failRead(req, res, kind, 500, 'No cluster leader');
    }
    if (res.destroyed) return;
    if ((this.mode as FaultMode) === 'error500') return this.failRead(req, res, kind, 500, RPC_ERROR_TEXT);
    const acl = this.resolveAcl(token);
    if (acl === 'unknown') return this.failRead(req, res, kind, 403, 'ACL not found');

    const query: ReadQuery = {
      kind,
      dc,
      serviceName,
      tags: params.has('tag') ? params.getAll('tag') : null,
      stale,
      consistent,
      minIndex,
      anonymous: acl === 'anonymous',
      pretty: params.has('pretty'),
      params,
    };
    if (minIndex === 0 || this.resultIndex(query) > minIndex) {
      this.answerRead(req, res, query);
      return;
    }
    // Park: answer when the result's index passes minIndex, or at the (jittered) timeout.
    let timeout = waitMs;
    if (timeout > this.maxWaitMs) timeout = this.maxWaitMs;
    else if (timeout <= 0) timeout = this.defaultWaitMs;
    timeout += Math.random() * (timeout / 16);
    const record = this.records.get(req);
    if (record) record.parkedForMs = timeout;
    const parked: Parked = {
      query,
      req,
      res,
      timer: setTimeout(() => this.finishParked(parked, 'timeout', () => this.answerRead(req, res, query)), timeout),
      record,
    };
    this.parked.add(parked);
    res.on('close', () => {
      if (this.parked.delete(parked)) clearTimeout(parked.timer);
    });
  }

  private answerRead(req: IncomingMessage, res: ServerResponse, q: ReadQuery): void {
    const index = this.resultIndex(q);
    const servedByLeader = !q.stale && this.leader;
    res.setHeader('X-Consul-Lastcontact', String(servedByLeader ? 0 : Math.max(0, Math.floor(this.lastContactMs))));
    res.setHeader('X-Consul-Index', String(index));
    res.setHeader('X-Consul-Knownleader', this.leader ? 'true' : 'false');
    const catalogRead = q.kind === 'services' || q.kind === 'nodes';
    if (catalogRead) res.setHeader('X-Consul-Effective-Consistency', q.consistent ? 'consistent' : q.stale ? 'stale' : 'leader');
    // Streaming serves service health, Connect included; ingress results are blocking queries.
    res.setHeader('X-Consul-Query-Backend', (q.kind === 'health' || q.kind === 'connect') && q.minIndex > 0 ? 'streaming' : 'blocking-query');

    let body: unknown;
    if (q.kind === 'services') {
      body = q.anonymous ? {} : q.dc.catalogServices();
    } else if (q.kind === 'nodes') {
      body = q.anonymous ? [] : q.dc.catalogNodes();
    } else {
      let entries = q.anonymous ? [] : q.kind === 'health' ? q.dc.healthEntries(q.serviceName, q.tags) : meshEntries(q.dc, q.kind, q.serviceName);
      // ?passing is read after the RPC in Consul (so a bad value is only reported then).
      let passing = false;
      if (q.params.has('passing')) {
        const v = q.params.get('passing') ?? '';
        const truthy = ['1', 't', 'T', 'TRUE', 'true', 'True'];
        const falsy = ['0', 'f', 'F', 'FALSE', 'false', 'False'];
        if (v === '' || truthy.includes(v)) passing = true;
        else if (!falsy.includes(v)) {
          this.sendText(req, res, 400, 'Invalid value for ?passing', true);
          return;
        }
      }
      if (passing) entries = filterNonPassing(entries);
      body = entries;
    }
    this.sendJson(req, res, body, q.params);
  }

  // --- prepared queries (the section at the end of this file) ---------------------------------

  private readonly preparedQueries = new SimPreparedQueries();

  /** Prepared queries kept by the sim, per datacenter (for tests that look). */
  get queryCount(): number {
    return this.preparedQueries.size;
  }

  // --- liveness (see "Liveness" at the end of this file) ---------------------------------

  /** GET /v1/status/leader: the leader's server address as a JSON string, "" without one. */
  private handleStatusLeader(req: IncomingMessage, res: ServerResponse, params: URLSearchParams): void {
    if (this.mode === 'error500') return this.sendText(req, res, 500, RPC_ERROR_TEXT, true);
    this.sendJson(req, res, statusLeader(this.leader), params);
  }

  /** A stuck process: the blocking reads parked now are answered neither by changes nor by their wait. */
  private loseParked(): void {
    for (const p of [...this.parked]) {
      this.parked.delete(p);
      clearTimeout(p.timer);
      this.lost.push({ req: p.req, res: p.res });
    }
  }

  /** The hang ended: what it held stays unanswered (the stuck handlers never return). */
  private loseForGood(held: { req: IncomingMessage; res: ServerResponse }[]): void {
    this.lost.push(...held.filter(({ res }) => !res.destroyed && !res.writableEnded));
  }

  private async handleQuery(req: IncomingMessage, res: ServerResponse, params: URLSearchParams, path: string): Promise<void> {
    const body = req.method === 'POST' ? await this.readBody(req) : '';
    if (this.mode === 'error500') throw new SimError(500, RPC_ERROR_TEXT);
    const dcName = params.get('dc') || (this.dcNames[0] as string);
    const dc = this.dcs.get(dcName);
    if (!dc) throw new SimError(500, 'No path to datacenter');
    if (this.resolveAcl(tokenOf(req, params)) === 'unknown') throw new SimError(403, 'ACL not found');
    const reply = this.preparedQueries.handle(req.method ?? 'GET', path, body, dc, (name) => this.dcs.get(name), this.dcNames);
    res.setHeader('X-Consul-Index', String(Math.max(dc.raft, 1)));
    res.setHeader('X-Consul-Knownleader', this.leader ? 'true' : 'false');
    res.setHeader('X-Consul-Lastcontact', '0');
    this.sendJson(req, res, reply, params);
  }

  // --- writes --------------------------------------------------------------------------------

  private async readBody(req: IncomingMessage): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }

  private async handleWrite(req: IncomingMessage, res: ServerResponse, params: URLSearchParams, op: 'register' | 'deregister'): Promise<void> {
    const text = await this.readBody(req);
    let body: Record<string, unknown>;
    try {
      if (text.trim() === '') throw new DecodeError('EOF');
      const parsed: unknown = JSON.parse(text);
      if (!isObj(parsed)) throw new DecodeError(`json: cannot unmarshal ${jsonKind(parsed)} into Go value of type structs.${op === 'register' ? 'RegisterRequest' : 'DeregisterRequest'}`);
      body = parsed;
    } catch (err) {
      this.sendText(req, res, 400, `Request decode failed: ${err instanceof Error ? err.message : String(err)}`, true);
      return;
    }
    let decoded: { dc: string; apply: (state: DcState, acl: Acl) => (idx: number) => void };
    try {
      decoded = op === 'register' ? this.decodeRegister(body, params) : this.decodeDeregister(body, params);
    } catch (err) {
      if (err instanceof DecodeError) {
        this.sendText(req, res, 400, `Request decode failed: ${err.message}`, true);
        return;
      }
      throw err;
    }
    const token = tokenOf(req, params);

    if (this.mode === 'error500') throw new SimError(500, RPC_ERROR_TEXT);
    const state = this.dcs.get(decoded.dc);
    if (!state) throw new SimError(500, 'No path to datacenter');
    if (!(await this.waitForLeader(res))) {
      if (res.destroyed) return;
      throw new SimError(500, 'No cluster leader');
    }
    if (res.destroyed) return;
    const acl = this.resolveAcl(token);
    if (acl === 'unknown') throw new SimError(403, 'ACL not found');
    const apply = decoded.apply(state, acl); // validation + ACL checks; throws SimError
    this.write(state, apply); // FSM errors (thrown) still consume a raft index
    this.sendJson(req, res, true, params);
  }

  private decodeRegister(body: Record<string, unknown>, params: URLSearchParams): { dc: string; apply: (state: DcState, acl: Acl) => (idx: number) => void } {
    const W = 'RegisterRequest';
    const dc = dStr(body, 'Datacenter', W) || params.get('dc') || (this.dcNames[0] as string);
    const nodeName = dStr(body, 'Node', W);
    const nodeId = dStr(body, 'ID', W);
    const address = dStr(body, 'Address', W);
    const tagged = dStrMap(body, 'TaggedAddresses', W);
    const meta = dStrMap(body, 'NodeMeta', W);
    const skipNodeUpdate = dBool(body, 'SkipNodeUpdate', W);
    const svcRaw = field(body, 'Service');
    let service: RegisterInput['service'] = null;
    if (svcRaw !== undefined && svcRaw !== null) {
      if (!isObj(svcRaw)) throw new DecodeError(`json: cannot unmarshal ${jsonKind(svcRaw)} into Go struct field ${W}.Service of type structs.NodeService`);
      const S = `${W}.Service`;
      const taRaw = field(svcRaw, 'TaggedAddresses');
      let svcTagged: Record<string, ServiceAddress> | null = null;
      if (taRaw !== undefined && taRaw !== null) {
        if (!isObj(taRaw)) throw new DecodeError(`json: cannot unmarshal ${jsonKind(taRaw)} into Go struct field ${S}.TaggedAddresses of type map[string]structs.ServiceAddress`);
        svcTagged = {};
        for (const [k, v] of Object.entries(taRaw)) {
          if (!isObj(v)) throw new DecodeError(`json: cannot unmarshal ${jsonKind(v)} into Go struct field ${S}.TaggedAddresses of type structs.ServiceAddress`);
          svcTagged[k] = { Address: dStr(v, 'Address', `${S}.TaggedAddresses`), Port: dInt(v, 'Port', `${S}.TaggedAddresses`) };
        }
      }
      const wRaw = field(svcRaw, 'Weights');
      let weights: Weights | null = null;
      if (wRaw !== undefined && wRaw !== null) {
        if (!isObj(wRaw)) throw new DecodeError(`json: cannot unmarshal ${jsonKind(wRaw)} into Go struct field ${S}.Weights of type structs.Weights`);
        weights = { Passing: dInt(wRaw, 'Passing', `${S}.Weights`), Warning: dInt(wRaw, 'Warning', `${S}.Weights`) };
      }
      service = {
        ID: dStr(svcRaw, 'ID', S),
        Service: dStr(svcRaw, 'Service', S),
        Tags: dStrList(svcRaw, 'Tags', S),
        Address: dStr(svcRaw, 'Address', S),
        TaggedAddresses: svcTagged,
        Meta: dStrMap(svcRaw, 'Meta', S),
        Port: dInt(svcRaw, 'Port', S),
        Weights: validWeights(weights),
        EnableTagOverride: dBool(svcRaw, 'EnableTagOverride', S),
        ...decodeMesh(svcRaw, S),
      };
    }
    const rawChecks: Record<string, unknown>[] = [];
    const one = field(body, 'Check');
    if (one !== undefined && one !== null) {
      if (!isObj(one)) throw new DecodeError(`json: cannot unmarshal ${jsonKind(one)} into Go struct field ${W}.Check of type structs.HealthCheck`);
      rawChecks.push(one);
    }
    const many = field(body, 'Checks');
    if (many !== undefined && many !== null) {
      if (!Array.isArray(many) || !many.every(isObj)) throw new DecodeError(`json: cannot unmarshal ${jsonKind(many)} into Go struct field ${W}.Checks of type structs.HealthChecks`);
      rawChecks.push(...many);
    }
    const checks = rawChecks.map((c): RegisterInput['checks'][number] => {
      const C = 'HealthCheck';
      const defRaw = field(c, 'Definition');
      if (defRaw !== undefined && defRaw !== null && !isObj(defRaw)) {
        throw new DecodeError(`json: cannot unmarshal ${jsonKind(defRaw)} into Go struct field ${C}.Definition of type structs.HealthCheckDefinition`);
      }
      const definition = isObj(defRaw) ? { ...defRaw } : {};
      const name = dStr(c, 'Name', C);
      const type = dStr(c, 'Type', C);
      return {
        Node: dStr(c, 'Node', C) || nodeName,
        CheckID: dStr(c, 'CheckID', C) || name, // checkPreApply
        Name: name,
        Status: dStr(c, 'Status', C),
        Notes: dStr(c, 'Notes', C),
        Output: dStr(c, 'Output', C),
        ServiceID: dStr(c, 'ServiceID', C),
        ServiceName: dStr(c, 'ServiceName', C),
        ServiceTags: dStrList(c, 'ServiceTags', C),
        Type: type || checkTypeOf(definition),
        Interval: dStr(c, 'Interval', C),
        Timeout: dStr(c, 'Timeout', C),
        ExposedPort: dInt(c, 'ExposedPort', C),
        Definition: definition,
      };
    });

    const apply = (state: DcState, acl: Acl): ((idx: number) => void) => {
      // Catalog.Register: validation, then ACLs (service:write, node:write when the node changes, checks).
      if (nodeName === '') throw new SimError(500, 'Must provide node');
      if (nodeId !== '') {
        const bad = validUuid(nodeId);
        if (bad) throw new SimError(500, `Bad node ID: ${bad}`);
      }
      if (address === '' && !skipNodeUpdate) throw new SimError(500, 'Must provide address if SkipNodeUpdate is not set');
      if (service) {
        if (service.ID === '' && service.Service !== '') service.ID = service.Service;
        if (service.ID !== '' && service.Service === '') throw new SimError(500, 'Must provide service name with ID');
        if (service.Address === '0.0.0.0' || service.Address === '::' || service.Address === '[::]') throw new SimError(500, 'Invalid service address');
      }
      const existingNode = state.node(nodeName);
      const node = {
        ID: nodeId,
        Node: nodeName,
        Address: address,
        Datacenter: dc,
        TaggedAddresses: tagged,
        Meta: meta,
      };
      const changesNode =
        !existingNode ||
        (!skipNodeUpdate &&
          (existingNode.ID !== node.ID || existingNode.Address !== node.Address || existingNode.Datacenter !== node.Datacenter ||
            lc(existingNode.Node) !== lc(node.Node) || canon(existingNode.TaggedAddresses) !== canon(node.TaggedAddresses) ||
            canon(existingNode.Meta) !== canon(node.Meta)));
      if (acl === 'anonymous') {
        if (service && service.Service !== 'consul') throw anonymousDenied('service', service.Service);
        if (changesNode) throw anonymousDenied('node', nodeName);
        for (const c of checks) {
          if (c.ServiceID === '') throw anonymousDenied('node', nodeName);
          const svc = state.service(nodeName, c.ServiceID);
          throw anonymousDenied('service', svc?.Service ?? c.ServiceID);
        }
      }
      for (const c of checks) {
        if (lc(c.Node) !== lc(nodeName)) {
          // ensureCheckIfNodeMatches (an FSM error: the raft index still moves)
          return () => {
            throw new SimError(500, `check node "${c.Node}" does not match node "${nodeName}"`);
          };
        }
      }
      return (idx: number): void => {
        if (!existingNode && skipNodeUpdate && address === '') throw new SimError(500, 'failed inserting node: Missing node registration');
        // Service checks must name a service registered before or in this request; checked up
        // front because Consul applies the whole registration in one transaction.
        for (const c of checks) {
          if (c.ServiceID !== '' && !state.service(nodeName, c.ServiceID) && !(service && lc(service.ID) === lc(c.ServiceID))) {
            throw new SimError(500, `failed inserting check on node "${c.Node}": Missing service registration`);
          }
        }
        if (changesNode) state.ensureNode(idx, node);
        if (service) state.ensureService(idx, nodeName, service);
        for (const c of checks) state.ensureCheck(idx, c);
      };
    };
    return { dc, apply };
  }

  private decodeDeregister(body: Record<string, unknown>, params: URLSearchParams): { dc: string; apply: (state: DcState, acl: Acl) => (idx: number) => void } {
    const W = 'DeregisterRequest';
    const dc = dStr(body, 'Datacenter', W) || params.get('dc') || (this.dcNames[0] as string);
    const nodeName = dStr(body, 'Node', W);
    const serviceId = dStr(body, 'ServiceID', W);
    const checkId = dStr(body, 'CheckID', W);
    const apply = (state: DcState, acl: Acl): ((idx: number) => void) => {
      if (nodeName === '') throw new SimError(500, 'Must provide node');
      if (acl === 'anonymous') {
        // vetDeregisterWithACL: node:write would allow anything; anonymous has nothing.
        if (serviceId !== '') {
          const svc = state.service(nodeName, serviceId);
          if (!svc) throw new SimError(500, `Unknown service ID '${serviceId}' for service '${serviceId}'`);
          throw anonymousDenied('service', svc.Service);
        }
        if (checkId !== '') {
          const chk = state.checks.get(key2(nodeName, checkId));
          if (!chk) throw new SimError(500, `Unknown check ID '${checkId}' for check '${checkId}'`);
          throw chk.ServiceID !== '' ? anonymousDenied('service', chk.ServiceName) : anonymousDenied('node', nodeName);
        }
        throw anonymousDenied('node', nodeName);
      }
      return (idx: number): void => {
        if (serviceId !== '') state.deleteService(idx, nodeName, serviceId);
        else if (checkId !== '') state.deleteCheck(idx, nodeName, checkId);
        else state.deleteNode(idx, nodeName);
      };
    };
    return { dc, apply };
  }
}

/** agent/health_endpoint.go filterNonPassing: drop entries with any non-passing check, swapping the last one in. */
function filterNonPassing<T extends { Checks: unknown[] }>(nodes: T[]): T[] {
  const out = [...nodes];
  let n = out.length;
  for (let i = 0; i < n; i++) {
    const node = out[i] as T;
    const failing = node.Checks.some((c) => (c as { Status?: unknown }).Status !== 'passing');
    if (failing) {
      out[i] = out[n - 1] as T;
      n--;
      i--;
    }
  }
  return out.slice(0, n);
}

// ---------------------------------------------------------------------------------------------
// Prepared queries
//
// Sources (hashicorp/consul): website/content/api-docs/query.mdx (create: POST /v1/query -> {"ID"};
// list: GET /v1/query; execute: GET /v1/query/:uuid-or-name/execute?dc=&limit= -> Service, Nodes
// as health entries, DNS {TTL}, Datacenter, Failovers; explain: GET /v1/query/:uuid-or-name/explain
// -> {"Query": the definition}); agent/prepared_query_endpoint.go (404
// "Query not found" for an unknown query on execute); agent/consul/prepared_query_endpoint.go
// (Apply: "Must provide a Service name to query", "Bad DNS TTL", names unique per datacenter;
// Execute: the query's datacenter, nodes.Filter(OnlyPassing) — critical always left out, warning
// too with OnlyPassing —, tagFilter — case-insensitive, `!tag` excludes —, then queryFailover when
// nothing is left: NearestN datacenters, then Failover.Datacenters in order, unknown ones skipped,
// the first with nodes answers with its Datacenter, Failovers = how many were tried).
// Modelling choices: the sim has no network coordinates, so NearestN takes the other datacenters in
// the order the sim was given them, and results are not shuffled (Consul shuffles when it cannot
// sort): node then service ID order, so tests are repeatable; Near is kept (explain shows it) but
// sorts nothing. Near, templates, sessions,
// IgnoreCheckIDs, NodeMeta/ServiceMeta filters and ACLs on queries are not modelled (a create
// using any of them but Near gets 400 "consul-sim: ... is not supported").

interface SimQueryRec {
  ID: string;
  Name: string;
  Service: { Service: string; Tags: string[]; OnlyPassing: boolean; Near: string; Failover: { NearestN: number; Datacenters: string[] } };
  DNS: { TTL: string };
}

class SimPreparedQueries {
  /** Per datacenter (lower-case name), by ID. */
  private readonly byDc = new Map<string, Map<string, SimQueryRec>>();
  private created = 0;

  get size(): number {
    let n = 0;
    for (const m of this.byDc.values()) n += m.size;
    return n;
  }

  handle(method: string, path: string, body: string, dc: DcState, dcNamed: (name: string) => DcState | undefined, dcOrder: readonly string[]): unknown {
    const queries = this.queriesOf(dc);
    if (path === '/v1/query') {
      if (method === 'GET') return [...queries.values()];
      return this.create(body, dc, queries);
    }
    const rest = path.slice('/v1/query/'.length);
    const [idOrName, op] = rest.split('/');
    const query = this.find(queries, idOrName ?? '');
    if (op === 'execute') {
      if (!query) throw new SimError(404, 'Query not found');
      return this.execute(query, dc, dcNamed, dcOrder);
    }
    if (op === 'explain') {
      if (!query) throw new SimError(404, 'Query not found');
      return { Query: query };
    }
    if (op === undefined && query && query.ID === idOrName) return [query];
    throw new SimError(404, 'Query not found');
  }

  private queriesOf(dc: DcState): Map<string, SimQueryRec> {
    let m = this.byDc.get(lc(dc.name));
    if (!m) {
      m = new Map();
      this.byDc.set(lc(dc.name), m);
    }
    return m;
  }

  /** By ID first, then by exact name (case-insensitive, as the state store's name index). */
  private find(queries: Map<string, SimQueryRec>, idOrName: string): SimQueryRec | undefined {
    return queries.get(idOrName) ?? [...queries.values()].find((q) => q.Name !== '' && lc(q.Name) === lc(idOrName));
  }

  private create(text: string, dc: DcState, queries: Map<string, SimQueryRec>): { ID: string } {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new SimError(400, `Request decode failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!isObj(raw)) throw new SimError(400, 'Request decode failed: json: cannot unmarshal into Go value of type structs.PreparedQuery');
    for (const k of ['Session', 'Template']) if (field(raw, k) !== undefined) throw new SimError(400, `consul-sim: ${k} is not supported`);
    const svc = field(raw, 'Service');
    const service = isObj(svc) ? svc : {};
    for (const k of ['IgnoreCheckIDs', 'NodeMeta', 'ServiceMeta', 'Connect', 'Peer', 'SamenessGroup']) {
      if (field(service, k) !== undefined) throw new SimError(400, `consul-sim: Service.${k} is not supported`);
    }
    const name = dStr(raw, 'Name', 'PreparedQuery');
    const serviceName = dStr(service, 'Service', 'ServiceQuery');
    if (serviceName === '') throw new SimError(500, 'Must provide a Service name to query');
    const dns = field(raw, 'DNS');
    const ttl = isObj(dns) ? dStr(dns, 'TTL', 'QueryDNSOptions') : '';
    if (ttl !== '') {
      const ms = parseGoDuration(ttl);
      if (ms === null) throw new SimError(500, `Bad DNS TTL '${ttl}': time: invalid duration "${ttl}"`);
      if (ms < 0) throw new SimError(500, `DNS TTL '${ttl}', must be >=0`);
    }
    if (name !== '' && this.find(queries, name)) throw new SimError(500, `Name '${name}' aliases an existing query name`);
    const failover = field(service, 'Failover');
    const fo = isObj(failover) ? failover : {};
    const rec: SimQueryRec = {
      ID: stableUuid(`query/${dc.name}/${this.created++}/${name}`),
      Name: name,
      Service: {
        Service: serviceName,
        Tags: dStrList(service, 'Tags', 'ServiceQuery') ?? [],
        OnlyPassing: dBool(service, 'OnlyPassing', 'ServiceQuery'),
        Near: dStr(service, 'Near', 'ServiceQuery'),
        Failover: { NearestN: dInt(fo, 'NearestN', 'QueryFailoverOptions'), Datacenters: dStrList(fo, 'Datacenters', 'QueryFailoverOptions') ?? [] },
      },
      DNS: { TTL: ttl },
    };
    queries.set(rec.ID, rec);
    return { ID: rec.ID };
  }

  private execute(q: SimQueryRec, local: DcState, dcNamed: (name: string) => DcState | undefined, dcOrder: readonly string[]): unknown {
    let datacenter = local.name;
    let nodes = this.nodesIn(q, local);
    let failovers = 0;
    if (nodes.length === 0) {
      const others = dcOrder.filter((d) => lc(d) !== lc(local.name));
      const order = [...others.slice(0, Math.max(0, q.Service.Failover.NearestN))];
      for (const d of q.Service.Failover.Datacenters) if (!order.some((o) => lc(o) === lc(d))) order.push(d);
      for (const name of order) {
        const remote = dcNamed(name);
        if (!remote) continue; // "Skipping unknown datacenter"
        failovers++;
        datacenter = remote.name;
        nodes = this.nodesIn(q, remote);
        if (nodes.length > 0) break;
      }
    }
    return { Service: q.Service.Service, Nodes: nodes, DNS: { TTL: q.DNS.TTL }, Datacenter: datacenter, Failovers: failovers };
  }

  /** The query's service in `dc`: not critical (nor warning with OnlyPassing), through the tag filter. */
  private nodesIn(q: SimQueryRec, dc: DcState): { Node: unknown; Service: unknown; Checks: unknown[] }[] {
    return dc.healthEntries(q.Service.Service, null).filter((e) => {
      const statuses = e.Checks.map((c) => (c as { Status?: string }).Status);
      if (statuses.includes('critical') || (q.Service.OnlyPassing && statuses.some((st) => st !== 'passing'))) return false;
      const tags = new Set(((e.Service as { Tags?: string[] }).Tags ?? []).map(lc));
      return q.Service.Tags.every((t) => (t.startsWith('!') ? !tags.has(lc(t.slice(1))) : tags.has(lc(t))));
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Service mesh
//
// Followed (hashicorp/consul): website/content/api-docs/health.mdx ("List Service Instances for
// Mesh-capable Service", "List Service Instances for Ingress Gateways Associated with a Service");
// agent/consul/state/catalog.go: checkServiceNodes(connect=true) lists the connect-proxy instances
// whose Proxy.DestinationServiceName is the service and the service's Connect.Native instances;
// CheckIngressServiceNodes lists the instances of the ingress gateways whose config entry exposes
// the service (the gateway-services mapping), with the gateways' own ports; ensureServiceTxn gives
// a proxy's destination (or a native service) a virtual IP from 240.0.0.1 up and stores it on the
// instance as TaggedAddresses["consul-virtual"] = {Address: VIP, Port: the instance's port}.
// Modelling choice: the index of these results is the datacenter's catalog and config index
// (Consul keeps finer ones), so a parked mesh query wakes on any catalog write in its datacenter.

/** Kind, Proxy.DestinationServiceName and Connect.Native of a registered NodeService (the rest of the mesh config is not modelled). */
function decodeMesh(svcRaw: Record<string, unknown>, where: string): Pick<ServiceRec, 'Kind' | 'Proxy' | 'Connect'> {
  const out: Pick<ServiceRec, 'Kind' | 'Proxy' | 'Connect'> = {};
  const kind = dStr(svcRaw, 'Kind', where);
  if (kind !== '') out.Kind = kind;
  const proxy = field(svcRaw, 'Proxy');
  if (proxy !== undefined && proxy !== null) {
    if (!isObj(proxy)) throw new DecodeError(`json: cannot unmarshal ${jsonKind(proxy)} into Go struct field ${where}.Proxy of type structs.ConnectProxyConfig`);
    const destination = dStr(proxy, 'DestinationServiceName', `${where}.Proxy`);
    if (destination !== '') out.Proxy = { DestinationServiceName: destination };
  }
  const connect = field(svcRaw, 'Connect');
  if (connect !== undefined && connect !== null) {
    if (!isObj(connect)) throw new DecodeError(`json: cannot unmarshal ${jsonKind(connect)} into Go struct field ${where}.Connect of type structs.ServiceConnect`);
    if (dBool(connect, 'Native', `${where}.Connect`)) out.Connect = { Native: true };
  }
  return out;
}

/** The service a proxy or Connect-native instance serves, or null for any other instance. */
function meshServed(s: { Kind?: string; Service: string; Proxy?: { DestinationServiceName: string }; Connect?: { Native: boolean } }): string | null {
  if (s.Kind === 'connect-proxy') return s.Proxy?.DestinationServiceName ?? null;
  return s.Connect?.Native ? s.Service : null;
}

/** The service's virtual IP, allocated on first use from 240.0.0.1 up (assignServiceVirtualIP). */
function assignVirtualIp(state: DcState, service: string): string {
  const known = state.virtualIps.get(lc(service));
  if (known) return known;
  const n = state.virtualIps.size + 1;
  const vip = `240.0.${Math.floor(n / 256)}.${n % 256}`;
  state.virtualIps.set(lc(service), vip);
  return vip;
}

function meshIndex(dc: DcState): number {
  return Math.max(dc.tableNodes, dc.tableServices, dc.tableChecks, dc.tableConfig, dc.extinction);
}

/** /v1/health/connect/:name and /v1/health/ingress/:name, before ?passing. */
function meshEntries(dc: DcState, kind: 'connect' | 'ingress', serviceName: string): { Node: unknown; Service: unknown; Checks: unknown[] }[] {
  const name = lc(serviceName);
  const all = [...dc.services.values()];
  if (kind === 'connect') return dc.entriesOf(all.filter((s) => lc(meshServed(s) ?? '') === name));
  const gateways = new Set([...dc.ingressConfig].filter(([, services]) => services.some((x) => lc(x) === name)).map(([g]) => g));
  return dc.entriesOf(all.filter((s) => s.Kind === 'ingress-gateway' && gateways.has(lc(s.Service))));
}

// ---------------------------------------------------------------------------------------------
// Liveness: the status endpoint and a stuck process
//
// Sources (hashicorp/consul): website/content/api-docs/status.mdx ("/v1/status/leader ... returns
// the Raft leader for the datacenter in which the agent is running", a JSON string such as
// "10.1.10.12:8300"); agent/status_endpoint.go StatusLeader (the Status.Leader RPC's string as the
// body, "" when the server knows no leader; an RPC error is a 500 through wrap()).
// Modelling choices: the leader's address is a fixed 127.0.0.1:8300; in error500 mode the RPC
// fails like every other; fault('hang') holds it like any request.
//
// A stuck process (`hangLosesRequests`): the fault run of issue 15 met a Consul that accepted
// connections and answered nothing, and whose requests stayed unanswered after it recovered (a
// hung request was only abandoned by svcdns's own timeout, wait + wait/16 + 5 s later). The plain
// hang releases what it held when it ends, which hides that; with `hangLosesRequests` every
// request caught by the hang (parked blocking reads included) is never answered: its client has
// to give up on it and ask again.
// ---------------------------------------------------------------------------------------------

/** The body of /v1/status/leader: the leader's RPC address, or "" when there is no leader. */
function statusLeader(leader: boolean): string {
  return leader ? '127.0.0.1:8300' : '';
}
