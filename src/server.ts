/**
 * The composition root: builds the catalog store and source, the request pipeline (its stages, in
 * order, one line each), the diagnostics subscribers and the listeners from a Config, and tears
 * them down again. Tests start this in-process on port 0.
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
import { UpstreamSource } from './forward/upstream-source.js';
import { formatHostPort, parseIp, type ListenAddress } from './net/address.js';
import { listenTcp, type TcpListener } from './listen/tcp.js';
import { listenUdp, type UdpListener } from './listen/udp.js';
import { AnswerStage } from './pipeline/answer.js';
import { createPipeline } from './pipeline/chain.js';
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
  ) {}

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
    if (config.queryLog) subscriptions.push(logQueries(diagnostics, log));
    if (source.touch) subscriptions.push(trackUsage(diagnostics, { touch: source.touch.bind(source) }));
    const unsubscribe = (): void => subscriptions.forEach((u) => u());
    const handler = createPipeline({
      stages,
      context: { store, maxUdpSize: config.maxUdpSize, recursive: recursion.recursive },
      diagnostics,
      log,
    });

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
      replyCache.close();
      upstreamSource.close();
      forwarder.close();
      await source.stop();
      throw err;
    }
    for (const a of addresses) log.info({ address: formatHostPort(a) }, 'listening (udp, tcp)');
    return new SvcdnsServer(store, source, forwarder, replyCache, upstreamSource, handler, diagnostics, addresses, listeners, unsubscribe, log);
  }

  /** Re-reads what comes from files now (SIGHUP): the catalog, and resolv.conf when upstreams come from it. */
  async reload(): Promise<void> {
    await Promise.all([this.source.reload(), this.upstreamSource.reload()]);
  }

  async close(): Promise<void> {
    await Promise.all(this.listeners.map((l) => l.close()));
    this.unsubscribe();
    this.replyCache.close();
    this.upstreamSource.close();
    this.forwarder.close();
    await this.source.stop();
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

