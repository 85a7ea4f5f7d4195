/**
 * Round robin and fitting replies to the client: what glibc (TCP retry on TC), musl (no TCP
 * fallback: keeps whatever records fit) and EDNS clients each get. (dig's retry over TCP on TC is
 * in test/system/dns.test.ts.)
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type * as dnsPacket from 'dns-packet';
import { CATALOG, bigCatalog } from '../support/catalog.js';
import { buildQuery, decode, frame, tcpExchange, udpExchange } from '../support/client.js';
import { startServer, type TestServer } from '../support/server.js';

const HEADER = 12;
/** An A record whose owner is the question name: a 2-byte pointer + type, class, TTL, length + 4 bytes. */
const A_RECORD = 2 + 10 + 4;
const OPT = 11;

function questionSize(name: string): number {
  return name.length + 2 + 4;
}

function addresses(reply: dnsPacket.DecodedPacket): string[] {
  return (reply.answers ?? []).filter((a) => a.type === 'A').map((a) => (a as dnsPacket.StringAnswer).data);
}

function flags(reply: Buffer): number {
  return reply.readUInt16BE(2);
}

const TC = 0x0200;

describe('round robin', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ catalog: CATALOG });
  });
  after(() => s.close());

  test('each answer is the last one rotated by one', async () => {
    const answers: string[][] = [];
    for (let i = 0; i < 4; i++) {
      const reply = await udpExchange(s.port, buildQuery('rr.service.consul', 'A'));
      answers.push(addresses(decode(reply!)));
    }
    assert.deepEqual([...answers[0]!].sort(), ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
    for (let i = 1; i < answers.length; i++) {
      const prev = answers[i - 1]!;
      assert.deepEqual(answers[i], [...prev.slice(1), prev[0]!], `answer ${i} is answer ${i - 1} rotated by one`);
    }
  });

  test('SRV answers rotate too, and the additional section follows the answer order', async () => {
    const first = decode((await udpExchange(s.port, buildQuery('rr.service.consul', 'SRV')))!);
    const second = decode((await udpExchange(s.port, buildQuery('rr.service.consul', 'SRV')))!);
    const ports = (p: dnsPacket.DecodedPacket) => (p.answers ?? []).map((a) => (a as dnsPacket.SrvAnswer).data.port);
    const p1 = ports(first);
    assert.deepEqual([...p1].sort(), [1, 2, 3]);
    assert.deepEqual(ports(second), [...p1.slice(1), p1[0]!]);
    const targets = (first.answers ?? []).map((a) => (a as dnsPacket.SrvAnswer).data.target);
    assert.deepEqual(
      (first.additionals ?? []).filter((a) => a.type === 'A').map((a) => a.name),
      targets,
    );
  });

  test('a catalog reload restarts from a consistent state and never changes the snapshot', async () => {
    // Rotating must not reorder the catalog: the SRV-by-tag view stays in catalog order.
    const before1 = s.server.store.current()!.service('dc1', 'rr')!.instances.map((i) => i.id);
    for (let i = 0; i < 5; i++) await udpExchange(s.port, buildQuery('rr.service.consul', 'A'));
    assert.deepEqual(s.server.store.current()!.service('dc1', 'rr')!.instances.map((i) => i.id), before1);
  });
});

describe('fitting replies to the client (--max-udp-size 4096, the largest allowed)', () => {
  const NAME = 'big.service.consul';
  const COUNT = 100;
  const HUGE = 'huge.service.consul';
  let s: TestServer;
  before(async () => {
    s = await startServer({ catalog: bigCatalog({ big: COUNT, huge: 300 }), flags: { 'max-udp-size': '4096' } });
  });
  after(() => s.close());

  test('UDP without EDNS: every A record that fits in 512 bytes, with TC set', async () => {
    const reply = (await udpExchange(s.port, buildQuery(NAME, 'A')))!;
    const fit = Math.floor((512 - HEADER - questionSize(NAME)) / A_RECORD);
    assert.ok(reply.length <= 512, `reply is ${reply.length} bytes`);
    assert.ok(flags(reply) & TC, 'TC set');
    const got = addresses(decode(reply));
    assert.equal(got.length, fit, 'as many records as fit (musl keeps them)');
    assert.equal(new Set(got).size, fit, 'distinct records');
  });

  test('UDP with EDNS: the client size is honoured, an OPT comes back, TC when still too big', async () => {
    const reply = (await udpExchange(s.port, buildQuery(NAME, 'A', { udpSize: 1232 })))!;
    const fit = Math.floor((1232 - HEADER - questionSize(NAME) - OPT) / A_RECORD);
    assert.ok(reply.length <= 1232);
    assert.ok(flags(reply) & TC);
    const decoded = decode(reply);
    assert.equal(addresses(decoded).length, fit);
    assert.equal(decoded.additionals?.[0]?.type, 'OPT');
  });

  test('UDP with EDNS 4096: the whole set fits and TC is clear', async () => {
    const reply = (await udpExchange(s.port, buildQuery(NAME, 'A', { udpSize: 4096 })))!;
    assert.equal(flags(reply) & TC, 0);
    assert.equal(addresses(decode(reply)).length, COUNT);
  });

  test('an advertised size above 4096 is clamped to 4096, below 512 raised to 512', async () => {
    const small = (await udpExchange(s.port, buildQuery(NAME, 'A', { udpSize: 100 })))!;
    assert.equal(addresses(decode(small)).length, Math.floor((512 - HEADER - questionSize(NAME) - OPT) / A_RECORD));
    const huge = (await udpExchange(s.port, buildQuery(HUGE, 'A', { udpSize: 65000 })))!;
    assert.ok(huge.length <= 4096, `reply is ${huge.length} bytes`);
    assert.ok(flags(huge) & TC);
    assert.equal(addresses(decode(huge)).length, Math.floor((4096 - HEADER - questionSize(HUGE) - OPT) / A_RECORD));
  });

  test('TCP: the full answer, no TC', async () => {
    const { replies } = await tcpExchange(s.port, frame(buildQuery(NAME, 'A')), 1);
    assert.equal(flags(replies[0]!) & TC, 0);
    assert.equal(addresses(decode(replies[0]!)).length, COUNT);
  });
});

describe('the additional section goes before TC is set', () => {
  // An SRV record: owner pointer, type/class/TTL/length, priority/weight/port, and its target
  // `mid-nI.node.dc1.consul` written out (RFC 2782: targets are not compressed).
  const SRV_RECORD = 2 + 10 + 6 + ('mid-n0.node.dc1.consul'.length + 2);
  const COUNT = Math.floor((512 - HEADER - questionSize('mid.service.consul')) / SRV_RECORD);
  let s: TestServer;
  before(async () => {
    // COUNT SRV answers fit in 512 bytes without their additional A records, not with them.
    assert.ok(HEADER + questionSize('mid.service.consul') + COUNT * (SRV_RECORD + A_RECORD) > 512);
    s = await startServer({ catalog: bigCatalog({ mid: COUNT }) });
  });
  after(() => s.close());

  test('SRV: answers kept whole, additional dropped, TC clear', async () => {
    const reply = (await udpExchange(s.port, buildQuery('mid.service.consul', 'SRV')))!;
    assert.ok(reply.length <= 512);
    assert.equal(flags(reply) & TC, 0, 'dropping optional records does not set TC (RFC 2181 9)');
    const decoded = decode(reply);
    assert.equal(decoded.answers?.length, COUNT);
    assert.equal(decoded.additionals?.length ?? 0, 0);
    const full = (await udpExchange(s.port, buildQuery('mid.service.consul', 'SRV', { udpSize: 4096 })))!;
    assert.equal(decode(full).additionals?.filter((a) => a.type === 'A').length, COUNT);
  });
});

describe('--max-udp-size caps what a client may ask for: 1232 by default', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ catalog: bigCatalog({ big: 100 }) });
  });
  after(() => s.close());

  test('a client advertising 4096 gets at most 1232 bytes, TC set, every record that fits', async () => {
    const NAME = 'big.service.consul';
    const reply = (await udpExchange(s.port, buildQuery(NAME, 'A', { udpSize: 4096 })))!;
    assert.ok(reply.length <= 1232, `reply is ${reply.length} bytes`);
    assert.ok(flags(reply) & TC);
    assert.equal(addresses(decode(reply)).length, Math.floor((1232 - HEADER - questionSize(NAME) - OPT) / A_RECORD));
  });
});
