/**
 * The registrar child process (started by zk-registrar.ts's startRegistrar): one ZooKeeper session,
 * held by this process alone, so a test can SIGKILL it and watch ZooKeeper expire the session.
 *
 * argv: CONNECT_STRING SESSION_TIMEOUT_MS REREGISTER(true|false)
 * stdin: JSON lines {id, op: 'register', nodes: [{path, data (base64), mode}]} | {id, op: 'unregister', path}
 * stdout: JSON lines {id, ok} / {id, ok: false, error}, and events {event: 'connected' | 'reregistered'
 *   | 'disconnected' | 'expired', sessionId, timeout}.
 * stdin's end: the session is closed (its ephemeral nodes go at once), then the process exits 0.
 */

import { once } from 'node:events';
import { createInterface } from 'node:readline';
import zookeeper from 'node-zookeeper-client';
import { remove } from './zk-client.js';
import { applyNodes, type NodeMode, type ZNode } from './zk-registrar.js';

const [connectString = '', timeoutArg = '', reregisterArg = 'true'] = process.argv.slice(2);
const sessionTimeout = Number(timeoutArg);
const reregister = reregisterArg === 'true';

/** Everything registered and not unregistered, in order: what a new session creates again. */
const registered: ZNode[] = [];
let client: zookeeper.Client;
let closing = false;

function say(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

function sessionInfo(): Record<string, unknown> {
  return { sessionId: client.getSessionId().toString('hex'), timeout: client.getSessionTimeout() };
}

async function openSession(): Promise<void> {
  client = zookeeper.createClient(connectString, { sessionTimeout, spinDelay: 100, retries: 0 });
  const current = client;
  current.on('disconnected', () => current === client && !closing && say({ event: 'disconnected' }));
  current.once('expired', () => {
    if (current !== client || closing) return;
    say({ event: 'expired' });
    current.close();
    if (reregister) void recover();
  });
  const connected = once(current, 'connected');
  current.connect();
  await connected;
}

/** As Dubbo's recover() and Curator's reRegisterServices: a new session, every node created again. */
async function recover(): Promise<void> {
  try {
    await openSession();
    await applyNodes(client, registered);
    say({ event: 'reregistered', ...sessionInfo() });
  } catch (err) {
    process.stderr.write(`re-registration failed: ${String(err)}\n`);
    process.exit(1);
  }
}

interface Command {
  id: number;
  op: 'register' | 'unregister';
  nodes?: { path: string; data: string; mode: NodeMode }[];
  path?: string;
}

async function handle(command: Command): Promise<void> {
  try {
    if (command.op === 'register') {
      const nodes = (command.nodes ?? []).map((n): ZNode => ({ path: n.path, data: Buffer.from(n.data, 'base64'), mode: n.mode }));
      await applyNodes(client, nodes);
      registered.push(...nodes);
    } else {
      const path = command.path ?? '';
      await remove(client, path);
      for (let i = registered.length - 1; i >= 0; i--) if (registered[i]!.path === path) registered.splice(i, 1);
    }
    say({ id: command.id, ok: true });
  } catch (err) {
    say({ id: command.id, ok: false, error: String(err) });
  }
}

await openSession();
say({ event: 'connected', ...sessionInfo() });

// Commands run one after another, in the order they came.
let queue = Promise.resolve();
const lines = createInterface({ input: process.stdin });
lines.on('line', (text) => {
  const command = JSON.parse(text) as Command;
  queue = queue.then(() => handle(command));
});
lines.on('close', () => {
  void queue.then(async () => {
    closing = true;
    // Still reconnecting (ZooKeeper just restarted, a loaded machine): closeSession needs a connection.
    if (client.getState() !== zookeeper.State.SYNC_CONNECTED) {
      const reconnected = once(client, 'connected');
      const wait = setTimeout(() => (process.stderr.write('not reconnected within 30 s to close the session\n'), process.exit(1)), 30_000);
      await reconnected;
      clearTimeout(wait);
    }
    const gone = once(client, 'disconnected');
    client.close(); // sends closeSession: ZooKeeper deletes this session's ephemeral nodes now
    const timer = setTimeout(() => (process.stderr.write('session not closed within 8 s\n'), process.exit(1)), 8000);
    await gone;
    clearTimeout(timer);
    process.exit(0);
  });
});
