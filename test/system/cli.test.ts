/**
 * The svcdns command as users run it: exit codes and one-line reasons for bad input, no source
 * without asking for the bundled example catalog, --help, signals.
 */

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CATALOG } from '../support/catalog.js';
import { ConsulSim } from '../support/consul-sim.js';
import { dig } from '../support/dig.js';
import { ROOT, runCli, startCli } from '../support/spawn.js';

/** The one line on stderr that is not a JSON log record: the reason for the exit. */
function oneLine(stderr: string): string {
  const lines = stderr
    .trim()
    .split('\n')
    .filter((l) => !l.startsWith('{'));
  assert.equal(lines.length, 1, `one line on stderr besides logs, got:\n${stderr}`);
  return lines[0]!;
}

// Each case is its own short-lived CLI process with nothing timed: four run at once.
describe('bad input exits non-zero with one line', { concurrency: 4 }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'svcdns-cli-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const cases: { name: string; args: string[]; env?: Record<string, string>; code: number; line: RegExp }[] = [
    { name: 'an unknown flag', args: ['--colour', 'blue'], code: 2, line: /^svcdns: error: Unknown arguments?: colour/ },
    { name: 'a bad listen address', args: ['--listen', 'localhost:53'], code: 2, line: /^svcdns: error: listen: "localhost:53" is not HOST:PORT with an IP address/ },
    { name: 'a port out of range', args: ['--listen', '127.0.0.1:70000'], code: 2, line: /^svcdns: error: listen: "127.0.0.1:70000"/ },
    { name: 'a bad TTL', args: ['--service-ttl', '-5'], code: 2, line: /^svcdns: error: service-ttl: must be a whole number from 0 to 2147483647 \(got "-5"\)$/ },
    { name: 'a bad env var', args: [], env: { SVCDNS_DOMAIN: 'bad..domain' }, code: 2, line: /^svcdns: error: domain \(SVCDNS_DOMAIN\): must be a domain name/ },
    { name: 'several problems at once', args: ['--log-format', 'xml', '--node-ttl', 'x'], code: 2, line: /^svcdns: error: node-ttl: .*; log-format: must be one of json, pretty \(got "xml"\)$/ },
    {
      name: 'unknown flags, a stray argument, a flag without its value and a bad value: every one in the line',
      args: ['--colour', 'blue', '--size', '--upstream-timeout', '--node-ttl', 'x'],
      code: 2,
      line: /^svcdns: error: Unknown arguments: colour, size; upstream-timeout: needs a value \(--upstream-timeout VALUE\); node-ttl: must be a whole number from 0 to 2147483647 \(got "x"\)$/,
    },
    { name: 'a missing catalog file', args: ['--catalog', '/nonexistent/catalog.yaml'], code: 1, line: /^svcdns: error: ENOENT: no such file or directory, open '\/nonexistent\/catalog.yaml'$/ },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      // A source, so that each case's line is about its own problem alone.
      const source = c.args.includes('--catalog') ? [] : ['--example'];
      const r = await runCli([...source, ...c.args, '--listen', c.args.includes('--listen') ? c.args[c.args.indexOf('--listen') + 1]! : '127.0.0.1:0'], c.env);
      assert.equal(r.code, c.code, r.stderr);
      assert.match(oneLine(r.stderr), c.line);
    });
  }

  test('a broken catalog file names the file and the problem', async () => {
    const path = join(dir, 'broken.yaml');
    await writeFile(path, 'nodes:\n  - name: a\n    address: 10.0.0.1\n    services: [{name: web, port: http}]\n');
    const r = await runCli(['--catalog', path, '--listen', '127.0.0.1:0']);
    assert.equal(r.code, 1);
    assert.equal(oneLine(r.stderr), `svcdns: error: ${path}: nodes[0].services[0].port: must be an integer from 0 to 65535 (got "http")`);
  });

  test('a config file with an unknown key', async () => {
    const path = join(dir, 'svcdns.yaml');
    await writeFile(path, 'listen: [127.0.0.1:0]\nexample: true\nrecursors: [1.1.1.1]\n');
    const r = await runCli(['--config', path]);
    assert.equal(r.code, 2);
    assert.equal(oneLine(r.stderr), `svcdns: error: config file ${path}: unknown key "recursors"`);
  });

  // A URL's credentials (userinfo, or a token in the query) never reach the error line: the address
  // is shown with them replaced (src/config/redact.ts), whether the flag, Consul's env var, the config
  // file or a stray argument carried it. Every secret below is spelt with "secret" in it.
  const NOT_HTTP = 'is not an http(s) address such as 127.0.0.1:8500 or https://consul:8501';
  const secrets: { name: string; args: string[]; env?: Record<string, string>; file?: string; line: string }[] = [
    { name: 'user:password in --consul', args: ['--consul', 'http://user:secret@host:bad'], line: `consul: "http://[credentials]@host:bad" ${NOT_HTTP}` },
    { name: 'an unparsable CONSUL_HTTP_ADDR', args: [], env: { CONSUL_HTTP_ADDR: 'https://tok:secret@x:99999' }, line: `consul (CONSUL_HTTP_ADDR): "https://[credentials]@x:99999" ${NOT_HTTP}` },
    { name: "a '/' in the password", args: ['--consul', 'http://user:se/cret-secret@host:bad'], line: `consul: "http://[credentials]@host:bad" ${NOT_HTTP}` },
    { name: "an '@' in the password", args: ['--consul', 'http://user:p@ss-secret@host:bad'], line: `consul: "http://[credentials]@host:bad" ${NOT_HTTP}` },
    { name: 'a leading space before the scheme', args: ['--consul', ' http://user:secret@host:8500'], line: `consul: " http://[credentials]@host:8500" ${NOT_HTTP}` },
    { name: 'no scheme', args: ['--consul', 'token-secret@host:bad'], line: `consul: "[credentials]@host:bad" ${NOT_HTTP}` },
    { name: 'a token in the query', args: ['--consul', 'http://host:bad/v1?token=secret'], line: `consul: "http://host:bad/v1?[query]" ${NOT_HTTP}` },
    { name: "a '?' before the '@'", args: ['--consul', 'ftp://us?er:secret@host'], line: `consul: "ftp://[redacted]" ${NOT_HTTP}` },
    { name: 'the config file', args: [], file: 'consul: "http://user:secret@host:bad"\n', line: `consul (config file): "http://[credentials]@host:bad" ${NOT_HTTP}` },
    { name: 'a stray argument (no --consul before it)', args: ['--example', 'http://user:secret@host:8500'], line: 'Unknown argument: http://[credentials]@host:8500' },
    {
      name: 'with other problems, all in the one line',
      args: ['--consul', 'http://user:secret@host:bad', '--watch', 'x'],
      line: `consul: "http://[credentials]@host:bad" ${NOT_HTTP}; watch: must be one of auto, all, on-demand (got "x")`,
    },
  ];
  for (const c of secrets) {
    test(`credentials in an address are never printed: ${c.name}`, async () => {
      const config = c.file === undefined ? [] : ['--config', join(dir, `secret-${secrets.indexOf(c)}.yaml`)];
      if (c.file !== undefined) await writeFile(config[1]!, c.file);
      const r = await runCli([...c.args, ...config, '--listen', '127.0.0.1:0'], { CONSUL_HTTP_ADDR: '', ...c.env });
      assert.equal(r.code, 2, r.stderr);
      assert.equal(oneLine(r.stderr), `svcdns: error: ${c.line}`);
      assert.ok(!/secret/.test(r.stderr + r.stdout), r.stderr);
    });
  }

  test('a port already in use', async () => {
    const first = startCli(['--example', '--listen', '127.0.0.1:0']);
    try {
      const line = await first.waitForLog((l) => l.msg === 'listening (udp, tcp)');
      const r = await runCli(['--example', '--listen', String(line.address)]);
      assert.equal(r.code, 1);
      assert.equal(oneLine(r.stderr), `svcdns: error: cannot listen on ${String(line.address)} (udp): address already in use`);
    } finally {
      await first.stop();
    }
  });

  test('no catalog source at all: exit 2 naming the options that give one, with any other problem', async () => {
    // CONSUL_HTTP_ADDR emptied: the machine running the tests may have one set.
    const bare = await runCli(['--listen', '127.0.0.1:0'], { CONSUL_HTTP_ADDR: '' });
    assert.equal(bare.code, 2);
    assert.equal(oneLine(bare.stderr), 'svcdns: error: no catalog source: give --catalog FILE, --consul URL (or CONSUL_HTTP_ADDR), --zookeeper HOST:PORT[,HOST:PORT...] or --example');
    const more = await runCli(['--listen', '127.0.0.1:0', '--node-ttl', 'x', '--no-example'], { CONSUL_HTTP_ADDR: '' });
    assert.equal(more.code, 2);
    assert.equal(
      oneLine(more.stderr),
      'svcdns: error: no catalog source: give --catalog FILE, --consul URL (or CONSUL_HTTP_ADDR), --zookeeper HOST:PORT[,HOST:PORT...] or --example; node-ttl: must be a whole number from 0 to 2147483647 (got "x")',
    );
  });

  test('--help: options grouped by component with their value types, examples, the README; -h; --version and -v', async () => {
    const [help, short, version, v] = await Promise.all([runCli(['--help']), runCli(['-h']), runCli(['--version']), runCli(['-v'])]);
    assert.equal(help.code, 0, help.stderr);
    assert.equal(short.code, 0, short.stderr);
    assert.equal(short.stdout, help.stdout);
    const text = help.stdout.replace(/\s+/g, ' ');
    const headings = ['Listening:', 'Catalog file:', 'Consul:', 'Answers:', 'Forwarding:', 'Logging:', 'General:', 'Examples:'];
    const at = headings.map((h) => help.stdout.search(new RegExp(`^${h}$`, 'm')));
    assert.ok(at.every((i, n) => i >= 0 && (n === 0 || i > at[n - 1]!)), `headings in order: ${JSON.stringify(at)}\n${help.stdout}`);
    const section = (n: number) => help.stdout.slice(at[n], at[n + 1]);
    assert.match(section(0), /--tcp-idle-timeout/);
    assert.match(section(1), /--example/);
    assert.match(section(3), /--service-ttl/);
    // Each value's own type, not the parser's "string".
    assert.ok(text.includes('--tcp-idle-timeout close TCP connections idle this long, seconds [number] [default: 10]'), text);
    assert.ok(text.includes('--upstream-timeout how long one try of one upstream may take before the next is tried [duration] [default: 2s]'), text);
    assert.ok(text.includes('--listen address to serve DNS on, UDP and TCP (IPv6 as [::1]:8600) [HOST:PORT, repeatable] [default: 127.0.0.1:8600]'), text);
    assert.ok(text.includes('--log-format log format (pretty: for people, on a terminal) [json|pretty] [default: json]'), text);
    assert.ok(text.includes('--query-log log every query'), text);
    assert.doesNotMatch(text, /\[string\]/);
    assert.ok(text.includes('-h, --help Show help') && text.includes('-v, --version Show version number'), text);
    assert.match(text, /SVCDNS_<NAME>/);
    assert.ok(text.includes('svcdns --consul 127.0.0.1:8500 '), text);
    const readme = /the README \((\/[^)]+)\)\.$/.exec(help.stdout.trim());
    assert.ok(readme && existsSync(readme[1]!), `a README that exists: ${readme?.[1]}`);
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.deepEqual([version.code, version.stdout, v.code, v.stdout], [0, `${pkg.version}\n`, 0, `${pkg.version}\n`]);
  });
});

describe('running', () => {
  test('a usable Consul address with a user, password, path or query: warned about, only its origin used and logged', async () => {
    const sim = new ConsulSim();
    await sim.start();
    const origin = sim.url.replace(/\/$/, '');
    const svc = startCli(['--consul', origin.replace('://', '://user:pw-secret@') + '/prefix?token=query-secret', '--listen', '127.0.0.1:0'], { CONSUL_HTTP_ADDR: '' });
    try {
      const warned = await svc.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('consul address: only its scheme, host and port are used'));
      assert.equal(warned.consul, origin);
      await sim.until((r) => r.status !== null, 'a request answered');
      assert.ok( sim.requests.every((r) => r.path.startsWith('/v1/') && r.token === null), JSON.stringify(sim.requests.map((r) => [r.path, r.token])));
    } finally {
      await svc.stop();
      await sim.stop();
    }
    assert.ok(!/secret/.test(JSON.stringify(svc.logs)), JSON.stringify(svc.logs));
  });

  test('--example serves the bundled example catalog and says how to dig it', async () => {
    const svc = startCli(['--example', '--listen', '127.0.0.1:0']);
    try {
      await svc.waitForLog((l) => l.msg === 'serving the bundled example catalog (made-up addresses)');
      const listening = await svc.waitForLog((l) => l.msg === 'listening (udp, tcp)');
      const ready = await svc.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('started: serving'));
      const port = Number(String(listening.address).split(':')[1]);
      assert.equal(ready.try, `dig @127.0.0.1 -p ${port} httpbackend.service.consul SRV`);
      const r = await dig(port, ['httpbackend.service.consul', 'SRV']);
      assert.equal(r.status, 'NOERROR');
      assert.deepEqual(r.answer.sort(), [
        'httpbackend.service.consul. 0 IN SRV 1 1 8081 consul-2.node.dc1.consul.',
        'httpbackend.service.consul. 0 IN SRV 1 10 8081 consul-1.node.dc1.consul.',
      ]);
      assert.deepEqual(r.additional.sort(), [
        'consul-1.node.dc1.consul. 0 IN A 192.168.0.129',
        'consul-1.node.dc1.consul. 0 IN TXT "rack=r1"',
        'consul-2.node.dc1.consul. 0 IN A 192.168.0.130',
        'consul-2.node.dc1.consul. 0 IN TXT "rack=r2"',
      ]);
      assert.equal(await svc.stop('SIGTERM'), 0);
      assert.ok(svc.logs.some((l) => l.msg === 'stopped'));
    } finally {
      await svc.stop('SIGKILL');
    }
  });

  test('settings from env and a config file; flags win over env, env over the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'svcdns-cli-'));
    const catalog = join(dir, 'catalog.yaml');
    await writeFile(catalog, CATALOG);
    const config = join(dir, 'svcdns.yaml');
    await writeFile(config, `catalog: ${catalog}\nservice-ttl: 5\nnode-ttl: 6\nalt-domain: example.internal\n`);
    const svc = startCli(['--config', config, '--listen', '127.0.0.1:0', '--node-ttl', '8'], { SVCDNS_SERVICE_TTL: '7', SVCDNS_NODE_TTL: '9' });
    try {
      const listening = await svc.waitForLog((l) => l.msg === 'listening (udp, tcp)');
      const port = Number(String(listening.address).split(':')[1]);
      assert.deepEqual((await dig(port, ['v1.web.service.example.internal'])).answer, ['v1.web.service.example.internal. 7 IN A 10.0.0.1']);
      assert.deepEqual((await dig(port, ['node1.node.consul'])).answer, ['node1.node.consul. 8 IN A 10.0.0.1']);
    } finally {
      await svc.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('--query-log logs each query: client, transport, name as asked, type and rcode by name, size', async () => {
    const svc = startCli(['--example', '--listen', '127.0.0.1:0', '--query-log']);
    try {
      const listening = await svc.waitForLog((l) => l.msg === 'listening (udp, tcp)');
      const port = Number(String(listening.address).split(':')[1]);
      await dig(port, ['+tcp', 'Web.Service.Consul', 'AAAA']);
      const line = await svc.waitForLog((l) => l.msg === 'query');
      assert.equal(line.client, '127.0.0.1');
      assert.equal(typeof line.port, 'number');
      assert.deepEqual(
        { transport: line.transport, name: line.name, type: line.type, rcode: line.rcode, answers: line.answers, tc: line.tc, from: line.from, component: line.component },
        { transport: 'tcp', name: 'Web.Service.Consul', type: 'AAAA', rcode: 'NOERROR', answers: 1, tc: false, from: 'catalog', component: 'query' },
      );
    } finally {
      await svc.stop();
    }
  });

  test('without --query-log no query is logged', async () => {
    const svc = startCli(['--example', '--listen', '127.0.0.1:0']);
    try {
      const listening = await svc.waitForLog((l) => l.msg === 'listening (udp, tcp)');
      const port = Number(String(listening.address).split(':')[1]);
      await dig(port, ['web.service.consul']);
      assert.equal(await svc.stop(), 0);
      assert.equal(svc.logs.filter((l) => l.msg === 'query').length, 0);
    } finally {
      await svc.stop();
    }
  });

  test('SIGHUP reloads the catalog; a broken file at reload keeps serving', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'svcdns-cli-'));
    const catalog = join(dir, 'catalog.yaml');
    await writeFile(catalog, CATALOG);
    const svc = startCli(['--catalog', catalog, '--listen', '127.0.0.1:0']);
    try {
      const listening = await svc.waitForLog((l) => l.msg === 'listening (udp, tcp)');
      const port = Number(String(listening.address).split(':')[1]);
      await writeFile(catalog, 'nodes: {');
      await svc.waitForLog((l) => l.msg === 'catalog file rejected; still serving the last good catalog');
      svc.child.kill('SIGHUP');
      const outcome = await svc.waitForLog((l) => l.msg === 'SIGHUP: reload rejected; the last good state keeps serving');
      assert.match((outcome.problems as string[]).join(), /catalog\.yaml/);
      assert.deepEqual((await dig(port, ['+short', 'v1.web.service.consul'])).raw.trim(), '10.0.0.1');
      assert.equal(svc.logs.filter((l) => l.msg === 'catalog file rejected; still serving the last good catalog').length, 1, 'the same broken content is reported once');
      assert.ok(svc.child.exitCode === null, 'still running');
    } finally {
      await svc.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
