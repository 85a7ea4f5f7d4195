/**
 * The kinds of catalog source a configuration can choose from. Each kind lives in its own folder
 * and brings its keys, when it is chosen, and how it is created (`SourceKind`, src/catalog/source.ts);
 * src/config.ts takes their keys from here. A new source is its folder plus one line in SOURCES.
 *
 * Several kinds may be chosen at once (not one that serves alone, `example`): they run as one
 * composite source (src/catalog/composite/), where a datacenter belongs to one source, the first in
 * PRECEDENCE that publishes it.
 */

import type { Logger } from 'pino';
import { CompositeSource } from './composite/source.js';
import { consulSource } from './consul/kind.js';
import { exampleSource } from './file/example.js';
import { fileSource } from './file/kind.js';
import { zookeeperSource } from './zookeeper/kind.js';
import type { CatalogSource, SourceKind, SourceOptions } from './source.js';

/** By name; the order their keys appear in messages. */
export const SOURCES = {
  file: fileSource,
  consul: consulSource,
  zookeeper: zookeeperSource,
  example: exampleSource,
} as const;

/**
 * Who keeps a datacenter two sources publish, by the key choosing them: registries before the
 * catalog file (a file is the static addition; a registry is where services register live). Kinds
 * not listed follow, in SOURCES order.
 */
export const PRECEDENCE: readonly string[] = ['consul', 'zookeeper', 'catalog'];

type UnionToIntersection<U> = (U extends unknown ? (u: U) => void : never) extends (i: infer I) => void ? I : never;
type ConfigOf<K> = K extends SourceKind<infer C> ? C : never;

/** Every source's part of the configuration, side by side (`catalog`, `consul`). */
export type SourcesConfig = UnionToIntersection<ConfigOf<(typeof SOURCES)[keyof typeof SOURCES]>>;

/** The registered kinds, in order. */
export const SOURCE_KINDS = Object.values(SOURCES);

/** What choosing and creating sources needs of a kind, whatever its part of the configuration (methods: checked bivariantly). */
export interface ChoosableKind {
  readonly key: string;
  readonly alone?: boolean;
  configured(config: SourcesConfig): boolean;
  datacenter?(config: SourcesConfig & { datacenter: string }): { name: string; key: string } | null;
  create(config: SourcesConfig & { datacenter: string }, log: Logger, options: SourceOptions): Promise<CatalogSource>;
}

type AnyKind = ChoosableKind;

/** The kinds `config` chooses, in PRECEDENCE order. */
export function chosenKinds(config: SourcesConfig, kinds: readonly AnyKind[] = SOURCE_KINDS): AnyKind[] {
  const rank = (k: AnyKind) => {
    const i = PRECEDENCE.indexOf(k.key);
    return i >= 0 ? i : PRECEDENCE.length + kinds.indexOf(k);
  };
  return kinds.filter((k) => k.configured(config)).sort((a, b) => rank(a) - rank(b));
}

/**
 * Two chosen sources certain from the configuration alone to publish the same datacenter: one
 * problem each, naming the key that gives the second one a datacenter of its own.
 */
export function datacenterClashes(config: SourcesConfig & { datacenter: string }, kinds: readonly AnyKind[] = SOURCE_KINDS): string[] {
  const problems: string[] = [];
  const seen: { key: string; name: string }[] = [];
  for (const kind of chosenKinds(config, kinds)) {
    const dc = kind.datacenter?.(config);
    if (!dc) continue;
    const first = seen.find((s) => s.name.toLowerCase() === dc.name.toLowerCase());
    if (first) {
      problems.push(`${first.key} and ${kind.key}: both would publish datacenter ${dc.name} (a datacenter belongs to one source): give ${kind.key} a datacenter of its own with --${dc.key}`);
    } else {
      seen.push({ key: kind.key, name: dc.name });
    }
  }
  return problems;
}

/**
 * The catalog source the configuration chooses: one kind's source as it is, several as one
 * composite source (the configuration lets several be chosen only when none serves alone, and the
 * CLI's at least one: there is no default source, see `requireSource` in src/config.ts).
 */
export async function createSource(config: SourcesConfig & { datacenter: string }, log: Logger, options: SourceOptions): Promise<CatalogSource> {
  const kinds = chosenKinds(config);
  if (kinds.length === 0) throw new Error(`no catalog source is configured (${SOURCE_KINDS.map((k) => `--${k.key}`).join(', ')})`);
  if (kinds.length === 1) return kinds[0]!.create(config, log, options);
  const members: { source: CatalogSource; declared: string[] }[] = [];
  try {
    for (const kind of kinds) {
      const dc = kind.datacenter?.(config);
      members.push({ source: await kind.create(config, log, options), declared: dc ? [dc.name] : [] });
    }
  } catch (err) {
    await Promise.all(members.map((m) => m.source.stop()));
    throw err;
  }
  return new CompositeSource(members, log, options.diagnostics);
}
