/**
 * Running dnsperf 2.10 and reading what it prints.
 *
 * Its statistics block (stdout) looks like:
 *
 *     Queries sent:         2000
 *     Queries completed:    2000 (100.00%)
 *     Queries lost:         0 (0.00%)
 *     Response codes:       NOERROR 1990 (99.50%), SERVFAIL 10 (0.50%)
 *     Average packet size:  request 48, response 80
 *     Queries per second:   1999.770026
 *     Average Latency (s):  0.000091 (min 0.000045, max 0.001554)
 *
 * With -v it also prints one line per query as its reply arrives, `> NOERROR name type 0.000134`
 * (the latency in seconds); dnsperf 2.10 has no latency histogram, so percentiles come from these.
 * Stdout goes to a file, not a pipe, so this process reads nothing while dnsperf runs.
 */

import { closeSync, openSync, readFileSync } from 'node:fs';
import { assertAlive, type Child, type Children } from './children.js';

export const DNSPERF = '/usr/bin/dnsperf';

export interface DnsperfRun {
  sent: number;
  completed: number;
  lost: number;
  /** Response code -> count, as dnsperf reports them. */
  rcodes: Record<string, number>;
  qps: number;
  meanLatencyMs: number;
  requestBytes: number;
  responseBytes: number;
  /** With `verbose`: each completed query's latency in ms, in arrival order. */
  latenciesMs: number[];
}

export interface DnsperfOptions {
  port: number;
  queryFile: string;
  seconds: number;
  clients: number;
  outstanding: number;
  /** -t: a query unanswered this long is lost (dnsperf also waits this long at the end for them). */
  timeoutSeconds: number;
  /** -Q: at most this many queries per second. */
  maxQps?: number;
  /** -v: one line per query (for percentiles). */
  verbose?: boolean;
  /** Pin dnsperf to this core (or these cores, '0,1'). */
  core: number | string;
  /** Where dnsperf's stdout is written (then read back). */
  outFile: string;
  /** The server under test; checked to be alive after the run. */
  server: Child;
}

/** The arguments, also printed in the notes so the run can be repeated by hand. */
export function dnsperfArgs(o: Omit<DnsperfOptions, 'core' | 'outFile' | 'server'>): string[] {
  const args = ['-s', '127.0.0.1', '-p', String(o.port), '-d', o.queryFile, '-l', String(o.seconds), '-c', String(o.clients), '-q', String(o.outstanding), '-t', String(o.timeoutSeconds), '-e'];
  if (o.maxQps !== undefined) args.push('-Q', String(o.maxQps));
  if (o.verbose) args.push('-v');
  return args;
}

export async function runDnsperf(children: Children, o: DnsperfOptions): Promise<DnsperfRun> {
  assertAlive(o.server);
  const fd = openSync(o.outFile, 'w');
  let child: Child;
  try {
    child = children.spawn('dnsperf', DNSPERF, dnsperfArgs(o), { core: o.core, stdout: fd });
  } finally {
    closeSync(fd);
  }
  await child.done;
  const out = readFileSync(o.outFile, 'utf8');
  if (child.exited?.code !== 0) {
    throw new Error(`dnsperf exited with ${child.exited?.code ?? child.exited?.signal}:\n  ${[...child.stderrLines, ...out.split('\n').slice(-15)].join('\n  ')}`);
  }
  assertAlive(o.server);
  return parseDnsperf(out, o.verbose === true);
}

function field(out: string, label: string): RegExpExecArray {
  const match = new RegExp(`^\\s*${label}:\\s+(.*)$`, 'm').exec(out);
  if (!match) throw new Error(`dnsperf output has no "${label}" line:\n${out.slice(-1500)}`);
  return match;
}

const firstNumber = (text: string): number => Number(/[\d.]+/.exec(text)?.[0] ?? NaN);

export function parseDnsperf(out: string, verbose: boolean): DnsperfRun {
  const rcodes: Record<string, number> = {};
  for (const m of field(out, 'Response codes')[1]!.matchAll(/([A-Z][A-Z0-9]*) (\d+) \(/g)) rcodes[m[1]!] = Number(m[2]);
  const sizes = /request (\d+), response (\d+)/.exec(field(out, 'Average packet size')[1]!);
  const latenciesMs: number[] = [];
  if (verbose) {
    // `> NOERROR name type 0.000134`; anything else starting with '>' carries no latency.
    for (const m of out.matchAll(/^> \S+ .* (\d+\.\d+)$/gm)) latenciesMs.push(Number(m[1]) * 1000);
  }
  return {
    sent: firstNumber(field(out, 'Queries sent')[1]!),
    completed: firstNumber(field(out, 'Queries completed')[1]!),
    lost: firstNumber(field(out, 'Queries lost')[1]!),
    rcodes,
    qps: firstNumber(field(out, 'Queries per second')[1]!),
    meanLatencyMs: firstNumber(field(out, 'Average Latency \\(s\\)')[1]!) * 1000,
    requestBytes: Number(sizes?.[1] ?? NaN),
    responseBytes: Number(sizes?.[2] ?? NaN),
    latenciesMs,
  };
}
