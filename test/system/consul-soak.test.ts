/**
 * Churn soak: svcdns watching a Consul (the simulator in test/support/consul-sim.ts) that changes
 * dozens of times a second — instances registered and deregistered, service and node-level checks
 * flipping, tags and weights changing, nodes moving to new addresses, leaving and coming back, new
 * service names —
 * while a bounded UDP query loop asks about those names. Every reply must be well formed and
 * plausible while the churn runs; once it stops, every answer must equal what Consul's own
 * /v1/health/service/NAME says should be served. Run once with `--watch all` and once with
 * `--watch on-demand` (short idle time, so watches are dropped and fetched again under churn).
 *
 * The churn is driven by a seeded PRNG (mulberry32). The seed is printed in every failure message
 * and as a diagnostic; SVCDNS_SOAK_SEED=<n> replays the same sequence of events (their timing, and
 * so the interleaving with svcdns's watches, still varies from run to run).
 */

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Answer, DecodedPacket } from 'dns-packet';
import { ConsulSim, type CheckStatus } from '../support/consul-sim.js';
import { buildQuery, decode, frame, tcpExchange, udpExchange } from '../support/client.js';
import { eventually } from '../support/eventually.js';
import { mulberry32 } from '../support/random.js';
import { startServer, type TestServer } from '../support/server.js';

// ---------------------------------------------------------------------------------------------
// Budget (per watch mode; two modes run, the whole file stays well under 60 s)

/**
 * How long the churn runs, and the events it must reach in that time: 120 a second (it was 600 in
 * 8 s; the same events in less time, so the same interleavings with svcdns's watches to find).
 */
const CHURN_MS = 5_000;
const MIN_EVENTS = 600;
/** Hard stops: the churn never runs longer than this, whatever the machine's speed. */
const CHURN_HARD_MS = 16_000;
/** Query loop: workers each send at most one query per interval (about 250 queries/s in all). */
const QUERY_WORKERS = 4;
const QUERY_INTERVAL_MS = 16;
const MAX_QUERIES = 15_000;
/** A UDP reply later than this counts as missing (on-demand fetches wait up to --fetch-timeout). */
const REPLY_TIMEOUT_MS = 3_000;
/** After the churn stops, DNS must equal Consul within this. */
const CONVERGE_MS = 5_000;
const FETCH_TIMEOUT_MS = 2_000;

const DC = 'dc1';
const SEED = soakSeed();
/**
 * Some new service names are in mixed case (`New-Svc-7`), as Consul allows and keeps; DNS matches
 * them case-insensitively. SVCDNS_SOAK_MIXED_CASE=0 turns that off.
 */
const MIXED_CASE = process.env.SVCDNS_SOAK_MIXED_CASE !== '0';

function soakSeed(): number {
  const raw = process.env.SVCDNS_SOAK_SEED;
  if (raw !== undefined && raw !== '') {
    const n = Number(raw);
    if (!Number.isSafeInteger(n)) throw new Error(`SVCDNS_SOAK_SEED must be an integer, got ${raw}`);
    return n >>> 0;
  }
  return (Date.now() ^ (process.pid << 12)) >>> 0;
}


class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  float(): number {
    return this.next();
  }
  /** 0 <= n < max */
  int(max: number): number {
    return Math.floor(this.next() * max);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.int(items.length)] as T;
  }
  /** Up to `max` distinct items, in pool order. */
  subset<T>(items: readonly T[], max: number): T[] {
    const n = this.int(max + 1);
    const chosen = new Set<T>();
    while (chosen.size < Math.min(n, items.length)) chosen.add(this.pick(items));
    return items.filter((i) => chosen.has(i));
  }
  weighted<T>(choices: readonly (readonly [T, number])[]): T {
    const total = choices.reduce((s, [, w]) => s + w, 0);
    let r = this.next() * total;
    for (const [value, w] of choices) {
      r -= w;
      if (r < 0) return value;
    }
    return choices[choices.length - 1]![0];
  }
}


async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const run = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run));
  return out;
}

const lc = (s: string): string => s.toLowerCase();
const RCODES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];
const rcodeOf = (reply: Buffer): string => RCODES[reply.readUInt16BE(2) & 0xf] ?? `RCODE${reply.readUInt16BE(2) & 0xf}`;
const RANK: Record<CheckStatus, number> = { passing: 0, warning: 1, critical: 2 };

function worst(statuses: readonly (CheckStatus | null)[]): CheckStatus {
  let out: CheckStatus = 'passing';
  for (const s of statuses) if (s !== null && RANK[s] > RANK[out]) out = s;
  return out;
}

/** The `.addr.` SRV target label of an IPv4 address: 10.30.0.1 -> 0a1e0001. */
function hexIp(address: string): string {
  return Buffer.from(address.split('.').map(Number)).toString('hex');
}

function srvTarget(node: string, nodeAddress: string, ownAddress: string): string {
  return ownAddress !== '' && ownAddress !== nodeAddress ? `${hexIp(ownAddress)}.addr.${DC}.consul` : lc(`${node}.node.${DC}.consul`);
}

// ---------------------------------------------------------------------------------------------
// The churn and its model of what Consul holds

interface NodeM {
  name: string;
  address: string;
  /** The node-level serfHealth check. */
  serf: CheckStatus;
}

interface InstanceM {
  node: string;
  id: string;
  service: string;
  tags: string[];
  port: number;
  /** undefined: registered without Weights (Consul's default {1, 1}). */
  weights: { Passing: number; Warning: number } | undefined;
  /** The instance's own address ('' = the node's). */
  address: string;
  /** The instance's service check (null: none). */
  check: CheckStatus | null;
}

/** What a service ever had, so replies seen mid-churn can be judged plausible. */
interface EverService {
  name: string;
  tags: Set<string>;
  nodes: Set<string>;
  ownAddresses: Set<string>;
}

const SEED_SERVICES = ['web', 'api', 'db', 'cache', 'auth', 'search', 'billing', 'mail', 'queue', 'metrics', 'logs', 'cdn', 'media', 'chat', 'jobs'];
/** Tags match case-insensitively in DNS, so `Canary` and `canary` name the same instances. */
const TAG_POOL = ['v1', 'v2', 'v3', 'canary', 'Canary', 'blue', 'green', 'primary', 'secondary', 'eu', 'us', 'beta', 'edge'];

type EventKind = 'register' | 'deregister' | 'service-check' | 'node-check' | 'tags' | 'move-node' | 'deregister-node' | 'revive-node' | 'new-service';

class Churn {
  readonly nodes = new Map<string, NodeM>();
  readonly deadNodes: string[] = [];
  readonly instances = new Map<string, InstanceM>();
  /** Every service name ever registered, lower-cased key. */
  readonly ever = new Map<string, EverService>();
  /** Every address each node name ever had. */
  readonly nodeAddresses = new Map<string, Set<string>>();
  readonly counts = new Map<EventKind, number>();
  readonly recent: string[] = [];
  events = 0;
  private nodeSeq = 0;
  private ownAddressSeq = 0;
  private instanceSeq = 0;
  private serviceSeq = 0;
  private readonly started = Date.now();

  constructor(
    private readonly sim: ConsulSim,
    private readonly rng: Rng,
    /** New service names sometimes in mixed case, as Consul allows. */
    private readonly mixedCase: boolean,
  ) {}

  /** ~20 nodes (10.20.0.x) and 15 services with 2-4 instances each. */
  seedCatalog(): void {
    for (let i = 0; i < 20; i++) this.addNode();
    for (const name of SEED_SERVICES) {
      const count = 2 + this.rng.int(3);
      for (let i = 0; i < count; i++) this.registerInstance(name, false);
    }
  }

  /** One random event (a few sim writes at most), recorded in the model. */
  step(): void {
    const enough = this.instances.size >= 20;
    const room = this.instances.size < 120;
    const kind = this.rng.weighted<EventKind>([
      ['register', room ? 20 : 0],
      ['deregister', enough ? 14 : 0],
      ['service-check', this.instances.size > 0 ? 22 : 0],
      ['node-check', 12],
      ['tags', this.instances.size > 0 ? 14 : 0],
      ['move-node', 3],
      ['deregister-node', this.nodes.size > 8 ? 4 : 0],
      ['revive-node', this.deadNodes.length > 0 && this.nodes.size < 40 ? 3 : 0],
      ['new-service', room ? 6 : 0],
    ]);
    let what: string;
    switch (kind) {
      case 'register':
        what = this.registerInstance(this.rng.pick([...this.ever.values()]).name, this.nodes.size < 40 && this.rng.chance(0.2));
        break;
      case 'deregister': {
        const inst = this.rng.pick([...this.instances.values()]);
        this.sim.deregisterService(DC, inst.node, inst.id);
        this.instances.delete(`${inst.node}/${inst.id}`);
        what = `deregister ${inst.id} from ${inst.node}`;
        break;
      }
      case 'service-check': {
        const inst = this.rng.pick([...this.instances.values()]);
        if (inst.check !== null && this.rng.chance(0.1)) {
          this.sim.removeCheck(DC, inst.node, `chk-${inst.id}`);
          inst.check = null;
          what = `remove check of ${inst.id}`;
        } else {
          inst.check = this.rng.weighted<CheckStatus>([['passing', 5], ['warning', 2.5], ['critical', 2.5]]);
          this.sim.setCheck(DC, inst.node, { CheckID: `chk-${inst.id}`, ServiceID: inst.id, Status: inst.check });
          what = `check of ${inst.id} ${inst.check}`;
        }
        break;
      }
      case 'node-check': {
        const node = this.rng.pick([...this.nodes.values()]);
        node.serf = this.rng.weighted<CheckStatus>([['passing', 5], ['warning', 1.5], ['critical', 3.5]]);
        this.sim.setCheck(DC, node.name, { CheckID: 'serfHealth', Status: node.serf });
        what = `serfHealth of ${node.name} ${node.serf}`;
        break;
      }
      case 'tags': {
        const inst = this.rng.pick([...this.instances.values()]);
        inst.tags = this.rng.subset(TAG_POOL, 3);
        if (this.rng.chance(0.3)) inst.weights = this.randomWeights();
        this.putInstance(inst);
        what = `tags of ${inst.id} [${inst.tags.join(',')}] weights ${JSON.stringify(inst.weights)}`;
        break;
      }
      case 'move-node': {
        // The same node re-registered at a new address: every instance on it moves too.
        const node = this.rng.pick([...this.nodes.values()]);
        const from = node.address;
        node.address = this.nextNodeAddress();
        this.sim.registerNode(DC, { Node: node.name, Address: node.address });
        this.nodeAddresses.get(node.name)!.add(node.address);
        what = `node ${node.name} moved from ${from} to ${node.address}`;
        break;
      }
      case 'deregister-node': {
        const node = this.rng.pick([...this.nodes.values()]);
        this.sim.deregisterNode(DC, node.name);
        this.nodes.delete(node.name);
        for (const [k, inst] of this.instances) if (inst.node === node.name) this.instances.delete(k);
        this.deadNodes.push(node.name);
        what = `deregister node ${node.name}`;
        break;
      }
      case 'revive-node': {
        const name = this.deadNodes.splice(this.rng.int(this.deadNodes.length), 1)[0]!;
        const node = this.addNode(name);
        what = `node ${name} back at ${node.address}`;
        break;
      }
      case 'new-service': {
        const n = ++this.serviceSeq;
        const name = this.mixedCase && this.rng.chance(0.4) ? `New-Svc-${n}` : `new-svc-${n}`;
        const count = 1 + this.rng.int(3);
        for (let i = 0; i < count; i++) this.registerInstance(name, false);
        what = `new service ${name} with ${count} instances`;
        break;
      }
    }
    this.events++;
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
    this.recent.push(`#${this.events} +${Date.now() - this.started}ms ${what}`);
    if (this.recent.length > 25) this.recent.shift();
  }

  /** A new node (or a dead one back) with a fresh address and a passing serfHealth check. */
  private addNode(name?: string): NodeM {
    const address = this.nextNodeAddress();
    const node: NodeM = { name: name ?? `n${this.nodeSeq}`, address, serf: 'passing' };
    this.sim.registerNode(DC, { Node: node.name, Address: node.address });
    this.sim.setCheck(DC, node.name, { CheckID: 'serfHealth', Status: 'passing' });
    this.nodes.set(node.name, node);
    const addrs = this.nodeAddresses.get(node.name) ?? new Set<string>();
    addrs.add(node.address);
    this.nodeAddresses.set(node.name, addrs);
    return node;
  }

  /** 10.20.0.1, 10.20.0.2, ...: never reused, so an address names one node's registration. */
  private nextNodeAddress(): string {
    const seq = this.nodeSeq++;
    return `10.20.${Math.floor(seq / 250)}.${(seq % 250) + 1}`;
  }

  private randomWeights(): InstanceM['weights'] {
    return this.rng.chance(0.3) ? undefined : { Passing: 1 + this.rng.int(20), Warning: this.rng.int(11) };
  }

  private registerInstance(service: string, onNewNode: boolean): string {
    const node = onNewNode ? this.addNode() : this.rng.pick([...this.nodes.values()]);
    const r = this.rng.float();
    const ownAddress = r < 0.1 ? this.nextOwnAddress() : r < 0.15 ? node.address : '';
    const inst: InstanceM = {
      node: node.name,
      // Often the service name itself, as agents register them (unique per node, not across nodes).
      id: this.rng.chance(0.3) && !this.instances.has(`${node.name}/${lc(service)}`) ? lc(service) : `${lc(service)}-${++this.instanceSeq}`,
      service,
      tags: this.rng.subset(TAG_POOL, 3),
      port: 1024 + this.rng.int(60_000),
      weights: this.randomWeights(),
      address: ownAddress,
      check: null,
    };
    this.putInstance(inst);
    if (this.rng.chance(0.6)) {
      inst.check = this.rng.weighted<CheckStatus>([['passing', 7], ['warning', 1.5], ['critical', 1.5]]);
      this.sim.setCheck(DC, node.name, { CheckID: `chk-${inst.id}`, ServiceID: inst.id, Status: inst.check });
    }
    return `register ${inst.id} on ${onNewNode ? 'new ' : ''}node ${node.name}${ownAddress ? ` at ${ownAddress}` : ''} [${inst.tags.join(',')}] check ${inst.check}`;
  }

  private nextOwnAddress(): string {
    const seq = this.ownAddressSeq++;
    return `10.30.${Math.floor(seq / 250)}.${(seq % 250) + 1}`;
  }

  /** Registers (or re-registers, same ID) an instance, and remembers what its service ever had. */
  private putInstance(inst: InstanceM): void {
    this.sim.registerService(DC, inst.node, {
      ID: inst.id,
      Service: inst.service,
      Tags: inst.tags,
      Port: inst.port,
      ...(inst.weights ? { Weights: inst.weights } : {}),
      ...(inst.address ? { Address: inst.address } : {}),
    });
    this.instances.set(`${inst.node}/${inst.id}`, inst);
    const ever = this.ever.get(lc(inst.service)) ?? { name: inst.service, tags: new Set(), nodes: new Set(), ownAddresses: new Set() };
    for (const t of inst.tags) ever.tags.add(t);
    ever.nodes.add(inst.node);
    if (inst.address) ever.ownAddresses.add(inst.address);
    this.ever.set(lc(inst.service), ever);
  }

  /** Addresses a service's A records may hold at some moment: its instances' and their nodes' (any time). */
  plausibleAddresses(service: string): Set<string> {
    const ever = this.ever.get(lc(service));
    const out = new Set<string>(ever?.ownAddresses ?? []);
    for (const n of ever?.nodes ?? []) for (const a of this.nodeAddresses.get(n) ?? []) out.add(a);
    return out;
  }

  plausibleTargets(service: string): Set<string> {
    const ever = this.ever.get(lc(service));
    const out = new Set<string>();
    for (const a of ever?.ownAddresses ?? []) out.add(`${hexIp(a)}.addr.${DC}.consul`);
    for (const n of ever?.nodes ?? []) out.add(lc(`${n}.node.${DC}.consul`));
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Views: what each question should be answered (canonical text), from the model, from Consul, and
// what svcdns answers.

interface Question {
  key: string;
  name: string;
  type: 'A' | 'SRV';
  /** The service (as spelled in Consul) and tag, or the node. */
  service?: string;
  tag?: string | null;
  node?: string;
}

type View = Map<string, string>;

interface Served {
  address: string;
  weight: number;
  port: number;
  target: string;
  tags: string[];
}

/** Every question the final comparison asks: each service ever, each of its tags ever, each node ever. */
function questions(churn: Churn): Question[] {
  const out: Question[] = [];
  for (const ever of [...churn.ever.values()].sort((a, b) => (lc(a.name) < lc(b.name) ? -1 : 1))) {
    for (const tag of [null, ...[...ever.tags].sort()]) {
      const name = `${tag === null ? '' : `${tag}.`}${ever.name}.service.consul`;
      for (const type of ['A', 'SRV'] as const) out.push({ key: `${name} ${type}`, name, type, service: ever.name, tag });
    }
  }
  for (const node of [...churn.nodeAddresses.keys()].sort()) {
    const name = `${node}.node.consul`;
    out.push({ key: `${name} A`, name, type: 'A', node });
  }
  return out;
}

function canonical(type: 'A' | 'SRV', served: readonly Served[]): string {
  if (served.length === 0) return 'NXDOMAIN';
  const lines = type === 'A' ? [...new Set(served.map((s) => s.address))] : served.map((s) => `${s.weight} ${s.port} ${s.target}`);
  return `NOERROR ${lines.sort().join(' | ')}`;
}

function viewOf(qs: readonly Question[], servedOf: (service: string) => Served[], nodeAddress: (node: string) => string | undefined): View {
  const view: View = new Map();
  for (const q of qs) {
    if (q.node !== undefined) {
      const address = nodeAddress(q.node);
      view.set(q.key, address === undefined ? 'NXDOMAIN' : `NOERROR ${address}`);
    } else {
      const tag = q.tag ?? null;
      const served = servedOf(q.service!).filter((s) => tag === null || s.tags.includes(lc(tag)));
      view.set(q.key, canonical(q.type, served));
    }
  }
  return view;
}

function modelView(churn: Churn, qs: readonly Question[]): View {
  return viewOf(
    qs,
    (service) =>
      [...churn.instances.values()]
        .filter((i) => lc(i.service) === lc(service))
        .flatMap((i): Served[] => {
          const node = churn.nodes.get(i.node)!;
          const health = worst([node.serf, i.check]);
          if (health === 'critical') return [];
          const w = i.weights ?? { Passing: 1, Warning: 1 };
          return [{ address: i.address || node.address, weight: health === 'warning' ? w.Warning : w.Passing, port: i.port, target: srvTarget(node.name, node.address, i.address), tags: i.tags.map(lc) }];
        }),
    (node) => churn.nodes.get(node)?.address,
  );
}

interface HealthEntry {
  Node: { Node: string; Address: string };
  Service: { ID: string; Service: string; Tags: string[] | null; Address: string; Port?: number; Weights: { Passing: number; Warning: number } };
  Checks: { CheckID: string; Status: string }[];
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  assert.equal(res.status, 200, `GET ${url}: ${res.status}`);
  return (await res.json()) as T;
}

/** What Consul (the simulator's HTTP API) says each question should be answered. */
async function consulView(sim: ConsulSim, qs: readonly Question[]): Promise<View> {
  const services = [...new Set(qs.flatMap((q) => (q.service === undefined ? [] : [q.service])))];
  const served = new Map<string, Served[]>();
  await mapLimit(services, 8, async (service) => {
    const entries = await getJson<HealthEntry[]>(`${sim.url}/v1/health/service/${encodeURIComponent(service)}`);
    served.set(
      service,
      entries.flatMap((e): Served[] => {
        // Consul's DNS: any check that is not passing or warning (critical, or unknown) leaves it out.
        const statuses = e.Checks.map((c) => c.Status);
        if (statuses.some((s) => s !== 'passing' && s !== 'warning')) return [];
        const warning = statuses.includes('warning');
        return [{
          address: e.Service.Address || e.Node.Address,
          weight: warning ? e.Service.Weights.Warning : e.Service.Weights.Passing,
          port: e.Service.Port ?? 0,
          target: srvTarget(e.Node.Node, e.Node.Address, e.Service.Address),
          tags: (e.Service.Tags ?? []).map(lc),
        }];
      }),
    );
  });
  const nodes = await getJson<{ Node: string; Address: string }[]>(`${sim.url}/v1/catalog/nodes`);
  const byName = new Map(nodes.map((n) => [n.Node, n.Address]));
  return viewOf(qs, (service) => served.get(service) ?? [], (node) => byName.get(node));
}

/** One question over UDP with EDNS (over TCP if truncated); null when no reply came. */
async function ask(port: number, name: string, type: string, timeoutMs: number): Promise<Buffer | null> {
  const packet = buildQuery(name, type, { id: Math.floor(Math.random() * 65536), udpSize: 4096 });
  const reply = await udpExchange(port, packet, timeoutMs);
  if (reply && (reply.readUInt16BE(2) & 0x0200) !== 0) {
    return (await tcpExchange(port, frame(packet), 1, timeoutMs)).replies[0] ?? null;
  }
  return reply;
}

function canonicalReply(type: 'A' | 'SRV', reply: Buffer | null): string {
  if (!reply) return 'no reply';
  const rcode = rcodeOf(reply);
  if (rcode !== 'NOERROR') return rcode;
  const answers = decode(reply).answers ?? [];
  const lines = answers.map((a: Answer) => {
    if (type === 'A' && a.type === 'A') return a.data;
    if (type === 'SRV' && a.type === 'SRV') return `${a.data.weight ?? 0} ${a.data.port} ${lc(a.data.target)}`;
    return `unexpected ${a.type}`;
  });
  return lines.length === 0 ? 'NOERROR (no records)' : `NOERROR ${lines.sort().join(' | ')}`;
}

async function dnsView(port: number, qs: readonly Question[]): Promise<View> {
  const got = await mapLimit(qs, 24, async (q) => canonicalReply(q.type, await ask(port, q.name, q.type, REPLY_TIMEOUT_MS)));
  return new Map(qs.map((q, i) => [q.key, got[i]!]));
}

function differences(qs: readonly Question[], want: View, got: View): string[] {
  return qs.filter((q) => want.get(q.key) !== got.get(q.key)).map((q) => `${q.key}: want ${want.get(q.key)}; got ${got.get(q.key)}`);
}

// ---------------------------------------------------------------------------------------------
// The query loop

type QueryKind = 'service' | 'tag' | 'node' | 'absent' | 'absent-tag';

interface LoopQuery {
  name: string;
  type: 'A' | 'SRV' | 'AAAA';
  kind: QueryKind;
  service?: string;
  node?: string;
  edns: boolean;
}

interface LoopStats {
  sent: number;
  missing: number;
  rcodes: Map<string, number>;
  maxLatencyMs: number;
  servfailLatencies: number[];
  problems: string[];
  problemCount: number;
}

class QueryLoop {
  readonly stats: LoopStats = { sent: 0, missing: 0, rcodes: new Map(), maxLatencyMs: 0, servfailLatencies: [], problems: [], problemCount: 0 };
  private stopped = false;
  private workers: Promise<void>[] = [];
  private hot: string[] = [];
  private hotUntil = 0;

  constructor(
    private readonly port: number,
    private readonly churn: Churn,
    private readonly rng: Rng,
    private readonly onDemand: boolean,
  ) {}

  start(): void {
    this.workers = Array.from({ length: QUERY_WORKERS }, () => this.worker());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.workers);
  }

  private problem(text: string): void {
    this.stats.problemCount++;
    if (this.stats.problems.length < 30) this.stats.problems.push(text);
  }

  private async worker(): Promise<void> {
    while (!this.stopped && this.stats.sent < MAX_QUERIES) {
      const started = Date.now();
      await this.one(this.pick());
      await sleep(Math.max(1, QUERY_INTERVAL_MS - (Date.now() - started)));
    }
  }

  /** A service name: in on-demand mode mostly from a small hot set that moves every 1.5 s, so idle watches get dropped and fetched again. */
  private pickService(): string {
    const all = [...this.churn.ever.values()].map((e) => e.name);
    if (!this.onDemand || this.rng.chance(0.3)) return this.rng.pick(all);
    if (Date.now() > this.hotUntil) {
      this.hot = Array.from({ length: 4 }, () => this.rng.pick(all));
      this.hotUntil = Date.now() + 1_500;
    }
    return this.rng.pick(this.hot);
  }

  private pick(): LoopQuery {
    const edns = this.rng.chance(0.5);
    const kind = this.rng.weighted<QueryKind>([['service', 45], ['tag', 20], ['node', 15], ['absent', 12], ['absent-tag', 8]]);
    const type = this.rng.weighted<'A' | 'SRV' | 'AAAA'>([['A', 60], ['SRV', 33], ['AAAA', 7]]);
    switch (kind) {
      case 'service': {
        const service = this.pickService();
        return { name: `${service}.service.consul`, type, kind, service, edns };
      }
      case 'tag': {
        const service = this.pickService();
        const tags = [...(this.churn.ever.get(lc(service))?.tags ?? [])];
        if (tags.length === 0) return { name: `${service}.service.consul`, type, kind: 'service', service, edns };
        const tag = this.rng.pick(tags);
        // Both spellings: TAG.NAME.service and RFC 2782's _NAME._TAG.service.
        const name = type === 'SRV' && this.rng.chance(0.3) ? `_${service}._${tag}.service.consul` : `${tag}.${service}.service.consul`;
        return { name, type, kind, service, edns };
      }
      case 'node': {
        const node = this.rng.pick([...this.churn.nodeAddresses.keys()]);
        return { name: `${node}.node.consul`, type: 'A', kind, node, edns };
      }
      case 'absent':
        return { name: this.rng.chance(0.7) ? `nope-${this.rng.int(1e6)}.service.consul` : `nope-${this.rng.int(1e6)}.node.consul`, type, kind, edns };
      case 'absent-tag': {
        const service = this.pickService();
        return { name: `zz-none.${service}.service.consul`, type, kind, service, edns };
      }
    }
  }

  private async one(q: LoopQuery): Promise<void> {
    const id = this.rng.int(65536);
    const packet = buildQuery(q.name, q.type, q.edns ? { id, udpSize: 1232 } : { id });
    this.stats.sent++;
    const started = performance.now();
    const reply = await udpExchange(this.port, packet, REPLY_TIMEOUT_MS);
    const ms = performance.now() - started;
    const what = `${q.name} ${q.type}`;
    if (!reply) {
      this.stats.missing++;
      this.problem(`${what}: no reply within ${REPLY_TIMEOUT_MS} ms`);
      return;
    }
    let p: DecodedPacket;
    try {
      p = decode(reply);
    } catch (err) {
      this.problem(`${what}: undecodable reply (${String(err)}): ${reply.toString('hex')}`);
      return;
    }
    const rcode = rcodeOf(reply);
    this.stats.rcodes.set(rcode, (this.stats.rcodes.get(rcode) ?? 0) + 1);
    if (rcode !== 'SERVFAIL') this.stats.maxLatencyMs = Math.max(this.stats.maxLatencyMs, ms);
    if (reply.readUInt16BE(0) !== id) this.problem(`${what}: reply ID ${reply.readUInt16BE(0)} != query ID ${id}`);
    if (!p.flag_qr) this.problem(`${what}: reply without QR`);
    const question = p.questions?.[0];
    if (p.questions?.length !== 1 || !question || lc(question.name) !== lc(q.name) || question.type !== q.type) {
      this.problem(`${what}: question not echoed: ${JSON.stringify(p.questions)}`);
    }
    const answers = p.answers ?? [];

    if (rcode === 'SERVFAIL') {
      this.stats.servfailLatencies.push(Math.round(ms));
      // Only a question that waited for an on-demand fetch may end so, and only after --fetch-timeout.
      const fetchable = q.kind === 'service' || q.kind === 'tag' || q.kind === 'absent-tag';
      if (!this.onDemand || !fetchable) this.problem(`${what}: SERVFAIL (${q.kind}, ${this.onDemand ? 'on-demand' : 'watch all'})`);
      else if (ms < FETCH_TIMEOUT_MS - 50) this.problem(`${what}: SERVFAIL after ${Math.round(ms)} ms, without waiting --fetch-timeout for a fetch`);
      return;
    }
    if (rcode !== 'NOERROR' && rcode !== 'NXDOMAIN') {
      this.problem(`${what}: rcode ${rcode}`);
      return;
    }
    if (!p.flag_aa) this.problem(`${what}: ${rcode} without AA`);
    if (rcode === 'NXDOMAIN') {
      if (answers.length !== 0 || p.authorities?.length !== 1 || p.authorities[0]?.type !== 'SOA') {
        this.problem(`${what}: NXDOMAIN with ${answers.length} answers and authority ${JSON.stringify(p.authorities?.map((a) => a.type))}`);
      }
      return;
    }
    // NOERROR: what may be in it.
    switch (q.kind) {
      case 'absent':
      case 'absent-tag':
        this.problem(`${what}: NOERROR for a name that never existed`);
        return;
      case 'node': {
        const ok = answers.length === 1 && answers[0]?.type === 'A' && (this.churn.nodeAddresses.get(q.node!)?.has(answers[0].data) ?? false);
        if (!ok) this.problem(`${what}: node answer ${JSON.stringify(answers.map((a) => `${a.type} ${'data' in a ? JSON.stringify(a.data) : ''}`))}, node had ${[...(this.churn.nodeAddresses.get(q.node!) ?? [])].join(',')}`);
        return;
      }
      case 'service':
      case 'tag':
        break;
    }
    if (q.type === 'AAAA') {
      if (answers.length !== 0) this.problem(`${what}: AAAA records for an IPv4-only catalog`);
      return;
    }
    // An empty NOERROR would be NODATA, which no (undotted) service or tag name should give.
    if (answers.length === 0) this.problem(`${what}: NOERROR without records`);
    if (q.type === 'A') {
      const plausible = this.churn.plausibleAddresses(q.service!);
      const seen = new Set<string>();
      for (const a of answers) {
        if (a.type !== 'A') this.problem(`${what}: ${a.type} record in an A answer`);
        else if (seen.has(a.data)) this.problem(`${what}: address ${a.data} twice`);
        else if (!plausible.has(a.data)) this.problem(`${what}: address ${a.data} was never an instance's address`);
        if (a.type === 'A') seen.add(a.data);
      }
    } else {
      const plausible = this.churn.plausibleTargets(q.service!);
      for (const a of answers) {
        if (a.type !== 'SRV') this.problem(`${what}: ${a.type} record in an SRV answer`);
        else if (!plausible.has(lc(a.data.target))) this.problem(`${what}: SRV target ${a.data.target} was never an instance's`);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The soak

interface Mode {
  label: string;
  flags: Record<string, string>;
  onDemand: boolean;
  salt: number;
}

async function soak(t: TestContext, mode: Mode): Promise<void> {
  const tag = `[seed ${SEED} (SVCDNS_SOAK_SEED=${SEED}${MIXED_CASE ? '' : ' SVCDNS_SOAK_MIXED_CASE=0'}), ${mode.label}]`;
  t.diagnostic(`${tag} starting`);
  const sim = new ConsulSim({ datacenters: [DC] });
  let s: TestServer | null = null;
  let loop: QueryLoop | null = null;
  t.after(async () => {
    await loop?.stop();
    await s?.close();
    await sim.stop();
  });
  await sim.start();
  const churn = new Churn(sim, new Rng(SEED ^ mode.salt), MIXED_CASE);
  churn.seedCatalog();

  const logs: Record<string, unknown>[] = [];
  s = await startServer({ flags: { consul: sim.url, 'consul-wait': '2s', ...mode.flags }, logs });
  const port = s.port;
  await eventually(() => assert.ok(logs.some((l) => l.msg === 'consul catalog synced; ready'), `${tag} svcdns never synced with Consul`), 10_000, 50);

  // Before the churn: the seeded catalog is served exactly.
  const compare = async (phase: string): Promise<{ ms: number; attempts: number }> => {
    const qs = questions(churn);
    const fromConsul = await consulView(sim, qs);
    const fromModel = modelView(churn, qs);
    const modelDiff = differences(qs, fromConsul, fromModel);
    assert.deepEqual(modelDiff, [], `${tag} ${phase}: this test's model disagrees with the simulator (a bug in the test)`);
    const started = Date.now();
    let attempts = 0;
    await eventually(async () => {
      attempts++;
      const got = await dnsView(port, qs);
      const diff = differences(qs, fromConsul, got);
      assert.ok(
        diff.length === 0,
        `${tag} ${phase}: after ${churn.events} events, ${diff.length} of ${qs.length} DNS answers differ from Consul's:\n  ${diff.slice(0, 25).join('\n  ')}\n` +
          `last events:\n  ${churn.recent.join('\n  ')}`,
      );
    }, CONVERGE_MS, 50);
    return { ms: Date.now() - started, attempts };
  };
  await compare('before the churn');

  // The churn, with the query loop running alongside.
  loop = new QueryLoop(port, churn, new Rng((SEED ^ mode.salt ^ 0x9e3779b9) >>> 0), mode.onDemand);
  loop.start();
  const churnRng = new Rng((SEED ^ mode.salt ^ 0x85ebca6b) >>> 0);
  const churnStart = Date.now();
  const msPerEvent = CHURN_MS / MIN_EVENTS;
  while (churn.events < MIN_EVENTS && Date.now() - churnStart < CHURN_HARD_MS) {
    // Bursts of 1-4 writes in one tick (svcdns coalesces them), paced to MIN_EVENTS in CHURN_MS.
    const burst = 1 + churnRng.int(4);
    for (let i = 0; i < burst; i++) churn.step();
    const due = churnStart + churn.events * msPerEvent;
    await sleep(Math.max(1, due - Date.now() + (churnRng.float() - 0.5) * msPerEvent));
  }
  const churnMs = Date.now() - churnStart;
  await loop.stop();
  const { stats } = loop;
  loop = null;

  const converged = await compare('after the churn');

  const byKind = [...churn.counts].map(([k, n]) => `${k} ${n}`).join(', ');
  t.diagnostic(`${tag} ${churn.events} events in ${churnMs} ms (${byKind}); sim index ${sim.index(DC)}, ${sim.requests.length} HTTP requests to the sim`);
  t.diagnostic(`${tag} final catalog: ${churn.nodes.size} nodes, ${churn.instances.size} instances, ${churn.ever.size} service names ever, ${questions(churn).length} questions compared`);
  t.diagnostic(
    `${tag} query loop: ${stats.sent} queries (${Math.round(stats.sent / (churnMs / 1000))}/s), rcodes ${JSON.stringify(Object.fromEntries(stats.rcodes))}, ` +
      `missing ${stats.missing}, max latency ${Math.round(stats.maxLatencyMs)} ms (non-SERVFAIL)` +
      (stats.servfailLatencies.length > 0 ? `, SERVFAIL after ${stats.servfailLatencies.join(',')} ms` : ''),
  );
  t.diagnostic(`${tag} DNS equal to Consul ${converged.ms} ms after the churn stopped (${converged.attempts} comparison${converged.attempts === 1 ? '' : 's'})`);

  assert.ok(churn.events >= MIN_EVENTS, `${tag} only ${churn.events} events in ${churnMs} ms`);
  assert.ok(stats.sent >= 500, `${tag} only ${stats.sent} queries were sent`);
  assert.equal(stats.missing, 0, `${tag} ${stats.missing} queries got no reply: ${stats.problems.join('; ')}`);
  assert.deepEqual(stats.problems, [], `${tag} ${stats.problemCount} bad replies while churning (first ${stats.problems.length}):\n  ${stats.problems.join('\n  ')}`);
  const loud = logs.filter((l) => typeof l.level === 'number' && l.level >= 40).map((l) => `${String(l.msg)} ${JSON.stringify({ ...l, msg: undefined, time: undefined })}`);
  assert.deepEqual(loud, [], `${tag} svcdns logged warnings or errors while Consul was healthy`);
  if (mode.onDemand) {
    const dropped = logs.filter((l) => l.msg === 'idle on-demand watch dropped').length;
    const fetches = sim.requests.filter((r) => r.path.startsWith('/v1/health/service/') && 'stale' in r.query && !('index' in r.query)).length;
    t.diagnostic(`${tag} on-demand: ${dropped} idle watches dropped, ${fetches} non-blocking health reads`);
    assert.ok(dropped > 0, `${tag} no on-demand watch was ever dropped as idle: the soak did not exercise re-fetching`);
  }
}

test('churn soak, --watch all: answers stay well formed and end equal to Consul', async (t) => {
  await soak(t, { label: 'watch all', flags: { watch: 'all' }, onDemand: false, salt: 0x1a11 });
});

test('churn soak, --watch on-demand: answers stay well formed and end equal to Consul', async (t) => {
  await soak(t, {
    label: 'watch on-demand',
    flags: { watch: 'on-demand', 'watch-idle': '1s', 'fetch-timeout': `${FETCH_TIMEOUT_MS}ms` },
    onDemand: true,
    salt: 0x0dd5,
  });
});
