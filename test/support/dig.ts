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

/**
 * Several questions in one dig process (dig asks them one after another, each with its own
 * arguments, e.g. ['-x', '10.0.0.1'] or ['web.service.consul', 'SRV']; `common` goes before them
 * all): one process instead of one per question. Results are in the order asked. Should a question
 * get no reply (dig then prints no "Got answer" block for it, so the blocks cannot be matched to the
 * questions), each question is asked again on its own.
 */
export async function digEach(port: number, questions: readonly (readonly string[])[], common: readonly string[] = [], host = '127.0.0.1'): Promise<DigResult[]> {
  let stdout: string;
  try {
    // +nocmd: no echo of the command line, which dig cuts short (without a newline) when it is long.
    ({ stdout } = await run('dig', [`@${host}`, '-p', String(port), '+time=2', '+tries=1', '+nocmd', ...common, ...questions.flat()], { timeout: 30_000, maxBuffer: 16 << 20 }));
  } catch {
    stdout = '';
  }
  const blocks = stdout.split(/^(?=;; Got answer:$)/m).filter((b) => b.startsWith(';; Got answer:'));
  if (blocks.length === questions.length) return blocks.map(parseDig);
  const results: DigResult[] = [];
  for (const q of questions) results.push(await dig(port, [...common, ...q], host));
  return results;
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
