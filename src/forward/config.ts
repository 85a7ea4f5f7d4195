/** The forwarder's keys: where names outside the Consul domain go, how, for whom, and its cache. */

import type { ConfigComponent } from '../config/component.js';
import { boolean, choice, duration, integer, list, listOf, positive, single } from '../config/values.js';
import { parseCidr, parseHostPort, type Cidr, type HostPort } from '../net/address.js';

export interface ForwardConfig {
  /** Upstreams given with --upstream; null means: the nameservers of `resolvConf`. */
  upstreams: readonly HostPort[] | null;
  resolvConf: string;
  policy: 'sequential' | 'random' | 'round-robin';
  /** Per-try timeout, ms. */
  timeoutMs: number;
  /** Most distinct questions waiting on upstreams at once (lowered at start when it does not fit the open-file limit). */
  maxInflight: number;
  /** Most questions one client (address; IPv6 /64) may have waiting on upstreams at once. */
  maxPerClient: number;
  /** Entries in the cache of forwarded answers; 0 turns the cache off. */
  cacheSize: number;
  /** Bytes of cached forwarded answers at most. */
  cacheMaxBytes: number;
  /** No forwarded answer is cached, or served with a TTL, longer than this, seconds. */
  cacheMaxTtl: number;
  /** Clients that may have names forwarded; the Consul domain is answered for everyone. */
  allowRecursion: readonly Cidr[];
  /** How long past its expiry a cached answer may still be served stale, ms; 0: never (RFC 8767). */
  serveStaleMs: number;
  /**
   * How long a client waits on upstreams before it gets the stale answer instead, ms (RFC 8767's
   * client response timer); also the most a client waits while every upstream is unhealthy.
   */
  clientResponseTimeoutMs: number;
  /** A cache hit in the last tenth of its TTL refreshes it in the background. */
  prefetch: boolean;
}

export interface ForwardSection {
  /** Where names outside the Consul domain go. */
  forward: ForwardConfig;
}

/** Loopback and the private ranges: RFC 1918, RFC 4193 (ULA), RFC 6598 (carrier-grade NAT). */
const DEFAULT_ALLOW_RECURSION = ['127.0.0.0/8', '::1/128', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', 'fc00::/7'];

const POLICIES = ['sequential', 'random', 'round-robin'] as const;

export const forwardComponent: ConfigComponent<ForwardSection> = {
  group: 'Forwarding',
  keys: {
    upstream: { describe: 'resolver to forward other names to (IPv6 as [::1]:53); default: the nameservers of --resolv-conf', type: 'IP[:PORT]', list: true },
    'resolv-conf': { describe: 'file whose nameserver lines are the upstreams when no --upstream is given', type: 'file', default: '/etc/resolv.conf' },
    'upstream-policy': { describe: 'order in which upstreams are tried', choices: POLICIES, default: 'sequential' },
    'upstream-timeout': { describe: 'how long one try of one upstream may take before the next is tried', type: 'duration', default: '2s' },
    'upstream-max-inflight': {
      describe: 'most questions waiting on upstreams at once; more get SERVFAIL at once (a flood of unique names cannot exhaust sockets); lowered, with a warning, when it does not fit the open-file limit',
      type: 'number',
      default: '1000',
    },
    'upstream-max-per-client': {
      describe: 'most questions one client (an address; IPv6: a /64) may have waiting on upstreams at once; more get SERVFAIL at once, so one client cannot take every place in flight',
      type: 'number',
      default: '100',
    },
    'cache-size': { describe: 'forwarded answers kept in the cache (0: no cache)', type: 'number', default: '10000' },
    'cache-max-bytes': { describe: 'bytes of forwarded answers kept in the cache at most', type: 'number', default: '67108864' },
    'cache-max-ttl': { describe: 'longest time a forwarded answer is cached, seconds (also caps the TTLs served)', type: 'number', default: '3600' },
    'serve-stale': {
      describe: 'how long past its expiry a cached forwarded answer (negative ones too) may be served, with TTL 30, when the upstreams fail or are slow (RFC 8767); 0: never',
      type: 'duration',
      default: '1d',
    },
    'client-response-timeout': {
      describe: 'how long a client waits on upstreams before it gets the stale answer instead; also its longest wait while every upstream is unhealthy (then SERVFAIL)',
      type: 'duration',
      default: '1800ms',
    },
    prefetch: { describe: 'refresh a cached forwarded answer in the background when it is asked for in the last tenth of its TTL (TTLs of 10 s or more)', boolean: true, default: 'false' },
    'allow-recursion': {
      describe: 'clients whose other names are forwarded (the list replaces the default); others get REFUSED (the Consul domain is open to all)',
      type: 'CIDR',
      list: true,
      default: [...DEFAULT_ALLOW_RECURSION],
    },
  },
  build(raw, problems) {
    const upstreams = raw.upstream === undefined ? null : list(raw.upstream);
    const resolvConf = single(raw['resolv-conf']) ?? '';
    if (resolvConf.trim() === '') problems.add('resolv-conf', 'must be a file path (got "")');
    const forward: ForwardConfig = {
      upstreams:
        upstreams &&
        listOf(upstreams, 'upstream', (v) => parseHostPort(v, 53), 'IP[:PORT] (IPv6 as [::1]:53; hostnames cannot be used, resolving them would need DNS)', problems),
      resolvConf,
      policy: choice(single(raw['upstream-policy']), 'upstream-policy', POLICIES, problems),
      timeoutMs: positive(duration(single(raw['upstream-timeout']), 'upstream-timeout', problems), 'upstream-timeout', problems),
      maxInflight: integer(single(raw['upstream-max-inflight']), 'upstream-max-inflight', 1, 1_000_000, problems),
      maxPerClient: integer(single(raw['upstream-max-per-client']), 'upstream-max-per-client', 1, 1_000_000, problems),
      cacheSize: integer(single(raw['cache-size']), 'cache-size', 0, 10_000_000, problems),
      cacheMaxBytes: integer(single(raw['cache-max-bytes']), 'cache-max-bytes', 0, 2 ** 40, problems),
      cacheMaxTtl: integer(single(raw['cache-max-ttl']), 'cache-max-ttl', 0, 2 ** 31 - 1, problems),
      allowRecursion: listOf(list(raw['allow-recursion']), 'allow-recursion', parseCidr, 'an address range such as 10.0.0.0/8 or fc00::/7', problems),
      serveStaleMs: duration(single(raw['serve-stale']), 'serve-stale', problems),
      clientResponseTimeoutMs: duration(single(raw['client-response-timeout']), 'client-response-timeout', problems),
      prefetch: boolean(single(raw.prefetch), 'prefetch', problems),
    };
    return { forward };
  },
};
