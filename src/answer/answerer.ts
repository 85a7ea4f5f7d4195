/**
 * Turns a question about our domain (or a reverse name of a catalog address) plus a catalog
 * snapshot into a Reply. No sockets, no encoding: records in, records out.
 *
 * Rcodes follow Consul's DNS interface:
 * - no snapshot yet (first sync not done): SERVFAIL, never NXDOMAIN for a name that may exist;
 * - unknown name, unknown datacenter, or a service with no servable instance: NXDOMAIN + SOA;
 * - a name that exists but has no record of the asked type (AAAA of an IPv4-only service):
 *   NOERROR with an empty answer and the SOA in authority (NODATA, RFC 2308);
 * - every reply about our domain is authoritative (AA).
 * ANY is answered minimally (RFC 8482): the A and AAAA records of the name, never everything.
 *
 * TTLs follow Consul: a service's records (A/AAAA/SRV, and an SRV answer's additional A/AAAA and
 * node meta TXT) carry the TTL of the service asked (`serviceTtl`); node, `.addr.` and NS records
 * the node TTL; the SOA record its own minimum, so that a negative answer is cached no longer than
 * the SOA says (RFC 2308).
 *
 * Mesh names list other instances the same way as `.service` (health filter, rotation, SRV
 * targets, the service TTL): `NAME.connect` the service's sidecar proxies and Connect-native
 * instances, `NAME.ingress` the ingress gateways exposing it; none is NXDOMAIN, as in Consul.
 * `NAME.virtual` is the service's virtual IP (A, the node TTL, local datacenter only), NXDOMAIN
 * when it has none.
 */

import { RRType, Rcode } from '../dns/constants.js';
import type { Reply, RR } from '../dns/codec.js';
import type { Query } from '../dns/wire.js';
import type { IpAddress } from '../net/address.js';
import {
  domainLabels,
  hexAddress,
  isReverseName,
  matchDomain,
  parseConsulName,
  parseReverseName,
  type ConsulName,
} from './naming.js';
import type { PreparedQueries } from '../catalog/queries.js';
import type { Endpoint, Reach } from '../catalog/reach.js';
import type { Instance, MeshView, NodeView, ServiceGeneration, Snapshot } from '../catalog/snapshot.js';
import type { MeshLookup } from '../catalog/types.js';
import { evaluateQuery, resultInstances, type QueryInstances } from './query.js';
import { Rotator } from './rotation.js';
import { metaTxtStrings } from './rfc1464.js';
import type { ServiceTtls } from './ttl.js';
import type { SoaTimers } from './config.js';

export interface AnswererOptions {
  /** The primary domain, e.g. `consul`. */
  domain: string;
  /** A second domain answered identically (Consul's alt_domain), or null. */
  altDomain: string | null;
  /** The local datacenter: names without a datacenter label mean this one. */
  datacenter: string;
  /** TTL of each service's records (A/AAAA/SRV of `.service.` names), seconds. */
  serviceTtl: ServiceTtls;
  /** TTL of node and addr records, seconds. */
  nodeTtl: number;
  /**
   * Answer questions about other datacenters with their `wan*` tagged addresses (and a service's
   * `wan` port), as Consul's translate_wan_addrs.
   */
  translateWanAddrs?: boolean;
  /** SOA timers; `minimum` is also the negative-caching TTL (RFC 2308) and the SOA record's TTL. */
  soa: SoaTimers;
  /** At most this many address records in an A/AAAA/ANY answer about a service (Consul's a_record_limit); 0 or absent: all. */
  aRecordLimit?: number;
  /**
   * Node meta as TXT in the additional section of SRV answers (for each target's node) and node
   * A/AAAA answers (Consul's enable_additional_node_meta_txt); default true.
   */
  nodeMetaTxt?: boolean;
  /**
   * Addresses svcdns itself answers on (specific listen addresses, not wildcards): the A/AAAA of
   * `ns.DOMAIN`, the name server named when the catalog has no `consul` service.
   */
  nameserverAddresses: readonly IpAddress[];
  /**
   * Where `.query.` names the snapshot defines none for are executed: the source's `queries`
   * (Consul; the primary for a --workers process). Absent or null: such names are NXDOMAIN.
   */
  queries?: PreparedQueries | null;
}

/** A reply, and what it was made from (for the reply cache and usage tracking; the encoder ignores it). */
export interface Answered extends Reply {
  /** The service the answer read, whatever the rcode (keeps an on-demand watch alive). */
  service?: ServiceGeneration;
  /**
   * Set exactly when the answer lists `service`'s instances and nothing else (no SOA), so it stays
   * right while the service keeps its generation: which of the record set's `count` rotations this
   * is (turn 0 is the set in catalog order). Without it, an answer is right for its snapshot only.
   */
  rotation?: { turn: number; count: number };
  /**
   * Hostnames (instances and nodes whose address is one) whose records the answer still needs,
   * resolved through the upstreams by the answer stage and added to `section`: after the CNAME in
   * the answer section for A/AAAA, as additional data for SRV targets. Names in our own domain are
   * never here: the answerer resolves them itself, one hop.
   */
  chase?: readonly Chase[];
  /**
   * Made from a prepared query: never kept by the reply cache (a Consul execution is not in the
   * snapshot, and may differ by client with `Near: _ip`).
   */
  preparedQuery?: boolean;
  /**
   * Holds records of another name of ours (a hostname target in our domain, answered one hop):
   * right only while that name is unchanged too, so the reply cache does not keep it.
   */
  composite?: boolean;
}

export interface Chase {
  /** The hostname, as the catalog spells it (no trailing dot). */
  readonly name: string;
  /** The record types wanted, A and/or AAAA. */
  readonly types: readonly number[];
  readonly section: 'answer' | 'additional';
}

/**
 * The answer depends on data the snapshot does not hold yet: a service (or, with `service` null,
 * the node list) of `datacenter` must be fetched first. The resolver asks the source for it and
 * answers again.
 */
export interface Pending {
  /** `lookup`: a mesh view of the service (`.connect`, `.ingress`) rather than its instances. */
  pending: { datacenter: string; service: string | null; lookup?: MeshLookup };
}

export function isPending(result: Answered | Pending | QueryPending | null): result is Pending {
  return result !== null && 'pending' in result;
}

/** A prepared query must be executed (by the source's `queries`) before the question is answered. */
export interface QueryPending {
  queryPending: { datacenter: string; name: string };
}

export function isQueryPending(result: Answered | Pending | QueryPending | null): result is QueryPending {
  return result !== null && 'queryPending' in result;
}

const EMPTY: readonly RR[] = Object.freeze([]);
const NO_INSTANCES: QueryInstances = Object.freeze({ service: '', instances: Object.freeze([]), ttl: null, sorted: false });
/** Consul lists at most three servers in NS answers. */
const MAX_NAMESERVERS = 3;

export class Answerer {
  private readonly domains: string[][];
  private readonly domainNames: string[];
  private readonly addressRotation = new Rotator();
  private readonly srvRotation = new Rotator();

  constructor(private readonly options: AnswererOptions) {
    this.domainNames = [options.domain, ...(options.altDomain ? [options.altDomain] : [])].map((d) =>
      domainLabels(d).join('.'),
    );
    this.domains = this.domainNames.map(domainLabels);
  }

  /**
   * The reply for a question about our domain or a reverse name we know, or null when the name is
   * not ours to answer (the next resolver link decides).
   */
  answer(query: Query, snapshot: Snapshot | null, turn?: number, client = ''): Answered | Pending | QueryPending | null {
    return this.answerAt(query, snapshot, turn, 0, client);
  }

  /**
   * `hop`: 1 when answering a CNAME target of ours, whose own CNAMEs are then not followed.
   * `client`: the asking client's address (prepared queries pass it to Consul for `Near: _ip`).
   */
  private answerAt(query: Query, snapshot: Snapshot | null, turn: number | undefined, hop: number, client = ''): Answered | Pending | QueryPending | null {
    const match = matchDomain(query.labels, this.domains);
    if (!match) {
      return query.plain && isReverseName(query.labels) && snapshot ? this.reverse(query, snapshot) : null;
    }
    if (!snapshot) return reply(Rcode.SERVFAIL, EMPTY, EMPTY, EMPTY, false);
    const domain = this.domainNames[match.index]!;
    const ctx: Ctx = { query, snapshot, domain, hop };
    // A label with a '.' byte in it (`we\.b.service.consul`) names nothing in the catalog, whose
    // names are all plain labels; it exists in our zone's namespace all the same.
    if (!query.plain) return this.nxdomain(ctx);
    if (match.rest.length === 1 && match.rest[0] === 'ns' && !this.hasConsulService(snapshot)) return this.ownName(ctx);
    const name = parseConsulName(match.rest);
    switch (name.kind) {
      case 'apex':
        return this.apex(ctx);
      case 'service':
        return this.service(ctx, name, turn);
      case 'srv':
        return this.bareSrv(ctx, name, turn);
      case 'node':
        return this.node(ctx, name);
      case 'addr':
        return this.addr(ctx, name);
      case 'query':
        return this.preparedQuery(ctx, name, turn, client);
      case 'mesh':
        return this.mesh(ctx, name, turn);
      case 'virtual':
        return this.virtual(ctx, name);
      case 'structural':
        // An empty non-terminal such as `service.consul`: it exists because names exist below it.
        // NXDOMAIN here would tell RFC 8020 resolvers that nothing below exists (Consul says NXDOMAIN).
        return name.dc !== null && !snapshot.hasDatacenter(name.dc) ? this.nxdomain(ctx) : this.nodata(ctx);
      case 'invalid':
        return this.nxdomain(ctx);
    }
  }

  private apex(ctx: Ctx): Reply {
    const { query } = ctx;
    if (query.type === RRType.SOA || query.type === RRType.ANY) {
      return reply(Rcode.NOERROR, [this.soa(ctx)], EMPTY, EMPTY);
    }
    if (query.type === RRType.NS) {
      const servers = this.nameservers(ctx);
      const ns = servers.map(
        (s): RR => ({ name: query.name, type: RRType.NS, ttl: this.options.nodeTtl, target: s.target }),
      );
      const glue = servers.flatMap((s) => s.addresses.map((a) => addressRecord(s.target, a, this.options.nodeTtl)));
      return reply(Rcode.NOERROR, ns, EMPTY, glue);
    }
    return this.nodata(ctx);
  }

  /**
   * Name servers of the domain, as Consul gives them: the nodes of the local `consul` service,
   * as `NODE.node.DC.DOMAIN` with their addresses as glue; when the catalog has no consul service,
   * svcdns itself as `ns.DOMAIN` (the SOA's MNAME) with the addresses it listens on.
   */
  private nameservers(ctx: Ctx): { target: string; addresses: readonly IpAddress[] }[] {
    const consul = ctx.snapshot.service(this.options.datacenter, 'consul');
    const seen = new Set<string>();
    const out: { target: string; addresses: readonly IpAddress[] }[] = [];
    for (const i of consul?.instances ?? []) {
      if (out.length === MAX_NAMESERVERS) break;
      if (seen.has(i.node.name)) continue;
      seen.add(i.node.name);
      const addresses = [i.node.reach.a?.ip, i.node.reach.aaaa?.ip].filter((a): a is IpAddress => a != null);
      out.push({ target: `${i.node.name}.node.${i.node.datacenter}.${ctx.domain}`, addresses });
    }
    if (out.length === 0) out.push({ target: `ns.${ctx.domain}`, addresses: this.options.nameserverAddresses });
    return out;
  }

  private hasConsulService(snapshot: Snapshot): boolean {
    return (snapshot.service(this.options.datacenter, 'consul')?.instances.length ?? 0) > 0;
  }

  /** `ns.DOMAIN` when svcdns names itself as the domain's server: the addresses it listens on. */
  private ownName(ctx: Ctx): Reply {
    const families = familiesFor(ctx.query.type);
    const answers = this.options.nameserverAddresses
      .filter((a) => families & familyBit(a))
      .map((a) => addressRecord(ctx.query.name, a, this.options.nodeTtl));
    return answers.length > 0 ? reply(Rcode.NOERROR, answers, EMPTY, EMPTY) : this.nodata(ctx);
  }

  /**
   * The instances a service name lists, or the reply when it lists none (NXDOMAIN, or NODATA for a
   * dotted tag's parent), or pending when the service must be fetched first.
   */
  private lookupService(ctx: Ctx, name: ServiceName): { list: readonly Instance[]; service: ServiceGeneration | undefined } | Answered | Pending {
    const dc = name.dc ?? this.options.datacenter;
    if (name.dc !== null && !ctx.snapshot.hasDatacenter(name.dc)) return this.nxdomain(ctx);
    const view = ctx.snapshot.service(dc, name.service);
    if (!view && ctx.snapshot.servicePending(dc, name.service)) return { pending: { datacenter: dc, service: name.service } };
    const service: ServiceGeneration | undefined = view && { datacenter: view.datacenter, service: view.name, generation: view.generation };
    const list = view ? (name.tag === null ? view.instances : (view.byTag.get(name.tag) ?? [])) : [];
    if (list.length === 0) {
      const empty = name.tag !== null && view?.tagParents.has(name.tag) ? this.nodata(ctx) : this.nxdomain(ctx);
      return service ? { ...empty, service } : empty;
    }
    return { list, service };
  }

  /**
   * `_NAME._TAG[.DC].DOMAIN`: SRV answered as for the `.service` form. Other types get NODATA where
   * the SRV exists (Consul says NXDOMAIN, which would deny the SRV too, RFC 8020), NXDOMAIN where not.
   */
  private bareSrv(ctx: Ctx, name: Extract<ConsulName, { kind: 'srv' }>, turn: number | undefined): Answered | Pending {
    if (ctx.query.type === RRType.SRV) return this.service(ctx, name, turn);
    const found = this.lookupService(ctx, name);
    if (!('list' in found)) return found;
    return { ...this.nodata(ctx), service: found.service };
  }

  /** `turn`: which rotation of the instances to answer with (the reply cache asks); default, the next. */
  private service(ctx: Ctx, name: ServiceName, turn: number | undefined): Answered | Pending {
    const found = this.lookupService(ctx, name);
    if (!('list' in found)) return found;
    return this.listInstances(ctx, found.list, found.service, turn, this.options.serviceTtl.of(name.service), name.dc ?? this.options.datacenter);
  }

  /** `NAME.connect` / `NAME.ingress`: the service's mesh endpoints, answered as `.service` answers instances. */
  private mesh(ctx: Ctx, name: Extract<ConsulName, { kind: 'mesh' }>, turn: number | undefined): Answered | Pending {
    const dc = name.dc ?? this.options.datacenter;
    if (name.dc !== null && !ctx.snapshot.hasDatacenter(name.dc)) return this.nxdomain(ctx);
    const view = ctx.snapshot.meshView(name.lookup, dc, name.service);
    if (!view && ctx.snapshot.meshPending(name.lookup, dc, name.service)) {
      return { pending: { datacenter: dc, service: name.service, lookup: name.lookup } };
    }
    if (!view || view.instances.length === 0) {
      const none = this.nxdomain(ctx);
      return view ? { ...none, service: generationOf(view) } : none;
    }
    return this.listInstances(ctx, view.instances, generationOf(view), turn, this.options.serviceTtl.of(name.service), dc);
  }

  /**
   * `NAME.virtual`: the virtual IP Consul gave the service, read from its Connect endpoints. Virtual
   * IPs are allocated per datacenter, so only the local one answers (Consul reads a label there as
   * a peer name, which svcdns does not serve).
   */
  private virtual(ctx: Ctx, name: Extract<ConsulName, { kind: 'virtual' }>): Answered | Pending {
    const local = this.options.datacenter;
    if (name.dc !== null && name.dc !== local.toLowerCase()) return this.nxdomain(ctx);
    const view = ctx.snapshot.meshView('connect', local, name.service);
    if (!view && ctx.snapshot.meshPending('connect', local, name.service)) {
      return { pending: { datacenter: local, service: name.service, lookup: 'connect' } };
    }
    const service = view && generationOf(view);
    const address = view?.virtualIp ?? null;
    let r: Reply;
    if (!address) r = this.nxdomain(ctx);
    else if (!(familiesFor(ctx.query.type) & familyBit(address))) r = this.nodata(ctx);
    else r = reply(Rcode.NOERROR, [addressRecord(ctx.query.name, address, this.options.nodeTtl)], EMPTY, EMPTY);
    return service ? { ...r, service } : r;
  }

  /**
   * Answers with the instances in `list` (not empty), the next rotation or the one at `turn`, with
   * `ttl`; `dc` is the datacenter asked about (whose WAN addresses answer with --translate-wan-addrs).
   */
  private listInstances(ctx: Ctx, list: readonly Instance[], service: ServiceGeneration | undefined, turn: number | undefined, ttl: number, dc: string): Answered | Pending {
    const { query } = ctx;
    const wan = this.translates(dc);
    const listing = (r: Answered, rotation: number): Answered => ({ ...r, service, rotation: { turn: rotation, count: list.length } });

    if (query.type === RRType.SRV) {
      const rotated = this.srvRotation.rotate(list, turn);
      const answers: RR[] = [];
      const additional: RR[] = [];
      const chase: Chase[] = [];
      const targets = new Set<string>();
      let composite = false;
      for (const i of rotated.items) {
        const reach = wan ? i.wan : i.reach;
        const at = ownName(ctx, reach.any, i.node, wan, 'any');
        if (at === null) continue;
        const target =
          at.ip === null
            ? at.host
            : at.viaNode
              ? `${i.node.name}.node.${i.datacenter}.${ctx.domain}`
              : `${hexAddress(at.ip)}.addr.${i.datacenter}.${ctx.domain}`;
        answers.push({ name: query.name, type: RRType.SRV, ttl, priority: 1, weight: i.weight, port: reach.port, target });
        if (targets.has(target.toLowerCase())) continue;
        targets.add(target.toLowerCase());
        if (at.ip !== null) {
          additional.push(addressRecord(target, at.ip, ttl));
        } else {
          const found = this.hostRecords(ctx, at.host, [RRType.A, RRType.AAAA], 'additional', additional, chase);
          if (found !== false && found !== true) return found;
          composite ||= found;
        }
      }
      const r: Answered = { ...withChase(reply(Rcode.NOERROR, answers, EMPTY, additional), chase), ...(composite && { composite }) };
      if (this.nodeMetaTxt) r.optionalAdditional = this.srvNodeMeta(rotated.items, ctx.domain, ttl);
      return listing(r, rotated.turn);
    }

    if (query.type === RRType.CNAME) {
      // The first hostname instance's CNAME, as Consul answers a CNAME question (IP instances have none).
      const rotated = this.addressRotation.rotate(list, turn);
      const host = rotated.items.map((i) => (wan ? i.wan : i.reach).any).find((at) => at?.host != null)?.host;
      if (host === undefined) return { ...this.nodata(ctx), service };
      return listing(reply(Rcode.NOERROR, [{ name: query.name, type: RRType.CNAME, ttl, target: host }], EMPTY, EMPTY), rotated.turn);
    }
    const families = familiesFor(query.type);
    if (families === 0) return { ...this.nodata(ctx), service };
    const answers: RR[] = [];
    const seen = new Set<string>();
    let host: string | null = null;
    const rotated = this.addressRotation.rotate(list, turn);
    const limit = this.options.aRecordLimit || Infinity;
    for (const i of rotated.items) {
      // Consul's a_record_limit: the first N of this turn's order, so each turn is another window.
      if (answers.length >= limit) break;
      for (const { at: found, kind } of endpointsFor(wan ? i.wan : i.reach, families)) {
        const at = ownName(ctx, found, i.node, wan, kind);
        if (at === null) continue;
        if (at.ip === null) {
          host ??= at.host;
        } else if (!seen.has(at.ip.text) && answers.length < limit) {
          // Consul serves one A record per distinct address: instances sharing an address are one record.
          seen.add(at.ip.text);
          answers.push(addressRecord(query.name, at.ip, ttl));
        }
      }
    }
    if (answers.length > 0) return listing(reply(Rcode.NOERROR, answers, EMPTY, EMPTY), rotated.turn);
    // Only hostname instances: the first one's CNAME (Consul's serviceNodeRecords: a CNAME answers
    // only when no instance has an address, and only one, since a name with a CNAME has nothing else).
    if (host !== null) {
      const cname = this.cname(ctx, host, ttl);
      return isPending(cname) ? cname : listing(cname, rotated.turn);
    }
    return { ...this.nodata(ctx), service };
  }

  /**
   * `NAME.query[.DC]`: as Consul's preparedQueryLookup. Unknown query or datacenter: NXDOMAIN; no
   * instance: NXDOMAIN; none of the asked type: NODATA; Consul failing past the kept result's bound:
   * SERVFAIL. The TTL is the query's DNS TTL, else the service TTL; SRV targets name the datacenter
   * that answered (after a failover, the other one). `client` is the address Consul sorts by.
   */
  private preparedQuery(ctx: Ctx, name: Extract<ConsulName, { kind: 'query' }>, turn: number | undefined, client: string): Answered | QueryPending | Pending {
    if (name.dc !== null && !ctx.snapshot.hasDatacenter(name.dc)) return this.nxdomain(ctx);
    const dc = name.dc ?? this.options.datacenter;
    // The catalog's own definitions (a catalog file) first; else the source executes it (Consul,
    // or the primary for a --workers process, which says not-found when its source has none).
    const definition = ctx.snapshot.query(dc, name.name);
    let found: QueryInstances = NO_INSTANCES;
    if (definition) {
      found = evaluateQuery(definition, ctx.snapshot);
    } else if (this.options.queries) {
      const outcome = this.options.queries.peek(dc, name.name, client);
      if (outcome === null) return { queryPending: { datacenter: dc, name: name.name } };
      if (outcome.kind === 'failed') return reply(Rcode.SERVFAIL, EMPTY, EMPTY, EMPTY, false);
      if (outcome.kind === 'result') found = resultInstances(outcome.result);
    }
    // Sorted by distance (Near): Consul's order, never rotated (its DNS does not shuffle them).
    const rotation = found.sorted ? 0 : turn;
    // The datacenter that answered (after a failover, another one): its SRV targets and, with
    // --translate-wan-addrs, its WAN addresses, as Consul's lookup with the result's Datacenter.
    const answeredBy = found.instances[0]?.datacenter ?? dc;
    const ttl = found.ttl ?? this.options.serviceTtl.of(found.service);
    const answered = found.instances.length === 0 ? this.nxdomain(ctx) : this.listInstances(ctx, found.instances, undefined, rotation, ttl, answeredBy);
    return isPending(answered) ? answered : { ...answered, preparedQuery: true };
  }

  /** `dc` is another datacenter whose WAN addresses answer (--translate-wan-addrs). */
  private translates(dc: string): boolean {
    return this.options.translateWanAddrs === true && dc.toLowerCase() !== this.options.datacenter.toLowerCase();
  }

  /**
   * A CNAME to `host` for an A, AAAA or ANY question, with the target's address records: ours at
   * once (one hop), others resolved by the answer stage (`chase`).
   */
  private cname(ctx: Ctx, host: string, ttl: number): Answered | Pending {
    const answers: RR[] = [{ name: ctx.query.name, type: RRType.CNAME, ttl, target: host }];
    const chase: Chase[] = [];
    const types = ctx.query.type === RRType.ANY ? [RRType.A, RRType.AAAA] : [ctx.query.type];
    const found = this.hostRecords(ctx, host, types, 'answer', answers, chase);
    if (found !== false && found !== true) return found;
    const r = withChase(reply(Rcode.NOERROR, answers, EMPTY, EMPTY), chase);
    return found ? { ...r, composite: true } : r;
  }

  /**
   * The address records of a hostname: a name in our domain is answered from the snapshot now
   * (its address records only: a CNAME of ours to another of ours is followed one hop, no more, so
   * no loop), anything else is left to the answer stage to resolve upstream (`chase`). Returns
   * whether records of ours were added (the answer is then `composite`), or the pending fetch a
   * target of ours needs first (the answer stage waits for it and answers again). Prepared query
   * targets are not followed: an execution is per question and client, never part of another answer.
   */
  private hostRecords(ctx: Ctx, host: string, types: readonly number[], section: Chase['section'], into: RR[], chase: Chase[]): boolean | Pending {
    const labels = domainLabels(host);
    const ours = matchDomain(labels, this.domains);
    if (!ours) {
      chase.push({ name: host, types, section });
      return false;
    }
    if (ctx.hop > 0 || parseConsulName(ours.rest).kind === 'query') return false;
    for (const type of types) {
      const inner: Query = { ...ctx.query, name: host, key: labels.join('.'), labels, type, plain: true };
      const got = this.answerAt(inner, ctx.snapshot, undefined, 1);
      if (got !== null && isPending(got)) return got;
      if (got === null || isQueryPending(got) || got.rcode !== Rcode.NOERROR) continue;
      for (const rr of got.answers) {
        if (rr.type !== RRType.A && rr.type !== RRType.AAAA) continue;
        into.push(rr);
      }
    }
    // Even without records (NODATA now), the answer depends on that name: it may get some.
    return true;
  }

  /**
   * Node meta of the SRV answer's instances, as Consul adds it: TXT records owned by each node's
   * name (`NODE.node.DC.DOMAIN`, whatever the SRV target), once per node, with the service's TTL.
   */
  private srvNodeMeta(instances: readonly Instance[], domain: string, ttl: number): RR[] {
    const nodes = new Set<NodeView>();
    const out: RR[] = [];
    for (const i of instances) {
      if (nodes.has(i.node)) continue;
      nodes.add(i.node);
      out.push(...metaTxt(`${i.node.name}.node.${i.node.datacenter}.${domain}`, i.node.meta, ttl));
    }
    return out;
  }

  private get nodeMetaTxt(): boolean {
    return this.options.nodeMetaTxt ?? true;
  }

  private node(ctx: Ctx, name: Extract<ConsulName, { kind: 'node' }>): Reply | Pending {
    if (name.dc !== null && !ctx.snapshot.hasDatacenter(name.dc)) return this.nxdomain(ctx);
    const dc = name.dc ?? this.options.datacenter;
    const view = ctx.snapshot.node(dc, name.node);
    if (!view && ctx.snapshot.nodesPending(dc)) return { pending: { datacenter: dc, service: null } };
    if (!view) return this.nxdomain(ctx);
    const { query } = ctx;
    const ttl = this.options.nodeTtl;
    const reach = this.translates(view.datacenter) ? view.wan : view.reach;
    if (query.type === RRType.CNAME) {
      const host = reach.any?.host;
      return host ? reply(Rcode.NOERROR, [{ name: query.name, type: RRType.CNAME, ttl, target: host }], EMPTY, EMPTY) : this.nodata(ctx);
    }
    const endpoints = endpointsFor(reach, familiesFor(query.type)).map((e) => e.at);
    const address = endpoints.flatMap((at) => (at.ip === null ? [] : [addressRecord(query.name, at.ip, ttl)]));
    // A node whose address is a hostname: its CNAME (and the target's records), as Consul's makeRecordFromNode.
    const host = endpoints.find((at) => at.ip === null)?.host;
    if (address.length === 0 && host !== undefined && query.type !== RRType.ANY) return this.cname(ctx, host, ttl);
    // Node meta as RFC 1464 TXT records: the answer to TXT and ANY questions; with an A/AAAA
    // answer, additional data (as Consul adds it, unless --no-node-meta-txt).
    const inAnswer = query.type === RRType.TXT || query.type === RRType.ANY;
    const txt = inAnswer ? metaTxt(query.name, view.meta, ttl) : [];
    const answers = [...address, ...txt];
    if (answers.length === 0) return this.nodata(ctx);
    const r = reply(Rcode.NOERROR, answers, EMPTY, EMPTY);
    if (!inAnswer && this.nodeMetaTxt) r.optionalAdditional = metaTxt(query.name, view.meta, this.options.nodeTtl);
    return r;
  }

  /** `.addr.` names encode the address itself; as in Consul, the datacenter label is not checked. */
  private addr(ctx: Ctx, name: Extract<ConsulName, { kind: 'addr' }>): Reply {
    if (!(familiesFor(ctx.query.type) & familyBit(name.address))) return this.nodata(ctx);
    return reply(Rcode.NOERROR, [addressRecord(ctx.query.name, name.address, this.options.nodeTtl)], EMPTY, EMPTY);
  }

  /** PTR for catalog addresses: nodes as `NODE.node.DC.DOMAIN`, service addresses as `SERVICE.service.DC.DOMAIN`. */
  private reverse(query: Query, snapshot: Snapshot): Reply | null {
    if (query.type !== RRType.PTR && query.type !== RRType.ANY) return null;
    const address = parseReverseName(query.labels);
    if (!address) return null;
    const entries = snapshot.reverse(address);
    if (entries.length === 0) return null;
    const domain = this.domainNames[0]!;
    const answers = entries.map(
      (e): RR => ({
        name: query.name,
        type: RRType.PTR,
        ttl: e.kind === 'node' ? this.options.nodeTtl : this.options.serviceTtl.of(e.name),
        target: `${e.name}.${e.kind}.${e.datacenter}.${domain}`,
      }),
    );
    return reply(Rcode.NOERROR, answers, EMPTY, EMPTY);
  }

  private soa(ctx: Ctx): RR {
    const { soa } = this.options;
    return {
      name: ctx.domain,
      type: RRType.SOA,
      ttl: soa.minimum,
      mname: `ns.${ctx.domain}`,
      rname: `hostmaster.${ctx.domain}`,
      serial: ctx.snapshot.serial,
      refresh: soa.refresh,
      retry: soa.retry,
      expire: soa.expire,
      minimum: soa.minimum,
    };
  }

  private nxdomain(ctx: Ctx): Reply {
    return reply(Rcode.NXDOMAIN, EMPTY, [this.soa(ctx)], EMPTY);
  }

  private nodata(ctx: Ctx): Reply {
    return reply(Rcode.NOERROR, EMPTY, [this.soa(ctx)], EMPTY);
  }
}

/** What a service lookup names, in either RFC 2782 form or the plain one. */
type ServiceName = Extract<ConsulName, { kind: 'service' | 'srv' }>;

interface Ctx {
  query: Query;
  snapshot: Snapshot;
  /** The configured domain the question came in on (primary or alt), for names we generate. */
  domain: string;
  /** 1 while answering a CNAME target of ours (its own CNAMEs are not followed). */
  hop: number;
}

function withChase(r: Reply, chase: readonly Chase[]): Answered {
  return chase.length > 0 ? { ...r, chase } : r;
}

/** The endpoints of a reach for the families asked: A questions its `a`, AAAA its `aaaa`, ANY both. */
function endpointsFor(reach: Reach, families: number): { at: Endpoint; kind: 'a' | 'aaaa' }[] {
  const out: { at: Endpoint; kind: 'a' | 'aaaa' }[] = [];
  if (families & FAMILY_V4 && reach.a !== null && (reach.a.ip === null || reach.a.ip.family === 4)) out.push({ at: reach.a, kind: 'a' });
  if (families & FAMILY_V6 && reach.aaaa !== null && (reach.aaaa.ip === null || reach.aaaa.ip.family === 6)) out.push({ at: reach.aaaa, kind: 'aaaa' });
  return out;
}

/**
 * Consul's rule for an instance whose address is the very name asked ("the service address is a
 * CNAME for the service we are looking for", nodeServiceRecords): its node's address instead, never
 * a CNAME to itself; nothing when the node has no address of that kind.
 */
function ownName(ctx: Ctx, at: Endpoint | null, node: NodeView, wan: boolean, kind: keyof Pick<Reach, 'a' | 'aaaa' | 'any'>): Endpoint | null {
  if (at === null || at.ip !== null || at.host.toLowerCase() !== ctx.query.key) return at;
  const fallback = (wan ? node.wan : node.reach)[kind];
  return fallback !== null && fallback.ip !== null ? { ip: fallback.ip, host: null, viaNode: true } : null;
}

function generationOf(view: MeshView): ServiceGeneration {
  return { datacenter: view.datacenter, service: view.name, generation: view.generation, lookup: view.lookup };
}

function reply(rcode: number, answers: readonly RR[], authority: readonly RR[], additional: readonly RR[], authoritative = true): Reply {
  return { rcode, authoritative, recursionAvailable: false, answers, authority, additional };
}

/** Address families a query type asks for, as a bit set of FAMILY_V4 | FAMILY_V6. */
function familiesFor(type: number): number {
  if (type === RRType.A) return FAMILY_V4;
  if (type === RRType.AAAA) return FAMILY_V6;
  if (type === RRType.ANY) return FAMILY_V4 | FAMILY_V6;
  return 0;
}

const FAMILY_V4 = 1;
const FAMILY_V6 = 2;

function familyBit(address: IpAddress): number {
  return address.family === 4 ? FAMILY_V4 : FAMILY_V6;
}

function addressRecord(name: string, address: IpAddress, ttl: number): RR {
  return { name, type: address.family === 4 ? RRType.A : RRType.AAAA, ttl, address: address.bytes };
}

/** Node meta as TXT records, one per pair, in RFC 1464 form (src/answer/rfc1464.ts). */
function metaTxt(name: string, meta: Readonly<Record<string, string>>, ttl: number): RR[] {
  return metaTxtStrings(meta).map((text) => ({ name, type: RRType.TXT, ttl, strings: [text] }));
}
