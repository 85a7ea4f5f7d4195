/**
 * Prepared queries as instance lists for the answerer: a catalog file's definition evaluated
 * against the snapshot, or a Consul execution's result turned into snapshot instances. Pure
 * functions of their inputs, memoized per input object so that the answerer's round robin (keyed
 * by list identity) advances across questions answered from the same execution or snapshot.
 */

import type { QueryResult } from '../catalog/queries.js';
import { Snapshot, type Instance } from '../catalog/snapshot.js';
import type { QueryDefinition } from '../catalog/types.js';

/** What a query's answer lists: the instances (in order), the TTL it asks for (null: the service's). */
export interface QueryInstances {
  /** The service the query selected (its TTL applies when the query has none). */
  readonly service: string;
  readonly instances: readonly Instance[];
  readonly ttl: number | null;
  /** Consul sorted them by distance (`Near`): answers keep the order instead of rotating it. */
  readonly sorted: boolean;
}

const evaluated = new WeakMap<QueryDefinition, { snapshot: Snapshot; value: QueryInstances }>();

/**
 * A catalog file's query, as Consul's PreparedQuery.Execute does it: the service's instances in the
 * query's datacenter that are not critical (nor warning with only-passing) and match the tag
 * filter; when there are none, the same in each failover datacenter in order, the first with any
 * answering (its instances carry that datacenter, which SRV targets then name).
 */
export function evaluateQuery(definition: QueryDefinition, snapshot: Snapshot): QueryInstances {
  const memo = evaluated.get(definition);
  if (memo?.snapshot === snapshot) return memo.value;
  let instances: readonly Instance[] = [];
  for (const dc of [definition.datacenter, ...definition.failover]) {
    instances = (snapshot.service(dc, definition.service)?.instances ?? []).filter(
      (i) => !(definition.onlyPassing && i.health !== 'passing') && matchesTags(i.tags, definition.tags),
    );
    if (instances.length > 0) break;
  }
  const value = { service: definition.service, instances: Object.freeze(instances), ttl: definition.ttl, sorted: false };
  evaluated.set(definition, { snapshot, value });
  return value;
}

/** Consul's tag filter: case-insensitive; every tag present, every `!tag` absent. */
function matchesTags(tags: readonly string[], filter: readonly string[]): boolean {
  if (filter.length === 0) return true;
  const have = new Set(tags.map((t) => t.toLowerCase()));
  return filter.every((f) => (f.startsWith('!') ? !have.has(f.slice(1).toLowerCase()) : have.has(f.toLowerCase())));
}

const converted = new WeakMap<QueryResult, QueryInstances>();

/**
 * An execution's result as instances, in Consul's order. Built through a Snapshot of just the
 * result so that addresses, SRV weights and targets follow the same rules as `.service` answers.
 * Consul's execution already left out critical instances (and warning ones with OnlyPassing).
 */
export function resultInstances(result: QueryResult): QueryInstances {
  const memo = converted.get(result);
  if (memo) return memo;
  const snapshot = new Snapshot({ nodes: result.nodes, services: result.instances }, { serial: 0, nextGeneration: () => 0 });
  const byId = new Map<string, Instance>();
  for (const view of snapshot.allServices()) for (const i of view.instances) byId.set(`${i.datacenter}\u0000${i.node.name}\u0000${i.id}`, i);
  const instances = result.instances.flatMap((r) => {
    const i = byId.get(`${r.datacenter}\u0000${r.node}\u0000${r.id}`);
    return i ? [i] : [];
  });
  const value = { service: result.service, instances: Object.freeze(instances), ttl: result.ttl, sorted: result.sorted };
  converted.set(result, value);
  return value;
}
