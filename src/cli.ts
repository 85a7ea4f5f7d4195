#!/usr/bin/env node
/**
 * The svcdns command: parse flags, resolve the configuration, start the server, and stop cleanly on
 * SIGINT/SIGTERM (lameduck, drain, exit 0; a second signal exits at once with 128 + its number).
 * SIGHUP reloads the catalog file, resolv.conf and the --config file (src/lifecycle/reload.ts). A
 * bad flag or an unusable catalog exits non-zero with one line on stderr saying why.
 */

import { constants } from 'node:os';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import cluster from 'node:cluster';
import type { Logger } from 'pino';
import { fileURLToPath } from 'node:url';
import { ConfigError, KEYS, KEY_GROUPS, envName, resolveLayers, type Config, type ConfigInputs, type RawConfig } from './config.js';
import type { KeySpec } from './config/component.js';
import { redactMessage } from './config/redact.js';
import { ConfigReloader, liveSettings, logReloadOutcome, type CatalogReload, type LiveSettings } from './lifecycle/reload.js';
import { createLogger } from './log.js';
import { formatHostPort } from './net/address.js';
import { SvcdnsServer } from './server.js';
import { VERSION } from './version.js';
import { summarize, type Status } from './http/status.js';
import { isWorker, runPrimary, runWorker } from './workers.js';

const EXIT_USAGE = 2;
const EXIT_FAILURE = 1;

function fail(code: number, message: string): never {
  process.stderr.write(`svcdns: error: ${message}\n`);
  process.exit(code);
}

/** How --help shows a key's value: `[number]`, `[HOST:PORT, repeatable]`, `[json|pretty]`, `[default: 10]`. */
function describeKey(spec: KeySpec): string {
  const type = spec.boolean ? 'boolean' : (spec.choices?.join('|') ?? spec.type ?? 'text');
  const tags = [`[${type}${spec.list ? ', repeatable' : ''}]`];
  if (spec.default !== undefined) tags.push(`[default: ${[spec.default].flat().join(', ') || 'none'}]`);
  return `${spec.describe} ${tags.join(' ')}`;
}

const EXAMPLES: readonly [string, string][] = [
  ['$0 --consul 127.0.0.1:8500', "the local Consul agent's catalog, on 127.0.0.1:8600"],
  ['$0 --catalog catalog.yaml --listen 0.0.0.0:53', 'a catalog file, on port 53 of every IPv4 address'],
  ['CONSUL_HTTP_ADDR=10.0.0.5:8500 $0 --workers 2', "Consul's own env vars; two answering processes"],
  ['$0 --config /etc/svcdns/svcdns.yaml', 'every option from a YAML (or JSON) file'],
  ['$0 --example --log-format pretty', 'try it out: the bundled example catalog (made-up addresses)'],
];

/**
 * The flags as raw values, and what is wrong with the command line itself (unknown flags, stray
 * arguments, a flag without its value). Those are gathered here rather than by yargs' strict mode,
 * which stops at the first: the CLI reports them in one line with every problem of the values.
 */
function parseFlags(argv: string[]): { flags: RawConfig; configFile: string | undefined; usage: string[] } {
  const readme = fileURLToPath(new URL('../README.md', import.meta.url));
  let parser = yargs(argv)
    .scriptName('svcdns')
    .usage(
      '$0 [options]\n\nServe Consul-style DNS names from a catalog: a file (--catalog), Consul (--consul or\nCONSUL_HTTP_ADDR), or the bundled example (--example); one of them is needed. Every option can\nalso be set as an SVCDNS_<NAME> env var (e.g. SVCDNS_LISTEN) or in a --config file under the same name.',
    )
    .parserConfiguration({ 'camel-case-expansion': false, 'strip-aliased': true })
    .option('config', { type: 'string', describe: `YAML or JSON file of options (env ${envName('config')}) [file]` })
    .version(VERSION)
    .alias('version', 'v')
    .help()
    .alias('help', 'h')
    .wrap(Math.min(110, process.stdout.columns || 110))
    .exitProcess(true)
    // Whatever yargs still refuses itself (unknown and valueless flags are ours, below); a message
    // may name an argument, which may be an address with a secret in it.
    .fail((message, err) => fail(EXIT_USAGE, redactMessage(message ?? err?.message ?? 'bad arguments')));
  // The types yargs would show are its parser's (every value is parsed as a string, then checked by
  // its component): each key's own type is in its description instead.
  (parser as unknown as { usageConfiguration(c: { 'hide-types': boolean }): void }).usageConfiguration({ 'hide-types': true });
  for (const [key, spec] of Object.entries(KEYS)) {
    const describe = describeKey(spec);
    parser = spec.boolean
      ? parser.option(key, { type: 'boolean', describe })
      : parser.option(key, { type: 'string', array: spec.list === true, describe });
  }
  for (const { title, keys } of KEY_GROUPS) parser = parser.group([...keys], `${title}:`);
  parser = parser.group(['config', 'help', 'version'], 'General:');
  for (const [command, description] of EXAMPLES) parser = parser.example(command, description);
  parser = parser.epilog(`Install, the systemd unit, signals and every option at length: the README (${readme}).`);
  const parsed = parser.parseSync();
  const flags: RawConfig = {};
  const usage: string[] = [];
  const unknown = parsed._.map((arg) => redactMessage(String(arg)));
  for (const key of Object.keys(parsed)) if (!(key in KEYS) && !GENERAL.has(key)) unknown.push(key);
  if (unknown.length > 0) usage.push(`Unknown argument${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')}`);
  for (const key of ['config', ...Object.keys(KEYS)]) {
    const value = parsed[key] as string | string[] | boolean | undefined;
    if (value === '' || (Array.isArray(value) && (value.length === 0 || value.includes('')))) usage.push(`${key}: needs a value (--${key} VALUE)`);
    else if (value !== undefined && key !== 'config') flags[key] = typeof value === 'boolean' ? String(value) : value;
  }
  return { flags, configFile: parsed.config === '' ? undefined : parsed.config, usage };
}

/** What yargs itself puts in its parse besides the keys: positionals, the script, --config, --help, --version. */
const GENERAL = new Set(['_', '$0', 'config', 'help', 'h', 'version', 'v']);

async function main(): Promise<void> {
  const { flags, configFile, usage } = parseFlags(hideBin(process.argv));
  const inputs: ConfigInputs = { flags, env: process.env, configFile, requireSource: true };
  let config, raw;
  try {
    ({ config, raw } = resolveLayers(inputs));
  } catch (err) {
    // The command line's own problems first, then the values', all in the one line.
    if (err instanceof ConfigError) fail(EXIT_USAGE, [...usage, err.message].join('; '));
    throw err;
  }
  if (usage.length > 0) fail(EXIT_USAGE, usage.join('; '));
  const log = createLogger(config);
  if (isWorker()) return worker(config, log.child({ worker: cluster.worker!.id }));
  if (flags['consul-token'] !== undefined) {
    log.warn('--consul-token on the command line can be read by every local user (ps, /proc/PID/cmdline): use --consul-token-file or CONSUL_HTTP_TOKEN');
  }
  const reloader = new ConfigReloader(inputs, raw);
  if (config.workers > 1) return primary(config, log, reloader);

  const server = await startedOrExit(log, () => SvcdnsServer.start({ config, log }));
  // Before saying "started": a signal sent on reading that line must find its handler.
  onSignals(log, {
    reload: { reloader, apply: (settings) => server.applySettings(settings), reloadFiles: () => server.reload() },
    shutdown: () => server.shutdown(),
  });
  onStatusSignal(log, () => server.status());
  const first = server.addresses[0]!;
  const example = [...(server.store.current()?.allServices() ?? [])].find((s) => s.name !== 'consul')?.name ?? 'web';
  log.info(
    { try: `dig @${first.host} -p ${first.port} ${example}.service.${config.domain} SRV` },
    `started: serving ${server.addresses.map(formatHostPort).join(', ')}`,
  );
}

/**
 * SIGUSR1 logs the /status summary (as dnsmasq dumps its cache statistics on SIGUSR1), instead
 * of Node's default of opening the inspector on 127.0.0.1:9229 (any listener turns that off, so
 * one is installed first thing). Query counts run from the start with --http-listen, else from the
 * first SIGUSR1. Before the server runs, and in a --workers process (the primary speaks for all),
 * the signal is ignored.
 */
let reportStatus: { log: Logger; status: () => Promise<Status> } | null = null;
process.on('SIGUSR1', () => {
  reportStatus?.status().then(
    (s) => reportStatus?.log.info(summarize(s), 'status'),
    (err: unknown) => reportStatus?.log.error({ err }, 'status failed'),
  );
});

function onStatusSignal(log: Logger, status: (() => Promise<Status>) | null): void {
  reportStatus = status && { log, status };
}

interface SignalHandlers {
  /** SIGHUP; null in a --workers process (the primary reloads and tells it what to do). */
  reload: {
    reloader: ConfigReloader;
    /** Puts the settings a reloaded configuration has into effect. */
    apply: (settings: LiveSettings) => void;
    /** Re-reads the catalog and resolv.conf. */
    reloadFiles: () => Promise<CatalogReload>;
  } | null;
  /** The first SIGINT/SIGTERM: lameduck, drain, stop. */
  shutdown: () => Promise<void>;
  /** A second one, before exiting at once (the primary kills its workers). */
  kill?: () => void;
}

/**
 * SIGHUP reloads and logs one outcome line. The first SIGINT/SIGTERM shuts down gracefully, then
 * exits 0 (1 if stopping failed). A second one exits at once with 128 + the signal's number (130,
 * 143), as a shell reports a process killed by it: the graceful stop was cut short, and replies
 * may have been lost, so it is not reported as success.
 */
function onSignals(log: Logger, handlers: SignalHandlers): void {
  const { reload } = handlers;
  process.on('SIGHUP', () => {
    if (!reload) return;
    const config = reload.reloader.reload();
    if (config.ok) reload.apply(config.settings);
    reload.reloadFiles().then(
      (catalog) => logReloadOutcome(log, config, catalog),
      (err: unknown) => log.error({ err }, 'SIGHUP: reload failed'),
    );
  });
  let stopping = false;
  const stop = (signal: 'SIGINT' | 'SIGTERM'): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now, without waiting for the queries in flight');
      handlers.kill?.();
      process.exit(128 + constants.signals[signal]);
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    handlers.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(EXIT_FAILURE);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

/** --workers N, the primary: the catalog source and N worker processes (src/workers.ts). */
async function primary(config: Config, log: Logger, reloader: ConfigReloader): Promise<void> {
  const running = await startedOrExit(log, () => runPrimary(config, log));
  let settings = liveSettings(config);
  onSignals(log, {
    reload: {
      reloader,
      apply: (next) => {
        log.level = next.logLevel;
        settings = next;
      },
      reloadFiles: () => running.reload(settings),
    },
    shutdown: () => running.shutdown(settings.lameduckMs),
    kill: () => running.kill(),
  });
  onStatusSignal(log, () => running.status());
  log.info({ workers: config.workers }, `started: serving ${running.addresses.join(', ')} with ${config.workers} worker processes`);
}

/**
 * A --workers process: stops when the primary says so, or on a signal of its own (the same
 * shutdown). Its handlers are in place before it tells the primary it listens; a signal before its
 * server has started ends it at once.
 */
async function worker(config: Config, log: Logger): Promise<void> {
  let server: SvcdnsServer | null = null;
  onSignals(log, { reload: null, shutdown: () => server?.shutdown() ?? Promise.resolve() });
  const exitAfter = (stopped: Promise<void>): void =>
    void stopped.then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(EXIT_FAILURE);
      },
    );
  await startedOrExit(log, () =>
    runWorker(
      log,
      config.listen,
      async ({ listen, ...options }) => (server = await SvcdnsServer.start({ config: { ...config, listen }, log, ...options })),
      (started, lameduckMs) => exitAfter(started.shutdown({ lameduckMs })),
    ),
  );
  onStatusSignal(log, null);
}

/** What `start` resolves with; if it fails, the process exits 1 with its one-line reason. */
async function startedOrExit<T>(log: Logger, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (err) {
    log.flush();
    return fail(EXIT_FAILURE, err instanceof Error ? err.message : String(err));
  }
}

main().catch((err: unknown) => fail(EXIT_FAILURE, err instanceof Error ? (err.stack ?? err.message) : String(err)));
