/**
 * The one state-change logger: whatever svcdns depends on (Consul's watches, each upstream, the
 * catalog file, resolv.conf) reports its state on the `state` channel as often as it learns it, and
 * this logs each change of state once: a problem when it first appears or changes, the recovery
 * when the last failing part of that thing is fine again. An outage is one line, however many
 * watches or retries it has.
 */

import type { Diagnostics, StateEvent } from './channels.js';

interface KeyState {
  readonly failing: Set<string>;
  /** The problem last logged; null: none logged (healthy, or not said yet). */
  logged: string | null;
}

/** Starts logging state changes; returns the function that stops it. */
export function logStateChanges(diagnostics: Diagnostics): () => void {
  const states = new Map<string, KeyState>();
  return diagnostics.state.subscribe((event: StateEvent) => {
    if (event.forget) {
      states.delete(event.key);
      return;
    }
    let state = states.get(event.key);
    if (state === undefined) {
      if (event.problem === null) return;
      state = { failing: new Set(), logged: null };
      states.set(event.key, state);
    }
    const { log, fields = {} } = event;
    if (event.problem !== null) {
      state.failing.add(event.subject);
      if (event.problem === state.logged) {
        if (event.repeat) log.debug(fields, event.repeat);
        return;
      }
      state.logged = event.problem;
      if (event.message) log[event.level ?? 'warn'](fields, event.message);
      return;
    }
    state.failing.delete(event.subject);
    if (state.failing.size > 0) return;
    if (state.logged !== null && event.message) log[event.level ?? 'info'](fields, event.message);
    states.delete(event.key);
  });
}
