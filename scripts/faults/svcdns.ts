/**
 * svcdns as the fault suite runs it: the built CLI (dist/cli.js) as a child process on 127.0.0.1
 * and a kernel-chosen port, its JSON log lines kept with the moment each arrived (so a row can say
 * when "failing" and "recovered" were logged), and every process started here stopped by
 * `stopAllSvcdns` (the suite calls it after each row, on errors and on SIGINT).
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface LogLine {
  /** performance.now() when the line arrived. */
  at: number;
  level: number;
  msg: string;
  fields: Record<string, unknown>;
}

export interface Svcdns {
  readonly pid: number;
  readonly port: number;
  readonly logs: LogLine[];
  readonly child: ChildProcess;
  /** Whether the process is still running. */
  alive(): boolean;
  /** Resolves with the first log line (seen or to come) matching `test`; rejects after `timeoutMs`. */
  waitForLog(test: (l: LogLine) => boolean, timeoutMs: number): Promise<LogLine>;
  /** Open file descriptors of the process now (/proc/PID/fd). */
  openFiles(): number;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Run under `prlimit --nofile=N:N` (the process's open-file limit, soft and hard). */
  nofile?: number;
  /** Pin to a core with `taskset -c`. */
  core?: number;
}

const running = new Set<Svcdns>();

/** No svcdns here forwards to the machine's real resolvers unless a row gives --upstream. */
const ENV = { ...process.env, SVCDNS_RESOLV_CONF: '/dev/null' };

/** Starts svcdns with `args` (plus --listen 127.0.0.1:0 and --log-format json) and waits until it listens. */
export async function startSvcdns(args: string[], options: StartOptions = {}): Promise<Svcdns> {
  let command = process.execPath;
  let argv = ['dist/cli.js', '--listen', '127.0.0.1:0', '--log-format', 'json', ...args];
  // Both wrappers exec, so the pid is svcdns's own.
  if (options.nofile !== undefined) [command, argv] = ['prlimit', [`--nofile=${options.nofile}:${options.nofile}`, command, ...argv]];
  if (options.core !== undefined) [command, argv] = ['taskset', ['-c', String(options.core), command, ...argv]];
  const child = spawn(command, argv, { cwd: ROOT, env: ENV, stdio: ['ignore', 'ignore', 'pipe'] });
  if (child.pid === undefined) throw new Error('svcdns did not start');
  const logs: LogLine[] = [];
  const waiters = new Set<(l: LogLine) => void>();
  let partial = '';
  let exited = false;
  child.stderr.on('data', (d: Buffer) => {
    partial += d.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const text of lines) {
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(text) as Record<string, unknown>;
      } catch {
        rec = { level: 50, msg: text };
      }
      const line: LogLine = { at: performance.now(), level: Number(rec.level ?? 30), msg: typeof rec.msg === 'string' ? rec.msg : '', fields: rec };
      logs.push(line);
      for (const w of [...waiters]) w(line);
    }
  });
  const exitedPromise = once(child, 'exit').then(() => {
    exited = true;
  });
  const pid = child.pid;
  const svcdns: Svcdns = {
    pid,
    port: 0,
    logs,
    child,
    alive: () => !exited,
    waitForLog(test, timeoutMs) {
      const seen = logs.find(test);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`svcdns: no such log line within ${timeoutMs} ms; last lines: ${logs.slice(-5).map((l) => l.msg).join(' | ')}`));
        }, timeoutMs);
        const check = (l: LogLine): void => {
          if (!test(l)) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(l);
        };
        waiters.add(check);
      });
    },
    openFiles: () => readdirSync(`/proc/${pid}/fd`).length,
    async stop() {
      running.delete(svcdns);
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exitedPromise;
      clearTimeout(timer);
    },
  };
  running.add(svcdns);
  try {
    const line = await Promise.race([
      svcdns.waitForLog((l) => l.msg === 'listening (udp, tcp)', 20_000),
      exitedPromise.then(() => {
        throw new Error(`svcdns exited at start: ${logs.map((l) => l.msg).join(' | ')}`);
      }),
    ]);
    (svcdns as { port: number }).port = Number(String(line.fields.address).split(':').pop());
  } catch (err) {
    await svcdns.stop();
    throw err;
  }
  return svcdns;
}

export async function stopAllSvcdns(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop()));
}

const interrupts = new Set<() => void>();

/** Registers what a signal handler must do for a row's other processes; returns the unregistration. */
export function atInterrupt(kill: () => void): () => void {
  interrupts.add(kill);
  return () => interrupts.delete(kill);
}

/** For a signal handler that cannot wait: SIGKILL every svcdns, and whatever rows registered. */
export function killAllNow(): void {
  for (const s of running) s.child.kill('SIGKILL');
  for (const kill of interrupts) kill();
}

/** The long flags `svcdns --help` lists: a row passes a mechanism's flag only where it exists. */
export async function supportedFlags(): Promise<Set<string>> {
  const child = spawn(process.execPath, ['dist/cli.js', '--help'], { cwd: ROOT, env: ENV, stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await once(child, 'exit');
  return new Set([...out.matchAll(/^\s+(?:-\w, )?--([a-z][a-z0-9-]*)/gm)].map((m) => m[1]!));
}
