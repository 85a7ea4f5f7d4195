// npm's `prepare` (run by `npm install`/`npm ci` in a checkout, by `npm pack`, and for git
// installs): builds dist/ from src/ with TypeScript. TypeScript is a dev dependency, so where it
// is missing (`npm ci --omit=dev`) or there is no src/ (the unpacked package, which ships dist/),
// nothing is built; a checkout without TypeScript and without dist/ cannot run, and says so.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import process from 'node:process';
import { URL, fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const checkout = existsSync(`${root}src/cli.ts`) && existsSync(`${root}tsconfig.build.json`);
let typescript = true;
try {
  createRequire(`${root}package.json`).resolve('typescript');
} catch {
  typescript = false;
}

if (checkout && typescript) {
  const npm = process.env.npm_execpath;
  const build = npm ? spawnSync(process.execPath, [npm, 'run', 'build'], { stdio: 'inherit' }) : spawnSync('npm', ['run', 'build'], { stdio: 'inherit' });
  process.exit(build.status ?? 1);
} else if (existsSync(`${root}dist/cli.js`)) {
  if (checkout) process.stderr.write('svcdns: TypeScript is not installed (dev dependency): dist/ is used as it is, not rebuilt from src/\n');
} else {
  process.stderr.write(
    'svcdns: dist/ is missing and building it needs TypeScript, a dev dependency: run `npm ci` (with dev dependencies) ' +
      'and `npm prune --omit=dev` afterwards, or install the packed package (`npm pack`, then `npm install -g ./svcdns-*.tgz`), which ships dist/\n',
  );
  process.exit(1);
}
