/**
 * Consul's keys. Most can also be set by Consul's own environment variables, as its CLI reads them
 * (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN...); those rank below svcdns's own SVCDNS_* variables and
 * flags. CONSUL_HTTP_SSL=true makes a scheme-less address https.
 */

import type { ConfigComponent } from '../../config/component.js';
import { redactAddress } from '../../config/redact.js';
import { boolean, choice, duration, integer, single } from '../../config/values.js';

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
  /** While blocking reads wait on Consul, how often its liveness is probed anyway (0: never), ms. */
  heartbeatMs: number;
  /** How long a prepared query's last result keeps serving while executions fail, ms. */
  queryMaxStaleMs: number;
  tls: { caFile: string | null; certFile: string | null; keyFile: string | null; serverName: string | null; verify: boolean };
}

export interface ConsulSection {
  /** Consul to watch, or null (then another source: a catalog file, or the bundled example with --example). */
  consul: ConsulConfig | null;
}

const WATCH_MODES = ['auto', 'all', 'on-demand'] as const;

export const consulComponent: ConfigComponent<ConsulSection> = {
  group: 'Consul',
  keys: {
    consul: { describe: 'Consul HTTP address to watch, e.g. http://127.0.0.1:8500 (env CONSUL_HTTP_ADDR)', type: 'URL', foreignEnv: 'CONSUL_HTTP_ADDR' },
    'consul-token': { describe: 'Consul ACL token (env CONSUL_HTTP_TOKEN); prefer --consul-token-file', type: 'text', foreignEnv: 'CONSUL_HTTP_TOKEN' },
    'consul-token-file': { describe: 'file holding the Consul ACL token (env CONSUL_HTTP_TOKEN_FILE)', type: 'file', foreignEnv: 'CONSUL_HTTP_TOKEN_FILE' },
    'consul-cacert': { describe: 'CA bundle to verify Consul over HTTPS (env CONSUL_CACERT)', type: 'file', foreignEnv: 'CONSUL_CACERT' },
    'consul-client-cert': { describe: 'client certificate for Consul over HTTPS (env CONSUL_CLIENT_CERT)', type: 'file', foreignEnv: 'CONSUL_CLIENT_CERT' },
    'consul-client-key': { describe: 'client key for Consul over HTTPS (env CONSUL_CLIENT_KEY)', type: 'file', foreignEnv: 'CONSUL_CLIENT_KEY' },
    'consul-tls-server-name': { describe: "server name to verify in Consul's certificate (env CONSUL_TLS_SERVER_NAME)", type: 'text', foreignEnv: 'CONSUL_TLS_SERVER_NAME' },
    'consul-ssl-verify': { describe: "verify Consul's certificate (env CONSUL_HTTP_SSL_VERIFY)", boolean: true, default: 'true', foreignEnv: 'CONSUL_HTTP_SSL_VERIFY' },
    'allow-stale': { describe: 'read from any Consul server, not only the leader (as Consul DNS does)', boolean: true, default: 'true' },
    'max-stale': { describe: 'a stale read from a server out of touch with the leader longer than this is re-read from the leader', type: 'duration', default: '87600h' },
    'consul-wait': { describe: 'how long each blocking query waits for a change', type: 'duration', default: '5m' },
    watch: { describe: 'which services to watch: all, on-demand (from their first query), or auto (by --watch-all-limit)', choices: WATCH_MODES, default: 'auto' },
    'watch-all-limit': { describe: 'with --watch auto: watch every service up to this many, else on demand', type: 'number', default: '500' },
    'watch-idle': { describe: 'drop an on-demand watch after this long without queries', type: 'duration', default: '10m' },
    'fetch-timeout': { describe: 'how long a question waits for a service being fetched before SERVFAIL', type: 'duration', default: '2s' },
    'consul-heartbeat': {
      describe: "while blocking queries wait on Consul, probe /v1/status/leader this often, so a hang is seen (and every hung query asked again at Consul's recovery); 0: only when a read fails or is overdue",
      type: 'duration',
      default: '2s',
    },
    'query-max-stale': { describe: "how long a prepared query's last result keeps serving while Consul cannot execute it (then SERVFAIL)", type: 'duration', default: '30s' },
  },
  build(raw, problems, env) {
    const address = single(raw.consul);
    if (address === undefined) return { consul: null };
    const https = (env.CONSUL_HTTP_SSL ?? '').toLowerCase() === 'true';
    const url = consulUrl(address, https);
    if (!url) problems.add('consul', `${JSON.stringify(redactAddress(address))} is not an http(s) address such as 127.0.0.1:8500 or https://consul:8501`);
    const text = (key: string) => {
      const v = single(raw[key]);
      return v === undefined || v === '' ? null : v;
    };
    const token = text('consul-token');
    const tokenFile = text('consul-token-file');
    const consul: ConsulConfig = {
      url: url ?? new URL('http://127.0.0.1:8500'),
      token,
      tokenFile: token === null ? tokenFile : null,
      allowStale: boolean(single(raw['allow-stale']), 'allow-stale', problems),
      maxStaleMs: duration(single(raw['max-stale']), 'max-stale', problems),
      waitMs: Math.min(duration(single(raw['consul-wait']), 'consul-wait', problems), 600_000),
      watch: choice(single(raw.watch), 'watch', WATCH_MODES, problems),
      watchAllLimit: integer(single(raw['watch-all-limit']), 'watch-all-limit', 0, 1_000_000, problems),
      watchIdleMs: duration(single(raw['watch-idle']), 'watch-idle', problems),
      fetchTimeoutMs: duration(single(raw['fetch-timeout']), 'fetch-timeout', problems),
      heartbeatMs: duration(single(raw['consul-heartbeat']), 'consul-heartbeat', problems),
      queryMaxStaleMs: duration(single(raw['query-max-stale']), 'query-max-stale', problems),
      tls: {
        caFile: text('consul-cacert'),
        certFile: text('consul-client-cert'),
        keyFile: text('consul-client-key'),
        serverName: text('consul-tls-server-name'),
        verify: boolean(single(raw['consul-ssl-verify']), 'consul-ssl-verify', problems),
      },
    };
    return { consul };
  },
};

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
