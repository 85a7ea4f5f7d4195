#!/usr/bin/env node
/**
 * Fails when src/ has an import cycle, type-only imports included (`npm run lint` runs it).
 * Every import in src/ is relative and names a .js file that is a .ts file here, so reading the
 * import lines is enough; no resolver is needed.
 */

import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import process from 'node:process';

const root = resolve(import.meta.dirname, '..', 'src');
const files = readdirSync(root, { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.ts'))
  .map((f) => join(root, f));

const IMPORT = /^\s*(?:import|export)\b[^'"]*?from\s+'(\.{1,2}\/[^']+)'|^\s*import\s+'(\.{1,2}\/[^']+)'/gm;
const edges = new Map();
for (const file of files) {
  const targets = [];
  for (const m of readFileSync(file, 'utf8').matchAll(IMPORT)) {
    targets.push(resolve(dirname(file), (m[1] ?? m[2]).replace(/\.js$/, '.ts')));
  }
  edges.set(file, targets);
}

// Depth-first search; a grey node reached again closes a cycle.
const WHITE = 0, GREY = 1, BLACK = 2;
const color = new Map(files.map((f) => [f, WHITE]));
const cycles = [];
const path = [];
function visit(file) {
  color.set(file, GREY);
  path.push(file);
  for (const next of edges.get(file) ?? []) {
    if (color.get(next) === GREY) cycles.push([...path.slice(path.indexOf(next)), next]);
    else if (color.get(next) === WHITE) visit(next);
  }
  path.pop();
  color.set(file, BLACK);
}
for (const file of files) if (color.get(file) === WHITE) visit(file);

if (cycles.length > 0) {
  for (const c of cycles) process.stderr.write(`import cycle: ${c.map((f) => relative(root, f)).join(' -> ')}\n`);
  process.exit(1);
}
process.stdout.write(`no import cycle in src/ (${files.length} files)\n`);
