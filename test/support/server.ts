/**
 * Starts a real svcdns server in-process on 127.0.0.1 and a kernel-chosen port, with a catalog
 * written to a fresh temp directory. Every test that starts one stops it (use `t.after`).
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { resolveConfig, type RawConfig } from '../../src/config.js';
import { SvcdnsServer } from '../../src/server.js';
import type { Backoff } from '../../src/util/pacing.js';

export interface TestServer {
  server: SvcdnsServer;
  host: string;
  port: number;
  dir: string;
  catalogPath: string;
  close(): Promise<void>;
}

export interface StartOptions {
  /** Catalog file text (YAML/JSON); omitted: the bundled example catalog (`example`), unless the flags choose Consul. */
  catalog?: string;
  /** Collects the server's log records here (JSON objects), instead of discarding them. */
  logs?: Record<string, unknown>[];
  /** Extra config keys, as flags would give them. */
  flags?: RawConfig;
  now?: () => number;
  upstreamProbeIntervalMs?: number;
  /** How the catalog source retries a failed read on its own (ServerOptions.retryBackoff). */
  retryBackoff?: Backoff;
}

/** Fixed clock for tests: SOA serials become predictable (2024-01-01T00:00:00Z). */
export const TEST_NOW_MS = 1_704_067_200_000;
export const TEST_SERIAL = TEST_NOW_MS / 1000;

export async function startServer(options: StartOptions = {}): Promise<TestServer> {
  const dir = await mkdtemp(join(tmpdir(), 'svcdns-test-'));
  const catalogPath = join(dir, 'catalog.yaml');
  // No test forwards to the machine's real resolvers: upstreams only where a test gives them.
  const flags: RawConfig = { listen: ['127.0.0.1:0'], 'resolv-conf': '/dev/null', ...options.flags };
  if (options.catalog !== undefined) {
    await writeFile(catalogPath, options.catalog);
    flags.catalog = catalogPath;
  } else if (flags.consul === undefined && flags.catalog === undefined && flags.zookeeper === undefined) {
    flags.example = 'true';
  }
  const config = resolveConfig({ flags, env: {} });
  const logs = options.logs;
  const log = logs
    ? pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) })
    : pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  let server: SvcdnsServer;
  try {
    server = await SvcdnsServer.start({ config, log, now: options.now ?? (() => TEST_NOW_MS), reloadDebounceMs: 10, upstreamProbeIntervalMs: options.upstreamProbeIntervalMs, retryBackoff: options.retryBackoff });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const address = server.addresses[0]!;
  return {
    server,
    host: address.host,
    port: address.port,
    dir,
    catalogPath,
    async close() {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
