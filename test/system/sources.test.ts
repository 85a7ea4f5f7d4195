/**
 * Several catalog sources in one svcdns, through the real process: a catalog file and Consul (the
 * simulator) side by side answer both; a datacenter published by both is Consul's (the file's
 * records for it left out, logged once, shown by /status); a change in one source leaves the
 * other's answers (and their cached replies) alone; SIGHUP reloads both; with --state-dir and
 * Consul refusing at start, the persisted Consul part serves beside the live file.
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConsulSim } from '../support/consul-sim.js';
import { dig } from '../support/dig.js';
import { eventually } from '../support/eventually.js';
import { get, scrape } from '../support/metrics.js';
import { runCli, startListening, type Listening } from '../support/spawn.js';

/** The CLI with DNS and HTTP on free ports (and Consul's blocking reads short); resolves once DNS listens. The caller stops it. */
const start = (args: string[]): Promise<Listening> => startListening(['--consul-wait', '2s', ...args]);

/** A catalog file of datacenter `static`: db on s1 at `dbPort`; `extra` more YAML nodes. */
function fileCatalog(dbPort: number, extra = ''): string {
  return `datacenter: static
nodes:
  - name: s1
    address: 10.1.0.1
    services:
      - {name: db, id: db1, port: ${dbPort}}
${extra}`;
}

/** A node of the file in Consul's datacenter dc1, with a web instance of its own. */
const FILE_IN_DC1 = `  - name: f1
    datacenter: dc1
    address: 10.9.0.1
    services:
      - {name: web, id: web-file, port: 80}
`;

const sorted = (lines: readonly string[]): string[] => [...lines].sort();
const WEB = ['web.service.consul. 0 IN A 10.0.0.1', 'web.service.consul. 0 IN A 10.0.0.2'];
const dbSrv = (port: number) => [`db.service.static.consul. 0 IN SRV 1 1 ${port} s1.node.static.consul.`];
const CLASH = "datacenter published by two catalog sources: the first keeps it, the other's records for it are left out";

interface MemberJson {
  kind: string;
  description: string;
  synced: boolean;
  datacenters: string[];
  leftOut: string[];
}
interface StatusJson {
  source: { kind: string; description: string; synced: boolean; failing: { key: string; problem: string | null }[]; members?: MemberJson[]; stale: unknown };
}

test('Consul and ZooKeeper both in the local datacenter: exit 2 with one line naming the fix, before anything is started', async () => {
  const r = await runCli(['--consul', 'http://127.0.0.1:1', '--zookeeper', '127.0.0.1:1', '--listen', '127.0.0.1:0']);
  assert.equal(r.code, 2);
  assert.deepEqual(r.stderr.trim().split('\n'), [
    'svcdns: error: consul and zookeeper: both would publish datacenter dc1 (a datacenter belongs to one source): give zookeeper a datacenter of its own with --zookeeper-datacenter',
  ]);
});

describe('a catalog file and Consul in one svcdns', () => {
  let sim: ConsulSim;
  let dir: string;
  let file: string;

  before(async () => {
    sim = new ConsulSim();
    await sim.start();
    sim.registerNode('dc1', { Node: 'n1', Address: '10.0.0.1' });
    sim.registerNode('dc1', { Node: 'n2', Address: '10.0.0.2' });
    sim.registerService('dc1', 'n1', { ID: 'web1', Service: 'web', Port: 80 });
    sim.registerService('dc1', 'n2', { ID: 'web2', Service: 'web', Port: 80 });
    dir = await mkdtemp(join(tmpdir(), 'svcdns-sources-'));
    file = join(dir, 'catalog.yaml');
  });
  after(async () => {
    await sim.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test("both answer, each its own datacenter; /status and /metrics show each source's state", async () => {
    await writeFile(file, fileCatalog(5432));
    const s = await start(['--consul', sim.url, '--catalog', file]);
    try {
      await eventually(async () => assert.deepEqual(sorted((await dig(s.dns, ['web.service.consul', 'A'])).answer), WEB, "Consul's web"));
      assert.deepEqual((await dig(s.dns, ['db.service.static.consul', 'SRV'])).answer, dbSrv(5432), "the file's db");
      assert.equal((await dig(s.dns, ['db.service.consul', 'SRV'])).status, 'NXDOMAIN', 'db is not in the local datacenter');
      const status = JSON.parse((await get(s.http, '/status')).body) as StatusJson;
      assert.equal(status.source.kind, 'consul+file');
      assert.equal(status.source.description, `consul ${sim.url}, file ${file}`);
      assert.deepEqual(status.source.members, [
        { kind: 'consul', description: `consul ${sim.url}`, synced: true, datacenters: ['dc1'], leftOut: [] },
        { kind: 'file', description: `file ${file}`, synced: true, datacenters: ['static'], leftOut: [] },
      ]);
      const metrics = await scrape(s.http);
      assert.equal(metrics.get('svcdns_catalog_source_synced{source="consul"}'), 1);
      assert.equal(metrics.get('svcdns_catalog_source_synced{source="file"}'), 1);
      assert.equal(s.cli.logs.filter((l) => l.msg === CLASH).length, 0, 'no clash');
    } finally {
      assert.equal(await s.cli.stop(), 0);
    }
  });

  test("a change in one source leaves the other's answers alone, their cached replies included", async () => {
    await writeFile(file, fileCatalog(5432));
    const s = await start(['--consul', sim.url, '--catalog', file]);
    try {
      await eventually(async () => assert.deepEqual(sorted((await dig(s.dns, ['web.service.consul', 'A'])).answer), WEB, "Consul's web"));
      // +nocookie: a query with EDNS options goes the full path, past the reply cache.
      const web = () => dig(s.dns, ['+nocookie', 'web.service.consul', 'A']);
      const db = () => dig(s.dns, ['+nocookie', 'db.service.static.consul', 'SRV']);
      // Two instances: two rotations to fill before web is a hit.
      await web();
      await web();
      await db();
      const hits = async () => (await scrape(s.http)).get('svcdns_reply_cache_hits_total') ?? 0;
      const before = await hits();
      // The file changes: db moves; web's cached reply stays valid (its generation did not move).
      await writeFile(file, fileCatalog(5433));
      await eventually(async () => assert.deepEqual((await dig(s.dns, ['db.service.static.consul', 'SRV'])).answer, dbSrv(5433), 'db moved'));
      assert.deepEqual(sorted((await web()).answer), WEB);
      assert.equal((await hits()) - before, 1, "web answered from the reply cache after the file's change");
      await db();
      // Consul changes: web grows; the file's db stays as it is, and so does its cached reply.
      sim.registerNode('dc1', { Node: 'n3', Address: '10.0.0.3' });
      sim.registerService('dc1', 'n3', { ID: 'web3', Service: 'web', Port: 80 });
      await eventually(async () => assert.equal((await dig(s.dns, ['web.service.consul', 'A'])).answer.length, 3, 'web3 arrived'));
      const afterConsul = await hits();
      assert.deepEqual((await db()).answer, dbSrv(5433));
      assert.equal((await hits()) - afterConsul, 1, "db answered from the reply cache after Consul's change");
    } finally {
      sim.deregisterService('dc1', 'n3', 'web3');
      sim.deregisterNode('dc1', 'n3');
      assert.equal(await s.cli.stop(), 0);
    }
  });

  test("a datacenter both publish is Consul's: the file's records for it left out, logged once, shown by /status, and its end logged", async () => {
    await writeFile(file, fileCatalog(5432, FILE_IN_DC1));
    const s = await start(['--consul', sim.url, '--catalog', file]);
    try {
      await eventually(async () => assert.deepEqual(sorted((await dig(s.dns, ['web.service.consul', 'A'])).answer), WEB, "only Consul's web, never the file's 10.9.0.1"));
      assert.equal((await dig(s.dns, ['f1.node.consul', 'A'])).status, 'NXDOMAIN', "the file's node in dc1 is left out too");
      assert.deepEqual((await dig(s.dns, ['db.service.static.consul', 'SRV'])).answer, dbSrv(5432), "the file's own datacenter serves");
      const clash = s.cli.logs.filter((l) => l.msg === CLASH);
      assert.equal(clash.length, 1);
      assert.deepEqual([clash[0]!.datacenter, clash[0]!.kept, clash[0]!.leftOut, clash[0]!.level], ['dc1', `consul ${sim.url}`, `file ${file}`, 40]);
      const status = JSON.parse((await get(s.http, '/status')).body) as StatusJson;
      assert.deepEqual(
        status.source.failing.filter((f) => f.key === 'datacenter dc1').map((f) => f.problem),
        ['published by consul and file'],
      );
      assert.deepEqual(status.source.members?.map((m) => [m.kind, m.datacenters, m.leftOut]), [
        ['consul', ['dc1'], []],
        ['file', ['static'], ['dc1']],
      ]);

      // The file changes, still publishing dc1: no second line.
      await writeFile(file, fileCatalog(5433, FILE_IN_DC1));
      await eventually(async () => assert.deepEqual((await dig(s.dns, ['db.service.static.consul', 'SRV'])).answer, dbSrv(5433), 'db moved'));
      assert.equal(s.cli.logs.filter((l) => l.msg === CLASH).length, 1, 'logged once per clash');
      // The file leaves dc1: the clash is over, said once.
      await writeFile(file, fileCatalog(5434));
      const over = await s.cli.waitForLog((l) => l.msg === 'datacenter published by one catalog source again');
      assert.equal(over.datacenter, 'dc1');
      const after = JSON.parse((await get(s.http, '/status')).body) as StatusJson;
      assert.deepEqual(after.source.failing.filter((f) => f.key === 'datacenter dc1'), []);
    } finally {
      assert.equal(await s.cli.stop(), 0);
    }
  });

  test('SIGHUP reloads both: the file read again (its problem in the outcome line), Consul read again from the start', async () => {
    await writeFile(file, fileCatalog(5432));
    const s = await start(['--consul', sim.url, '--catalog', file]);
    try {
      await eventually(async () => assert.deepEqual(sorted((await dig(s.dns, ['web.service.consul', 'A'])).answer), WEB, "Consul's web"));
      await writeFile(file, 'nodes: [');
      const mark = sim.requests.length;
      s.cli.child.kill('SIGHUP');
      const outcome = await s.cli.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('SIGHUP: '));
      assert.equal(outcome.msg, 'SIGHUP: reload rejected; the last good state keeps serving');
      assert.match(JSON.stringify(outcome.problems), /catalog\.yaml/, "the file's problem");
      await sim.until((r) => r.seq >= mark && r.path === '/v1/catalog/datacenters', 'Consul read again after SIGHUP');
      assert.deepEqual((await dig(s.dns, ['db.service.static.consul', 'SRV'])).answer, dbSrv(5432), "the file's last good catalog serves");
      assert.deepEqual(sorted((await dig(s.dns, ['web.service.consul', 'A'])).answer), WEB);
    } finally {
      assert.equal(await s.cli.stop(), 0);
    }
  });

  test('--workers: the primary runs both sources and relays the merged catalog; its /status shows each', async () => {
    await writeFile(file, fileCatalog(5432));
    const s = await start(['--consul', sim.url, '--catalog', file, '--workers', '2']);
    try {
      await eventually(async () => assert.deepEqual(sorted((await dig(s.dns, ['web.service.consul', 'A'])).answer), WEB, "Consul's web"));
      for (let i = 0; i < 4; i++) {
        assert.deepEqual(sorted((await dig(s.dns, ['+tcp', 'web.service.consul', 'A'])).answer), WEB, "Consul's web, from any worker");
        assert.deepEqual((await dig(s.dns, ['+tcp', 'db.service.static.consul', 'SRV'])).answer, dbSrv(5432), "the file's db, from any worker");
      }
      const status = JSON.parse((await get(s.http, '/status')).body) as StatusJson;
      assert.deepEqual(status.source.members?.map((m) => [m.kind, m.synced, m.datacenters]), [
        ['consul', true, ['dc1']],
        ['file', true, ['static']],
      ]);
      const metrics = await scrape(s.http);
      assert.equal(metrics.get('svcdns_catalog_source_synced{source="consul"}'), 1, 'counted once, by the primary');
    } finally {
      assert.equal(await s.cli.stop(), 0);
    }
  });

  test("--state-dir, Consul refusing at start: the persisted Consul part serves beside the live file, until Consul's first sync", async () => {
    const state = join(dir, 'state');
    await writeFile(file, fileCatalog(5432));
    const first = await start(['--consul', sim.url, '--catalog', file, '--state-dir', state, '--log-level', 'debug']);
    try {
      await eventually(async () => assert.deepEqual(sorted((await dig(first.dns, ['web.service.consul', 'A'])).answer), WEB, "Consul's web"));
      await first.cli.waitForLog((l) => l.msg === 'catalog state written');
    } finally {
      assert.equal(await first.cli.stop(), 0);
    }

    await sim.fault('refuse');
    await writeFile(file, fileCatalog(6000));
    const s = await start(['--consul', sim.url, '--catalog', file, '--state-dir', state]);
    try {
      // No waiting: the persisted Consul part and the file as it is now.
      assert.deepEqual(sorted((await dig(s.dns, ['web.service.consul', 'A'])).answer), WEB, "Consul's persisted web");
      assert.deepEqual((await dig(s.dns, ['db.service.static.consul', 'SRV'])).answer, dbSrv(6000), 'the live file, not its persisted self');
      const status = JSON.parse((await get(s.http, '/status')).body) as StatusJson;
      assert.notEqual(status.source.stale, null, 'stale until the first sync');
      assert.deepEqual(status.source.members?.map((m) => [m.kind, m.synced, m.datacenters]), [
        ['consul', false, []],
        ['file', true, ['static']],
      ]);

      sim.deregisterService('dc1', 'n2', 'web2');
      await sim.fault('none');
      await s.cli.waitForLog((l) => l.msg === 'first sync done: the persisted catalog is replaced', 20_000);
      assert.deepEqual((await dig(s.dns, ['web.service.consul', 'A'])).answer, ['web.service.consul. 0 IN A 10.0.0.1'], "Consul's live web");
      assert.deepEqual((await dig(s.dns, ['db.service.static.consul', 'SRV'])).answer, dbSrv(6000));
    } finally {
      sim.registerService('dc1', 'n2', { ID: 'web2', Service: 'web', Port: 80 });
      assert.equal(await s.cli.stop(), 0);
    }
  });
});
