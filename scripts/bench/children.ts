/**
 * Child processes of the DNS benchmark: each started pinned to one core (`taskset -c`, which execs,
 * so the pid is the server's own), its stderr kept (the last lines, for error messages), and all of
 * them stopped together at the end, on errors and on Ctrl-C.
 */

import { execFileSync, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

export interface Child {
  readonly name: string;
  readonly pid: number;
  readonly process: ChildProcess;
  /** Set once the process has exited. */
  exited: { code: number | null; signal: NodeJS.Signals | null } | null;
  /** Lines written to stderr (all of them: the servers here are quiet unless something is wrong). */
  readonly stderrLines: string[];
  /** Resolves when the process exits. */
  readonly done: Promise<void>;
}

export interface SpawnOptions {
  /** Pin to this CPU core, or list of cores ('0,1'), with `taskset -c`. */
  core?: number | string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Where stdout goes: ignored by default, or an open file descriptor. */
  stdout?: 'ignore' | number;
}

const STDERR_LINES_KEPT = 200;

/** Every process the benchmark started, so that one call stops them all. */
export class Children {
  readonly #running = new Set<Child>();
  readonly #paused = new Set<Child>();

  spawn(name: string, command: string, args: string[], options: SpawnOptions = {}): Child {
    const [file, argv] = options.core === undefined ? [command, args] : ['taskset', ['-c', String(options.core), command, ...args]];
    const stdio: StdioOptions = ['ignore', options.stdout ?? 'ignore', 'pipe'];
    const proc = spawn(file, argv, { stdio, env: options.env ?? process.env, cwd: options.cwd });
    if (proc.pid === undefined) throw new Error(`could not start ${name} (${command})`);
    let partial = '';
    let resolveDone!: () => void;
    const child: Child = {
      name,
      pid: proc.pid,
      process: proc,
      exited: null,
      stderrLines: [],
      done: new Promise<void>((resolve) => (resolveDone = resolve)),
    };
    proc.stderr?.on('data', (d: Buffer) => {
      partial += d.toString();
      const lines = partial.split('\n');
      partial = lines.pop()!;
      child.stderrLines.push(...lines);
      if (child.stderrLines.length > STDERR_LINES_KEPT) child.stderrLines.splice(0, child.stderrLines.length - STDERR_LINES_KEPT);
    });
    proc.on('error', (err) => child.stderrLines.push(`spawn error: ${err.message}`));
    proc.on('exit', (code, signal) => {
      if (partial) child.stderrLines.push(partial);
      child.exited = { code, signal };
      this.#running.delete(child);
      resolveDone();
    });
    this.#running.add(child);
    return child;
  }

  /**
   * SIGSTOPs `children` (those still running) and returns the function that SIGCONTs them. A
   * stopped server cannot run its timers or its garbage collector (V8 collects after a burst of
   * work has ended) on the core of the server being measured.
   */
  pause(children: Iterable<Child>): () => void {
    const paused = [...children].filter((c) => !c.exited && this.#running.has(c));
    for (const c of paused) {
      c.process.kill('SIGSTOP');
      this.#paused.add(c);
    }
    return () => {
      for (const c of paused) {
        if (!c.exited) c.process.kill('SIGCONT');
        this.#paused.delete(c);
      }
    };
  }

  /** SIGTERM, then SIGKILL after `graceMs` for whatever is still running. */
  async stop(child: Child, graceMs = 2000): Promise<void> {
    if (child.exited) return;
    // A stopped process would not act on SIGTERM until continued.
    if (this.#paused.delete(child)) child.process.kill('SIGCONT');
    child.process.kill('SIGTERM');
    const timer = setTimeout(() => child.process.kill('SIGKILL'), graceMs);
    await child.done;
    clearTimeout(timer);
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.#running].map((c) => this.stop(c)));
  }

  /** For a signal handler that must not wait: SIGKILL whatever is left. */
  killAllNow(): void {
    for (const c of this.#running) c.process.kill('SIGKILL');
  }
}

/** Throws, with the end of its stderr, if the process is no longer running. */
export function assertAlive(child: Child): void {
  if (!child.exited) return;
  const tail = child.stderrLines.slice(-10).join('\n  ');
  throw new Error(`${child.name} (pid ${child.pid}) exited (code ${child.exited.code}, signal ${child.exited.signal})${tail ? `:\n  ${tail}` : ''}`);
}

/** Peak resident set size (VmHWM) of a running process, in KiB. */
export function peakRssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+)\s+kB/.exec(status)?.[1] ?? NaN);
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** CPU time (user + system) a process has used so far, in seconds. */
export function cpuSeconds(pid: number): number {
  // /proc/PID/stat: the command may contain spaces, so count fields after its closing parenthesis;
  // utime and stime are fields 14 and 15.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Busy and total time of one core since boot, in clock ticks (/proc/stat's `cpuN` line: idle and iowait are not busy). */
export function coreTicks(core: number): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${core} `));
  if (line === undefined) throw new Error(`no cpu${core} in /proc/stat`);
  const t = line.split(/\s+/).slice(1, 9).map(Number);
  const total = t.reduce((a, b) => a + b, 0);
  return { busy: total - t[3]! - t[4]!, total };
}

/**
 * CPU time of a process and its children (a `--workers` primary and its workers), in seconds. The
 * children are read from /proc/PID/task/PID/children, as they are now: call it on a settled tree.
 */
export function treeCpuSeconds(pid: number): number {
  return cpuSeconds(pid) + childPids(pid).reduce((sum, child) => sum + treeCpuSeconds(child), 0);
}

/**
 * CPU time (user + system) of this process's children that have exited and been waited for
 * (cutime + cstime in /proc/self/stat): across a dnsperf run, during which no other child exits,
 * its rise is dnsperf's CPU time.
 */
export function reapedChildrenCpuSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS;
}

/** The direct children of a process (a --workers primary's workers); none where the kernel does not say (no CONFIG_PROC_CHILDREN). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export interface CoreTimes {
  /** Seconds spent on anything but idle and iowait (user, system, interrupts), steal excluded. */
  busy: number;
  /** The part of `busy` spent in interrupts and softirqs (on loopback, much of the network stack's work). */
  interrupts: number;
  /** Seconds the hypervisor ran something else while this virtual CPU wanted to run. */
  steal: number;
}

/** Time accounted so far to one CPU core (/proc/stat `cpuN` line). */
export function coreTimes(core: number): CoreTimes {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${core} `));
  // user nice system idle iowait irq softirq steal guest guest_nice (guest time is inside user)
  const [user, nice, system, , , irq, softirq, steal] = (line ?? '').split(/\s+/).slice(1).map(Number);
  return { busy: (user! + nice! + system! + irq! + softirq!) / CLOCK_TICKS, interrupts: (irq! + softirq!) / CLOCK_TICKS, steal: steal! / CLOCK_TICKS };
}

/** The kernel's count of UDP datagrams dropped because a socket's receive buffer was full (any socket). */
export function udpRcvbufErrors(): number {
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/) ?? [];
  return Number(values[names.indexOf('RcvbufErrors')] ?? NaN);
}

/**
 * A port free for both UDP and TCP on 127.0.0.1 (servers here bind both): the kernel's choice for
 * UDP, checked for TCP, both released before returning. Another process could take it before the
 * server binds it; the server's start-up check would then fail loudly.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const udp = createSocket('udp4');
    const port = await new Promise<number>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, '127.0.0.1', () => resolve(udp.address().port));
    });
    const tcp = createServer();
    const tcpFree = await new Promise<boolean>((resolve) => {
      tcp.once('error', () => resolve(false));
      tcp.listen(port, '127.0.0.1', () => resolve(true));
    });
    await new Promise<void>((resolve) => udp.close(() => resolve()));
    if (tcpFree) await new Promise<void>((resolve) => tcp.close(() => resolve()));
    if (tcpFree) return port;
  }
  throw new Error('no free port found on 127.0.0.1');
}

/** Pins this process, every thread of it, to one core (children started later inherit it unless pinned). */
export function pinSelf(core: number): void {
  execFileSync('taskset', ['-a', '-p', '-c', String(core), String(process.pid)], { stdio: 'ignore' });
}
