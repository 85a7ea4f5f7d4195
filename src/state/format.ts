/**
 * The persisted catalog's file format (pure: no I/O). One JSON object:
 *
 *   { "format": "svcdns-catalog-state", "version": 1, "source": "consul", "datacenter": "dc1",
 *     "savedAt": <ms since the epoch>, "sha256": <hex of the catalog's JSON>, "catalog": CatalogData }
 *
 * `source` and `datacenter` say whose catalog it is: a file written for another kind of source or
 * another local datacenter is foreign (answers for the local datacenter depend on which one it is),
 * and is not served. The checksum covers the catalog's JSON as written (JSON.parse then
 * JSON.stringify gives the same text back), so a damaged file that still parses is caught too.
 * The catalog is what sources publish (records, mesh entries, what exists without being loaded): it
 * holds no token or other secret, and neither does anything else here.
 */

import { createHash } from 'node:crypto';
import type { CatalogData } from '../catalog/types.js';

export const STATE_FORMAT = 'svcdns-catalog-state';
export const STATE_VERSION = 1;
/** The file's name inside --state-dir. */
export const STATE_FILE = 'catalog.json';

/** Whose catalog a state file holds. */
export interface StateIdentity {
  /** The source's kind (`consul`; a ZooKeeper source its own). */
  source: string;
  /** The local datacenter svcdns ran with. */
  datacenter: string;
}

export interface SavedCatalog {
  data: CatalogData;
  /** When it was written: the catalog had just been synced then. */
  savedAt: number;
}

/** The catalog's own JSON text, to compare with what was last written (a catalog is written only when it changed). */
export function catalogJson(data: CatalogData): string {
  return JSON.stringify(data);
}

/** The file's text for a catalog whose JSON is `catalog` (from catalogJson). */
export function encodeState(catalog: string, identity: StateIdentity, savedAt: number): string {
  const head = JSON.stringify({ format: STATE_FORMAT, version: STATE_VERSION, source: identity.source, datacenter: identity.datacenter, savedAt, sha256: sha256(catalog) });
  // The catalog goes in as written, so its checksum covers exactly these bytes.
  return `${head.slice(0, -1)},"catalog":${catalog}}\n`;
}

/** The saved catalog, or why the text is not one this svcdns may serve (corrupt, truncated, foreign). */
export function decodeState(text: string, identity: StateIdentity): SavedCatalog | { problem: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { problem: 'not JSON (truncated or corrupt)' };
  }
  if (!isObject(parsed) || parsed.format !== STATE_FORMAT) return { problem: 'not a svcdns catalog state file' };
  if (parsed.version !== STATE_VERSION) return { problem: `format version ${JSON.stringify(parsed.version)}, this svcdns reads ${STATE_VERSION}` };
  if (parsed.source !== identity.source) return { problem: `written for another source (${JSON.stringify(parsed.source)})` };
  if (parsed.datacenter !== identity.datacenter) return { problem: `written for another datacenter (${JSON.stringify(parsed.datacenter)})` };
  if (typeof parsed.savedAt !== 'number' || !Number.isFinite(parsed.savedAt)) return { problem: 'no valid savedAt' };
  const catalog = parsed.catalog;
  if (typeof parsed.sha256 !== 'string' || !isObject(catalog) || sha256(JSON.stringify(catalog)) !== parsed.sha256) return { problem: 'checksum mismatch (corrupt)' };
  const shape = shapeProblem(catalog);
  if (shape) return { problem: shape };
  return { data: catalog as unknown as CatalogData, savedAt: parsed.savedAt };
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The records' shape, checked where the answerer relies on it (the checksum already rules out
 * damage; this rules out a file some other program wrote with our header). The store's snapshot
 * checks the rest (every instance on a known node, and so on) when the catalog is published.
 */
function shapeProblem(c: Record<string, unknown>): string | null {
  const { nodes, services, mesh, partial } = c;
  if (!Array.isArray(nodes) || !Array.isArray(services)) return 'catalog without nodes and services';
  for (const n of nodes as unknown[]) {
    if (!isObject(n) || !strings(n, 'datacenter', 'name', 'address') || !isObject(n.meta)) return 'a node record is malformed';
  }
  for (const s of services as unknown[]) if (!serviceOk(s)) return 'a service record is malformed';
  if (mesh !== undefined) {
    if (!Array.isArray(mesh)) return 'mesh is not a list';
    for (const m of mesh as unknown[]) {
      if (!isObject(m) || (m.lookup !== 'connect' && m.lookup !== 'ingress') || !strings(m, 'datacenter', 'service') || !Array.isArray(m.instances) || !(m.instances as unknown[]).every(serviceOk)) return 'a mesh entry is malformed';
    }
  }
  if (c.queries !== undefined && !Array.isArray(c.queries)) return 'queries is not a list';
  if (partial !== undefined) {
    if (!isObject(partial) || !['datacenters', 'serviceListsKnown', 'nodeListsKnown', 'pending'].every((k) => Array.isArray(partial[k])) || (partial.loaded !== undefined && !Array.isArray(partial.loaded))) return 'partial is malformed';
  }
  return null;
}

function serviceOk(s: unknown): boolean {
  return (
    isObject(s) &&
    strings(s, 'datacenter', 'node', 'id', 'name', 'address') &&
    typeof s.port === 'number' &&
    Array.isArray(s.tags) &&
    (s.tags as unknown[]).every((t) => typeof t === 'string') &&
    isObject(s.weights) &&
    typeof s.weights.passing === 'number' &&
    typeof s.weights.warning === 'number' &&
    (s.health === 'passing' || s.health === 'warning' || s.health === 'critical')
  );
}

function strings(o: Record<string, unknown>, ...keys: string[]): boolean {
  return keys.every((k) => typeof o[k] === 'string');
}
