/**
 * What ZooKeeper holds, turned into the catalog's records (the mapping the README's ZooKeeper section
 * documents):
 * - a Curator service `/services/NAME` is the service NAME; each instance one ServiceRecord;
 * - a Dubbo provider is an instance of two services: its application (`application=` parameter,
 *   e.g. `demo-provider`) and its interface (`org.apache.dubbo.demo.DemoService` →
 *   `org-apache-dubbo-demo-demoservice`), tagged with its protocol, `group-G` and `version-V`
 *   (dots as dashes: a tag is one DNS label), its SRV weight Dubbo's `weight`;
 * - names are lower-cased, dots, `_` and `$` become dashes; a name that is still not a DNS label is
 *   left out (the caller logs it);
 * - every host is a node named after its address (`10.0.0.5` → `10-0-0-5`, `2001:db8::5` →
 *   `2001-db8--5`, a hostname's dots as dashes), answering `NODE.node.DC.consul`;
 * - an instance is passing while its node exists (ZooKeeper's ephemeral nodes are its liveness);
 *   one its registry disables (Dubbo `disabled`/`enabled=false`, Curator `enabled: false`, Spring
 *   Cloud OUT_OF_SERVICE) is critical, so DNS leaves it out as Consul does failing instances;
 * - within one service, one instance per address and port (a Dubbo application exposing several
 *   interfaces on one port, or registered both per interface and per application, is one endpoint,
 *   with the tags of all of them: `version-1-0-0.demo-provider.service.consul` finds the
 *   application's endpoints that serve some interface at that version).
 */

import type { CatalogData, NodeRecord, ServiceRecord } from '../types.js';
import type { CuratorInstance } from './curator.js';
import { interfaceLabel, type DubboProvider } from './dubbo.js';

/** A service name or tag as a DNS label, the way interface names are mapped; null when it cannot be one. */
export const serviceLabel = interfaceLabel;

/** The node name for a host: its address or hostname with `.` and `:` as dashes, lower case; null if too long. */
export function nodeName(host: string): string | null {
  const name = host.toLowerCase().replace(/[.:]/g, '-').replace(/[^a-z0-9-]/g, '');
  return name === '' || name.length > 63 ? null : name;
}

/** The instances read from ZooKeeper, by where they came from. */
export interface ZooKeeperView {
  /** Curator services by their folder's name, each with its instances (already read and valid). */
  curator: ReadonlyMap<string, readonly CuratorInstance[]>;
  /** Dubbo providers (overrides applied), from every interface. */
  dubbo: readonly DubboProvider[];
}

/** A name left out of DNS, and why (logged once by the caller). */
export interface Skipped {
  what: string;
  reason: string;
}

export function toCatalog(view: ZooKeeperView, datacenter: string, skipped: (s: Skipped) => void): CatalogData {
  const nodes = new Map<string, NodeRecord>();
  const services: ServiceRecord[] = [];
  /** `service|address|port` already served, and where: one instance per endpoint in a service. */
  const endpoints = new Map<string, number>();

  const add = (service: string, id: string, host: string, port: number, tags: string[], weight: number, enabled: boolean): void => {
    const node = nodeName(host);
    if (node === null) {
      skipped({ what: `${service} instance ${id}`, reason: `its host ${JSON.stringify(host)} makes no node name` });
      return;
    }
    const key = `${service}|${host.toLowerCase()}|${port}`;
    const seen = endpoints.get(key);
    if (seen !== undefined) {
      const first = services[seen]!;
      services[seen] = { ...first, tags: [...new Set([...first.tags, ...tags])] };
      return;
    }
    endpoints.set(key, services.length);
    if (!nodes.has(node)) nodes.set(node, { datacenter, name: node, address: host, meta: {} });
    services.push({ datacenter, node, id, name: service, address: '', port, tags, weights: { passing: weight, warning: weight }, health: enabled ? 'passing' : 'critical' });
  };

  for (const [folder, instances] of [...view.curator].sort(([a], [b]) => compare(a, b))) {
    const service = serviceLabel(folder);
    if (service === null) {
      skipped({ what: `Curator service ${JSON.stringify(folder)}`, reason: 'its name makes no DNS label' });
      continue;
    }
    for (const i of [...instances].sort((a, b) => compare(a.id, b.id))) {
      add(service, i.id, i.address, i.port, i.ssl ? ['ssl'] : [], 1, i.enabled);
    }
  }

  const providers = [...view.dubbo].sort((a, b) => compare(providerKey(a), providerKey(b)));
  for (const p of providers) {
    const tags = [p.protocol];
    if (p.group !== null) tags.push(`group-${tagLabel(p.group)}`);
    if (p.version !== null) tags.push(`version-${tagLabel(p.version)}`);
    const iface = interfaceLabel(p.interfaceName);
    if (iface === null) skipped({ what: `Dubbo interface ${p.interfaceName}`, reason: 'its name makes no DNS label of 63 bytes or fewer' });
    else add(iface, `${iface}:${p.protocol}:${p.port}`, p.host, p.port, tags, p.weight, p.enabled);
    if (p.application !== null) {
      const app = serviceLabel(p.application);
      if (app === null) skipped({ what: `Dubbo application ${JSON.stringify(p.application)}`, reason: 'its name makes no DNS label' });
      else add(app, `${app}:${p.protocol}:${p.port}`, p.host, p.port, tags, p.weight, p.enabled);
    }
  }
  return { nodes: [...nodes.values()], services };
}

/** A group or version as part of a tag: dots (and anything else no label holds) as dashes. */
function tagLabel(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9-]/g, '-');
}

function providerKey(p: DubboProvider): string {
  return `${p.interfaceName}|${p.protocol}|${p.host}|${p.port}`;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
