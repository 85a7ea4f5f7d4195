/**
 * Runs the real `dig` (BIND's dnsutils) against a test server and parses its output into sections
 * of zone-file lines with white space folded, so tests compare records as DNS people write them:
 *   'web.service.consul. 0 IN A 192.168.0.129'
 */

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface DigResult {
  status: string;
  /** Header flags, e.g. ['qr', 'aa', 'rd']. */
  flags: string[];
  question: string[];
  answer: string[];
  authority: string[];
  additional: string[];
  /** The EDNS line (e.g. 'version: 0, flags:; udp: 1232'), or null without OPT. */
  edns: string | null;
  /** 'UDP' or 'TCP', from the SERVER line. */
  transport: string;
  raw: string;
}

export async function dig(port: number, args: string[], host = '127.0.0.1'): Promise<DigResult> {
  const { stdout } = await run('dig', [`@${host}`, '-p', String(port), '+time=2', '+tries=1', ...args], { timeout: 10_000 });
  return parseDig(stdout);
}

export function parseDig(raw: string): DigResult {
  const result: DigResult = { status: '', flags: [], question: [], answer: [], authority: [], additional: [], edns: null, transport: '', raw };
  type Section = 'question' | 'answer' | 'authority' | 'additional';
  let section: Section | null = null;
  for (const line of raw.split('\n')) {
    const status = /status: (\w+)/.exec(line);
    if (status) result.status = status[1]!;
    const flags = /^;; flags: ([^;]*);/.exec(line);
    if (flags) result.flags = flags[1]!.trim().split(/\s+/).filter(Boolean);
    const edns = /^; EDNS: (.*)$/.exec(line);
    if (edns) result.edns = edns[1]!;
    const server = /^;; SERVER: .*\((\w+)\)$/.exec(line);
    if (server) result.transport = server[1]!;
    const heading = /^;; (QUESTION|ANSWER|AUTHORITY|ADDITIONAL) SECTION:/.exec(line);
    if (heading) {
      section = heading[1]!.toLowerCase() as Section;
      continue;
    }
    if (line.trim() === '') {
      section = null;
      continue;
    }
    if (section === 'question') result.question.push(line.replace(/^;/, '').trim().split(/\s+/).join(' '));
    else if (section) result[section].push(line.trim().split(/\s+/).join(' '));
  }
  return result;
}
