/**
 * The boundary with Consul's HTTP API: every call goes through the `consul` npm client, and Consul's
 * JSON is converted here, once, into the catalog's own records. Nothing past this file sees
 * Consul's field names.
 *
 * Each read returns the query metadata blocking queries need (X-Consul-Index, X-Consul-LastContact,
 * X-Consul-KnownLeader). Every in-flight request can be cancelled through its `signal`.
 */

import { EventEmitter } from 'node:events';
import { Agent as HttpsAgent } from 'node:https';
import Consul from 'consul';
import { parseIp } from '../../net/address.js';
import type { QueryResult } from '../queries.js';
import { isAddressOrHostname } from '../reach.js';
import type { Health, MeshLookup, NodeRecord, ServiceRecord } from '../types.js';

export interface ConsulConnection {
  /** Base address, e.g. http://127.0.0.1:8500 or https://consul.service:8501. */
  url: URL;
  /** ACL token; sent as X-Consul-Token, never logged. */
  token: string | null;
  tls: {
    /** PEM bundle of CAs to trust (CONSUL_CACERT). */
    ca: string | null;
    /** Client certificate and key, PEM (CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY). */
    cert: string | null;
    key: string | null;
    /** Server name to verify instead of the URL's host (CONSUL_TLS_SERVER_NAME). */
    serverName: string | null;
    /** false: accept any certificate (CONSUL_HTTP_SSL_VERIFY=false). */
    verify: boolean;
  };
}

export interface ReadOptions {
  dc?: string;
  /** Blocking query: the index of the last result; 0n or absent answers at once. */
  index?: bigint;
  /** Blocking wait, ms (Consul caps it at 10 minutes). */
  waitMs?: number;
  /** true: any server may answer (`?stale`); false: the leader answers (default mode). */
  stale?: boolean;
  /** Aborts the request. */
  signal?: AbortSignal;
}

export interface QueryMeta {
  /** X-Consul-Index as sent (0n when absent). */
  index: bigint;
  /** X-Consul-LastContact, ms since the answering server last heard from the leader. */
  lastContactMs: number;
  /** X-Consul-Default-Acl-Policy: 'deny' means a request without a token sees only what anonymous may. */
  defaultAclPolicy: string | null;
}

export interface Result<T> {
  data: T;
  meta: QueryMeta;
}

/** A failed call: `status` is the HTTP status (0 for network errors and timeouts). */
export class ConsulApiError extends Error {
  readonly code = 'SVCDNS_CONSUL_API';
  constructor(
    message: string,
    readonly status: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ConsulApiError';
  }
}

/** The instances of one service with the health of each (from /v1/health/service/:name). */
export interface ServiceHealth {
  nodes: NodeRecord[];
  instances: ServiceRecord[];
}

/** A service's mesh endpoints with their health (/v1/health/connect/:name, /v1/health/ingress/:name). */
export interface MeshHealth extends ServiceHealth {
  /** `connect`: the service's virtual IP, from its endpoints' `consul-virtual` tagged address. */
  virtualIp?: string;
}

/** What the Consul source needs from Consul. Tests may substitute their own. */
export interface ConsulApi {
  datacenters(signal?: AbortSignal): Promise<string[]>;
  /**
   * The Raft leader's address as the agent knows it (/v1/status/leader), "" when there is none:
   * the liveness probe. Bounded by `timeoutMs`.
   */
  leader(options: { signal?: AbortSignal; timeoutMs: number }): Promise<string>;
  /** Service names of a datacenter (/v1/catalog/services). */
  services(options: ReadOptions): Promise<Result<string[]>>;
  /** Nodes of a datacenter (/v1/catalog/nodes). */
  nodes(options: ReadOptions): Promise<Result<NodeRecord[]>>;
  /** Instances of a service with their health (/v1/health/service/:name). */
  health(service: string, options: ReadOptions): Promise<Result<ServiceHealth>>;
  /** The service's Connect endpoints or ingress gateways, with their health (/v1/health/connect|ingress/:name). */
  mesh(lookup: MeshLookup, service: string, options: ReadOptions): Promise<Result<MeshHealth>>;
  /**
   * Executes a prepared query by name or ID (/v1/query/:query/execute) in `options.dc`; null when
   * Consul has no such query or no path to that datacenter (Consul's DNS says NXDOMAIN to both).
   */
  executeQuery(query: string, options: ExecuteOptions): Promise<QueryResult | null>;
  /**
   * What of a prepared query's definition decides how its results may be shared
   * (/v1/query/:query/explain): its `Near` ('' when none). Null as for `executeQuery`.
   */
  explainQuery(query: string, options: Omit<ExecuteOptions, 'source'>): Promise<{ near: string } | null>;
}

export interface ExecuteOptions {
  dc: string;
  /**
   * The DNS client's address, sent as X-Forwarded-For: Consul's HTTP API takes the query's source
   * address from it (sourceAddrFromRequest in agent/http.go), which `Near: _ip` sorts by, as its
   * DNS interface passes the client's address (preparedQueryLookup in agent/dns.go).
   */
  source: string;
  stale?: boolean;
  signal?: AbortSignal;
  /** Bound on the request, ms. */
  timeoutMs: number;
}

type Response = { statusCode: number; headers: Record<string, string | string[] | undefined> };

/** A request context the client understands: returns [response, body] and cancels on 'cancel'. */
class RequestContext extends EventEmitter {
  readonly includeResponse = true;
  /** Sent as X-Forwarded-For (the `onCreate` extension below reads it). */
  forwardedFor: string | null = null;
}

function header(res: Response, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function metaOf(res: Response): QueryMeta {
  const raw = header(res, 'x-consul-index');
  let index = 0n;
  try {
    index = raw ? BigInt(raw) : 0n;
  } catch {
    index = 0n;
  }
  return {
    index,
    lastContactMs: Number(header(res, 'x-consul-lastcontact') ?? 0) || 0,
    defaultAclPolicy: header(res, 'x-consul-default-acl-policy') ?? null,
  };
}

/** Consul's `wait` syntax: whole milliseconds. */
function waitParam(ms: number): string {
  return `${Math.max(1, Math.round(ms))}ms`;
}

/** Creates the real API over the `consul` npm client. */
export function createConsulApi(connection: ConsulConnection): ConsulApi {
  const { url, tls } = connection;
  const secure = url.protocol === 'https:';
  const agent = secure
    ? new HttpsAgent({
        keepAlive: true,
        ca: tls.ca ?? undefined,
        cert: tls.cert ?? undefined,
        key: tls.key ?? undefined,
        servername: tls.serverName ?? undefined,
        rejectUnauthorized: tls.verify,
      })
    : undefined;
  const client = new Consul({
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port || (secure ? 443 : 80)),
    secure,
    ...(agent ? { agent } : {}),
    defaults: connection.token ? { token: connection.token } : {},
  });
  // The client's options carry no per-request headers; its HTTP layer (papi) runs `onCreate`
  // extensions before building each request, so a request context may add X-Forwarded-For.
  (client as unknown as PapiClient)._ext('onCreate', (request, next) => {
    const ip = request.ctx instanceof RequestContext ? request.ctx.forwardedFor : null;
    if (ip) request.opts.headers = { ...request.opts.headers, 'x-forwarded-for': ip };
    next();
  });

  /** One call: query options the client understands, the response's metadata, errors mapped. */
  async function call<T>(
    fn: (opts: Record<string, unknown>) => Promise<unknown>,
    options: ReadOptions,
    extra: { forwardedFor?: string; timeoutMs?: number } = {},
  ): Promise<Result<T>> {
    const ctx = new RequestContext();
    ctx.forwardedFor = extra.forwardedFor ?? null;
    const abort = (): void => {
      ctx.emit('cancel');
    };
    if (options.signal?.aborted) throw new ConsulApiError('request cancelled', 0);
    options.signal?.addEventListener('abort', abort, { once: true });
    const opts: Record<string, unknown> = { ctx };
    if (options.dc) opts.dc = options.dc;
    if (options.stale) opts.stale = true;
    const waitMs = options.waitMs ?? 300_000;
    // Consul answers a blocking query within wait + wait/16 (its jitter); past that and a margin
    // the server is hung. A non-blocking read gets the same bound.
    opts.timeout = extra.timeoutMs ?? waitMs + waitMs / 16 + Math.min(5_000, waitMs / 2);
    if (options.index !== undefined && options.index > 0n) {
      opts.index = options.index.toString();
      opts.wait = waitParam(waitMs);
    }
    try {
      const [res, data] = (await fn(opts)) as [Response, T];
      return { data, meta: metaOf(res) };
    } catch (err) {
      const e = err as { message?: string; statusCode?: number; response?: Response; isAbort?: boolean };
      const status = e.response?.statusCode ?? 0;
      throw new ConsulApiError(e.message ?? String(err), status, { cause: err });
    } finally {
      options.signal?.removeEventListener('abort', abort);
    }
  }

  return {
    async datacenters(signal) {
      const result = await call<string[]>((o) => client.catalog.datacenters(o), { signal });
      return result.data;
    },
    async leader({ signal, timeoutMs }) {
      const result = await call<unknown>((o) => client.status.leader(o), { signal }, { timeoutMs });
      return typeof result.data === 'string' ? result.data : '';
    },
    async services(options) {
      const result = await call<Record<string, string[]>>((o) => client.catalog.services(o as never), options);
      return { data: Object.keys(result.data ?? {}), meta: result.meta };
    },
    async nodes(options) {
      const result = await call<ConsulNode[]>((o) => client.catalog.nodes(o as never), options);
      const dc = options.dc;
      return { data: (result.data ?? []).flatMap((n) => toNode(n, dc)), meta: result.meta };
    },
    async health(service, options) {
      const result = await call<ConsulHealthEntry[]>((o) => client.health.service({ ...o, service } as never), options);
      return { data: toServiceHealth(result.data ?? [], options.dc), meta: result.meta };
    },
    async mesh(lookup, service, options) {
      const result = await call<ConsulHealthEntry[]>((o) => meshHealthRequest(client, lookup, service, o), options);
      const entries = result.data ?? [];
      const virtualIp = lookup === 'connect' ? virtualIpOf(entries) : undefined;
      return { data: { ...toServiceHealth(entries, options.dc), ...(virtualIp ? { virtualIp } : {}) }, meta: result.meta };
    },
    async executeQuery(query, options) {
      try {
        const result = await call<ConsulQueryExecution>(
          (o) => client.query.execute({ ...o, query } as never),
          { dc: options.dc, stale: options.stale, signal: options.signal },
          { forwardedFor: options.source, timeoutMs: options.timeoutMs },
        );
        return toQueryResult(result.data, options.dc);
      } catch (err) {
        if (isQueryNotFound(err)) return null;
        throw err;
      }
    },
    async explainQuery(query, options) {
      try {
        const result = await call<{ Query?: { Service?: { Near?: string } } }>(
          // The client reads this endpoint's body as a list (its `bodyItem`) and so drops Consul's
          // object ({"Query": ...}); the response it returns still holds the decoded body.
          async (o) => {
            const [res] = (await client.query.explain({ ...o, query } as never)) as unknown as [Response & { body?: unknown }];
            return [res, res.body];
          },
          { dc: options.dc, stale: options.stale, signal: options.signal },
          { timeoutMs: options.timeoutMs },
        );
        return { near: result.data?.Query?.Service?.Near ?? '' };
      } catch (err) {
        if (isQueryNotFound(err)) return null;
        throw err;
      }
    },
  };
}

/**
 * 404 "Query not found" (agent/prepared_query_endpoint.go); "No path to datacenter" is a 500 whose
 * text Consul's DNS also maps to NXDOMAIN (rCodeFromError: IsErrNoDCPath).
 */
function isQueryNotFound(err: unknown): boolean {
  return err instanceof ConsulApiError && (err.status === 404 || (err.status === 500 && /no path to datacenter/i.test(err.message)));
}

/** The parts of the `consul` client (a papi Client) that a request of our own needs. */
interface PapiClient {
  _defaults?: { token?: string };
  _get(req: Record<string, unknown>, next: (request: PapiRequest, done: (stop: boolean, err?: unknown, value?: unknown) => void) => void): Promise<unknown>;
  _ext(event: 'onCreate', fn: (request: { ctx?: unknown; opts: { headers?: Record<string, string> } }, next: () => void) => void): void;
}

interface PapiRequest {
  err?: Error & { response?: unknown };
  res: { body: unknown };
  ctx?: { includeResponse?: boolean };
}

/**
 * GET /v1/health/connect/:service or /v1/health/ingress/:service, which the `consul` client has no
 * call for: the request its `health.service` makes (the same query options, token and context),
 * on the mesh path, answering [response, body] as the client's calls do for our RequestContext.
 */
function meshHealthRequest(client: Consul, lookup: MeshLookup, service: string, opts: Record<string, unknown>): Promise<unknown> {
  const papi = client as unknown as PapiClient;
  const token = papi._defaults?.token;
  const query: Record<string, unknown> = {};
  if (opts.dc) query.dc = opts.dc;
  if (opts.stale) query.stale = '1';
  if (opts.index !== undefined) query.index = opts.index;
  if (opts.wait !== undefined) query.wait = opts.wait;
  const req: Record<string, unknown> = {
    name: `health.${lookup}`,
    path: `/health/${lookup}/{service}`,
    params: { service },
    query,
    headers: token ? { 'x-consul-token': token } : {},
    ctx: opts.ctx,
    timeout: opts.timeout,
  };
  return papi._get(req, (request, next) => {
    if (request.err) {
      if (request.ctx?.includeResponse) request.err.response = request.res;
      next(false, request.err);
      return;
    }
    next(false, undefined, request.ctx?.includeResponse ? [request.res, request.res.body] : request.res.body);
  });
}

/**
 * Consul gives a service in the mesh a virtual IP and shows it on each of its Connect endpoints as
 * the `consul-virtual` tagged address (agent/consul/state/catalog.go, ensureServiceTxn).
 */
function virtualIpOf(entries: readonly ConsulHealthEntry[]): string | undefined {
  for (const e of entries) {
    const address = e.Service?.TaggedAddresses?.['consul-virtual']?.Address;
    if (address && parseIp(address)) return address;
  }
  return undefined;
}

// Consul's JSON, as documented for /v1/catalog/nodes and /v1/health/service/:service.

interface ConsulNode {
  Node: string;
  Address: string;
  Datacenter?: string;
  Meta?: Record<string, string> | null;
  TaggedAddresses?: Record<string, string> | null;
}

interface ConsulService {
  ID: string;
  Service: string;
  Tags?: string[] | null;
  Address?: string;
  Port?: number;
  Weights?: { Passing?: number; Warning?: number } | null;
  TaggedAddresses?: Record<string, { Address?: string; Port?: number } | null> | null;
}

interface ConsulCheck {
  Status: string;
  ServiceID?: string;
}

interface ConsulHealthEntry {
  Node: ConsulNode;
  Service: ConsulService;
  Checks?: ConsulCheck[] | null;
}

/**
 * A node as svcdns keeps it. Its address may be an IP address or a hostname (external services,
 * consul-esm): Consul's DNS answers those with a CNAME, and so does svcdns. Anything that is
 * neither (Consul does not validate it) is left out, so it cannot block the catalog; so are tagged
 * addresses that are neither, one by one.
 */
function toNode(n: ConsulNode, dc: string | undefined): NodeRecord[] {
  if (!n?.Node || !n.Address || !isAddressOrHostname(n.Address)) return [];
  const tagged = usable(Object.entries(n.TaggedAddresses ?? {}), (v) => v);
  return [
    {
      datacenter: n.Datacenter ?? dc ?? '',
      name: n.Node,
      address: n.Address,
      meta: { ...(n.Meta ?? {}) },
      ...(tagged.length > 0 && { taggedAddresses: Object.fromEntries(tagged) }),
    },
  ];
}

/** Tagged addresses that svcdns can serve: an IP or a hostname (Consul stores any string). */
function usable<V>(entries: [string, V][], address: (v: V) => string | undefined): [string, V][] {
  return entries.filter(([, v]) => {
    const a = address(v);
    return typeof a === 'string' && isAddressOrHostname(a);
  });
}

/**
 * The worst check decides an instance's health, node-level checks (serfHealth, maintenance)
 * included, as Consul's DNS does: any critical check makes the instance critical.
 */
export function aggregateHealth(checks: readonly ConsulCheck[]): Health {
  let health: Health = 'passing';
  for (const c of checks) {
    if (c.Status === 'warning') health = 'warning';
    else if (c.Status !== 'passing') return 'critical'; // critical, or a status we do not know
  }
  return health;
}

// /v1/query/:query/execute, as website/content/api-docs/query.mdx documents it.
interface ConsulQueryExecution {
  Service?: string;
  Nodes?: ConsulHealthEntry[] | null;
  DNS?: { TTL?: string } | null;
  Datacenter?: string;
}

function toQueryResult(body: ConsulQueryExecution | null | undefined, dc: string): QueryResult {
  const datacenter = body?.Datacenter || dc;
  const health = toServiceHealth(body?.Nodes ?? [], datacenter);
  return { service: body?.Service ?? '', datacenter, ttl: queryTtl(body?.DNS?.TTL), sorted: false, nodes: health.nodes, instances: health.instances };
}

/**
 * The query's DNS TTL in whole seconds, null when it has none. As Consul's DNS: a TTL that does not
 * parse is 0 (it logs and goes on with the zero duration).
 */
export function queryTtl(text: string | undefined): number | null {
  if (text === undefined || text === '') return null;
  const ms = goDurationMs(text);
  return ms === null || ms < 0 ? 0 : Math.floor(ms / 1000);
}

/** Go's time.ParseDuration, to milliseconds; null when it does not parse. */
export function goDurationMs(text: string): number | null {
  let s = text;
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s.startsWith('-')) sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') return null;
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  while (s !== '') {
    const m = /^(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)/u.exec(s);
    if (!m || (m[1] === '' && (m[2] ?? '') === '')) return null;
    total += Number(`${m[1] || '0'}.${m[2] || '0'}`) * units[m[3]!]!;
    s = s.slice(m[0].length);
  }
  return sign * total;
}

function toServiceHealth(entries: readonly ConsulHealthEntry[], dc: string | undefined): ServiceHealth {
  const nodes = new Map<string, NodeRecord>();
  const instances: ServiceRecord[] = [];
  for (const e of entries) {
    const [node] = toNode(e.Node, dc);
    if (!node || !e.Service?.Service) continue;
    if (e.Service.Address && !isAddressOrHostname(e.Service.Address)) continue;
    nodes.set(node.name, node);
    const tagged = usable(Object.entries(e.Service.TaggedAddresses ?? {}), (v) => v?.Address);
    instances.push({
      ...(tagged.length > 0 && {
        taggedAddresses: Object.fromEntries(tagged.map(([k, v]) => [k, { address: v!.Address!, port: v!.Port ?? 0 }])),
      }),
      datacenter: node.datacenter,
      node: node.name,
      id: e.Service.ID || e.Service.Service,
      name: e.Service.Service,
      address: e.Service.Address ?? '',
      port: e.Service.Port ?? 0,
      tags: [...(e.Service.Tags ?? [])],
      weights: { passing: e.Service.Weights?.Passing ?? 1, warning: e.Service.Weights?.Warning ?? 1 },
      health: aggregateHealth(e.Checks ?? []),
    });
  }
  return { nodes: [...nodes.values()], instances };
}
