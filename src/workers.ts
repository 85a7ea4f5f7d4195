/**
 * --workers N: N processes answer queries, one source feeds them all.
 *
 * The primary process runs the catalog source (the file, or the Consul watches: one set of
 * blocking queries however many workers there are), checks each catalog it publishes by building
 * a snapshot of it, and sends it to every worker (src/catalog/relay/source.ts has the messages).
 * Workers are full svcdns servers with that relay as their source. Their sockets
 * (src/listen/worker-sockets.ts, one log line at start says which): TCP shared through node:cluster
 * (the primary accepts and hands the connections out in turn); UDP either shared the same way
 * (the primary binds it, so only the primary needs the right to bind port 53), or, where Node has
 * reusePort, one socket per worker that each worker binds itself (each then needs that right: the
 * systemd unit's capability is inherited). Each worker has its own reply cache, forward cache and
 * upstream health: the caches warm up per worker.
 *
 * Lifecycle: a worker that fails to start (the port is taken, say) stops the whole server with
 * exit status 1, as a single process would. A worker that dies later is logged and replaced after
 * a second. SIGHUP reloads the source and tells the workers to re-read resolv.conf and apply the
 * settings that changed. SIGINT/SIGTERM: the primary tells every worker to shut down (`shutdown`:
 * lameduck, drain, exit 0, as a single process does), waits for them (killing any still there
 * `STOP_GRACE_MS` after the lameduck and drain time), then stops the source. A worker that gets
 * the signal itself (systemd signals the whole control group, a terminal the whole process group)
 * starts the same shutdown; the primary's message then changes nothing.
 */

import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { RelaySource, type ToPrimary, type ToWorker } from './catalog/relay/source.js';
import type { QueryOutcome } from './catalog/queries.js';
import type { CatalogSource } from './catalog/source.js';
import { createSource } from './catalog/sources.js';
import { CatalogStore } from './catalog/store.js';
import { CatalogPersistence } from './state/persist.js';
import type { CatalogData } from './catalog/types.js';
import type { Config } from './config.js';
import { PhaseTracker } from './lifecycle/phase.js';
import { catalogReload, type CatalogReload, type LiveSettings } from './lifecycle/reload.js';
import { formatHostPort, type HostPort, type ListenAddress } from './net/address.js';
import { encodeWorkerSockets, planWorkerSockets, workerSocketsFrom } from './listen/worker-sockets.js';
import { Diagnostics } from './diagnostics/channels.js';
import { aggregate, ServerMetrics } from './diagnostics/metrics.js';
import { StateLog } from './diagnostics/state-log.js';
import { listenHttp, type HttpEndpoint } from './http/endpoint.js';
import { buildStatus, readinessOf, type MetricJson, type Readiness, type Status } from './http/status.js';

const RESPAWN_DELAY_MS = 1000;
const STOP_GRACE_MS = 10_000;
/** How long a scrape waits for the workers' metrics; one that does not answer in time is left out. */
const SCRAPE_TIMEOUT_MS = 2000;

export function isWorker(): boolean {
  return cluster.isWorker;
}

/** The primary as the CLI (and an HTTP endpoint) sees it. */
export interface Primary {
  readonly addresses: string[];
  /** SIGHUP: reloads the source, tells the workers to re-read resolv.conf and apply `settings`. */
  reload(settings: LiveSettings): Promise<CatalogReload>;
  /** SIGTERM: every worker lameducks and drains, then exits; then the source stops. Idempotent. */
  shutdown(lameduckMs: number): Promise<void>;
  /** A second signal: every worker is killed now. */
  kill(): void;
  /** GET /status, and SIGUSR1's summary: every process's metrics summed, with the source's state. */
  status(): Promise<Status>;
}

/**
 * The primary: starts the source, then the workers; resolves once every worker listens, rejects
 * (after stopping everything) if one cannot start.
 */
export async function runPrimary(config: Config, log: Logger): Promise<Primary> {
  // First, so that a port taken fails the start before anything runs.
  const sockets = await planWorkerSockets(config.workerSockets, config.listen);
  log.info(
    sockets.mode === 'reuseport'
      ? { udp: 'one socket per worker (reusePort)', tcp: 'accepted by the primary, handed to the workers in turn', mode: sockets.mode, choice: config.workerSockets }
      : { udp: 'one socket shared by the workers', tcp: 'accepted by the primary, handed to the workers in turn', mode: sockets.mode, choice: config.workerSockets },
    'worker sockets',
  );
  const check = new CatalogStore();
  let last: CatalogData | null = null;
  const workers = new Set<Worker>();
  /** Workers that have said they listen: only they handle messages other than the catalog's. */
  const listeningWorkers = new WeakSet<Worker>();
  const send = (worker: Worker, message: ToWorker): void => {
    if (worker.isConnected()) worker.send(message);
  };
  const diagnostics = new Diagnostics();
  const stateLog = new StateLog(diagnostics);
  const source = await createSource(config, log, { diagnostics });
  const startedAt = Date.now();
  const phases = new PhaseTracker();
  let http: HttpEndpoint | null = null;
  // The primary's own metrics: the catalog and Consul's watches (it runs the source), and its process.
  const metrics = new ServerMetrics(
    diagnostics,
    { replyCache: () => null, forwarder: () => null, catalog: () => check.current(), consulWatches: () => source.watchCount ?? null, tcpConnections: () => null, consulUp: () => source.consulUp ?? null, zookeeper: () => source.zookeeper ?? null, sources: () => source.members?.() ?? null },
    { defaultMetrics: true },
  );
  const scrapes = new Map<number, { data: unknown[][]; pending: number; done: () => void }>();
  let nextScrape = 0;
  /** Every process's metrics as data: the primary's, then each worker's (a worker that does not answer in time is left out). */
  const scrape = async (): Promise<unknown[][]> => {
    const id = ++nextScrape;
    const asked = [...workers].filter((w) => w.isConnected() && listeningWorkers.has(w));
    const data: unknown[][] = [await metrics.json()];
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, SCRAPE_TIMEOUT_MS);
      function done(): void {
        clearTimeout(timer);
        scrapes.delete(id);
        resolve();
      }
      scrapes.set(id, { data, pending: asked.length, done });
      if (asked.length === 0) done();
      for (const w of asked) send(w, { t: 'metrics', id });
    });
    return data;
  };
  let persistence: CatalogPersistence | null = null;
  /** The --state-dir writer's subscription to the catalogs the source publishes. */
  let onCatalog: ((data: CatalogData) => void) | null = null;
  const readiness = (): Readiness => {
    const stale = persistence?.stale;
    return readinessOf(phases.phase, check.current() !== null, source.description, stale ? { ageSeconds: Math.max(0, Math.round((Date.now() - stale.savedAt) / 1000)) } : null);
  };
  const status = async (): Promise<Status> => {
    const all = await aggregate(await scrape()).getMetricsAsJSON();
    return buildStatus(all as MetricJson[], { readiness: readiness(), source, failing: stateLog.failing(), workers: workers.size, startedAt, stale: persistence?.stale ?? null });
  };
  if (config.httpListen.length > 0) {
    http = await listenHttp(
      config.httpListen,
      { metrics: async () => aggregate(await scrape()).metrics(), readiness, healthy: () => phases.phase !== 'stopped', status },
      log,
    ).catch(async (err: unknown) => {
      await source.stop();
      throw err;
    });
  }
  // The persisted catalog (--state-dir, registry sources only) is the workers' first catalog, until
  // the source's first sync replaces it; the primary writes what the source publishes.
  if (config.stateDir !== null) {
    persistence = await CatalogPersistence.open({
      dir: config.stateDir,
      datacenter: config.datacenter,
      source,
      sink: {
        replace(data) {
          check.replace(data);
          last = data;
        },
      },
      subscribe(listener) {
        onCatalog = listener;
        return () => (onCatalog = null);
      },
      log,
    });
  }
  await source.start({
    replace(data) {
      check.replace(data); // throws on inconsistent data: nothing is sent then
      last = data;
      for (const w of workers) send(w, { t: 'catalog', data });
      onCatalog?.(data);
    },
  });

  // Workers get the primary's flags but never its ACL token (they read nothing from Consul): a
  // command line is readable by every local user (ps, /proc/PID/cmdline).
  cluster.setupPrimary({ serialization: 'advanced', args: withoutSecrets(process.argv.slice(2)) });
  let stopping = false;
  let addresses: string[] = [];

  const spawn = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const worker = cluster.fork(encodeWorkerSockets(sockets));
      workers.add(worker);
      let listening = false;
      worker.on('message', (message: ToPrimary) => {
        switch (message.t) {
          case 'hello':
            send(worker, last ? { t: 'catalog', data: last } : { t: 'empty' });
            break;
          case 'listening':
            listening = true;
            listeningWorkers.add(worker);
            addresses = message.addresses;
            resolve();
            break;
          case 'want':
            if (!source.want) {
              send(worker, { t: 'wanted', id: message.id, ok: false });
              break;
            }
            source.want(message.datacenter, message.service, message.lookup).then(
              () => send(worker, { t: 'wanted', id: message.id, ok: true }),
              () => send(worker, { t: 'wanted', id: message.id, ok: false }),
            );
            break;
          case 'touch':
            for (const [dc, service, lookup] of message.used) source.touch?.(dc, service, lookup);
            break;
          case 'query':
            answerQuery(source, message, (outcome, perClient) => send(worker, { t: 'queried', id: message.id, outcome, perClient }));
            break;
          case 'metrics': {
            const s = scrapes.get(message.id);
            if (!s) break;
            s.data.push(message.data);
            if (--s.pending === 0) s.done();
            break;
          }
        }
      });
      worker.on('exit', (code, signal) => {
        workers.delete(worker);
        if (!listening) {
          reject(new Error(`worker ${worker.id} did not start (exit ${code ?? signal})`));
          return;
        }
        if (stopping) return;
        log.error({ worker: worker.id, code, signal }, 'worker exited; starting another');
        setTimeout(() => {
          if (!stopping) spawn().catch((err: unknown) => log.error({ err }, 'replacement worker did not start'));
        }, RESPAWN_DELAY_MS).unref();
      });
    });

  // What a worker may take to stop besides the lameduck: its drain time (as the server reckons it), then a margin.
  const drainMs = Math.max(config.forward.timeoutMs, config.consul?.fetchTimeoutMs ?? 0);
  let stopped: Promise<void> | null = null;
  const stop = async (lameduckMs: number): Promise<void> => {
    stopping = true;
    phases.enter(lameduckMs > 0 ? 'lameduck' : 'stopping');
    const lameduck = lameduckMs > 0 ? setTimeout(() => phases.enter('stopping'), lameduckMs) : null;
    await Promise.all(
      [...workers].map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.isDead()) return resolve();
            const timer = setTimeout(() => w.process.kill('SIGKILL'), lameduckMs + drainMs + STOP_GRACE_MS);
            w.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            // A worker still starting has its signal handlers but not yet its message handler.
            if (listeningWorkers.has(w) && w.isConnected()) send(w, { t: 'shutdown', lameduckMs });
            else w.process.kill('SIGTERM');
          }),
      ),
    );
    if (lameduck) clearTimeout(lameduck);
    phases.enter('stopping');
    await source.stop();
    await persistence?.close();
    metrics.close();
    stateLog.stop();
    await http?.close();
    phases.enter('stopped');
  };
  const shutdown = (lameduckMs: number): Promise<void> => (stopped ??= stop(lameduckMs));

  try {
    await Promise.all(Array.from({ length: config.workers }, spawn));
  } catch (err) {
    await shutdown(0);
    throw err;
  }
  phases.enter('serving');
  return {
    status,
    addresses,
    reload: async (settings) => {
      for (const w of workers) send(w, { t: 'reload', settings });
      return catalogReload(await source.reload());
    },
    shutdown,
    kill: () => {
      stopping = true;
      for (const w of workers) if (!w.isDead()) w.process.kill('SIGKILL');
    },
  };
}

/** What a worker runs: a full server (src/server.ts), fed by the primary, on the shared sockets. */
export interface WorkerServer {
  readonly addresses: readonly HostPort[];
  metrics(): { json(): Promise<unknown[]> };
  reload(): Promise<unknown>;
  applySettings(settings: LiveSettings): void;
  close(): Promise<void>;
}

/** How a worker's server is started: the relay as its source, and its sockets as the primary planned them. */
export interface WorkerStart {
  source: CatalogSource;
  sharedSockets: true;
  /** Its UDP sockets its own, with reusePort (src/listen/worker-sockets.ts). */
  reusePort: boolean;
  /** The listen addresses to bind: with reusePort, the ports the primary reserved (port 0 decided). */
  listen: readonly ListenAddress[];
}

/**
 * A worker: `start` starts its server with the primary's relay as the catalog source. `shutdown`
 * is called when the primary says to stop (the same as a SIGTERM to this process).
 */
export async function runWorker<S extends WorkerServer>(
  log: Logger,
  listen: readonly ListenAddress[],
  start: (options: WorkerStart) => Promise<S>,
  shutdown: (server: S, lameduckMs: number) => void,
): Promise<S> {
  const channel = {
    send: (message: ToPrimary) => process.send?.(message),
    onMessage: (listener: (message: ToWorker) => void) => {
      process.on('message', listener);
      return () => process.off('message', listener);
    },
  };
  const source = new RelaySource(channel, log);
  const sockets = workerSocketsFrom(process.env, listen);
  const server = await start({ source, sharedSockets: true, reusePort: sockets.mode === 'reuseport', listen: sockets.listen });
  channel.onMessage((message) => {
    if (message.t === 'reload') {
      server.applySettings(message.settings);
      void server.reload();
    } else if (message.t === 'shutdown') shutdown(server, message.lameduckMs);
    else if (message.t === 'metrics') void server.metrics().json().then((data) => channel.send({ t: 'metrics', id: message.id, data }));
  });
  channel.send({ t: 'listening', addresses: server.addresses.map(formatHostPort) });
  return server;
}

/** `args` without `--consul-token VALUE` / `--consul-token=VALUE`. */
export function withoutSecrets(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--consul-token') i++;
    else if (!arg.startsWith('--consul-token=')) out.push(arg);
  }
  return out;
}

/**
 * A worker's prepared query, executed by the primary's source: from its cache when it has the
 * outcome, else after an execution; with whether the worker must keep it per client address. A source that executes no queries (a catalog file: its
 * queries travel with the catalog) says `not-found`.
 */
function answerQuery(source: CatalogSource, q: Extract<ToPrimary, { t: 'query' }>, reply: (outcome: QueryOutcome, perClient: boolean) => void): void {
  const queries = source.queries;
  if (!queries) return reply({ kind: 'not-found' }, false);
  // Whether the worker keys this outcome per client: as the source does (unknown: per client).
  const perClient = (): boolean => queries.perClient?.(q.datacenter, q.name) ?? true;
  const known = queries.peek(q.datacenter, q.name, q.source);
  if (known) return reply(known, perClient());
  queries.execute(q.datacenter, q.name, q.source).then(
    () => reply(queries.peek(q.datacenter, q.name, q.source) ?? { kind: 'failed' }, perClient()),
    () => reply({ kind: 'failed' }, perClient()),
  );
}
