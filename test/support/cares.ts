/**
 * Records from Node's resolver (c-ares, node:dns) in one shape whatever the Node version, so tests
 * compare what the server answered (names, ports, weights, priorities, SOA timers), not the objects
 * a Node version builds.
 *
 * Node 24 adds a `type` field that Node 20 and 22 leave out: 'SRV' on each record of resolveSrv,
 * 'MX' on resolveMx's, 'CAA' on resolveCaa's, and `type: undefined` on resolveSoa's object (seen on
 * 20.20, 22.23 and 24.22 against the same replies). The helpers check that field when it is there,
 * so a record that says another type still fails, and drop it.
 */

import assert from 'node:assert/strict';

/**
 * `record` without its `type` field, after checking that the field is absent, undefined, or `type`.
 * The result is what Node 20 and 22 return, ready for assert.deepEqual against a literal record.
 */
export function withoutType<T extends object>(record: T & { type?: unknown }, type: string): T {
  const { type: got, ...rest } = record;
  assert.ok(got === undefined || got === type, `a ${type} record says type ${String(got)}`);
  return rest as unknown as T;
}

/** withoutType() for each record of a list (resolveSrv, resolveMx, resolveCaa). */
export function untyped<T extends object>(records: readonly (T & { type?: unknown })[], type: string): T[] {
  return records.map((record) => withoutType(record, type));
}
