/**
 * Response rate limiting (--rrl-*) through the real process on loopback: bursts of identical UDP
 * queries from one client prefix, counted reply by reply. Loopback clients are exempt by default,
 * so most tests give `--rrl-exempt` a range no test client is in; two clients in different /24s
 * are two loopback addresses (127.0.0.1 and 127.1.0.1).
 *
 * No timing: each burst is sent at once from one socket and closed by a sentinel query of its own
 * identity (never limited), sent last; the server answers datagrams in order and loopback keeps
 * it, so once the sentinel's reply is in, every reply the burst earned is in. The accounts credit
 * a second after their first reply, so a burst is assumed to be answered within a second of its
 * first query (a few ms here).
 */

import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as dnsPacket from 'dns-packet';
import { CATALOG } from '../support/catalog.js';
import { buildQuery, tcpExchange } from '../support/client.js';
import { deltas, scrape } from '../support/metrics.js';
import { startCli, type Running } from '../support/spawn.js';

const NOT_US = ['--rrl-exempt', '192.0.2.0/24'];
const SENTINEL_ID = 0xffff;
const NOERROR = 0;
const NXDOMAIN = 3;
/** The header's rcode (dns-packet's types do not carry it). */
const rcodeOf = (reply: Buffer): number => reply[3]! & 0xf;

interface Burst {
  /** Full replies (no TC), their answer counts. */
  answered: dnsPacket.Packet[];
  /** Truncated replies (TC set), and their rcodes. */
  truncated: dnsPacket.Packet[];
  truncatedRcodes: number[];
  /** Queries that got no reply. */
  dropped: number;
}

/**
 * Sends `count` copies of `query` (ids 1..count) from `from`, then the sentinel; resolves when the
 * sentinel's reply is in (rejects after 10 s: a sentinel is never limited, so that is a failure).
 */
function burst(port: number, query: { name: string; type: string; udpSize?: number; dnssecOk?: boolean }, count: number, sentinel: { name: string; type: string }, from = '127.0.0.1'): Promise<Burst> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    const replies: dnsPacket.Packet[] = [];
    const rcodes: number[] = [];
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`no reply to the sentinel ${sentinel.name} ${sentinel.type} in 10 s`));
    }, 10_000);
    socket.on('message', (msg) => {
      const reply = dnsPacket.decode(msg);
      if (reply.id !== SENTINEL_ID) {
        replies.push(reply);
        rcodes.push(rcodeOf(msg));
        return;
      }
      clearTimeout(timer);
      socket.close();
      assert.equal(rcodeOf(msg), NOERROR, 'the sentinel is answered');
      const truncated = replies.filter((r) => (r.flags! & dnsPacket.TRUNCATED_RESPONSE) !== 0);
      resolve({
        answered: replies.filter((r) => !truncated.includes(r)),
        truncated,
        truncatedRcodes: rcodes.filter((_, i) => truncated.includes(replies[i]!)),
        dropped: count - replies.length,
      });
    });
    socket.on('error', reject);
    socket.bind({ address: from, port: 0 }, () => {
      const opts = { ...(query.udpSize !== undefined && { udpSize: query.udpSize }), ...(query.dnssecOk && { dnssecOk: true }) };
      for (let id = 1; id <= count; id++) socket.send(buildQuery(query.name, query.type, { ...opts, id }), port, '127.0.0.1');
      socket.send(buildQuery(sentinel.name, sentinel.type, { id: SENTINEL_ID }), port, '127.0.0.1');
    });
  });
}

async function start(args: string[]): Promise<{ cli: Running; dns: number; http: number; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'svcdns-rrl-'));
  await writeFile(join(dir, 'catalog.yaml'), CATALOG);
  const cli = startCli(['--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--catalog', join(dir, 'catalog.yaml'), ...args]);
  const http = await cli.waitForLog((l) => String(l.msg).startsWith('listening (http'));
  const dns = await cli.waitForLog((l) => l.msg === 'listening (udp, tcp)');
  const portOf = (line: Record<string, unknown>): number => Number(String(line.address).split(':').pop());
  return { cli, dns: portOf(dns), http: portOf(http), dir };
}

const COUNTERS = ['svcdns_rrl_limited_total', 'svcdns_rrl_slipped_total'];

describe('--rrl-responses-per-second 5 (slip 2), loopback not exempt', () => {
  let s: Awaited<ReturnType<typeof start>>;
  before(async () => {
    s = await start(['--rrl-responses-per-second', '5', ...NOT_US]);
  });
  after(async () => {
    await s.cli.stop();
    await rm(s.dir, { recursive: true, force: true });
  });

  test('5 + 7 identical queries: 5 answered; of the 7 limited, the 1st, 3rd, 5th, 7th truncated, 3 dropped; counted in the metrics', async () => {
    const before = await scrape(s.http);
    const b = await burst(s.dns, { name: 'web.service.consul', type: 'SRV' }, 12, { name: 'node1.node.consul', type: 'A' });
    assert.equal(b.answered.length, 5);
    for (const r of b.answered) assert.equal(r.answers!.length, 2, 'full answers');
    assert.equal(b.truncated.length, 4);
    for (const r of b.truncated) {
      assert.deepEqual([r.answers!.length, r.authorities!.length, r.additionals!.length], [0, 0, 0], 'a truncated reply holds only the question');
      assert.deepEqual(r.questions, [{ name: 'web.service.consul', type: 'SRV', class: 'IN' }]);
    }
    assert.deepEqual(b.truncatedRcodes, [NOERROR, NOERROR, NOERROR, NOERROR]);
    assert.equal(b.dropped, 3);
    // Slips are the 1st, 3rd, ... limited replies: ids 6, 8, 10, 12.
    assert.deepEqual(
      b.truncated.map((r) => r.id),
      [6, 8, 10, 12],
    );
    assert.deepEqual(deltas(before, await scrape(s.http), COUNTERS), { svcdns_rrl_limited_total: 7, svcdns_rrl_slipped_total: 4 });
  });

  test('the same name from another /24 is not limited, nor another name from the limited one, nor TCP', async () => {
    // Limits web.service.consul A for 127.0.0.1's /24 first.
    const limited = await burst(s.dns, { name: 'web.service.consul', type: 'A', udpSize: 1232, dnssecOk: true }, 8, { name: 'node2.node.consul', type: 'A' });
    assert.deepEqual([limited.answered.length, limited.truncated.length, limited.dropped], [5, 2, 1]);
    // An EDNS query's truncated reply carries our OPT record (RFC 6891 7), its DO bit copied, and nothing else.
    for (const r of limited.truncated) {
      assert.deepEqual([r.answers!.length, r.authorities!.length], [0, 0]);
      assert.deepEqual(
        r.additionals!.map((a) => [a.type, (a as dnsPacket.OptAnswer).udpPayloadSize, (a as dnsPacket.OptAnswer).flag_do]),
        [['OPT', 1232, true]],
      );
    }
    const other = await burst(s.dns, { name: 'web.service.consul', type: 'A' }, 5, { name: 'node3.node.consul', type: 'A' }, '127.1.0.1');
    assert.deepEqual([other.answered.length, other.truncated.length, other.dropped], [5, 0, 0]);
    const otherName = await burst(s.dns, { name: 'db.service.consul', type: 'A' }, 5, { name: 'node4.node.consul', type: 'A' });
    assert.deepEqual([otherName.answered.length, otherName.truncated.length, otherName.dropped], [5, 0, 0]);
    // The client told to retry over TCP gets its answer there.
    const query = buildQuery('web.service.consul', 'A', { id: 77 });
    const framed = Buffer.concat([Buffer.from([query.length >> 8, query.length & 0xff]), query]);
    const { replies } = await tcpExchange(s.dns, framed, 1);
    const reply = dnsPacket.decode(replies[0]!);
    assert.equal(reply.flags! & dnsPacket.TRUNCATED_RESPONSE, 0);
    assert.equal(reply.answers!.length, 2);
  });

  test('NXDOMAIN replies are one identity per zone: different missing names share one account', async () => {
    const names = Array.from({ length: 8 }, (_, i) => `missing${i}.service.consul`);
    const socketBurst = await new Promise<number>((resolve, reject) => {
      const socket = createSocket('udp4');
      let nx = 0;
      const timer = setTimeout(() => (socket.close(), reject(new Error('no sentinel reply'))), 10_000);
      socket.on('message', (msg) => {
        const r = dnsPacket.decode(msg);
        if (r.id === SENTINEL_ID) {
          clearTimeout(timer);
          socket.close();
          resolve(nx);
        } else if (rcodeOf(msg) === NXDOMAIN && (r.flags! & dnsPacket.TRUNCATED_RESPONSE) === 0) nx++;
      });
      socket.bind({ address: '127.2.0.1', port: 0 }, () => {
        names.forEach((name, i) => socket.send(buildQuery(name, 'A', { id: i + 1 }), s.dns, '127.0.0.1'));
        socket.send(buildQuery('node1.node.consul', 'A', { id: SENTINEL_ID }), s.dns, '127.0.0.1');
      });
    });
    assert.equal(socketBurst, 5, 'five NXDOMAIN answered in full, whatever the names');
  });
});

describe('RRL off, or the client exempt', () => {
  test('--rrl-responses-per-second 0 (the default): every query answered', async () => {
    const s = await start(NOT_US);
    try {
      const b = await burst(s.dns, { name: 'web.service.consul', type: 'SRV' }, 12, { name: 'node1.node.consul', type: 'A' });
      assert.deepEqual([b.answered.length, b.truncated.length, b.dropped], [12, 0, 0]);
    } finally {
      await s.cli.stop();
      await rm(s.dir, { recursive: true, force: true });
    }
  });

  test('loopback clients are exempt by default', async () => {
    const s = await start(['--rrl-responses-per-second', '5']);
    try {
      const b = await burst(s.dns, { name: 'web.service.consul', type: 'SRV' }, 12, { name: 'node1.node.consul', type: 'A' });
      assert.deepEqual([b.answered.length, b.truncated.length, b.dropped], [12, 0, 0]);
      const samples = await scrape(s.http);
      assert.equal(samples.get('svcdns_rrl_limited_total') ?? 0, 0);
    } finally {
      await s.cli.stop();
      await rm(s.dir, { recursive: true, force: true });
    }
  });
});
