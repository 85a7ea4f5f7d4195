/** ZooKeeper as a kind of source: chosen by `zookeeper`; its services go in `--zookeeper-datacenter` (default: the local one). */

import type { SourceKind } from '../source.js';
import { zookeeperComponent, type ZooKeeperSection } from './config.js';
import { ZooKeeperSource } from './source.js';

export const zookeeperSource: SourceKind<ZooKeeperSection> = {
  key: 'zookeeper',
  config: zookeeperComponent,
  configured: (config) => config.zookeeper !== null,
  // Every ZooKeeper service goes in one datacenter, known from the keys: beside Consul it must be another.
  datacenter: (config) => (config.zookeeper === null ? null : { name: config.zookeeper.datacenter ?? config.datacenter, key: 'zookeeper-datacenter' }),
  create({ zookeeper: z, datacenter }, log, { diagnostics }) {
    if (z === null) throw new Error('no ZooKeeper ensemble is configured');
    return Promise.resolve(
      new ZooKeeperSource({
        servers: z.servers,
        root: z.root,
        servicesPath: z.servicesPath,
        dubboPath: z.dubboPath,
        datacenter: z.datacenter ?? datacenter,
        sessionTimeoutMs: z.sessionTimeoutMs,
        log,
        diagnostics,
      }),
    );
  },
};
