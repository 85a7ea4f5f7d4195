/**
 * Looking at a --workers server from outside: its worker processes (/proc) and the UDP sockets
 * bound to a port with the processes holding each (`ss -ulpn`, as an operator would look).
 */

import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { CLI_ENTRY } from './spawn.js';

/** svcdns processes whose parent is `pid` (run through tsx, it also starts an esbuild process: not counted). */
export async function workerPids(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid && (await readFile(`/proc/${entry}/cmdline`, 'utf8')).includes(CLI_ENTRY)) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out.sort((a, b) => a - b);
}

/**
 * Each UDP socket bound to `port` (one line of `ss -Hulpn 'sport = :PORT'`), as the sorted PIDs
 * of the processes holding it: a socket shared through node:cluster is held by the primary and
 * every worker, a reusePort socket by its worker alone.
 */
export async function udpSockets(port: number): Promise<number[][]> {
  const { stdout } = await promisify(execFile)('ss', ['-Hulpn', `sport = :${port}`]);
  return stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => [...line.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1])).sort((a, b) => a - b));
}

/**
 * Whether dgram has reusePort in this Node, judged by its version (added in 23.1.0 and 22.12.0,
 * as Node's changelog says): the tests' own expectation, independent of the server's detection.
 */
export function nodeHasReusePort(): boolean {
  const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
  return major >= 24 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}
