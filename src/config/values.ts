/**
 * Validators every component uses to turn a raw value into a typed one. A bad value is added to
 * `problems` as `key: what is wrong (got "value")` and a placeholder is returned, so that one run
 * reports every problem.
 */

import type { Problems } from './component.js';

type Raw = string | string[] | undefined;

/** `a, b,c` -> `['a', 'b', 'c']`: how lists are written in env vars. */
export function splitList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** A list key's items (each may itself be comma-separated). */
export function list(value: Raw): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).flatMap(splitList);
}

/** A single-valued key's value: the last one given. */
export function single(value: Raw): string | undefined {
  return Array.isArray(value) ? value.at(-1) : value;
}

/** Each item parsed; one `parse` refuses is a problem: `key: "item" is not WHAT`. */
export function listOf<T>(items: readonly string[], key: string, parse: (text: string) => T | null, what: string, problems: Problems): T[] {
  return items.flatMap((v) => {
    const parsed = parse(v);
    if (!parsed) problems.add(key, `${JSON.stringify(v)} is not ${what}`);
    return parsed ? [parsed] : [];
  });
}

export function integer(value: string | undefined, key: string, min: number, max: number, problems: Problems): number {
  const n = Number(value);
  if (value === undefined || !/^\d+$/.test(value.trim()) || n < min || n > max) {
    problems.add(key, `must be a whole number from ${min} to ${max} (got ${JSON.stringify(value)})`);
    return min;
  }
  return n;
}

export function boolean(value: string | undefined, key: string, problems: Problems): boolean {
  const v = value?.trim().toLowerCase();
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  problems.add(key, `must be true or false (got ${JSON.stringify(value)})`);
  return false;
}

export function choice<T extends string>(value: string | undefined, key: string, choices: readonly T[], problems: Problems): T {
  if (value === undefined || !choices.includes(value as T)) {
    problems.add(key, `must be one of ${choices.join(', ')} (got ${JSON.stringify(value)})`);
    return choices[0]!;
  }
  return value as T;
}

/** Go-style durations as Consul writes them: `87600h`, `5m`, `1m30s`, `500ms`, `10s`; and a bare `0`, as Go allows; also days, `1d` (as unbound and BIND write stale windows). */
export function parseDuration(text: string): number | null {
  if (text === '0') return 0;
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  const parts = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/.test(text) ? text.match(/\d+(?:\.\d+)?(?:ms|s|m|h|d)/g) : null;
  if (!parts) return null;
  return parts.reduce((sum, p) => {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(p)!;
    return sum + Number(m[1]) * units[m[2]!]!;
  }, 0);
}

/** A duration in ms. */
export function duration(value: string | undefined, key: string, problems: Problems): number {
  const ms = value === undefined ? null : parseDuration(value.trim());
  if (ms === null) {
    problems.add(key, `must be a duration such as 10s, 5m or 87600h (got ${JSON.stringify(value)})`);
    return 0;
  }
  return ms;
}

/** A number that must not be 0 (a duration, say), unless the key already has a problem. */
export function positive(n: number, key: string, problems: Problems): number {
  if (n === 0 && !problems.has(key)) problems.add(key, 'must be more than 0');
  return n;
}

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;

/** A DNS label, lower-cased. */
export function label(value: string | undefined, key: string, problems: Problems): string {
  if (value === undefined || !LABEL.test(value)) {
    problems.add(key, `must be a DNS label (got ${JSON.stringify(value)})`);
    return '';
  }
  return value.toLowerCase();
}

/** A domain name, lower-cased, without the final dot; null when unset or bad. */
export function domain(value: string | undefined, key: string, problems: Problems): string | null {
  if (value === undefined) return null;
  const labels = value.replace(/\.$/, '').split('.');
  if (value === '' || !labels.every((l) => LABEL.test(l))) {
    problems.add(key, `must be a domain name such as consul or cluster.local (got ${JSON.stringify(value)})`);
    return null;
  }
  return labels.join('.').toLowerCase();
}
