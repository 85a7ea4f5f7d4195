/**
 * Where a server is in its life, for whoever must tell others (the HTTP /ready endpoint turns 503
 * the moment the phase leaves `serving`):
 *   starting (the HTTP endpoint is up, the catalog loading, the listeners not yet bound) →
 *   serving → lameduck (still answering DNS, for --lameduck) → stopping (listeners closed, queries
 *   in flight being answered) → stopped.
 * Phases only move forward; `lameduck` is skipped when the lameduck is 0.
 */

export type Phase = 'starting' | 'serving' | 'lameduck' | 'stopping' | 'stopped';

const ORDER: readonly Phase[] = ['starting', 'serving', 'lameduck', 'stopping', 'stopped'];

export class PhaseTracker {
  private current: Phase = 'starting';

  get phase(): Phase {
    return this.current;
  }

  /** Moves to `phase`; a phase at or before the current one is ignored (phases never go back). */
  enter(phase: Phase): void {
    if (ORDER.indexOf(phase) <= ORDER.indexOf(this.current)) return;
    this.current = phase;
  }
}
