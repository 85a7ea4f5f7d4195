/** The reply encoder: byte-exact question, compression, and round trips through dns-packet. */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as dnsPacket from 'dns-packet';
import { encodeReply, type RR } from '../../src/dns/codec.js';
import { RRType } from '../../src/dns/constants.js';
import { readQuery, type Query } from '../../src/dns/wire.js';
import { parseIp } from '../../src/net/address.js';
import { buildQuery } from '../support/client.js';

function read(packet: Buffer): Query {
  const r = readQuery(packet);
  assert.equal(r.kind, 'query');
  return (r as { query: Query }).query;
}

const reply = (answers: RR[], additional: RR[] = []) => ({ rcode: 0, authoritative: true, recursionAvailable: false, answers, authority: [], additional });

test('owner names equal to the question become a pointer to it, keeping its spelling', () => {
  const packet = buildQuery('Web.Service.Consul', 'A', { id: 7 });
  const q = read(packet);
  const a: RR = { name: q.name, type: RRType.A, ttl: 5, address: parseIp('10.0.0.1')!.bytes };
  const out = encodeReply(q, packet, reply([a, a]), 512);
  // header + question + 2 × (pointer 2 + fixed 10 + rdata 4)
  assert.equal(out.length, 12 + ('Web.Service.Consul'.length + 2 + 4) + 2 * 16);
  const d = dnsPacket.decode(out);
  assert.equal(d.id, 7);
  assert.deepEqual(d.questions, [{ name: 'Web.Service.Consul', type: 'A', class: 'IN' }]);
  assert.deepEqual(d.answers?.map((x) => [x.name, x.type, (x as dnsPacket.StringAnswer).ttl, (x as dnsPacket.StringAnswer).data]), [
    ['Web.Service.Consul', 'A', 5, '10.0.0.1'],
    ['Web.Service.Consul', 'A', 5, '10.0.0.1'],
  ]);
});

test('SRV targets are written out (RFC 2782) and later names point into them', () => {
  const packet = buildQuery('db.service.consul', 'SRV');
  const q = read(packet);
  const target = 'node1.node.dc1.consul';
  const out = encodeReply(
    q,
    packet,
    reply([{ name: q.name, type: RRType.SRV, ttl: 0, priority: 1, weight: 10, port: 5432, target }], [{ name: target, type: RRType.A, ttl: 0, address: parseIp('10.0.0.1')!.bytes }]),
    512,
  );
  const srvStart = 12 + 'db.service.consul'.length + 2 + 4;
  const targetAt = srvStart + 2 + 10 + 6;
  // The target starts with its own first label, not a pointer.
  assert.equal(out[targetAt], 'node1'.length);
  // The additional record's owner is a pointer to the target.
  const additionalAt = targetAt + target.length + 2;
  assert.equal(out.readUInt16BE(additionalAt), 0xc000 | targetAt);
  const d = dnsPacket.decode(out);
  assert.deepEqual((d.answers?.[0] as dnsPacket.SrvAnswer).data, { priority: 1, weight: 10, port: 5432, target });
  assert.equal(d.additionals?.[0]?.name, target);
});

test('a question with odd bytes is copied verbatim', () => {
  const packet = buildQuery('x.example', 'A');
  packet[13] = 0xff; // the 'x' becomes a byte outside ASCII
  const q = read(packet);
  const out = encodeReply(q, packet, reply([]), 512);
  assert.deepEqual(out.subarray(12, q.questionEnd), packet.subarray(12, q.questionEnd));
});

test('EDNS: OPT echoed with the DO bit, BADVERS carried in the extended rcode', () => {
  const packet = buildQuery('a.consul', 'A', { udpSize: 1400, dnssecOk: true });
  const q = read(packet);
  assert.deepEqual(q.edns, { udpSize: 1400, version: 0, do: true });
  const out = encodeReply(q, packet, { ...reply([]), rcode: 16 }, 1400);
  const opt = dnsPacket.decode(out).additionals?.[0] as dnsPacket.OptAnswer;
  assert.equal(opt.type, 'OPT');
  assert.equal(opt.udpPayloadSize, 1232);
  assert.equal(opt.extendedRcode, 1);
  assert.equal(out.readUInt16BE(2) & 0xf, 0);
  assert.equal(opt.flag_do, true);
});

test('a TXT string longer than 255 bytes is split into 255-byte character-strings of one record', () => {
  const packet = buildQuery('n.node.consul', 'TXT');
  const q = read(packet);
  const long = `note=${'x'.repeat(600)}`;
  const out = encodeReply(q, packet, reply([{ name: q.name, type: RRType.TXT, ttl: 0, strings: [long] }]), 4096);
  const txt = dnsPacket.decode(out).answers?.[0] as dnsPacket.TxtAnswer;
  const parts = (txt.data as Buffer[]).map((b) => b.toString());
  assert.deepEqual(parts.map((p) => p.length), [255, 255, long.length - 510]);
  assert.equal(parts.join(''), long);
});

test('shrinking: the optional additional records (node meta TXT) go first, then the rest of the additional section, then answers with TC', () => {
  const packet = buildQuery('db.service.consul', 'SRV');
  const q = read(packet);
  const targets = ['n1.node.dc1.consul', 'n2.node.dc1.consul'];
  const srv = targets.map((target): RR => ({ name: q.name, type: RRType.SRV, ttl: 0, priority: 1, weight: 1, port: 80, target }));
  const glue = targets.map((name, i): RR => ({ name, type: RRType.A, ttl: 0, address: parseIp(`10.0.0.${i + 1}`)!.bytes }));
  const txt = targets.map((name): RR => ({ name, type: RRType.TXT, ttl: 0, strings: ['x'.repeat(100)] }));
  const r = { ...reply(srv, glue), optionalAdditional: txt };
  const sizes = (max: number) => {
    const d = dnsPacket.decode(encodeReply(q, packet, r, max));
    return [d.answers?.length, d.additionals?.map((a) => a.type).join(','), (d.flags! & dnsPacket.TRUNCATED_RESPONSE) !== 0];
  };
  const whole = encodeReply(q, packet, r, 65535).length;
  const withoutTxt = encodeReply(q, packet, reply(srv, glue), 65535).length;
  const withoutAdditional = encodeReply(q, packet, reply(srv), 65535).length;
  assert.deepEqual(sizes(whole), [2, 'A,A,TXT,TXT', false]);
  assert.deepEqual(sizes(whole - 1), [2, 'A,A', false], 'the TXT records go, the glue stays, no TC');
  assert.deepEqual(sizes(withoutTxt), [2, 'A,A', false]);
  assert.deepEqual(sizes(withoutTxt - 1), [2, '', false], 'then the whole additional section');
  assert.deepEqual(sizes(withoutAdditional - 1), [1, '', true], 'then answers, with TC');
  // Without optional records the cut is as before: additional section whole, or none.
  assert.deepEqual(sizes(whole) && dnsPacket.decode(encodeReply(q, packet, reply(srv, glue), withoutTxt - 1)).additionals?.length, 0);
});
