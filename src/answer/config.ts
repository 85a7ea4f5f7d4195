/**
 * The answerer's keys: the domains answered, the local datacenter, TTLs (per service, as Consul's
 * `service_ttl` map), the SOA's timers (Consul's `dns_config.soa`), how many address records an
 * answer holds, node meta in additional sections, and which instances are served.
 */

import type { ConfigComponent, Problems } from '../config/component.js';
import { boolean, domain, integer, label, list, single } from '../config/values.js';
import { MAX_LABEL_LENGTH, MAX_NAME_LENGTH } from '../dns/constants.js';
import { parseServiceTtls, type ServiceTtls } from './ttl.js';

/** The SOA's timers, seconds; `minimum` is also the negative-caching TTL and the SOA record's own TTL. */
export interface SoaTimers {
  refresh: number;
  retry: number;
  expire: number;
  minimum: number;
}

export interface AnswerConfig {
  domain: string;
  altDomain: string | null;
  datacenter: string;
  /** TTL of each service's records. */
  serviceTtl: ServiceTtls;
  nodeTtl: number;
  soa: SoaTimers;
  /** At most this many address records in an A/AAAA/ANY answer about a service; 0: no limit. */
  aRecordLimit: number;
  /** Node meta as TXT in the additional section of SRV and node A/AAAA answers. */
  nodeMetaTxt: boolean;
  /** Serve only passing instances: warning ones are left out too. */
  onlyPassing: boolean;
  /** Other datacenters answered with their WAN tagged addresses (Consul's translate_wan_addrs). */
  translateWanAddrs: boolean;
}

const MAX_TTL = 2 ** 31 - 1;

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
    'service-ttl': {
      describe: 'TTL of service records, seconds; PATTERN=SECONDS for the services PATTERN matches (a name, prefix*, or *: exact beats the longest prefix beats *); a bare number is *',
      type: '[PATTERN=]SECONDS',
      list: true,
      map: true,
      default: '0',
    },
    'node-ttl': { describe: 'TTL of node records, seconds', type: 'number', default: '0' },
    'soa-refresh': { describe: "the SOA's refresh, seconds", type: 'number', default: '3600' },
    'soa-retry': { describe: "the SOA's retry, seconds", type: 'number', default: '600' },
    'soa-expire': { describe: "the SOA's expire, seconds", type: 'number', default: '86400' },
    'soa-min-ttl': { describe: "the SOA's minimum: how long NXDOMAIN and NODATA answers may be cached, seconds", type: 'number', default: '0' },
    'a-record-limit': { describe: 'at most this many A/AAAA records in an answer about a service (0: no limit)', type: 'number', default: '0' },
    'node-meta-txt': { describe: 'node meta as TXT in the additional section of SRV and node A/AAAA answers', boolean: true, default: 'true' },
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
      serviceTtl: parseServiceTtls(list(raw['service-ttl']), 'service-ttl', problems),
      nodeTtl: integer(single(raw['node-ttl']), 'node-ttl', 0, MAX_TTL, problems),
      soa: {
        refresh: integer(single(raw['soa-refresh']), 'soa-refresh', 0, MAX_TTL, problems),
        retry: integer(single(raw['soa-retry']), 'soa-retry', 0, MAX_TTL, problems),
        expire: integer(single(raw['soa-expire']), 'soa-expire', 0, MAX_TTL, problems),
        minimum: integer(single(raw['soa-min-ttl']), 'soa-min-ttl', 0, MAX_TTL, problems),
      },
      aRecordLimit: integer(single(raw['a-record-limit']), 'a-record-limit', 0, 65535, problems),
      nodeMetaTxt: boolean(single(raw['node-meta-txt']), 'node-meta-txt', problems),
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
