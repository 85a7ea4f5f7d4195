/**
 * UDP listener: one socket per listen address; bytes in, bytes out, nothing about DNS names.
 *
 * Socket options from docs/udp-facts.md (measured): a `lookup` that returns the address as given (the
 * default runs dns.lookup and a nextTick on every send: +22% throughput without it) and a 1 MiB
 * receive buffer (no kernel drops in bursts). Sends take no callback (see `send`).
 *
 * Closing is graceful: datagrams arriving from then on are dropped unread (the client retries
 * another server), replies still being worked on are sent when ready, and the socket closes after
 * the last one. How long that may take is the pipeline's to bound (src/pipeline/in-flight.ts).
 */

import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Logger } from 'pino';
import type { DnsHandler } from '../pipeline/handler.js';
import type { ListenAddress } from '../net/address.js';
import type { ReusePortOptions } from './reuse-port.js';

export interface UdpListener {
  readonly socket: Socket;
  readonly port: number;
  /** Stops reading queries, sends the replies still owed, then closes the socket. */
  close(): Promise<void>;
}

/**
 * `exclusive` false: in a --workers process, the socket is the primary's, shared with the other
 * workers (node:cluster); each datagram is read by one of them. `reusePort`: in a --workers
 * process, this worker's own socket, one of a SO_REUSEPORT group on the port (Node then binds it
 * here, not through the primary); the kernel spreads the flows over the group.
 */
export function listenUdp(at: ListenAddress, handler: DnsHandler, log: Logger, exclusive = true, reusePort = false): Promise<UdpListener> {
  const family = isIPv6(at.host) ? 6 : 4;
  const options: ReusePortOptions = {
    type: family === 6 ? 'udp6' : 'udp4',
    ipv6Only: family === 6,
    recvBufferSize: 1 << 20,
    lookup: (address, _options, callback) => callback(null, address, family),
    ...(reusePort && { reusePort: true }),
  };
  const socket = createSocket(options);
  let closing = false;
  /** Replies being worked on; when closing, the socket closes as the last one is sent. */
  let pending = 0;
  let lastSent: (() => void) | null = null;
  socket.on('message', (packet, rinfo) => {
    // Port 0 cannot be replied to (Node throws on it): such a source is forged. Drop it unread.
    if (rinfo.port === 0 || closing) return;
    const reply = handler(packet, 'udp', rinfo);
    if (reply === null) return;
    if (!(reply instanceof Promise)) {
      send(reply, rinfo.port, rinfo.address);
      return;
    }
    pending++;
    void reply.then((r) => {
      if (r) send(r, rinfo.port, rinfo.address);
      if (--pending === 0) lastSent?.();
    });
  });
  const send = (reply: Buffer, port: number, address: string): void => {
    try {
      // No callback: with one, Node schedules a nextTick for every send that completed at once
      // (nearly all of them), a measurable cost per reply. A reply that cannot be sent is lost
      // like any datagram; the client retries.
      socket.send(reply, port, address);
    } catch (err) {
      // send() throws synchronously for addresses it cannot use; one bad peer must not stop us.
      log.debug({ err }, 'udp send refused');
    }
  };
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address: at.host, port: at.port, exclusive }, () => {
      socket.off('error', reject);
      socket.on('error', (err) => log.error({ err }, 'udp socket error'));
      resolve({
        socket,
        port: socket.address().port,
        close: () => {
          closing = true;
          const owed = pending === 0 ? Promise.resolve() : new Promise<void>((done) => (lastSent = done));
          return owed.then(() => new Promise<void>((done) => socket.close(() => done())));
        },
      });
    });
  });
}
