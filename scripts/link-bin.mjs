// Makes `npx svcdns` run this checkout's CLI after `npm install`: npm links the bins of
// dependencies into node_modules/.bin but never the project's own, so npx would otherwise look
// for a package of that name in the registry.
import { chmodSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { URL, fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const target = `${root}dist/cli.js`;
const binDir = `${root}node_modules/.bin`;
chmodSync(target, 0o755);
mkdirSync(binDir, { recursive: true });
rmSync(`${binDir}/svcdns`, { force: true });
try {
  symlinkSync('../../dist/cli.js', `${binDir}/svcdns`);
} catch (err) {
  // Another build made the same link meanwhile (a copy of the checkout sharing node_modules).
  if (err.code !== 'EEXIST') throw err;
}
