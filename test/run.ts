/**
 * `npm test`: typecheck, lint, the unit tier and a build of dist/ (the CLI the system tests start)
 * run at once; once all four have passed, the system tier runs on its own.
 *
 * Why this order: the unit tier (test/unit) has no wall-clock limits and does not mind sharing the
 * cores, so it overlaps with typecheck and lint, which are mostly one long CPU-bound process each.
 * The system tier (test/system) spawns processes and has tests that tell a failover from a timeout
 * by how long an answer took; it runs alone, one file at a time, as before.
 *
 * The output of the first four is held back and printed whole as each ends (so it does not
 * interleave); the system tier's is shown as it comes. Exits non-zero if anything failed.
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
  code: number | null;
  ms: number;
}

const npmRun = (script: string): Job => ({ name: `npm run ${script}`, command: 'npm', args: ['run', '--silent', script] });

const TOGETHER: Job[] = [
  npmRun('typecheck'),
  npmRun('lint'),
  npmRun('test:unit'),
  // The system tests run dist/cli.js when it is current with src/ (test/support/spawn.ts).
  { name: 'build dist/ for the system tests (tsc -p tsconfig.build.json)', command: 'npx', args: ['--no', '--', 'tsc', '-p', 'tsconfig.build.json'] },
];
const ALONE = npmRun('test:system');

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function heading(text: string): string {
  return `\n${'='.repeat(8)} ${text} ${'='.repeat(Math.max(8, 90 - text.length))}\n`;
}

/** Runs a job; its output is held back and written whole when it ends (or streamed, with `live`). */
function run(job: Job, live: boolean): Promise<Outcome> {
  const started = performance.now();
  if (live) process.stdout.write(heading(job.name));
  const child = spawn(job.command, job.args, { cwd: ROOT, stdio: live ? 'inherit' : ['ignore', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  child.stdout?.on('data', (d: Buffer) => chunks.push(d));
  child.stderr?.on('data', (d: Buffer) => chunks.push(d));
  return new Promise((resolve) => {
    child.on('error', (err) => chunks.push(Buffer.from(`${job.command}: ${err.message}\n`)));
    child.on('close', (code) => {
      const outcome = { name: job.name, code, ms: performance.now() - started };
      if (!live) {
        process.stdout.write(heading(`${job.name}: ${code === 0 ? 'passed' : `FAILED (exit ${code})`}, ${seconds(outcome.ms)}`));
        process.stdout.write(Buffer.concat(chunks));
      }
      resolve(outcome);
    });
  });
}

const started = performance.now();
const outcomes = await Promise.all(TOGETHER.map((job) => run(job, false)));
if (outcomes.every((o) => o.code === 0)) outcomes.push(await run(ALONE, true));
else outcomes.push({ name: `${ALONE.name} (not run: the above failed)`, code: null, ms: 0 });

process.stdout.write(heading('npm test'));
for (const o of outcomes) process.stdout.write(`${o.code === 0 ? 'ok    ' : 'FAILED'}  ${seconds(o.ms).padStart(7)}  ${o.name}\n`);
process.stdout.write(`total ${seconds(performance.now() - started)}\n`);
process.exitCode = outcomes.every((o) => o.code === 0) ? 0 : 1;
