/** The answerer's keys: the domains answered, the local datacenter, TTLs, and which instances are served. */

import type { ConfigComponent, Problems } from '../config/component.js';
import { boolean, domain, integer, label, single } from '../config/values.js';
import { MAX_LABEL_LENGTH, MAX_NAME_LENGTH } from '../dns/constants.js';

export interface AnswerConfig {
  domain: string;
  altDomain: string | null;
  datacenter: string;
  serviceTtl: number;
  nodeTtl: number;
  /** Serve only passing instances: warning ones are left out too. */
  onlyPassing: boolean;
  /** Other datacenters answered with their WAN tagged addresses (Consul's translate_wan_addrs). */
  translateWanAddrs: boolean;
}

/**
 * The longest domain for which every name svcdns builds fits in a DNS name (255 bytes on the wire,
 * 253 characters as text): the longest is a PTR target NAME.service.DC.DOMAIN, which with
 * 63-character labels leaves 117.
 */
const MAX_DOMAIN_LENGTH = MAX_NAME_LENGTH - 2 - (MAX_LABEL_LENGTH + '.service.'.length + MAX_LABEL_LENGTH + 1);

export const answerComponent: ConfigComponent<AnswerConfig> = {
  group: 'Answers',
  keys: {
    domain: { describe: 'the Consul domain to answer', type: 'domain', default: 'consul' },
    'alt-domain': { describe: 'a second domain answered identically', type: 'domain' },
    datacenter: { describe: 'the local datacenter (names without one mean this one)', type: 'name', default: 'dc1' },
    'service-ttl': { describe: 'TTL of service records, seconds', type: 'number', default: '0' },
    'node-ttl': { describe: 'TTL of node records, seconds', type: 'number', default: '0' },
    'only-passing': { describe: 'serve only passing instances (leave out warning ones too)', boolean: true, default: 'false' },
    'translate-wan-addrs': {
      describe: "answer for other datacenters with their WAN tagged addresses and ports (Consul's translate_wan_addrs)",
      boolean: true,
      default: 'false',
    },
  },
  build(raw, problems) {
    const config = {
      domain: servedDomain(single(raw.domain), 'domain', problems) ?? 'consul',
      altDomain: servedDomain(single(raw['alt-domain']), 'alt-domain', problems),
      datacenter: label(single(raw.datacenter), 'datacenter', problems),
      serviceTtl: integer(single(raw['service-ttl']), 'service-ttl', 0, 2 ** 31 - 1, problems),
      nodeTtl: integer(single(raw['node-ttl']), 'node-ttl', 0, 2 ** 31 - 1, problems),
      onlyPassing: boolean(single(raw['only-passing']), 'only-passing', problems),
      translateWanAddrs: boolean(single(raw['translate-wan-addrs']), 'translate-wan-addrs', problems),
    };
    if (config.altDomain !== null && config.altDomain === config.domain) problems.addOverall('alt-domain', 'must differ from domain');
    return config;
  },
};

/** A domain short enough for every name built from it. */
function servedDomain(value: string | undefined, key: string, problems: Problems): string | null {
  const name = domain(value, key, problems);
  if (name !== null && name.length > MAX_DOMAIN_LENGTH) {
    problems.add(key, `at most ${MAX_DOMAIN_LENGTH} characters, so that names built from it (NAME.service.DC.${name}) fit in a DNS name (got ${name.length})`);
    return null;
  }
  return name;
}
