/** ZooKeeper's keys: the ensemble, the chroot, the two trees read, and the datacenter its services go in. */

import type { ConfigComponent } from '../../config/component.js';
import { duration, label, positive, single } from '../../config/values.js';

export interface ZooKeeperConfig {
  /** `HOST:PORT` of each server of the ensemble, as given. */
  servers: readonly string[];
  /** Chroot every path is under (`/apps`), '' for none. */
  root: string;
  /** Curator service discovery's base path (`/services`); null: not read. */
  servicesPath: string | null;
  /** Dubbo's registry root (`/dubbo`); null: not read. */
  dubboPath: string | null;
  /** The datacenter ZooKeeper's services are answered in; null: the local one (--datacenter). */
  datacenter: string | null;
  /** svcdns's own session timeout, ms (how long ZooKeeper keeps its watches through a lost connection). */
  sessionTimeoutMs: number;
}

export interface ZooKeeperSection {
  zookeeper: ZooKeeperConfig | null;
}

const HOST_PORT = /^(?:\[[0-9a-f:.]+\]|[a-z0-9.-]+):\d{1,5}$/i;

export const zookeeperComponent: ConfigComponent<ZooKeeperSection> = {
  group: 'ZooKeeper',
  keys: {
    zookeeper: { describe: 'ZooKeeper ensemble to watch: HOST:PORT[,HOST:PORT...] (Dubbo providers, Curator service discovery)', type: 'HOST:PORT[,HOST:PORT...]' },
    'zookeeper-root': { describe: 'chroot: every ZooKeeper path below is under this one (e.g. /apps)', type: 'ZNODE PATH', default: '' },
    'zookeeper-services-path': { describe: "Curator service discovery's base path (Spring Cloud Zookeeper, Dubbo 3 application discovery); empty: not read", type: 'ZNODE PATH', default: '/services' },
    'zookeeper-dubbo-path': { describe: "Dubbo's registry root (interface-level providers); empty: not read", type: 'ZNODE PATH', default: '/dubbo' },
    'zookeeper-datacenter': { describe: "the datacenter ZooKeeper's services are answered in (default: --datacenter)", type: 'name' },
    'zookeeper-session-timeout': { describe: "svcdns's ZooKeeper session timeout (how long its watches outlive a lost connection)", type: 'duration', default: '30s' },
  },
  build(raw, problems) {
    const given = single(raw.zookeeper);
    if (given === undefined) return { zookeeper: null };
    const servers = given.split(',').map((s) => s.trim()).filter((s) => s !== '');
    const bad = servers.filter((s) => !HOST_PORT.test(s) || Number(s.slice(s.lastIndexOf(':') + 1)) > 65535);
    if (servers.length === 0 || bad.length > 0) {
      problems.add('zookeeper', `must be HOST:PORT[,HOST:PORT...] such as 127.0.0.1:2181 (got ${JSON.stringify(bad.length > 0 ? bad.join(',') : given)})`);
    }
    const path = (key: string, emptyIsNone: boolean): string | null => {
      const v = (single(raw[key]) ?? '').trim().replace(/\/+$/, '');
      if (v === '') return emptyIsNone ? null : '';
      if (!v.startsWith('/') || v.includes('//')) problems.add(key, `must be an absolute ZooKeeper path such as /services (got ${JSON.stringify(v)})`);
      return v;
    };
    const dc = single(raw['zookeeper-datacenter']);
    return {
      zookeeper: {
        servers,
        root: path('zookeeper-root', false) ?? '',
        servicesPath: path('zookeeper-services-path', true),
        dubboPath: path('zookeeper-dubbo-path', true),
        datacenter: dc === undefined || dc === '' ? null : label(dc, 'zookeeper-datacenter', problems),
        sessionTimeoutMs: positive(duration(single(raw['zookeeper-session-timeout']), 'zookeeper-session-timeout', problems), 'zookeeper-session-timeout', problems),
      },
    };
  },
};
