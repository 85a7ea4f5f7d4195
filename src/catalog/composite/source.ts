/**
 * Several catalog sources in one svcdns (`--consul` with `--catalog`, a ZooKeeper source...), as
 * one CatalogSource: each member runs with a sink of its own, and every time one publishes, the
 * members' last catalogs are merged by the one rule (merge.ts: a datacenter belongs to one source,
 * the first in precedence order) and published to the real sink. Questions that need a member
 * (`want`, `touch`, prepared query executions) go to the member owning the datacenter.
 *
 * A clash (two members claiming one datacenter) is reported once per datacenter and clash on the
 * diagnostics seam's `state` channel, and its end likewise; `members()` tells /status and the
 * metrics each member's state.
 *
 * With --state-dir the persisted catalog (the merged one last written) is handed over by
 * `restored` before `start`: each datacenter whose owner has not synced yet is served from it,
 * while the members that have synced serve theirs.
 */

import type { Logger } from 'pino';
import type { Diagnostics } from '../../diagnostics/channels.js';
import type { PreparedQueries, QueryOutcome } from '../queries.js';
import type { CatalogSink, CatalogSource, MemberState } from '../source.js';
import type { CatalogData, MeshLookup } from '../types.js';
import { mergeCatalogs, type Clash, type Merged } from './merge.js';

export interface CompositeMember {
  readonly source: CatalogSource;
  /** Datacenters its configuration says it publishes (Consul's local one); [] when none is known. */
  readonly declared: readonly string[];
}

interface Member extends CompositeMember {
  data: CatalogData | null;
  /** Resolves at its first publish. */
  readonly published: Promise<void>;
  markPublished(): void;
}

export class CompositeSource implements CatalogSource {
  readonly kind: string;
  readonly description: string;
  readonly firstSync?: Promise<void>;
  readonly queries?: PreparedQueries;
  private readonly parts: Member[];
  private readonly log: Logger;
  private sink: CatalogSink | null = null;
  private persisted: CatalogData | null = null;
  private merged: Merged | null = null;
  /** Clashes reported as failing, by `datacenter\0leftOut kind`. */
  private readonly clashing = new Map<string, Clash>();

  /** `members` in precedence order: the first claiming a datacenter keeps it. */
  constructor(
    members: readonly CompositeMember[],
    log: Logger,
    private readonly diagnostics: Diagnostics,
  ) {
    this.parts = members.map((m) => {
      let markPublished = () => {};
      const published = new Promise<void>((resolve) => (markPublished = resolve));
      return { ...m, data: null, published, markPublished };
    });
    this.kind = members.map((m) => m.source.kind).join('+');
    this.description = members.map((m) => m.source.description).join(', ');
    this.log = log.child({ component: 'catalog-sources' });
    const syncing = members.flatMap((m) => (m.source.firstSync ? [m.source.firstSync] : []));
    if (syncing.length > 0) this.firstSync = Promise.all(syncing).then(() => undefined);
    if (members.some((m) => m.source.queries)) this.queries = this.routeQueries();
  }

  /** Registry members' reads kept running (Consul's watches); undefined when no member has any. */
  get watchCount(): number | undefined {
    const counts = this.parts.flatMap((m) => (m.source.watchCount === undefined ? [] : [m.source.watchCount]));
    return counts.length === 0 ? undefined : counts.reduce((a, b) => a + b, 0);
  }

  /** Whether every member with a liveness probe finds its registry up; undefined when none has one. */
  get consulUp(): boolean | undefined {
    const up = this.parts.flatMap((m) => (m.source.consulUp === undefined ? [] : [m.source.consulUp]));
    return up.length === 0 ? undefined : up.every(Boolean);
  }

  /** The ZooKeeper member's state, if one runs. */
  get zookeeper(): { up: boolean; watches: number } | undefined {
    return this.parts.find((m) => m.source.zookeeper !== undefined)?.source.zookeeper;
  }

  /**
   * The persisted catalog (--state-dir, src/state/persist.ts), before `start`: its datacenters serve
   * until their owners' first sync.
   */
  restored(data: CatalogData): void {
    this.persisted = data;
  }

  async start(sink: CatalogSink): Promise<void> {
    this.sink = sink;
    // A member that cannot run fails the whole start; whoever started it stops every member (`stop`).
    await Promise.all(this.parts.map((m) => m.source.start({ replace: (data) => this.memberPublished(m, data) })));
  }

  /** Reloads every member; the outcome of the first that failed, else of the first that can tell (a file's). */
  async reload(): Promise<unknown> {
    const outcomes = await Promise.all(this.parts.map((m) => m.source.reload()));
    const told = outcomes.filter((o): o is { ok: boolean } => typeof o === 'object' && o !== null && 'ok' in o);
    const failed = told.find((o) => !o.ok);
    if (failed) return failed;
    return told.length === 0 ? undefined : { ok: true, changed: told.some((o) => 'changed' in o && o.changed === true) };
  }

  async stop(): Promise<void> {
    this.sink = null;
    await Promise.all(this.parts.map((m) => m.source.stop()));
  }

  /**
   * Fetches through the member owning `datacenter` (none: the first that loads on demand, which may
   * yet publish it). An owner that loads everything has nothing to fetch: its first publish is
   * what a question about it waits for.
   */
  async want(datacenter: string, service: string | null, lookup?: MeshLookup): Promise<void> {
    const member = this.ownerOf(datacenter) ?? this.parts.find((m) => m.source.want !== undefined);
    if (!member) return;
    if (member.source.want) return member.source.want(datacenter, service, lookup);
    return member.published;
  }

  touch(datacenter: string, service: string, lookup?: MeshLookup): void {
    this.ownerOf(datacenter)?.source.touch?.(datacenter, service, lookup);
  }

  /** Each member's state, in precedence order. */
  members(): MemberState[] {
    const owners = this.merged?.owners ?? new Map<string, number>();
    const clashes = this.merged?.clashes ?? [];
    return this.parts.map((m, i) => ({
      kind: m.source.kind,
      description: m.source.description,
      synced: m.data !== null,
      datacenters: [...owners].filter(([dc, owner]) => owner === i && !this.merged?.persisted.has(dc)).map(([dc]) => dc),
      leftOut: clashes.filter((c) => c.leftOut === i).map((c) => c.datacenter),
    }));
  }

  private ownerOf(datacenter: string): Member | undefined {
    const owner = this.merged?.owners.get(datacenter.toLowerCase());
    if (owner !== undefined) return this.parts[owner];
    // Before anything is merged, what each member declares is all there is to go by.
    return this.parts.find((m) => m.declared.some((d) => d.toLowerCase() === datacenter.toLowerCase()));
  }

  /** A member published: merge and publish; if the sink refuses the merge, the member's publish fails too. */
  private memberPublished(member: Member, data: CatalogData): void {
    if (!this.sink) return;
    const before = member.data;
    member.data = data;
    const merged = mergeCatalogs(this.parts.map((m) => ({ kind: m.source.kind, declared: m.declared, data: m.data })), this.persisted);
    try {
      this.sink.replace(merged.data);
    } catch (err) {
      member.data = before;
      throw err;
    }
    this.merged = merged;
    // Served by every member now: the persisted catalog has done its job.
    if (this.parts.every((m) => m.data !== null)) this.persisted = null;
    member.markPublished();
    this.reportClashes(merged.clashes);
  }

  /** One state event per clash that starts or ends; the state logger logs each once. */
  private reportClashes(clashes: readonly Clash[]): void {
    const now = new Map(clashes.map((c) => [`${c.datacenter}\u0000${this.parts[c.leftOut]!.source.kind}`, c]));
    for (const [k, c] of now) {
      if (this.clashing.has(k)) continue;
      this.clashing.set(k, c);
      const kept = this.parts[c.kept]!.source;
      const leftOut = this.parts[c.leftOut]!.source;
      this.diagnostics.state.publish({
        key: `datacenter ${c.datacenter}`,
        subject: leftOut.kind,
        problem: `published by ${kept.kind} and ${leftOut.kind}`,
        level: 'warn',
        message: "datacenter published by two catalog sources: the first keeps it, the other's records for it are left out",
        fields: { datacenter: c.datacenter, kept: kept.description, leftOut: leftOut.description },
        log: this.log,
      });
    }
    for (const [k, c] of this.clashing) {
      if (now.has(k)) continue;
      this.clashing.delete(k);
      this.diagnostics.state.publish({
        key: `datacenter ${c.datacenter}`,
        subject: this.parts[c.leftOut]!.source.kind,
        problem: null,
        message: 'datacenter published by one catalog source again',
        fields: { datacenter: c.datacenter, source: this.parts[c.kept]!.source.description },
        log: this.log,
      });
    }
  }

  /** Prepared query executions through the owner's `queries`; a datacenter whose owner has none has no such query. */
  private routeQueries(): PreparedQueries {
    const of = (dc: string) => this.ownerOf(dc)?.source.queries;
    const none: QueryOutcome = { kind: 'not-found' };
    return {
      peek: (dc, name, client) => (of(dc) ? of(dc)!.peek(dc, name, client) : none),
      execute: async (dc, name, client) => of(dc)?.execute(dc, name, client),
      perClient: (dc, name) => of(dc)?.perClient?.(dc, name) ?? true,
    };
  }
}
