/**
 * One question to one upstream, over UDP or TCP, bounded by a timeout. Never rejects.
 *
 * UDP uses a new socket per question, so every question leaves from a fresh kernel-chosen random
 * port, and the socket is connected to the upstream: the kernel then drops datagrams from any other
 * address and port, and reports ICMP port-unreachable as ECONNREFUSED (a dead upstream is known at
 * once instead of at the timeout). A datagram that is not the answer to our question (wrong ID or
 * question) is ignored and the wait goes on: it may be forged, and the real answer may still come.
 */

import { createSocket } from 'node:dgram';
import { isIP, Socket as TcpSocket } from 'node:net';
import { stripZone, type HostPort } from '../net/address.js';
import { checkUpstreamReply, type UpstreamMessage } from './message.js';
import { isOutOfFiles, type SocketAllowance } from './socket-budget.js';

export type Outcome =
  | { kind: 'reply'; message: UpstreamMessage }
  /** `fallback`: a truncated answer this upstream did give, for when no upstream gives a whole one. */
  | { kind: 'failed'; reason: string; fallback?: UpstreamMessage; local?: boolean };

/** The try could not start on this host (no socket: the budget spent, or no descriptor left); `local` failures say nothing of the upstream. */
const NO_SOCKET: Outcome = Object.freeze({ kind: 'failed', reason: 'no upstream socket left (open-file budget)', local: true });

function familyOf(host: string): 4 | 6 {
  return isIP(stripZone(host)) === 6 ? 6 : 4;
}

function errorReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ?? e.message ?? String(err);
}

/** A failed exchange's outcome; running out of descriptors is this host's failure, and is reported. */
function failure(err: unknown, sockets: SocketAllowance | undefined): Outcome {
  const reason = errorReason(err);
  if (!isOutOfFiles(reason)) return { kind: 'failed', reason };
  sockets?.outOfFiles(reason);
  return { kind: 'failed', reason, local: true };
}

/**
 * The one way an exchange ends: the first outcome (or the timeout, or the abort) wins, and the
 * timer and the socket go with it. `settled()` tells callbacks that arrive later to do nothing.
 */
function settleOnce(
  resolve: (o: Outcome) => void,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  release: () => void,
): { finish: (o: Outcome) => void; settled: () => boolean } {
  let done = false;
  const onAbort = (): void => finish({ kind: 'failed', reason: 'aborted' });
  const finish = (outcome: Outcome): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    release();
    resolve(outcome);
  };
  const timer = setTimeout(() => finish({ kind: 'failed', reason: 'timeout' }), timeoutMs);
  if (signal?.aborted) queueMicrotask(onAbort);
  else signal?.addEventListener('abort', onAbort, { once: true });
  return { finish, settled: () => done };
}

export interface ExchangeOptions {
  timeoutMs: number;
  /** Record TTLs above this are lowered to it. */
  maxTtl: number;
  /** Ends the exchange early ("aborted"), e.g. when another upstream has answered. */
  signal?: AbortSignal;
  /** Counts the socket against the open-file budget, and hears of descriptors running out. */
  sockets?: SocketAllowance;
}

export function exchangeUdp(upstream: HostPort, query: Buffer, { timeoutMs, maxTtl, signal, sockets }: ExchangeOptions): Promise<Outcome> {
  if (sockets && !sockets.take()) return Promise.resolve(NO_SOCKET);
  return new Promise((resolve) => {
    const family = familyOf(upstream.host);
    const socket = createSocket({ type: family === 6 ? 'udp6' : 'udp4', lookup: (address, _o, cb) => cb(null, address, family) });
    const { finish, settled } = settleOnce(resolve, timeoutMs, signal, () => {
      socket.close();
      sockets?.release();
    });
    const failed = (err: unknown): void => finish(failure(err, sockets));
    socket.on('error', failed);
    // The socket is connected: the kernel delivers only datagrams from the upstream's address and port.
    socket.on('message', (packet) => {
      const check = checkUpstreamReply(packet, query, maxTtl);
      if (check.kind === 'ok') finish({ kind: 'reply', message: check.message });
      else if (check.kind === 'malformed') finish({ kind: 'failed', reason: `malformed reply (${check.reason})` });
    });
    try {
      // With a callback, a failed connect (no route, a link-local address without its zone) is
      // reported there, not as 'error'.
      socket.connect(upstream.port, upstream.host, (err?: Error) => {
        if (settled()) return;
        if (err) return failed(err);
        sockets?.opened();
        try {
          socket.send(query, (e) => e && failed(e));
        } catch (e) {
          failed(e);
        }
      });
    } catch (err) {
      failed(err);
    }
  });
}

/** Over TCP the connection is ours alone: anything but our answer ends the exchange as a failure. */
export function exchangeTcp(upstream: HostPort, query: Buffer, { timeoutMs, maxTtl, signal, sockets }: ExchangeOptions): Promise<Outcome> {
  if (sockets && !sockets.take()) return Promise.resolve(NO_SOCKET);
  return new Promise((resolve) => {
    const socket = new TcpSocket();
    const { finish } = settleOnce(resolve, timeoutMs, signal, () => {
      socket.destroy();
      sockets?.release();
    });
    const chunks: Buffer[] = [];
    let received = 0;
    socket.on('error', (err) => finish(failure(err, sockets)));
    socket.on('close', () => finish({ kind: 'failed', reason: 'connection closed before the answer' }));
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      if (received < 2) return;
      const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      chunks.length = 0;
      chunks.push(all);
      const length = all.readUInt16BE(0);
      if (received < 2 + length) return;
      const check = checkUpstreamReply(all.subarray(2, 2 + length), query, maxTtl);
      if (check.kind === 'ok') finish({ kind: 'reply', message: check.message });
      else finish({ kind: 'failed', reason: `${check.kind} reply over TCP (${check.reason})` });
    });
    const frame = Buffer.allocUnsafe(2 + query.length);
    frame.writeUInt16BE(query.length, 0);
    query.copy(frame, 2);
    try {
      socket.connect({ host: upstream.host, port: upstream.port, noDelay: true }, () => {
        sockets?.opened();
        socket.write(frame);
      });
    } catch (err) {
      finish(failure(err, sockets));
    }
  });
}
