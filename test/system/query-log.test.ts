/**
 * --query-log as operators read it: the real process, a catalog file and two test upstreams on
 * loopback, queried with dig; each log line's fields are checked exactly (types and rcodes as
 * names, where the reply came from, which upstream gave it, which were tried, the reply cache on).
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type * as dnsPacket from 'dns-packet';
import { CATALOG } from '../support/catalog.js';
import { dig } from '../support/dig.js';
import { startCli } from '../support/spawn.js';
import { startUpstream } from '../support/upstream.js';

const RECORDS: dnsPacket.Answer[] = [
  { name: 'www.example.test', type: 'A', ttl: 100, data: '192.0.2.10' },
  { name: 'www.example.test', type: 'A', ttl: 100, data: '192.0.2.11' },
  { name: 'other.example.test', type: 'A', ttl: 100, data: '192.0.2.12' },
  { name: 'gone.example.test', type: 'A', ttl: 100, data: '192.0.2.13' },
];

/** The fields that change from run to run, checked on their own; the rest is compared whole. */
const VOLATILE = ['level', 'time', 'pid', 'hostname', 'msg', 'component', 'port', 'durationUs'];

test('--query-log: one line per query, saying where its reply came from, with the reply cache on', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'svcdns-qlog-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const catalog = join(dir, 'catalog.yaml');
  await writeFile(catalog, CATALOG);
  const first = await startUpstream({ records: RECORDS });
  const second = await startUpstream({ records: RECORDS });
  t.after(() => Promise.all([first.close(), second.close()]));
  const svc = startCli(['--listen', '127.0.0.1:0', '--catalog', catalog, '--upstream', first.address, '--upstream', second.address, '--query-log']);
  t.after(() => svc.stop());
  const listening = await svc.waitForLog((l) => l.msg === 'listening (udp, tcp)');
  const port = Number(String(listening.address).split(':')[1]);
  // dig's cookie is an EDNS option, which the reply cache does not key on: without it, repeats hit.
  // The size each reply had, as dig received it (the log's `size`).
  const sizes: number[] = [];
  const ask = async (name: string, type: string, status: string): Promise<void> => {
    const reply = await dig(port, [name, type, '+nocookie']);
    assert.equal(reply.status, status, `${name} ${type}`);
    sizes.push(Number(/MSG SIZE\s+rcvd: (\d+)/.exec(reply.raw)![1]));
  };

  await ask('web.service.consul', 'SRV', 'NOERROR');
  await ask('nope.service.consul', 'A', 'NXDOMAIN');
  await ask('nope.service.consul', 'A', 'NXDOMAIN');
  await ask('www.example.test', 'A', 'NOERROR');
  await ask('www.example.test', 'A', 'NOERROR');
  await ask('missing.example.test', 'A', 'NXDOMAIN');
  first.behaviour = 'refused';
  await ask('other.example.test', 'A', 'NOERROR');
  second.behaviour = 'servfail';
  await ask('gone.example.test', 'A', 'SERVFAIL');
  await svc.waitForLog((l) => l.msg === 'query' && l.name === 'gone.example.test');

  const lines = svc.logs.filter((l) => l.msg === 'query');
  for (const line of lines) {
    assert.equal(line.component, 'query');
    assert.equal(line.level, 30, 'info');
    assert.ok(Number.isInteger(line.port) && (line.port as number) > 0, `port ${String(line.port)}`);
    assert.ok(Number.isInteger(line.durationUs) && (line.durationUs as number) >= 0, `durationUs ${String(line.durationUs)}`);
  }
  const fixed = lines.map((l) => Object.fromEntries(Object.entries(l).filter(([k]) => !VOLATILE.includes(k))));
  const common = { client: '127.0.0.1', transport: 'udp', tc: false };
  const a = first.address;
  const b = second.address;
  const expected = [
    { ...common, name: 'web.service.consul', type: 'SRV', rcode: 'NOERROR', answers: 2, from: 'catalog' },
    { ...common, name: 'nope.service.consul', type: 'A', rcode: 'NXDOMAIN', answers: 0, from: 'catalog' },
    { ...common, name: 'nope.service.consul', type: 'A', rcode: 'NXDOMAIN', answers: 0, from: 'catalog', cache: 'reply' },
    { ...common, name: 'www.example.test', type: 'A', rcode: 'NOERROR', answers: 2, from: 'forward', upstream: a },
    { ...common, name: 'www.example.test', type: 'A', rcode: 'NOERROR', answers: 2, from: 'forward', cache: 'forward' },
    { ...common, name: 'missing.example.test', type: 'A', rcode: 'NXDOMAIN', answers: 0, from: 'forward', upstream: a },
    { ...common, name: 'other.example.test', type: 'A', rcode: 'NOERROR', answers: 1, from: 'forward', upstream: b, tried: [a, b] },
    { ...common, name: 'gone.example.test', type: 'A', rcode: 'SERVFAIL', answers: 0, from: 'forward', tried: [a, b] },
  ];
  assert.deepEqual(
    fixed,
    expected.map((line, i) => ({ ...line, size: sizes[i] })),
  );
});
