/**
 * Row 10: the amplification ratio (worst reply size / query size answered to any client). The
 * measurement itself is scripts/bench-amplification.ts (written with response rate limiting); this
 * row runs it, bounded, when it exists and reports its last lines, and is skipped with a note otherwise.
 */

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { FaultRow } from './row.js';
import { ROOT } from './svcdns.js';

const SCRIPT = join(ROOT, 'scripts', 'bench-amplification.ts');
const BOUND_MS = 180_000;

export const amplification: FaultRow = {
  id: 'amplification',
  fault: 'worst reply size / query size, answered to any client',
  target: 'bounded by RRL on non-loopback listeners (scripts/bench-amplification.ts)',
  async run(ctx) {
    if (!existsSync(SCRIPT)) return { figure: 'skipped: scripts/bench-amplification.ts does not exist on this branch', met: null };
    const child = spawn(process.execPath, ['--import', 'tsx', SCRIPT], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), BOUND_MS);
    const [code] = (await once(child, 'exit')) as [number | null];
    clearTimeout(timer);
    const tail = out.trim().split('\n').slice(-6);
    for (const line of tail) ctx.note(line);
    return { figure: code === 0 ? `see scripts/bench-amplification.ts's output: ${tail.at(-1) ?? ''}` : `bench-amplification.ts failed (exit ${code})`, met: null };
  },
};
