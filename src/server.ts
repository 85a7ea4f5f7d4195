/**
 * The composition root: builds the catalog store and source, the answerer, the resolver and the
 * listeners from a Config, and tears them down again. Tests start this in-process on port 0.
 */

import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { Answerer } from './answer/answerer.js';
import type { CatalogSource } from './catalog/source.js';
import { createSource } from './catalog/sources.js';
import { CatalogStore } from './catalog/store.js';
import type { Config } from './config.js';
import { recursionAcl } from './forward/allow.js';
import { Forwarder } from './forward/forwarder.js';
import { UpstreamSource } from './forward/upstream-source.js';
import { formatHostPort, parseIp, type ListenAddress } from './net/address.js';
import { listenTcp, type TcpListener } from './listen/tcp.js';
import { listenUdp, type UdpListener } from './listen/udp.js';
import { ReplyCache } from './pipeline/reply-cache.js';
import { createResolver, type DnsHandler } from './pipeline/resolver.js';

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
    readonly addresses: readonly BoundAddress[],
    private readonly listeners: readonly (UdpListener | TcpListener)[],
    private readonly log: Logger,
  ) {}

  /** Loads the catalog, then binds every listen address (UDP and TCP on the same port). */
  static async start(options: ServerOptions): Promise<SvcdnsServer> {
    const { config, log } = options;
    const { forwarder, upstreamSource } = await createForwarder(options);
    const store = new CatalogStore({ now: options.now, onlyPassing: config.onlyPassing });
    const source = options.source ?? (await createSource(config, log, { reloadDebounceMs: options.reloadDebounceMs }));
    await source.start(store);

    const answerer = new Answerer({
      domain: config.domain,
      altDomain: config.altDomain,
      datacenter: config.datacenter,
      serviceTtl: config.serviceTtl,
      nodeTtl: config.nodeTtl,
      soa: { refresh: 3600, retry: 600, expire: 86400, minimum: 0 },
      onServiceUsed: source.touch?.bind(source),
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
      ...(source.touch && { onServiceUsed: source.touch.bind(source) }),
    });
    const handler = createResolver({
      forwarder,
      replyCache,
      recursionAllowed: recursionAcl(config.forward.allowRecursion),
      answerer,
      store,
      source,
      log,
      maxUdpSize: config.maxUdpSize,
      queryLog: config.queryLog,
      fetchTimeoutMs: config.consul?.fetchTimeoutMs ?? 2000,
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
      replyCache.close();
      upstreamSource.close();
      forwarder.close();
      await source.stop();
      throw err;
    }
    for (const a of addresses) log.info({ address: formatHostPort(a) }, 'listening (udp, tcp)');
    return new SvcdnsServer(store, source, forwarder, replyCache, upstreamSource, handler, addresses, listeners, log);
  }

  /** Re-reads what comes from files now (SIGHUP): the catalog, and resolv.conf when upstreams come from it. */
  async reload(): Promise<void> {
    await Promise.all([this.source.reload(), this.upstreamSource.reload()]);
  }

  async close(): Promise<void> {
    await Promise.all(this.listeners.map((l) => l.close()));
    this.replyCache.close();
    this.upstreamSource.close();
    this.forwarder.close();
    await this.source.stop();
    this.log.info('stopped');
  }
}

/** The forwarder for names outside the Consul domain, and the source of its upstreams. */
async function createForwarder(options: ServerOptions): Promise<{ forwarder: Forwarder; upstreamSource: UpstreamSource }> {
  const { config, log, now, upstreamProbeIntervalMs, reloadDebounceMs } = options;
  const f = config.forward;
  const upstreamSource = new UpstreamSource({
    given: f.upstreams,
    resolvConf: f.resolvConf,
    listen: config.listen,
    log,
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

