/**
 * The example catalog shipped with svcdns (examples/catalog.yaml, made-up addresses) as a kind of
 * source: chosen only by asking for it (`--example`, as `npm start` does), never by default, so that
 * no host serves made-up addresses because a source was forgotten.
 */

import { fileURLToPath } from 'node:url';
import type { ConfigComponent } from '../../config/component.js';
import { boolean, single } from '../../config/values.js';
import type { SourceKind } from '../source.js';
import { FileSource } from './source.js';

/** The example catalog's path, in the repository and in the installed package alike. */
export const EXAMPLE_CATALOG = fileURLToPath(new URL('../../../examples/catalog.yaml', import.meta.url));

export interface ExampleConfig {
  /** Serve the bundled example catalog. */
  example: boolean;
}

export const exampleComponent: ConfigComponent<ExampleConfig> = {
  group: 'Catalog file',
  keys: {
    example: { describe: 'serve the bundled example catalog (made-up addresses: for trying svcdns out)', boolean: true, default: 'false' },
  },
  build: (raw, problems) => ({ example: boolean(single(raw.example), 'example', problems) }),
};

export const exampleSource: SourceKind<ExampleConfig> = {
  key: 'example',
  config: exampleComponent,
  configured: (config) => config.example,
  alone: true,
  create(config, log, { diagnostics, reloadDebounceMs }) {
    log.info({ file: EXAMPLE_CATALOG }, 'serving the bundled example catalog (made-up addresses)');
    return Promise.resolve(new FileSource({ path: EXAMPLE_CATALOG, defaultDatacenter: config.datacenter, log, diagnostics, debounceMs: reloadDebounceMs }));
  },
};
