/**
 * An immutable, indexed view of the whole catalog: what every DNS answer is computed from.
 *
 * Contract: a Snapshot never changes after construction. A catalog change builds a new one; each
 * service whose served instances differ from the previous snapshot gets a new generation number,
 * and services that did not change keep theirs, so answer caches can be invalidated per service.
 * Names are indexed lower-case (DNS is case-insensitive); the records keep the catalog's spelling.
 */

import { parseIp, type IpAddress } from '../net/address.js';
import { instanceReach, isAddressOrHostname, nodeReach, reachText, type Reach } from './reach.js';
import type { CatalogData, Health, MeshLookup, NodeRecord, QueryDefinition, ServiceRecord } from './types.js';

export interface NodeView {
  readonly name: string;
  readonly datacenter: string;
  /** What the node answers with, by kind of question (reach.ts). */
  readonly reach: Reach;
  /** The same for questions from another datacenter with --translate-wan-addrs (its `wan*` tagged addresses). */
  readonly wan: Reach;
  readonly meta: Readonly<Record<string, string>>;
}

export interface Instance {
  readonly id: string;
  readonly service: string;
  readonly datacenter: string;
  readonly node: NodeView;
  /** What the instance answers with, by kind of question: its own address, else its node's (reach.ts). */
  readonly reach: Reach;
  /** The same for questions from another datacenter with --translate-wan-addrs. */
  readonly wan: Reach;
  readonly port: number;
  readonly tags: readonly string[];
  readonly health: Health;
  /** SRV weight for the instance's current health state. */
  readonly weight: number;
}

export interface ServiceView {
  readonly name: string;
  readonly datacenter: string;
  /** Changes whenever `instances` changes; unchanged services keep it across snapshots. */
  readonly generation: number;
  /** The instances DNS serves (not critical; with onlyPassing, not warning either), in catalog order. */
  readonly instances: readonly Instance[];
  /** `instances` filtered by each tag (lower-case key). Absent tag: no instance has it. */
  readonly byTag: ReadonlyMap<string, readonly Instance[]>;
  /**
   * Proper suffixes of dotted tags (`eu` for `canary.eu`): `eu.web.service.consul` holds no records
   * but `canary.eu.web.service.consul` lies below it, so it exists (RFC 8020).
   */
  readonly tagParents: ReadonlySet<string>;
}

/** A service at one generation: what an answer listing its instances depends on. */
export interface ServiceGeneration {
  readonly datacenter: string;
  readonly service: string;
  readonly generation: number;
  /** Absent: the service's own instances; else which of its mesh views (`.connect`, `.ingress`). */
  readonly lookup?: MeshLookup;
}

/** A service's mesh endpoints (`.connect`, `.ingress`): served like its instances, generations apart. */
export interface MeshView extends ServiceView {
  readonly lookup: MeshLookup;
  /** `connect` views: the service's virtual IP, if it has one (`.virtual` names). */
  readonly virtualIp: IpAddress | null;
}

/** What a reverse (PTR) lookup of an address finds. */
export type ReverseEntry =
  | { readonly kind: 'node'; readonly name: string; readonly datacenter: string }
  | { readonly kind: 'service'; readonly name: string; readonly datacenter: string };

export interface SnapshotOptions {
  /** SOA serial; must grow from one snapshot to the next. */
  serial: number;
  /** The snapshot this one replaces, for carrying generations over. */
  previous?: Snapshot | null;
  /** Hands out generation numbers, unique across the store's life. */
  nextGeneration: () => number;
  /** Serve only passing instances (leave out warning too), as Consul's `only_passing`. */
  onlyPassing?: boolean;
  /** When it was published, ms since the epoch (metrics and /status say how old the catalog is). */
  publishedAt?: number;
}

/** How big a snapshot is, for metrics and /status. */
export interface SnapshotCounts {
  readonly nodes: number;
  /** Services loaded, by datacenter and name. */
  readonly services: number;
  /** Service instances registered, whatever their health. */
  readonly instances: number;
}

interface ServiceEntry extends ServiceView {
  /** Stable text of the served instances, to tell whether the service changed. */
  readonly fingerprint: string;
}

export class Snapshot {
  readonly serial: number;
  /** When it was published, ms since the epoch (0 when not told). */
  readonly publishedAt: number;
  readonly counts: SnapshotCounts;
  readonly datacenters: ReadonlySet<string>;
  private readonly services = new Map<string, ServiceEntry>();
  /** Mesh views by `meshKey(lookup, dc, service)`. */
  private readonly meshViews = new Map<string, MeshView & { readonly fingerprint: string }>();
  private readonly nodes = new Map<string, NodeView>();
  /** The nodes as the source gave them: what an instance's reach is worked out from. */
  private readonly nodeRecords = new Map<string, NodeRecord>();
  private readonly reverseIndex = new Map<string, ReverseEntry[]>();
  /** Prepared queries defined with the catalog (a catalog file's `queries:`), by datacenter and name. */
  private readonly queries = new Map<string, QueryDefinition>();
  /** null: everything is loaded. Otherwise what exists but is not loaded (see CatalogData.partial). */
  private readonly partial: {
    serviceListsKnown: ReadonlySet<string>;
    nodeListsKnown: ReadonlySet<string>;
    pending: ReadonlySet<string>;
    /** Datacenters held whole: nothing in them is pending. */
    loaded: ReadonlySet<string>;
  } | null = null;

  /** Builds the indexes. `data` must be valid (sources validate at their boundary). */
  constructor(data: CatalogData, options: SnapshotOptions) {
    this.serial = options.serial;
    this.publishedAt = options.publishedAt ?? 0;
    const dcs = new Set<string>();

    for (const n of data.nodes) {
      const reach = nodeReach(n.address, n.taggedAddresses, false);
      if (!reach.any) throw new Error(`node ${n.name}: bad address ${n.address}`);
      const view: NodeView = Object.freeze({ name: n.name, datacenter: n.datacenter, reach, wan: nodeReach(n.address, n.taggedAddresses, true), meta: n.meta });
      this.nodes.set(key(n.datacenter, n.name), view);
      this.nodeRecords.set(key(n.datacenter, n.name), n);
      dcs.add(n.datacenter.toLowerCase());
      const address = parseIp(n.address);
      if (address) this.addReverse(address, { kind: 'node', name: n.name, datacenter: n.datacenter });
    }

    const grouped = new Map<string, { name: string; datacenter: string; instances: Instance[] }>();
    for (const s of data.services) {
      const { node, reach, wan, reverse } = this.placement(s, 'service');
      if (reverse) {
        this.addReverse(reverse, { kind: 'service', name: s.name, datacenter: s.datacenter });
      }
      const k = key(s.datacenter, s.name);
      let group = grouped.get(k);
      if (!group) {
        group = { name: s.name, datacenter: s.datacenter, instances: [] };
        grouped.set(k, group);
      }
      dcs.add(s.datacenter.toLowerCase());
      if (s.health === 'critical' || (options.onlyPassing && s.health === 'warning')) continue;
      group.instances.push(instanceOf(s, node, reach, wan));
    }

    for (const [k, group] of grouped) {
      this.services.set(k, entryOf(group.name, group.datacenter, group.instances, options.previous?.services.get(k), options));
    }

    for (const m of data.mesh ?? []) {
      const instances: Instance[] = [];
      for (const s of m.instances) {
        const { node, reach, wan } = this.placement(s, `${m.lookup} endpoint of ${m.service}`);
        if (s.health === 'critical' || (options.onlyPassing && s.health === 'warning')) continue;
        instances.push(instanceOf(s, node, reach, wan));
      }
      const virtualIp = m.virtualIp === undefined ? null : parseIp(m.virtualIp);
      if (m.virtualIp !== undefined && !virtualIp) throw new Error(`virtual IP of ${m.service}: bad address ${m.virtualIp}`);
      const k = meshKey(m.lookup, m.datacenter, m.service);
      const before = options.previous?.meshViews.get(k);
      const entry = entryOf(m.service, m.datacenter, instances, before, options, virtualIp?.text ?? '');
      this.meshViews.set(k, Object.freeze({ ...entry, lookup: m.lookup, virtualIp }));
      dcs.add(m.datacenter.toLowerCase());
    }
    if (data.partial) {
      const lower = (list: readonly string[]) => new Set(list.map((d) => d.toLowerCase()));
      for (const d of data.partial.datacenters) dcs.add(d.toLowerCase());
      this.partial = {
        serviceListsKnown: lower(data.partial.serviceListsKnown),
        nodeListsKnown: lower(data.partial.nodeListsKnown),
        pending: new Set(data.partial.pending.map((p) => key(p.datacenter, p.name))),
        loaded: lower(data.partial.loaded ?? []),
      };
    }
    for (const q of data.queries ?? []) {
      this.queries.set(key(q.datacenter, q.name), Object.freeze({ ...q }));
      dcs.add(q.datacenter.toLowerCase());
    }
    this.datacenters = dcs;
    this.counts = Object.freeze({ nodes: this.nodes.size, services: this.services.size, instances: data.services.length });
  }

  /**
   * Whether the service's instances must be fetched before it can be answered: it exists but is
   * not loaded, or its datacenter's service list is not known yet. Always false for a full catalog.
   */
  servicePending(dc: string, name: string): boolean {
    if (!this.partial || this.services.has(key(dc, name)) || this.partial.loaded.has(dc.toLowerCase())) return false;
    return !this.partial.serviceListsKnown.has(dc.toLowerCase()) || this.partial.pending.has(key(dc, name));
  }

  /** Whether the datacenter's node list must be fetched before a node name can be answered. */
  nodesPending(dc: string): boolean {
    return this.partial !== null && !this.partial.nodeListsKnown.has(dc.toLowerCase()) && !this.partial.loaded.has(dc.toLowerCase());
  }

  /**
   * Whether a mesh view must be fetched before it can be answered: not loaded, and the service is
   * in its datacenter's service list (or the list is not known yet). Mesh views are loaded only on
   * demand, so a service that is listed but whose view is absent is not known to have none.
   */
  meshPending(lookup: MeshLookup, dc: string, name: string): boolean {
    if (!this.partial || this.meshViews.has(meshKey(lookup, dc, name)) || this.partial.loaded.has(dc.toLowerCase())) return false;
    if (!this.partial.serviceListsKnown.has(dc.toLowerCase())) return true;
    return this.services.has(key(dc, name)) || this.partial.pending.has(key(dc, name));
  }

  /** The `.connect` or `.ingress` endpoints of service `name` in `dc`, if the catalog has them. */
  meshView(lookup: MeshLookup, dc: string, name: string): MeshView | undefined {
    return this.meshViews.get(meshKey(lookup, dc, name));
  }

  /** The generation `dep`'s service or mesh view has in this snapshot (undefined: it has none). */
  generationOf(dep: ServiceGeneration): number | undefined {
    const view = dep.lookup === undefined ? this.services.get(key(dep.datacenter, dep.service)) : this.meshView(dep.lookup, dep.datacenter, dep.service);
    return view?.generation;
  }

  /** The service `name` in datacenter `dc` (both case-insensitive), if the catalog has it. */
  service(dc: string, name: string): ServiceView | undefined {
    return this.services.get(key(dc, name));
  }

  node(dc: string, name: string): NodeView | undefined {
    return this.nodes.get(key(dc, name));
  }

  /** The prepared query `name` defined with the catalog in datacenter `dc` (both case-insensitive). */
  query(dc: string, name: string): QueryDefinition | undefined {
    return this.queries.get(key(dc, name));
  }

  hasDatacenter(dc: string): boolean {
    return this.datacenters.has(dc.toLowerCase());
  }

  /** Catalog names that have this address, nodes first, in catalog order. */
  reverse(address: IpAddress): readonly ReverseEntry[] {
    return this.reverseIndex.get(address.bytes.toString('hex')) ?? [];
  }

  /** Every service, for diagnostics and tests. */
  allServices(): IterableIterator<ServiceView> {
    return this.services.values();
  }

  /**
   * Where an instance is served: its node (which must exist) and its address, its own or else its
   * node's. `what` names the record in errors.
   */
  /**
   * Where an instance (or a mesh endpoint) is reached, LAN and WAN views (reach.ts), and its own
   * address when it is an IP other than its node's (a PTR name of its own).
   */
  private placement(s: ServiceRecord, what: string): { node: NodeView; reach: Reach; wan: Reach; reverse: IpAddress | null } {
    const node = this.nodes.get(key(s.datacenter, s.node));
    const record = this.nodeRecords.get(key(s.datacenter, s.node));
    if (!node || !record) throw new Error(`${what} ${s.id}: unknown node ${s.node}`);
    if (s.address !== '' && !isAddressOrHostname(s.address)) throw new Error(`${what} ${s.id}: bad address ${s.address}`);
    const service = { address: s.address, port: s.port, tagged: s.taggedAddresses };
    const host = { address: record.address, tagged: record.taggedAddresses };
    const own = parseIp(s.address);
    const reverse = own && own.text !== parseIp(record.address)?.text ? own : null;
    return { node, reach: instanceReach(service, host, false), wan: instanceReach(service, host, true), reverse };
  }

  private addReverse(address: IpAddress, entry: ReverseEntry): void {
    const k = address.bytes.toString('hex');
    const list = this.reverseIndex.get(k);
    if (!list) {
      this.reverseIndex.set(k, [entry]);
    } else if (!list.some((e) => e.kind === entry.kind && e.name === entry.name && e.datacenter === entry.datacenter)) {
      list.push(entry);
    }
  }
}

function key(dc: string, name: string): string {
  return `${dc.toLowerCase()}\u0000${name.toLowerCase()}`;
}

function meshKey(lookup: MeshLookup, dc: string, name: string): string {
  return `${lookup}\u0000${key(dc, name)}`;
}

function instanceOf(s: ServiceRecord, node: NodeView, reach: Reach, wan: Reach): Instance {
  return Object.freeze({
    id: s.id,
    service: s.name,
    datacenter: s.datacenter,
    node,
    reach,
    wan,
    port: s.port,
    tags: Object.freeze([...s.tags]),
    health: s.health,
    weight: s.health === 'warning' ? s.weights.warning : s.weights.passing,
  });
}

/**
 * The view of one instance list, keeping `before`'s generation when what is served did not change.
 * `extra`: anything else the view serves (a mesh view's virtual IP), part of the fingerprint.
 */
function entryOf(
  name: string,
  datacenter: string,
  instances: Instance[],
  before: ServiceEntry | undefined,
  options: SnapshotOptions,
  extra?: string,
): ServiceEntry {
  // Node meta too: SRV answers carry the meta of their instances' nodes (as TXT), so a meta change
  // must reach them.
  const served = instances.map((i) => [i.id, i.node.name, reachText(i.reach), reachText(i.wan), i.port, i.tags, i.health, i.weight, i.node.meta]);
  const fingerprint = JSON.stringify(extra === undefined ? served : [served, extra]);
  const byTag = indexTags(instances);
  const generation = before && before.fingerprint === fingerprint ? before.generation : options.nextGeneration();
  return Object.freeze({
    name,
    datacenter,
    generation,
    instances: Object.freeze(instances),
    byTag,
    tagParents: tagParents(byTag.keys()),
    fingerprint,
  });
}

function indexTags(instances: readonly Instance[]): ReadonlyMap<string, readonly Instance[]> {
  const byTag = new Map<string, Instance[]>();
  for (const i of instances) {
    for (const tag of new Set(i.tags.map((t) => t.toLowerCase()))) {
      const list = byTag.get(tag);
      if (list) list.push(i);
      else byTag.set(tag, [i]);
    }
  }
  for (const list of byTag.values()) Object.freeze(list);
  return byTag;
}

function tagParents(tags: Iterable<string>): ReadonlySet<string> {
  const parents = new Set<string>();
  for (const tag of tags) {
    for (let dot = tag.indexOf('.'); dot !== -1; dot = tag.indexOf('.', dot + 1)) parents.add(tag.slice(dot + 1));
  }
  return parents;
}
