/**
 * Row 10: the amplification ratio (worst reply size / query size answered to any client). The
 * measurement itself is scripts/bench-amplification.ts (written with response rate limiting); this
 * row runs it, bounded, when it exists and reports the worst bytes-out-per-byte-in from its table, at
 * 4096 and 1232 bytes and with RRL; it is skipped with a note where the script does not exist.
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
    if (code !== 0) return { figure: `bench-amplification.ts failed (exit ${code})`, met: null };
    const rows = amplificationRows(out);
    const worst = (size: number, rrl: boolean): number => Math.max(0, ...rows.filter((r) => r.size === size && r.rrl === rrl).map((r) => r.ratio));
    for (const r of rows) ctx.note(`${r.question}, --max-udp-size ${r.size}, RRL ${r.rrl ? 'on' : 'off'}: ${r.ratio}×`);
    if (rows.length === 0) return { figure: 'no table in the output of bench-amplification.ts', met: null };
    const withRrl = Math.max(worst(4096, true), worst(1232, true));
    return {
      figure: `bytes out ÷ bytes in, worst question: **${worst(4096, false)}×** at --max-udp-size 4096, **${worst(1232, false)}×** at 1232 (the default now), **${withRrl}×** with RRL (10/s, slip 2)`,
      met: withRrl <= 1,
    };
  },
};

interface AmplificationRow {
  question: string;
  size: number;
  rrl: boolean;
  /** Bytes out ÷ bytes in, the table's last column. */
  ratio: number;
}

/** The rows of bench-amplification.ts's markdown table: `| question | size | RRL | ... | **N×** |`. */
function amplificationRows(out: string): AmplificationRow[] {
  const rows: AmplificationRow[] = [];
  for (const line of out.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 12 || !/^\d+$/.test(cells[2]!)) continue;
    const ratio = Number(/([\d.]+)×/.exec(cells[10]!)?.[1]);
    if (Number.isFinite(ratio)) rows.push({ question: cells[1]!, size: Number(cells[2]), rrl: cells[3] !== 'off', ratio });
  }
  return rows;
}
