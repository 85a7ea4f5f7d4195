/**
 * One validated, frozen configuration from three places with the same keys:
 *   defaults < config file (`--config FILE`, YAML or JSON) < `SVCDNS_*` env vars < command-line flags.
 * Keys are the flag names (`alt-domain`); env vars upper-case them (`SVCDNS_ALT_DOMAIN`), and list
 * values are comma-separated there (`SVCDNS_LISTEN=127.0.0.1:53,[::1]:53`).
 * Unknown keys are rejected wherever they appear, and every problem is reported at once.
 */

import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { Problems, type KeySpec, type RawConfig } from './config/component.js';
import { boolean, choice, domain, duration, integer, label, list, listOf, positive, single, splitList } from './config/values.js';
import { parseCidr, parseHostPort, parseListen, type Cidr, type HostPort, type ListenAddress } from './net/address.js';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  listen: readonly ListenAddress[];
  /** Catalog file path, or null for the bundled example catalog. */
  catalog: string | null;
  domain: string;
  altDomain: string | null;
  datacenter: string;
  serviceTtl: number;
  nodeTtl: number;
  /** Seconds a TCP connection may sit idle before svcdns closes it. */
  tcpIdleTimeout: number;
  /** The largest UDP reply, whatever larger size a client advertises (512..4096). */
  maxUdpSize: number;
  /** Processes answering queries (node:cluster); 1: this process alone. */
  workers: number;
  /** Pre-encoded replies kept for the hot path (keys); 0 turns it off. */
  answerCacheSize: number;
  /** Bytes of pre-encoded replies kept at most. */
  answerCacheMaxBytes: number;
  logLevel: LogLevel;
  logFormat: 'json' | 'pretty';
  /** Log every query at info level. */
  queryLog: boolean;
  /** Serve only passing instances: warning ones are left out too. */
  onlyPassing: boolean;
  /** Consul to watch, or null (then the catalog file, or the bundled example). */
  consul: ConsulConfig | null;
  /** Where names outside the Consul domain go. */
  forward: ForwardConfig;
}

export interface ForwardConfig {
  /** Upstreams given with --upstream; null means: the nameservers of `resolvConf`. */
  upstreams: readonly HostPort[] | null;
  resolvConf: string;
  policy: 'sequential' | 'random' | 'round-robin';
  /** Per-try timeout, ms. */
  timeoutMs: number;
  /** Most distinct questions waiting on upstreams at once. */
  maxInflight: number;
  /** Entries in the cache of forwarded answers; 0 turns the cache off. */
  cacheSize: number;
  /** Bytes of cached forwarded answers at most. */
  cacheMaxBytes: number;
  /** No forwarded answer is cached, or served with a TTL, longer than this, seconds. */
  cacheMaxTtl: number;
  /** Clients that may have names forwarded; the Consul domain is answered for everyone. */
  allowRecursion: readonly Cidr[];
}

export interface ConsulConfig {
  /** Base URL, scheme included (http: or https:). */
  url: URL;
  /** ACL token given directly (flag, env); see tokenFile. Never logged. */
  token: string | null;
  /** File holding the ACL token (read at start). */
  tokenFile: string | null;
  allowStale: boolean;
  maxStaleMs: number;
  waitMs: number;
  /** Which services get a health watch: all, only those queried, or decided by the catalog's size. */
  watch: 'auto' | 'all' | 'on-demand';
  /** With `auto`: watch all services unless the local datacenter has more than this many. */
  watchAllLimit: number;
  /** An on-demand watch is dropped after this long without queries, ms. */
  watchIdleMs: number;
  /** How long a question waits for a service being fetched before SERVFAIL, ms. */
  fetchTimeoutMs: number;
  tls: { caFile: string | null; certFile: string | null; keyFile: string | null; serverName: string | null; verify: boolean };
}

export class ConfigError extends Error {
  readonly code = 'SVCDNS_CONFIG_INVALID';
  constructor(readonly problems: readonly string[]) {
    super(problems.join('; '));
    this.name = 'ConfigError';
  }
}

/** Loopback and the private ranges: RFC 1918, RFC 4193 (ULA), RFC 6598 (carrier-grade NAT). */
const DEFAULT_ALLOW_RECURSION = ['127.0.0.0/8', '::1/128', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', 'fc00::/7'];

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Every configuration key, documented once; the CLI's flags are generated from this table. */
export const KEYS: Readonly<Record<string, KeySpec>> = {
  listen: {
    describe: 'HOST:PORT to serve DNS on, UDP and TCP (repeatable; IPv6 as [::1]:8600)',
    list: true,
    default: ['127.0.0.1:8600'],
  },
  catalog: { describe: 'catalog file (YAML or JSON), reloaded when it changes; default: the bundled example' },
  domain: { describe: 'the Consul domain to answer', default: 'consul' },
  'alt-domain': { describe: 'a second domain answered identically' },
  datacenter: { describe: 'the local datacenter (names without one mean this one)', default: 'dc1' },
  'service-ttl': { describe: 'TTL of service records, seconds', default: '0' },
  'node-ttl': { describe: 'TTL of node records, seconds', default: '0' },
  'tcp-idle-timeout': { describe: 'close TCP connections idle this long, seconds', default: '10' },
  'max-udp-size': { describe: 'largest UDP reply in bytes, whatever a client advertises (512..4096)', default: '4096' },
  workers: { describe: 'processes answering queries, sharing the listen sockets, fed by one catalog source (1: no extra processes)', default: '1' },
  'answer-cache-size': { describe: 'questions whose encoded replies are kept for the hot path (0: off)', default: '10000' },
  'answer-cache-max-bytes': { describe: 'bytes of encoded replies kept for the hot path at most', default: '33554432' },
  'log-level': { describe: `log level: ${LOG_LEVELS.join(', ')}`, default: 'info' },
  'log-format': { describe: 'log format: json or pretty', default: 'json' },
  'query-log': { describe: 'log every query (client, name, type, rcode, size)', boolean: true, default: 'false' },
  'only-passing': { describe: 'serve only passing instances (leave out warning ones too)', boolean: true, default: 'false' },
  consul: { describe: 'Consul HTTP address to watch, e.g. http://127.0.0.1:8500 (env CONSUL_HTTP_ADDR)' },
  'consul-token': { describe: 'Consul ACL token (env CONSUL_HTTP_TOKEN); prefer --consul-token-file' },
  'consul-token-file': { describe: 'file holding the Consul ACL token (env CONSUL_HTTP_TOKEN_FILE)' },
  'consul-cacert': { describe: 'CA bundle to verify Consul over HTTPS (env CONSUL_CACERT)' },
  'consul-client-cert': { describe: 'client certificate for Consul over HTTPS (env CONSUL_CLIENT_CERT)' },
  'consul-client-key': { describe: 'client key for Consul over HTTPS (env CONSUL_CLIENT_KEY)' },
  'consul-tls-server-name': { describe: "server name to verify in Consul's certificate (env CONSUL_TLS_SERVER_NAME)" },
  'consul-ssl-verify': { describe: "verify Consul's certificate (env CONSUL_HTTP_SSL_VERIFY)", boolean: true, default: 'true' },
  'allow-stale': { describe: 'read from any Consul server, not only the leader (as Consul DNS does)', boolean: true, default: 'true' },
  'max-stale': { describe: 'a stale read from a server out of touch with the leader longer than this is re-read from the leader', default: '87600h' },
  'consul-wait': { describe: 'how long each blocking query waits for a change', default: '5m' },
  watch: { describe: 'which services to watch: all, on-demand (from their first query), or auto', default: 'auto' },
  'watch-all-limit': { describe: 'with --watch auto: watch every service up to this many, else on demand', default: '500' },
  'watch-idle': { describe: 'drop an on-demand watch after this long without queries', default: '10m' },
  'fetch-timeout': { describe: 'how long a question waits for a service being fetched before SERVFAIL', default: '2s' },
  upstream: { describe: 'resolver to forward other names to, IP[:PORT] (repeatable; IPv6 as [::1]:53); default: the nameservers of --resolv-conf', list: true },
  'resolv-conf': { describe: 'file whose nameserver lines are the upstreams when no --upstream is given', default: '/etc/resolv.conf' },
  'upstream-policy': { describe: 'order in which upstreams are tried: sequential, random or round-robin', default: 'sequential' },
  'upstream-timeout': { describe: 'how long one try of one upstream may take before the next is tried', default: '2s' },
  'upstream-max-inflight': { describe: 'most questions waiting on upstreams at once; more get SERVFAIL at once (a flood of unique names cannot exhaust sockets)', default: '1000' },
  'cache-size': { describe: 'forwarded answers kept in the cache (0: no cache)', default: '10000' },
  'cache-max-bytes': { describe: 'bytes of forwarded answers kept in the cache at most', default: '67108864' },
  'cache-max-ttl': { describe: 'longest time a forwarded answer is cached, seconds (also caps the TTLs served)', default: '3600' },
  'allow-recursion': {
    describe: 'clients (CIDR, repeatable) whose other names are forwarded; others get REFUSED (the Consul domain is open to all)',
    list: true,
    default: [...DEFAULT_ALLOW_RECURSION],
  },
};

/**
 * Consul's own environment variables, as its CLI reads them; they rank below svcdns's own
 * SVCDNS_* variables and flags. CONSUL_HTTP_SSL=true makes a scheme-less address https.
 */
const CONSUL_ENV: Readonly<Record<string, string>> = {
  CONSUL_HTTP_ADDR: 'consul',
  CONSUL_HTTP_TOKEN: 'consul-token',
  CONSUL_HTTP_TOKEN_FILE: 'consul-token-file',
  CONSUL_CACERT: 'consul-cacert',
  CONSUL_CLIENT_CERT: 'consul-client-cert',
  CONSUL_CLIENT_KEY: 'consul-client-key',
  CONSUL_TLS_SERVER_NAME: 'consul-tls-server-name',
  CONSUL_HTTP_SSL_VERIFY: 'consul-ssl-verify',
};

export type { RawConfig } from './config/component.js';

export interface ConfigInputs {
  /** Flags as parsed by the CLI (only keys the user gave). */
  flags: RawConfig;
  env: NodeJS.ProcessEnv;
  /** Path of the config file, if any. */
  configFile?: string | undefined;
  readFile?: (path: string) => string;
}

export function envName(key: string): string {
  return `SVCDNS_${key.toUpperCase().replace(/-/g, '_')}`;
}

/** Merges and validates; throws ConfigError listing every problem. */
export function resolveConfig(inputs: ConfigInputs): Config {
  const problems: string[] = [];
  const merged: RawConfig = {};
  for (const [key, spec] of Object.entries(KEYS)) merged[key] = spec.default;

  const configFile = inputs.configFile ?? inputs.env[envName('config')];
  if (configFile) Object.assign(merged, readConfigFile(configFile, inputs.readFile, problems));
  const fromConsulEnv = new Set<string>();
  for (const [variable, key] of Object.entries(CONSUL_ENV)) {
    const value = inputs.env[variable];
    if (value !== undefined && value !== '') {
      merged[key] = value;
      fromConsulEnv.add(key);
    }
  }
  for (const key of Object.keys(KEYS)) {
    const value = inputs.env[envName(key)];
    if (value !== undefined && value !== '') {
      merged[key] = KEYS[key]!.list ? splitList(value) : value;
      fromConsulEnv.delete(key);
    }
  }
  for (const [key, value] of Object.entries(inputs.flags)) {
    if (!(key in KEYS)) problems.push(`unknown option --${key}`);
    else if (value !== undefined) {
      merged[key] = value;
      fromConsulEnv.delete(key);
    }
  }
  // An explicit catalog file beats an ambient CONSUL_HTTP_ADDR; an explicit --consul with a
  // catalog file is a contradiction.
  if (merged.catalog !== undefined && merged.consul !== undefined) {
    if (fromConsulEnv.has('consul')) delete merged.consul;
    else problems.push('catalog and consul: choose one source of the catalog');
  }

  const found = new Problems();
  const config: Config = {
    listen: listOf(list(merged.listen), 'listen', parseListen, 'HOST:PORT with an IP address (IPv6 as [::1]:8600)', found),
    catalog: catalogPath(single(merged.catalog), found),
    domain: serviceDomain(single(merged.domain), 'domain', found) ?? 'consul',
    altDomain: serviceDomain(single(merged['alt-domain']), 'alt-domain', found),
    datacenter: label(single(merged.datacenter), 'datacenter', found),
    serviceTtl: integer(single(merged['service-ttl']), 'service-ttl', 0, 2 ** 31 - 1, found),
    nodeTtl: integer(single(merged['node-ttl']), 'node-ttl', 0, 2 ** 31 - 1, found),
    tcpIdleTimeout: integer(single(merged['tcp-idle-timeout']), 'tcp-idle-timeout', 1, 3600, found),
    maxUdpSize: integer(single(merged['max-udp-size']), 'max-udp-size', 512, 4096, found),
    workers: integer(single(merged.workers), 'workers', 1, 64, found),
    answerCacheSize: integer(single(merged['answer-cache-size']), 'answer-cache-size', 0, 10_000_000, found),
    answerCacheMaxBytes: integer(single(merged['answer-cache-max-bytes']), 'answer-cache-max-bytes', 0, 2 ** 40, found),
    logLevel: choice(single(merged['log-level']), 'log-level', LOG_LEVELS, found),
    logFormat: choice(single(merged['log-format']), 'log-format', ['json', 'pretty'] as const, found),
    queryLog: boolean(single(merged['query-log']), 'query-log', found),
    onlyPassing: boolean(single(merged['only-passing']), 'only-passing', found),
    consul: consulConfig(merged, inputs.env, found),
    forward: forwardConfig(merged, found),
  };
  if (config.listen.length === 0 && !found.has('listen')) found.addOverall('listen', 'at least one address is needed');
  if (config.altDomain !== null && config.altDomain === config.domain) found.addOverall('alt-domain', 'must differ from domain');
  problems.push(...found.list(() => 0));
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}

function consulConfig(merged: RawConfig, env: NodeJS.ProcessEnv, problems: Problems): ConsulConfig | null {
  const address = single(merged.consul);
  if (address === undefined) return null;
  const https = (env.CONSUL_HTTP_SSL ?? '').toLowerCase() === 'true';
  const url = consulUrl(address, https);
  if (!url) problems.add('consul', `${JSON.stringify(address)} is not an http(s) address such as 127.0.0.1:8500 or https://consul:8501`);
  const text = (key: string) => {
    const v = single(merged[key]);
    return v === undefined || v === '' ? null : v;
  };
  const token = text('consul-token');
  const tokenFile = text('consul-token-file');
  return {
    url: url ?? new URL('http://127.0.0.1:8500'),
    token,
    tokenFile: token === null ? tokenFile : null,
    allowStale: boolean(single(merged['allow-stale']), 'allow-stale', problems),
    maxStaleMs: duration(single(merged['max-stale']), 'max-stale', problems),
    waitMs: Math.min(duration(single(merged['consul-wait']), 'consul-wait', problems), 600_000),
    watch: choice(single(merged.watch), 'watch', ['auto', 'all', 'on-demand'] as const, problems),
    watchAllLimit: integer(single(merged['watch-all-limit']), 'watch-all-limit', 0, 1_000_000, problems),
    watchIdleMs: duration(single(merged['watch-idle']), 'watch-idle', problems),
    fetchTimeoutMs: duration(single(merged['fetch-timeout']), 'fetch-timeout', problems),
    tls: {
      caFile: text('consul-cacert'),
      certFile: text('consul-client-cert'),
      keyFile: text('consul-client-key'),
      serverName: text('consul-tls-server-name'),
      verify: boolean(single(merged['consul-ssl-verify']), 'consul-ssl-verify', problems),
    },
  };
}

function forwardConfig(merged: RawConfig, problems: Problems): ForwardConfig {
  const upstreams = merged.upstream === undefined ? null : list(merged.upstream);
  const resolvConf = single(merged['resolv-conf']) ?? '';
  if (resolvConf.trim() === '') problems.add('resolv-conf', 'must be a file path (got "")');
  return {
    upstreams:
      upstreams &&
      listOf(upstreams, 'upstream', (v) => parseHostPort(v, 53), 'IP[:PORT] (IPv6 as [::1]:53; hostnames cannot be used, resolving them would need DNS)', problems),
    resolvConf,
    policy: choice(single(merged['upstream-policy']), 'upstream-policy', ['sequential', 'random', 'round-robin'] as const, problems),
    timeoutMs: positive(duration(single(merged['upstream-timeout']), 'upstream-timeout', problems), 'upstream-timeout', problems),
    maxInflight: integer(single(merged['upstream-max-inflight']), 'upstream-max-inflight', 1, 1_000_000, problems),
    cacheSize: integer(single(merged['cache-size']), 'cache-size', 0, 10_000_000, problems),
    cacheMaxBytes: integer(single(merged['cache-max-bytes']), 'cache-max-bytes', 0, 2 ** 40, problems),
    cacheMaxTtl: integer(single(merged['cache-max-ttl']), 'cache-max-ttl', 0, 2 ** 31 - 1, problems),
    allowRecursion: listOf(list(merged['allow-recursion']), 'allow-recursion', parseCidr, 'an address range such as 10.0.0.0/8 or fc00::/7', problems),
  };
}

/** Consul's CLI accepts `host:port`, `http://host:port` and `https://host:port`. */
export function consulUrl(address: string, https: boolean): URL | null {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(address) ? address : `${https ? 'https' : 'http'}://${address}`;
  try {
    const url = new URL(withScheme);
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') return null;
    return url;
  } catch {
    return null;
  }
}

function readConfigFile(path: string, read: ((p: string) => string) | undefined, problems: string[]): RawConfig {
  let doc: unknown;
  try {
    const text = (read ?? ((p) => readFileSync(p, 'utf8')))(path);
    doc = parseYaml(text);
  } catch (err) {
    problems.push(`config file ${path}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    return {};
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    problems.push(`config file ${path}: must be a mapping of option names to values`);
    return {};
  }
  const out: RawConfig = {};
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    if (!(key in KEYS)) {
      problems.push(`config file ${path}: unknown key ${JSON.stringify(key)}`);
    } else if (Array.isArray(value) && KEYS[key]!.list) {
      out[key] = value.map(String);
    } else if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
      out[key] = KEYS[key]!.list ? [String(value)] : String(value);
    } else {
      problems.push(`config file ${path}: ${key} must be a ${KEYS[key]!.list ? 'list or a ' : ''}single value`);
    }
  }
  return out;
}

/**
 * The longest domain for which every name svcdns builds fits in a DNS name (253 characters): the
 * longest is a PTR target NAME.service.DC.DOMAIN, which with 63-character labels leaves 117.
 */
const MAX_DOMAIN_LENGTH = 253 - (63 + '.service.'.length + 63 + 1);

function serviceDomain(value: string | undefined, key: string, problems: Problems): string | null {
  const name = domain(value, key, problems);
  if (name !== null && name.length > MAX_DOMAIN_LENGTH) {
    problems.add(key, `at most ${MAX_DOMAIN_LENGTH} characters, so that names built from it (NAME.service.DC.${name}) fit in a DNS name (got ${name.length})`);
    return null;
  }
  return name;
}

function catalogPath(value: string | undefined, problems: Problems): string | null {
  if (value === undefined) return null;
  if (value.trim() === '') problems.add('catalog', `must be a file path (got ${JSON.stringify(value)})`);
  return value;
}

