/**
 * DNS throughput and latency, measured: `npm run bench:dns` (about 5 minutes; run as root, so that
 * it can `apt-get install` dnsperf, dnsmasq-base and unbound when they are missing).
 *
 * In one run, with the same query files, the same dnsperf settings and the same pinning (the server
 * under test on core 0, dnsperf on core 1), it measures:
 *   1. svcdns answering Consul names from a catalog file: `svc3.service.consul` (3 instances) and
 *      `svc20.service.consul` (20), A and SRV;
 *   2. svcdns answering forwarded names from its cache: 40 names, all cached before the runs (the
 *      upstream's query counter shows it is asked nothing during them);
 *   3. svcdns forwarding names never asked before (`q<N>.miss.bench`, each run its own range) to
 *      an unbound that answers every name under `miss.bench` from local data (`redirect`); that
 *      unbound runs on core 1, beside dnsperf;
 *   4. bare Node UDP servers, each sending one fixed reply, ID patched (scripts/bench/bare-udp.ts):
 *      the ceiling for a DNS server in Node. Their replies are svcdns's own replies to the questions
 *      of (1) and (2), one server each, so every svcdns row has a ceiling of the same reply size;
 *   5. dnsmasq and unbound (the Debian binaries, foreground, temporary config files) serving the
 *      same records as (1) from local data;
 *   6. svcdns with metrics on (issue 13): a process of its own started with `--http-listen` (the
 *      others run without it, so their rows are metrics off), answering the questions of (1),
 *      compared with the same bare ceilings. During every dnsperf run of its rows (and only then)
 *      this script scrapes its /metrics once a second, as Prometheus would, and checks each scrape
 *      (200, with `svcdns_dns_requests_total`); the scrapes' cost is in its CPU per answer.
 *   7. scaling with --workers (issue 17), every process free to run on any core: one svcdns
 *      process, --workers 2 with one shared UDP socket, --workers 2 with a UDP socket per worker
 *      (reusePort, where this Node has it: run the script with Node 22.12+ to get both modes), and
 *      the bare server as one process and (reusePort) as two; CPU per answer, how the CPU split
 *      between the processes, and what was left for dnsperf. `--scaling` measures this table alone.
 * Every server listens on 127.0.0.1 on a free port and is checked to answer correctly (exact
 * records, NOERROR, no TC) before the runs and again after them.
 *
 * Each target gets a warm-up run, then `--rounds` rounds of `--seconds` each; in every round every
 * target runs once, the order rotated from round to round. The table shows the median queries/s
 * of the rounds. dnsperf 2.10 has no latency histogram, so p99 comes from `--p99-runs` more short
 * runs per target (interleaved the same way), rate-limited to half its median (-Q) with -v (one line
 * per query with its latency); the table shows the median of their p99s.
 *
 * Output: a markdown report on stdout (machine, versions, date, command, table, notes), ready to
 * paste into BENCHMARKS.md; `--write FILE` also writes it to FILE. Progress goes to stderr.
 * Every child process is stopped at the end, on errors, and on Ctrl-C.
 */

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import ts from 'typescript';
import { assertAlive, childPids, Children, coreTimes, cpuSeconds, freePort, peakRssKiB, pinSelf, reapedChildrenCpuSeconds, treeCpuSeconds, udpRcvbufErrors, type Child } from './bench/children.js';
import { reusePortAvailable } from '../src/listen/reuse-port.js';
import { DNSPERF, dnsperfArgs, runDnsperf, type DnsperfRun } from './bench/dnsperf.js';
import { emptyScrapeStats, scrapeEvery, scrapeOnce, sumOf, type ScrapeStats } from './bench/scrape.js';
import {
  catalogYaml,
  check,
  dnsmasqConf,
  expectedFor,
  HIT_NAMES,
  MISS_ADDRESS,
  MISS_ZONE,
  query,
  SERVICES,
  serviceName,
  unboundTargetConf,
  unboundUpstreamConf,
  waitForAnswer,
  type Expected,
  type Service,
} from './bench/zones.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const SERVER_CORE = 0;
const CLIENT_CORE = 1;
/** dnsperf -c and -q (-q is the total in flight, not per client: docs/udp-facts.md). */
const CLIENTS = 4;
/** dnsperf -c of the scaling table: enough source ports for the kernel's reusePort hash to spread them. */
const SCALING_CLIENTS = 32;
const OUTSTANDING = 200;
/** dnsperf -t: unanswered after this long is lost; dnsperf also waits this long at the end of a run with losses. */
const TIMEOUT_SECONDS = 1;
const WARMUP_SECONDS = 1;
/** Fresh names written for each second of a cache-miss run: far above what a forwarder reaches. */
const MISS_NAMES_PER_SECOND = 80_000;
const DNSMASQ = '/usr/sbin/dnsmasq';
const UNBOUND = '/usr/sbin/unbound';
const UNBOUND_CONTROL = '/usr/sbin/unbound-control';
/** How often the metrics-on svcdns is scraped while its rows run (Prometheus's scrape_interval). */
const SCRAPE_INTERVAL_MS = 1000;
/** A scrape taking longer than this counts as failed (Prometheus's scrape_timeout is at most the interval; kept loose here). */
const SCRAPE_TIMEOUT_MS = 5000;
/** What every scrape must contain. */
const SCRAPE_MUST_HAVE = 'svcdns_dns_requests_total';
const METRICS_ON = 'svcdns, metrics on (scraped every 1 s)';

// ---- options ----

const USAGE = `usage: node --import tsx scripts/bench-dns.ts [--rounds N] [--seconds S] [--p99-runs N] [--p99-seconds S] [--write FILE]
  --rounds N        rounds; each runs every target once (default 3)
  --seconds S       length of each measured dnsperf run (default 5)
  --p99-runs N      rate-limited runs per target that measure p99 (default 3)
  --p99-seconds S   length of each of them (default 1)
  --only REGEX      measure only the targets whose label matches (e.g. 'svc3|forwarded'); no scaling table
  --scaling         measure only the scaling table (one process, --workers 2 in both socket modes, the bare ceiling)
  --write FILE      also write the markdown report to FILE`;

const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '5' },
    'p99-runs': { type: 'string', default: '3' },
    'p99-seconds': { type: 'string', default: '1' },
    write: { type: 'string' },
    only: { type: 'string' },
    scaling: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
  strict: true,
});
if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}
function positiveInt(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--${name} must be a positive integer (got ${JSON.stringify(text)})\n${USAGE}`);
    process.exit(2);
  }
  return n;
}
const ROUNDS = positiveInt('rounds', opts.rounds);
const SECONDS = positiveInt('seconds', opts.seconds);
const P99_RUNS = positiveInt('p99-runs', opts['p99-runs']);
const P99_SECONDS = positiveInt('p99-seconds', opts['p99-seconds']);
const ONLY = opts.only === undefined ? null : new RegExp(opts.only, 'i');
const SCALING_ONLY = opts.scaling;

const started = performance.now();
const progress = (msg: string): void => void process.stderr.write(`[bench-dns ${((performance.now() - started) / 1000).toFixed(0).padStart(3)} s] ${msg}\n`);

// ---- prerequisites ----

/** Installs what is missing (as root), or explains and exits. */
function ensureTools(): void {
  const needed: [string, string][] = [
    [DNSPERF, 'dnsperf'],
    [DNSMASQ, 'dnsmasq-base'],
    [UNBOUND, 'unbound'],
    [UNBOUND_CONTROL, 'unbound'],
    ['/usr/bin/taskset', 'util-linux'],
  ];
  const missing = [...new Set(needed.filter(([file]) => !existsSync(file)).map(([, pkg]) => pkg))];
  if (missing.length > 0) {
    if (process.getuid?.() !== 0) {
      console.error(`bench-dns: needs ${missing.join(', ')} (apt-get install -y ${missing.join(' ')}); not root, so not installing them`);
      process.exit(1);
    }
    progress(`installing ${missing.join(', ')} (apt-get install -y)`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const install = (): number | null => spawnSync('apt-get', ['install', '-y', ...missing], { stdio: ['ignore', 2, 2], env }).status;
    if (install() !== 0) {
      spawnSync('apt-get', ['update'], { stdio: ['ignore', 2, 2], env });
      if (install() !== 0) {
        console.error(`bench-dns: apt-get install ${missing.join(' ')} failed`);
        process.exit(1);
      }
    }
  }
  if (cpus().length < 2) {
    console.error(`bench-dns: needs 2 cores (server on core ${SERVER_CORE}, dnsperf on core ${CLIENT_CORE}); this machine has ${cpus().length}`);
    process.exit(1);
  }
}

function firstLine(command: string, args: string[], pattern: RegExp): string {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  return pattern.exec(`${r.stdout}\n${r.stderr}`)?.[1] ?? '?';
}

function machine(): string[] {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? '?';
  const os = /^PRETTY_NAME="?(.*?)"?$/m.exec(existsSync('/etc/os-release') ? readFileSync('/etc/os-release', 'utf8') : '')?.[1] ?? '?';
  const nproc = execFileSync('nproc', { encoding: 'utf8' }).trim();
  const git = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() || '?';
  const dirty = spawnSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() !== '';
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  const argv = process.argv.slice(2);
  const script = process.env.npm_lifecycle_event;
  const command = script ? `npm run ${script}${argv.length ? ` -- ${argv.join(' ')}` : ''}` : `node --import tsx scripts/bench-dns.ts${argv.length ? ` ${argv.join(' ')}` : ''}`;
  return [
    `- date: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}`,
    `- command: \`${command}\` (${ROUNDS} rounds of ${SECONDS} s${SCALING_ONLY ? '' : `, ${P99_RUNS} p99 runs of ${P99_SECONDS} s`})`,
    `- machine: ${nproc} cores (nproc), ${model}, Linux ${release()}, ${os}`,
    `- software: svcdns ${version} (${git}${dirty ? ', src/ with uncommitted changes' : ''}, dist/ built by this run), node ${process.version}, ` +
      `dnsperf ${firstLine(DNSPERF, ['-h'], /Version (\S+)/)}, dnsmasq ${firstLine(DNSMASQ, ['--version'], /version (\S+)/)}, ` +
      `unbound ${firstLine(UNBOUND, ['-V'], /Version (\S+)/)}`,
  ];
}

// ---- targets ----

/** One dnsperf run, with what the server and the kernel did meanwhile. */
/** A bare socket's round below this share of its fastest means the machine slowed down (see the notes). */
const SLOWDOWN_RATIO = 0.9;

interface Measured extends DnsperfRun {
  /** CPU time of the server process over the run's wall time, in % of one core. */
  serverCpuPercent: number;
  /** The server's CPU time per answer, µs: what a reply costs, whatever the rate (robust to a slow client). */
  cpuPerAnswerUs: number;
  /** UDP datagrams the kernel dropped for full receive buffers during the run (any socket: server or dnsperf). */
  rcvbufErrors: number;
  /** Core 0's busy time not spent in the server process (other processes, interrupts), in % of the run's wall time. */
  otherOnServerCorePercent: number;
  /** Steal time on either core during the run, in % of the run's wall time (hypervisor contention). */
  stealPercent: number;
}

interface Target {
  /** The table row's name. */
  label: string;
  /** The process answering (several rows can share one); its peak RSS is shown. */
  server: Child;
  port: number;
  /** The query file of each run (the miss target writes fresh names for every run). */
  queryFile: (seconds: number) => string;
  /** What a reply looks like (from the correctness check). */
  reply: string;
  /** Re-checks the answer (before and after the runs). */
  check: () => Promise<string>;
  /** The dnsmasq row it is compared with (same name and type, else dnsmasq's svc3 A). */
  dnsmasqLabel: string;
  /** The bare Node row it is compared with: the one sending svcdns's reply to the same question. */
  ceilingLabel: string;
  runs: Measured[];
  /** The rate-limited runs: their rate, and each run's p50 and p99 (its per-query latencies are dropped). */
  p99: { rate: number; runs: Measured[]; p50Ms: number[]; p99Ms: number[] };
  rssKiB?: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/** The p-th percentile, lost queries counted as slower than any answer (Infinity). */
function percentile(latencies: number[], lost: number, p: number): number {
  const all = [...latencies, ...new Array<number>(lost).fill(Infinity)].sort((a, b) => a - b);
  if (all.length === 0) return NaN;
  return all[Math.min(all.length - 1, Math.ceil((p / 100) * all.length) - 1)]!;
}

async function main(children: Children, dir: string): Promise<string> {
  const header = machine();

  progress('npm run build');
  execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 2, 2] });
  // This process waits while dnsperf runs; keep it off the server's core all the same.
  pinSelf(CLIENT_CORE);

  // Files: catalog, configs, the bare server as plain JavaScript.
  // svcdns watches the catalog's directory: keep it alone there. (With dnsperf -v writing its
  // output beside it, every write woke all three svcdns processes, 10-20 % of a core each.)
  mkdirSync(join(dir, 'catalog'));
  mkdirSync(join(dir, 'runs'));
  const catalog = join(dir, 'catalog', 'catalog.yaml');
  writeFileSync(catalog, catalogYaml());
  const barePath = join(dir, 'bare-udp.mjs');
  const bareSource = readFileSync(join(ROOT, 'scripts/bench/bare-udp.ts'), 'utf8');
  writeFileSync(barePath, ts.transpileModule(bareSource, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText);

  // The upstream first (core 1, beside dnsperf): svcdns's forwarded names go to it.
  const upstreamPort = await freePort();
  const upstreamConf = join(dir, 'unbound-upstream.conf');
  writeFileSync(upstreamConf, unboundUpstreamConf(upstreamPort, dir));
  const upstream = children.spawn('unbound (upstream)', UNBOUND, ['-d', '-c', upstreamConf], { core: CLIENT_CORE });
  await ready(upstream, upstreamPort, HIT_NAMES[0]!.name);
  const upstreamQueries = (): number => {
    const stats = execFileSync(UNBOUND_CONTROL, ['-c', upstreamConf, 'stats_noreset'], { encoding: 'utf8' });
    return Number(/^total\.num\.queries=(\d+)$/m.exec(stats)?.[1] ?? NaN);
  };
  await check('unbound (upstream)', upstreamPort, { name: `check.${MISS_ZONE}`, type: 'A', answers: [MISS_ADDRESS] });
  if (!Number.isFinite(upstreamQueries())) throw new Error('unbound-control gives no total.num.queries for the upstream');

  // svcdns: one process per kind of row, so the forward cache of one is not churned by another.
  // None has --http-listen (and no SVCDNS_* variable reaches them) but the metrics-on one: the
  // others' rows are metrics off, nothing subscribed to the diagnostics seam.
  const svcdnsEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SVCDNS_') && !k.startsWith('CONSUL_HTTP_')));
  const startSvcdns = async (name: string, core: number | string = SERVER_CORE, extraArgs: string[] = []): Promise<{ child: Child; port: number }> => {
    const port = await freePort();
    const args = ['dist/cli.js', '--listen', `127.0.0.1:${port}`, '--catalog', catalog, '--upstream', `127.0.0.1:${upstreamPort}`, '--resolv-conf', '/dev/null', '--log-level', 'warn', ...extraArgs];
    const child = children.spawn(name, process.execPath, args, { core, cwd: ROOT, env: svcdnsEnv });
    await ready(child, port, serviceName(SERVICES[0]!));
    return { child, port };
  };
  // Scaling with --workers (issue 17): on this many cores, the server and dnsperf must share them;
  // so every process of this phase may run on any core, and the comparison is with one svcdns
  // process and the bare server under the same conditions. --workers 2 runs in both socket modes
  // (one UDP socket shared by the workers; one each with reusePort, where this Node has it), and
  // the bare ceiling as one process and, with reusePort, as two.
  const measureScaling = async (alsoPaused: Child[]): Promise<ScalingTarget[]> => {
    const allCores = cpus().map((_, i) => i).join(',');
    const reusePort = await reusePortAvailable();
    progress(`scaling: svcdns one process, --workers 2 (shared${reusePort ? ', reusePort' : ''}), the bare server; all on cores ${allCores}; dnsperf -c ${SCALING_CLIENTS}`);
    const svc3 = SERVICES[0]!;
    const queries = join(dir, 'runs', 'queries-scaling.txt');
    writeFileSync(queries, `${serviceName(svc3)} A\n`);
    const rows: ScalingTarget[] = [];
    const svcdnsRow = async (label: string, args: string[]): Promise<void> => {
      const s = await startSvcdns(`svcdns (scaling: ${label})`, allCores, args);
      rows.push({ label, children: [s.child], port: s.port, runs: [] });
    };
    await svcdnsRow('svcdns, one process', []);
    await svcdnsRow('svcdns --workers 2, one shared UDP socket (--worker-sockets shared)', ['--workers', '2', '--worker-sockets', 'shared']);
    if (reusePort) await svcdnsRow('svcdns --workers 2, a UDP socket per worker (--worker-sockets reuseport)', ['--workers', '2', '--worker-sockets', 'reuseport']);
    const reply = await query(rows[0]!.port, serviceName(svc3), 'A');
    if (!reply) throw new Error('svcdns did not answer svc3 A');
    const bare = async (label: string, count: number): Promise<void> => {
      const port = await freePort();
      const list: Child[] = [];
      for (let i = 0; i < count; i++) {
        const child = children.spawn(`bare Node UDP (scaling, ${i + 1}/${count})`, process.execPath, [barePath, String(port), reply.toString('hex'), ...(count > 1 ? ['reuseport'] : [])], { core: allCores });
        list.push(child);
        await ready(child, port, serviceName(svc3));
      }
      rows.push({ label, children: list, port, runs: [] });
    };
    await bare('bare Node UDP server, one process', 1);
    if (reusePort) await bare('bare Node UDP server, two processes with reusePort', 2);
    for (const x of rows) await check(x.label, x.port, expectedFor(svc3, 'A'));
    const everyone = [...alsoPaused, ...rows.flatMap((x) => x.children)];
    const scalingRun = async (x: ScalingTarget, seconds: number): Promise<ScalingRun> => {
      // The processes answering: a primary's workers (known now: a replaced one would be new), or the bare ones.
      const answering = x.children.length > 1 ? x.children.map((c) => c.pid) : childPids(x.children[0]!.pid);
      const split = answering.length > 1 ? answering : [];
      const total = (): number => x.children.reduce((a, c) => a + treeCpuSeconds(c.pid), 0);
      const cpuBefore = total();
      const splitBefore = split.map(cpuSeconds);
      const coresBefore = cpus().map((_, i) => coreTimes(i));
      const dnsperfBefore = reapedChildrenCpuSeconds();
      const resume = children.pause(everyone.filter((c) => !x.children.includes(c)));
      const wallBefore = performance.now();
      const run = await runDnsperf(children, {
        port: x.port,
        queryFile: queries,
        seconds,
        clients: SCALING_CLIENTS,
        outstanding: OUTSTANDING,
        timeoutSeconds: TIMEOUT_SECONDS,
        core: allCores,
        outFile: join(dir, 'runs', 'dnsperf.out'),
        server: x.children[0]!,
      }).finally(resume);
      const wall = (performance.now() - wallBefore) / 1000;
      const cpu = total() - cpuBefore;
      const dnsperfCpu = reapedChildrenCpuSeconds() - dnsperfBefore;
      const busy = cpus().reduce((a, _, i) => a + coreTimes(i).busy - coresBefore[i]!.busy, 0);
      const interrupts = cpus().reduce((a, _, i) => a + coreTimes(i).interrupts - coresBefore[i]!.interrupts, 0);
      const steal = cpus().reduce((a, _, i) => a + coreTimes(i).steal - coresBefore[i]!.steal, 0);
      await sleep(100);
      return {
        qps: run.qps,
        cpuPerAnswerUs: (1e6 * cpu) / Math.max(1, run.completed),
        lost: run.lost,
        serverCpuPercent: (100 * cpu) / wall,
        dnsperfCpuPercent: (100 * dnsperfCpu) / wall,
        restCpuPercent: (100 * Math.max(0, busy - interrupts - cpu - dnsperfCpu)) / wall,
        interruptsPercent: (100 * interrupts) / wall,
        idlePercent: (100 * Math.max(0, cpus().length * wall - busy - steal)) / wall,
        splitPercent: split.map((pid, i) => (100 * (cpuSeconds(pid) - splitBefore[i]!)) / wall),
      };
    };
    for (const x of rows) await scalingRun(x, WARMUP_SECONDS);
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < rows.length; i++) {
        const x = rows[(i + round) % rows.length]!;
        const run = await scalingRun(x, SECONDS);
        x.runs.push(run);
        progress(
          `scaling round ${round + 1}/${ROUNDS} ${x.label}: ${int(run.qps)} q/s, ${run.cpuPerAnswerUs.toFixed(1)} µs CPU per answer, CPU ${run.serverCpuPercent.toFixed(0)} % ` +
            `(${run.splitPercent.map((p) => p.toFixed(0)).join(' / ') || 'one process'}), dnsperf ${run.dnsperfCpuPercent.toFixed(0)} %, interrupts ${run.interruptsPercent.toFixed(0)} %, other processes ${run.restCpuPercent.toFixed(0)} %, idle ${run.idlePercent.toFixed(0)} %, lost ${run.lost}`,
        );
      }
    }
    for (const x of rows) await check(x.label, x.port, expectedFor(svc3, 'A'));
    return rows;
  };
  if (SCALING_ONLY) {
    const scaling = await measureScaling([upstream]);
    for (const x of scaling) for (const c of x.children) assertAlive(c);
    const warnings = scaling.filter((x) => x.label.startsWith('svcdns')).flatMap((x) => x.children[0]!.stderrLines.map((line) => `${x.children[0]!.name}: ${line}`));
    return ['## DNS throughput: scaling with `--workers` (`npm run bench:dns -- --scaling`, scripts/bench-dns.ts)', '', ...header, '', ...scalingSection(scaling, warnings)].join('\n');
  }

  progress('starting servers');
  const svcdns = await startSvcdns('svcdns');
  const svcdnsHit = await startSvcdns('svcdns (forward hits)');
  const svcdnsMiss = await startSvcdns('svcdns (forward misses)');
  const metricsPort = await freePort();
  const svcdnsMetrics = await startSvcdns('svcdns (metrics on)', SERVER_CORE, ['--http-listen', `127.0.0.1:${metricsPort}`]);
  const firstScrape = emptyScrapeStats();
  await scrapeOnce(metricsPort, SCRAPE_MUST_HAVE, SCRAPE_TIMEOUT_MS, firstScrape);
  if (firstScrape.ok !== 1) throw new Error(`svcdns (metrics on): GET /metrics failed: ${firstScrape.failures.join('; ')}`);

  const dnsmasqPort = await freePort();
  const dnsmasqConfPath = join(dir, 'dnsmasq.conf');
  writeFileSync(dnsmasqConfPath, dnsmasqConf(dnsmasqPort));
  const dnsmasq = children.spawn('dnsmasq', DNSMASQ, ['--keep-in-foreground', `--conf-file=${dnsmasqConfPath}`], { core: SERVER_CORE });
  await ready(dnsmasq, dnsmasqPort, serviceName(SERVICES[0]!));

  const unboundPort = await freePort();
  const unboundConfPath = join(dir, 'unbound.conf');
  writeFileSync(unboundConfPath, unboundTargetConf(unboundPort, dir));
  const unbound = children.spawn('unbound', UNBOUND, ['-d', '-c', unboundConfPath], { core: SERVER_CORE });
  await ready(unbound, unboundPort, serviceName(SERVICES[0]!));

  // The bare servers: one per svcdns reply measured, each sending those very bytes, so that every
  // svcdns row is compared with the Node ceiling for a reply of its own size.
  const svc3 = SERVICES[0]!;
  const svcdnsReply = await query(svcdns.port, serviceName(svc3), 'A');
  if (!svcdnsReply) throw new Error('svcdns did not answer svc3 A');
  const startBare = async (name: string, reply: Buffer, answersTo: string, core: number | string = SERVER_CORE): Promise<{ child: Child; port: number }> => {
    const port = await freePort();
    const child = children.spawn(name, process.execPath, [barePath, String(port), reply.toString('hex')], { core });
    await ready(child, port, answersTo);
    return { child, port };
  };
  const bareLabel = (name: string, type: string): string => `bare Node UDP server: svcdns's reply to ${name} ${type}`;

  // Query files.
  const files = new Map<string, string>();
  const queryFile = (key: string, lines: string[]): (() => string) => {
    const file = join(dir, 'runs', `queries-${key}.txt`);
    writeFileSync(file, `${lines.join('\n')}\n`);
    files.set(key, file);
    return () => file;
  };
  let missNamesUsed = 0;
  const missFile = (seconds: number): string => {
    const count = seconds * MISS_NAMES_PER_SECOND;
    const lines = new Array<string>(count);
    for (let i = 0; i < count; i++) lines[i] = `q${missNamesUsed + i + 1}.${MISS_ZONE} A`;
    missNamesUsed += count;
    const file = join(dir, 'runs', 'queries-miss.txt');
    writeFileSync(file, `${lines.join('\n')}\n`);
    return file;
  };

  const targets: Target[] = [];
  const add = async (t: Omit<Target, 'reply' | 'runs' | 'p99'>): Promise<void> => {
    if (ONLY && !ONLY.test(t.label)) return;
    progress(`checking ${t.label}`);
    targets.push({ ...t, reply: await t.check(), runs: [], p99: { rate: 0, runs: [], p50Ms: [], p99Ms: [] } });
  };
  const checkAll = async (port: number, server: string, expected: Expected[]): Promise<string> => {
    const replies = [];
    for (const e of expected) replies.push(await check(server, port, e));
    return `${replies[0]} (${replies.length} names)`;
  };
  const kinds = [
    ['A', (s: Service) => expectedFor(s, 'A')],
    ['SRV', (s: Service) => expectedFor(s, 'SRV')],
  ] as const;
  for (const [server, key, child, port] of [
    ['svcdns', 'svcdns', svcdns.child, svcdns.port],
    [METRICS_ON, 'svcdns-metrics', svcdnsMetrics.child, svcdnsMetrics.port],
    ['dnsmasq', 'dnsmasq', dnsmasq, dnsmasqPort],
    ['unbound', 'unbound', unbound, unboundPort],
  ] as const) {
    for (const s of SERVICES) {
      for (const [type, expected] of kinds) {
        const e = expected(s);
        await add({
          label: `${server}: ${e.name} ${type}`,
          server: child,
          port,
          queryFile: queryFile(`${key}-${s.name}-${type}`, [`${e.name} ${type}`]),
          check: () => check(server, port, e),
          dnsmasqLabel: `dnsmasq: ${e.name} ${type}`,
          ceilingLabel: bareLabel(e.name, type),
        });
      }
    }
    if (server === 'svcdns') {
      // The checks also fill the forward cache with every hit name.
      const hits = HIT_NAMES.map((h): Expected => ({ name: h.name, type: 'A', answers: [h.address] }));
      const hitCeiling = bareLabel(`${hits[0]!.name} (forwarded)`, 'A');
      await add({
        label: `svcdns: forwarded, cache hit (${HIT_NAMES.length} names)`,
        server: svcdnsHit.child,
        port: svcdnsHit.port,
        queryFile: queryFile('hit', HIT_NAMES.map((h) => `${h.name} A`)),
        check: () => checkAll(svcdnsHit.port, 'svcdns (forward hits)', hits),
        dnsmasqLabel: `dnsmasq: ${serviceName(svc3)} A`,
        ceilingLabel: hitCeiling,
      });
      await add({
        label: `svcdns: forwarded, cache miss (q<N>.${MISS_ZONE})`,
        server: svcdnsMiss.child,
        port: svcdnsMiss.port,
        queryFile: missFile,
        check: () => check('svcdns (forward misses)', svcdnsMiss.port, { name: `check${Math.floor(Math.random() * 1e9)}.${MISS_ZONE}`, type: 'A', answers: [MISS_ADDRESS] }),
        dnsmasqLabel: `dnsmasq: ${serviceName(svc3)} A`,
        ceilingLabel: hitCeiling,
      });
      for (const s of SERVICES) {
        for (const [type, expected] of kinds) {
          const e = expected(s);
          const reply = await query(svcdns.port, e.name, type);
          if (!reply) throw new Error(`svcdns did not answer ${e.name} ${type}`);
          const bare = await startBare(`bare Node UDP (${e.name} ${type})`, reply, e.name);
          await add({
            label: bareLabel(e.name, type),
            server: bare.child,
            port: bare.port,
            queryFile: queryFile(`bare-${s.name}-${type}`, [`${e.name} ${type}`]),
            check: () => check('bare Node UDP', bare.port, e),
            dnsmasqLabel: `dnsmasq: ${e.name} ${type}`,
            ceilingLabel: bareLabel(e.name, type),
          });
        }
      }
      const hitReply = await query(svcdnsHit.port, hits[0]!.name, 'A');
      if (!hitReply) throw new Error(`svcdns did not answer ${hits[0]!.name} A`);
      const bareHit = await startBare('bare Node UDP (forwarded)', hitReply, hits[0]!.name);
      await add({
        label: hitCeiling,
        server: bareHit.child,
        port: bareHit.port,
        queryFile: queryFile('bare-hit', [`${hits[0]!.name} A`]),
        check: () => check('bare Node UDP', bareHit.port, hits[0]!),
        dnsmasqLabel: `dnsmasq: ${serviceName(svc3)} A`,
        ceilingLabel: hitCeiling,
      });
    }
  }

  // While one server is measured, every other server of the table is stopped (SIGSTOP): none of
  // them can then run a timer or a garbage collection on the core being measured. (Without this,
  // the forward-miss svcdns, idle with a 140 MB heap, collected it during other rows' runs.)
  // The metrics-on svcdns is scraped during its own runs only (warm-up and p99 runs included):
  // paused with the others the rest of the time, it could not answer a scrape anyway.
  const tableServers = new Set(targets.map((t) => t.server));
  const scrapes = { warmUp: emptyScrapeStats(), measured: emptyScrapeStats(), p99: emptyScrapeStats() };
  let scrapePhase: keyof typeof scrapes = 'warmUp';
  /** Queries dnsperf sent the metrics-on svcdns, to compare with what its counter says at the end. */
  let metricsSent = 0;
  const runOnce = async (t: Target, seconds: number, extra: { maxQps?: number; verbose?: boolean } = {}): Promise<DnsperfRun> => {
    const resume = children.pause([...tableServers].filter((c) => c !== t.server));
    const stopScraping = t.server === svcdnsMetrics.child ? scrapeEvery(metricsPort, SCRAPE_INTERVAL_MS, SCRAPE_MUST_HAVE, SCRAPE_TIMEOUT_MS, scrapes[scrapePhase]) : null;
    try {
      const run = await runDnsperf(children, {
        port: t.port,
        queryFile: t.queryFile(seconds),
        seconds,
        clients: CLIENTS,
        outstanding: OUTSTANDING,
        timeoutSeconds: TIMEOUT_SECONDS,
        core: CLIENT_CORE,
        outFile: join(dir, 'runs', 'dnsperf.out'),
        server: t.server,
        ...extra,
      });
      if (t.server === svcdnsMetrics.child) metricsSent += run.sent;
      return run;
    } finally {
      await stopScraping?.();
      resume();
    }
  };

  const hitTarget = targets.find((t) => t.server === svcdnsHit.child)!;
  const missTarget = targets.find((t) => t.server === svcdnsMiss.child)!;
  let upstreamDuringHits = 0;
  let upstreamDuringMisses = 0;
  let missCompleted = 0;
  const wrapped: string[] = [];
  const measure = async (t: Target, seconds: number, extra: { maxQps?: number; verbose?: boolean } = {}): Promise<Measured> => {
    const before = t === hitTarget || t === missTarget ? upstreamQueries() : 0;
    const cpuBefore = treeCpuSeconds(t.server.pid);
    const dropsBefore = udpRcvbufErrors();
    const serverCoreBefore = coreTimes(SERVER_CORE);
    const clientCoreBefore = coreTimes(CLIENT_CORE);
    const wallBefore = performance.now();
    const dnsperfRun = await runOnce(t, seconds, extra);
    const wall = (performance.now() - wallBefore) / 1000;
    const serverCpu = treeCpuSeconds(t.server.pid) - cpuBefore;
    const serverCore = coreTimes(SERVER_CORE);
    const clientCore = coreTimes(CLIENT_CORE);
    const run: Measured = {
      ...dnsperfRun,
      serverCpuPercent: (100 * serverCpu) / wall,
      cpuPerAnswerUs: (1e6 * serverCpu) / Math.max(1, dnsperfRun.completed),
      rcvbufErrors: udpRcvbufErrors() - dropsBefore,
      otherOnServerCorePercent: (100 * Math.max(0, serverCore.busy - serverCoreBefore.busy - serverCpu)) / wall,
      stealPercent: (100 * (serverCore.steal - serverCoreBefore.steal + clientCore.steal - clientCoreBefore.steal)) / wall,
    };
    if (t === hitTarget) upstreamDuringHits += upstreamQueries() - before;
    if (t === missTarget) {
      upstreamDuringMisses += upstreamQueries() - before;
      missCompleted += run.completed;
      if (run.sent > seconds * MISS_NAMES_PER_SECOND) wrapped.push(`${run.sent} sent, ${seconds * MISS_NAMES_PER_SECOND} names`);
    }
    await sleep(100);
    return run;
  };

  progress(`warm-up: ${WARMUP_SECONDS} s per target`);
  for (const t of targets) await runOnce(t, WARMUP_SECONDS);
  scrapePhase = 'measured';

  for (let round = 0; round < ROUNDS; round++) {
    const order = targets.map((_, i) => targets[(i + round * 5) % targets.length]!);
    for (const [i, t] of order.entries()) {
      const run = await measure(t, SECONDS);
      t.runs.push(run);
      const bad = Object.entries(run.rcodes).filter(([rcode]) => rcode !== 'NOERROR');
      progress(
        `round ${round + 1}/${ROUNDS} ${String(i + 1).padStart(2)}/${order.length} ${t.label}: ${Math.round(run.qps).toLocaleString('en')} q/s, ` +
          `mean ${run.meanLatencyMs.toFixed(2)} ms, server CPU ${run.serverCpuPercent.toFixed(0)} %, other on core ${SERVER_CORE} ${run.otherOnServerCorePercent.toFixed(0)} %, steal ${run.stealPercent.toFixed(0)} %, lost ${run.lost} (kernel drops ${run.rcvbufErrors})${bad.length ? `, ${bad.map(([r, n]) => `${r} ${n}`).join(' ')}` : ''}`,
      );
    }
  }

  for (const t of targets) t.p99.rate = Math.max(1, Math.floor(median(t.runs.map((r) => r.qps)) / 2));
  scrapePhase = 'p99';
  for (let round = 0; round < P99_RUNS; round++) {
    const order = targets.map((_, i) => targets[(i + round * 5) % targets.length]!);
    for (const t of order) {
      const run = await measure(t, P99_SECONDS, { maxQps: t.p99.rate, verbose: true });
      const [p50, p99, p999] = [50, 99, 99.9].map((p) => percentile(run.latenciesMs, run.lost, p));
      t.p99.p50Ms.push(p50!);
      t.p99.p99Ms.push(p99!);
      t.p99.runs.push({ ...run, latenciesMs: [] });
      progress(
        `p99 run ${round + 1}/${P99_RUNS} at ${int(t.p99.rate)} q/s, ${t.label}: p99 ${ms(p99!)} (p50 ${ms(p50!)}, p99.9 ${ms(p999!)}; ` +
          `${int(run.latenciesMs.length)} answers, lost ${run.lost}; server CPU ${run.serverCpuPercent.toFixed(0)} %, ` +
          `other on core ${SERVER_CORE} ${run.otherOnServerCorePercent.toFixed(0)} %, steal ${run.stealPercent.toFixed(0)} %)`,
      );
    }
  }

  const scaling = ONLY ? [] : await measureScaling([...tableServers]);

  progress('checking every target again after the runs');
  for (const t of targets) await t.check();
  for (const t of targets) {
    assertAlive(t.server);
    t.rssKiB = peakRssKiB(t.server.pid);
  }
  const lastScrape = emptyScrapeStats();
  const lastText = await scrapeOnce(metricsPort, SCRAPE_MUST_HAVE, SCRAPE_TIMEOUT_MS, lastScrape);
  if (lastText === null) throw new Error(`svcdns (metrics on): GET /metrics after the runs failed: ${lastScrape.failures.join('; ')}`);
  const svcdnsWarnings = [svcdns.child, svcdnsHit.child, svcdnsMiss.child, svcdnsMetrics.child, ...scaling.filter((x) => x.label.startsWith('svcdns')).map((x) => x.children[0]!)].flatMap((c) => c.stderrLines.map((line) => `${c.name}: ${line}`));

  return report(header, targets, scaling, {
    upstreamDuringHits,
    upstreamDuringMisses,
    missCompleted,
    missNamesUsed,
    wrapped,
    svcdnsWarnings,
    scrapes,
    metricsSent,
    metricsRequests: sumOf(lastText, SCRAPE_MUST_HAVE),
    exampleArgs: dnsperfArgs({ port: svcdns.port, queryFile: 'QUERIES', seconds: SECONDS, clients: CLIENTS, outstanding: OUTSTANDING, timeoutSeconds: TIMEOUT_SECONDS }).join(' '),
  });
}

/** Waits until `child` answers on `port`, failing with its stderr if it exits or stays silent. */
async function ready(child: Child, port: number, name: string): Promise<void> {
  const deadline = performance.now() + 15_000;
  for (;;) {
    assertAlive(child);
    try {
      await waitForAnswer(port, name, 500);
      return;
    } catch (err) {
      if (performance.now() > deadline) throw new Error(`${child.name} does not answer on 127.0.0.1:${port}: ${(err as Error).message}\n  ${child.stderrLines.slice(-10).join('\n  ')}`);
    }
  }
}

// ---- the report ----

interface Extra {
  upstreamDuringHits: number;
  upstreamDuringMisses: number;
  missCompleted: number;
  missNamesUsed: number;
  wrapped: string[];
  svcdnsWarnings: string[];
  /** The scrapes of the metrics-on svcdns, by phase. */
  scrapes: { warmUp: ScrapeStats; measured: ScrapeStats; p99: ScrapeStats };
  /** Queries dnsperf sent it, and the sum of its svcdns_dns_requests_total after the runs. */
  metricsSent: number;
  metricsRequests: number;
  exampleArgs: string;
}

const int = (n: number): string => Math.round(n).toLocaleString('en');
const ms = (x: number): string => (Number.isFinite(x) ? `${x < 1 ? x.toFixed(3) : x.toFixed(2)} ms` : 'lost');
const ratio = (x: number, base: number | undefined): string => (base ? `${(x / base).toFixed(2)}×` : 'n/a');

interface ScalingRun {
  qps: number;
  /** CPU time of every process of the row (a primary and its workers) per answer. */
  cpuPerAnswerUs: number;
  lost: number;
  /** CPU of every process of the row over the run's wall time, in % of one core. */
  serverCpuPercent: number;
  /** dnsperf's CPU time over the run's wall time, % of one core. */
  dnsperfCpuPercent: number;
  /** Every core's busy time in processes other than the row's and dnsperf (other work on the machine), % of one core. */
  restCpuPercent: number;
  /** Every core's time in interrupts and softirqs (loopback's network stack, largely), % of one core. */
  interruptsPercent: number;
  /** Idle time of all the cores, % of one core. */
  idlePercent: number;
  /** With several answering processes: each one's CPU, % of one core (a primary's own CPU is not in it). */
  splitPercent: number[];
}

interface ScalingRow {
  label: string;
  runs: ScalingRun[];
}

type ScalingTarget = ScalingRow & { children: Child[]; port: number };

/** The scaling table and its notes; `warnings`: the svcdns lines at warn or above, when the main table does not report them. */
function scalingSection(scaling: ScalingRow[], warnings: string[] | null): string[] {
  const base = scaling[0];
  const qps = (x: ScalingRow): number => median(x.runs.map((r) => r.qps));
  const med = (x: ScalingRow, f: (r: ScalingRun) => number): number => median(x.runs.map(f));
  const columns = [
    'target (svc3.service.consul A)',
    'queries/s (median)',
    'range of rounds',
    'CPU per answer (all its processes)',
    'its CPU (% of one core)',
    'each answering process',
    "dnsperf's CPU",
    'interrupts, softirqs',
    'other processes',
    'idle',
    'lost',
    '× one svcdns process',
  ];
  const pct = (x: number): string => `${x.toFixed(0)} %`;
  const table = [
    `| ${columns.join(' | ')} |`,
    `|---|${columns.slice(1).map(() => '---:').join('|')}|`,
    ...scaling.map((x) => {
      const split = x.runs[0]?.splitPercent.length ? x.runs[0].splitPercent.map((_, i) => pct(med(x, (r) => r.splitPercent[i] ?? NaN))).join(' / ') : 'one process';
      return (
        `| ${x.label} | **${int(qps(x))}** | ${int(Math.min(...x.runs.map((r) => r.qps)))}–${int(Math.max(...x.runs.map((r) => r.qps)))} | ` +
        `${med(x, (r) => r.cpuPerAnswerUs).toFixed(1)} µs | ${pct(med(x, (r) => r.serverCpuPercent))} | ${split} | ${pct(med(x, (r) => r.dnsperfCpuPercent))} | ${pct(med(x, (r) => r.interruptsPercent))} | ${pct(med(x, (r) => r.restCpuPercent))} | ${pct(med(x, (r) => r.idlePercent))} | ` +
        `${int(x.runs.reduce((a, r) => a + r.lost, 0))} | ${ratio(qps(x), base && qps(base))} |`
      );
    }),
  ];
  const reusePortRow = scaling.some((x) => x.label.includes('reuseport'));
  const notes = [
    `- Every process here (svcdns, its primary and workers, the bare servers, dnsperf) may run on any of the ${cpus().length} cores: with --workers 2 on a machine this size, dnsperf shares the cores ` +
      `with the workers, so this shows what a second process adds here, not how far it scales on a larger machine. ` +
      `${ROUNDS} rounds of ${SECONDS} s after a ${WARMUP_SECONDS} s warm-up, order rotated; dnsperf as in the other runs but with \`-c ${SCALING_CLIENTS}\` ` +
      `(${SCALING_CLIENTS} sockets, so ${SCALING_CLIENTS} source ports: with reusePort the kernel places each flow on one worker's socket by a hash of its addresses and ports, and a handful of flows could land unevenly), the same for every row.`,
    `- Each row's CPU is its processes' CPU time over the run's wall time (a primary and its workers together); "each answering process" splits it between the workers (or the bare processes), ` +
      `the primary's own share being the rest; dnsperf's CPU is its own (the rise of this script's reaped children's time); "interrupts, softirqs" is the cores' time there ` +
      `(on loopback, much of the network stack's work for both sides, charged to no process); "other processes" is the cores' remaining busy time (` +
      `**well above a few %, something else was running on the machine and the row's figures are less reliable**), and "idle" what was left of the ${cpus().length} cores, all in % of one core (steal time in none).`,
    reusePortRow
      ? '- `--worker-sockets reuseport`: each worker binds its own UDP socket with reusePort (SO_REUSEPORT); `shared`: the workers read one socket the primary bound (node:cluster); TCP is the primary\'s round robin in both (not measured here).'
      : `- node ${process.version} has no dgram reusePort: the reusePort rows need Node 22.12+ (run the script with such a node first in PATH).`,
    ...(warnings === null ? [] : [warnings.length ? `- svcdns wrote ${warnings.length} log lines at warn or above, e.g.: \`${warnings.slice(0, 3).join('` `')}\`` : '- svcdns wrote no log line at warn or above during the runs.']),
  ];
  return [...table, '', ...notes, ''];
}

function report(header: string[], targets: Target[], scaling: ScalingRow[], extra: Extra): string {
  const qps = (t: Target): number => median(t.runs.map((r) => r.qps));
  const cpuUs = (t: Target): number => median(t.runs.map((r) => r.cpuPerAnswerUs));
  const byLabel = new Map(targets.map((t) => [t.label, t]));
  const rows = targets.map((t) => {
    const q = qps(t);
    const sent = t.runs.reduce((a, r) => a + r.sent, 0);
    const lost = t.runs.reduce((a, r) => a + r.lost, 0);
    const drops = t.runs.reduce((a, r) => a + r.rcvbufErrors, 0);
    const rcodes = new Map<string, number>();
    for (const r of t.runs) for (const [rcode, n] of Object.entries(r.rcodes)) if (rcode !== 'NOERROR') rcodes.set(rcode, (rcodes.get(rcode) ?? 0) + n);
    const p99Lost = t.p99.runs.reduce((a, r) => a + r.lost, 0);
    const dnsmasq = byLabel.get(t.dnsmasqLabel);
    const bare = byLabel.get(t.ceilingLabel);
    const qpsRange = `${int(Math.min(...t.runs.map((r) => r.qps)))}–${int(Math.max(...t.runs.map((r) => r.qps)))}`;
    return [
      t.label,
      t.reply,
      `**${int(q)}**`,
      qpsRange,
      ms(median(t.runs.map((r) => r.meanLatencyMs))),
      `${median(t.runs.map((r) => r.serverCpuPercent)).toFixed(0)} %`,
      `${cpuUs(t).toFixed(1)} µs`,
      `${ms(median(t.p99.p99Ms))} (p50 ${ms(median(t.p99.p50Ms))}) at ${int(t.p99.rate)}/s${p99Lost ? `, ${int(p99Lost)} lost` : ''}`,
      lost || drops ? `${int(lost)} (${((100 * lost) / sent).toFixed(3)} %), kernel drops ${int(drops)}` : '0',
      rcodes.size ? [...rcodes].map(([r, n]) => `${r} ${int(n)}`).join(', ') : 'none',
      `${((t.rssKiB ?? NaN) / 1024).toFixed(1)} MiB`,
      ratio(q, bare && qps(bare)),
      bare ? ratio(cpuUs(bare), cpuUs(t)) : 'n/a',
      ratio(q, dnsmasq && qps(dnsmasq)),
    ];
  });
  const columns = ['target', 'reply (answers, size)', 'queries/s (median)', 'range of rounds', 'mean latency at max rate', 'server CPU', 'server CPU per answer', 'p99 at half rate', 'lost', 'rcodes other than NOERROR', 'peak RSS', '× Node ceiling', '× ceiling, CPU per answer', '× dnsmasq'];
  const table = [`| ${columns.join(' | ')} |`, `|${columns.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];

  const hit = targets.find((t) => t.label.includes('cache hit'));
  // Only the saturating runs: in the rate-limited ones, the kernel's work of waking an idle core 0
  // for each burst shows up as "other" too.
  const allRuns = targets.flatMap((t) => t.runs);
  const worst = (f: (r: Measured) => number): string => `${Math.max(...allRuns.map(f)).toFixed(0)} %`;
  const noisy = targets.filter((t) => t.runs.some((r) => r.otherOnServerCorePercent > 5 || r.stealPercent > 5)).map((t) => t.label);
  // The bare sockets do the same work in every round, so a round far below their best is the
  // machine slowing down (seen with core 0 free of other processes and no steal: something outside
  // the VM), which the two checks above cannot see.
  const bareSpread = targets
    .filter((t) => t.label.startsWith('bare') && t.runs.length > 1)
    .map((t) => ({ label: t.label, low: Math.min(...t.runs.map((r) => r.qps)) / Math.max(...t.runs.map((r) => r.qps)) }));
  const slowed = bareSpread.filter((b) => b.low < SLOWDOWN_RATIO);
  const notes = [
    `- Each run: \`taskset -c ${CLIENT_CORE} dnsperf ${extra.exampleArgs}\` (EDNS 4096, so 20 SRV records and their addresses fit without TC); ` +
      `every server pinned with \`taskset -c ${SERVER_CORE}\`, this script on core ${CLIENT_CORE} (idle while dnsperf runs). A ${WARMUP_SECONDS} s warm-up run per target, ` +
      `then ${ROUNDS} rounds in which every target runs once (order rotated each round); queries/s is the median of the rounds.`,
    `- Lost: no reply within ${TIMEOUT_SECONDS} s (\`-t ${TIMEOUT_SECONDS}\`), summed over the rounds; kernel drops: the rise of UDP RcvbufErrors in /proc/net/snmp during those runs ` +
      `(datagrams dropped because a socket's receive buffer was full, the server's or dnsperf's; the Node servers ask for a 1 MiB buffer, dnsmasq and unbound keep the default, ` +
      `net.core.rmem_default = ${readFileSync('/proc/sys/net/core/rmem_default', 'utf8').trim()} B). Server CPU: the server process's CPU time over the run's wall time, median of the rounds; ` +
      `near 100 % the server is the limit, well below it the limit is elsewhere (dnsperf on core ${CLIENT_CORE}, or, for cache misses, the upstream).`,
    `- Server CPU per answer: the server's CPU time during the run divided by the answers dnsperf received (median of the rounds). It is what one reply costs the server ` +
      `and it does not depend on how fast dnsperf can ask, so on a noisy machine its ratio to the ceiling (× ceiling, CPU per answer = the bare server's µs / this row's µs) ` +
      `is steadier than the ratio of queries/s.`,
    `- Noise: in the worst of the measured (saturating) runs, core ${SERVER_CORE} spent ${worst((r) => r.otherOnServerCorePercent)} of the time on something other than the server under test, and steal time ` +
      `(the hypervisor running something else) was ${worst((r) => r.stealPercent)}.` +
      (noisy.length ? ` **Runs above 5 % of either: ${noisy.join('; ')}; their figures are less reliable.**` : '') +
      (bareSpread.length
        ? ` The bare sockets' slowest round was ${Math.round(100 * Math.min(...bareSpread.map((b) => b.low)))} % of their fastest` +
          (slowed.length
            ? `: **the machine slowed down during some rounds (${slowed.map((b) => `${b.label} ${Math.round(100 * b.low)} %`).join('; ')}); the medians mix slow and fast rounds, so the ratios of this run are not reliable.**`
            : ' (the same work every round: the machine kept its speed).')
        : ''),
    `- Mean latency at max rate is mostly queueing: ${OUTSTANDING} queries in flight, so about ${OUTSTANDING}/(queries/s). ` +
      `p99 at half rate: ${P99_RUNS} more runs of ${P99_SECONDS} s per target (interleaved like the rounds) with \`-Q\` at half its median and \`-v\` (each query's latency); ` +
      `the median of their p99s (and p50s); lost queries count as slower than any answer. The target in the issue is p99 < 1 ms at half the max rate. ` +
      `dnsperf times each query itself, on core ${CLIENT_CORE}, so its own scheduling is in every figure: compare with dnsmasq's and unbound's rows, not with zero.`,
    `- Peak RSS is VmHWM of the server process after all its runs; the four svcdns Consul rows share one process, and so do the dnsmasq rows and the unbound rows.`,
    `- svcdns runs \`node dist/cli.js --listen 127.0.0.1:PORT --catalog FILE --upstream 127.0.0.1:UPORT --resolv-conf /dev/null --log-level warn\`, three processes: ` +
      `Consul names, forward hits, forward misses (so misses never evict the hit names). The upstream is unbound (local data only), pinned to core ${CLIENT_CORE} with dnsperf.`,
    `- Forward cache hits: the ${HIT_NAMES.length} names were asked once before the runs; the upstream received ${int(extra.upstreamDuringHits)} queries during the measured and p99 runs of that row ` +
      `(${int([...(hit?.runs ?? []), ...(hit?.p99.runs ?? [])].reduce((a, r) => a + r.completed, 0))} answered), so every answer came from svcdns's cache.`,
    `- Forward cache misses: every run asks its own range of never-asked names (${int(extra.missNamesUsed)} names written in all); the upstream received ${int(extra.upstreamDuringMisses)} queries ` +
      `for ${int(extra.missCompleted)} answered in the measured and p99 runs. Its unbound shares core ${CLIENT_CORE} with dnsperf, so this row also measures how much of that core dnsperf leaves.` +
      (extra.wrapped.length ? ` **dnsperf ran past the end of its name file (${extra.wrapped.join('; ')}): some of those queries were cache hits.**` : ''),
    `- The bare Node servers (scripts/bench/bare-udp.ts, plain node, no tsx) each send one of svcdns's own replies, byte for byte, with the ID patched: the ceiling for any Node server ` +
      `sending that reply on this socket API. Each svcdns row is compared with the bare row sending its reply (the forwarded rows with the reply to the first hit name); ` +
      `dnsmasq's and unbound's rows with the bare row for the same question (their replies differ a little in size: see the reply column).`,
    `- dnsmasq: \`host-record\` per address (several lines for one name give several A records) and \`srv-host\` per instance; its SRV replies carry the targets' A records in the additional section, as svcdns's do. ` +
      `unbound: \`local-data\` A and SRV in a static \`consul.\` zone; unbound puts no additional records in SRV replies, so its SRV replies are smaller (see the reply column).`,
    extra.svcdnsWarnings.length
      ? `- svcdns wrote ${extra.svcdnsWarnings.length} log lines at warn or above, e.g.: \`${extra.svcdnsWarnings.slice(0, 3).join('` `')}\``
      : '- svcdns wrote no log line at warn or above during the runs.',
  ];
  const metricsSection = metricsOn(targets, extra);
  return [
    '## DNS throughput and latency (`npm run bench:dns`, scripts/bench-dns.ts)',
    '',
    ...header,
    '',
    ...table,
    '',
    ...notes,
    '',
    ...metricsSection,
    ...(scaling.length > 0 ? ['### Scaling with `--workers`', '', ...scalingSection(scaling, null)] : []),
  ].join('\n');
}

/**
 * The metrics-on rows beside the metrics-off rows for the same questions and their common bare
 * ceiling (issue 13: cached answers with metrics scraped every second still ≥ 0.9× the ceiling).
 */
function metricsOn(targets: Target[], extra: Extra): string[] {
  const byLabel = new Map(targets.map((t) => [t.label, t]));
  const qps = (t: Target): number => median(t.runs.map((r) => r.qps));
  const cpuUs = (t: Target): number => median(t.runs.map((r) => r.cpuPerAnswerUs));
  const prefix = `${METRICS_ON}: `;
  const rows = targets
    .filter((t) => t.label.startsWith(prefix))
    .map((on) => ({ question: on.label.slice(prefix.length), on, off: byLabel.get(`svcdns: ${on.label.slice(prefix.length)}`), bare: byLabel.get(on.ceilingLabel) }));
  if (rows.length === 0) return [];
  const geomean = (xs: number[]): number => Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);
  const ratios = { onBare: [] as number[], offBare: [] as number[], onOff: [] as number[], cpuOnBare: [] as number[], cpuOnOff: [] as number[] };
  const cell = (t: Target | undefined, f: (t: Target) => string): string => (t ? f(t) : 'not measured');
  const table = [
    '| question | metrics off: queries/s | metrics on: queries/s | bare socket: queries/s | metrics on × bare | metrics off × bare | on ÷ off | CPU per answer: off / on / bare | × bare, CPU per answer (on) | on ÷ off, CPU per answer |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map(({ question, on, off, bare }) => {
      const r = (a: Target | undefined, b: Target | undefined, list: number[], f: (t: Target) => number, inverse = false): string => {
        if (!a || !b) return 'n/a';
        const x = inverse ? f(b) / f(a) : f(a) / f(b);
        list.push(x);
        return `${x.toFixed(2)}×`;
      };
      return (
        `| ${question} | ${cell(off, (t) => int(qps(t)))} | **${int(qps(on))}** | ${cell(bare, (t) => int(qps(t)))} | ` +
        `**${r(on, bare, ratios.onBare, qps)}** | ${r(off, bare, ratios.offBare, qps)} | ${r(on, off, ratios.onOff, qps)} | ` +
        `${cell(off, (t) => cpuUs(t).toFixed(1))} / ${cpuUs(on).toFixed(1)} / ${cell(bare, (t) => cpuUs(t).toFixed(1))} µs | ` +
        `${r(on, bare, ratios.cpuOnBare, cpuUs, true)} | ${r(on, off, ratios.cpuOnOff, cpuUs, true)} |`
      );
    }),
  ];
  const g = (xs: number[]): string => (xs.length === rows.length ? `${geomean(xs).toFixed(2)}×` : 'n/a');
  table.push(`| geometric mean | | | | **${g(ratios.onBare)}** | ${g(ratios.offBare)} | ${g(ratios.onOff)} | | ${g(ratios.cpuOnBare)} | ${g(ratios.cpuOnOff)} |`);

  const { warmUp, measured, p99 } = extra.scrapes;
  const all = [warmUp, measured, p99];
  const failures = all.flatMap((x) => x.failures);
  const durations = all.flatMap((x) => x.durationsMs);
  const bytes = all.flatMap((x) => x.bytes);
  const notes = [
    `- Metrics on: one more svcdns process, the same command plus \`--http-listen 127.0.0.1:PORT\`, on core ${SERVER_CORE} like the others and paused (SIGSTOP) like them while other rows run; ` +
      `the metrics-off rows are the plain svcdns process of the table above (no --http-listen: nothing subscribes to its diagnostics seam). Both are compared with the same bare socket, in the same run, ` +
      `and every row is the median of the same interleaved rounds.`,
    `- Scrapes: during every dnsperf run of the metrics-on rows, and only then, this script sent \`GET /metrics\` once a second (a new loopback connection each, from core ${CLIENT_CORE}, beside dnsperf): ` +
      `${int(measured.ok)} good scrapes during the measured rounds, ${int(p99.ok)} during the p99 runs, ${int(warmUp.ok)} during the warm-up; ` +
      (failures.length ? `**${failures.length} failed** (${[...new Set(failures)].slice(0, 3).join('; ')}). ` : 'none failed (each was 200 and had `svcdns_dns_requests_total`). ') +
      (durations.length
        ? `A scrape took ${ms(median(durations))} (median; max ${ms(Math.max(...durations))}) under full DNS load, ${int(median(bytes))} bytes of text. `
        : '') +
      `Its CPU (building the text, the HTTP exchange) is in the metrics-on rows' CPU per answer.`,
    `- The counter matches: after the runs, \`svcdns_dns_requests_total\` summed ${int(extra.metricsRequests)} queries; dnsperf sent that process ${int(extra.metricsSent)} ` +
      `(the difference: the correctness checks and the readiness probes, and queries dnsperf sent but the kernel dropped).`,
  ];
  return ['### Metrics on (issue 13): svcdns with `--http-listen`, scraped every second', '', ...table, '', ...notes, ''];
}

// ---- running, and stopping everything whatever happens ----

ensureTools();
const children = new Children();
const dir = mkdtempSync(join(tmpdir(), 'svcdns-bench-'));
let exiting = false;
const cleanUp = (): void => rmSync(dir, { recursive: true, force: true });
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (exiting) {
      children.killAllNow();
      cleanUp();
      process.exit(130);
    }
    exiting = true;
    progress(`${signal}: stopping every child process`);
    void children.stopAll().finally(() => {
      cleanUp();
      process.exit(130);
    });
  });
}
process.on('exit', () => children.killAllNow());

let markdown: string | undefined;
try {
  markdown = await main(children, dir);
} catch (err) {
  if (!exiting) {
    console.error(`bench-dns failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  }
} finally {
  if (!exiting) {
    await children.stopAll();
    cleanUp();
  }
}
if (markdown !== undefined && !exiting) {
  process.stdout.write(markdown);
  if (opts.write) writeFileSync(opts.write, markdown);
  progress(`done in ${((performance.now() - started) / 1000).toFixed(0)} s${opts.write ? `; written to ${opts.write}` : ''}`);
}
