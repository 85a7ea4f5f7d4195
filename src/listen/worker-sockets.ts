/**
 * How --workers processes get their listening sockets (`--worker-sockets`):
 * - `shared`: node:cluster's shared handles. The primary binds one UDP socket per listen address
 *   and every worker reads from it (each datagram wakes whichever worker gets it first).
 * - `reuseport`: each worker binds its own UDP socket per listen address with `reusePort`
 *   (SO_REUSEPORT): the kernel spreads the flows (by source address and port) over the workers'
 *   sockets, and a dead worker's socket leaves the group, its flows going to the others.
 * TCP is the same in both: node:cluster's round robin, the primary accepting each connection and
 * handing it to the workers in turn. A connection is paid for once, its queries after it cost no
 * IPC; the turns keep the workers even with few clients (a hash of few connections may not), and
 * a connection accepted while a worker dies goes to a live one (SO_REUSEPORT would reset the
 * dead socket's accept queue).
 *
 * With `reuseport`, the primary reserves each address first (`reservePorts`): a plain UDP and TCP
 * bind, closed at once. It turns port 0 into one port every worker binds (each would get its own
 * otherwise), and it fails, as a single process would, where anything holds the port, another
 * svcdns with reusePort included (which the workers' own binds would silently join).
 *
 * The worker learns the plan from its environment at fork (`WORKER_SOCKETS_ENV`), before it binds.
 */

import { createSocket } from 'node:dgram';
import { createServer, isIPv6, type Server } from 'node:net';
import type { ListenAddress } from '../net/address.js';
import { listenError } from '../net/listen-error.js';
import { reusePortAvailable } from './reuse-port.js';

export const WORKER_SOCKETS_CHOICES = ['auto', 'shared', 'reuseport'] as const;
export type WorkerSocketsChoice = (typeof WORKER_SOCKETS_CHOICES)[number];
export type WorkerSocketsMode = Exclude<WorkerSocketsChoice, 'auto'>;

/** What every worker binds: the mode, and with `reuseport` the addresses with their ports decided. */
export interface WorkerSockets {
  mode: WorkerSocketsMode;
  listen: readonly ListenAddress[];
}

/** The environment variable that carries the plan to a worker (internal; not a configuration key). */
export const WORKER_SOCKETS_ENV = 'SVCDNS_INTERNAL_WORKER_SOCKETS';

/**
 * The primary's plan: `auto` is `reuseport` where this Node has it, else `shared`; `reuseport`
 * asked for where it is missing is an error. Rejects with the listen error of a reservation.
 */
export async function planWorkerSockets(choice: WorkerSocketsChoice, listen: readonly ListenAddress[]): Promise<WorkerSockets> {
  const available = choice === 'shared' ? false : await reusePortAvailable();
  if (choice === 'reuseport' && !available) {
    throw new Error(`--worker-sockets reuseport: node ${process.version} cannot give each worker its own UDP socket (dgram reusePort needs Node 22.12+ on Linux); use --worker-sockets shared or auto`);
  }
  if (choice === 'shared' || !available) return { mode: 'shared', listen };
  const reserved: ListenAddress[] = [];
  for (const at of listen) reserved.push(await reservePort(at));
  return { mode: 'reuseport', listen: reserved };
}

/** The plan as the worker's environment carries it. */
export function encodeWorkerSockets(plan: WorkerSockets): Record<string, string> {
  return { [WORKER_SOCKETS_ENV]: JSON.stringify(plan) };
}

/** A worker's plan; `shared` when the environment has none (the primary always sets it). */
export function workerSocketsFrom(env: NodeJS.ProcessEnv, listen: readonly ListenAddress[]): WorkerSockets {
  const text = env[WORKER_SOCKETS_ENV];
  if (!text) return { mode: 'shared', listen };
  const plan = JSON.parse(text) as WorkerSockets;
  return plan.mode === 'reuseport' ? plan : { mode: 'shared', listen };
}

/**
 * Binds UDP (no reusePort) and then TCP on the port UDP got, and closes both: the port every
 * worker will bind. Port 0: a few tries, as the server's own bind does, for a port free for both.
 */
async function reservePort(at: ListenAddress): Promise<ListenAddress> {
  for (let attempt = 0; ; attempt++) {
    const udp = createSocket({ type: isIPv6(at.host) ? 'udp6' : 'udp4', ipv6Only: isIPv6(at.host) });
    const tcp: Server = createServer();
    let transport: 'udp' | 'tcp' = 'udp';
    try {
      const port = await new Promise<number>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind({ address: at.host, port: at.port, exclusive: true }, () => resolve(udp.address().port));
      });
      transport = 'tcp';
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ host: at.host, port, exclusive: true, ipv6Only: isIPv6(at.host) }, resolve);
      });
      return { host: at.host, port };
    } catch (err) {
      const retry = transport === 'tcp' && at.port === 0 && attempt < 10 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE';
      if (!retry) throw listenError(at, transport, err);
    } finally {
      await new Promise<void>((resolve) => (tcp.listening ? tcp.close(() => resolve()) : resolve()));
      try {
        udp.close();
      } catch {
        // never bound: nothing to close
      }
    }
  }
}
