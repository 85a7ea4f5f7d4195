/**
 * The catalog as sources deliver it: plain records, one per node and one per service instance,
 * across all datacenters. Sources convert their own formats (a YAML file, Consul's JSON) into these
 * at their boundary; nothing past the store sees a source's format.
 */

import type { NodeTagged, ServiceTagged } from './reach.js';

export type Health = 'passing' | 'warning' | 'critical';

export interface NodeRecord {
  datacenter: string;
  name: string;
  /** An IPv4 or IPv6 address, or a hostname (answered as a CNAME, as Consul does). */
  address: string;
  meta: Readonly<Record<string, string>>;
  /** Consul's node TaggedAddresses (`lan_ipv4`, `lan_ipv6`, `wan`, `wan_ipv4`, `wan_ipv6`): see reach.ts. */
  taggedAddresses?: NodeTagged;
}

export interface ServiceRecord {
  datacenter: string;
  /** Name of the node the instance runs on; a node of that name exists in the same datacenter. */
  node: string;
  id: string;
  name: string;
  /**
   * The instance's own address (an IP or a hostname), or '' to use the node's address (as Consul's
   * ServiceAddress).
   */
  address: string;
  port: number;
  /** Consul's service TaggedAddresses (`lan_ipv4`, `lan_ipv6`, `wan`, ... with ports): see reach.ts. */
  taggedAddresses?: ServiceTagged;
  tags: readonly string[];
  /** SRV weights by health state (Consul's `Weights`). */
  weights: { passing: number; warning: number };
  /** The aggregate of the instance's checks: critical if any check is critical. */
  health: Health;
}

export interface CatalogData {
  nodes: readonly NodeRecord[];
  services: readonly ServiceRecord[];
  /**
   * Prepared queries defined with the catalog (a catalog file's `queries:`), each in its
   * datacenter; absent: none. Sources that execute queries themselves (Consul) leave it out.
   */
  queries?: readonly QueryDefinition[];
  /**
   * Service mesh endpoints by the service they serve (`.connect` and `.ingress` names). Absent or
   * without an entry for a service: it has none. Sources that load lazily list only what they loaded
   * (an entry with no instances is loaded: none), and the snapshot treats the rest as pending.
   */
  mesh?: readonly MeshEntry[];
  /**
   * Sources that load lazily (Consul on demand) say what they know exists without having loaded
   * it. Absent: everything is loaded (a catalog file).
   */
  partial?: PartialCatalog;
}

export interface PartialCatalog {
  /** Every datacenter that exists (an unlisted one is NXDOMAIN). */
  datacenters: readonly string[];
  /** Datacenters whose service list is known: a service absent from it does not exist. */
  serviceListsKnown: readonly string[];
  /** Datacenters whose node list is loaded. */
  nodeListsKnown: readonly string[];
  /** Services that exist but whose instances are not loaded yet. */
  pending: readonly { datacenter: string; name: string }[];
  /**
   * Datacenters held whole, where nothing is pending (a catalog file's, in a catalog of several
   * sources: src/catalog/composite/merge.ts); absent: none.
   */
  loaded?: readonly string[];
}

/** A prepared query of a catalog file (the subset of Consul's definition a file can evaluate). */
export interface QueryDefinition {
  /** Matched case-insensitively against the DNS name's query label(s). */
  name: string;
  /** The datacenter it is defined (and executed) in. */
  datacenter: string;
  service: string;
  /** Every tag must be on the instance; a tag written `!tag` must not be (Consul's Service.Tags). */
  tags: readonly string[];
  /** Leave out instances in warning too (Consul's Service.OnlyPassing); critical ones always are. */
  onlyPassing: boolean;
  /** Tried in order when the query's own datacenter has no instance (Consul's Failover.Datacenters). */
  failover: readonly string[];
  /** Seconds (Consul's DNS.TTL); null: the service TTL. */
  ttl: number | null;
}

/** The mesh lookups: `NAME.connect` (sidecar proxies, Connect-native instances), `NAME.ingress` (gateways). */
export type MeshLookup = 'connect' | 'ingress';

/** The mesh endpoints of one service, as Consul's /v1/health/connect/NAME or /v1/health/ingress/NAME list them. */
export interface MeshEntry {
  lookup: MeshLookup;
  datacenter: string;
  /** The service served: the proxies' destination, the native service, the service a gateway exposes. */
  service: string;
  /**
   * The endpoints, each on a node of the catalog: the proxy's or gateway's own address and port (for
   * a gateway from a catalog file, the port of the listener exposing `service` when it names one).
   */
  instances: readonly ServiceRecord[];
  /** `connect` only: the service's virtual IP (Consul's `consul-virtual` tagged address), if it has one. */
  virtualIp?: string;
}
