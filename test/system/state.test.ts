/**
 * --state-dir through the real process and the Consul simulator: the catalog synced from Consul is
 * written to the state directory; a svcdns started while Consul refuses connections answers the
 * persisted records at once (logged as stale with its age, /ready says so) until Consul is back,
 * when the first real sync replaces them; a corrupt, truncated or foreign file is ignored with one
 * log line (SERVFAIL until the first sync, as without the file). --workers: the primary persists
 * and hands the persisted catalog to its workers.
 */

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { ConsulSim } from '../support/consul-sim.js';
import { dig } from '../support/dig.js';
import { eventually } from '../support/eventually.js';
import { get } from '../support/metrics.js';
import { startListening, type Listening } from '../support/spawn.js';

/** The CLI with DNS and HTTP on free ports (and Consul's blocking reads short); resolves once DNS listens. The caller stops it. */
const start = (args: string[]): Promise<Listening> => startListening(['--consul-wait', '2s', '--log-level', 'debug', ...args]);

const sorted = (lines: readonly string[]): string[] => [...lines].sort();

/** web on two nodes, db on one. */
function seed(sim: ConsulSim): void {
  sim.registerNode('dc1', { Node: 'n1', Address: '10.0.0.1' });
  sim.registerNode('dc1', { Node: 'n2', Address: '10.0.0.2' });
  sim.registerService('dc1', 'n1', { ID: 'web1', Service: 'web', Port: 80 });
  sim.registerService('dc1', 'n2', { ID: 'web2', Service: 'web', Port: 8080 });
  sim.registerService('dc1', 'n1', { ID: 'db1', Service: 'db', Port: 5432 });
}

const WEB_BOTH = ['web.service.consul. 0 IN A 10.0.0.1', 'web.service.consul. 0 IN A 10.0.0.2'];
const DB_SRV = ['db.service.consul. 0 IN SRV 1 1 5432 n1.node.dc1.consul.'];
const IGNORED = 'persisted catalog ignored';
const STALE = 'serving the persisted catalog (stale) until the first sync';

describe('a persisted catalog from Consul', () => {
  let sim: ConsulSim;
  let dir: string;
  /** The state file as the first run left it. */
  let written: string;

  before(async () => {
    sim = new ConsulSim();
    await sim.start();
    seed(sim);
    dir = await mkdtemp(join(tmpdir(), 'svcdns-state-'));
  });
  after(async () => {
    await sim.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('synced, written while running, and left whole at exit', async () => {
    const s = await start(['--consul', sim.url, '--state-dir', dir]);
    try {
      await eventually(async () => assert.deepEqual(sorted((await dig(s.dns, ['web.service.consul', 'A'])).answer), WEB_BOTH));
      await s.cli.waitForLog((l) => l.msg === 'catalog state written');
      assert.equal(s.cli.logs.filter((l) => l.msg === IGNORED || l.msg === STALE).length, 0, 'no file yet: nothing to say about it');
    } finally {
      assert.equal(await s.cli.stop(), 0);
    }
    written = await readFile(join(dir, 'catalog.json'), 'utf8');
    const file = JSON.parse(written) as Record<string, unknown>;
    assert.deepEqual([file.format, file.version, file.source, file.datacenter], ['svcdns-catalog-state', 1, 'consul', 'dc1']);
    assert.ok(!written.includes('token'), 'no secret, not even the word');
  });

  test('Consul refusing at start: the persisted records at once, stale with its age, /ready 200 saying so; the first sync replaces them', async () => {
    await sim.fault('refuse');
    const s = await start(['--consul', sim.url, '--state-dir', dir]);
    try {
      // No waiting: the persisted catalog is in the store before the listeners bind.
      assert.deepEqual(sorted((await dig(s.dns, ['web.service.consul', 'A'])).answer), WEB_BOTH);
      assert.deepEqual((await dig(s.dns, ['db.service.consul', 'SRV'])).answer, DB_SRV);
      assert.equal((await dig(s.dns, ['nope.service.consul', 'A'])).status, 'NXDOMAIN', 'the persisted service list is authoritative too');
      const stale = s.cli.logs.filter((l) => l.msg === STALE);
      assert.equal(stale.length, 1);
      assert.equal(stale[0]!.level, 40, 'a warning');
      assert.equal(typeof stale[0]!.ageSeconds, 'number');
      assert.ok((stale[0]!.ageSeconds as number) >= 0);
      assert.equal(typeof stale[0]!.savedAt, 'string');
      const ready = await get(s.http, '/ready');
      assert.equal(ready.status, 200, ready.body);
      assert.match(ready.body, new RegExp(`^ready: serving the persisted catalog \\(stale, saved \\d+ s ago\\) until the first sync from consul ${sim.url.replace(/[.]/g, '\\.')}\n$`));
      const status = JSON.parse((await get(s.http, '/status')).body) as { source: { stale: { savedAt: string; ageSeconds: number } | null } };
      assert.equal(status.source.stale?.savedAt, stale[0]!.savedAt, '/status says which catalog serves');
      assert.ok(status.source.stale!.ageSeconds >= 0);

      // Consul comes back with a change: web2 gone, api new.
      sim.deregisterService('dc1', 'n2', 'web2');
      sim.registerService('dc1', 'n2', { ID: 'api1', Service: 'api', Port: 9000 });
      await sim.fault('none');
      await s.cli.waitForLog((l) => l.msg === 'first sync done: the persisted catalog is replaced', 20_000);
      assert.deepEqual((await dig(s.dns, ['web.service.consul', 'A'])).answer, ['web.service.consul. 0 IN A 10.0.0.1']);
      assert.deepEqual((await dig(s.dns, ['api.service.consul', 'SRV'])).answer, ['api.service.consul. 0 IN SRV 1 1 9000 n2.node.dc1.consul.']);
      assert.deepEqual(await get(s.http, '/ready'), { status: 200, type: 'text/plain; charset=utf-8', body: `ready: serving the catalog from consul ${sim.url}\n` });
      assert.equal((JSON.parse((await get(s.http, '/status')).body) as { source: { stale: unknown } }).source.stale, null);
      // The synced catalog replaces the file too.
      await s.cli.waitForLog((l) => l.msg === 'catalog state written');
    } finally {
      assert.equal(await s.cli.stop(), 0);
    }
    const now = await readFile(join(dir, 'catalog.json'), 'utf8');
    assert.ok(now.includes('"api1"') && !now.includes('"web2"'), 'the file has the synced catalog');
  });

  /** Each bad file: one log line with the problem, SERVFAIL and /ready 503 until Consul answers, then the file is rewritten. */
  const bad: { name: string; text: () => string; problem: RegExp; args?: string[] }[] = [
    { name: 'truncated', text: () => written.slice(0, Math.floor(written.length / 2)), problem: /^not JSON/ },
    { name: 'a byte changed (an address)', text: () => written.replace('10.0.0.2', '10.0.0.9'), problem: /^checksum mismatch/ },
    { name: 'another format version', text: () => written.replace('"version":1,', '"version":2,'), problem: /^format version 2/ },
    { name: 'another datacenter', text: () => written, problem: /^written for another datacenter \("dc1"\)/, args: ['--datacenter', 'dc2'] },
    { name: 'not ours at all', text: () => '{"hello":"world"}\n', problem: /^not a svcdns catalog state file/ },
  ];
  for (const b of bad) {
    test(`a bad file (${b.name}): one log line, SERVFAIL until the first sync`, async (t: TestContext) => {
      const badDir = await mkdtemp(join(tmpdir(), 'svcdns-state-bad-'));
      t.after(() => rm(badDir, { recursive: true, force: true }));
      await writeFile(join(badDir, 'catalog.json'), b.text());
      await sim.fault('refuse');
      const s = await start(['--consul', sim.url, '--state-dir', badDir, ...(b.args ?? [])]);
      try {
        const ignored = s.cli.logs.filter((l) => l.msg === IGNORED);
        assert.equal(ignored.length, 1, JSON.stringify(s.cli.logs));
        assert.match(String(ignored[0]!.problem), b.problem);
        assert.equal(s.cli.logs.filter((l) => l.msg === STALE).length, 0);
        assert.equal((await dig(s.dns, ['web.service.consul', 'A'])).status, 'SERVFAIL');
        assert.equal((await get(s.http, '/ready')).status, 503);
        if (b.args) return; // another datacenter: Consul (dc1 only) has none to sync
        await sim.fault('none');
        await s.cli.waitForLog((l) => l.msg === 'catalog state written', 20_000);
        assert.deepEqual((await dig(s.dns, ['web.service.consul', 'A'])).answer, ['web.service.consul. 0 IN A 10.0.0.1']);
        assert.match(await readFile(join(badDir, 'catalog.json'), 'utf8'), /^\{"format":"svcdns-catalog-state","version":1,/);
      } finally {
        assert.equal(await s.cli.stop(), 0);
        await sim.fault('none');
      }
    });
  }

  test('--workers: the primary serves its workers the persisted catalog until the first sync', async () => {
    await sim.fault('refuse');
    const s = await start(['--consul', sim.url, '--state-dir', dir, '--workers', '2']);
    try {
      // Every worker listens (the first one's line above is not all of them).
      await s.cli.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('started'));
      assert.deepEqual((await dig(s.dns, ['api.service.consul', 'SRV'])).answer, ['api.service.consul. 0 IN SRV 1 1 9000 n2.node.dc1.consul.']);
      assert.match((await get(s.http, '/ready')).body, /^ready: serving the persisted catalog \(stale/);
      sim.registerService('dc1', 'n2', { ID: 'web2', Service: 'web', Port: 8080 });
      await sim.fault('none');
      await s.cli.waitForLog((l) => l.msg === 'first sync done: the persisted catalog is replaced', 20_000);
      await eventually(async () => assert.deepEqual(sorted((await dig(s.dns, ['web.service.consul', 'A'])).answer), WEB_BOTH));
      await s.cli.waitForLog((l) => l.msg === 'catalog state written');
    } finally {
      assert.equal(await s.cli.stop(), 0);
    }
  });
});

test('on demand (Consul partial catalogs): what was loaded is served stale, what was pending is fetched once Consul is back', async (t) => {
  const sim = new ConsulSim();
  await sim.start();
  t.after(() => sim.stop());
  seed(sim);
  const dir = await mkdtemp(join(tmpdir(), 'svcdns-state-demand-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const args = ['--consul', sim.url, '--state-dir', dir, '--watch', 'on-demand', '--fetch-timeout', '500ms'];

  const first = await start(args);
  try {
    // web is loaded by this question; db stays pending (listed, never asked).
    assert.deepEqual(sorted((await dig(first.dns, ['web.service.consul', 'A'])).answer), WEB_BOTH);
  } finally {
    assert.equal(await first.cli.stop(), 0, 'the stop writes the latest catalog');
  }

  await sim.fault('refuse');
  const s = await start(args);
  try {
    assert.deepEqual(sorted((await dig(s.dns, ['web.service.consul', 'A'])).answer), WEB_BOTH);
    assert.equal((await dig(s.dns, ['db.service.consul', 'SRV'])).status, 'SERVFAIL', 'pending, and Consul cannot be asked: SERVFAIL after --fetch-timeout');
    await sim.fault('none');
    await s.cli.waitForLog((l) => l.msg === 'first sync done: the persisted catalog is replaced', 20_000);
    await eventually(async () => assert.deepEqual((await dig(s.dns, ['db.service.consul', 'SRV'])).answer, DB_SRV));
    await eventually(async () => assert.deepEqual(sorted((await dig(s.dns, ['web.service.consul', 'A'])).answer), WEB_BOTH));
  } finally {
    assert.equal(await s.cli.stop(), 0);
  }
});
