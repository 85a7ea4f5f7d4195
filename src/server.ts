/**
 * The composition root: builds the catalog store and source, the request pipeline (its stages, in
 * order, one line each), the diagnostics subscribers and the listeners from a Config, and tears
 * them down again. Tests start this in-process on port 0.
 *
 * Stopping (`shutdown`) goes through the phases of src/lifecycle/phase.ts: lameduck (DNS still
 * answered, for `lameduckMs`; readiness says no), then stopping: the listeners stop taking queries,
 * the queries in flight are answered (those still waiting after the drain time get SERVFAIL), TCP
 * connections are ended after their replies; then stopped.
 */

import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { Answerer } from './answer/answerer.js';
import type { CatalogSource } from './catalog/source.js';
import { createSource } from './catalog/sources.js';
import { CatalogStore } from './catalog/store.js';
import type { Config } from './config.js';
import { Diagnostics } from './diagnostics/channels.js';
import { logQueries } from './diagnostics/query-log.js';
import { logStateChanges } from './diagnostics/state-log.js';
import { trackUsage } from './diagnostics/usage.js';
import { Forwarder } from './forward/forwarder.js';
import { PhaseTracker, type Phase } from './lifecycle/phase.js';
import { catalogReload, liveSettings, type CatalogReload, type LiveSettings } from './lifecycle/reload.js';
import { UpstreamSource } from './forward/upstream-source.js';
import { formatHostPort, parseIp, type ListenAddress } from './net/address.js';
import { listenTcp, type TcpListener } from './listen/tcp.js';
import { listenUdp, type UdpListener } from './listen/udp.js';
import { AnswerStage } from './pipeline/answer.js';
import { createPipeline } from './pipeline/chain.js';
import { InFlight } from './pipeline/in-flight.js';
import { checkQuery } from './pipeline/check-query.js';
import { ForwardStage } from './pipeline/forward.js';
import type { DnsHandler } from './pipeline/handler.js';
import { Recursion, recursionAclStage } from './pipeline/recursion.js';
import { ReplyCache } from './pipeline/reply-cache.js';
import type { Stage } from './pipeline/stage.js';

export interface ServerOptions {
  config: Config;
  log: Logger;
  /** Wall clock in ms (SOA serials); injected by tests. */
  now?: () => number;
  /** Debounce of catalog file change events, ms. */
  reloadDebounceMs?: number;
  /** How often an unhealthy upstream is probed, ms (tests shorten it). */
  upstreamProbeIntervalMs?: number;
  /** The catalog source to use instead of the one the config names (a --workers process's relay). */
  source?: CatalogSource;
  /** Listening sockets shared with other processes through node:cluster (a --workers process). */
  sharedSockets?: boolean;
}

export interface BoundAddress {
  host: string;
  port: number;
}

export interface ShutdownOptions {
  /** How long DNS keeps answering before the listeners close, ms; default: --lameduck (as last reloaded). */
  lameduckMs?: number;
  /**
   * How long the queries in flight when the listeners close may take before they get SERVFAIL, ms;
   * default: --upstream-timeout, or --fetch-timeout if longer (what one forwarded try or one
   * on-demand fetch may take anyway).
   */
  drainMs?: number;
}

/** What a server changes as it runs: its phase, its answers in flight, the settings a SIGHUP may change. */
interface Running {
  readonly phases: PhaseTracker;
  readonly inFlight: InFlight;
  readonly drainMs: number;
  settings: LiveSettings;
  /** Stops the --query-log subscription; null while the query log is off. */
  queryLogOff: (() => void) | null;
  stopping: Promise<void> | null;
}

export class SvcdnsServer {
  private constructor(
    readonly store: CatalogStore,
    readonly source: CatalogSource,
    readonly forwarder: Forwarder,
    readonly replyCache: ReplyCache,
    private readonly upstreamSource: UpstreamSource,
    readonly handler: DnsHandler,
    /** Every event this server publishes (src/diagnostics/channels.ts): subscribe to watch it. */
    readonly diagnostics: Diagnostics,
    readonly addresses: readonly BoundAddress[],
    private readonly listeners: readonly (UdpListener | TcpListener)[],
    private readonly unsubscribe: () => void,
    private readonly log: Logger,
    private readonly running: Running,
  ) {}

  /** Where the server is in its life: `serving` until a shutdown starts (readiness: phase === 'serving'). */
  get phase(): Phase {
    return this.running.phases.phase;
  }

  /** Calls `listener` with each new phase; returns the function that stops it. */
  onPhaseChange(listener: (phase: Phase) => void): () => void {
    return this.running.phases.onChange(listener);
  }

  /** Loads the catalog, then binds every listen address (UDP and TCP on the same port). */
  static async start(options: ServerOptions): Promise<SvcdnsServer> {
    const { config, log } = options;
    const diagnostics = new Diagnostics();
    const subscriptions = [logStateChanges(diagnostics)];
    const { forwarder, upstreamSource } = await createForwarder(options, diagnostics);
    const store = new CatalogStore({ now: options.now, onlyPassing: config.onlyPassing, diagnostics });
    const source = options.source ?? (await createSource(config, log, { diagnostics, reloadDebounceMs: options.reloadDebounceMs }));
    await source.start(store);

    const answerer = new Answerer({
      domain: config.domain,
      altDomain: config.altDomain,
      datacenter: config.datacenter,
      serviceTtl: config.serviceTtl,
      nodeTtl: config.nodeTtl,
      soa: { refresh: 3600, retry: 600, expire: 86400, minimum: 0 },
      nameserverAddresses: config.listen.flatMap((l) => {
        const ip = parseIp(l.host);
        return ip && !ip.bytes.every((b) => b === 0) ? [ip] : [];
      }),
    });
    const replyCache = new ReplyCache({
      maxEntries: config.answerCacheSize,
      maxBytes: config.answerCacheMaxBytes,
      maxUdpSize: config.maxUdpSize,
      now: options.now ?? Date.now,
    });
    const recursion = new Recursion(config.forward.allowRecursion, forwarder);
    // The decision order for every query; each stage is one line (src/pipeline/stage.ts has the contract).
    const stages: Stage[] = [
      ...(replyCache.enabled ? [replyCache] : []),
      checkQuery,
      new AnswerStage({ answerer, source, fetchTimeoutMs: config.consul?.fetchTimeoutMs ?? 2000, log }),
      recursionAclStage,
      new ForwardStage(forwarder),
    ];
    if (source.touch) subscriptions.push(trackUsage(diagnostics, { touch: source.touch.bind(source) }));
    const unsubscribe = (): void => subscriptions.forEach((u) => u());
    const inFlight = new InFlight();
    const handler = createPipeline({
      stages,
      context: { store, maxUdpSize: config.maxUdpSize, recursive: recursion.recursive },
      diagnostics,
      log,
      inFlight,
    });
    const running: Running = {
      phases: new PhaseTracker(),
      inFlight,
      drainMs: Math.max(config.forward.timeoutMs, config.consul?.fetchTimeoutMs ?? 0),
      settings: liveSettings(config),
      queryLogOff: config.queryLog ? logQueries(diagnostics, log) : null,
      stopping: null,
    };

    const listeners: (UdpListener | TcpListener)[] = [];
    const addresses: BoundAddress[] = [];
    try {
      for (const at of config.listen) {
        const pair = await bindPair(at, handler, config, log, !options.sharedSockets);
        listeners.push(pair.udp, pair.tcp);
        addresses.push({ host: at.host, port: pair.udp.port });
      }
    } catch (err) {
      await Promise.all(listeners.map((l) => l.close()));
      unsubscribe();
      running.queryLogOff?.();
      replyCache.close();
      upstreamSource.close();
      forwarder.close();
      await source.stop();
      throw err;
    }
    for (const a of addresses) log.info({ address: formatHostPort(a) }, 'listening (udp, tcp)');
    return new SvcdnsServer(store, source, forwarder, replyCache, upstreamSource, handler, diagnostics, addresses, listeners, unsubscribe, log, running);
  }

  /**
   * Re-reads what comes from files now (SIGHUP): the catalog, and resolv.conf when upstreams come
   * from it. Resolves with how the catalog's reload went, when its source can tell.
   */
  async reload(): Promise<CatalogReload> {
    const [catalog] = await Promise.all([this.source.reload(), this.upstreamSource.reload()]);
    return catalogReload(catalog);
  }

  /** What a SIGHUP may change without a restart (src/lifecycle/reload.ts): log level, query log, lameduck. */
  applySettings(settings: LiveSettings): void {
    const running = this.running;
    if (settings.logLevel !== running.settings.logLevel) this.log.level = settings.logLevel;
    if (settings.queryLog && !running.queryLogOff) running.queryLogOff = logQueries(this.diagnostics, this.log);
    if (!settings.queryLog && running.queryLogOff) {
      running.queryLogOff();
      running.queryLogOff = null;
    }
    running.settings = { ...settings };
  }

  /**
   * Stops gracefully (SIGTERM): lameduck, then the listeners close and the queries in flight are
   * answered (see ShutdownOptions), then everything else is released. Calls after the first
   * return the first one's promise.
   */
  shutdown(options: ShutdownOptions = {}): Promise<void> {
    this.running.stopping ??= this.windDown(options.lameduckMs ?? this.running.settings.lameduckMs, options.drainMs ?? this.running.drainMs);
    return this.running.stopping;
  }

  /** Stops with no lameduck (tests, embedding); during a shutdown, waits for it. */
  close(): Promise<void> {
    return this.shutdown({ lameduckMs: 0 });
  }

  private async windDown(lameduckMs: number, drainMs: number): Promise<void> {
    const { phases, inFlight } = this.running;
    if (lameduckMs > 0) {
      phases.enter('lameduck');
      this.log.info({ lameduckMs }, 'lameduck: still answering DNS, no longer ready');
      await new Promise((resolve) => setTimeout(resolve, lameduckMs));
    }
    phases.enter('stopping');
    const closed = Promise.all(this.listeners.map((l) => l.close()));
    // Said once the listeners have stopped taking queries, so whoever reads it may rely on that.
    this.log.info({ inFlight: inFlight.size, drainMs }, 'listeners closing; answering the queries in flight');
    const drained = setTimeout(() => {
      if (inFlight.size > 0) this.log.warn({ unanswered: inFlight.size, drainMs }, 'drain time over: SERVFAIL to the queries still in flight');
      inFlight.giveUp();
    }, drainMs);
    await closed;
    clearTimeout(drained);
    this.unsubscribe();
    this.running.queryLogOff?.();
    this.replyCache.close();
    this.upstreamSource.close();
    this.forwarder.close();
    await this.source.stop();
    phases.enter('stopped');
    this.log.info('stopped');
  }
}

/** The forwarder for names outside the Consul domain, and the source of its upstreams. */
async function createForwarder(options: ServerOptions, diagnostics: Diagnostics): Promise<{ forwarder: Forwarder; upstreamSource: UpstreamSource }> {
  const { config, log, now, upstreamProbeIntervalMs, reloadDebounceMs } = options;
  const f = config.forward;
  const upstreamSource = new UpstreamSource({
    given: f.upstreams,
    resolvConf: f.resolvConf,
    listen: config.listen,
    log,
    diagnostics,
    read: (path) => readFile(path, 'utf8'),
    ...(reloadDebounceMs !== undefined && { debounceMs: reloadDebounceMs }),
  });
  const forwarder = new Forwarder({
    upstreams: await upstreamSource.start(),
    policy: f.policy,
    timeoutMs: f.timeoutMs,
    maxInflight: f.maxInflight,
    cacheSize: f.cacheSize,
    cacheMaxBytes: f.cacheMaxBytes,
    cacheMaxTtl: f.cacheMaxTtl,
    log,
    diagnostics,
    ...(now && { now }),
    ...(upstreamProbeIntervalMs !== undefined && { probeIntervalMs: upstreamProbeIntervalMs }),
  });
  upstreamSource.onChange = (upstreams) => forwarder.setUpstreams(upstreams);
  return { forwarder, upstreamSource };
}

/**
 * Binds UDP, then TCP on the port UDP got. With port 0 the kernel picks the UDP port, which may be
 * taken for TCP: try again with a new port a few times.
 */
async function bindPair(at: ListenAddress, handler: DnsHandler, config: Config, log: Logger, exclusive: boolean): Promise<{ udp: UdpListener; tcp: TcpListener }> {
  for (let attempt = 0; ; attempt++) {
    const udp = await listenUdp(at, handler, log, exclusive).catch((err: unknown) => {
      throw listenError(at, 'udp', err);
    });
    try {
      const tcp = await listenTcp({ host: at.host, port: udp.port }, handler, { idleTimeoutMs: config.tcpIdleTimeout * 1000, exclusive }, log);
      return { udp, tcp };
    } catch (err) {
      await udp.close();
      if (at.port !== 0 || attempt >= 10 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw listenError(at, 'tcp', err);
    }
  }
}

/** Turns a bind failure into a message that says what to do about it. */
function listenError(at: ListenAddress, transport: 'udp' | 'tcp', err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  const where = `cannot listen on ${formatHostPort(at)} (${transport})`;
  if (code === 'EADDRINUSE') return new Error(`${where}: address already in use`, { cause: err });
  if (code === 'EACCES') return new Error(`${where}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)`, { cause: err });
  if (code === 'EADDRNOTAVAIL') return new Error(`${where}: no such local address`, { cause: err });
  return new Error(`${where}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

