/** The catalog file's key. */

import type { ConfigComponent } from '../../config/component.js';
import { single } from '../../config/values.js';

export interface CatalogFileConfig {
  /** Catalog file path, or null for the bundled example catalog (when no other source is configured). */
  catalog: string | null;
}

export const catalogFileComponent: ConfigComponent<CatalogFileConfig> = {
  keys: {
    catalog: { describe: 'catalog file (YAML or JSON), reloaded when it changes; default: the bundled example' },
  },
  build(raw, problems) {
    const catalog = single(raw.catalog) ?? null;
    if (catalog !== null && catalog.trim() === '') problems.add('catalog', `must be a file path (got ${JSON.stringify(catalog)})`);
    return { catalog };
  },
};
