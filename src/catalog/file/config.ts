/** The catalog file's key. */

import type { ConfigComponent } from '../../config/component.js';
import { single } from '../../config/values.js';

export interface CatalogFileConfig {
  /** Catalog file path, or null when another source is chosen. */
  catalog: string | null;
}

export const catalogFileComponent: ConfigComponent<CatalogFileConfig> = {
  group: 'Catalog file',
  keys: {
    catalog: { describe: 'catalog file (YAML or JSON), reloaded when it changes and on SIGHUP', type: 'file' },
  },
  build(raw, problems) {
    const catalog = single(raw.catalog) ?? null;
    if (catalog !== null && catalog.trim() === '') problems.add('catalog', `must be a file path (got ${JSON.stringify(catalog)})`);
    return { catalog };
  },
};
