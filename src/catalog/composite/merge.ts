/**
 * The one rule of several catalog sources in one svcdns, as a pure function: a datacenter belongs
 * to exactly one source. Each member claims the datacenters its configuration declares (Consul's
 * local one, a ZooKeeper source's own) and those its last published catalog holds; the first member
 * (in the precedence order src/catalog/sources.ts gives) claiming a datacenter owns it, and every
 * other member's records for it are left out: a clash, which the caller reports. Records are never
 * merged across sources, so a name's instances are always one source's.
 *
 * A datacenter whose owner has not synced yet is served from the persisted catalog (--state-dir),
 * when there is one holding it; otherwise it is listed as existing with nothing known (a partial
 * catalog), so its names wait for the owner (`want`) and get SERVFAIL rather than NXDOMAIN.
 * Datacenters of the persisted catalog that no member claims are served from it until every member
 * has synced (they may be a registry's other datacenters, known only after its first sync).
 *
 * Each member's records keep their order, so the store's per-service generations move only for
 * services whose served instances changed (src/catalog/snapshot.ts).
 */

import type { CatalogData, MeshEntry, NodeRecord, QueryDefinition, ServiceRecord } from '../types.js';

export interface MemberCatalog {
  /** The member's kind, for clashes (`consul`, `file`). */
  readonly kind: string;
  /** Datacenters its configuration says it publishes, whether or not it has synced. */
  readonly declared: readonly string[];
  /** Its last published catalog; null until its first sync. */
  readonly data: CatalogData | null;
}

/** Two members claiming one datacenter: `kept` keeps it, `leftOut`'s records for it are left out (member indexes). */
export interface Clash {
  readonly datacenter: string;
  readonly kept: number;
  readonly leftOut: number;
}

export interface Merged {
  readonly data: CatalogData;
  /** Owner of each datacenter (lower-case), a member's index. */
  readonly owners: ReadonlyMap<string, number>;
  /** Datacenters (lower-case) served from the persisted catalog. */
  readonly persisted: ReadonlySet<string>;
  readonly clashes: readonly Clash[];
}

/** Every datacenter `data` holds records for or lists (lower-case). */
export function datacentersOf(data: CatalogData): Set<string> {
  const dcs = new Set<string>();
  const add = (dc: string) => dcs.add(dc.toLowerCase());
  for (const n of data.nodes) add(n.datacenter);
  for (const s of data.services) add(s.datacenter);
  for (const m of data.mesh ?? []) add(m.datacenter);
  for (const q of data.queries ?? []) add(q.datacenter);
  for (const d of data.partial?.datacenters ?? []) add(d);
  return dcs;
}

/** The members' catalogs (in precedence order) and the persisted one (null: none) as one catalog. */
export function mergeCatalogs(members: readonly MemberCatalog[], persisted: CatalogData | null): Merged {
  const owners = new Map<string, number>();
  const clashes: Clash[] = [];
  members.forEach((m, i) => {
    const claims = new Set(m.declared.map((d) => d.toLowerCase()));
    if (m.data) for (const dc of datacentersOf(m.data)) claims.add(dc);
    for (const dc of claims) {
      const owner = owners.get(dc);
      if (owner === undefined) owners.set(dc, i);
      else clashes.push({ datacenter: dc, kept: owner, leftOut: i });
    }
  });

  // Which catalog serves each datacenter: a synced owner's, the persisted one, or none yet (pending).
  const fromPersisted = new Set<string>();
  const waiting = members.some((m) => m.data === null);
  if (persisted && waiting) {
    for (const dc of datacentersOf(persisted)) {
      const owner = owners.get(dc);
      if (owner === undefined || members[owner]!.data === null) fromPersisted.add(dc);
    }
  }
  const parts: { data: CatalogData; dcs: Set<string> }[] = members.map((m, i) => ({
    data: m.data ?? EMPTY,
    dcs: new Set([...owners].filter(([dc, owner]) => owner === i && m.data !== null && !fromPersisted.has(dc)).map(([dc]) => dc)),
  }));
  if (persisted && fromPersisted.size > 0) parts.push({ data: persisted, dcs: fromPersisted });
  const unsynced = [...owners].filter(([dc, owner]) => members[owner]!.data === null && !fromPersisted.has(dc)).map(([dc]) => dc);

  const nodes: NodeRecord[] = [];
  const services: ServiceRecord[] = [];
  const queries: QueryDefinition[] = [];
  const mesh: MeshEntry[] = [];
  const datacenters = new Set<string>(unsynced);
  const serviceListsKnown: string[] = [];
  const nodeListsKnown: string[] = [];
  const pending: { datacenter: string; name: string }[] = [];
  const loaded: string[] = [];
  let partial = unsynced.length > 0;
  for (const { data, dcs } of parts) {
    if (dcs.size === 0) continue;
    const mine = (dc: string) => dcs.has(dc.toLowerCase());
    for (const n of data.nodes) if (mine(n.datacenter)) nodes.push(n);
    for (const s of data.services) if (mine(s.datacenter)) services.push(s);
    for (const q of data.queries ?? []) if (mine(q.datacenter)) queries.push(q);
    for (const m of data.mesh ?? []) if (mine(m.datacenter)) mesh.push(m);
    for (const dc of dcs) datacenters.add(dc);
    const p = data.partial;
    if (p) partial = true;
    // A datacenter a part holds whole (a file's, or one its own catalog says is loaded whole).
    const whole = new Set(p ? (p.loaded ?? []).map((d) => d.toLowerCase()) : dcs);
    for (const dc of dcs) if (whole.has(dc)) loaded.push(dc);
    if (p) {
      serviceListsKnown.push(...p.serviceListsKnown.filter(mine));
      nodeListsKnown.push(...p.nodeListsKnown.filter(mine));
      pending.push(...p.pending.filter((s) => mine(s.datacenter)));
    }
  }
  const data: CatalogData = {
    nodes,
    services,
    ...(queries.length > 0 && { queries }),
    ...(mesh.length > 0 && { mesh }),
    ...(partial && { partial: { datacenters: [...datacenters], serviceListsKnown, nodeListsKnown, pending, loaded } }),
  };
  return { data, owners, persisted: fromPersisted, clashes };
}

const EMPTY: CatalogData = { nodes: [], services: [] };
