/**
 * On-demand waits of the Consul source: a question about something not loaded yet waits until a
 * published snapshot has it, or says it does not exist.
 *
 * `want` loads what a question needs (through datacenters.ts) and waits for it. Questions waiting
 * for one thing share one Wait, keyed by that thing: `nodes/DC/` (a datacenter's node list),
 * `list/DC/` (its service list), `health/DC/service` (a service's instances), `connect/DC/service`
 * and `ingress/DC/service` (its mesh views). So there are at most as many waits as catalog
 * entries, however many questions. A wait ends at the first publish in
 * which what it waits for holds (`published`), when its datacenter is dropped (`endDatacenter`: the
 * question asks again), or at stop (`endAll`). How long a question waits is bounded by its caller
 * (--fetch-timeout).
 */

import type { MeshLookup } from '../types.js';
import type { Datacenters } from './datacenters.js';

/** What the waits ask of the datacenters' state: a datacenter to use, a service to load. */
export type Loader = Pick<Datacenters, 'use' | 'useService' | 'useMesh'>;

/** What the waits need to know of publishing (publisher.ts). */
export interface PublishState {
  /** The first full sync has been published. */
  readonly isReady: boolean;
  /** A publish is scheduled: some change is not in the published snapshot yet. */
  readonly scheduled: boolean;
  schedule(): void;
}

/** Questions waiting for one thing to load share one Wait, so waits are bounded by the catalog. */
interface Wait {
  promise: Promise<void>;
  done: () => boolean;
  resolve: () => void;
}

export class Waits {
  /** Keyed `list/DC/`, `nodes/DC/`, `health/DC/service`: at most one per real catalog entry. */
  private readonly waits = new Map<string, Wait>();

  constructor(
    private readonly datacenters: Loader,
    private readonly publisher: PublishState,
  ) {}

  /**
   * Loads what a question needs: the datacenter's node list (`service` null), or its service list
   * and then, if the service is in it, the service (with `lookup`, its `connect` or `ingress` view).
   * A watch starts only for a service the list confirms, so made-up names cost nothing but the list.
   */
  async want(datacenter: string, service: string | null, lookup?: MeshLookup): Promise<void> {
    const dc = datacenter.toLowerCase();
    const state = this.datacenters.use(dc);
    if (service === null) return this.waitFor(`nodes/${dc}/`, () => state.nodes !== null);
    await this.waitFor(`list/${dc}/`, () => state.serviceNames !== null);
    const key = service.toLowerCase();
    // Not in the list: it does not exist (the wait covers a publish still to come with that list).
    if (!state.serviceNames?.has(key)) return this.waitFor(`list/${dc}/`, () => state.serviceNames !== null);
    if (lookup) {
      this.datacenters.useMesh(state, lookup, key);
      return this.waitFor(`${lookup}/${dc}/${key}`, () => state.mesh.has(`${lookup}/${key}`) || !state.serviceNames?.has(key));
    }
    this.datacenters.useService(state, key);
    return this.waitFor(`health/${dc}/${key}`, () => state.health.has(key) || !state.serviceNames?.has(key));
  }

  /** After a publish: the questions whose wait is over go on. */
  published(): void {
    for (const [key, w] of this.waits) {
      if (!w.done()) continue;
      this.waits.delete(key);
      w.resolve();
    }
  }

  /** Datacenter `dc` (lower-cased) was dropped: its waits end, and their questions ask again. */
  endDatacenter(dc: string): void {
    for (const kind of ['list', 'nodes', 'health', 'connect', 'ingress']) this.endWaits(`${kind}/${dc}/`);
  }

  /** Every wait ends (the source stops). */
  endAll(): void {
    for (const w of this.waits.values()) w.resolve();
    this.waits.clear();
  }

  /** Ends the waits whose key starts with `prefix` (what they wait for was dropped): they re-ask. */
  private endWaits(prefix: string): void {
    for (const [key, w] of this.waits) {
      if (!key.startsWith(prefix)) continue;
      this.waits.delete(key);
      w.resolve();
    }
  }

  /**
   * Resolves when `done()` holds in a published snapshot; one shared wait per key. A change not
   * published yet (a publish is scheduled) waits for that publish, so the question is answered
   * again from a snapshot that has it.
   */
  private waitFor(key: string, done: () => boolean): Promise<void> {
    if (this.publisher.isReady && done() && !this.publisher.scheduled) return Promise.resolve();
    let wait = this.waits.get(key);
    if (!wait) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      wait = { promise, done, resolve };
      this.waits.set(key, wait);
      this.publisher.schedule();
    }
    return wait.promise;
  }
}
