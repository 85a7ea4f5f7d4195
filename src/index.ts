/**
 * The embedding API: what `import { createServer } from 'svcdns'` gives a Node program (the
 * package's `exports` point here). It is a thin layer over the command's own parts: options are
 * the configuration keys in camelCase (src/embed/options.ts), validated by the same builders, and a
 * catalog object is validated like a catalog file and served by the object source
 * (src/catalog/object/source.ts). Keep this surface small: every export here is public.
 */

import { pino, type Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { CatalogObject } from './catalog/file/format.js';
import { embeddedConfig } from './embed/options.js';
import { SvcdnsServer } from './server.js';

export { ConfigError } from './config.js';
export { CatalogError } from './catalog/file/format.js';
export type { CatalogNode, CatalogObject, CatalogService } from './catalog/file/format.js';
export type { Health } from './catalog/types.js';

/**
 * A configuration value: what the config file may hold for a key (lists for list keys, and for
 * `serviceTtl` a mapping of patterns to seconds, `{ web: 10, 'db*': 30, '*': 5 }`).
 */
export type OptionValue = string | number | boolean | readonly (string | number)[] | Readonly<Record<string, string | number>>;

/**
 * Options of {@link createServer}: every key of svcdns's config file (`svcdns --help` lists them)
 * in camelCase, e.g. `listen`, `domain`, `datacenter`, `consul`, `upstream`, `serviceTtl`,
 * `onlyPassing`, with the values the config file takes (`serviceTtl: 5` or `'5'` or `{ web: 10, '*': 5 }`,
 * `listen: ['127.0.0.1:0']`), plus `catalog` and `logger`.
 *
 * Unlike the command, `createServer` reads no environment variables (no `SVCDNS_*`, no
 * `CONSUL_HTTP_*`) and no config file: pass what you want. `workers`, `logLevel` and `logFormat`
 * are rejected (run processes and configure the logger yourself).
 */
export interface ServerOptions {
  /**
   * The catalog to serve: an object in the catalog file's shape (validated like the file; replace
   * it later with {@link Server.setCatalog}), or a catalog file's path (watched and reloaded like
   * the command's `--catalog`). Without `catalog` and `consul` the server starts with an empty
   * catalog that `setCatalog` fills.
   */
  catalog?: CatalogObject | string;
  /** Where logs go (a pino logger, e.g. `pino()` or a child of yours); default: no logs at all. */
  logger?: Logger;
  /** Any other configuration key, in camelCase. */
  [option: string]: OptionValue | CatalogObject | Logger | undefined;
}

/** One listening address: UDP and TCP on the same host and port. */
export interface ServerAddress {
  host: string;
  /** The bound port (the one the kernel chose when the option said port 0). */
  port: number;
}

/** A running server, as {@link createServer} resolves to it. */
export interface Server {
  /** Where it listens, one entry per `listen` address, in their order. */
  readonly addresses: readonly ServerAddress[];
  /**
   * Replaces the catalog object the server answers from. The new catalog is validated like a
   * catalog file: if it has problems the promise rejects with a {@link CatalogError} naming every
   * one, and the catalog before keeps serving. Answers use the new catalog once this resolves.
   * Only a server created with a catalog object (or with no catalog source) has one to replace: on
   * a server whose catalog comes from Consul or a file this rejects and changes nothing.
   */
  setCatalog(catalog: CatalogObject): Promise<void>;
  /**
   * The server's Prometheus metrics (the names are in the README's Operations section) as a
   * prom-client `Registry`: `await registry.metrics()` is the text a scrape returns, and
   * `Registry.merge([yours, server.metrics()])` serves them beside the program's own. Counting
   * starts at the first call (at start with `httpListen`), so a server nobody asks pays nothing.
   * The process_* and nodejs_* metrics are left to the program.
   */
  metrics(): Registry;
  /** Stops listening, lets go of the catalog source, timers and sockets; resolves when done. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts a DNS server in this process and resolves once it listens on every `listen` address.
 * Invalid options reject with one {@link ConfigError} naming every problem (a bad catalog object's
 * too); a failure to bind (address in use) rejects with that reason.
 *
 * @example
 * const server = await createServer({ listen: ['127.0.0.1:0'], catalog: { nodes: [] } });
 */
export async function createServer(options: ServerOptions = {}): Promise<Server> {
  const { logger, ...rest } = options;
  const log = logger ?? pino({ level: 'silent' });
  const { config, source, chosenBy } = embeddedConfig(rest, log);
  const server = await SvcdnsServer.start({ config, log, defaultMetrics: false, ...(source && { source }) });
  let closing: Promise<void> | null = null;
  return {
    addresses: Object.freeze(server.addresses.map((a) => Object.freeze({ host: a.host, port: a.port }))),
    setCatalog(next) {
      if (!source) {
        return Promise.reject(
          Object.assign(new Error(`setCatalog: this server's catalog comes from the ${chosenBy} option; only a server created with a catalog object (or no catalog source) takes one`), {
            code: 'SVCDNS_CATALOG_NOT_SETTABLE',
          }),
        );
      }
      try {
        source.set(next);
        return Promise.resolve();
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    },
    metrics: () => server.metrics().registry,
    close() {
      closing ??= server.close();
      return closing;
    },
  };
}
