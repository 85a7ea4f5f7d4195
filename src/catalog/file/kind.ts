/** The catalog file as a kind of source: chosen by `catalog`. */

import type { SourceKind } from '../source.js';
import { catalogFileComponent, type CatalogFileConfig } from './config.js';
import { FileSource } from './source.js';

export const fileSource: SourceKind<CatalogFileConfig> = {
  key: 'catalog',
  config: catalogFileComponent,
  configured: (config) => config.catalog !== null,
  create(config, log, { diagnostics, reloadDebounceMs }) {
    if (config.catalog === null) throw new Error('no catalog file is configured');
    return Promise.resolve(new FileSource({ path: config.catalog, defaultDatacenter: config.datacenter, log, diagnostics, debounceMs: reloadDebounceMs }));
  },
};
