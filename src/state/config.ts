/** The persisted catalog's key: where svcdns keeps the last catalog it synced from a registry (--state-dir). */

import type { ConfigComponent } from '../config/component.js';
import { single } from '../config/values.js';

export interface StateConfig {
  /** The directory holding the persisted catalog; null: nothing is persisted. */
  stateDir: string | null;
}

export const stateComponent: ConfigComponent<StateConfig> = {
  group: 'Operations',
  keys: {
    'state-dir': {
      describe:
        'keep the last catalog synced from a registry (Consul) in this directory, and serve it at start until the registry answers (the systemd unit: /var/lib/svcdns); off unless given',
      type: 'directory',
    },
  },
  build(raw, problems) {
    const dir = single(raw['state-dir']);
    if (dir === undefined || dir === '') return { stateDir: null };
    if (dir.includes('\0')) problems.add('state-dir', 'must be a directory path');
    return { stateDir: dir };
  },
};
