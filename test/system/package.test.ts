/**
 * The package as an operator installs it, on a machine with Node and no TypeScript: `npm pack` of a
 * copy of this checkout (its `prepare` builds dist/ from the current src/), then
 * - `npm install -g` of the tarball into a temporary prefix, offline: the tarball carries its
 *   dependencies, so no registry is needed; the installed `svcdns` answers --version and --help,
 *   serves a catalog on 127.0.0.1 and answers dig;
 * - `npm install --omit=dev` of the tarball into a project, offline too;
 * - a checkout installed with `npm ci --omit=dev` (no TypeScript): its `prepare` says what to do
 *   without dist/, and uses dist/ as it is when there is one (this needs the dependencies in npm's
 *   cache, as `npm ci` leaves them);
 * - packaging/svcdns.service checked by `systemd-analyze verify`, run with the installed command.
 * Packed once, for every test here.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { CATALOG } from '../support/catalog.js';
import { dig } from '../support/dig.js';
import { ROOT, startCommand } from '../support/spawn.js';

const run = promisify(execFile);

/** npm without its network chatter: the tests reach loopback only. */
const NPM_ENV = { ...process.env, npm_config_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };

let dir: string;
let tarball: string;
let packed: string[];
let prefix: string;

async function npm(args: string[], cwd: string): Promise<{ stdout: string; stderr: string }> {
  try {
    return await run('npm', args, { cwd, env: NPM_ENV, maxBuffer: 64 * 1024 * 1024, timeout: 300_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    const hint = /ENOTCACHED/.test(e.stderr ?? '') ? ' (a package was wanted from the registry: the tarball should carry every dependency)' : '';
    throw new Error(`npm ${args.join(' ')} failed${hint}: ${e.stderr ?? e.message}`, { cause: err });
  }
}

async function svcdns(command: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(command, args, { cwd: dir, env: { ...process.env, SVCDNS_RESOLV_CONF: '/dev/null' }, timeout: 30_000 });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'svcdns-package-'));
  // A copy without dist/: what is packed is built now, from this src/.
  const checkout = join(dir, 'checkout');
  const skip = new Set(['node_modules', '.git', 'dist'].map((d) => join(ROOT, d)));
  await cp(ROOT, checkout, { recursive: true, filter: (from) => !skip.has(from) });
  await symlink(await realpath(join(ROOT, 'node_modules')), join(checkout, 'node_modules'));
  const { stdout } = await npm(['pack', '--json', '--pack-destination', dir], checkout);
  const [info] = JSON.parse(stdout.slice(stdout.indexOf('['))) as [{ filename: string; files: { path: string }[] }];
  tarball = join(dir, info.filename);
  packed = info.files.map((f) => f.path);
  prefix = join(dir, 'prefix');
  await npm(['install', '--global', '--prefix', prefix, tarball], dir);
});

after(() => rm(dir, { recursive: true, force: true }));

test('the tarball: dist/ built from every src/ file (JavaScript and .d.ts), the example catalog, its dependencies; no source maps, sources or dev tools', async () => {
  const sources = (await readdir(join(ROOT, 'src'), { recursive: true })).filter((f) => f.endsWith('.ts'));
  for (const f of sources) {
    assert.ok(packed.includes(`dist/${f.replace(/\.ts$/, '.js')}`), `dist/ of ${f}`);
    assert.ok(packed.includes(`dist/${f.replace(/\.ts$/, '.d.ts')}`), `declarations of ${f}`);
  }
  assert.ok(packed.includes('examples/catalog.yaml'));
  assert.ok(packed.includes('node_modules/yargs/package.json') && packed.includes('node_modules/pino/package.json'), 'dependencies bundled');
  assert.deepEqual(
    packed.filter((f) => (f.endsWith('.map') && !f.startsWith('node_modules/')) || /^(src|test|scripts\/bench)/.test(f) || /^node_modules\/(typescript|tsx|eslint|@types)\//.test(f)),
    [],
  );
});

test('npm install -g of the tarball into a temporary prefix, offline; the installed svcdns runs: --version, --help, serving a catalog', async () => {
  const bin = join(prefix, 'bin', 'svcdns');
  const installed = join(prefix, 'lib', 'node_modules', 'svcdns');
  assert.ok(!existsSync(join(installed, 'node_modules', 'typescript')), 'no TypeScript installed');
  assert.equal(relative(dir, await realpath(bin)), 'prefix/lib/node_modules/svcdns/dist/cli.js');

  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal((await svcdns(bin, ['--version'])).stdout, `${pkg.version}\n`);
  const help = (await svcdns(bin, ['--help'])).stdout;
  assert.match(help, /^Listening:$/m);
  assert.ok(help.replace(/\s+/g, ' ').trim().endsWith(`the README (${join(await realpath(installed), 'README.md')}).`), help);
  assert.ok(existsSync(join(installed, 'README.md')));

  const catalog = join(dir, 'catalog.yaml');
  await writeFile(catalog, CATALOG);
  const svc = startCommand(bin, ['--catalog', catalog, '--listen', '127.0.0.1:0'], { cwd: dir });
  try {
    const listening = await svc.waitForLog((l) => l.msg === 'listening (udp, tcp)');
    const port = Number(String(listening.address).split(':').pop());
    assert.deepEqual((await dig(port, ['v1.web.service.consul'])).answer, ['v1.web.service.consul. 0 IN A 10.0.0.1']);
    assert.equal(await svc.stop('SIGTERM'), 0);
  } finally {
    await svc.stop('SIGKILL');
  }
});

test('npm install --omit=dev of the tarball into a project, offline: the CLI runs from its node_modules/.bin', async () => {
  const project = join(dir, 'project');
  await mkdir(project);
  await writeFile(join(project, 'package.json'), '{ "name": "uses-svcdns", "private": true }\n');
  await npm(['install', '--omit=dev', tarball], project);
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal((await svcdns(join(project, 'node_modules', '.bin', 'svcdns'), ['--version'])).stdout, `${pkg.version}\n`);
});

test('a checkout without TypeScript (npm ci --omit=dev): prepare fails saying what to do when dist/ is missing, and uses dist/ when it is there', async () => {
  const clone = join(dir, 'clone');
  const skip = new Set(['node_modules', '.git', 'dist'].map((d) => join(ROOT, d)));
  await cp(ROOT, clone, { recursive: true, filter: (from) => !skip.has(from) });
  await assert.rejects(npm(['ci', '--omit=dev'], clone), /dist\/ is missing and building it needs TypeScript, a dev dependency: run `npm ci` \(with dev dependencies\)/);
  await cp(join(dir, 'checkout', 'dist'), join(clone, 'dist'), { recursive: true });
  const { stderr } = await npm(['ci', '--omit=dev'], clone);
  assert.match(stderr, /TypeScript is not installed \(dev dependency\): dist\/ is used as it is/);
  assert.ok(!existsSync(join(clone, 'node_modules', 'typescript')));
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal((await svcdns(process.execPath, [join(clone, 'dist', 'cli.js'), '--version'])).stdout, `${pkg.version}\n`);
});

test('packaging/svcdns.service passes systemd-analyze verify (ExecStart: the installed svcdns)', async (t) => {
  const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));
  if (!analyze) return t.skip('systemd-analyze is not installed (Debian: apt-get install systemd)');
  const bin = join(prefix, 'bin', 'svcdns');
  const unit = await readFile(join(ROOT, 'packaging', 'svcdns.service'), 'utf8');
  assert.match(unit, /^ExecStart=\/usr\/local\/bin\/svcdns$/m);
  const units = join(dir, 'units');
  await mkdir(units);
  await writeFile(join(units, 'svcdns.service'), unit.replace(/^ExecStart=\/usr\/local\/bin\/svcdns$/m, `ExecStart=${bin}`));
  const { stdout, stderr } = await run(analyze, ['verify', join(units, 'svcdns.service')], { cwd: units });
  assert.equal(stdout + stderr, '', 'no warning');
});
