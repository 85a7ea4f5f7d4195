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

import { isIP } from 'node:net';
import type { CatalogData, NodeRecord, ServiceRecord } from '../types.js';
import type { CuratorInstance } from './curator.js';
import { interfaceLabel, type DubboProvider } from './dubbo.js';

/** A service name or tag as a DNS label, the way interface names are mapped; null when it cannot be one. */
export const serviceLabel = interfaceLabel;

/**
 * The node name for a host: an IPv4 address or a hostname with dots as dashes, an IPv6 address
 * written out whole (`2001:db8::5` → `2001-db8-0-0-0-0-0-5`, so `::1` is `0-0-0-0-0-0-0-1`, never a
 * label starting or ending with a dash), lower case; null when that makes no DNS label.
 */
export function nodeName(host: string): string | null {
  const h = host.toLowerCase();
  const name = isIP(h) === 6 ? ipv6Groups(h).join('-') : h.replace(/\./g, '-').replace(/[^a-z0-9-]/g, '');
  return /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(name) ? name : null;
}

/** The eight groups of an IPv6 address, without leading zeros (an embedded IPv4 tail as two groups). */
function ipv6Groups(address: string): string[] {
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  let text = address;
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${address.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const left = head ? head.split(':') : [];
  const right = tail === undefined ? [] : tail ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : Array.from({ length: 8 - left.length - right.length }, () => '0');
  return [...left, ...zeros, ...right].map((g) => g.replace(/^0+(?=.)/, ''));
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

/** One registration of an endpoint in a service, before the registrations of one endpoint are merged. */
interface Registration {
  service: string;
  id: string;
  host: string;
  port: number;
  tags: readonly string[];
  weight: number;
  enabled: boolean;
  dubbo: boolean;
}

export function toCatalog(view: ZooKeeperView, datacenter: string, skipped: (s: Skipped) => void): CatalogData {
  /** By `service|host|port`, in the order first seen: every registration of one endpoint of a service. */
  const endpoints = new Map<string, Registration[]>();
  const add = (r: Registration): void => {
    const key = `${r.service}|${r.host.toLowerCase()}|${r.port}`;
    const list = endpoints.get(key);
    if (list) list.push(r);
    else endpoints.set(key, [r]);
  };

  for (const [folder, instances] of [...view.curator].sort(([a], [b]) => compare(a, b))) {
    const service = serviceLabel(folder);
    if (service === null) {
      skipped({ what: `Curator service ${JSON.stringify(folder)}`, reason: 'its name makes no DNS label' });
      continue;
    }
    for (const i of [...instances].sort((a, b) => compare(a.id, b.id))) {
      add({ service, id: i.id, host: i.address, port: i.port, tags: i.ssl ? ['ssl'] : [], weight: 1, enabled: i.enabled, dubbo: false });
    }
  }

  const providers = [...view.dubbo].sort((a, b) => compare(providerKey(a), providerKey(b)));
  for (const p of providers) {
    const tags = [p.protocol];
    if (p.group !== null) tags.push(`group-${tagLabel(p.group)}`);
    if (p.version !== null) tags.push(`version-${tagLabel(p.version)}`);
    const iface = interfaceLabel(p.interfaceName);
    if (iface === null) skipped({ what: `Dubbo interface ${p.interfaceName}`, reason: 'its name makes no DNS label of 63 bytes or fewer' });
    else add({ service: iface, id: `${iface}:${p.protocol}:${p.port}`, host: p.host, port: p.port, tags, weight: p.weight, enabled: p.enabled, dubbo: true });
    if (p.application !== null) {
      const app = serviceLabel(p.application);
      if (app === null) skipped({ what: `Dubbo application ${JSON.stringify(p.application)}`, reason: 'its name makes no DNS label' });
      else add({ service: app, id: `${app}:${p.protocol}:${p.port}`, host: p.host, port: p.port, tags, weight: p.weight, enabled: p.enabled, dubbo: true });
    }
  }

  const nodes = new Map<string, NodeRecord>();
  const services: ServiceRecord[] = [];
  for (const registrations of endpoints.values()) {
    const r = merge(registrations);
    const node = nodeName(r.host);
    if (node === null) {
      skipped({ what: `${r.service} instance ${r.id}`, reason: `its host ${JSON.stringify(r.host)} makes no node name` });
      continue;
    }
    const known = nodes.get(node);
    if (!known) nodes.set(node, { datacenter, name: node, address: r.host, meta: {} });
    // Two hosts whose names map to one node name (`10.0.0.5` and a hostname `10-0-0-5`): the node
    // keeps the first; this instance carries its own address, so it is never answered with another's.
    const clash = known !== undefined && known.address.toLowerCase() !== r.host.toLowerCase();
    if (clash) skipped({ what: `node name ${node}`, reason: `hosts ${known.address} and ${r.host} both make it: ${r.host}'s instances are answered by address` });
    services.push({ datacenter, node, id: r.id, name: r.service, address: clash ? r.host : '', port: r.port, tags: r.tags, weights: { passing: r.weight, warning: r.weight }, health: r.enabled ? 'passing' : 'critical' });
  }
  return { nodes: [...nodes.values()], services };
}

/**
 * The registrations of one endpoint as one instance. Dubbo's say more than Curator's (a weight, its
 * overrides), so where both registered it (Dubbo 3's default register-mode=all) Dubbo's decide. It is
 * passing if any of those is (an application serving several interfaces there, one disabled, still
 * serves the others), with the highest weight among them, and the tags of all.
 */
function merge(registrations: readonly Registration[]): Registration {
  const dubbo = registrations.filter((r) => r.dubbo);
  const deciding = dubbo.length > 0 ? dubbo : registrations;
  const passing = deciding.filter((r) => r.enabled);
  const weighed = passing.length > 0 ? passing : deciding;
  return {
    ...deciding[0]!,
    enabled: passing.length > 0,
    weight: Math.max(...weighed.map((r) => r.weight)),
    tags: [...new Set(registrations.flatMap((r) => r.tags))],
  };
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
