/**
 * A real dnsmasq (Debian's dnsmasq-base) for tests: started on 127.0.0.1 and a free port with the
 * local data the test gives as flags and nothing else (no upstreams of its own, no /etc files read;
 * `--local=/test/` makes it answer NXDOMAIN for unknown names under .test and REFUSED elsewhere),
 * stopped by the test that started it.
 */

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { accessSync, constants } from 'node:fs';
import { createServer } from 'node:net';
import type { TestContext } from 'node:test';
import { buildQuery, udpExchange } from './client.js';

export const DNSMASQ = '/usr/sbin/dnsmasq';
/** dnsmasq's TTL for all its local data (--local-ttl). */
export const TTL = 60;

/** The name startDnsmasq asks dnsmasq directly (left out of queriesSeen). */
export const PROBE = 'probe.example.test';

export interface Dnsmasq {
  /** `127.0.0.1:PORT`, as --upstream takes it. */
  address: string;
  port: number;
  /** Everything dnsmasq wrote to stderr so far: its log, queries included (--log-queries). */
  log(): string;
  stop(): Promise<void>;
}

/** A UDP and TCP port free on 127.0.0.1 a moment ago (dnsmasq binds both). */
export async function freePort(): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const udp = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, '127.0.0.1', () => resolve());
    });
    const port = udp.address().port;
    const tcp = createServer();
    const free = await new Promise<boolean>((resolve) => {
      tcp.once('error', () => resolve(false));
      tcp.listen(port, '127.0.0.1', () => resolve(true));
    });
    udp.close();
    if (free) {
      await new Promise((resolve) => tcp.close(resolve));
      return port;
    }
    if (attempt >= 20) throw new Error('no port free for both UDP and TCP on 127.0.0.1 after 20 tries');
  }
}

function dnsmasqArgs(port: number, data: readonly string[]): string[] {
  return [
    '--keep-in-foreground',
    '--conf-file=/dev/null', // no /etc/dnsmasq.conf, no /etc/dnsmasq.d
    '--no-resolv', // no upstreams: nothing leaves loopback
    '--no-hosts',
    '--bind-interfaces',
    '--listen-address=127.0.0.1',
    `--port=${port}`,
    '--local=/test/',
    `--local-ttl=${TTL}`,
    '--pid-file=', // none (as root it would write /var/run/dnsmasq.pid)
    // Stay the user we are: as root dnsmasq would switch to nobody and the group dip, which fails
    // where those ids are not mapped (rootless containers). Ignored when not started as root.
    '--user=root',
    '--group=root',
    '--log-facility=-',
    '--log-queries',
    ...data,
  ];
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = once(child, 'exit');
  // SIGTERM: dnsmasq also ends the children it forks for TCP connections.
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  return exited.then(() => clearTimeout(timer));
}

/** Starts dnsmasq serving `data` (its flags) on a free port (another if that one was taken meanwhile); the test stops it. */
export async function startDnsmasq(t: Pick<TestContext, 'after'>, data: readonly string[]): Promise<Dnsmasq> {
  try {
    accessSync(DNSMASQ, constants.X_OK);
  } catch {
    assert.fail(`${DNSMASQ} is not installed: these tests forward to a real dnsmasq (Debian package dnsmasq-base). .ci/run installs it; here: apt-get install dnsmasq-base`);
  }
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const child = spawn(DNSMASQ, dnsmasqArgs(port, data), { stdio: ['ignore', 'ignore', 'pipe'] });
    t.after(() => stopChild(child));
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const outcome = await new Promise<string>((resolve) => {
      const timer = setTimeout(() => resolve('not started within 5 s'), 5000);
      const done = (why: string) => {
        clearTimeout(timer);
        resolve(why);
      };
      child.once('error', (err) => done(`cannot run: ${err.message}`));
      child.once('exit', (code, signal) => done(`exited (${signal ?? `status ${code}`})`));
      child.stderr.on('data', () => /started, version/.test(stderr) && done('started'));
    });
    if (outcome !== 'started') {
      await stopChild(child);
      if (/Address already in use/.test(stderr) && attempt < 5) continue;
      assert.fail(`dnsmasq ${outcome}:\n${stderr}`);
    }
    // It has bound its sockets before it says "started"; one question makes sure it answers.
    const probe = await udpExchange(port, buildQuery(PROBE, 'A'), 2000);
    assert.ok(probe, `dnsmasq on port ${port} did not answer a probe:\n${stderr}`);
    return { address: `127.0.0.1:${port}`, port, log: () => stderr, stop: () => stopChild(child) };
  }
}

/** dnsmasq's log lines for the questions it received, e.g. 'query[A] www.example.test'. */
export function queriesSeen(d: Dnsmasq): string[] {
  return [...d.log().matchAll(/query\[(\w+)\] (\S+) from /g)].filter((m) => m[2] !== PROBE).map((m) => `query[${m[1]}] ${m[2]}`);
}

