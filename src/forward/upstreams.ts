/**
 * The upstream resolvers, their health, and the order in which one question tries them.
 *
 * Health: an upstream that fails `FAILURES_TO_UNHEALTHY` questions in a row (timeout, network error,
 * malformed reply; any well-formed reply, REFUSED included, shows it is up) is unhealthy: it is
 * tried only after every healthy one, and probed with a `. NS` question at once and then every
 * `probeIntervalMs` until it answers; one good answer, probe or real, makes it healthy again. Each
 * change of state is reported on the diagnostics seam, and logged once.
 *
 * Down: an unhealthy upstream whose probe failed too. Failed questions alone can be one domain's
 * (its authority dead, the upstream fine for everything else); a probe that fails is the upstream's.
 * Only when every upstream is down does the forwarder fail fast (`allDown`); unhealthy alone only
 * changes the order.
 */

import type { Logger } from 'pino';
import type { Diagnostics, StateEvent } from '../diagnostics/channels.js';
import { formatHostPort, type HostPort } from '../net/address.js';

export type UpstreamPolicy = 'sequential' | 'random' | 'round-robin';

export const FAILURES_TO_UNHEALTHY = 3;

export interface Upstream {
  readonly address: HostPort;
  /** `192.0.2.1:53`, `[2001:db8::1]:53`, for logs. */
  readonly label: string;
  failures: number;
  healthy: boolean;
  /** Unhealthy, and a probe failed since: the upstream itself does not answer. */
  down: boolean;
}

export interface UpstreamSetOptions {
  policy: UpstreamPolicy;
  log: Logger;
  diagnostics: Diagnostics;
  /** Asks one upstream a question that any working resolver answers; true when it did. */
  probe: (upstream: Upstream) => Promise<boolean>;
  probeIntervalMs: number;
  random?: () => number;
}

export class UpstreamSet {
  readonly all: readonly Upstream[];
  private next = 0;
  private probeTimer: NodeJS.Timeout | undefined;
  private probing = false;
  private probeAgain = false;
  private closed = false;

  constructor(
    addresses: readonly HostPort[],
    private readonly options: UpstreamSetOptions,
  ) {
    this.all = addresses.map((address) => ({ address, label: formatHostPort(address), failures: 0, healthy: true, down: false }));
  }

  /** There are upstreams and none is healthy: a client waits at most the client response timer. */
  get allUnhealthy(): boolean {
    return this.all.length > 0 && this.all.every((u) => !u.healthy);
  }

  /** There are upstreams and every one is down (unhealthy, its probe failed too): the forwarder fails fast. */
  get allDown(): boolean {
    return this.all.length > 0 && this.all.every((u) => u.down);
  }

  /** The order one question tries the upstreams: healthy ones by the policy, then the unhealthy. */
  order(): Upstream[] {
    const list = [...this.all];
    if (this.options.policy === 'round-robin' && list.length > 1) {
      const start = this.next++ % list.length;
      list.push(...list.splice(0, start));
    } else if (this.options.policy === 'random') {
      const random = this.options.random ?? Math.random;
      for (let i = list.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [list[i], list[j]] = [list[j]!, list[i]!];
      }
    }
    return [...list.filter((u) => u.healthy), ...list.filter((u) => !u.healthy)];
  }

  succeeded(upstream: Upstream): void {
    upstream.failures = 0;
    if (!upstream.healthy) {
      upstream.healthy = true;
      upstream.down = false;
      this.report(upstream, null, { message: 'upstream is answering again', fields: { upstream: upstream.label } });
    }
  }

  failed(upstream: Upstream, reason: string): void {
    upstream.failures++;
    this.options.log.debug({ upstream: upstream.label, reason }, 'upstream try failed');
    if (upstream.healthy && upstream.failures >= FAILURES_TO_UNHEALTHY) {
      upstream.healthy = false;
      this.report(upstream, 'unhealthy', {
        level: 'warn',
        message: 'upstream marked unhealthy: tried last until it answers a probe',
        fields: { upstream: upstream.label, reason, failures: upstream.failures },
      });
      // Probed at once: whether it is the upstream or some names that fail decides failing fast.
      void this.probeUnhealthy();
    }
  }

  private report(upstream: Upstream, problem: string | null, said: Pick<StateEvent, 'level' | 'message' | 'fields'>): void {
    this.options.diagnostics.state.publish({ key: `upstream ${upstream.label}`, subject: upstream.label, problem, log: this.options.log, ...said });
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.probeTimer);
  }

  private scheduleProbe(): void {
    if (this.closed || this.probeTimer !== undefined) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = undefined;
      void this.probeUnhealthy();
    }, this.options.probeIntervalMs);
    this.probeTimer.unref();
  }

  private async probeUnhealthy(): Promise<void> {
    if (this.closed) return;
    // An upstream marked unhealthy while a probe runs is probed as soon as that one ends.
    if (this.probing) {
      this.probeAgain = true;
      return;
    }
    this.probing = true;
    this.probeAgain = false;
    try {
      await Promise.all(
        this.all
          .filter((u) => !u.healthy)
          .map(async (u) => {
            if (await this.options.probe(u)) this.succeeded(u);
            else if (!u.healthy && !u.down) {
              u.down = true;
              this.report(u, 'down', {
                level: 'warn',
                message: 'upstream does not answer its probe either: down (while every upstream is, questions fail fast)',
                fields: { upstream: u.label },
              });
            }
          }),
      );
    } finally {
      this.probing = false;
    }
    if (this.probeAgain) void this.probeUnhealthy();
    else if (this.all.some((u) => !u.healthy)) this.scheduleProbe();
  }
}
