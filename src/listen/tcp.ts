/**
 * TCP listener: RFC 1035 4.2.2 / RFC 7766 framing (2-byte length prefix), several queries per
 * connection answered concurrently and replied to in order, and fairness under abuse:
 * - the connection table (src/listen/tcp-table.ts): a per-client cap, a global bound where the
 *   oldest idle connection makes room (RFC 7766 6.2.3), an idle timeout that shrinks as it fills;
 * - pipelined work bounded: at most `FRAMES_PER_TURN` queries taken from one connection per
 *   event-loop turn (the rest on a later turn, so UDP and other connections get theirs between),
 *   and no reading while the client is not reading our replies or too many answers are
 *   outstanding (RFC 7766 allows pipelining, not unbounded memory).
 * Garbage can only cost a connection slot until the idle timeout.
 *
 * Closing is graceful: no new connections; each open one gets the replies to the queries already
 * read (frames handed to the pipeline; bytes after them are read and dropped), then our side is
 * ended (FIN); idle ones are ended at once. A client that has not read the replies and closed its
 * side within `LINGER_MS` after that is cut off. How long answers may take is the pipeline's to bound
 * (src/pipeline/in-flight.ts).
 */

import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { StateEvent, Topic, TcpEvent } from '../diagnostics/channels.js';
import type { DnsHandler } from '../pipeline/handler.js';
import { formatHostPort, type ListenAddress } from '../net/address.js';
import { ConnectionTable, type TableEntry, type TcpClose } from './tcp-table.js';

export interface TcpListenerOptions {
  /** Close a connection after this long without a query (while the table is at most half full), ms. */
  idleTimeoutMs: number;
  /** Connections open at once; at the bound the oldest idle one is closed to make room. Default 1000. */
  maxConnections?: number;
  /** Connections open at once from one client (IPv4 address, IPv6 /64); more are refused. Default 16. */
  maxPerClient?: number;
  /** Clients the per-client cap does not apply to; none when absent. */
  exempt?: (address: string) => boolean;
  /** False in a --workers process: the listening socket is the primary's, shared (node:cluster). */
  exclusive?: boolean;
  /** Where connections refused or closed by the table's rules are told (metrics count them). */
  events?: Topic<TcpEvent>;
  /** Where the table filling up (and having room again) is told: logged once each, shown in /status. */
  state?: Topic<StateEvent>;
}

export interface TcpListener {
  readonly server: Server;
  readonly port: number;
  /** Connections open now. */
  readonly connections: number;
  /** Stops accepting, lets every connection finish the replies it owes, then resolves once all are closed. */
  close(): Promise<void>;
}

/** After our side of a closing connection is ended, how long the client has to close its own. */
export const LINGER_MS = 1000;

export const DEFAULT_MAX_CONNECTIONS = 1000;
export const DEFAULT_MAX_PER_CLIENT = 16;

export function listenTcp(at: ListenAddress, handler: DnsHandler, options: TcpListenerOptions, log: Logger): Promise<TcpListener> {
  /** Each open connection and the function that winds it down. */
  const connections = new Map<Socket, () => void>();
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const table = new ConnectionTable<TableEntry>({
    maxConnections,
    maxPerClient: options.maxPerClient ?? DEFAULT_MAX_PER_CLIENT,
    idleTimeoutMs: options.idleTimeoutMs,
    ...(options.exempt && { exempt: options.exempt }),
  });
  const events = options.events;
  /** `tcp HOST:PORT` once bound: the state key of this listener's table. */
  let stateKey = '';
  /** The table was full (a connection evicted or refused): said once, until it is half empty again. */
  let full = false;
  const setFull = (now: boolean): void => {
    full = now;
    options.state?.publish(
      now
        ? {
            key: stateKey,
            subject: 'connections',
            problem: 'connection table full',
            level: 'warn',
            message: 'tcp connection table full: closing the connections idle longest to make room',
            fields: { maxConnections },
            log,
          }
        : { key: stateKey, subject: 'connections', problem: null, message: 'tcp connection table has room again', fields: { open: table.size, maxConnections }, log },
    );
  };
  const tell = (reason: TcpClose): void => {
    if (events?.hasSubscribers) events.publish({ reason });
    if (!full && (reason === 'evicted' || reason === 'full')) setFull(true);
  };
  let closing = false;
  // Half-open: a client may send its queries and close its side; it still gets every reply.
  const server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
    if (closing) {
      // Accepted just before the listening socket closed (or handed over by the --workers primary).
      socket.destroy();
      return;
    }
    const { client, refused } = table.admit(socket.remoteAddress ?? '');
    if (refused) {
      // Closed at once: no reply, no state kept. RFC 7766 6.2.3 lets a server cap a client's connections.
      socket.destroy();
      tell(refused);
      return;
    }
    connections.set(socket, serveConnection(socket, handler, table, client, tell, log));
    socket.on('close', () => {
      connections.delete(socket);
      if (full && table.size <= maxConnections / 2) setFull(false);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: at.host, port: at.port, ipv6Only: at.host.includes(':'), exclusive: options.exclusive ?? true }, () => {
      server.off('error', reject);
      server.on('error', (err) => log.error({ err }, 'tcp server error'));
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : at.port;
      stateKey = `tcp ${formatHostPort({ host: at.host, port })}`;
      resolve({
        server,
        port,
        get connections() {
          return table.size;
        },
        close: () =>
          new Promise<void>((done) => {
            closing = true;
            table.stop();
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
 * Queries taken from one connection in one event-loop turn; the rest wait for a later turn
 * (setImmediate), its socket paused meanwhile. A 64 KiB read holds some 2,000 small queries: taken
 * at once, they would keep UDP and every other connection waiting until all are answered.
 */
export const FRAMES_PER_TURN = 8;

/**
 * One connection. Frames are answered as they arrive, concurrently (RFC 7766 6.2.1.1: one slow
 * forwarded question does not hold up the next), and replies are written in the queries' order.
 * Reading pauses while the client does not read (the socket's write buffer is full, resumed on
 * 'drain'), while `MAX_PENDING_PER_CONNECTION` answers are outstanding, and until the next turn
 * once `FRAMES_PER_TURN` queries were taken, so neither a client that never reads nor one that
 * floods questions can make svcdns buffer without bound or keep others waiting. Chunks are kept
 * in a list and joined once per frame (no quadratic re-copying for a frame dripped in byte by
 * byte).
 *
 * Idle time (the table's timer closes the connection) counts from the last query's first byte or
 * the last answer finished: a partial frame must be complete within the idle timeout, so a slow
 * drip cannot hold a connection slot forever; a connection with answers outstanding is not idle.
 *
 * Returns the function that winds the connection down (the listener is closing): no more frames
 * are answered, the replies owed are written, then our side is ended.
 */
function serveConnection(
  socket: Socket,
  handler: DnsHandler,
  table: ConnectionTable<TableEntry>,
  clientKey: string,
  tell: (reason: TcpClose) => void,
  log: Logger,
): () => void {
  const client = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
  const entry: TableEntry = {
    client: clientKey,
    close: (why) => {
      tell(why);
      socket.destroy();
    },
  };
  table.add(entry);
  let chunks: Buffer[] = [];
  let buffered = 0;
  /** Replies in the queries' order; a slot is filled when its answer is ready. */
  const slots: { ready: boolean; reply: Buffer | null }[] = [];
  let pending = 0;
  /** Frames left for a later turn: a setImmediate is scheduled to take them. */
  let deferred = false;
  /** The client has closed its side: close ours once every reply is written. */
  let ended = false;
  /** The listener is closing: answer nothing more, close once every reply owed is written. */
  let windingDown = false;

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
        // Counted from now, not from the end's flush: a client that does not read would never let
        // that come, and would hold the stop up forever.
        socket.end();
        setTimeout(() => socket.destroy(), LINGER_MS).unref();
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

  /** Reads while there is room and no frames wait for a later turn; pauses otherwise. */
  const updateReading = (): void => {
    if (socket.destroyed || windingDown) return;
    if (!deferred && mayRead()) {
      if (socket.isPaused()) socket.resume();
    } else if (!socket.isPaused()) socket.pause();
  };

  const nextTurn = (): void => {
    deferred = false;
    answerFrames();
  };

  const answerFrames = (): void => {
    if (deferred) return; // the turn's share is taken: nextTurn goes on
    let taken = 0;
    while (!socket.destroyed && !windingDown && buffered >= 2 && mayRead()) {
      if (chunks[0]!.length < 2) chunks = [Buffer.concat(chunks, buffered)];
      const length = chunks[0]!.readUInt16BE(0);
      if (buffered < 2 + length) break;
      if (taken === FRAMES_PER_TURN) {
        deferred = true;
        setImmediate(nextTurn);
        break;
      }
      taken++;
      const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, buffered);
      const message = all.subarray(2, 2 + length);
      const rest = all.subarray(2 + length);
      chunks = rest.length > 0 ? [rest] : [];
      buffered = rest.length;
      const reply = handler(message, 'tcp', client);
      if (!(reply instanceof Promise)) {
        if (slots.length === 0) {
          if (reply) write(reply);
        } else slots.push({ ready: true, reply });
        continue;
      }
      const slot = { ready: false, reply: null as Buffer | null };
      slots.push(slot);
      if (pending++ === 0) table.markBusy(entry);
      void reply.then((r) => {
        slot.ready = true;
        slot.reply = r;
        if (--pending === 0) table.markIdle(entry);
        if (socket.destroyed) return;
        flush();
        answerFrames();
      });
    }
    // A query taken is activity: idle time starts again (unless answers are outstanding).
    if (taken > 0 && pending === 0) table.markIdle(entry);
    updateReading();
    maybeEnd();
  };

  socket.on('end', () => {
    ended = true;
    answerFrames();
  });
  socket.on('error', (err) => log.debug({ err }, 'tcp connection error'));
  socket.on('close', () => table.remove(entry));
  socket.on('drain', answerFrames);
  socket.on('data', (chunk: Buffer) => {
    if (windingDown) return; // read and dropped: reading on is how the client's close is seen
    // A new query's first byte is activity; more bytes of one begun are not (a drip stays idle).
    if (buffered === 0 && pending === 0) table.markIdle(entry);
    chunks.push(chunk);
    buffered += chunk.length;
    answerFrames();
  });

  return () => {
    windingDown = true;
    chunks = [];
    buffered = 0;
    socket.resume();
    maybeEnd();
  };
}
