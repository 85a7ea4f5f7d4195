/**
 * The TCP listener's resource bounds, observed from outside: a client that does not read its
 * replies stops being answered (no unbounded reply queue), and a frame dripped in slower than the
 * idle timeout cannot hold a connection forever.
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { listenTcp } from '../../src/listen/tcp.js';
import { frame } from '../support/client.js';

const log = pino({ level: 'silent' });

/** A 60 KB reply: a 12-byte header echoing the query ID, then padding. */
function bigReply(query: Buffer): Buffer {
  const reply = Buffer.alloc(60_000);
  query.copy(reply, 0, 0, 2);
  return reply;
}

test('a client that does not read stops being answered until it reads; then every reply comes, in order', async (t) => {
  let answered = 0;
  const listener = await listenTcp({ host: '127.0.0.1', port: 0 }, (q) => (answered++, bigReply(q)), { idleTimeoutMs: 10_000 }, log);
  t.after(() => listener.close());
  const QUERIES = 1000;
  const queries = Array.from({ length: QUERIES }, (_, i) => {
    const q = Buffer.alloc(12);
    q.writeUInt16BE(i, 0);
    return q;
  });
  const socket = connect({ host: '127.0.0.1', port: listener.port });
  t.after(() => socket.destroy());
  await once(socket, 'connect');
  socket.pause();
  socket.write(frame(...queries));
  await sleep(500);
  // What the kernel's socket buffers hold is all that may be answered ahead of the reader
  // (a few MB on loopback); without back-pressure all 1000 (60 MB) would be queued at once.
  assert.ok(answered < QUERIES / 4, `answered ${answered} of ${QUERIES} while the client read nothing`);

  const ids: number[] = [];
  let pending = Buffer.alloc(0);
  const done = new Promise<void>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        ids.push(pending.readUInt16BE(2));
        pending = pending.subarray(2 + pending.readUInt16BE(0));
      }
      if (ids.length === QUERIES) resolve();
    });
  });
  socket.resume();
  await Promise.race([done, sleep(20_000)]);
  assert.equal(ids.length, QUERIES);
  assert.deepEqual(ids, queries.map((_, i) => i));
});

test('a frame dripped in slower than the idle timeout allows is cut off', async (t) => {
  const listener = await listenTcp({ host: '127.0.0.1', port: 0 }, () => null, { idleTimeoutMs: 1000 }, log);
  t.after(() => listener.close());
  const socket = connect({ host: '127.0.0.1', port: listener.port });
  t.after(() => socket.destroy());
  await once(socket, 'connect');
  const closed = once(socket, 'close');
  const started = Date.now();
  socket.write(Buffer.from([0x01, 0x00])); // a 256-byte frame, sent one byte every 400 ms
  let sent = 0;
  const drip = setInterval(() => {
    if (!socket.destroyed && sent++ < 20) socket.write(Buffer.from([0]));
  }, 400);
  t.after(() => clearInterval(drip));
  await Promise.race([closed, sleep(6000)]);
  const elapsed = Date.now() - started;
  assert.ok(socket.destroyed || socket.readableEnded, 'closed by the server');
  assert.ok(elapsed < 3000, `closed after ${elapsed} ms though never idle for 1 s`);
});
