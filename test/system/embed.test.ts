/**
 * The embedding API as a user's program meets it: `import('svcdns')` resolved through the
 * package's `exports` to the built dist/ (not src/), its published types checked by tsc against a
 * consumer, and examples/embed.mjs run as a process with its output compared line by line.
 * dist/ is built first when it is older than src/ (`npm test` builds it before this tier).
 */

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { dig } from '../support/dig.js';
import { ROOT, distIsCurrent } from '../support/spawn.js';
// Types only: at run time the package comes from dist/ through `exports`.
import type * as Svcdns from '../../src/index.js';

type Package = typeof Svcdns;

const run = promisify(execFile);
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
/** A variable, so that tsc and tsx leave the specifier to Node's resolution at run time. */
const PACKAGE = 'svcdns';

before(async () => {
  if (!distIsCurrent()) await run(process.execPath, [TSC, '-p', 'tsconfig.build.json'], { cwd: ROOT });
});

test("the package's name resolves through exports to dist/index.js, with types beside it", async () => {
  assert.equal(import.meta.resolve(PACKAGE), pathToFileURL(join(ROOT, 'dist', 'index.js')).href);
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, { types: string; default: string }> };
  assert.deepEqual(pkg.exports['.'], { types: './dist/index.d.ts', default: './dist/index.js' });
  // The entry exports exactly the public surface: nothing internal leaks out.
  const svcdns = (await import(PACKAGE)) as Package;
  assert.deepEqual(Object.keys(svcdns).sort(), ['CatalogError', 'ConfigError', 'createServer']);
});

test('createServer from the package: answers from a catalog object, setCatalog, close', async (t) => {
  const { createServer, CatalogError } = (await import(PACKAGE)) as Package;
  const server = await createServer({
    listen: ['127.0.0.1:0'],
    resolvConf: '/dev/null',
    serviceTtl: 30,
    catalog: { nodes: [{ name: 'n1', address: '10.1.0.1', services: [{ name: 'api', port: 8443, tags: ['v1'] }] }] },
  });
  t.after(() => server.close());
  const { host, port } = server.addresses[0]!;
  assert.equal(host, '127.0.0.1');
  const first = await dig(port, ['v1.api.service.consul', 'SRV'], host);
  assert.equal(first.status, 'NOERROR');
  assert.deepEqual(first.answer, ['v1.api.service.consul. 30 IN SRV 1 1 8443 n1.node.dc1.consul.']);
  assert.deepEqual(first.additional, ['n1.node.dc1.consul. 30 IN A 10.1.0.1']);

  await assert.rejects(server.setCatalog({ nodes: [{ name: 'n1', address: 'no where' }] }), (err) => {
    assert.ok(err instanceof CatalogError, 'the CatalogError class the package exports');
    assert.deepEqual(err.problems, ['nodes[0].address: must be an IPv4 or IPv6 address or a hostname (got "no where")']);
    return true;
  });
  assert.deepEqual((await dig(port, ['api.service.consul', 'A'], host)).answer, ['api.service.consul. 30 IN A 10.1.0.1']);

  await server.setCatalog({ nodes: [{ name: 'n2', address: '10.1.0.2', services: [{ name: 'api', port: 9443 }] }] });
  assert.deepEqual((await dig(port, ['api.service.consul', 'A'], host)).answer, ['api.service.consul. 30 IN A 10.1.0.2']);
  const gone = await dig(port, ['v1.api.service.consul', 'SRV'], host);
  assert.equal(gone.status, 'NXDOMAIN');
});

test('the published types: a TypeScript program using the package type-checks, and a wrong catalog does not', async (t) => {
  // Inside the package (so `svcdns` resolves to itself) but outside what tsconfig and eslint read.
  const dir = await mkdtemp(join(ROOT, 'dist', 'types-check-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const consumer = join(dir, 'consumer.ts');
  await writeFile(
    consumer,
    `import { createServer, CatalogError, ConfigError, type CatalogObject, type Server, type ServerOptions } from 'svcdns';
const catalog: CatalogObject = { nodes: [{ name: 'n1', address: '10.0.0.1', services: [{ name: 'web', port: 80, health: 'warning' }] }] };
const options: ServerOptions = { listen: ['127.0.0.1:0'], serviceTtl: 5, onlyPassing: true, catalog };
export async function main(): Promise<void> {
  const server: Server = await createServer(options);
  const port: number = server.addresses[0]!.port;
  await server.setCatalog(catalog);
  // @ts-expect-error: a node needs a name and an address
  await server.setCatalog({ nodes: [{ port }] });
  await server.close();
  console.log(CatalogError.name, ConfigError.name);
}
`,
  );
  const args = ['--noEmit', '--strict', '--skipLibCheck', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', consumer];
  await run(process.execPath, [TSC, ...args], { cwd: ROOT }).catch((err: { stdout: string }) => assert.fail(`tsc rejected the consumer:\n${err.stdout}`));
});

test('examples/embed.mjs runs and prints what its comments promise, with nothing on stderr', async () => {
  const child = spawn(process.execPath, ['examples/embed.mjs'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  // 'close': after the exit and all its output read (see runCli in test/support/spawn.ts).
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  assert.equal(stderr, '');
  assert.deepEqual(stdout.split('\n'), [
    'first: web at 10.0.0.1 port 8080',
    'replaced: web at 10.0.0.2 port 8080',
    'catalog: nodes[0].name: must be a DNS label (letters, digits, inner hyphens, at most 63) (got "node 2"); nodes[0].address: must be an IPv4 or IPv6 address or a hostname (got nothing); nodes[0].services[0].port: must be an integer from 0 to 65535 (got nothing)',
    'kept: web at 10.0.0.2 port 8080',
    '',
  ]);
  assert.equal(code, 0);
});
