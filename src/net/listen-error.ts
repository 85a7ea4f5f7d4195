/** A bind failure turned into a message that says what to do about it (DNS and HTTP listeners alike). */

import { formatHostPort, type ListenAddress } from './address.js';

export function listenError(at: ListenAddress, transport: 'udp' | 'tcp' | 'http', err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  const where = `cannot listen on ${formatHostPort(at)} (${transport})`;
  if (code === 'EADDRINUSE') return new Error(`${where}: address already in use`, { cause: err });
  if (code === 'EACCES') return new Error(`${where}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)`, { cause: err });
  if (code === 'EADDRNOTAVAIL') return new Error(`${where}: no such local address`, { cause: err });
  return new Error(`${where}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
