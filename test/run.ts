/**
 * `npm test`: typecheck, lint, both test tiers, in under half the wall time of one after another.
 *
 * - Typecheck and lint start at once, at a lower CPU priority (nice 10), and run alongside the tests
 *   until they are done: they are mostly one long CPU-bound process each.
 * - The unit tier (test/unit, files in parallel) and a build of dist/ (the CLI the system tests
 *   start, see test/support/spawn.ts) start at once too.
 * - When both have passed, the system tier (test/system, one file at a time) starts, while typecheck
 *   and lint may still be running: at nice 10 they take little CPU from the system tests, which
 *   tell a failover from a timeout by how long an answer took.
 *
 * Output is printed whole per job as it ends (so jobs do not interleave), except the system tier's,
 * which is shown as it comes; typecheck and lint are printed after it. Exits non-zero if any failed.
 */

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface Job {
  name: string;
  command: string;
  args: string[];
}

interface Outcome {
  name: string;
  /** The exit code; null if killed by a signal, or not run (`skipped`). */
  code: number | null;
  skipped?: boolean;
  ms: number;
  output: Buffer;
}

const npmRun = (script: string, nice = false): Job =>
  nice ? { name: `npm run ${script}`, command: 'nice', args: ['-n', '10', 'npm', 'run', '--silent', script] } : { name: `npm run ${script}`, command: 'npm', args: ['run', '--silent', script] };

const BACKGROUND = [npmRun('typecheck', true), npmRun('lint', true)];
const BEFORE_SYSTEM = [
  npmRun('test:unit'),
  { name: 'build dist/ for the system tests (tsc -p tsconfig.build.json)', command: 'npx', args: ['--no', '--', 'tsc', '-p', 'tsconfig.build.json'] },
];
const SYSTEM = npmRun('test:system');

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function heading(text: string): string {
  return `\n${'='.repeat(8)} ${text} ${'='.repeat(Math.max(8, 90 - text.length))}\n`;
}

/** Runs a job; its output is kept for print() unless `live`, when it goes straight to ours. */
function run(job: Job, live = false): Promise<Outcome> {
  const started = performance.now();
  if (live) process.stdout.write(heading(job.name));
  const child = spawn(job.command, job.args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => (live ? process.stdout.write(d) : chunks.push(d)));
  child.stderr.on('data', (d: Buffer) => (live ? process.stderr.write(d) : chunks.push(d)));
  // Kept even when shown live: the closing count reads the runners' totals from it.
  if (live) child.stdout.on('data', (d: Buffer) => chunks.push(d));
  return new Promise((resolve) => {
    child.on('error', (err) => chunks.push(Buffer.from(`${job.command}: ${err.message}\n`)));
    child.on('close', (code) => resolve({ name: job.name, code, ms: performance.now() - started, output: Buffer.concat(chunks) }));
  });
}

function print(o: Outcome): void {
  process.stdout.write(heading(`${o.name}: ${o.code === 0 ? 'passed' : `FAILED (exit ${o.code})`}, ${seconds(o.ms)}`));
  process.stdout.write(o.output);
}

const started = performance.now();
const background = BACKGROUND.map((job) => run(job));
const before = await Promise.all(BEFORE_SYSTEM.map((job) => run(job)));
before.forEach(print);
const system: Outcome = before.every((o) => o.code === 0)
  ? await run(SYSTEM, true)
  : { name: `${SYSTEM.name} (not run: the above failed)`, code: null, skipped: true, ms: 0, output: Buffer.alloc(0) };
const checks = await Promise.all(background);
checks.forEach(print);

const outcomes = [...checks, ...before, system];
process.stdout.write(heading('npm test'));
for (const o of outcomes) process.stdout.write(`${o.code === 0 ? 'ok     ' : o.skipped ? 'skipped' : 'FAILED '}  ${seconds(o.ms).padStart(7)}  ${o.name}\n`);
process.stdout.write(`total ${seconds(performance.now() - started)}\n`);
// The node:test runners' totals of both tiers, as one closing line. Piped, Node 20 and 22 print
// TAP (`# pass N`) and Node 24 its spec reporter (`ℹ pass N`): both are read.
const total = (word: string): number =>
  [...before, system].reduce((sum, o) => sum + [...o.output.toString().matchAll(new RegExp(`^(?:#|ℹ) ${word} (\\d+)$`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0), 0);
process.stdout.write(`${total('pass')} passed, ${total('fail')} failed\n`);
process.exitCode = outcomes.every((o) => o.code === 0) ? 0 : 1;
