/** The HTTP endpoint's keys: where /metrics, /health, /ready and /status are served (off unless given). */

import type { ConfigComponent } from '../config/component.js';
import { list, listOf } from '../config/values.js';
import { parseListen, type ListenAddress } from '../net/address.js';

export interface HttpConfig {
  /** Where the HTTP endpoint listens; empty: no endpoint. */
  httpListen: readonly ListenAddress[];
}

export const httpComponent: ConfigComponent<HttpConfig> = {
  group: 'Operations',
  keys: {
    'http-listen': {
      describe: 'serve /metrics, /health, /ready and /status over HTTP on HOST:PORT (off unless given)',
      type: 'HOST:PORT',
      list: true,
    },
  },
  build: (raw, problems) => ({
    httpListen: listOf(list(raw['http-listen']), 'http-listen', parseListen, 'HOST:PORT with an IP address (IPv6 as [::1]:9153)', problems),
  }),
};
