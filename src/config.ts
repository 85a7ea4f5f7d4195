/**
 * One validated, frozen configuration from the keys every component declares, with the same keys
 * in every place:
 *   defaults < config file (`--config FILE`, YAML or JSON) < other tools' env vars (Consul's
 *   CONSUL_HTTP_ADDR...) < `SVCDNS_*` env vars < command-line flags.
 * Keys are the flag names (`alt-domain`); env vars upper-case them (`SVCDNS_ALT_DOMAIN`), and list
 * values are comma-separated there (`SVCDNS_LISTEN=127.0.0.1:53,[::1]:53`).
 * Unknown keys are rejected wherever they appear, and every problem is reported at once.
 *
 * Each component declares its keys and builds its own options from the merged values (the
 * listeners in src/listen/config.ts, the answerer in src/answer/config.ts, each catalog source in
 * its folder, registered in src/catalog/sources.ts, and so on); this module gathers them, layers
 * the values, and keeps the one rule between components: which catalog sources run (several side
 * by side, each owning its datacenters; `--example` alone; an ambient CONSUL_HTTP_ADDR gives way).
 */

import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { answerComponent, type AnswerConfig } from './answer/config.js';
import { datacenterClashes, SOURCE_KINDS, type SourcesConfig } from './catalog/sources.js';
import { Problems, type ConfigComponent, type KeySpec, type RawConfig } from './config/component.js';
import { replyCacheComponent, type ReplyCacheConfig } from './pipeline/config.js';
import { splitList } from './config/values.js';
import { forwardComponent, type ForwardSection } from './forward/config.js';
import { httpComponent, type HttpConfig } from './http/config.js';
import { lifecycleComponent, type LifecycleConfig } from './lifecycle/config.js';
import { listenComponent, type ListenConfig } from './listen/config.js';
import { rrlComponent, type RrlConfig } from './rrl/config.js';
import { stateComponent, type StateConfig } from './state/config.js';
import { logComponent, type LogConfig } from './log.js';

export type { RawConfig } from './config/component.js';

/** Every component's options side by side. */
export type Config = ListenConfig & AnswerConfig & ReplyCacheConfig & LogConfig & SourcesConfig & ForwardSection & HttpConfig & LifecycleConfig & StateConfig & RrlConfig;

export class ConfigError extends Error {
  readonly code = 'SVCDNS_CONFIG_INVALID';
  constructor(readonly problems: readonly string[]) {
    super(problems.join('; '));
    this.name = 'ConfigError';
  }
}

/**
 * Every component, the catalog sources' (src/catalog/sources.ts) among them. Their order is that of
 * the groups in --help (by each group's first component).
 */
const COMPONENTS: readonly ConfigComponent<object>[] = [
  listenComponent,
  ...SOURCE_KINDS.map((kind) => kind.config),
  answerComponent,
  replyCacheComponent,
  forwardComponent,
  logComponent,
  httpComponent,
  lifecycleComponent,
  stateComponent,
  rrlComponent,
];

/**
 * These keys come first, in this order, in --help and among the problems reported (the order they
 * had when one table held every key); the others follow component by component, each component's
 * in its own order.
 */
const FIRST = [
  'listen',
  'catalog',
  'domain',
  'alt-domain',
  'datacenter',
  'service-ttl',
  'node-ttl',
  'tcp-idle-timeout',
  'tcp-max-connections',
  'tcp-max-per-client',
  'max-udp-size',
  'workers',
  'worker-sockets',
  'answer-cache-size',
  'answer-cache-max-bytes',
  'log-level',
  'log-format',
  'query-log',
  'only-passing',
];

const componentOf = new Map<string, number>();
COMPONENTS.forEach((component, i) => {
  for (const key of Object.keys(component.keys)) {
    if (componentOf.has(key)) throw new Error(`config: two components declare the key ${key}`);
    componentOf.set(key, i);
  }
});
for (const key of FIRST) if (!componentOf.has(key)) throw new Error(`config: no component declares the key ${key}`);

function rank(key: string): number {
  const first = FIRST.indexOf(key);
  return first >= 0 ? first : FIRST.length + (componentOf.get(key) ?? COMPONENTS.length);
}

/** Every configuration key, documented once; the CLI's flags are generated from this table. */
export const KEYS: Readonly<Record<string, KeySpec>> = Object.fromEntries(
  COMPONENTS.flatMap((c) => Object.entries(c.keys)).sort(([a], [b]) => rank(a) - rank(b)),
);

/** The keys under each component's group title, for --help: groups in component order, keys as in KEYS. */
export const KEY_GROUPS: readonly { title: string; keys: readonly string[] }[] = (() => {
  const groups = new Map<string, string[]>();
  for (const c of COMPONENTS) if (!groups.has(c.group)) groups.set(c.group, []);
  for (const key of Object.keys(KEYS)) groups.get(COMPONENTS[componentOf.get(key)!]!.group)!.push(key);
  return [...groups].map(([title, keys]) => ({ title, keys }));
})();

export interface ConfigInputs {
  /** Flags as parsed by the CLI (only keys the user gave). */
  flags: RawConfig;
  env: NodeJS.ProcessEnv;
  /** Path of the config file, if any. */
  configFile?: string | undefined;
  readFile?: (path: string) => string;
  /**
   * A catalog source must be chosen (the CLI: there is no default source, so a host never serves
   * the example's made-up addresses by mistake). Off for callers that bring their own source.
   */
  requireSource?: boolean;
}

export function envName(key: string): string {
  return `SVCDNS_${key.toUpperCase().replace(/-/g, '_')}`;
}

/** Merges and validates; throws ConfigError listing every problem. */
export function resolveConfig(inputs: ConfigInputs): Config {
  return resolveLayers(inputs).config;
}

/**
 * `resolveConfig`, with the merged value of every key as well (after layering, before building):
 * what a SIGHUP compares key by key to tell which keys changed (src/lifecycle/reload.ts).
 */
export function resolveLayers(inputs: ConfigInputs): { config: Config; raw: Readonly<RawConfig> } {
  const problems: string[] = [];
  const merged: RawConfig = {};
  for (const [key, spec] of Object.entries(KEYS)) merged[key] = spec.default;

  // Where each key's value came from, when not from its default or its flag (for the problems' text).
  const origin = new Map<string, string>();
  const configFile = inputs.configFile ?? inputs.env[envName('config')];
  if (configFile) {
    const fromFile = readConfigFile(configFile, inputs.readFile, problems);
    Object.assign(merged, fromFile);
    for (const key of Object.keys(fromFile)) origin.set(key, 'config file');
  }
  // Keys set by another tool's env var and by nothing above it: "ambient" settings.
  const ambient = new Set<string>();
  for (const [key, spec] of Object.entries(KEYS)) {
    const value = spec.foreignEnv === undefined ? undefined : inputs.env[spec.foreignEnv];
    if (value !== undefined && value !== '') {
      merged[key] = spec.list ? splitList(value) : value;
      ambient.add(key);
      origin.set(key, spec.foreignEnv!);
    }
  }
  for (const [key, spec] of Object.entries(KEYS)) {
    const value = inputs.env[envName(key)];
    if (value !== undefined && value !== '') {
      merged[key] = spec.list ? splitList(value) : value;
      ambient.delete(key);
      origin.set(key, envName(key));
    }
  }
  for (const [key, value] of Object.entries(inputs.flags)) {
    if (!Object.hasOwn(KEYS, key)) problems.push(`unknown option --${key}`);
    else if (value !== undefined) {
      merged[key] = value;
      ambient.delete(key);
      origin.delete(key);
    }
  }
  // The catalog sources: an explicit choice (a catalog file) beats an ambient one (CONSUL_HTTP_ADDR),
  // which is dropped rather than joined (a Consul agent's address in the environment does not
  // quietly add Consul's services to a file's). Explicit choices run side by side, each owning its
  // datacenters, except a source that serves alone (`--example`).
  const chosen = SOURCE_KINDS.filter((kind) => chooses(kind.key, merged[kind.key]));
  const explicit = chosen.filter((kind) => !ambient.has(kind.key));
  const kept = explicit.length > 0 ? explicit : chosen;
  for (const kind of chosen) if (!kept.includes(kind)) delete merged[kind.key];
  if (kept.length > 1 && kept.some((kind) => kind.alone)) problems.push(`${kept.map((kind) => kind.key).join(' and ')}: choose one source of the catalog`);
  if (kept.length === 0 && inputs.requireSource) problems.push(noSource());

  const found = new Problems();
  const config = Object.assign({}, ...COMPONENTS.map((c) => c.build(merged, found, inputs.env))) as Config;
  problems.push(...found.list(rank, (key) => origin.get(key)));
  // Certain from the configuration alone: two sources publishing one datacenter (only when the
  // sources' own keys are fine, so a problem is not reported twice).
  if (found.list(rank).length === 0) problems.push(...datacenterClashes(config));
  if (problems.length > 0) throw new ConfigError(problems);
  return { config: Object.freeze(config), raw: Object.freeze(merged) };
}

/** Whether a source's key, as given, chooses it: a value, or for a switch (`example`) true. */
function chooses(key: string, value: RawConfig[string]): boolean {
  if (!KEYS[key]!.boolean) return value !== undefined;
  const v = [value].flat().at(-1)?.trim().toLowerCase();
  return v === 'true' || v === '1';
}

/** `no catalog source: give --catalog FILE, --consul URL (or CONSUL_HTTP_ADDR) or --example`, from the registry. */
function noSource(): string {
  const options = SOURCE_KINDS.map(({ key }) => {
    const spec = KEYS[key]!;
    return `--${key}${spec.type ? ` ${spec.type.toUpperCase()}` : ''}${spec.foreignEnv ? ` (or ${spec.foreignEnv})` : ''}`;
  });
  return `no catalog source: give ${options.slice(0, -1).join(', ')} or ${options.at(-1)!}`;
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
  return mappingValues(doc as Record<string, unknown>, problems, {
    keyOf: (name) => name,
    unknown: (name) => `config file ${path}: unknown key ${JSON.stringify(name)}`,
    notAValue: (name, list) => `config file ${path}: ${name} must be a ${list ? 'list or a ' : ''}single value`,
  });
}

function isMapping(value: unknown): value is Readonly<Record<string, unknown>> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `{web: 10, "db*": 30}` -> `['web=10', 'db*=30']`, a map key's items; null if a value is not a single value. */
function mapItems(mapping: Readonly<Record<string, unknown>>): string[] | null {
  const items: string[] = [];
  for (const [name, value] of Object.entries(mapping)) {
    if (typeof value !== 'string' && typeof value !== 'number') return null;
    items.push(`${name}=${String(value)}`);
  }
  return items;
}

/** How a mapping of options names its options and words its problems (see `mappingValues`). */
export interface MappingWords {
  /** The key an option name stands for; undefined when none does. */
  keyOf(name: string): string | undefined;
  unknown(name: string): string;
  notAValue(name: string, list: boolean): string;
}

/**
 * The values of a mapping of option names to values, by key, as layering takes them: strings,
 * numbers and booleans as strings, lists (for list keys) as lists of strings. Used for the config
 * file and for the embedding API's options (src/index.ts), so both accept the same values.
 */
export function mappingValues(doc: Readonly<Record<string, unknown>>, problems: string[], words: MappingWords): RawConfig {
  const out: RawConfig = {};
  for (const [name, value] of Object.entries(doc)) {
    const key = words.keyOf(name);
    if (key === undefined || !Object.hasOwn(KEYS, key)) {
      problems.push(words.unknown(name));
    } else if (Array.isArray(value) && KEYS[key]!.list) {
      out[key] = value.map(String);
    } else if (KEYS[key]!.map && isMapping(value)) {
      const items = mapItems(value);
      if (items) out[key] = items;
      else problems.push(words.notAValue(name, true));
    } else if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
      out[key] = KEYS[key]!.list ? [String(value)] : String(value);
    } else {
      problems.push(words.notAValue(name, KEYS[key]!.list === true));
    }
  }
  return out;
}
