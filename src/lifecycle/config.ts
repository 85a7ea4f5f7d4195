/** The lifecycle's keys: how long a stopping server keeps answering before its listeners close (--lameduck). */

import type { ConfigComponent } from '../config/component.js';
import { duration, single } from '../config/values.js';

export interface LifecycleConfig {
  /** After SIGTERM/SIGINT, DNS keeps answering this long (readiness already says no), ms. */
  lameduckMs: number;
}

/** The longest lameduck: beyond it, a supervisor's stop timeout (systemd's 90 s) would kill us anyway. */
const MAX_LAMEDUCK_MS = 3_600_000;

export const lifecycleComponent: ConfigComponent<LifecycleConfig> = {
  group: 'Operations',
  keys: {
    lameduck: {
      describe: 'on SIGTERM/SIGINT keep answering DNS this long (/ready already says 503) before closing the listeners, e.g. 5s (0s: close at once)',
      type: 'duration',
      default: '0s',
    },
  },
  build(raw, problems) {
    const ms = duration(single(raw.lameduck), 'lameduck', problems);
    if (ms > MAX_LAMEDUCK_MS) problems.add('lameduck', `must be at most 1h (got ${JSON.stringify(single(raw.lameduck))})`);
    return { lameduckMs: Math.min(ms, MAX_LAMEDUCK_MS) };
  },
};
