/**
 * SIGHUP's configuration half: the configuration resolved again from the same flags and env and
 * the --config file as it is now (flags and SVCDNS_* env still win over the file), compared key by
 * key with what is running, and the one outcome line.
 *
 * Only the keys in LIVE_KEYS take effect without a restart (each is read at the moment it is used:
 * the logger's level, the query log's subscription, the lameduck at the next stop). Any other key
 * that changed (listen, workers, the catalog source, TTLs, upstreams ...) keeps its running value
 * until a restart, and the outcome line says which. A rejected configuration changes nothing.
 */

import type { Logger } from 'pino';
import { ConfigError, resolveLayers, type Config, type ConfigInputs, type RawConfig } from '../config.js';
import type { LogLevel } from '../log.js';

/** What can change in a running server (and its --workers processes). */
export interface LiveSettings {
  logLevel: LogLevel;
  queryLog: boolean;
  lameduckMs: number;
}

/** The keys behind LiveSettings. */
export const LIVE_KEYS: readonly string[] = ['log-level', 'query-log', 'lameduck'];

export function liveSettings(config: Config): LiveSettings {
  return { logLevel: config.logLevel, queryLog: config.queryLog, lameduckMs: config.lameduckMs };
}

export type ConfigReload =
  | { ok: false; problems: readonly string[] }
  /** `changed`: live keys now in effect; `restart`: keys that changed but keep their running value. */
  | { ok: true; changed: readonly string[]; restart: readonly string[]; settings: LiveSettings };

/** Keeps what is running, and tells each SIGHUP what the configuration says now. */
export class ConfigReloader {
  /** Every key's value as running: the live keys as last applied, the others as at start. */
  private running: Readonly<RawConfig>;

  constructor(
    private readonly inputs: ConfigInputs,
    running: Readonly<RawConfig>,
  ) {
    this.running = running;
  }

  /** The configuration now; when accepted, the live keys' new values count as running from here on. */
  reload(): ConfigReload {
    let next: { config: Config; raw: Readonly<RawConfig> };
    try {
      next = resolveLayers(this.inputs);
    } catch (err) {
      if (err instanceof ConfigError) return { ok: false, problems: err.problems };
      throw err;
    }
    const keys = new Set([...Object.keys(this.running), ...Object.keys(next.raw)]);
    const differs = [...keys].filter((key) => JSON.stringify(this.running[key]) !== JSON.stringify(next.raw[key]));
    const changed = differs.filter((key) => LIVE_KEYS.includes(key));
    const running: RawConfig = { ...this.running };
    for (const key of changed) running[key] = next.raw[key];
    this.running = Object.freeze(running);
    return { ok: true, changed, restart: differs.filter((key) => !LIVE_KEYS.includes(key)), settings: liveSettings(next.config) };
  }
}

/** How the catalog's reload went, when the source can tell (the file source can). */
export type CatalogReload = { ok: true; changed: boolean } | { ok: false; problem: string } | null;

/** The catalog source's reload result read as a CatalogReload; null when it tells nothing. */
export function catalogReload(result: unknown): CatalogReload {
  if (typeof result !== 'object' || result === null || !('ok' in result)) return null;
  if (result.ok === true) return { ok: true, changed: 'changed' in result && result.changed === true };
  const error = 'error' in result ? result.error : undefined;
  return { ok: false, problem: error instanceof Error ? error.message : String(error) };
}

/**
 * The one line a SIGHUP logs: rejected (every problem; what was rejected, the configuration or the
 * catalog, keeps its last good state, and whatever the other one changed is named), changed (which
 * keys; `catalog` for a new catalog), or unchanged. Keys that need a restart are named too.
 */
export function logReloadOutcome(log: Logger, config: ConfigReload, catalog: CatalogReload): void {
  const problems = [...(config.ok ? [] : config.problems), ...(catalog?.ok === false ? [catalog.problem] : [])];
  const changed = [...(config.ok ? config.changed : []), ...(catalog?.ok === true && catalog.changed ? ['catalog'] : [])];
  const restart = config.ok && config.restart.length > 0 ? config.restart : [];
  const fields = { ...(changed.length > 0 && { changed }), ...(restart.length > 0 && { restartNeeded: restart }) };
  if (problems.length > 0) {
    log.error({ problems, ...fields }, 'SIGHUP: reload rejected; the last good state keeps serving');
  } else if (changed.length > 0) {
    log.info(fields, restart.length > 0 ? 'SIGHUP: reloaded: changed; some changes need a restart (running values kept)' : 'SIGHUP: reloaded: changed');
  } else {
    log.info(fields, restart.length > 0 ? 'SIGHUP: reloaded: unchanged; some changes need a restart (running values kept)' : 'SIGHUP: reloaded: unchanged');
  }
}
