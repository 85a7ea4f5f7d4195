/**
 * The parts of response rate limiting (src/rrl/) in process: the accounts on an injected clock
 * (credit per second of the account's own, debt down to the window, slip order, bounded table),
 * client addresses into prefixes and exemptions, and the identity of replies. The system tier
 * (test/system/rrl.test.ts) counts replies through the real process.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as dnsPacket from 'dns-packet';
import { Accounts, Verdict } from '../../src/rrl/accounts.js';
import { IdentityReader, Kind } from '../../src/rrl/identity.js';
import { PrefixReader } from '../../src/rrl/prefix.js';
import { RateLimiter, rateLimited } from '../../src/rrl/limiter.js';
import { Diagnostics } from '../../src/diagnostics/channels.js';
import type { DnsHandler } from '../../src/pipeline/handler.js';
import { parseCidr, type Cidr } from '../../src/net/address.js';

const S = Verdict.SEND;
const D = Verdict.DROP;
const P = Verdict.SLIP;

/** `n` charges of one key at `at` ms. */
function charges(a: Accounts, n: number, at: number, key = 1): Verdict[] {
  return Array.from({ length: n }, () => a.charge(4, key, 0, 99, at));
}

describe('accounts', () => {
  test('rate replies, then the first limited one slipped and every slip-th after it', () => {
    const a = new Accounts({ rate: 3, slip: 2, windowSeconds: 15, size: 64 });
    assert.deepEqual(charges(a, 9, 1000), [S, S, S, P, D, P, D, P, D]);
    const three = new Accounts({ rate: 1, slip: 3, windowSeconds: 15, size: 64 });
    assert.deepEqual(charges(three, 8, 1000), [S, P, D, D, P, D, D, P]);
  });

  test('slip 0 drops every limited reply; slip 1 truncates every one', () => {
    assert.deepEqual(charges(new Accounts({ rate: 1, slip: 0, windowSeconds: 15, size: 64 }), 4, 1000), [S, D, D, D]);
    assert.deepEqual(charges(new Accounts({ rate: 1, slip: 1, windowSeconds: 15, size: 64 }), 4, 1000), [S, P, P, P]);
  });

  test('seconds count from the account’s own first reply: a burst shorter than a second gets exactly rate replies', () => {
    const a = new Accounts({ rate: 2, slip: 0, windowSeconds: 15, size: 64 });
    assert.deepEqual([a.charge(4, 1, 0, 9, 1500), a.charge(4, 1, 0, 9, 1999), a.charge(4, 1, 0, 9, 2499)], [S, S, D]);
    // 1 s after the first: one second's credit (2), the debt of 1 repaid: one reply.
    assert.deepEqual([a.charge(4, 1, 0, 9, 2500), a.charge(4, 1, 0, 9, 2500)], [S, D]);
  });

  test('credit never exceeds one second’s worth; debt goes down to window × rate and is repaid at rate a second', () => {
    const a = new Accounts({ rate: 2, slip: 0, windowSeconds: 10, size: 64 });
    charges(a, 1, 1000);
    assert.deepEqual(charges(a, 3, 3900), [S, S, D], 'two quiet seconds still give only 2');
    // Deep in debt: 100 more limited in the same second; the debt stops at -20 (10 s × 2).
    charges(a, 100, 3900);
    // Credited at 3000 last; 9 s later: -20 + 18 = -2, charged: -3.
    assert.deepEqual(charges(a, 1, 12000), [D]);
    assert.deepEqual(charges(a, 1, 13000), [D], '-3 + 2 = -1, charged: -2');
    assert.deepEqual(charges(a, 1, 14000), [D], '-2 + 2 = 0, charged: -1');
    assert.deepEqual(charges(a, 2, 15000), [S, D], '-1 + 2 = 1: one reply');
    // Quiet for the window (10 s since the last credit): a fresh account, debt forgotten.
    charges(a, 100, 15000);
    assert.deepEqual(charges(a, 3, 25000), [S, S, D]);
  });

  test('distinct keys have distinct accounts; the table stays its size, the oldest accounts forgotten', () => {
    const a = new Accounts({ rate: 1, slip: 0, windowSeconds: 15, size: 16 });
    assert.equal(a.capacity, 16);
    assert.deepEqual([a.charge(4, 1, 0, 1, 1000), a.charge(4, 1, 0, 2, 1000), a.charge(4, 2, 0, 1, 1000), a.charge(6, 1, 0, 1, 1000)], [S, S, S, S]);
    assert.deepEqual([a.charge(4, 1, 0, 1, 1000), a.charge(6, 1, 0, 1, 1000)], [D, D]);
    // 10,000 other keys later, key (4,1,0,1) has been forgotten: a fresh account.
    for (let k = 0; k < 10_000; k++) a.charge(4, 1000 + k, 0, 1, 1100);
    assert.equal(a.charge(4, 1, 0, 1, 1200), S);
  });
});

const cidrs = (...texts: string[]): Cidr[] => texts.map((t) => parseCidr(t)!);

describe('prefixes', () => {
  const key = (p: PrefixReader, address: string): string => {
    assert.ok(p.read(address), address);
    return `${p.w0}/${p.w1}/${p.w2}${p.exempt ? ' exempt' : ''}`;
  };

  test('IPv4 /24 and IPv6 /56 by default; mapped IPv4 read as IPv4; a zone ignored', () => {
    const p = new PrefixReader(24, 56, []);
    assert.equal(key(p, '10.1.2.3'), key(p, '10.1.2.200'));
    assert.notEqual(key(p, '10.1.2.3'), key(p, '10.1.3.3'));
    assert.equal(key(p, '::ffff:10.1.2.3'), key(p, '10.1.2.9'));
    assert.equal(key(p, '2001:db8:0:1200::1'), key(p, '2001:db8:0:12ff:ffff::2'));
    assert.notEqual(key(p, '2001:db8:0:1200::1'), key(p, '2001:db8:0:1300::1'));
    assert.equal(key(p, 'fe80::1%eth0'), key(p, 'fe80::2'));
    assert.notEqual(key(p, '0.0.0.4'), key(p, '::4'), 'the families never share a prefix');
    for (const bad of ['', '1.2.3', '1.2.3.256', 'a.b.c.d', '1::2::3', '12345::', ':1', '1:2:3:4:5:6:7:8:9', 'host']) assert.equal(p.read(bad), false, bad);
    assert.equal(key(new PrefixReader(32, 128, []), '1:2:3:4:5:6:7:8') === key(new PrefixReader(32, 128, []), '1:2:3:4:5:6:7:9'), false, '/128: each address its own');
  });

  test('exempt ranges, IPv4 and IPv6', () => {
    const p = new PrefixReader(24, 56, cidrs('127.0.0.0/8', '::1/128', '10.9.0.0/16', 'fd00::/8'));
    for (const a of ['127.0.0.1', '127.255.1.2', '::1', '10.9.200.1', 'fd12::1', '::ffff:127.0.0.1']) assert.ok(key(p, a).endsWith('exempt'), a);
    for (const a of ['128.0.0.1', '::2', '10.10.0.1', 'fe00::1', '192.0.2.1']) assert.ok(!key(p, a).endsWith('exempt'), a);
  });
});

describe('identity of replies', () => {
  const id = new IdentityReader();
  const of = (packet: dnsPacket.Packet): string => {
    assert.ok(id.read(dnsPacket.encode({ id: 1, type: 'response', ...packet })));
    return `${id.kind}:${id.hash}`;
  };
  const answer = (name: string, type: dnsPacket.RecordType, rcode = 0): dnsPacket.Packet => ({
    flags: rcode,
    questions: [{ name, type, class: 'IN' }],
  });

  test('answers: the question, case aside; NXDOMAIN: the zone of its SOA; errors: one class', () => {
    assert.equal(of(answer('web.service.consul', 'A')), of(answer('WEB.Service.consul', 'A')));
    assert.notEqual(of(answer('web.service.consul', 'A')), of(answer('web.service.consul', 'SRV')));
    assert.notEqual(of(answer('web.service.consul', 'A')), of(answer('db.service.consul', 'A')));
    assert.ok(of(answer('web.service.consul', 'A')).startsWith(`${Kind.ANSWER}:`));
    const soa = (zone: string): dnsPacket.Answer => ({
      name: zone,
      type: 'SOA',
      ttl: 0,
      data: { mname: 'ns.' + zone, rname: 'h.' + zone, serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 1 },
    });
    const nx = (name: string, zone: string | null): dnsPacket.Packet => ({ ...answer(name, 'A', 3), authorities: zone ? [soa(zone)] : [] });
    assert.equal(of(nx('a.service.consul', 'consul')), of(nx('b.node.consul', 'CONSUL')));
    assert.notEqual(of(nx('a.service.consul', 'consul')), of(nx('a.example.test', 'example.test')));
    assert.equal(of(nx('a.example.test', null)), of(nx('b.other.test', null)), 'without an SOA: one class');
    assert.ok(of(nx('a', 'consul')).startsWith(`${Kind.NXDOMAIN}:`));
    assert.equal(of(answer('a.example', 'A', 2)), of(answer('b.example', 'TXT', 5)), 'SERVFAIL and REFUSED: one class');
  });

  test('a compressed SOA owner is followed to the zone it names', () => {
    // The question a.service.consul, an NXDOMAIN whose SOA owner is a pointer to "consul" in the question.
    const plain = dnsPacket.encode({ id: 1, type: 'response', flags: 3, questions: [{ name: 'a.service.consul', type: 'A', class: 'IN' }], authorities: [{ name: 'consul', type: 'SOA', ttl: 0, data: { mname: 'ns', rname: 'h', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 1 } }] });
    const qEnd = 12 + 'a.service.consul'.length + 2 + 4;
    const consulAt = 12 + 2 + 8; // after "\x01a\x07service"
    const compressed = Buffer.concat([plain.subarray(0, qEnd), Buffer.from([0xc0, consulAt]), plain.subarray(qEnd + 8)]);
    assert.ok(id.read(compressed));
    const viaPointer = id.hash;
    assert.ok(id.read(plain));
    assert.equal(viaPointer, id.hash);
  });
});

describe('the handler wrapped', () => {
  const query = Buffer.from(dnsPacket.encode({ id: 7, type: 'query', questions: [{ name: 'big.example.test', type: 'TXT', class: 'IN' }] }));
  const reply = Buffer.from(
    dnsPacket.encode({
      id: 7,
      type: 'response',
      flags: 0x8180,
      questions: [{ name: 'big.example.test', type: 'TXT', class: 'IN' }],
      answers: [{ name: 'big.example.test', type: 'TXT', ttl: 60, data: ['x'.repeat(200)] }],
    }),
  );
  const client = { address: '192.0.2.1', port: 5353 };
  const wrap = (inner: DnsHandler): DnsHandler => {
    const config = { responsesPerSecond: 1, slip: 2, windowSeconds: 15, ipv4PrefixLength: 24, ipv6PrefixLength: 56, exempt: cidrs('127.0.0.0/8'), tableSize: 64 };
    return rateLimited(inner, new RateLimiter({ config, diagnostics: new Diagnostics(), now: () => 5000 }));
  };

  test('pending answers (forwarded) are limited when they settle; TCP never; no reply stays none', async () => {
    const h = wrap(() => Promise.resolve(reply));
    const got = [await h(query, 'udp', client), await h(query, 'udp', client), await h(query, 'udp', client), await h(query, 'tcp', client)];
    assert.equal(got[0], reply);
    const slipped = dnsPacket.decode(got[1]!);
    assert.ok((slipped.flags! & dnsPacket.TRUNCATED_RESPONSE) !== 0 && slipped.answers!.length === 0 && slipped.id === 7);
    assert.equal(got[2], null, 'dropped');
    assert.equal(got[3], reply, 'TCP is never limited');
    const silent = wrap(() => null);
    for (let i = 0; i < 3; i++) assert.equal(silent(query, 'udp', client), null);
  });

  test('each limited reply is told on the seam: dropped or slipped', () => {
    const diagnostics = new Diagnostics();
    const seen: string[] = [];
    diagnostics.rateLimit.subscribe((e) => seen.push(e.outcome));
    const config = { responsesPerSecond: 2, slip: 2, windowSeconds: 15, ipv4PrefixLength: 24, ipv6PrefixLength: 56, exempt: [], tableSize: 64 };
    const h = rateLimited(() => reply, new RateLimiter({ config, diagnostics, now: () => 5000 }));
    for (let i = 0; i < 7; i++) void h(query, 'udp', client);
    assert.deepEqual(seen, ['slipped', 'dropped', 'slipped', 'dropped', 'slipped']);
  });
});
