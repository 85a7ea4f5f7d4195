/**
 * TCP listener: RFC 1035 4.2.2 / RFC 7766 framing (2-byte length prefix), several queries per
 * connection answered in order, an idle timeout, and back-pressure (no answering while the client
 * is not reading our replies). Garbage can only cost a connection slot until the idle timeout.
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

/**
 * One connection. Frames are answered in order, one at a time, and only while the client keeps up:
 * when the socket's write buffer is full, reading pauses and resumes on 'drain', so a client that
 * never reads costs at most what the kernel buffers hold. Chunks are kept in a list and joined once
 * per frame (no quadratic re-copying for a frame dripped in byte by byte). A partial frame must be
 * complete within the idle timeout, so a slow drip cannot hold a connection slot forever.
 */
function serveConnection(socket: Socket, handler: DnsHandler, idleTimeoutMs: number, log: Logger): void {
  const client = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
  let chunks: Buffer[] = [];
  let buffered = 0;
  let frameDeadline: NodeJS.Timeout | null = null;
  /** An answer is being waited for: later frames wait too, so replies keep the queries' order. */
  let waiting = false;

  const clearDeadline = (): void => {
    if (frameDeadline) clearTimeout(frameDeadline);
    frameDeadline = null;
  };

  const write = (reply: Buffer): void => {
    const out = Buffer.allocUnsafe(2 + reply.length);
    out.writeUInt16BE(reply.length, 0);
    reply.copy(out, 2);
    socket.write(out);
  };

  const answerFrames = (): void => {
    while (!socket.destroyed && !waiting && buffered >= 2) {
      if (socket.writableNeedDrain) {
        socket.pause();
        return;
      }
      if (chunks[0]!.length < 2) chunks = [Buffer.concat(chunks, buffered)];
      const length = chunks[0]!.readUInt16BE(0);
      if (buffered < 2 + length) break;
      const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, buffered);
      const message = all.subarray(2, 2 + length);
      const rest = all.subarray(2 + length);
      chunks = rest.length > 0 ? [rest] : [];
      buffered = rest.length;
      clearDeadline();
      const reply = handler(message, 'tcp', client);
      if (reply === null) continue;
      if (!(reply instanceof Promise)) {
        write(reply);
        continue;
      }
      waiting = true;
      void reply.then((r) => {
        waiting = false;
        if (socket.destroyed) return;
        if (r) write(r);
        answerFrames();
      });
      return;
    }
    if (buffered > 0 && !frameDeadline && !socket.destroyed) {
      frameDeadline = setTimeout(() => socket.destroy(), idleTimeoutMs);
    }
  };

  socket.setTimeout(idleTimeoutMs, () => socket.destroy());
  socket.on('error', (err) => log.debug({ err }, 'tcp connection error'));
  socket.on('close', clearDeadline);
  socket.on('drain', () => {
    socket.resume();
    answerFrames();
  });
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    buffered += chunk.length;
    answerFrames();
  });
}
