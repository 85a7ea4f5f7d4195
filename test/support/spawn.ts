/**
 * Runs the svcdns CLI as a child process, as a user runs it: the compiled dist/cli.js (what the
 * package's `bin` names) when dist/ is up to date with src/, as `npm test` makes it; otherwise from
 * source through tsx, which costs about 0.8 s of CPU more per process (the transpiler, for every
 * process the tests start: CLI runs and --workers processes alike).
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Whether every src/**.ts has its dist/**.js, written after the source last changed. */
export function distIsCurrent(): boolean {
  const src = join(ROOT, 'src');
  const sources = (readdirSync(src, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts'));
  return sources.every((f) => {
    try {
      return statSync(join(ROOT, 'dist', f.replace(/\.ts$/, '.js'))).mtimeMs >= statSync(join(src, f)).mtimeMs;
    } catch {
      return false;
    }
  });
}

/** node's arguments that start the CLI (relative to ROOT, the children's working directory). */
export const CLI: readonly string[] = distIsCurrent() ? ['dist/cli.js'] : ['--import', 'tsx', 'src/cli.ts'];
/** The CLI's entry file as it appears on the command line of its processes (and its workers'). */
export const CLI_ENTRY = CLI.at(-1)!;
if (CLI_ENTRY !== 'dist/cli.js') {
  process.stderr.write('test/support/spawn.ts: dist/ is missing or older than src/, so the CLI runs through tsx (slower); npm test builds dist/ first\n');
}
/** No spawned server forwards to the machine's real resolvers unless the test says so. */
const ENV = { SVCDNS_RESOLV_CONF: '/dev/null' };

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion (bounded: killed after `timeoutMs`). */
export async function runCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 15_000): Promise<Finished> {
  const child = spawn(process.execPath, [...CLI, ...args], { cwd: ROOT, env: { ...process.env, ...ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  // 'close', not 'exit': the exit can come before the last of stderr has been read (Node's docs:
  // "child process stdio streams might still be open"); seen under load on Node 24 as an empty stderr.
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

export interface Running {
  child: ChildProcess;
  /** JSON log lines seen so far on stderr. */
  logs: Record<string, unknown>[];
  /** Resolves with the first log line matching `test` (bounded). */
  waitForLog(test: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts the CLI and leaves it running; the caller must `stop()` it. */
export function startCli(args: string[], env: NodeJS.ProcessEnv = {}): Running {
  return startCommand(process.execPath, [...CLI, ...args], { cwd: ROOT, env });
}

/** The CLI running with DNS and HTTP on free ports (`startListening`). */
export interface Listening {
  cli: Running;
  /** Its DNS port (UDP and TCP). */
  dns: number;
  /** Its HTTP endpoint's port. */
  http: number;
}

/** The port of a `listening` log line's `address` (`IP:PORT`, IPv6 included). */
export const portOf = (line: Record<string, unknown>): number => Number(String(line.address).split(':').pop());

/** Starts the CLI with `args`, DNS and HTTP on free ports; resolves once both listen. The caller stops it. */
export async function startListening(args: string[]): Promise<Listening> {
  const cli = startCli(['--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', ...args]);
  try {
    const http = await cli.waitForLog((l) => String(l.msg).startsWith('listening (http'));
    const dns = await cli.waitForLog((l) => l.msg === 'listening (udp, tcp)');
    return { cli, dns: portOf(dns), http: portOf(http) };
  } catch (err) {
    await cli.stop();
    throw err;
  }
}

/** Starts a program that logs JSON lines on stderr (svcdns as installed elsewhere), like startCli. */
export function startCommand(command: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }): Running {
  const child = spawn(command, args, { cwd: options.cwd, env: { ...process.env, ...ENV, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Record<string, unknown>[] = [];
  const waiters: { test: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  let partial = '';
  child.stderr.on('data', (d: Buffer) => {
    partial += d.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const text of lines) {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        line = { raw: text };
      }
      logs.push(line);
      for (const w of [...waiters]) {
        if (w.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  return {
    child,
    logs,
    waitForLog(test, timeoutMs = 15_000) {
      const seen = logs.find(test);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no such log line within ${timeoutMs} ms; saw: ${JSON.stringify(logs)}`)), timeoutMs);
        waiters.push({ test, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null) return child.exitCode;
      const exited = once(child, 'exit') as Promise<[number | null]>;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      const [code] = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
