/**
 * The TTL of each service's records, as Consul's `dns_config.service_ttl` map gives it: patterns
 * that are exact service names, `prefix*` wildcards, or `*` alone. For a service, an exact name
 * wins, then the longest matching prefix, then `*`; with none of them, 0 (Consul's default).
 *
 * Written as `PATTERN=SECONDS` items (a flag each, a comma-separated SVCDNS_SERVICE_TTL, or a
 * mapping in the config file, turned into the same items by src/config.ts); a bare number is `*`,
 * so `--service-ttl 30` keeps its meaning. Names are matched case-insensitively, as DNS names are.
 */

import type { Problems } from '../config/component.js';

const MAX_TTL = 2 ** 31 - 1;
/** A service name or its start: the characters of DNS labels (Consul's DNS serves no other names). */
const PATTERN = /^[a-z0-9_-]*\*?$/i;

export class ServiceTtls {
  private readonly exact: ReadonlyMap<string, number>;
  /** Wildcards as [prefix, ttl], longest prefix first (`*` is the prefix ''). */
  private readonly prefixes: readonly (readonly [string, number])[];

  /** `rules`: pattern -> seconds; a later duplicate (case aside) replaces an earlier one. */
  constructor(rules: Iterable<readonly [string, number]> = []) {
    const exact = new Map<string, number>();
    const prefixes = new Map<string, number>();
    for (const [pattern, ttl] of rules) {
      const p = pattern.toLowerCase();
      if (p.endsWith('*')) prefixes.set(p.slice(0, -1), ttl);
      else exact.set(p, ttl);
    }
    this.exact = exact;
    this.prefixes = [...prefixes].sort(([a], [b]) => b.length - a.length);
  }

  /** The TTL, in seconds, of the records of `service` (any case). */
  of(service: string): number {
    const name = service.toLowerCase();
    const exact = this.exact.get(name);
    if (exact !== undefined) return exact;
    for (const [prefix, ttl] of this.prefixes) if (name.startsWith(prefix)) return ttl;
    return 0;
  }

  /** The rules as written (`*=5`, `db*=30`, `web=10`), for tests and diagnostics. */
  get rules(): string[] {
    return [...[...this.exact].map(([p, t]) => `${p}=${t}`), ...this.prefixes.map(([p, t]) => `${p}*=${t}`)].sort();
  }
}

/**
 * The table from a key's items: `PATTERN=SECONDS`, or a bare number for `*`. Every bad item is a
 * problem of `key`; a bare number that is not a TTL keeps the wording every TTL key uses.
 */
export function parseServiceTtls(items: readonly string[], key: string, problems: Problems): ServiceTtls {
  const rules: [string, number][] = [];
  for (const item of items) {
    const eq = item.lastIndexOf('=');
    if (eq < 0) {
      const ttl = seconds(item.trim());
      if (ttl === null) problems.add(key, `must be a whole number from 0 to ${MAX_TTL} (got ${JSON.stringify(item)})`);
      else rules.push(['*', ttl]);
      continue;
    }
    const pattern = item.slice(0, eq).trim();
    const ttl = seconds(item.slice(eq + 1).trim());
    if (pattern === '' || !PATTERN.test(pattern)) {
      problems.add(key, `${JSON.stringify(item)}: the pattern must be a service name, a prefix ending in *, or * (got ${JSON.stringify(pattern)})`);
    } else if (ttl === null) {
      problems.add(key, `${JSON.stringify(item)}: the TTL must be a whole number from 0 to ${MAX_TTL}`);
    } else {
      rules.push([pattern, ttl]);
    }
  }
  return new ServiceTtls(rules);
}

function seconds(text: string): number | null {
  const n = Number(text);
  return /^\d+$/.test(text) && n <= MAX_TTL ? n : null;
}
