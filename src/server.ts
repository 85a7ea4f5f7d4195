/**
 * The composition root: builds the catalog store and source, the request pipeline (its stages, in
 * order, one line each), the diagnostics subscribers and the listeners from a Config, and tears
 * them down again. Tests start this in-process on port 0.
 */

import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { Answerer } from './answer/answerer.js';
import { HostLookup } from './forward/lookup.js';
import type { CatalogSource } from './catalog/source.js';
import { createSource } from './catalog/sources.js';
import { CatalogStore } from './catalog/store.js';
import type { Config } from './config.js';
import { Diagnostics } from './diagnostics/channels.js';
import { logQueries } from './diagnostics/query-log.js';
import { ServerMetrics } from './diagnostics/metrics.js';
import { StateLog } from './diagnostics/state-log.js';
import { trackUsage } from './diagnostics/usage.js';
import { Forwarder } from './forward/forwarder.js';
import { listenHttp, type HttpEndpoint, type Observed } from './http/endpoint.js';
import { buildStatus, readinessOf, type MetricJson, type Readiness, type Status } from './http/status.js';
import { PhaseTracker, type Phase } from './lifecycle/phase.js';
import { catalogReload, liveSettings, type CatalogReload, type LiveSettings } from './lifecycle/reload.js';
import { checkOpenFiles } from './forward/open-files.js';
import { UpstreamSource } from './forward/upstream-source.js';
import { formatHostPort, parseIp, type ListenAddress } from './net/address.js';
import { listenTcp, type TcpListener } from './listen/tcp.js';
import { addressMatcher } from './net/clients.js';
import { listenError } from './net/listen-error.js';
import { listenUdp, type UdpListener } from './listen/udp.js';
import { AnswerStage } from './pipeline/answer.js';
import { createPipeline } from './pipeline/chain.js';
import { InFlight } from './pipeline/in-flight.js';
import { checkQuery } from './pipeline/check-query.js';
import { ForwardStage } from './pipeline/forward.js';
import type { DnsHandler } from './pipeline/handler.js';
import { Recursion, recursionAclStage } from './pipeline/recursion.js';
import { ReplyCache } from './pipeline/reply-cache.js';
import { RateLimiter, rateLimited } from './rrl/limiter.js';
import type { Stage } from './pipeline/stage.js';
import { CatalogPersistence } from './state/persist.js';
import type { Backoff } from './util/pacing.js';

export interface ServerOptions {
  config: Config;
  log: Logger;
  /** Wall clock in ms (SOA serials); injected by tests. */
  now?: () => number;
  /** Debounce of catalog file change events, ms. */
  reloadDebounceMs?: number;
  /** How often an unhealthy upstream is probed, ms (tests shorten it). */
  upstreamProbeIntervalMs?: number;
  /** How the catalog source retries a failed read on its own (tests lengthen it; SourceOptions). */
  retryBackoff?: Backoff;
  /** The catalog source to use instead of the one the config names (a --workers process's relay). */
  source?: CatalogSource;
  /** Listening sockets shared with other processes through node:cluster (a --workers process). */
  sharedSockets?: boolean;
  /**
   * A --workers process with `--worker-sockets reuseport`: its UDP sockets are its own, bound with
   * reusePort beside the other workers' (TCP stays shared). Needs `sharedSockets`.
   */
  reusePort?: boolean;
  /**
   * Metrics include the standard process_* and nodejs_* ones (default true). They are per process:
   * an embedding program that collects its own says false.
   */
  defaultMetrics?: boolean;
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

export class SvcdnsServer {
  private readonly phases = new PhaseTracker();
  /** Answers pending (an upstream, a fetch): a stopping server answers them, or gives up on them. */
  private readonly inFlight = new InFlight();
  private readonly drainMs: number;
  /** What a SIGHUP may change without a restart. */
  private settings: LiveSettings;
  /** Stops the --query-log subscription; null while the query log is off. */
  private queryLogOff: (() => void) | null = null;
  private stopping: Promise<void> | null = null;
  private metricsNow: ServerMetrics | null = null;
  private http: HttpEndpoint | null = null;
  /** --state-dir with a registry source: the persisted catalog (served until the first sync) and its writer. */
  private persistence: CatalogPersistence | null = null;
  private readonly startedAt = Date.now();
  readonly replyCache: ReplyCache;
  readonly handler: DnsHandler;
  private readonly listeners: (UdpListener | TcpListener)[] = [];
  private readonly bound: BoundAddress[] = [];
  private readonly subscriptions: (() => void)[] = [];

  private constructor(
    private readonly options: ServerOptions,
    readonly store: CatalogStore,
    readonly source: CatalogSource,
    readonly forwarder: Forwarder,
    private readonly upstreamSource: UpstreamSource,
    /** Every event this server publishes (src/diagnostics/channels.ts): subscribe to watch it. */
    readonly diagnostics: Diagnostics,
    private readonly stateLog: StateLog,
    private readonly log: Logger,
  ) {
    const { config } = options;
    this.drainMs = Math.max(config.forward.timeoutMs, config.consul?.fetchTimeoutMs ?? 0);
    this.settings = liveSettings(config);
    const answerer = new Answerer({
      domain: config.domain,
      altDomain: config.altDomain,
      datacenter: config.datacenter,
      serviceTtl: config.serviceTtl,
      nodeTtl: config.nodeTtl,
      translateWanAddrs: config.translateWanAddrs,
      soa: config.soa,
      aRecordLimit: config.aRecordLimit,
      nodeMetaTxt: config.nodeMetaTxt,
      nameserverAddresses: config.listen.flatMap((l) => {
        const ip = parseIp(l.host);
        return ip && !ip.bytes.every((b) => b === 0) ? [ip] : [];
      }),
      queries: source.queries ?? null,
    });
    this.replyCache = new ReplyCache({
      maxEntries: config.answerCacheSize,
      maxBytes: config.answerCacheMaxBytes,
      maxUdpSize: config.maxUdpSize,
      now: options.now ?? Date.now,
    });
    const recursion = new Recursion(config.forward.allowRecursion, forwarder);
    // The decision order for every query; each stage is one line (src/pipeline/stage.ts has the contract).
    const stages: Stage[] = [
      ...(this.replyCache.enabled ? [this.replyCache] : []),
      checkQuery,
      new AnswerStage({ answerer, source, fetchTimeoutMs: config.consul?.fetchTimeoutMs ?? 2000, lookup: new HostLookup(forwarder), log }),
      recursionAclStage,
      new ForwardStage(forwarder),
    ];
    if (config.queryLog) this.queryLogOff = logQueries(diagnostics, log);
    if (source.touch) this.subscriptions.push(trackUsage(diagnostics, { touch: source.touch.bind(source) }));
    const pipeline = createPipeline({
      stages,
      context: { store, maxUdpSize: config.maxUdpSize, recursive: recursion.recursive },
      diagnostics,
      log,
      inFlight: this.inFlight,
    });
    // RRL judges replies, so it wraps the whole pipeline; off, it costs nothing (src/rrl/limiter.ts).
    this.handler = config.rrl.responsesPerSecond > 0 ? rateLimited(pipeline, new RateLimiter({ config: config.rrl, diagnostics })) : pipeline;
  }

  /**
   * Starts the HTTP endpoint (with --http-listen), loads the catalog, then binds every listen
   * address (UDP and TCP on the same port). /ready says ready once all of that is done.
   */
  static async start(options: ServerOptions): Promise<SvcdnsServer> {
    const { config, log } = options;
    const diagnostics = new Diagnostics();
    const stateLog = new StateLog(diagnostics);
    let server: SvcdnsServer | null = null;
    let forwarding: { forwarder: Forwarder; upstreamSource: UpstreamSource } | null = null;
    let source: CatalogSource | null = null;
    try {
      forwarding = await createForwarder(options, diagnostics);
      const store = new CatalogStore({ now: options.now, onlyPassing: config.onlyPassing, diagnostics });
      source = options.source ?? (await createSource(config, log, { diagnostics, reloadDebounceMs: options.reloadDebounceMs, retryBackoff: options.retryBackoff }));
      server = new SvcdnsServer(options, store, source, forwarding.forwarder, forwarding.upstreamSource, diagnostics, stateLog, log);
      // The endpoint comes first, so /ready can say "not yet" while the catalog loads. A --workers
      // process leaves it to the primary (src/workers.ts), which speaks for them all.
      if (config.httpListen.length > 0) {
        if (options.sharedSockets) server.metrics();
        else server.http = await listenHttp(config.httpListen, server.observed(), log);
      }
      // Before the source starts, so the persisted catalog serves from the first query and the
      // source's first sync replaces it.
      if (config.stateDir !== null) {
        server.persistence = await CatalogPersistence.open({
          dir: config.stateDir,
          datacenter: config.datacenter,
          source,
          sink: store,
          subscribe: (onCatalog) => diagnostics.catalog.subscribe(({ data }) => onCatalog(data)),
          log,
          ...(options.now && { now: options.now }),
        });
      }
      await source.start(store);
      for (const at of config.listen) {
        const pair = await bindPair(at, server.handler, config, diagnostics, log, !options.sharedSockets, options.reusePort ?? false);
        server.listeners.push(pair.udp, pair.tcp);
        server.bound.push({ host: at.host, port: pair.udp.port });
      }
    } catch (err) {
      if (server) await server.windDown(0, 0, true);
      else {
        stateLog.stop();
        forwarding?.upstreamSource.close();
        forwarding?.forwarder.close();
        await source?.stop();
      }
      throw err;
    }
    for (const a of server.bound) log.info({ address: formatHostPort(a) }, 'listening (udp, tcp)');
    server.phases.enter('serving');
    return server;
  }

  /** Host and bound port of each listen address, in the order given. */
  get addresses(): readonly BoundAddress[] {
    return this.bound;
  }

  /** Where the server is in its life (src/lifecycle/phase.ts); ready only while `serving`. */
  get phase(): Phase {
    return this.phases.phase;
  }

  /**
   * This server's metrics (src/diagnostics/metrics.ts), counted from the first call on (from the
   * start with --http-listen): until someone asks, queries pay nothing for them.
   */
  metrics(): ServerMetrics {
    this.metricsNow ??= new ServerMetrics(
      this.diagnostics,
      {
        replyCache: () => (this.replyCache.enabled ? this.replyCache.stats() : null),
        forwarder: () => this.forwarder.stats(),
        catalog: () => this.store.current(),
        consulWatches: () => this.source.watchCount ?? null,
        tcpConnections: () => (this.bound.length === 0 ? null : this.listeners.reduce((n, l) => n + ('connections' in l ? l.connections : 0), 0)),
        consulUp: () => this.source.consulUp ?? null,
        zookeeper: () => this.source.zookeeper ?? null,
        sources: () => this.source.members?.() ?? null,
      },
      { defaultMetrics: this.options.defaultMetrics ?? true },
    );
    return this.metricsNow;
  }

  /** Ready: serving (listeners bound, not stopping) a catalog, the persisted one included (src/http/status.ts says why). */
  readiness(): Readiness {
    const stale = this.persistence?.stale;
    const now = this.options.now ?? Date.now;
    return readinessOf(this.phases.phase, this.store.current() !== null, this.source.description, stale ? { ageSeconds: Math.max(0, Math.round((now() - stale.savedAt) / 1000)) } : null);
  }

  /** What GET /status shows. */
  async status(): Promise<Status> {
    const metrics = (await this.metrics().json()) as MetricJson[];
    return buildStatus(metrics, { readiness: this.readiness(), source: this.source, failing: this.stateLog.failing(), workers: 1, startedAt: this.startedAt, stale: this.persistence?.stale ?? null }, (this.options.now ?? Date.now)());
  }

  /** What the HTTP endpoint shows of this server. */
  private observed(): Observed {
    this.metrics();
    return {
      metrics: () => this.metrics().text(),
      readiness: () => this.readiness(),
      healthy: () => this.phases.phase !== 'stopped',
      status: () => this.status(),
    };
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
    if (settings.logLevel !== this.settings.logLevel) this.log.level = settings.logLevel;
    if (settings.queryLog && !this.queryLogOff) this.queryLogOff = logQueries(this.diagnostics, this.log);
    if (!settings.queryLog && this.queryLogOff) {
      this.queryLogOff();
      this.queryLogOff = null;
    }
    this.settings = { ...settings };
  }

  /**
   * Stops gracefully (SIGTERM): lameduck (/ready already 503), then the listeners close and the
   * queries in flight are answered (see ShutdownOptions), then everything else is released. Calls
   * after the first return the first one's promise.
   */
  shutdown(options: ShutdownOptions = {}): Promise<void> {
    this.stopping ??= this.windDown(options.lameduckMs ?? this.settings.lameduckMs, options.drainMs ?? this.drainMs);
    return this.stopping;
  }

  /** Stops with no lameduck (tests, embedding); during a shutdown, waits for it. */
  close(): Promise<void> {
    return this.shutdown({ lameduckMs: 0 });
  }

  private async windDown(lameduckMs: number, drainMs: number, quiet = false): Promise<void> {
    const { phases, inFlight } = this;
    if (lameduckMs > 0) {
      phases.enter('lameduck');
      this.log.info({ lameduckMs }, 'lameduck: still answering DNS, no longer ready');
      await new Promise((resolve) => setTimeout(resolve, lameduckMs));
    }
    phases.enter('stopping');
    const closed = Promise.all(this.listeners.map((l) => l.close()));
    // Said once the listeners have stopped taking queries, so whoever reads it may rely on that.
    if (!quiet) this.log.info({ inFlight: inFlight.size, drainMs }, 'listeners closing; answering the queries in flight');
    const drained = setTimeout(() => {
      if (inFlight.size > 0) this.log.warn({ unanswered: inFlight.size, drainMs }, 'drain time over: SERVFAIL to the queries still in flight');
      inFlight.giveUp();
    }, drainMs);
    await closed;
    clearTimeout(drained);
    for (const u of this.subscriptions) u();
    this.queryLogOff?.();
    this.metricsNow?.close();
    this.stateLog.stop();
    this.replyCache.close();
    this.upstreamSource.close();
    this.forwarder.close();
    await this.source.stop();
    await this.persistence?.close();
    await this.http?.close();
    phases.enter('stopped');
    if (!quiet) this.log.info('stopped');
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
  // Each forwarded question may hold sockets: the bound must fit the open-file limit beside the
  // TCP connections (UDP and TCP listening sockets per address, and the HTTP endpoint's).
  const fitted = checkOpenFiles(
    { maxInflight: f.maxInflight, tcpConnections: config.listen.length * config.tcpMaxConnections, listening: config.listen.length * 2 + config.httpListen.length },
    log,
  );
  const forwarder = new Forwarder({
    upstreams: await upstreamSource.start(),
    policy: f.policy,
    timeoutMs: f.timeoutMs,
    maxInflight: fitted.maxInflight,
    maxPerClient: f.maxPerClient,
    exempt: addressMatcher(config.clientLimitsExempt),
    ...(fitted.maxSockets !== undefined && { maxSockets: fitted.maxSockets }),
    cacheSize: f.cacheSize,
    cacheMaxBytes: f.cacheMaxBytes,
    cacheMaxTtl: f.cacheMaxTtl,
    serveStaleMs: f.serveStaleMs,
    clientResponseTimeoutMs: f.clientResponseTimeoutMs,
    prefetch: f.prefetch,
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
async function bindPair(
  at: ListenAddress,
  handler: DnsHandler,
  config: Config,
  diagnostics: Diagnostics,
  log: Logger,
  exclusive: boolean,
  reusePort: boolean,
): Promise<{ udp: UdpListener; tcp: TcpListener }> {
  const tcpOptions = {
    idleTimeoutMs: config.tcpIdleTimeout * 1000,
    maxConnections: config.tcpMaxConnections,
    maxPerClient: config.tcpMaxPerClient,
    exempt: addressMatcher(config.clientLimitsExempt),
    exclusive,
    events: diagnostics.tcp,
    state: diagnostics.state,
  };
  for (let attempt = 0; ; attempt++) {
    const udp = await listenUdp(at, handler, log, exclusive, reusePort).catch((err: unknown) => {
      throw listenError(at, 'udp', err);
    });
    try {
      const tcp = await listenTcp({ host: at.host, port: udp.port }, handler, tcpOptions, log);
      return { udp, tcp };
    } catch (err) {
      await udp.close();
      if (at.port !== 0 || attempt >= 10 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw listenError(at, 'tcp', err);
    }
  }
}
