/**
 * svcdns as a real libc's nameserver: glibc's getent, with a resolv.conf that names svcdns on
 * 127.0.0.1:53, resolves Consul names (answered by svcdns) and other names (forwarded by svcdns to
 * a dnsmasq with local data).
 *
 * Everything runs in one shell script inside private namespaces made with unshare:
 *  - a network namespace: its own loopback, so port 53 is surely free and no packet leaves it;
 *  - a mount namespace: resolv.conf (and nsswitch.conf, when the machine's does not ask DNS plainly)
 *    bind-mounted over /etc for it alone; the machine's files are never touched;
 *  - a PID namespace: when the script (its first process) ends, however it ends, the kernel kills
 *    every process in it, so neither svcdns nor dnsmasq can outlive the test.
 * `timeout` bounds the whole run. It needs root: without root, or where unshare is not permitted
 * (an unprivileged container), the test is skipped and says why.
 */

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLI, ROOT } from '../support/spawn.js';

const DNSMASQ = '/usr/sbin/dnsmasq';
const DNSMASQ_PORT = 5353;
/** Seconds the whole script may take before `timeout` kills it (and so the namespace). */
const LIMIT_S = 60;

const CATALOG = `nodes:
  - {name: n1, address: 10.0.0.1, services: [{name: web, port: 80}]}
  - {name: n2, address: 10.0.0.2, services: [{name: web, port: 80}]}
`;

const RESOLV_CONF = 'nameserver 127.0.0.1\noptions attempts:1 timeout:2\n';
const NSSWITCH_CONF = 'hosts: files dns\n';

/** The questions, as getent's arguments. */
const QUERIES = [
  'hosts web.service.consul',
  'hosts real.test',
  'hosts v4only.test',
  'hosts alias.test',
  'hosts nope.test',
  'ahosts web.service.consul',
  'ahosts real.test',
] as const;

/**
 * Runs inside the namespaces. getent's output goes to stdout between `### getent ARGS` and
 * `### exit STATUS` lines; setup problems as `### setup failed: ...`.
 */
const SCRIPT = String.raw`
set -u
fail() { echo "### setup failed: $*"; exit 1; }
ip link set lo up || fail "ip link set lo up"
mount --bind "$DIR/resolv.conf" /etc/resolv.conf || fail "bind-mounting resolv.conf"
if [ -f "$DIR/nsswitch.conf" ]; then
  mount --bind "$DIR/nsswitch.conf" /etc/nsswitch.conf || fail "bind-mounting nsswitch.conf"
fi
# A running nscd would answer getent from outside the namespace: hide its socket.
if [ -d /var/run/nscd ]; then mount -t tmpfs tmpfs /var/run/nscd || fail "hiding nscd"; fi

"$DNSMASQ" --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces \
  --listen-address=127.0.0.1 --port="$DNSMASQ_PORT" --local=/test/ --local-ttl=60 --pid-file= \
  --user=root --group=root --log-facility=- --log-queries \
  --host-record=real.test,192.0.2.53,2001:db8::53 --host-record=v4only.test,192.0.2.54 \
  --cname=alias.test,real.test 2>"$DIR/dnsmasq.log" &
dnsmasq_pid=$!
cd "$ROOT" || fail "cd $ROOT"
SVCDNS_RESOLV_CONF=/dev/null "$NODE" $CLI --listen 127.0.0.1:53 \
  --upstream "127.0.0.1:$DNSMASQ_PORT" --catalog "$DIR/catalog.yaml" 2>"$DIR/svcdns.log" &
svcdns_pid=$!

# Ready when they answer (dig, not getent, which is what is tested).
answers() { dig @127.0.0.1 -p "$1" +time=1 +tries=1 "$2" 2>/dev/null | grep -q "status: $3"; }
deadline=$(($(date +%s) + 30))
until answers "$DNSMASQ_PORT" probe.test NXDOMAIN && answers 53 web.service.consul NOERROR; do
  kill -0 "$dnsmasq_pid" 2>/dev/null || fail "dnsmasq exited"
  kill -0 "$svcdns_pid" 2>/dev/null || fail "svcdns exited"
  [ "$(date +%s)" -le "$deadline" ] || fail "dnsmasq and svcdns not both answering within 30 s"
  sleep 0.1
done

for q in $QUERIES; do
  args=$(echo "$q" | tr + ' ')
  echo "### getent $args"
  timeout 10 getent $args
  echo "### exit $?"
done
kill "$svcdns_pid" "$dnsmasq_pid"
wait
`;

/** Why this machine cannot run the test (a reason to skip), or null. */
function whyNot(dir: string): string | null {
  if (process.getuid?.() !== 0) return 'needs root (namespaces, bind mounts, port 53)';
  const probe = spawnSync('unshare', ['-mnpf', '--kill-child', '--mount-proc', 'sh', '-c', 'mount --bind "$0" "$0"', join(dir, 'catalog.yaml')], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (probe.error) return `unshare cannot run: ${probe.error.message}`;
  if (probe.status !== 0) return `unshare -mnpf with a bind mount is not permitted here (status ${probe.status}): ${probe.stderr.trim()}`;
  return null;
}

/** Fails, saying what CI installs, when a tool the test needs is missing. */
function requireTools(): void {
  assert.ok(existsSync(DNSMASQ), `${DNSMASQ} is not installed (Debian package dnsmasq-base): .ci/run installs it; here: apt-get install dnsmasq-base`);
  const missing = ['ip', 'getent', 'mount', 'timeout', 'dig'].filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
  assert.deepEqual(missing, [], `missing commands: ${missing.join(', ')} (ip: Debian package iproute2, dig: dnsutils, both installed by .ci/run; the rest are in every Debian)`);
}

/**
 * Whether the machine's nsswitch.conf makes getent ask DNS (as resolv.conf says) for these names:
 * `dns` on the hosts line, after nothing but sources that cannot answer them (files, myhostname,
 * mDNS for .local). `resolve` (systemd-resolved) before dns would answer from outside the namespace.
 */
function asksDnsPlainly(nsswitch: string | null): boolean {
  const line = /^hosts:(.*)$/m.exec(nsswitch ?? '')?.[1];
  if (line === undefined) return false;
  const sources = line.replace(/\[[^\]]*\]/g, ' ').trim().split(/\s+/);
  const dns = sources.indexOf('dns');
  return dns >= 0 && sources.slice(0, dns).every((s) => ['files', 'myhostname', 'mdns4_minimal', 'mdns6_minimal', 'mdns_minimal'].includes(s));
}

/** getent's output per question: its lines (white space folded) and exit status. */
function parse(stdout: string): Map<string, { lines: string[]; status: number }> {
  const out = new Map<string, { lines: string[]; status: number }>();
  let current: { lines: string[]; status: number } | null = null;
  for (const line of stdout.split('\n')) {
    const start = /^### getent (.*)$/.exec(line);
    const exit = /^### exit (\d+)$/.exec(line);
    if (start) {
      current = { lines: [], status: -1 };
      out.set(start[1]!, current);
    } else if (exit && current) {
      current.status = Number(exit[1]);
      current = null;
    } else if (current && line.trim() !== '') current.lines.push(line.trim().split(/\s+/).join(' '));
  }
  return out;
}

test('getent (glibc) resolves through svcdns as its resolv.conf nameserver: consul names, and forwarded ones', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'svcdns-getent-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'catalog.yaml'), CATALOG);
  const reason = whyNot(dir);
  if (reason !== null) {
    t.diagnostic(`skipped: ${reason}`);
    t.skip(reason);
    return;
  }
  requireTools();

  await writeFile(join(dir, 'resolv.conf'), RESOLV_CONF);
  const hostNsswitch = await readFile('/etc/nsswitch.conf', 'utf8').catch(() => null);
  if (asksDnsPlainly(hostNsswitch)) t.diagnostic('using the machine\'s /etc/nsswitch.conf (its hosts line asks dns)');
  else {
    t.diagnostic(`the machine's nsswitch.conf hosts line does not ask dns plainly (${/^hosts:.*$/m.exec(hostNsswitch ?? '')?.[0] ?? 'none'}): using "${NSSWITCH_CONF.trim()}" in the namespace`);
    await writeFile(join(dir, 'nsswitch.conf'), NSSWITCH_CONF);
  }
  await writeFile(join(dir, 'run.sh'), SCRIPT);
  const hostResolvConf = await readFile('/etc/resolv.conf', 'utf8').catch(() => null);

  const child = spawn('timeout', ['-k', '5', String(LIMIT_S), 'unshare', '-mnpf', '--kill-child', '--mount-proc', 'sh', join(dir, 'run.sh')], {
    env: {
      ...process.env,
      DIR: dir,
      ROOT,
      NODE: process.execPath,
      CLI: CLI.join(' '),
      DNSMASQ,
      DNSMASQ_PORT: String(DNSMASQ_PORT),
      QUERIES: QUERIES.map((q) => q.replace(/ /g, '+')).join(' '),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so that t.after can kill timeout, unshare and the script at once.
    detached: true,
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // 'close': after the exit and all its output read (see runCli in test/support/spawn.ts).
  const [code] = (await once(child, 'close')) as [number | null];

  const read = (name: string) => readFile(join(dir, name), 'utf8').catch(() => '(none)');
  const report = `script status ${code}\n--- stdout\n${stdout}--- stderr\n${stderr}--- svcdns log\n${await read('svcdns.log')}--- dnsmasq log\n${await read('dnsmasq.log')}`;
  assert.doesNotMatch(stdout, /### setup failed/, report);
  assert.equal(code, 0, report);
  const got = parse(stdout);
  const answer = (q: (typeof QUERIES)[number]) => {
    const r = got.get(q);
    assert.ok(r, `no output for getent ${q}\n${report}`);
    return r;
  };
  // svcdns rotates its records from one answer to the next.
  const sortedAnswer = (q: (typeof QUERIES)[number]) => ({ ...answer(q), lines: [...answer(q).lines].sort() });

  // hosts: gethostbyname2, AAAA first, then A when there is no AAAA (NODATA).
  assert.deepEqual(sortedAnswer('hosts web.service.consul'), { lines: ['10.0.0.1 web.service.consul', '10.0.0.2 web.service.consul'], status: 0 }, report);
  assert.deepEqual(answer('hosts real.test'), { lines: ['2001:db8::53 real.test'], status: 0 }, report);
  assert.deepEqual(answer('hosts v4only.test'), { lines: ['192.0.2.54 v4only.test'], status: 0 }, report);
  // Through the CNAME: the canonical name, then the alias.
  assert.deepEqual(answer('hosts alias.test'), { lines: ['2001:db8::53 real.test alias.test'], status: 0 }, report);
  // NXDOMAIN: "key not found".
  assert.deepEqual(answer('hosts nope.test'), { lines: [], status: 2 }, report);

  // ahosts: getaddrinfo, A and AAAA asked at once. The canonical name is on the first line; the
  // order of addresses is getaddrinfo's sorting (RFC 6724, gai.conf), so they are compared sorted.
  for (const [q, canonical, addresses] of [
    ['ahosts web.service.consul', 'web.service.consul', ['10.0.0.1', '10.0.0.2']],
    ['ahosts real.test', 'real.test', ['192.0.2.53', '2001:db8::53']],
  ] as const) {
    const r = answer(q);
    assert.equal(r.status, 0, `${q}: status\n${report}`);
    assert.match(r.lines[0] ?? '', new RegExp(` STREAM ${canonical.replace(/\./g, '\\.')}$`), `${q}: canonical name on the first line\n${report}`);
    assert.deepEqual(
      r.lines.map((l) => l.split(' ').slice(0, 2).join(' ')).sort(),
      addresses.flatMap((a) => [`${a} DGRAM`, `${a} RAW`, `${a} STREAM`]).sort(),
      `${q}: addresses\n${report}`,
    );
  }

  // The consul names were answered by svcdns; the others reached dnsmasq through it.
  const dnsmasqLog = await read('dnsmasq.log');
  assert.doesNotMatch(dnsmasqLog, /consul/, `dnsmasq was asked a consul name\n${report}`);
  assert.match(dnsmasqLog, /query\[AAAA\] real\.test from 127\.0\.0\.1/, `dnsmasq was not asked for real.test\n${report}`);
  // The machine's own resolv.conf was never touched.
  assert.equal(await readFile('/etc/resolv.conf', 'utf8').catch(() => null), hostResolvConf, 'the machine\'s /etc/resolv.conf changed');
});
