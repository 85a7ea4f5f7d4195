/**
 * The catalog file as a kind of source: chosen by `catalog`, and the default when no source is
 * chosen at all, serving then the example catalog shipped with svcdns.
 */

import { fileURLToPath } from 'node:url';
import type { SourceKind } from '../source.js';
import { catalogFileComponent, type CatalogFileConfig } from './config.js';
import { FileSource } from './source.js';

/** The example catalog shipped with svcdns, served when no catalog is configured. */
export const EXAMPLE_CATALOG = fileURLToPath(new URL('../../../examples/catalog.yaml', import.meta.url));

export const fileSource: SourceKind<CatalogFileConfig> = {
  key: 'catalog',
  config: catalogFileComponent,
  configured: (config) => config.catalog !== null,
  create(config, log, { diagnostics, reloadDebounceMs }) {
    const path = config.catalog ?? EXAMPLE_CATALOG;
    if (config.catalog === null) log.info({ file: path }, 'no catalog configured; serving the bundled example catalog');
    return Promise.resolve(new FileSource({ path, defaultDatacenter: config.datacenter, log, diagnostics, debounceMs: reloadDebounceMs }));
  },
};
