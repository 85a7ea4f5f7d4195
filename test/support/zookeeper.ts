/**
 * A real ZooKeeper for tests: Debian's `zookeeper` package (3.8 on bookworm) run as a standalone
 * server (`ZooKeeperServerMain`) on 127.0.0.1, a free port and a temporary data directory, stopped
 * by the test that started it (also when the test fails: `t.after`).
 *
 * Timing: tickTime is 500 ms by default, so the server grants session timeouts from
 * minSessionTimeout = 2 ticks = 1 s (a test ends a session by expiry in about a second) up to
 * maxSessionTimeout, which is set to 60 s (rather than ZooKeeper's 20 ticks = 10 s) so that a
 * registrar asking for Dubbo's or Curator's default of 60 s gets what it would in production.
 * A client asking for less than 1 s gets 1 s; for more than 60 s, 60 s.
 *
 * The JVM starts in about 0.8 s on an idle 2-core machine (measured: `ruok` answered 0.8 s after
 * spawn); the readiness bound is far larger because a busy CI machine must not fail the test.
 */

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import zookeeper from 'node-zookeeper-client';

/** Debian's jars: zookeeper.jar's manifest names its own dependencies (jute, netty, slf4j-api ...). */
export const ZOOKEEPER_JAR = '/usr/share/java/zookeeper.jar';
/** slf4j's simple binding (libslf4j-java, a dependency of libzookeeper-java): the log goes to stderr, which is a file. */
const SLF4J_BINDING = '/usr/share/java/slf4j-simple.jar';
const JAVA = '/usr/bin/java';
const MAIN = 'org.apache.zookeeper.server.ZooKeeperServerMain';

/** How long the server may take to answer `ruok` after spawn (JVM start), and to exit after SIGTERM. */
const READY_MS = 30_000;
const STOP_MS = 5_000;

export interface ZooKeeperOptions {
  /** ZooKeeper's tick (ms); session timeouts are clamped to [2 ticks, maxSessionTimeoutMs]. Default 500. */
  tickTimeMs?: number;
  /** Default 60 000 (Dubbo's and Curator's default session timeout fits). */
  maxSessionTimeoutMs?: number;
}

export interface ZooKeeper {
  port: number;
  /** `127.0.0.1:PORT`, as ZooKeeper clients (and --zookeeper) take it. */
  connectString: string;
  dataDir: string;
  /** Everything the server logged so far (its log file). */
  log(): string;
  /** SIGTERM, wait for exit (SIGKILL after 5 s). Idempotent. */
  stop(): Promise<void>;
  /** stop(), then start again on the same port and data directory (persistent nodes survive; sessions do not, unless they reconnect within their timeout). */
  restart(): Promise<void>;
  /** SIGSTOP: the server hangs with its sockets open (clients see no answers, then time out). */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** A connected node-zookeeper-client client, closed after the test. */
  connect(options?: { sessionTimeoutMs?: number }): Promise<zookeeper.Client>;
  /** Sends a four-letter command (`ruok`, `srvr`, `dump`, `cons`, ...) and returns the whole answer. */
  fourLetter(command: string): Promise<string>;
}

/** A TCP port free on 127.0.0.1 a moment ago. */
async function freeTcpPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object', 'listening server has an address');
  await new Promise((resolve) => server.close(resolve));
  return address.port;
}

/** One four-letter-word exchange: ZooKeeper answers and closes the connection. Bounded. */
export function fourLetter(port: number, command: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let answer = '';
    const timer = setTimeout(() => socket.destroy(new Error(`no answer to ${command} within ${timeoutMs} ms`)), timeoutMs);
    socket.on('connect', () => socket.write(command));
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    socket.on('error', (err) => (clearTimeout(timer), reject(err)));
    socket.on('close', () => (clearTimeout(timer), resolve(answer)));
  });
}

function zooCfg(port: number, dataDir: string, options: Required<ZooKeeperOptions>): string {
  return [
    `tickTime=${options.tickTimeMs}`,
    `maxSessionTimeout=${options.maxSessionTimeoutMs}`,
    `dataDir=${dataDir}`,
    `clientPort=${port}`,
    'clientPortAddress=127.0.0.1',
    // No Jetty admin server on 8080, no JMX: nothing but the client port is opened.
    'admin.enableServer=false',
    // ruok for readiness; the others let a test or a person look at sessions and watches.
    '4lw.commands.whitelist=ruok,srvr,stat,cons,dump,wchs,wchc,mntr',
    // Standalone: no quorum, no reconfiguration.
    'standaloneEnabled=true',
    '',
  ].join('\n');
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (exited(child)) return;
  const done = once(child, 'exit');
  child.kill('SIGCONT'); // a paused JVM cannot act on SIGTERM
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_MS);
  await done;
  clearTimeout(timer);
}

/** Starts a standalone ZooKeeper; the test stops it (registered with `t.after`, so also on failure). */
export async function startZooKeeper(t: { after(fn: () => Promise<void>): void }, options: ZooKeeperOptions = {}): Promise<ZooKeeper> {
  for (const file of [JAVA, ZOOKEEPER_JAR, SLF4J_BINDING]) {
    try {
      accessSync(file);
    } catch {
      assert.fail(`${file} is missing: these tests run a real ZooKeeper (Debian package zookeeper). .ci/run installs it; here: apt-get install zookeeper`);
    }
  }
  const settings: Required<ZooKeeperOptions> = { tickTimeMs: 500, maxSessionTimeoutMs: 60_000, ...options };
  const dir = mkdtempSync(join(tmpdir(), 'svcdns-zk-'));
  const dataDir = join(dir, 'data');
  mkdirSync(dataDir);
  const logFile = join(dir, 'zookeeper.log');
  const clients: zookeeper.Client[] = [];
  let child: ChildProcess | undefined;
  let port = 0;

  const spawnServer = async (): Promise<'ready' | 'port in use'> => {
    writeFileSync(join(dir, 'zoo.cfg'), zooCfg(port, dataDir, settings));
    const fd = openSync(logFile, 'a');
    const args = [
      '-Xmx128m',
      '-XX:+UseSerialGC', // one GC thread: the machine is shared
      '-XX:TieredStopAtLevel=1', // C1 only: faster start, plenty for a test server
      '-Dorg.slf4j.simpleLogger.showDateTime=true',
      '-Dzookeeper.jmx.log4j.disable=true',
      '-cp',
      `${ZOOKEEPER_JAR}:${SLF4J_BINDING}`,
      MAIN,
      join(dir, 'zoo.cfg'),
    ];
    const started = spawn(JAVA, args, { cwd: dir, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    child = started;
    let exitedEarly = false;
    started.once('exit', () => (exitedEarly = true));
    const deadline = Date.now() + READY_MS;
    // Bounded poll of the event "the port answers ruok with imok": the JVM offers no other signal.
    for (;;) {
      if (exitedEarly) {
        if (/Address already in use/.test(readLog())) return 'port in use';
        assert.fail(`ZooKeeper exited while starting (${started.exitCode ?? started.signalCode}):\n${readLog()}`);
      }
      const answer = await fourLetter(port, 'ruok', 1000).catch(() => '');
      if (answer === 'imok') return 'ready';
      if (Date.now() > deadline) {
        await stopChild(started);
        assert.fail(`ZooKeeper did not answer ruok within ${READY_MS} ms:\n${readLog()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const readLog = (): string => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };

  t.after(async () => {
    for (const c of clients) c.close();
    if (child) await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  });

  for (let attempt = 1; ; attempt++) {
    port = await freeTcpPort();
    const outcome = await spawnServer();
    if (outcome === 'ready') break;
    if (attempt >= 5) assert.fail(`ZooKeeper found no free port in 5 tries:\n${readLog()}`);
  }

  const zk: ZooKeeper = {
    port,
    connectString: `127.0.0.1:${port}`,
    dataDir,
    log: readLog,
    stop: async () => {
      if (child) await stopChild(child);
    },
    restart: async () => {
      if (child) await stopChild(child);
      const outcome = await spawnServer();
      assert.equal(outcome, 'ready', `ZooKeeper could not restart on port ${port}: it was taken meanwhile`);
    },
    pause: () => void child?.kill('SIGSTOP'),
    resume: () => void child?.kill('SIGCONT'),
    connect: async ({ sessionTimeoutMs = 30_000 } = {}) => {
      const client = zookeeper.createClient(zk.connectString, { sessionTimeout: sessionTimeoutMs, spinDelay: 100, retries: 0 });
      clients.push(client);
      const connected = once(client, 'connected');
      client.connect();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no ZooKeeper session on ${zk.connectString} within 10 s`)), 10_000);
      });
      try {
        await Promise.race([connected, timeout]);
      } finally {
        clearTimeout(timer);
      }
      return client;
    },
    fourLetter: (command) => fourLetter(port, command),
  };
  return zk;
}
