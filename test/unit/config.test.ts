/** Configuration: one set of keys from defaults, file, env and flags; every problem reported. */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, resolveConfig, type ConfigInputs } from '../../src/config.js';
import { ServiceTtls } from '../../src/answer/ttl.js';

function problems(inputs: Partial<ConfigInputs>): readonly string[] {
  try {
    resolveConfig({ flags: {}, env: {}, ...inputs });
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

test('defaults', () => {
  assert.deepEqual(resolveConfig({ flags: {}, env: {} }), {
    listen: [{ host: '127.0.0.1', port: 8600 }],
    catalog: null,
    example: false,
    domain: 'consul',
    altDomain: null,
    datacenter: 'dc1',
    serviceTtl: new ServiceTtls([['*', 0]]),
    nodeTtl: 0,
    soa: { refresh: 3600, retry: 600, expire: 86400, minimum: 0 },
    aRecordLimit: 0,
    nodeMetaTxt: true,
    tcpIdleTimeout: 10,
    tcpMaxConnections: 1000,
    tcpMaxPerClient: 16,
    clientLimitsExempt: [
      { address: '127.0.0.1', prefix: 32, family: 'ipv4' },
      { address: '::1', prefix: 128, family: 'ipv6' },
    ],
    maxUdpSize: 1232,
    workers: 1,
    workerSockets: 'auto',
    httpListen: [],
    answerCacheSize: 10000,
    answerCacheMaxBytes: 33554432,
    logLevel: 'info',
    logFormat: 'json',
    queryLog: false,
    onlyPassing: false,
    translateWanAddrs: false,
    lameduckMs: 0,
    stateDir: null,
    rrl: {
      responsesPerSecond: 0,
      slip: 2,
      windowSeconds: 15,
      ipv4PrefixLength: 24,
      ipv6PrefixLength: 56,
      exempt: [
        { address: '127.0.0.0', prefix: 8, family: 'ipv4' },
        { address: '::1', prefix: 128, family: 'ipv6' },
      ],
      tableSize: 20000,
    },
    consul: null,
    zookeeper: null,
    forward: {
      upstreams: null,
      resolvConf: '/etc/resolv.conf',
      policy: 'sequential',
      timeoutMs: 2000,
      maxInflight: 1000,
      maxPerClient: 100,
      cacheSize: 10000,
      cacheMaxBytes: 67108864,
      cacheMaxTtl: 3600,
      allowRecursion: [
        { address: '127.0.0.0', prefix: 8, family: 'ipv4' },
        { address: '::1', prefix: 128, family: 'ipv6' },
        { address: '10.0.0.0', prefix: 8, family: 'ipv4' },
        { address: '172.16.0.0', prefix: 12, family: 'ipv4' },
        { address: '192.168.0.0', prefix: 16, family: 'ipv4' },
        { address: '100.64.0.0', prefix: 10, family: 'ipv4' },
        { address: 'fc00::', prefix: 7, family: 'ipv6' },
      ],
      serveStaleMs: 86_400_000,
      clientResponseTimeoutMs: 1800,
      prefetch: false,
    },
  });
});

test('forwarding keys: upstreams as IP[:PORT] (IPv6 bare, bracketed, or with a zone), CIDR lists', () => {
  const config = resolveConfig({
    flags: {
      upstream: ['192.0.2.1', '192.0.2.2:5353', '[2001:db8::1]:5300', '2001:db8::2', 'fe80::1%eth0'],
      'allow-recursion': ['10.1.0.0/16', '2001:db8::/32', '192.0.2.7'],
      'upstream-policy': 'round-robin',
      'upstream-timeout': '500ms',
      'cache-size': '0',
      'cache-max-ttl': '60',
      'serve-stale': '2d12h',
      'client-response-timeout': '0',
      prefetch: 'true',
    },
    env: { SVCDNS_RESOLV_CONF: '/tmp/resolv.conf' },
  }).forward;
  assert.deepEqual(config.upstreams, [
    { host: '192.0.2.1', port: 53 },
    { host: '192.0.2.2', port: 5353 },
    { host: '2001:db8::1', port: 5300 },
    { host: '2001:db8::2', port: 53 },
    { host: 'fe80::1%eth0', port: 53 },
  ]);
  assert.deepEqual(config.allowRecursion, [
    { address: '10.1.0.0', prefix: 16, family: 'ipv4' },
    { address: '2001:db8::', prefix: 32, family: 'ipv6' },
    { address: '192.0.2.7', prefix: 32, family: 'ipv4' },
  ]);
  assert.equal(config.resolvConf, '/tmp/resolv.conf');
  assert.equal(config.policy, 'round-robin');
  assert.equal(config.timeoutMs, 500);
  assert.equal(config.cacheSize, 0);
  assert.equal(config.cacheMaxTtl, 60);
  assert.equal(config.serveStaleMs, 60 * 3_600_000, 'days in a duration');
  assert.equal(config.clientResponseTimeoutMs, 0);
  assert.equal(config.prefetch, true);
  assert.deepEqual(resolveConfig({ flags: {}, env: { SVCDNS_UPSTREAM: '192.0.2.1, 192.0.2.2:54' } }).forward.upstreams, [
    { host: '192.0.2.1', port: 53 },
    { host: '192.0.2.2', port: 54 },
  ]);
});

test('bad forwarding keys are each named', () => {
  assert.deepEqual(
    problems({
      flags: {
        upstream: ['dns.google', '192.0.2.1:0', '[192.0.2.1]:53', '2001:db8::1:53:99999'],
        'allow-recursion': ['10.0.0.0/33', 'everyone'],
        'upstream-policy': 'fastest',
        'upstream-timeout': '0s',
        'cache-size': '-1',
        'resolv-conf': '',
        'serve-stale': '1 day',
        'client-response-timeout': '-1s',
        prefetch: 'sometimes',
      },
    }),
    [
      'resolv-conf: must be a file path (got "")',
      'upstream: "dns.google" is not IP[:PORT] (IPv6 as [::1]:53; hostnames cannot be used, resolving them would need DNS)',
      'upstream: "192.0.2.1:0" is not IP[:PORT] (IPv6 as [::1]:53; hostnames cannot be used, resolving them would need DNS)',
      'upstream: "[192.0.2.1]:53" is not IP[:PORT] (IPv6 as [::1]:53; hostnames cannot be used, resolving them would need DNS)',
      'upstream: "2001:db8::1:53:99999" is not IP[:PORT] (IPv6 as [::1]:53; hostnames cannot be used, resolving them would need DNS)',
      'upstream-policy: must be one of sequential, random, round-robin (got "fastest")',
      'upstream-timeout: must be more than 0',
      'cache-size: must be a whole number from 0 to 10000000 (got "-1")',
      'allow-recursion: "10.0.0.0/33" is not an address range such as 10.0.0.0/8 or fc00::/7',
      'allow-recursion: "everyone" is not an address range such as 10.0.0.0/8 or fc00::/7',
      'serve-stale: must be a duration such as 10s, 5m or 87600h (got "1 day")',
      'client-response-timeout: must be a duration such as 10s, 5m or 87600h (got "-1s")',
      'prefetch: must be true or false (got "sometimes")',
    ],
  );
});

test('precedence: defaults < file < env < flags; lists from env are comma-separated', () => {
  const config = resolveConfig({
    flags: { 'node-ttl': '3' },
    env: { SVCDNS_NODE_TTL: '2', SVCDNS_SERVICE_TTL: '2', SVCDNS_LISTEN: '127.0.0.1:53, [::1]:53' },
    configFile: 'svcdns.yaml',
    readFile: () => 'node-ttl: 1\nservice-ttl: 1\ndatacenter: DC7\ndomain: Consul.\n',
  });
  assert.equal(config.nodeTtl, 3);
  assert.equal(config.serviceTtl.of('any'), 2);
  assert.equal(config.datacenter, 'dc7');
  assert.equal(config.domain, 'consul');
  assert.deepEqual(config.listen, [
    { host: '127.0.0.1', port: 53 },
    { host: '::1', port: 53 },
  ]);
  assert.ok(Object.isFrozen(config));
});

test('the domain is short enough for every name svcdns builds from it to fit in 255 bytes', () => {
  // The longest name built from it: a PTR target NAME.service.DC.DOMAIN with 63-character labels.
  const room = 253 - `${'n'.repeat(63)}.service.${'d'.repeat(63)}.`.length;
  const long = `${'a'.repeat(60)}.${'b'.repeat(room - 60)}`;
  assert.equal(long.length, room + 1);
  assert.deepEqual(problems({ flags: { domain: long } }), [
    `domain: at most ${room} characters, so that names built from it (NAME.service.DC.${long}) fit in a DNS name (got ${room + 1})`,
  ]);
  assert.equal(resolveConfig({ flags: { domain: long.slice(1) }, env: {} }).domain, long.slice(1));
});

test('an empty catalog path is an error, not "no catalog"', () => {
  assert.deepEqual(problems({ flags: { catalog: '' } }), ['catalog: must be a file path (got "")']);
});

test('alt-domain must differ from domain; listen needs an address', () => {
  assert.deepEqual(problems({ flags: { 'alt-domain': 'CONSUL' } }), ['alt-domain: must differ from domain']);
  assert.deepEqual(problems({ flags: { listen: [] } }), ['listen: at least one address is needed']);
});

test('switches take true/false/1/0', () => {
  assert.equal(resolveConfig({ flags: {}, env: { SVCDNS_QUERY_LOG: '1' } }).queryLog, true);
  assert.equal(resolveConfig({ flags: { 'query-log': 'false' }, env: { SVCDNS_QUERY_LOG: 'true' } }).queryLog, false);
  assert.deepEqual(problems({ env: { SVCDNS_QUERY_LOG: 'yes please' } }), ['query-log (SVCDNS_QUERY_LOG): must be true or false (got "yes please")']);
});

test("Consul's own env vars are honoured, below SVCDNS_* and flags", () => {
  const c = resolveConfig({
    flags: {},
    env: { CONSUL_HTTP_ADDR: '10.1.2.3:8500', CONSUL_HTTP_TOKEN: 's3cret', CONSUL_HTTP_SSL_VERIFY: 'false', CONSUL_TLS_SERVER_NAME: 'consul.local' },
  }).consul!;
  assert.equal(c.url.href, 'http://10.1.2.3:8500/');
  assert.equal(c.token, 's3cret');
  assert.equal(c.tls.verify, false);
  assert.equal(c.tls.serverName, 'consul.local');
  assert.equal(c.allowStale, true);
  assert.equal(c.maxStaleMs, 87600 * 3_600_000);
  assert.equal(c.waitMs, 300_000);

  const https = resolveConfig({ flags: {}, env: { CONSUL_HTTP_ADDR: 'consul:8501', CONSUL_HTTP_SSL: 'true' } }).consul!;
  assert.equal(https.url.href, 'https://consul:8501/');

  const overridden = resolveConfig({
    flags: { 'consul-token': 'from-flag' },
    env: { CONSUL_HTTP_ADDR: '10.1.2.3:8500', SVCDNS_CONSUL: 'http://127.0.0.1:8500', CONSUL_HTTP_TOKEN: 'from-consul-env' },
  }).consul!;
  assert.equal(overridden.url.href, 'http://127.0.0.1:8500/');
  assert.equal(overridden.token, 'from-flag');
});

test('a token given directly wins over a token file; the file is read at start, not here', () => {
  const c = resolveConfig({ flags: { consul: 'http://127.0.0.1:8500' }, env: { CONSUL_HTTP_TOKEN_FILE: '/run/secrets/consul' } }).consul!;
  assert.equal(c.token, null);
  assert.equal(c.tokenFile, '/run/secrets/consul');
  const both = resolveConfig({ flags: { consul: 'http://127.0.0.1:8500', 'consul-token': 't' }, env: { CONSUL_HTTP_TOKEN_FILE: '/f' } }).consul!;
  assert.deepEqual([both.token, both.tokenFile], ['t', null]);
});

test('a catalog file beats an ambient CONSUL_HTTP_ADDR (which does not join it); --catalog with --consul run side by side', () => {
  assert.equal(resolveConfig({ flags: { catalog: 'c.yaml' }, env: { CONSUL_HTTP_ADDR: '127.0.0.1:8500' } }).consul, null);
  const both = resolveConfig({ flags: { catalog: 'c.yaml', consul: '127.0.0.1:8500' }, env: {}, requireSource: true });
  assert.deepEqual([both.catalog, both.consul?.url.href], ['c.yaml', 'http://127.0.0.1:8500/']);
  // Explicit in any layer: SVCDNS_CONSUL is a choice, CONSUL_HTTP_ADDR is not.
  const env = resolveConfig({ flags: { catalog: 'c.yaml' }, env: { SVCDNS_CONSUL: '127.0.0.1:8500' } });
  assert.equal(env.consul?.url.href, 'http://127.0.0.1:8500/');
});

test('sources certain from their keys to publish one datacenter are refused, naming the key that keeps them apart', () => {
  const clash = 'consul and zookeeper: both would publish datacenter dc1 (a datacenter belongs to one source): give zookeeper a datacenter of its own with --zookeeper-datacenter';
  assert.deepEqual(problems({ flags: { consul: '127.0.0.1:8500', zookeeper: '127.0.0.1:2181' } }), [clash]);
  assert.deepEqual(problems({ flags: { consul: '127.0.0.1:8500', zookeeper: '127.0.0.1:2181', 'zookeeper-datacenter': 'DC1' } }), [clash], 'datacenters compare case-insensitively');
  const apart = resolveConfig({ flags: { consul: '127.0.0.1:8500', zookeeper: '127.0.0.1:2181', 'zookeeper-datacenter': 'zk', catalog: 'c.yaml' }, env: {} });
  assert.deepEqual([apart.consul?.url.host, apart.zookeeper?.datacenter, apart.catalog], ['127.0.0.1:8500', 'zk', 'c.yaml']);
  // Without Consul, ZooKeeper in the local datacenter is fine (a file's datacenters are its contents).
  assert.equal(resolveConfig({ flags: { zookeeper: '127.0.0.1:2181', catalog: 'c.yaml' }, env: {} }).zookeeper?.datacenter, null);
  // An ambient CONSUL_HTTP_ADDR gives way to --zookeeper: no clash to speak of.
  assert.equal(resolveConfig({ flags: { zookeeper: '127.0.0.1:2181' }, env: { CONSUL_HTTP_ADDR: '127.0.0.1:8500' } }).consul, null);
});

test('the CLI needs a catalog source: a file, Consul (CONSUL_HTTP_ADDR too) or the example, asked for', () => {
  const none = 'no catalog source: give --catalog FILE, --consul URL (or CONSUL_HTTP_ADDR), --zookeeper HOST:PORT[,HOST:PORT...] or --example';
  assert.deepEqual(problems({ requireSource: true }), [none]);
  assert.deepEqual(problems({ requireSource: true, flags: { example: 'false' } }), [none]);
  assert.deepEqual(problems({ requireSource: true, env: { SVCDNS_EXAMPLE: '0' } }), [none]);
  assert.equal(resolveConfig({ flags: { catalog: 'c.yaml' }, env: {}, requireSource: true }).catalog, 'c.yaml');
  assert.equal(resolveConfig({ flags: {}, env: { CONSUL_HTTP_ADDR: '127.0.0.1:8500' }, requireSource: true }).consul?.url.href, 'http://127.0.0.1:8500/');
  assert.equal(resolveConfig({ flags: { example: 'true' }, env: {}, requireSource: true }).example, true);
  assert.equal(resolveConfig({ flags: {}, env: { SVCDNS_EXAMPLE: '1' }, requireSource: true }).example, true);
  // Without requireSource (a caller bringing its own source), none is fine.
  assert.equal(resolveConfig({ flags: {}, env: {} }).example, false);
});

test('the example is a source like the others: with --catalog or --consul it is a contradiction; an ambient CONSUL_HTTP_ADDR gives way', () => {
  assert.deepEqual(problems({ flags: { example: 'true', catalog: 'c.yaml' } }), ['catalog and example: choose one source of the catalog']);
  assert.deepEqual(problems({ flags: { example: 'true', consul: '127.0.0.1:8500' } }), ['consul and example: choose one source of the catalog']);
  const c = resolveConfig({ flags: { example: 'true' }, env: { CONSUL_HTTP_ADDR: '127.0.0.1:8500' }, requireSource: true });
  assert.deepEqual([c.example, c.consul], [true, null]);
});

test('bad Consul settings are reported together', () => {
  assert.deepEqual(problems({ flags: { consul: 'ftp://x', 'max-stale': 'forever', 'consul-wait': '5' } }), [
    'consul: "ftp://x" is not an http(s) address such as 127.0.0.1:8500 or https://consul:8501',
    'max-stale: must be a duration such as 10s, 5m or 87600h (got "forever")',
    'consul-wait: must be a duration such as 10s, 5m or 87600h (got "5")',
  ]);
});

test('names of Object.prototype members are unknown keys, in the config file and as flags', () => {
  const problems = (inputs: Partial<ConfigInputs>): string[] => {
    try {
      resolveConfig({ flags: {}, env: {}, ...inputs });
      return [];
    } catch (err) {
      return [...(err as ConfigError).problems];
    }
  };
  assert.deepEqual(problems({ configFile: 'svcdns.yaml', readFile: () => 'constructor: 1\ntoString: x\n' }), [
    'config file svcdns.yaml: unknown key "constructor"',
    'config file svcdns.yaml: unknown key "toString"',
  ]);
  assert.deepEqual(problems({ flags: { hasOwnProperty: 'x' } }), ['unknown option --hasOwnProperty']);
});

test('a bad Consul address is shown without the credentials it carries', () => {
  const message = (consul: string): string => {
    try {
      resolveConfig({ flags: { consul }, env: {} });
      return '';
    } catch (err) {
      return (err as ConfigError).message;
    }
  };
  assert.equal(message('ftp://admin:hunter2@consul:8500'), 'consul: "ftp://[credentials]@consul:8500" is not an http(s) address such as 127.0.0.1:8500 or https://consul:8501');
  assert.equal(message('admin:hunter2@'), 'consul: "[credentials]@" is not an http(s) address such as 127.0.0.1:8500 or https://consul:8501');
  assert.equal(message('ftp://consul:8500'), 'consul: "ftp://consul:8500" is not an http(s) address such as 127.0.0.1:8500 or https://consul:8501');
});

test('lameduck: a duration (Go style, or a bare 0), at most 1h', () => {
  assert.equal(resolveConfig({ flags: { lameduck: '5s' }, env: {} }).lameduckMs, 5000);
  assert.equal(resolveConfig({ flags: {}, env: { SVCDNS_LAMEDUCK: '1m30s' } }).lameduckMs, 90_000);
  assert.equal(resolveConfig({ flags: {}, env: {}, configFile: 'f.yaml', readFile: () => 'lameduck: 0\n' }).lameduckMs, 0);
  assert.deepEqual(problems({ flags: { lameduck: '5' } }), ['lameduck: must be a duration such as 10s, 5m or 87600h (got "5")']);
  assert.deepEqual(problems({ flags: { lameduck: '2h' } }), ['lameduck: must be at most 1h (got "2h")']);
});

test('service-ttl: PATTERN=SECONDS, exact beats the longest prefix beats *, a bare number is *; unmatched is 0', () => {
  const ttl = resolveConfig({ flags: { 'service-ttl': ['5', 'db*=30', 'db-main*=40', 'db-main=50', 'Web=10'] }, env: {} }).serviceTtl;
  assert.deepEqual(
    ['web', 'WEB', 'webby', 'db', 'db-replica', 'db-main-2', 'db-main', 'other'].map((s) => [s, ttl.of(s)]),
    [['web', 10], ['WEB', 10], ['webby', 5], ['db', 30], ['db-replica', 30], ['db-main-2', 40], ['db-main', 50], ['other', 5]],
  );
  const noStar = resolveConfig({ flags: { 'service-ttl': ['web=10'] }, env: {} }).serviceTtl;
  assert.deepEqual([noStar.of('web'), noStar.of('db')], [10, 0], "without *, other services get Consul's default, 0");
  // `--service-ttl 30` keeps its meaning: every service.
  assert.equal(resolveConfig({ flags: { 'service-ttl': '30' }, env: {} }).serviceTtl.of('any'), 30);
});

test('service-ttl: a mapping in the config file, a comma-separated list in the env, repeated flags; each layer replaces the one below', () => {
  const file = { configFile: 'svcdns.yaml', readFile: () => 'service-ttl: {web: 10, "db*": 30, "*": 5}\n' };
  assert.deepEqual(resolveConfig({ flags: {}, env: {}, ...file }).serviceTtl.rules, ['*=5', 'db*=30', 'web=10']);
  assert.deepEqual(resolveConfig({ flags: {}, env: {}, readFile: () => 'service-ttl: [web=10, "*=5"]\n', configFile: 'x.yaml' }).serviceTtl.rules, ['*=5', 'web=10']);
  const env = { SVCDNS_SERVICE_TTL: 'api=7, *=1' };
  assert.deepEqual(resolveConfig({ flags: {}, env, ...file }).serviceTtl.rules, ['*=1', 'api=7']);
  assert.deepEqual(resolveConfig({ flags: { 'service-ttl': ['db=2'] }, env, ...file }).serviceTtl.rules, ['db=2']);
});

test('service-ttl: every bad item is named', () => {
  assert.deepEqual(problems({ flags: { 'service-ttl': ['-1', 'a*b=5', 'web=soon', '=5', 'db*=99999999999'] } }), [
    'service-ttl: must be a whole number from 0 to 2147483647 (got "-1")',
    'service-ttl: "a*b=5": the pattern must be a service name, a prefix ending in *, or * (got "a*b")',
    'service-ttl: "web=soon": the TTL must be a whole number from 0 to 2147483647',
    'service-ttl: "=5": the pattern must be a service name, a prefix ending in *, or * (got "")',
    'service-ttl: "db*=99999999999": the TTL must be a whole number from 0 to 2147483647',
  ]);
  assert.deepEqual(problems({ configFile: 'x.yaml', readFile: () => 'service-ttl: {web: [1]}\n' }), ['config file x.yaml: service-ttl must be a list or a single value']);
});

test("SOA timers (Consul's dns_config.soa defaults), a-record-limit and node-meta-txt", () => {
  const config = resolveConfig({
    flags: { 'soa-refresh': '7200', 'soa-retry': '300', 'soa-expire': '604800', 'soa-min-ttl': '30', 'a-record-limit': '3', 'node-meta-txt': 'false' },
    env: {},
  });
  assert.deepEqual([config.soa, config.aRecordLimit, config.nodeMetaTxt], [{ refresh: 7200, retry: 300, expire: 604800, minimum: 30 }, 3, false]);
  assert.deepEqual(problems({ flags: { 'soa-min-ttl': '-1', 'a-record-limit': 'x', 'node-meta-txt': 'maybe' } }), [
    'soa-min-ttl: must be a whole number from 0 to 2147483647 (got "-1")',
    'a-record-limit: must be a whole number from 0 to 65535 (got "x")',
    'node-meta-txt: must be true or false (got "maybe")',
  ]);
});

test('state-dir: a directory from a flag, SVCDNS_STATE_DIR or the config file; none by default', () => {
  assert.equal(resolveConfig({ flags: {}, env: {} }).stateDir, null);
  assert.equal(resolveConfig({ flags: { 'state-dir': '/var/lib/svcdns' }, env: {} }).stateDir, '/var/lib/svcdns');
  assert.equal(resolveConfig({ flags: {}, env: { SVCDNS_STATE_DIR: '/srv/state' } }).stateDir, '/srv/state');
  assert.equal(resolveConfig({ flags: {}, env: {}, configFile: 'f.yaml', readFile: () => 'state-dir: /tmp/s\n' }).stateDir, '/tmp/s');
});

test('rrl keys: values from flags, env and file; every bad one named', () => {
  const config = resolveConfig({
    flags: { 'rrl-responses-per-second': '50', 'rrl-exempt': ['127.0.0.0/8', '172.16.0.0/12'] },
    env: { SVCDNS_RRL_SLIP: '0', SVCDNS_RRL_IPV6_PREFIX_LENGTH: '64' },
    configFile: 'svcdns.yaml',
    readFile: () => 'rrl-window: 5\nrrl-table-size: 1000\n',
  });
  assert.deepEqual(config.rrl, {
    responsesPerSecond: 50,
    slip: 0,
    windowSeconds: 5,
    ipv4PrefixLength: 24,
    ipv6PrefixLength: 64,
    exempt: [
      { address: '127.0.0.0', prefix: 8, family: 'ipv4' },
      { address: '172.16.0.0', prefix: 12, family: 'ipv4' },
    ],
    tableSize: 1000,
  });
  assert.deepEqual(
    problems({
      flags: {
        'rrl-responses-per-second': 'lots',
        'rrl-slip': '11',
        'rrl-window': '0',
        'rrl-ipv4-prefix-length': '33',
        'rrl-ipv6-prefix-length': '129',
        'rrl-exempt': ['loopback'],
        'rrl-table-size': '1',
      },
    }),
    [
      'rrl-responses-per-second: must be a whole number from 0 to 1000000 (got "lots")',
      'rrl-slip: must be a whole number from 0 to 10 (got "11")',
      'rrl-window: must be a whole number from 1 to 3600 (got "0")',
      'rrl-ipv4-prefix-length: must be a whole number from 0 to 32 (got "33")',
      'rrl-ipv6-prefix-length: must be a whole number from 0 to 128 (got "129")',
      'rrl-exempt: "loopback" is not an address range such as 10.0.0.0/8 or fc00::/7',
      'rrl-table-size: must be a whole number from 16 to 10000000 (got "1")',
    ],
  );
});
