/**
 * The keys of response rate limiting (src/rrl/): BIND 9's `rate-limit` clause (responses-per-second,
 * slip, window, ipv4-prefix-length, ipv6-prefix-length, exempt-clients, max-table-size), applied to
 * UDP replies only. `--rrl-responses-per-second 0` (the default: README, "Response rate limiting",
 * says why) turns it off, and then nothing of it runs.
 */

import type { ConfigComponent } from '../config/component.js';
import { integer, list, listOf, single } from '../config/values.js';
import { parseCidr, type Cidr } from '../net/address.js';

export interface RrlConfig {
  rrl: {
    /** Identical replies per second to one client prefix (BIND's responses-per-second); 0: off. */
    responsesPerSecond: number;
    /** Every slip-th limited reply is sent truncated (TC=1) instead of dropped; 0: all dropped. */
    slip: number;
    /** Seconds of debt an account may run up: how long a flood stays limited after it stops. */
    windowSeconds: number;
    ipv4PrefixLength: number;
    ipv6PrefixLength: number;
    /** Clients never limited (the list replaces the default: loopback). */
    exempt: readonly Cidr[];
    /** Accounts kept at most (the table is allocated at this size once). */
    tableSize: number;
  };
}

export const DEFAULT_RRL_EXEMPT: readonly string[] = ['127.0.0.0/8', '::1/128'];

export const rrlComponent: ConfigComponent<RrlConfig> = {
  group: 'Response rate limiting (UDP)',
  keys: {
    'rrl-responses-per-second': {
      describe: 'identical UDP replies per second to one client prefix before replies are dropped or truncated (BIND RRL; 0: off)',
      type: 'number',
      default: '0',
    },
    'rrl-slip': { describe: 'every Nth limited reply is sent truncated, so a real client retries over TCP (0: drop all, 1: truncate all)', type: 'number', default: '2' },
    'rrl-window': { describe: 'seconds a limited client prefix stays limited after its flood stops (the debt an account may run up)', type: 'number', default: '15' },
    'rrl-ipv4-prefix-length': { describe: 'IPv4 clients in one prefix of this length share their limits', type: 'number', default: '24' },
    'rrl-ipv6-prefix-length': { describe: 'IPv6 clients in one prefix of this length share their limits', type: 'number', default: '56' },
    'rrl-exempt': {
      describe: 'clients never rate limited (the list replaces the default)',
      type: 'CIDR',
      list: true,
      default: [...DEFAULT_RRL_EXEMPT],
    },
    'rrl-table-size': { describe: 'rate limiting accounts (client prefix, reply) kept at most; the oldest give way', type: 'number', default: '20000' },
  },
  build: (raw, problems) => ({
    rrl: {
      responsesPerSecond: integer(single(raw['rrl-responses-per-second']), 'rrl-responses-per-second', 0, 1_000_000, problems),
      slip: integer(single(raw['rrl-slip']), 'rrl-slip', 0, 10, problems),
      windowSeconds: integer(single(raw['rrl-window']), 'rrl-window', 1, 3600, problems),
      ipv4PrefixLength: integer(single(raw['rrl-ipv4-prefix-length']), 'rrl-ipv4-prefix-length', 0, 32, problems),
      ipv6PrefixLength: integer(single(raw['rrl-ipv6-prefix-length']), 'rrl-ipv6-prefix-length', 0, 128, problems),
      exempt: listOf(list(raw['rrl-exempt']), 'rrl-exempt', parseCidr, 'an address range such as 10.0.0.0/8 or fc00::/7', problems),
      tableSize: integer(single(raw['rrl-table-size']), 'rrl-table-size', 16, 10_000_000, problems),
    },
  }),
};
