/**
 * Usage tracking: tells the catalog source which services are being answered, so that a source
 * loading on demand (Consul with --watch on-demand, the --workers relay) keeps their watches alive.
 * A subscriber of the `query` event, reply-cache hits included; installed only for sources that
 * want to know (`CatalogSource.touch`).
 *
 * A service is reported at its first answer, then at most once per `intervalMs` however often it
 * is asked (the source only needs to hear of it within --watch-idle): a hit costs one set lookup.
 */

import type { ServiceGeneration } from '../catalog/snapshot.js';
import type { MeshLookup } from '../catalog/types.js';
import type { Diagnostics } from './channels.js';

export interface UsageOptions {
  touch: (datacenter: string, service: string, lookup?: MeshLookup) => void;
  intervalMs?: number;
}

/** Starts tracking; returns the function that stops it. */
export function trackUsage(diagnostics: Diagnostics, options: UsageOptions): () => void {
  // Keyed by the answer's own object: a cached reply hands out the same one on every hit.
  let told = new Set<ServiceGeneration>();
  const timer = setInterval(() => (told = new Set()), options.intervalMs ?? 1000);
  timer.unref();
  const unsubscribe = diagnostics.query.subscribe(({ answer }) => {
    const service = answer.service;
    if (!service || told.has(service)) return;
    told.add(service);
    options.touch(service.datacenter, service.service, service.lookup);
  });
  return () => {
    clearInterval(timer);
    unsubscribe();
  };
}
