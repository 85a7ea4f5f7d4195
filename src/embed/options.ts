/**
 * The embedding API's options (src/index.ts) turned into what the server runs on: a Config, built
 * by the same layering and builders as the command's (src/config.ts), and the catalog object's
 * source. Option names are the configuration keys in camelCase, derived from `KEYS`, so a key a
 * component adds is an option at once. Every problem, the catalog object's included, ends up in
 * one ConfigError, as the command reports them in one line.
 */

import type { Logger } from 'pino';
import { CatalogError } from '../catalog/file/format.js';
import { ObjectSource } from '../catalog/object/source.js';
import { SOURCE_KINDS } from '../catalog/sources.js';
import { ConfigError, KEYS, mappingValues, resolveConfig, type Config } from '../config.js';

/** Keys of the command that mean nothing inside another program, and what to do instead. */
const NOT_EMBEDDED: Readonly<Record<string, string>> = {
  workers: 'the server runs in your process; start more processes yourself to use more cores',
  'worker-sockets': 'the server runs in your process, with no workers',
  'log-level': 'pass a pino logger as `logger`, at the level you want',
  'log-format': 'pass a pino logger as `logger`, in the format you want',
};

/** A configuration key's option name: `service-ttl` -> `serviceTtl`. */
export function optionName(key: string): string {
  return key.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Option name -> configuration key, for every key. */
const KEY_OF_OPTION = new Map(Object.keys(KEYS).map((key) => [optionName(key), key]));

export interface Embedded {
  config: Config;
  /** The catalog object's source (it serves alone); absent when the configuration chooses sources (a file, Consul, both). */
  source?: ObjectSource;
  /** The keys that chose the sources, when any did (`consul`, `catalog and consul`), for messages. */
  chosenBy?: string;
}

/**
 * Options (without `logger`) -> the configuration and the catalog object's source. `catalog` is a
 * catalog object, or a string: the catalog file's path, as the config file's `catalog` key. With no
 * source chosen at all the server gets an empty catalog object (a program fills it later), never
 * the command's bundled example.
 */
export function embeddedConfig(options: Readonly<Record<string, unknown>>, log: Logger): Embedded {
  const { catalog, ...rest } = options;
  const problems: string[] = [];
  const flags = mappingValues(rest, problems, {
    keyOf: (name) => KEY_OF_OPTION.get(name),
    unknown: (name) => `unknown option ${JSON.stringify(name)}${Object.hasOwn(KEYS, name) && name !== optionName(name) ? ` (options are camelCase: ${optionName(name)})` : ''}`,
    notAValue: (name, list) => `${name}: must be a ${list ? 'list or a ' : ''}single value`,
  });
  for (const [key, instead] of Object.entries(NOT_EMBEDDED)) {
    if (flags[key] !== undefined) problems.push(`${optionName(key)}: not an option of createServer: ${instead}`);
    delete flags[key];
  }
  const object = catalog !== undefined && typeof catalog !== 'string' ? catalog : undefined;
  if (typeof catalog === 'string') flags.catalog = catalog;

  let config: Config | null = null;
  try {
    // No env: an embedded server is configured by its caller alone.
    config = resolveConfig({ flags, env: {} });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.problems.map(camelCaseProblem));
  }
  const chosen = config ? SOURCE_KINDS.filter((kind) => kind.configured(config)).map((kind) => kind.key) : [];
  if (object !== undefined && chosen.length > 0) problems.push(`catalog and ${chosen.join(' and ')}: choose one source of the catalog`);

  let source: ObjectSource | undefined;
  if (object !== undefined || (chosen.length === 0 && typeof catalog !== 'string')) {
    try {
      // Checked even when the options have problems, so all of them are reported at once. The
      // datacenter only fills in nodes that name none: no problem depends on it.
      source = new ObjectSource(object === undefined ? {} : object, config?.datacenter ?? 'dc1', log);
    } catch (err) {
      if (!(err instanceof CatalogError)) throw err;
      problems.push(...err.problems.map((p) => `catalog: ${p}`));
    }
  }
  if (problems.length > 0 || !config) throw new ConfigError(problems);
  return { config, ...(source && { source }), ...(chosen.length > 0 && { chosenBy: chosen.join(' and ') }) };
}

/** `service-ttl: must be ...` -> `serviceTtl: must be ...`: problems name the options as the caller wrote them. */
function camelCaseProblem(problem: string): string {
  return problem.replace(/^[a-z][a-z0-9-]*(?=:)/, (key) => (Object.hasOwn(KEYS, key) ? optionName(key) : key));
}
