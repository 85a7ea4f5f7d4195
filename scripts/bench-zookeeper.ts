/**
 * The ZooKeeper source measured (issue 16): `npm run bench:zookeeper [-- --quick] [-- --write] [-- --changes N]`.
 *
 * 1. Propagation, side by side in one run, by one measurement (scripts/bench/propagation.ts): from a
 *    write's completion to the first UDP answer from svcdns showing it, N changes each (200 by default):
 *    - Consul (the simulator): a health check flipped, as `npm run bench:consul` measures it;
 *    - ZooKeeper, Dubbo: a provider's ephemeral node deleted / created again (its whole registration,
 *      Dubbo's folders checked first), timed from ZooKeeper's reply to the create or delete;
 *    - ZooKeeper, Curator: an instance's JSON rewritten with another port (setData), as Curator's
 *      updateService does.
 *    The writes are made by this process's own ZooKeeper session (a registrar in-process: its
 *    reply is the write's completion, with no pipe from a child in between).
 * 2. How long a dead provider stays in DNS (skipped with --quick): a registrar child holding a Dubbo
 *    provider and a Curator instance, asking for Dubbo's and Curator's default session timeout of
 *    60 s, SIGKILLed (its session is not closed), against a ZooKeeper with the production defaults
 *    (tickTime 2000 ms, maxSessionTimeout 20 ticks = 40 s) and one whose maxSessionTimeout allows
 *    60 s, both at once; from the SIGKILL to ZooKeeper's deletion of the nodes and to the provider
 *    leaving DNS. Also a clean close (the session closed: its nodes go at once). One sample each.
 *    The registrar writes just before it is killed, so ZooKeeper's countdown starts at the kill:
 *    these are the longest a dead provider can stay (a provider dying later in its ping interval
 *    goes up to a third of the timeout sooner).
 *
 * Real processes on 127.0.0.1 only: ZooKeeper (Debian's package, test/support/zookeeper.ts), svcdns
 * (the built CLI, dist/cli.js, built first), registrar children; every one stopped at the end, on
 * errors and on Ctrl-C; every wait bounded. Prints markdown tables; with --write, they replace the
 * generated parts of BENCHMARKS.md's issue 16 section (between the bench:zookeeper markers).
 */

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { remove, setData, whenDeleted } from '../test/support/zk-client.js';
import { applyNodes, curatorInstanceJson, curatorInstanceNodes, dubboProviderNodes, springCloudInstance, startRegistrar, type DubboProvider } from '../test/support/zk-registrar.js';
import { startZooKeeper, type ZooKeeperOptions } from '../test/support/zookeeper.js';
import { answers, consulPropagation, measure, summarize, summaryCells, type Summary } from './bench/propagation.js';
import { closeAllScopes, withScope } from './bench/scope.js';
import { killAllNow, ROOT, startSvcdns, type Svcdns } from './faults/svcdns.js';

/** The flags, every problem with them said in one line (exit 2). */
function readFlags(): { quick: boolean; write: boolean; changes: number } {
  const known = { quick: { type: 'boolean' }, write: { type: 'boolean' }, changes: { type: 'string' } } as const;
  // Not strict: every unknown flag and stray argument is collected and named, not just the first.
  const { values, positionals, tokens } = parseArgs({ options: known, strict: false, allowPositionals: true, tokens: true });
  const problems: string[] = [];
  for (const t of tokens) {
    if (t.kind === 'option' && !(t.name in known)) problems.push(`unknown flag ${t.rawName}`);
    else if (t.kind === 'option' && known[t.name as keyof typeof known].type === 'boolean' && t.value !== undefined) problems.push(`${t.rawName} takes no value`);
    else if (t.kind === 'option' && t.name === 'changes' && t.value === undefined) problems.push('--changes needs a value');
  }
  if (positionals.length > 0) problems.push(`unexpected argument ${positionals.map((p) => JSON.stringify(p)).join(', ')}`);
  const changes = Number(values.changes ?? '200');
  if (typeof values.changes === 'string' && (!Number.isInteger(changes) || changes < 2 || changes > 10_000)) problems.push(`--changes must be a whole number from 2 to 10000 (got ${JSON.stringify(values.changes)})`);
  if (problems.length > 0) {
    process.stderr.write(`bench-zookeeper: ${problems.join('; ')} (usage: npm run bench:zookeeper -- [--quick] [--write] [--changes N])\n`);
    process.exit(2);
  }
  return { quick: values.quick === true, write: values.write === true, changes };
}
const opts = readFlags();
const CHANGES = opts.changes;

/** ZooKeeper as shipped: tickTime 2000 ms; sessions clamped to [2, 20] ticks = 4–40 s. */
const PRODUCTION: ZooKeeperOptions = { tickTimeMs: 2000, maxSessionTimeoutMs: 40_000 };
/** The same tick, with maxSessionTimeout raised so that the frameworks' 60 s is granted. */
const SIXTY: ZooKeeperOptions = { tickTimeMs: 2000, maxSessionTimeoutMs: 60_000 };
/** Dubbo's and Curator's default session timeout (Curator5ZookeeperClient, CuratorFrameworkFactory). */
const FRAMEWORK_SESSION_MS = 60_000;
/** The longest a session may take to expire here: 60 s, a tick, and room for a busy machine. */
const EXPIRY_BOUND_MS = 120_000;

const DEMO: DubboProvider = { host: '10.30.0.1', port: 20880, interface: 'org.apache.dubbo.demo.DemoService', application: 'demo-provider' };

process.on('SIGINT', () => {
  killAllNow();
  void closeAllScopes().finally(() => process.exit(130));
});

/** Polls `check` as fast as svcdns answers until it holds; throws after `boundMs`. */
async function until(what: string, boundMs: number, check: () => Promise<boolean>): Promise<void> {
  const t0 = performance.now();
  while (!(await check())) {
    if (performance.now() - t0 > boundMs) throw new Error(`${what}: not seen within ${boundMs} ms`);
  }
}

function bounded<T>(what: string, boundMs: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${boundMs} ms`)), boundMs)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** svcdns watching `connectString`, once it has read the tree. */
async function svcdnsOn(connectString: string): Promise<Svcdns> {
  const svc = await startSvcdns(['--zookeeper', connectString, '--log-level', 'info']);
  try {
    await svc.waitForLog((l) => l.msg === 'zookeeper synced', 30_000);
  } catch (err) {
    await svc.stop();
    throw err;
  }
  return svc;
}

const hostsOf = (svc: Svcdns, name: string): Promise<string> => answers(svc.port, name, 'A').then((a) => a.join());

interface ZooKeeperPropagation {
  dubbo: number[];
  curator: number[];
}

async function zookeeperPropagation(changes: number): Promise<ZooKeeperPropagation> {
  return withScope(async (scope) => {
    const zk = await startZooKeeper(scope, PRODUCTION);
    const writer = await zk.connect({ sessionTimeoutMs: FRAMEWORK_SESSION_MS });
    const flipping = dubboProviderNodes(DEMO);
    const orders = springCloudInstance({ name: 'orders', address: '10.31.0.1', port: 8080 });
    const ordersNodes = curatorInstanceNodes(orders);
    await applyNodes(writer, [...dubboProviderNodes({ ...DEMO, host: '10.30.0.2' }), ...flipping, ...ordersNodes]);
    const svc = await svcdnsOn(zk.connectString);
    try {
      await until('both providers in DNS', 10_000, async () => (await hostsOf(svc, 'demo-provider.service.consul')) === '10.30.0.1,10.30.0.2');
      const dubbo = await measure(changes, {
        // Even: the provider unregisters (Dubbo's doUnregister deletes its node); odd: it registers again.
        write: (i) => (i % 2 === 0 ? remove(writer, flipping.at(-1)!.path) : applyNodes(writer, flipping)),
        seen: async (i) => (await hostsOf(svc, 'demo-provider.service.consul')) === (i % 2 === 0 ? '10.30.0.2' : '10.30.0.1,10.30.0.2'),
      });
      const port = (i: number): number => (i % 2 === 0 ? 8081 : 8080);
      const curator = await measure(changes, {
        write: (i) => setData(writer, ordersNodes.at(-1)!.path, Buffer.from(curatorInstanceJson({ ...orders, port: port(i) }))),
        seen: async (i) => {
          const srv = await answers(svc.port, 'orders.service.consul', 'SRV');
          return srv.length === 1 && srv[0]!.split(' ')[2] === String(port(i));
        },
      });
      return { dubbo, curator };
    } finally {
      await svc.stop();
    }
  });
}

interface DeadProvider {
  zookeeper: string;
  /** The session timeout ZooKeeper granted the registrar, ms. */
  grantedMs: number;
  /** Clean close asked for (stdin ended: the registrar closes its session, then exits) → gone from DNS, ms. */
  closedMs: number;
  /** SIGKILL → ZooKeeper deleted the registrar's ephemeral nodes (its session expired), ms. */
  expiredMs: number;
  /** SIGKILL → both the Dubbo provider and the Curator instance gone from DNS, ms. */
  dnsMs: number;
}

async function deadProvider(label: string, options: ZooKeeperOptions): Promise<DeadProvider> {
  return withScope(async (scope) => {
    const zk = await startZooKeeper(scope, options);
    const svc = await svcdnsOn(zk.connectString);
    try {
      const closing = await startRegistrar(scope, zk.connectString, { sessionTimeoutMs: FRAMEWORK_SESSION_MS, reregister: false });
      const dying = await startRegistrar(scope, zk.connectString, { sessionTimeoutMs: FRAMEWORK_SESSION_MS, reregister: false });
      await closing.register(dubboProviderNodes({ ...DEMO, host: '10.40.0.1' }));
      const dyingProvider = dubboProviderNodes({ ...DEMO, host: '10.40.0.2' });
      await dying.register(dyingProvider);
      const providers = (): Promise<string> => hostsOf(svc, 'demo-provider.service.consul');
      await until('both providers in DNS', 10_000, async () => (await providers()) === '10.40.0.1,10.40.0.2');

      // Polled while the registrar closes its session and exits: timed to DNS, not to its exit.
      const c0 = performance.now();
      const closed = closing.close();
      await until('the closed provider gone from DNS', 10_000, async () => (await providers()) === '10.40.0.2');
      const closedMs = performance.now() - c0;
      await closed;

      const watcher = await zk.connect({ sessionTimeoutMs: FRAMEWORK_SESSION_MS });
      const deleted = whenDeleted(watcher, dyingProvider.at(-1)!.path);
      // Its last word to ZooKeeper just before it dies (a Spring Cloud instance registered), so
      // that ZooKeeper's countdown of the session starts at the kill.
      await dying.register(curatorInstanceNodes(springCloudInstance({ name: 'dying-app', address: '10.40.0.2', port: 8080 })));
      await until('the Curator instance in DNS', 10_000, async () => (await hostsOf(svc, 'dying-app.service.consul')) === '10.40.0.2');
      const k0 = performance.now();
      await dying.kill();
      await bounded(`${label}: the killed registrar's session expired`, EXPIRY_BOUND_MS, deleted);
      const expiredMs = performance.now() - k0;
      await until('the killed provider and instance gone from DNS', 10_000, async () => (await providers()) === '' && (await hostsOf(svc, 'dying-app.service.consul')) === '');
      const dnsMs = performance.now() - k0;
      return { zookeeper: label, grantedMs: dying.sessionTimeoutMs(), closedMs, expiredMs, dnsMs };
    } finally {
      await svc.stop();
    }
  });
}

// ---------------------------------------------------------------------------------------------

execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 2, 2] });
/** Debian's package version of the ZooKeeper the test support runs. */
const zookeeperVersion = ((): string => {
  try {
    return execFileSync('dpkg-query', ['-W', '-f', '${Version}', 'zookeeper'], { encoding: 'utf8' }).trim();
  } catch {
    return '?';
  }
})();
const commit = execFileSync('git', ['describe', '--always', '--dirty'], { cwd: ROOT, encoding: 'utf8' }).trim();
const startedAt = new Date();
const load0 = loadavg()[0]!.toFixed(1);
const t0 = performance.now();

process.stderr.write(`bench-zookeeper: propagation, ${CHANGES} changes each: Consul...\n`);
const consul = summarize(await consulPropagation(CHANGES));
process.stderr.write('bench-zookeeper: propagation: ZooKeeper (Dubbo, then Curator)...\n');
const zk = await zookeeperPropagation(CHANGES);
const dubbo = summarize(zk.dubbo);
const curator = summarize(zk.curator);

const rows: [string, string, Summary][] = [
  ['Consul (the simulator)', 'health check flipped: `web.service.consul` A', consul],
  ['ZooKeeper', 'Dubbo provider unregistered / registered (ephemeral node deleted / created): `demo-provider.service.consul` A', dubbo],
  ['ZooKeeper', "Curator instance's port changed (setData): `orders.service.consul` SRV", curator],
];
const propagationTable = [
  `Propagation: from the write's completion to the first UDP answer showing it (${CHANGES} changes each, polled as fast as svcdns answers)`,
  '',
  '| registry | change | p50 | p90 | p99 | max | mean |',
  '|---|---|---:|---:|---:|---:|---:|',
  ...rows.map(([registry, change, s]) => `| ${registry} | ${change} | ${summaryCells(s)} |`),
].join('\n');
process.stdout.write(`\n${propagationTable}\n`);

let deadTable: string | null = null;
if (!opts.quick) {
  process.stderr.write('bench-zookeeper: dead providers (both ZooKeepers at once; about a minute)...\n');
  const dead = await Promise.all([
    deadProvider('tickTime 2000 ms, maxSessionTimeout 40 s (ZooKeeper\'s defaults)', PRODUCTION),
    deadProvider('tickTime 2000 ms, maxSessionTimeout 60 s', SIXTY),
  ]);
  const s = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
  deadTable = [
    `A provider whose session ends: a registrar asking for ${FRAMEWORK_SESSION_MS / 1000} s (Dubbo's and Curator's default), one sample each`,
    '',
    '| ZooKeeper | session granted | clean close → gone from DNS | SIGKILL → session expired (nodes deleted) | SIGKILL → gone from DNS |',
    '|---|---:|---:|---:|---:|',
    ...dead.map((d) => `| ${d.zookeeper} | ${s(d.grantedMs)} | ${d.closedMs.toFixed(0)} ms | ${s(d.expiredMs)} | ${s(d.dnsMs)} |`),
  ].join('\n');
  process.stdout.write(`\n${deadTable}\n`);
}
const seconds = ((performance.now() - t0) / 1000).toFixed(0);

if (opts.write) {
  const machine = `${cpus().length} cores (${cpus()[0]?.model.trim() ?? '?'}), Linux ${release()}, node ${process.version}; load average ${load0} at the start, ${loadavg()[0]!.toFixed(1)} at the end`;
  const command = `npm run bench:zookeeper${opts.quick ? ' -- --quick' : ''}${CHANGES !== 200 ? ` -- --changes ${CHANGES}` : ''}`;
  const run = `**Run:** ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC, svcdns at ${commit}, \`${command}\` (${seconds} s); ZooKeeper ${zookeeperVersion} (Debian's package), tickTime 2000 ms. Machine: ${machine}.`;
  writeSection('propagation', `${run}\n\n${propagationTable}`);
  if (deadTable !== null) writeSection('dead', `${run}\n\n${deadTable}`);
  process.stdout.write('\nBENCHMARKS.md: the bench:zookeeper parts rewritten\n');
}

/** Replaces the text between `<!-- bench:zookeeper-PART begin -->` and its end marker (the section is added if missing). */
function writeSection(part: 'propagation' | 'dead', body: string): void {
  const begin = `<!-- bench:zookeeper-${part} begin (generated by \`npm run bench:zookeeper -- --write\`; edits here are replaced) -->`;
  const end = `<!-- bench:zookeeper-${part} end -->`;
  const path = join(ROOT, 'BENCHMARKS.md');
  let text = readFileSync(path, 'utf8');
  if (!text.includes(end)) {
    const markers = ['propagation', 'dead'].map((p) => `<!-- bench:zookeeper-${p} begin -->\n<!-- bench:zookeeper-${p} end -->`).join('\n\n');
    text = `${text.trimEnd()}\n\n## issue 16: ZooKeeper (\`npm run bench:zookeeper\`)\n\n${markers}\n`;
  }
  const a = text.indexOf(`<!-- bench:zookeeper-${part} begin`);
  const b = text.indexOf(end);
  writeFileSync(path, `${text.slice(0, a)}${begin}\n${body}\n${text.slice(b)}`);
}
