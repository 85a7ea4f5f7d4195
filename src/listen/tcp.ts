/**
 * TCP listener: RFC 1035 4.2.2 / RFC 7766 framing (2-byte length prefix), several queries per
 * connection answered concurrently and replied to in order, an idle timeout, and back-pressure (no
 * reading while the client is not reading our replies, or while too many answers are outstanding). Garbage can only cost a connection slot until the idle timeout.
 *
 * Closing is graceful: no new connections; each open one gets the replies to the queries already
 * read (frames handed to the pipeline; bytes after them are read and dropped), then our side is
 * ended (FIN); idle ones are ended at once. A client that does not close its side within
 * `LINGER_MS` after that is cut off. How long answers may take is the pipeline's to bound
 * (src/pipeline/in-flight.ts).
 */

import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { DnsHandler } from '../pipeline/handler.js';
import type { ListenAddress } from '../net/address.js';

export interface TcpListenerOptions {
  /** Close a connection after this long without traffic, ms. */
  idleTimeoutMs: number;
  /** Refuse connections beyond this many at once. */
  maxConnections?: number;
  /** False in a --workers process: the listening socket is the primary's, shared (node:cluster). */
  exclusive?: boolean;
}

export interface TcpListener {
  readonly server: Server;
  readonly port: number;
  /** Stops accepting, lets every connection finish the replies it owes, then resolves once all are closed. */
  close(): Promise<void>;
}

/** Connections one listener holds at once unless told otherwise (the open-file budget counts them). */
export const MAX_CONNECTIONS = 1000;

/** After our side of a closing connection is ended, how long the client has to close its own. */
export const LINGER_MS = 1000;

export function listenTcp(at: ListenAddress, handler: DnsHandler, options: TcpListenerOptions, log: Logger): Promise<TcpListener> {
  /** Each open connection and the function that winds it down. */
  const connections = new Map<Socket, () => void>();
  let closing = false;
  // Half-open: a client may send its queries and close its side; it still gets every reply.
  const server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
    if (closing) {
      // Accepted just before the listening socket closed (or handed over by the --workers primary).
      socket.destroy();
      return;
    }
    connections.set(socket, serveConnection(socket, handler, options.idleTimeoutMs, log));
    socket.on('close', () => connections.delete(socket));
  });
  server.maxConnections = options.maxConnections ?? MAX_CONNECTIONS;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: at.host, port: at.port, ipv6Only: at.host.includes(':'), exclusive: options.exclusive ?? true }, () => {
      server.off('error', reject);
      server.on('error', (err) => log.error({ err }, 'tcp server error'));
      const address = server.address();
      resolve({
        server,
        port: typeof address === 'object' && address ? address.port : at.port,
        close: () =>
          new Promise<void>((done) => {
            closing = true;
            // The callback comes once the listening socket is closed and every connection with it.
            server.close(() => done());
            for (const windDown of connections.values()) windDown();
          }),
      });
    });
  });
}

/** Queries of one connection waiting on upstreams or fetches at once; reading pauses beyond it. */
export const MAX_PENDING_PER_CONNECTION = 32;

/**
 * One connection. Frames are answered as they arrive, concurrently (RFC 7766 6.2.1.1: one slow
 * forwarded question does not hold up the next), and replies are written in the queries' order.
 * Reading pauses while the client does not read (the socket's write buffer is full, resumed on
 * 'drain') and while `MAX_PENDING_PER_CONNECTION` answers are outstanding, so neither a client that
 * never reads nor one that floods questions can make svcdns buffer without bound. Chunks are kept
 * in a list and joined once per frame (no quadratic re-copying for a frame dripped in byte by
 * byte). A partial frame must be complete within the idle timeout, so a slow drip cannot hold a
 * connection slot forever; a connection with answers outstanding is not idle.
 *
 * Returns the function that winds the connection down (the listener is closing): no more frames
 * are answered, the replies owed are written, then our side is ended.
 */
function serveConnection(socket: Socket, handler: DnsHandler, idleTimeoutMs: number, log: Logger): () => void {
  const client = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
  let chunks: Buffer[] = [];
  let buffered = 0;
  let frameDeadline: NodeJS.Timeout | null = null;
  /** Replies in the queries' order; a slot is filled when its answer is ready. */
  const slots: { ready: boolean; reply: Buffer | null }[] = [];
  let pending = 0;
  /** The client has closed its side: close ours once every reply is written. */
  let ended = false;
  /** The listener is closing: answer nothing more, close once every reply owed is written. */
  let windingDown = false;

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

  /** Writes every reply at the head of the order that is ready. */
  const flush = (): void => {
    while (slots.length > 0 && slots[0]!.ready) {
      const { reply } = slots.shift()!;
      if (reply && !socket.destroyed) write(reply);
    }
    maybeEnd();
  };

  /**
   * After the client's end: close once no reply is owed and no whole frame is left to answer.
   * Winding down: close once no reply is owed.
   */
  const maybeEnd = (): void => {
    if (windingDown) {
      if (slots.length === 0 && !socket.destroyed && !socket.writableEnded) {
        socket.end(() => setTimeout(() => socket.destroy(), LINGER_MS).unref());
      }
      return;
    }
    if (!ended || slots.length > 0 || socket.destroyed) return;
    if (buffered >= 2) {
      const head = chunks[0]!.length >= 2 ? chunks[0]! : Buffer.concat(chunks, buffered);
      if (buffered >= 2 + head.readUInt16BE(0)) return;
    }
    socket.end();
  };

  /**
   * Replies not yet written, ready or not, count against the bound: ready ones wait behind a slow
   * one at the head, and would otherwise pile up while the socket keeps reading.
   */
  const mayRead = (): boolean => !socket.writableNeedDrain && slots.length < MAX_PENDING_PER_CONNECTION;

  const answerFrames = (): void => {
    while (!socket.destroyed && !windingDown && buffered >= 2) {
      if (!mayRead()) {
        // Not reading is our doing, not the client's: no partial-frame deadline meanwhile.
        clearDeadline();
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
      if (!(reply instanceof Promise)) {
        if (slots.length === 0) {
          if (reply) write(reply);
        } else slots.push({ ready: true, reply });
        continue;
      }
      const slot = { ready: false, reply: null as Buffer | null };
      slots.push(slot);
      pending++;
      void reply.then((r) => {
        slot.ready = true;
        slot.reply = r;
        pending--;
        if (socket.destroyed) return;
        flush();
        if (socket.isPaused() && mayRead()) socket.resume();
        answerFrames();
      });
    }
    if (buffered > 0 && !frameDeadline && !socket.destroyed && !ended && !windingDown) {
      frameDeadline = setTimeout(() => socket.destroy(), idleTimeoutMs);
    }
    maybeEnd();
  };

  // Idle means nothing sent and no answer outstanding; a connection waiting on answers gets another round.
  socket.on('timeout', () => {
    if (pending === 0) socket.destroy();
    else socket.setTimeout(idleTimeoutMs);
  });
  socket.setTimeout(idleTimeoutMs);
  socket.on('end', () => {
    ended = true;
    clearDeadline();
    answerFrames();
  });
  socket.on('error', (err) => log.debug({ err }, 'tcp connection error'));
  socket.on('close', clearDeadline);
  socket.on('drain', () => {
    if (mayRead()) socket.resume();
    answerFrames();
  });
  socket.on('data', (chunk: Buffer) => {
    if (windingDown) return; // read and dropped: reading on is how the client's close is seen
    chunks.push(chunk);
    buffered += chunk.length;
    answerFrames();
  });

  return () => {
    windingDown = true;
    clearDeadline();
    chunks = [];
    buffered = 0;
    socket.resume();
    maybeEnd();
  };
}
