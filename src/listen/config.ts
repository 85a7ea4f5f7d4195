/**
 * The listeners' keys: the addresses to serve on, the TCP connection table (idle timeout, the
 * global bound, the per-client cap), the largest UDP reply, worker processes and their sockets.
 */

import type { ConfigComponent } from '../config/component.js';
import { choice, integer, list, listOf, single } from '../config/values.js';
import { parseCidr, parseListen, type Cidr, type ListenAddress } from '../net/address.js';
import { WORKER_SOCKETS_CHOICES, type WorkerSocketsChoice } from './worker-sockets.js';

export interface ListenConfig {
  listen: readonly ListenAddress[];
  /** Seconds a TCP connection may sit idle before svcdns closes it (shorter once the table is over half full). */
  tcpIdleTimeout: number;
  /** TCP connections open at once (per process); when full, the oldest idle one makes room. */
  tcpMaxConnections: number;
  /** TCP connections open at once from one client (IPv4 address, IPv6 /64; per process); more are refused. */
  tcpMaxPerClient: number;
  /** Clients exempt from the per-client bounds (--tcp-max-per-client, --upstream-max-per-client): the host's own, by default. */
  clientLimitsExempt: readonly Cidr[];
  /** The largest UDP reply, whatever larger size a client advertises (512..4096). */
  maxUdpSize: number;
  /** Processes answering queries (node:cluster); 1: this process alone. */
  workers: number;
  /** With --workers: one UDP socket per worker (`reuseport`), one shared (`shared`), or the first where this Node has it (src/listen/worker-sockets.ts). */
  workerSockets: WorkerSocketsChoice;
}

export const listenComponent: ConfigComponent<ListenConfig> = {
  group: 'Listening',
  keys: {
    listen: {
      describe: 'address to serve DNS on, UDP and TCP (IPv6 as [::1]:8600)',
      type: 'HOST:PORT',
      list: true,
      default: ['127.0.0.1:8600'],
    },
    'tcp-idle-timeout': { describe: 'close TCP connections idle this long, seconds', type: 'number', default: '10' },
    'tcp-max-connections': {
      describe: 'TCP connections open at once; when full, the one idle longest is closed to make room (the idle timeout shrinks past half full)',
      type: 'number',
      default: '1000',
    },
    'tcp-max-per-client': { describe: 'TCP connections open at once from one client (an IPv4 address, an IPv6 /64); more are closed at once', type: 'number', default: '16' },
    'client-limits-exempt': {
      describe: 'clients (address ranges) exempt from --tcp-max-per-client and --upstream-max-per-client: by default the host itself (its processes connect from 127.0.0.1 or ::1)',
      type: 'CIDR',
      list: true,
      default: ['127.0.0.1/32', '::1/128'],
    },
    'max-udp-size': { describe: 'largest UDP reply in bytes, whatever a client advertises (512..4096; 1232: DNS Flag Day 2020, no IP fragments)', type: 'number', default: '1232' },
    workers: { describe: 'processes answering queries, fed by one catalog source (1: no extra processes)', type: 'number', default: '1' },
    'worker-sockets': {
      describe:
        'with --workers: reuseport gives each worker its own UDP socket (SO_REUSEPORT, Node 22.12+; the kernel spreads the clients), shared has them read one socket the primary binds; auto: reuseport where this Node has it. TCP connections are handed out by the primary in turn either way',
      choices: WORKER_SOCKETS_CHOICES,
      default: 'auto',
    },
  },
  build(raw, problems) {
    const listen = listOf(list(raw.listen), 'listen', parseListen, 'HOST:PORT with an IP address (IPv6 as [::1]:8600)', problems);
    if (listen.length === 0 && !problems.has('listen')) problems.addOverall('listen', 'at least one address is needed');
    return {
      listen,
      tcpIdleTimeout: integer(single(raw['tcp-idle-timeout']), 'tcp-idle-timeout', 1, 3600, problems),
      tcpMaxConnections: integer(single(raw['tcp-max-connections']), 'tcp-max-connections', 1, 1_000_000, problems),
      tcpMaxPerClient: integer(single(raw['tcp-max-per-client']), 'tcp-max-per-client', 1, 1_000_000, problems),
      clientLimitsExempt: listOf(list(raw['client-limits-exempt']), 'client-limits-exempt', parseCidr, 'an address range such as 10.0.0.0/8 or fc00::/7', problems),
      maxUdpSize: integer(single(raw['max-udp-size']), 'max-udp-size', 512, 4096, problems),
      workers: integer(single(raw.workers), 'workers', 1, 64, problems),
      workerSockets: choice(single(raw['worker-sockets']), 'worker-sockets', WORKER_SOCKETS_CHOICES, problems),
    };
  },
};
