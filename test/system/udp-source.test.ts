/**
 * Forged UDP sources: a datagram "from" port 0 can never be answered (and sending to port 0 throws
 * in Node). Sending one needs a raw socket, so this test needs root or CAP_NET_RAW, as CI has.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { buildQuery, decode, udpExchange } from '../support/client.js';
import { startServer } from '../support/server.js';

const run = promisify(execFile);

/** Sends `payload` to 127.0.0.1:port in a hand-built UDP header whose source port is 0. */
const SEND_FROM_PORT_0 = `
import socket, struct, sys
port = int(sys.argv[1]); payload = bytes.fromhex(sys.argv[2])
udp = struct.pack('>HHHH', 0, port, 8 + len(payload), 0) + payload
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
s.sendto(udp, ('127.0.0.1', 0))
`;

const isRoot = process.getuid?.() === 0;

test('a query from source port 0 is dropped and the server keeps serving', { skip: isRoot ? false : 'needs root for a raw socket (CI runs as root)' }, async (t) => {
  const s = await startServer();
  t.after(() => s.close());
  const query = buildQuery('web.service.consul', 'A');
  for (let i = 0; i < 3; i++) await run('python3', ['-c', SEND_FROM_PORT_0, String(s.port), query.toString('hex')], { timeout: 5000 });
  // The listener handles datagrams in order: once this reply arrives, the forged ones were seen.
  const reply = await udpExchange(s.port, buildQuery('web.service.consul', 'A', { id: 99 }));
  assert.ok(reply, 'still answering');
  assert.equal(decode(reply).id, 99);
  assert.equal(decode(reply).answers?.length, 3);
});
