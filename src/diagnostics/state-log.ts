/**
 * The one state-change logger: whatever svcdns depends on (Consul's watches, each upstream, the
 * catalog file, resolv.conf) reports its state on the `state` channel as often as it learns it, and
 * this logs each change of state once: a problem when it first appears or changes, the recovery
 * when the last failing part of that thing is fine again. An outage is one line, however many
 * watches or retries it has. A problem reported without a message is counted (and shown by
 * /status) but not logged, and neither is its recovery: something else said it (the Consul
 * liveness tracker speaks for the watches waiting on it). What is failing now is what /status
 * shows (`failing()`).
 */

import type { Diagnostics, StateEvent } from './channels.js';

interface KeyState {
  readonly failing: Set<string>;
  /** The problem last logged; null: none logged (healthy, or not said yet). */
  logged: string | null;
  /** Whether a line was written for this failure (its recovery is logged only then). */
  said: boolean;
}

/** What is failing now: one entry per key, with the problem logged and the parts failing. */
export interface Failing {
  readonly key: string;
  readonly problem: string | null;
  readonly subjects: readonly string[];
}

/** Logs state changes from the moment it is made until `stop()`. */
export class StateLog {
  private readonly states = new Map<string, KeyState>();
  readonly stop: () => void;

  constructor(diagnostics: Diagnostics) {
    this.stop = diagnostics.state.subscribe((event) => this.onEvent(event));
  }

  failing(): Failing[] {
    return [...this.states].filter(([, s]) => s.failing.size > 0).map(([key, s]) => ({ key, problem: s.logged, subjects: [...s.failing] }));
  }

  private onEvent(event: StateEvent): void {
    const states = this.states;
    if (event.forget) {
      states.delete(event.key);
      return;
    }
    let state = states.get(event.key);
    if (state === undefined) {
      if (event.problem === null) return;
      state = { failing: new Set(), logged: null, said: false };
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
      if (event.message) {
        log[event.level ?? 'warn'](fields, event.message);
        state.said = true;
      }
      return;
    }
    state.failing.delete(event.subject);
    if (state.failing.size > 0) return;
    if (state.said && event.message) log[event.level ?? 'info'](fields, event.message);
    states.delete(event.key);
  }
}
