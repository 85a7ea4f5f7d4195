/**
 * Where the forwarder's upstreams come from, kept current: --upstream as given, or the nameservers
 * of a resolv.conf file, re-read when the file changes (DHCP clients, NetworkManager and
 * systemd-resolved rewrite it) and on SIGHUP. A re-read that finds no usable nameserver (the file
 * half-written, unreadable, or naming only svcdns) keeps the last good upstreams and says so once.
 */

import type { Logger } from 'pino';
import type { Diagnostics } from '../diagnostics/channels.js';
import { formatHostPort, type HostPort, type ListenAddress } from '../net/address.js';
import { watchFile, type FileWatch } from '../watch-file.js';
import { chooseUpstreams } from './resolv-conf.js';

export interface UpstreamSourceOptions {
  /** --upstream, or null for the resolv.conf file. */
  given: readonly HostPort[] | null;
  resolvConf: string;
  listen: readonly ListenAddress[];
  log: Logger;
  /** A resolv.conf that names no usable upstream is reported here (`state`), logged once per problem. */
  diagnostics: Diagnostics;
  read: (path: string) => Promise<string>;
  /** Watch the resolv.conf file (default true). */
  watch?: boolean;
  debounceMs?: number;
}

export class UpstreamSource {
  /** Called with the new list when it changes after start. */
  onChange: (upstreams: readonly HostPort[]) => void = () => {};
  private current: HostPort[] = [];
  private watcher: FileWatch | null = null;
  private closed = false;

  constructor(private readonly options: UpstreamSourceOptions) {}

  /** The first list (possibly empty: then other names are REFUSED); throws when --upstream would loop. */
  async start(): Promise<readonly HostPort[]> {
    const { given, resolvConf, listen, log, read } = this.options;
    const choice = await chooseUpstreams(given, resolvConf, listen, read);
    if (choice.leftOut.length > 0) log.info({ from: choice.from, leftOut: choice.leftOut }, 'nameservers left out of the upstreams');
    if (choice.none !== undefined) {
      // Warn when forwarding was meant to happen but cannot: the file is unreadable or names only svcdns.
      log[choice.unusable ? 'warn' : 'info'](
        `no upstream resolvers (${choice.none}): names outside the Consul domain get REFUSED; give --upstream IP[:PORT] to forward them`,
      );
    } else log.info({ upstreams: choice.upstreams.map(formatHostPort), from: choice.from }, 'forwarding other names');
    this.current = choice.upstreams;
    if (given === null && this.options.watch !== false) {
      const reload = (): void => void this.reload().catch((err: unknown) => log.error({ err, file: resolvConf }, 're-reading resolv.conf failed'));
      this.watcher = watchFile(resolvConf, reload, {
        debounceMs: this.options.debounceMs ?? 100,
        onError: (err) => log.warn({ file: resolvConf, err }, 'resolv.conf cannot be watched; re-read it with SIGHUP'),
      });
    }
    return this.current;
  }

  /** Re-reads the resolv.conf file (nothing to do for --upstream). */
  async reload(): Promise<void> {
    const { given, resolvConf, listen, log, read } = this.options;
    if (given !== null || this.closed) return;
    const choice = await chooseUpstreams(null, resolvConf, listen, read);
    if (this.closed) return;
    const state = { key: `resolv.conf ${resolvConf}`, subject: resolvConf, log };
    if (choice.none !== undefined) {
      // With no upstreams to keep there is nothing to say (the start said there were none).
      const said = this.current.length > 0 && { level: 'warn' as const, message: `${choice.none}: keeping the last upstreams` };
      this.options.diagnostics.state.publish({ ...state, problem: choice.none, ...said, fields: { upstreams: this.current.map(formatHostPort) } });
      return;
    }
    this.options.diagnostics.state.publish({ ...state, problem: null });
    const next = choice.upstreams;
    if (next.length === this.current.length && next.every((u, i) => formatHostPort(u) === formatHostPort(this.current[i]!))) return;
    this.current = next;
    log.info({ upstreams: next.map(formatHostPort), from: resolvConf, leftOut: choice.leftOut }, 'upstreams changed');
    this.onChange(next);
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
  }
}
