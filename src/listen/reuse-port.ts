/**
 * Whether this Node (and kernel) can give each --workers process its own UDP socket on one port:
 * dgram's `reusePort` (SO_REUSEPORT; Node 22.12+ and 24 on Linux), where the kernel spreads the
 * flows over the sockets.
 *
 * Detected by trying it, not by parsing the version: two sockets asking for `reusePort` are bound
 * to one loopback port. A Node without the option ignores it (the second bind fails with
 * EADDRINUSE), a platform without SO_REUSEPORT makes the bind fail: either way the answer is no.
 */

import { createSocket, type Socket, type SocketOptions } from 'node:dgram';

/** dgram's socket options with `reusePort` (Node 22.12+; not in the @types/node this tree builds with). */
export type ReusePortOptions = SocketOptions & { reusePort?: boolean };

let detected: Promise<boolean> | null = null;

/** Whether dgram's reusePort works here; tried once per process. */
export function reusePortAvailable(): Promise<boolean> {
  detected ??= tryReusePort();
  return detected;
}

async function tryReusePort(): Promise<boolean> {
  const sockets: Socket[] = [];
  const bind = (port: number): Promise<number> =>
    new Promise((resolve, reject) => {
      const socket = createSocket({ type: 'udp4', reusePort: true } as ReusePortOptions);
      sockets.push(socket);
      socket.once('error', reject);
      socket.bind({ address: '127.0.0.1', port }, () => resolve(socket.address().port));
    });
  try {
    const port = await bind(0);
    await bind(port);
    return true;
  } catch {
    return false;
  } finally {
    for (const s of sockets) {
      try {
        s.close();
      } catch {
        // never bound: nothing to close
      }
    }
  }
}
