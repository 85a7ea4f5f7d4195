/**
 * The --workers socket plan (src/listen/worker-sockets.ts) in-process: the choice against this
 * Node, the primary's reservation of each address (port 0 decided, a held port refused), and the
 * plan's way to the worker through its environment.
 */

import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { test } from 'node:test';
import { reusePortAvailable } from '../../src/listen/reuse-port.js';
import { encodeWorkerSockets, planWorkerSockets, workerSocketsFrom } from '../../src/listen/worker-sockets.js';
import { nodeHasReusePort } from '../support/workers.js';

const LOOPBACK = [{ host: '127.0.0.1', port: 0 }];

test('reusePort is detected as this Node has it (22.12+)', async () => {
  assert.equal(await reusePortAvailable(), nodeHasReusePort(), `node ${process.version}`);
});

test('shared: the addresses as given, nothing bound', async () => {
  assert.deepEqual(await planWorkerSockets('shared', LOOPBACK), { mode: 'shared', listen: LOOPBACK });
});

test('auto: reuseport with port 0 decided where Node has it, else shared as given', async () => {
  const plan = await planWorkerSockets('auto', LOOPBACK);
  if (!nodeHasReusePort()) {
    assert.deepEqual(plan, { mode: 'shared', listen: LOOPBACK });
    return;
  }
  assert.equal(plan.mode, 'reuseport');
  assert.equal(plan.listen.length, 1);
  assert.equal(plan.listen[0]!.host, '127.0.0.1');
  assert.ok(plan.listen[0]!.port > 0, `a port decided: ${plan.listen[0]!.port}`);
  // Reserved, then let go: the port is free for the workers to bind.
  const again = createSocket('udp4');
  again.bind(plan.listen[0]!.port, '127.0.0.1');
  await once(again, 'listening');
  again.close();
});

test('reuseport: a port already held is refused with the listen error; where Node lacks reusePort, the reason', async () => {
  const held = createSocket('udp4');
  held.bind(0, '127.0.0.1');
  await once(held, 'listening');
  try {
    const at = [{ host: '127.0.0.1', port: held.address().port }];
    await assert.rejects(
      planWorkerSockets('reuseport', at),
      nodeHasReusePort() ? /cannot listen on 127\.0\.0\.1:\d+ \(udp\): address already in use/ : /--worker-sockets reuseport: node v\S+ cannot give each worker its own UDP socket/,
    );
  } finally {
    held.close();
  }
});

test("the plan reaches the worker through its environment; without one, the worker shares", () => {
  const plan = { mode: 'reuseport' as const, listen: [{ host: '127.0.0.1', port: 8600 }, { host: '::1', port: 8600 }] };
  assert.deepEqual(workerSocketsFrom(encodeWorkerSockets(plan), LOOPBACK), plan);
  assert.deepEqual(workerSocketsFrom(encodeWorkerSockets({ mode: 'shared', listen: [{ host: '127.0.0.1', port: 1 }] }), LOOPBACK), { mode: 'shared', listen: LOOPBACK });
  assert.deepEqual(workerSocketsFrom({}, LOOPBACK), { mode: 'shared', listen: LOOPBACK });
});
