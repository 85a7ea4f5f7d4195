/**
 * Apache Curator's service discovery in ZooKeeper (curator-x-discovery), as Spring Cloud Zookeeper
 * and Dubbo 3's application-level discovery write it: under `/services/NAME/ID` one node per
 * instance (ephemeral for the usual DYNAMIC instances), holding the instance as Curator's
 * JsonInstanceSerializer writes it: `{"name","id","address","port","sslPort","payload",
 * "registrationTimeUTC","serviceType","uriSpec","enabled"}`.
 *
 * Pure functions: a node's bytes in, an instance (or why not) out.
 */

/** One instance as DNS serves it. */
export interface CuratorInstance {
  name: string;
  id: string;
  /** An IP address or a hostname, as registered. */
  address: string;
  /** `port`, or `sslPort` when the instance has no plain port (then `ssl` is true). */
  port: number;
  ssl: boolean;
  /**
   * False when Curator's `enabled` is false, or Spring Cloud's `instance_status` metadata says the
   * instance is out of service: clients of those registries skip it.
   */
  enabled: boolean;
}

/** Reads an instance node's data; a string says why it is skipped (logged once with its path). */
export function readInstance(data: Buffer | undefined | null): CuratorInstance | string {
  if (!data || data.length === 0) return 'no data';
  let doc: unknown;
  try {
    doc = JSON.parse(data.toString('utf8'));
  } catch {
    return 'not JSON';
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return 'not a JSON object';
  const o = doc as Record<string, unknown>;
  if (typeof o.name !== 'string' || o.name === '') return 'no "name"';
  if (typeof o.id !== 'string' || o.id === '') return 'no "id"';
  if (typeof o.address !== 'string' || o.address === '') return 'no "address"';
  const port = portOf(o.port);
  const sslPort = portOf(o.sslPort);
  if (port === null && sslPort === null) return 'no "port" or "sslPort"';
  return {
    name: o.name,
    id: o.id,
    address: o.address,
    port: port ?? sslPort!,
    ssl: port === null,
    enabled: o.enabled !== false && statusOf(o.payload) !== 'OUT_OF_SERVICE',
  };
}

/** A port number 1..65535; null when absent (JSON null) or not one. */
function portOf(v: unknown): number | null {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 && v <= 65535 ? v : null;
}

/** Spring Cloud Zookeeper's `payload.metadata.instance_status` (UP, OUT_OF_SERVICE), if any. */
function statusOf(payload: unknown): string | null {
  if (typeof payload !== 'object' || payload === null) return null;
  const metadata = (payload as Record<string, unknown>).metadata;
  if (typeof metadata !== 'object' || metadata === null) return null;
  const status = (metadata as Record<string, unknown>).instance_status;
  return typeof status === 'string' ? status.toUpperCase() : null;
}
