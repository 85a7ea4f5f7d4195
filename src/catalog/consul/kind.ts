/** Consul as a kind of source: chosen by `consul` (or CONSUL_HTTP_ADDR); reads its token and TLS files at start. */

import { readFile } from 'node:fs/promises';
import type { SourceKind } from '../source.js';
import { createConsulApi } from './api.js';
import { consulComponent, type ConsulSection } from './config.js';
import { ConsulSource } from './source.js';

export const consulSource: SourceKind<ConsulSection> = {
  key: 'consul',
  config: consulComponent,
  configured: (config) => config.consul !== null,
  // Consul always publishes its local datacenter (others too, once it lists them: those clash at run time).
  datacenter: (config) => ({ name: config.datacenter, key: 'datacenter' }),
  async create({ consul: c, datacenter }, log, { diagnostics, retryBackoff }) {
    if (c === null) throw new Error('no Consul address is configured');
    // Only the scheme, host and port reach Consul (the token goes in a header): say so rather than
    // drop a user name, password (no HTTP basic auth is sent), path or query in silence. The
    // address is logged as its origin, so whatever secret they held stays out of the log.
    if (c.url.username !== '' || c.url.password !== '' || c.url.pathname !== '/' || c.url.search !== '') {
      log.warn({ consul: c.url.origin }, 'consul address: only its scheme, host and port are used; its user, password, path and query are ignored (give an ACL token with --consul-token-file)');
    }
    const api = createConsulApi({
      url: c.url,
      token: c.token ?? (c.tokenFile ? await readSecret(c.tokenFile, 'consul token file') : null),
      tls: {
        ca: c.tls.caFile ? await readSecret(c.tls.caFile, 'consul CA file') : null,
        cert: c.tls.certFile ? await readSecret(c.tls.certFile, 'consul client certificate') : null,
        key: c.tls.keyFile ? await readSecret(c.tls.keyFile, 'consul client key') : null,
        serverName: c.tls.serverName,
        verify: c.tls.verify,
      },
    });
    return new ConsulSource({
      api,
      hasToken: c.token !== null || c.tokenFile !== null,
      address: c.url.origin,
      datacenter,
      log,
      diagnostics,
      allowStale: c.allowStale,
      maxStaleMs: c.maxStaleMs,
      waitMs: c.waitMs,
      watch: c.watch,
      watchAllLimit: c.watchAllLimit,
      watchIdleMs: c.watchIdleMs,
      queryMaxStaleMs: c.queryMaxStaleMs,
      queryTimeoutMs: c.fetchTimeoutMs,
      heartbeatMs: c.heartbeatMs,
      ...(retryBackoff && { backoff: retryBackoff }),
    });
  },
};

/** Reads a token, key or certificate file; errors name the file, never its contents. */
async function readSecret(path: string, what: string): Promise<string> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch (err) {
    throw new Error(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  }
}
