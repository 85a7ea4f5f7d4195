/**
 * The catalog file format (YAML, or JSON, which YAML reads too), validated into CatalogData.
 *
 * ```yaml
 * datacenter: dc1            # optional; default: the --datacenter setting
 * nodes:
 *   - name: consul-1
 *     address: 192.168.0.129 # IPv4 or IPv6, or a hostname (answered as a CNAME)
 *     datacenter: dc2        # optional, per node
 *     meta: {rack: r1}       # optional
 *     tagged_addresses:      # optional: lan_ipv4, lan_ipv6, wan, wan_ipv4, wan_ipv6 (Consul's)
 *       lan_ipv6: 2001:db8::81
 *     services:
 *       - name: httpbackend
 *         id: httpbackend-1  # optional; default: the name
 *         port: 8081
 *         address: 10.0.0.5  # optional (IP or hostname); default: the node address
 *         tagged_addresses:  # optional, as the node's, each an address or {address, port}
 *           wan: {address: 203.0.113.5, port: 18081}
 *         tags: [http, v1]
 *         weights: {passing: 10, warning: 1}   # optional; default 1/1
 *         health: passing    # passing | warning | critical; default passing
 *       - name: web-sidecar-proxy          # the service mesh (`.connect`, `.ingress`, `.virtual`):
 *         kind: connect-proxy              # a sidecar proxy, in `web.connect`
 *         port: 21000
 *         proxy: {destination: web}
 *         virtual_ip: 240.0.0.1            # optional: web's virtual IP (`web.virtual`), IPv4
 *       - name: api
 *         port: 9090
 *         connect: {native: true}          # Connect-native: in `api.connect` itself
 *       - name: ingress
 *         kind: ingress-gateway            # in `web.ingress` and `api.ingress`
 *         port: 8443
 *         ingress: [{service: web, port: 8080}, {service: api}]  # port: the listener's; default the gateway's
 * queries:                   # optional: prepared queries, `NAME.query[.DC].DOMAIN`
 *   - name: web-eu           # the query's name (a DNS name: labels joined by dots)
 *     service: web
 *     datacenter: dc1        # optional; default: the file's datacenter
 *     tags: [v1, '!canary']  # optional; all must match, `!tag` must not
 *     only-passing: true     # optional; default false (warning instances served too)
 *     failover: [dc2]        # optional; tried in order when the datacenter has no instance
 *     ttl: 10                # optional, seconds; default: the service TTL
 * ```
 *
 * Every problem in the file is reported, each with its path (`nodes[0].services[1].port`), in one
 * CatalogFileError, so a broken edit is fixed in one go. A catalog object given by a program (the
 * embedding API, src/index.ts; the object source, src/catalog/object/) is checked by the same
 * `checkCatalog`, so the file and the object cannot drift apart.
 */

import { parse as parseYaml } from 'yaml';
import { parseIp } from '../../net/address.js';
import { parseHostname, type NodeTagged, type ServiceTagged } from '../reach.js';
import type { CatalogData, Health, MeshEntry, MeshLookup, NodeRecord, QueryDefinition, ServiceRecord } from '../types.js';

/**
 * A catalog that failed validation, with every problem in it (each with its path). `origin` names
 * where it came from in the message: the file's path, or `catalog` for a catalog object given to
 * the embedding API (src/index.ts).
 */
export class CatalogError extends Error {
  readonly code = 'SVCDNS_CATALOG_INVALID';
  constructor(
    readonly origin: string,
    readonly problems: readonly string[],
  ) {
    super(`${origin}: ${problems.join('; ')}`);
    this.name = 'CatalogError';
  }
}

/** A catalog file that failed to parse or validate. */
export class CatalogFileError extends CatalogError {
  constructor(
    readonly file: string,
    problems: readonly string[],
  ) {
    super(file, problems);
    this.name = 'CatalogFileError';
  }
}

/**
 * The catalog's shape, as the file holds it and as a program gives it to `createServer` and
 * `setCatalog` (src/index.ts). The validation below is the contract; these types describe it.
 */
export interface CatalogObject {
  /** Datacenter of the nodes that name none; default: the `datacenter` setting. */
  datacenter?: string;
  nodes?: CatalogNode[];
  /** Prepared queries (`NAME.query[.DC].DOMAIN`), evaluated against this catalog. */
  queries?: CatalogQuery[];
}

export interface CatalogQuery {
  /** Its name in DNS: one or more DNS labels joined by dots, unique within its datacenter. */
  name: string;
  /** The service it selects (a DNS label). */
  service: string;
  /** The datacenter it is defined in; default: the catalog's. */
  datacenter?: string;
  /** Every tag must be on an instance; `!tag` must not be. */
  tags?: string[];
  /** Leave out instances in warning too; default false. */
  'only-passing'?: boolean;
  /** Datacenters tried in order when its own has no instance. */
  failover?: string[];
  /** Seconds; default: the service TTL. */
  ttl?: number;
}

export interface CatalogNode {
  /** A DNS label, unique within its datacenter. */
  name: string;
  /** IPv4 or IPv6, or a hostname. */
  address: string;
  datacenter?: string;
  /** Consul's tagged addresses: `lan_ipv4`, `lan_ipv6`, `wan`, `wan_ipv4`, `wan_ipv6`. */
  tagged_addresses?: Record<string, string>;
  /** At most 64 pairs; keys up to 128 characters, values up to 512. */
  meta?: Record<string, string | number | boolean>;
  services?: CatalogService[];
}

export interface CatalogService {
  /** A DNS label: the service's name in DNS (`NAME.service.consul`). */
  name: string;
  /** Unique on its node; default: the name. */
  id?: string;
  port: number;
  /** IPv4 or IPv6, or a hostname; default: the node's address. */
  address?: string;
  /** As the node's; a `wan` one may carry the port other datacenters use. */
  tagged_addresses?: Record<string, string | { address: string; port?: number }>;
  tags?: string[];
  /** SRV weights; default 1 and 1. */
  weights?: { passing?: number; warning?: number };
  /** Default: passing. */
  health?: Health;
  /** Consul's service kind; default a typical service. */
  kind?: 'connect-proxy' | 'ingress-gateway';
  /** connect-proxy: the service it is the sidecar of (the proxy is in `DESTINATION.connect`). */
  proxy?: { destination: string };
  /** A Connect-native service is in its own `NAME.connect`. */
  connect?: { native?: boolean };
  /** ingress-gateway: the services it exposes, each with its listener's port (default: the gateway's). */
  ingress?: { service: string; port?: number }[];
  /** connect-proxy or Connect-native: the virtual IP (IPv4) of the service it serves (`NAME.virtual`). */
  virtual_ip?: string;
}

/** A DNS label as Consul serves it: letters, digits and inner hyphens (Consul's InvalidDnsRe). */
const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const HEALTH: readonly Health[] = ['passing', 'warning', 'critical'];
/** Consul's tagged address names that its DNS reads (agent/structs: TaggedAddressLANIPv4 ...). */
const TAGGED = ['lan', 'lan_ipv4', 'lan_ipv6', 'wan', 'wan_ipv4', 'wan_ipv6'];
const KINDS = ['connect-proxy', 'ingress-gateway'] as const;
const SERVICE_KEYS = ['name', 'id', 'port', 'address', 'tagged_addresses', 'tags', 'weights', 'health', 'kind', 'proxy', 'connect', 'ingress', 'virtual_ip'];

type Obj = Record<string, unknown>;

class Checker {
  readonly problems: string[] = [];

  /** `path` is empty for the catalog as a whole. */
  fail(path: string, message: string): void {
    this.problems.push(path === '' ? message : `${path}: ${message}`);
  }

  object(value: unknown, path: string, allowed: readonly string[]): Obj | null {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      this.fail(path, 'must be a mapping');
      return null;
    }
    for (const k of Object.keys(value)) {
      if (!allowed.includes(k)) this.fail(path === '' ? k : `${path}.${k}`, `unknown key (expected one of: ${allowed.join(', ')})`);
    }
    return value as Obj;
  }

  array(value: unknown, path: string): unknown[] {
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) {
      this.fail(path, 'must be a list');
      return [];
    }
    return value;
  }

  label(value: unknown, path: string, fallback?: string): string {
    if (value === undefined && fallback !== undefined) return fallback;
    if (typeof value !== 'string' || !LABEL.test(value)) {
      this.fail(path, `must be a DNS label (letters, digits, inner hyphens, at most 63) (got ${show(value)})`);
      return fallback ?? '';
    }
    return value;
  }

  /** An IP address or a hostname (a DNS name, kept without its trailing dot). */
  address(value: unknown, path: string, optional: boolean): string {
    if (value === undefined && optional) return '';
    if (typeof value === 'string' && parseIp(value)) return value;
    const host = typeof value === 'string' ? parseHostname(value) : null;
    if (host === null) {
      this.fail(path, `must be an IPv4 or IPv6 address or a hostname (got ${show(value)})`);
      return '';
    }
    return host;
  }

  /** The IP address a tagged address of this name must be: IPv4 for `*_ipv4`, IPv6 for `*_ipv6`. */
  private taggedAddress(name: string, value: unknown, path: string): string {
    const family = name.endsWith('_ipv4') ? 4 : name.endsWith('_ipv6') ? 6 : 0;
    const ip = typeof value === 'string' ? parseIp(value) : null;
    if (family !== 0 && ip?.family !== family) {
      this.fail(path, `must be an IPv${family} address (got ${show(value)})`);
      return '';
    }
    return this.address(value, path, false);
  }

  nodeTagged(value: unknown, path: string): NodeTagged | undefined {
    if (value === undefined) return undefined;
    const obj = this.object(value, path, TAGGED);
    if (!obj) return undefined;
    return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, this.taggedAddress(k, v, `${path}.${k}`)]));
  }

  serviceTagged(value: unknown, path: string): ServiceTagged | undefined {
    if (value === undefined) return undefined;
    const obj = this.object(value, path, TAGGED);
    if (!obj) return undefined;
    return Object.fromEntries(
      Object.entries(obj).map(([k, v]) => {
        const p = `${path}.${k}`;
        if (typeof v === 'string') return [k, { address: this.taggedAddress(k, v, p), port: 0 }];
        const o = this.object(v, p, ['address', 'port']);
        return [k, { address: this.taggedAddress(k, o?.address, `${p}.address`), port: this.integer(o?.port, `${p}.port`, 0, 65535, 0) }];
      }),
    );
  }

  integer(value: unknown, path: string, min: number, max: number, fallback?: number): number {
    if (value === undefined && fallback !== undefined) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.fail(path, `must be an integer from ${min} to ${max} (got ${show(value)})`);
      return fallback ?? min;
    }
    return value;
  }

  strings(value: unknown, path: string): string[] {
    const list = this.array(value, path);
    return list.flatMap((v, i) => {
      if (typeof v === 'string' && v !== '') return [v];
      this.fail(`${path}[${i}]`, `must be a non-empty string (got ${show(v)})`);
      return [];
    });
  }

  /** Node meta, within Consul's limits (64 pairs, keys up to 128 characters, values up to 512). */
  meta(value: unknown, path: string): Record<string, string> {
    if (value === undefined) return {};
    const obj = this.object(value, path, Object.keys((value as Obj | null) ?? {}));
    const entries = Object.entries(obj ?? {});
    if (entries.length > 64) this.fail(path, `at most 64 pairs (got ${entries.length})`);
    const out: Record<string, string> = {};
    for (const [k, v] of entries) {
      if (k.length > 128) this.fail(`${path}.${k}`, 'keys are at most 128 characters');
      if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
        this.fail(`${path}.${k}`, 'must be a string, number or boolean');
        continue;
      }
      out[k] = String(v);
      if (out[k].length > 512) this.fail(`${path}.${k}`, 'values are at most 512 characters');
    }
    return out;
  }
}

function show(value: unknown): string {
  return value === undefined ? 'nothing' : JSON.stringify(value);
}

/** Parses and validates a catalog file's text. `file` names the file in error messages. */
export function parseCatalogFile(text: string, file: string, defaultDatacenter: string): CatalogData {
  let doc: unknown;
  try {
    doc = parseYaml(text, { uniqueKeys: true, prettyErrors: false });
  } catch (err) {
    const message = err instanceof Error ? err.message.split('\n')[0]! : String(err);
    throw new CatalogFileError(file, [`not valid YAML or JSON: ${message}`]);
  }
  if (doc === null || doc === undefined) throw new CatalogFileError(file, ['the file is empty']);
  const { data, problems } = checkCatalog(doc, defaultDatacenter);
  if (problems.length > 0) throw new CatalogFileError(file, problems);
  return data;
}

/**
 * Validates a catalog already in memory (a parsed file, or a program's catalog object) into
 * CatalogData, returning every problem found (each with its path) instead of throwing. The data is
 * only meaningful when there are no problems.
 */
export function checkCatalog(doc: unknown, defaultDatacenter: string): { data: CatalogData; problems: string[] } {
  const c = new Checker();
  const top = c.object(doc, '', ['datacenter', 'nodes', 'queries']);
  const fileDc = c.label(top?.datacenter, 'datacenter', defaultDatacenter);
  const nodes: NodeRecord[] = [];
  const services: ServiceRecord[] = [];
  const nodeNames = new Set<string>();
  const mesh = new MeshCollector(c);

  c.array(top?.nodes, 'nodes').forEach((rawNode, ni) => {
    const np = `nodes[${ni}]`;
    const n = c.object(rawNode, np, ['name', 'address', 'datacenter', 'meta', 'tagged_addresses', 'services']);
    if (!n) return;
    const name = c.label(n.name, `${np}.name`);
    const datacenter = c.label(n.datacenter, `${np}.datacenter`, fileDc);
    const nodeKey = `${datacenter.toLowerCase()}/${name.toLowerCase()}`;
    if (name !== '' && nodeNames.has(nodeKey)) c.fail(`${np}.name`, `node ${name} appears twice in datacenter ${datacenter}`);
    nodeNames.add(nodeKey);
    const nodeTagged = c.nodeTagged(n.tagged_addresses, `${np}.tagged_addresses`);
    nodes.push({
      datacenter,
      name,
      address: c.address(n.address, `${np}.address`, false),
      meta: c.meta(n.meta, `${np}.meta`),
      ...(nodeTagged && { taggedAddresses: nodeTagged }),
    });

    const ids = new Set<string>();
    c.array(n.services, `${np}.services`).forEach((rawService, si) => {
      const sp = `${np}.services[${si}]`;
      const s = c.object(rawService, sp, SERVICE_KEYS);
      if (!s) return;
      const serviceName = c.label(s.name, `${sp}.name`);
      let id = serviceName;
      if (s.id !== undefined) {
        if (typeof s.id === 'string' && s.id !== '') id = s.id;
        else c.fail(`${sp}.id`, `must be a non-empty string (got ${show(s.id)})`);
      }
      if (ids.has(id)) c.fail(`${sp}.id`, `service id ${id} appears twice on node ${typeof n.name === 'string' ? n.name : np}`);
      ids.add(id);
      const w = s.weights === undefined ? {} : c.object(s.weights, `${sp}.weights`, ['passing', 'warning']);
      const health = s.health ?? 'passing';
      if (!HEALTH.includes(health as Health)) c.fail(`${sp}.health`, `must be one of ${HEALTH.join(', ')} (got ${show(health)})`);
      const serviceTagged = c.serviceTagged(s.tagged_addresses, `${sp}.tagged_addresses`);
      const record: ServiceRecord = {
        ...(serviceTagged && { taggedAddresses: serviceTagged }),
        datacenter,
        node: name,
        id,
        name: serviceName,
        address: c.address(s.address, `${sp}.address`, true),
        port: c.integer(s.port, `${sp}.port`, 0, 65535),
        tags: c.strings(s.tags, `${sp}.tags`),
        // Consul: Passing must be at least 1, Warning may be 0 (instance then gets no SRV share).
        weights: {
          passing: c.integer(w?.passing, `${sp}.weights.passing`, 1, 65535, 1),
          warning: c.integer(w?.warning, `${sp}.weights.warning`, 0, 65535, 1),
        },
        health: health as Health,
      };
      services.push(record);
      mesh.add(s, record, sp);
    });
  });

  const meshEntries = mesh.entries();
  const queries = checkQueries(c, top?.queries, fileDc);
  return {
    data: { nodes, services, ...(meshEntries.length > 0 ? { mesh: meshEntries } : {}), ...(queries.length > 0 ? { queries } : {}) },
    problems: c.problems,
  };
}

/** The `queries:` section: each query checked, names unique per datacenter (case-insensitively). */
function checkQueries(c: Checker, value: unknown, fileDc: string): QueryDefinition[] {
  const out: QueryDefinition[] = [];
  const seen = new Set<string>();
  c.array(value, 'queries').forEach((raw, qi) => {
    const qp = `queries[${qi}]`;
    const q = c.object(raw, qp, ['name', 'service', 'datacenter', 'tags', 'only-passing', 'failover', 'ttl']);
    if (!q) return;
    let name = '';
    if (typeof q.name === 'string' && q.name.split('.').every((l) => LABEL.test(l))) name = q.name;
    else c.fail(`${qp}.name`, `must be DNS labels joined by dots (got ${show(q.name)})`);
    const datacenter = c.label(q.datacenter, `${qp}.datacenter`, fileDc);
    const k = `${datacenter.toLowerCase()}/${name.toLowerCase()}`;
    if (name !== '' && seen.has(k)) c.fail(`${qp}.name`, `query ${name} appears twice in datacenter ${datacenter}`);
    seen.add(k);
    let onlyPassing = false;
    if (q['only-passing'] !== undefined) {
      if (typeof q['only-passing'] === 'boolean') onlyPassing = q['only-passing'];
      else c.fail(`${qp}.only-passing`, `must be true or false (got ${show(q['only-passing'])})`);
    }
    out.push({
      name,
      datacenter,
      service: c.label(q.service, `${qp}.service`),
      tags: c.strings(q.tags, `${qp}.tags`),
      onlyPassing,
      failover: c.array(q.failover, `${qp}.failover`).map((d, i) => c.label(d, `${qp}.failover[${i}]`)),
      ttl: q.ttl === undefined ? null : c.integer(q.ttl, `${qp}.ttl`, 0, 2_147_483_647),
    });
  });
  return out;
}

/**
 * The mesh declarations of a catalog (service `kind`, `proxy`, `connect`, `ingress`, `virtual_ip`),
 * checked and gathered into the mesh entries the `.connect` and `.ingress` names answer, by the
 * service each endpoint serves, in catalog order.
 */
class MeshCollector {
  private readonly byKey = new Map<string, { lookup: MeshLookup; datacenter: string; service: string; instances: ServiceRecord[]; virtualIp?: string; at?: string }>();

  constructor(private readonly c: Checker) {}

  add(s: Obj, record: ServiceRecord, sp: string): void {
    const c = this.c;
    const kind = s.kind;
    if (kind !== undefined && !KINDS.includes(kind as (typeof KINDS)[number])) c.fail(`${sp}.kind`, `must be one of ${KINDS.join(', ')} (got ${show(kind)})`);
    for (const [key, needs] of [['proxy', 'connect-proxy'], ['ingress', 'ingress-gateway']] as const) {
      if (s[key] !== undefined && kind !== needs) c.fail(`${sp}.${key}`, `only for kind: ${needs}`);
      if (s[key] === undefined && kind === needs) c.fail(`${sp}.${key}`, `required with kind: ${needs}`);
    }
    let native = false;
    if (s.connect !== undefined) {
      const connect = c.object(s.connect, `${sp}.connect`, ['native']);
      if (connect?.native !== undefined && typeof connect.native !== 'boolean') c.fail(`${sp}.connect.native`, `must be true or false (got ${show(connect.native)})`);
      native = connect?.native === true;
      if (native && kind !== undefined) c.fail(`${sp}.connect.native`, 'a proxy or gateway cannot be Connect-native');
    }
    let served: string | null = native ? record.name : null;
    if (kind === 'connect-proxy' && s.proxy !== undefined) {
      const proxy = c.object(s.proxy, `${sp}.proxy`, ['destination']);
      served = c.label(proxy?.destination, `${sp}.proxy.destination`);
    }
    if (served !== null && served !== '') this.put('connect', record.datacenter, served, record);
    if (s.virtual_ip !== undefined) {
      if (typeof s.virtual_ip !== 'string' || parseIp(s.virtual_ip)?.family !== 4) {
        c.fail(`${sp}.virtual_ip`, `must be an IPv4 address (got ${show(s.virtual_ip)})`);
      } else if (served === null) {
        c.fail(`${sp}.virtual_ip`, 'only for a connect-proxy or a Connect-native service');
      } else if (served !== '') {
        this.virtualIp(record.datacenter, served, s.virtual_ip, `${sp}.virtual_ip`);
      }
    }
    if (kind === 'ingress-gateway' && s.ingress !== undefined) {
      const exposed = new Set<string>();
      const list = c.array(s.ingress, `${sp}.ingress`);
      if (list.length === 0 && Array.isArray(s.ingress)) c.fail(`${sp}.ingress`, 'must name at least one service');
      list.forEach((raw, i) => {
        const ip = `${sp}.ingress[${i}]`;
        const item = c.object(raw, ip, ['service', 'port']);
        if (!item) return;
        const service = c.label(item.service, `${ip}.service`);
        const port = c.integer(item.port, `${ip}.port`, 1, 65535, record.port);
        if (service === '') return;
        if (exposed.has(service.toLowerCase())) c.fail(`${ip}.service`, `${service} is exposed twice by this gateway`);
        exposed.add(service.toLowerCase());
        this.put('ingress', record.datacenter, service, { ...record, port });
      });
    }
  }

  entries(): MeshEntry[] {
    return [...this.byKey.values()].map(({ at: _at, ...entry }) => entry);
  }

  private entry(lookup: MeshLookup, datacenter: string, service: string) {
    const k = `${lookup}\u0000${datacenter.toLowerCase()}\u0000${service.toLowerCase()}`;
    let e = this.byKey.get(k);
    if (!e) {
      e = { lookup, datacenter, service, instances: [] };
      this.byKey.set(k, e);
    }
    return e;
  }

  private put(lookup: MeshLookup, datacenter: string, service: string, record: ServiceRecord): void {
    this.entry(lookup, datacenter, service).instances.push(record);
  }

  /** A service has one virtual IP: every declaration of it must agree. */
  private virtualIp(datacenter: string, service: string, address: string, path: string): void {
    const e = this.entry('connect', datacenter, service);
    if (e.virtualIp !== undefined && e.virtualIp !== address) {
      this.c.fail(path, `${service} already has virtual IP ${e.virtualIp} (${e.at ?? ''}); a service has one`);
      return;
    }
    e.virtualIp = address;
    e.at = path;
  }
}
