/**
 * TCP listener: RFC 1035 4.2.2 / RFC 7766 framing (2-byte length prefix), several queries per
 * connection answered in order, an idle timeout, and back-pressure (stop reading while the client
 * is not reading our replies). A connection never buffers more than one incomplete frame
 * (at most 65,537 bytes), so garbage can only cost a connection slot until the idle timeout.
 */

import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { ListenAddress } from '../config.js';
import type { DnsHandler } from '../resolver.js';

export interface TcpListenerOptions {
  /** Close a connection after this long without traffic, ms. */
  idleTimeoutMs: number;
  /** Refuse connections beyond this many at once. */
  maxConnections?: number;
}

export interface TcpListener {
  readonly server: Server;
  readonly port: number;
  close(): Promise<void>;
}

export function listenTcp(at: ListenAddress, handler: DnsHandler, options: TcpListenerOptions, log: Logger): Promise<TcpListener> {
  const sockets = new Set<Socket>();
  const server = createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    serveConnection(socket, handler, options.idleTimeoutMs, log);
  });
  server.maxConnections = options.maxConnections ?? 1000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: at.host, port: at.port, ipv6Only: at.host.includes(':'), exclusive: true }, () => {
      server.off('error', reject);
      server.on('error', (err) => log.error({ err }, 'tcp server error'));
      const address = server.address();
      resolve({
        server,
        port: typeof address === 'object' && address ? address.port : at.port,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

function serveConnection(socket: Socket, handler: DnsHandler, idleTimeoutMs: number, log: Logger): void {
  let pending: Buffer = Buffer.alloc(0);
  socket.setTimeout(idleTimeoutMs, () => socket.destroy());
  socket.on('error', (err) => log.debug({ err }, 'tcp connection error'));
  socket.on('drain', () => socket.resume());
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 2) {
      const length = pending.readUInt16BE(0);
      if (pending.length < 2 + length) break;
      const message = pending.subarray(2, 2 + length);
      pending = pending.subarray(2 + length);
      const reply = handler(message, 'tcp');
      if (!reply || socket.destroyed) continue;
      const frame = Buffer.allocUnsafe(2 + reply.length);
      frame.writeUInt16BE(reply.length, 0);
      reply.copy(frame, 2);
      if (!socket.write(frame)) socket.pause();
    }
  });
}
