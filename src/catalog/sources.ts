/**
 * The kinds of catalog source a configuration can choose from. Each kind lives in its own folder
 * and brings its keys, when it is chosen, and how it is created (`SourceKind`, src/catalog/source.ts);
 * src/config.ts takes their keys from here. A new source is its folder plus one line in SOURCES.
 */

import type { Logger } from 'pino';
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

type UnionToIntersection<U> = (U extends unknown ? (u: U) => void : never) extends (i: infer I) => void ? I : never;
type ConfigOf<K> = K extends SourceKind<infer C> ? C : never;

/** Every source's part of the configuration, side by side (`catalog`, `consul`). */
export type SourcesConfig = UnionToIntersection<ConfigOf<(typeof SOURCES)[keyof typeof SOURCES]>>;

/** The registered kinds, in order. */
export const SOURCE_KINDS = Object.values(SOURCES);

/**
 * The catalog source the configuration chooses (the configuration lets at most one be chosen, and
 * the CLI's at least one: there is no default source, see `requireSource` in src/config.ts).
 */
export function createSource(config: SourcesConfig & { datacenter: string }, log: Logger, options: SourceOptions): Promise<CatalogSource> {
  const kind = SOURCE_KINDS.find((k) => k.configured(config));
  if (!kind) return Promise.reject(new Error(`no catalog source is configured (${SOURCE_KINDS.map((k) => `--${k.key}`).join(', ')})`));
  return kind.create(config, log, options);
}
