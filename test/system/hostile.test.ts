/**
 * Hostile input: what svcdns does with datagrams and TCP frames that are not well-formed standard
 * queries, checked against the read contract in src/dns/wire.ts and the decision order in
 * src/pipeline/resolver.ts:
 *
 * - no readable header (< 12 bytes) or a response (QR set): silence;
 * - opcode other than QUERY: NOTIMP; anything else unreadable: FORMERR; both header-only replies
 *   (plus our OPT record when the query carried a well-formed one, RFC 6891 6.1.1)
 *   with the query's ID and opcode, QR set, no sections, and of the query's flags RD and CD for
 *   QUERY only (a NOTIMP sets no flag but QR, as ISC's genreport `opcodeflg` expects);
 * - EDNS version > 0: BADVERS (extended rcode 16); class other than IN/ANY, AXFR and IXFR: REFUSED.
 *
 * After every hostile case the server must still answer a normal question. A seeded fuzz run then
 * throws thousands of mutated and random packets at it over UDP and TCP. Set SVCDNS_FUZZ_SEED to
 * replay a failing run (the seed is printed in every fuzz assertion message).
 */

import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { OptAnswer } from 'dns-packet';
import { buildQuery, decode, frame, tcpExchange, udpExchange, zoneLines } from '../support/client.js';
import { dig } from '../support/dig.js';
import { OUR_OPT, OUR_OPT_DO, checkReply, fuzzPackets, histogram } from '../support/fuzz.js';
import { Rng } from '../support/random.js';
import { startServer, type TestServer } from '../support/server.js';
import { questionEnd, readHeader, type Header } from '../support/wire.js';

// ---------------------------------------------------------------------------------------------
// DNS numbers, written out here so the tests do not borrow the server's own constants.

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const TYPE = { A: 1, NS: 2, SOA: 6, PTR: 12, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, IXFR: 251, AXFR: 252 } as const;
const CLASS_IN = 1;
const QR = 0x8000;
const RD = 0x0100;
const CD = 0x0010;
/** Every flag a query can carry but QR: AA, TC, RD, RA, Z, AD, CD. */
const ALL_FLAGS = 0x0400 | 0x0200 | RD | 0x0080 | 0x0040 | 0x0020 | CD;

/** Time we listen for a reply that must not come. */
const SILENCE_MS = 300;

const WEB_A = [
  'web.service.consul. 0 IN A 192.168.0.129',
  'web.service.consul. 0 IN A 192.168.0.130',
  'web.service.consul. 0 IN A 192.168.0.131',
];

// ---------------------------------------------------------------------------------------------
// Raw message building.

interface HeaderFields {
  flags?: number;
  qd?: number;
  an?: number;
  ns?: number;
  ar?: number;
}

function header(id: number, { flags = RD, qd = 1, an = 0, ns = 0, ar = 0 }: HeaderFields = {}): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(flags, 2);
  b.writeUInt16BE(qd, 4);
  b.writeUInt16BE(an, 6);
  b.writeUInt16BE(ns, 8);
  b.writeUInt16BE(ar, 10);
  return b;
}

function u16(...values: number[]): Buffer {
  const b = Buffer.alloc(2 * values.length);
  values.forEach((v, i) => b.writeUInt16BE(v, 2 * i));
  return b;
}

/** A name in wire form from its labels, with the root label at the end. */
function wireName(...labels: string[]): Buffer {
  return Buffer.concat([...labels.flatMap((l) => [Buffer.from([l.length]), Buffer.from(l, 'latin1')]), Buffer.from([0])]);
}

function dotted(name: string): Buffer {
  return wireName(...name.split('.'));
}

function question(name: string, type: number = TYPE.A, qclass = CLASS_IN): Buffer {
  return Buffer.concat([dotted(name), u16(type, qclass)]);
}

interface OptFields {
  owner?: Buffer;
  udpSize?: number;
  version?: number;
  rdata?: Buffer;
  /** Defaults to rdata's length; set it to lie. */
  rdlength?: number;
  dnssecOk?: boolean;
}

/** An EDNS OPT pseudo-record (RFC 6891 6.1.2). */
function opt({ owner = Buffer.from([0]), udpSize = 1232, version = 0, rdata = Buffer.alloc(0), rdlength, dnssecOk = false }: OptFields = {}): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(TYPE.OPT, 0);
  fixed.writeUInt16BE(udpSize, 2);
  fixed.writeUInt8(0, 4); // extended rcode
  fixed.writeUInt8(version, 5);
  fixed.writeUInt16BE(dnssecOk ? 0x8000 : 0, 6); // flags: DO
  fixed.writeUInt16BE(rdlength ?? rdata.length, 8);
  return Buffer.concat([owner, fixed, rdata]);
}

function label(length: number, fill = 'a'): string {
  return fill.repeat(length);
}

// ---------------------------------------------------------------------------------------------
// Reply reading and shared assertions.

function hex(b: Buffer, max = 96): string {
  return b.length > max ? `${b.subarray(0, max).toString('hex')}… (${b.length} bytes)` : `${b.toString('hex')} (${b.length} bytes)`;
}

/** A reply to `query` with its ID, QR set and `rcode`; returns both headers. */
function assertReplyTo(reply: Buffer | null, query: Buffer, rcode: number): { q: Header; r: Header; reply: Buffer } {
  assert.ok(reply, `expected rcode ${rcode}, got no reply; query ${hex(query)}`);
  const q = readHeader(query);
  const r = readHeader(reply);
  assert.equal(r.id, q.id, 'reply ID is the query ID');
  assert.equal(r.qr, true, 'QR is set');
  assert.equal(r.rcode, rcode, `rcode; reply ${hex(reply)}`);
  return { q, r, reply };
}

/**
 * A header-only error reply (FORMERR, NOTIMP) to `query`, as wire.ts's errorReply builds it: the
 * flags word exactly QR, the query's opcode, its RD and CD if the opcode is QUERY, and the rcode.
 */
function assertErrorReply(got: Buffer | null, query: Buffer, rcode: number, edns: boolean | 'do' = false): void {
  const { q, r, reply } = assertReplyTo(got, query, rcode);
  assert.equal(r.opcode, q.opcode, 'opcode is copied');
  const asked = query.readUInt16BE(2);
  const echoed = q.opcode === 0 ? asked & (RD | CD) : 0;
  assert.equal(reply.readUInt16BE(2).toString(16), (QR | (q.opcode << 11) | echoed | rcode).toString(16), 'flags: QR, opcode, RD/CD for QUERY only, rcode');
  if (!edns) {
    assert.deepEqual(r.counts, [0, 0, 0, 0], 'no question and no records');
    assert.equal(reply.length, 12, 'header only');
    return;
  }
  // RFC 6891 6.1.1: the query had a well-formed OPT, so the reply has ours: root owner, OPT, our
  // 1232-byte size, extended rcode 0, version 0, no flags, no options.
  assert.deepEqual(r.counts, [0, 0, 0, 1], 'no question, our OPT alone');
  assert.equal(hex(reply.subarray(12)), edns === 'do' ? OUR_OPT_DO : OUR_OPT, 'the OPT record (DO copied, RFC 3225 3)');
}

/** A reply that echoes the query's question section byte for byte and carries `rcode`. */
function assertQuestionReply(got: Buffer | null, query: Buffer, rcode: number): Header {
  const { r, reply } = assertReplyTo(got, query, rcode);
  assert.equal(r.counts[0], 1, 'one question');
  const end = questionEnd(query);
  assert.deepEqual(reply.subarray(12, end), query.subarray(12, end), 'question copied verbatim');
  return r;
}

let healthId = 0x7000;

/** web.service.consul A over `via` gets all three addresses with the right ID. */
async function assertServesWeb(port: number, via: 'udp' | 'tcp' = 'udp', context = ''): Promise<void> {
  const id = healthId++ & 0xffff;
  const query = buildQuery('web.service.consul', 'A', { id });
  const reply =
    via === 'udp' ? await udpExchange(port, query, 1000) : ((await tcpExchange(port, frame(query), 1, 2000)).replies[0] ?? null);
  assert.ok(reply, `web.service.consul A over ${via}: no reply ${context}`);
  const p = decode(reply);
  assert.equal(p.id, id, `web.service.consul A over ${via}: ID ${context}`);
  assert.equal(readHeader(reply).rcode, RCODE.NOERROR, `web.service.consul A over ${via}: rcode ${context}`);
  assert.equal(p.flag_aa, true, `web.service.consul A over ${via}: AA ${context}`);
  assert.deepEqual(zoneLines(p.answers).sort(), WEB_A, `web.service.consul A over ${via}: answers ${context}`);
}

function optOf(reply: Buffer): OptAnswer | undefined {
  return decode(reply).additionals?.find((a): a is OptAnswer => a.type === 'OPT');
}

async function withServer(t: TestContext, flags?: Record<string, string>): Promise<TestServer> {
  const srv = await startServer(flags ? { flags } : {});
  t.after(() => srv.close());
  return srv;
}

// ---------------------------------------------------------------------------------------------
// A small TCP client that keeps the connection open, collects framed replies and notices closes.

class TcpClient {
  readonly replies: Buffer[] = [];
  closedByPeer = false;
  closed = false;
  errors: Error[] = [];
  private pending = Buffer.alloc(0);
  private wake: (() => void) | null = null;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.pending = Buffer.concat([this.pending, chunk]);
      while (this.pending.length >= 2 && this.pending.length >= 2 + this.pending.readUInt16BE(0)) {
        const len = this.pending.readUInt16BE(0);
        this.replies.push(Buffer.from(this.pending.subarray(2, 2 + len)));
        this.pending = this.pending.subarray(2 + len);
      }
      this.poke();
    });
    socket.on('end', () => {
      this.closedByPeer = true;
      this.poke();
    });
    socket.on('close', () => {
      this.closed = true;
      this.poke();
    });
    socket.on('error', (err) => {
      this.errors.push(err);
      this.poke();
    });
  }

  static open(port: number, t: TestContext): Promise<TcpClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host: '127.0.0.1', noDelay: true });
      const client = new TcpClient(socket);
      t.after(() => client.destroy());
      socket.once('connect', () => resolve(client));
      socket.once('error', reject);
    });
  }

  write(bytes: Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(bytes, (err) => (err ? reject(err) : resolve())));
  }

  /** Resolves true as soon as `done()` holds, false after `timeoutMs`. */
  async until(done: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
    return true;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private poke(): void {
    this.wake?.();
  }
}

// ---------------------------------------------------------------------------------------------
// Hostile UDP cases.

interface SilentCase {
  name: string;
  packet: Buffer;
}

interface ErrorCase {
  name: string;
  packet: Buffer;
  rcode: number;
  /** The query has a well-formed OPT record, so the reply carries ours ('do': with the DO bit the query set). */
  edns?: true | 'do';
}

const WEB = question('web.service.consul');

const SILENT_CASES: SilentCase[] = [
  { name: 'an empty datagram (0 bytes)', packet: Buffer.alloc(0) },
  { name: 'a 1-byte datagram', packet: Buffer.from([0x12]) },
  { name: 'an 11-byte datagram (a valid query header cut one byte short)', packet: buildQuery('web.service.consul', 'A', { id: 0x1111 }).subarray(0, 11) },
  { name: 'a response (QR=1) carrying a valid web.service.consul A question', packet: Buffer.concat([header(0x2222, { flags: QR | RD }), WEB]) },
  { name: 'a NOTIFY response (QR=1, opcode 4): QR is checked before the opcode', packet: Buffer.concat([header(0x2223, { flags: QR | (4 << 11) }), question('consul', TYPE.SOA)]) },
  { name: 'a FORMERR response with no question (QR=1, qdcount 0)', packet: header(0x2224, { flags: QR | RCODE.FORMERR, qd: 0 }) },
];

const OPCODE_NAMES: Record<number, string> = { 1: 'IQUERY', 2: 'STATUS', 3: 'unassigned 3', 4: 'NOTIFY', 5: 'UPDATE', 6: 'DSO', 15: 'unassigned 15' };

const NOTIMP_CASES: ErrorCase[] = [
  ...Object.entries(OPCODE_NAMES).map(([code, name]) => ({
    name: `opcode ${name} (${code}) with a valid question`,
    packet: Buffer.concat([header(0x3000 + Number(code), { flags: (Number(code) << 11) | RD }), question('consul', TYPE.SOA)]),
    rcode: RCODE.NOTIMP,
  })),
  {
    name: 'opcode UPDATE (5) with qdcount 0: the opcode is checked before the question count',
    packet: header(0x3100, { flags: 5 << 11, qd: 0 }),
    rcode: RCODE.NOTIMP,
  },
  {
    name: "opcode 15 with every flag set and no question (genreport's opcodeflg): none copied",
    packet: header(0x3101, { flags: (15 << 11) | ALL_FLAGS, qd: 0 }),
    rcode: RCODE.NOTIMP,
  },
  {
    name: 'opcode NOTIFY (4) with a question and a well-formed OPT: the reply has our OPT',
    packet: Buffer.concat([header(0x3103, { flags: 4 << 11, ar: 1 }), question('consul', TYPE.SOA), opt()]),
    rcode: RCODE.NOTIMP,
    edns: true,
  },
  {
    name: 'opcode 15, no question, a well-formed OPT: the reply has our OPT',
    packet: Buffer.concat([header(0x3104, { flags: 15 << 11, qd: 0, ar: 1 }), opt()]),
    rcode: RCODE.NOTIMP,
    edns: true,
  },
  {
    name: 'opcode NOTIFY (4) with an OPT record setting DO: our OPT has DO too (RFC 3225 3)',
    packet: Buffer.concat([header(0x3106, { flags: 4 << 11, ar: 1 }), question('consul', TYPE.SOA), opt({ dnssecOk: true })]),
    rcode: RCODE.NOTIMP,
    edns: 'do',
  },
  {
    name: 'opcode 15 with two OPT records: no OPT in the reply',
    packet: Buffer.concat([header(0x3105, { flags: 15 << 11, qd: 0, ar: 2 }), opt(), opt()]),
    rcode: RCODE.NOTIMP,
  },
  {
    name: 'opcode STATUS (2) with RD and CD and a valid question: neither copied',
    packet: Buffer.concat([header(0x3102, { flags: (2 << 11) | RD | CD }), question('consul', TYPE.SOA)]),
    rcode: RCODE.NOTIMP,
  },
];

const NAME_255 = wireName(label(63), label(63), label(63), label(54), 'consul'); // 255 bytes
const NAME_256 = wireName(label(63), label(63), label(63), label(55), 'consul'); // 256 bytes

const FORMERR_CASES: ErrorCase[] = [
  // Question count.
  { name: 'qdcount 0 (header only)', packet: header(0x4001, { qd: 0 }), rcode: RCODE.FORMERR },
  { name: 'qdcount 0 with every flag set: only RD and CD copied (QUERY)', packet: header(0x4011, { flags: ALL_FLAGS, qd: 0 }), rcode: RCODE.FORMERR },
  { name: 'qdcount 0 and an OPT record (a cookie-only query, RFC 7873 5.4): the reply has our OPT', packet: Buffer.concat([header(0x4012, { qd: 0, ar: 1 }), opt()]), rcode: RCODE.FORMERR, edns: true },
  { name: 'qdcount 2, two questions and an OPT record: the reply has our OPT', packet: Buffer.concat([header(0x4013, { qd: 2, ar: 1 }), WEB, question('consul', TYPE.SOA), opt()]), rcode: RCODE.FORMERR, edns: true },
  { name: 'qdcount 0 with a question present anyway', packet: Buffer.concat([header(0x4002, { qd: 0 }), WEB]), rcode: RCODE.FORMERR },
  { name: 'qdcount 2 with two questions', packet: Buffer.concat([header(0x4003, { qd: 2 }), WEB, question('consul', TYPE.SOA)]), rcode: RCODE.FORMERR },
  { name: 'qdcount 2 with only one question present', packet: Buffer.concat([header(0x4004, { qd: 2 }), WEB]), rcode: RCODE.FORMERR },
  { name: 'qdcount 65535', packet: Buffer.concat([header(0x4005, { qd: 0xffff }), WEB]), rcode: RCODE.FORMERR },
  // Label types (RFC 6891 9: 0x40 extended and 0x80 reserved label types are not accepted).
  ...[0x40, 0x7f, 0x80, 0xbf].map((len) => ({
    name: `label length byte ${len} (0x${len.toString(16)}) followed by ${len} bytes`,
    packet: Buffer.concat([header(0x4100 + len), Buffer.from([len]), Buffer.alloc(len, 0x61), Buffer.from([0]), u16(TYPE.A, CLASS_IN)]),
    rcode: RCODE.FORMERR,
  })),
  // Compression pointers in the question name.
  { name: 'compression pointer to itself (0xC0 0x0C)', packet: Buffer.concat([header(0x4201), Buffer.from([0xc0, 0x0c]), u16(TYPE.A, CLASS_IN)]), rcode: RCODE.FORMERR },
  {
    name: 'label "web" then a pointer back to the start of the name (loop)',
    packet: Buffer.concat([header(0x4202), Buffer.from([3, 0x77, 0x65, 0x62, 0xc0, 0x0c]), u16(TYPE.A, CLASS_IN)]),
    rcode: RCODE.FORMERR,
  },
  {
    name: 'pointer forward (0xC0 0x12) to a valid name after the question',
    packet: Buffer.concat([header(0x4203), Buffer.from([0xc0, 0x12]), u16(TYPE.A, CLASS_IN), dotted('web.service.consul')]),
    rcode: RCODE.FORMERR,
  },
  { name: 'pointer into the header (0xC0 0x00)', packet: Buffer.concat([header(0x4204), Buffer.from([0xc0, 0x00]), u16(TYPE.A, CLASS_IN)]), rcode: RCODE.FORMERR },
  { name: 'pointer with offset bits only (0xFF 0xFF)', packet: Buffer.concat([header(0x4205), Buffer.from([0xff, 0xff]), u16(TYPE.A, CLASS_IN)]), rcode: RCODE.FORMERR },
  {
    name: 'a pointer as the last byte of the datagram (0xC0, no offset byte)',
    packet: Buffer.concat([header(0x4206), Buffer.from([0xc0])]),
    rcode: RCODE.FORMERR,
  },
  // Length limits and truncation.
  { name: 'name of 256 bytes (one over the 255-byte limit) under consul', packet: Buffer.concat([header(0x4301), NAME_256, u16(TYPE.A, CLASS_IN)]), rcode: RCODE.FORMERR },
  {
    name: 'name of 320 bytes (five 63-byte labels)',
    packet: Buffer.concat([header(0x4302), wireName(label(63), label(63), label(63), label(63), label(63)), u16(TYPE.A, CLASS_IN)]),
    rcode: RCODE.FORMERR,
  },
  { name: 'label claiming 7 bytes with 3 left in the datagram', packet: Buffer.concat([header(0x4303), Buffer.from([7, 0x77, 0x65, 0x62])]), rcode: RCODE.FORMERR },
  { name: 'name with no root label (datagram ends after "web")', packet: Buffer.concat([header(0x4304), Buffer.from([3, 0x77, 0x65, 0x62])]), rcode: RCODE.FORMERR },
  { name: 'question with qdcount 1 but no bytes after the header', packet: header(0x4305), rcode: RCODE.FORMERR },
  { name: 'question missing QTYPE and QCLASS', packet: Buffer.concat([header(0x4306), dotted('web.service.consul')]), rcode: RCODE.FORMERR },
  { name: 'question with QTYPE but no QCLASS', packet: Buffer.concat([header(0x4307), dotted('web.service.consul'), u16(TYPE.A)]), rcode: RCODE.FORMERR },
  {
    name: 'question with 3 of the 4 QTYPE/QCLASS bytes',
    packet: Buffer.concat([header(0x4308), dotted('web.service.consul'), Buffer.from([0, 1, 0])]),
    rcode: RCODE.FORMERR,
  },
  // Answer, authority and additional sections.
  {
    name: 'OPT record truncated mid-RDATA (RDLENGTH 8, 4 bytes present)',
    packet: Buffer.concat([header(0x4401, { ar: 1 }), WEB, opt({ rdata: Buffer.from([0, 10, 0, 8]), rdlength: 8 })]),
    rcode: RCODE.FORMERR,
  },
  {
    name: 'OPT record truncated inside its fixed fields (6 of 11 bytes)',
    packet: Buffer.concat([header(0x4402, { ar: 1 }), WEB, opt().subarray(0, 6)]),
    rcode: RCODE.FORMERR,
  },
  {
    name: 'two OPT records in the additional section',
    packet: Buffer.concat([header(0x4403, { ar: 2 }), WEB, opt(), opt()]),
    rcode: RCODE.FORMERR,
  },
  { name: 'arcount 1 with no additional record present', packet: Buffer.concat([header(0x4404, { ar: 1 }), WEB]), rcode: RCODE.FORMERR },
  {
    name: 'arcount 3 with one OPT record present',
    packet: Buffer.concat([header(0x4405, { ar: 3 }), WEB, opt()]),
    rcode: RCODE.FORMERR,
  },
  { name: 'arcount 65535 with one OPT record present', packet: Buffer.concat([header(0x4406, { ar: 0xffff }), WEB, opt()]), rcode: RCODE.FORMERR },
  { name: 'ancount 1 with no answer record present', packet: Buffer.concat([header(0x4407, { an: 1 }), WEB]), rcode: RCODE.FORMERR },
  { name: 'nscount 1 with no authority record present', packet: Buffer.concat([header(0x4408, { ns: 1 }), WEB]), rcode: RCODE.FORMERR },
  {
    name: 'OPT record whose owner name is not the root',
    packet: Buffer.concat([header(0x4409, { ar: 1 }), WEB, opt({ owner: dotted('web') })]),
    rcode: RCODE.FORMERR,
  },
  {
    name: 'an OPT record in the answer section (RFC 6891 6.1.1: OPT belongs in the additional section only)',
    packet: Buffer.concat([header(0x440b, { an: 1, ar: 1 }), WEB, opt(), opt()]),
    rcode: RCODE.FORMERR,
  },
  {
    name: 'an OPT record in the authority section',
    packet: Buffer.concat([header(0x440c, { ns: 1 }), WEB, opt()]),
    rcode: RCODE.FORMERR,
  },
  {
    name: 'additional record with a bad label type in its owner name',
    packet: Buffer.concat([header(0x440a, { ar: 1 }), WEB, Buffer.from([0x80]), opt().subarray(1)]),
    rcode: RCODE.FORMERR,
  },
];

// Subtests run one at a time (each awaited) but for the silent cases, whose SILENCE_MS waits overlap.
void test('UDP: hostile datagrams get silence, NOTIMP or FORMERR, and the server keeps answering', { concurrency: true }, async (t) => {
  const srv = await withServer(t);

  await t.test('control: web.service.consul A is answered before any hostile input', async () => {
    await assertServesWeb(srv.port);
  });

  await Promise.all(
    SILENT_CASES.map((c) =>
      t.test(`no reply: ${c.name}`, async () => {
        const reply = await udpExchange(srv.port, c.packet, SILENCE_MS);
        assert.equal(reply, null, `expected silence for ${hex(c.packet)}, got ${reply ? hex(reply) : ''}`);
        await assertServesWeb(srv.port, 'udp', `after ${c.name}`);
      }),
    ),
  );

  for (const c of NOTIMP_CASES) {
    await t.test(`NOTIMP: ${c.name}`, async () => {
      assertErrorReply(await udpExchange(srv.port, c.packet), c.packet, c.rcode, c.edns);
      await assertServesWeb(srv.port, 'udp', `after ${c.name}`);
    });
  }

  for (const c of FORMERR_CASES) {
    await t.test(`FORMERR: ${c.name}`, async () => {
      assertErrorReply(await udpExchange(srv.port, c.packet), c.packet, c.rcode, c.edns);
      await assertServesWeb(srv.port, 'udp', `after ${c.name}`);
    });
  }

  await t.test('control: the raw builders make queries the server answers (question + well-formed OPT)', async () => {
    const plain = Buffer.concat([header(0x4501), WEB]);
    assertQuestionReply(await udpExchange(srv.port, plain), plain, RCODE.NOERROR);
    const withOpt = Buffer.concat([header(0x4502, { ar: 1 }), WEB, opt({ udpSize: 4096 })]);
    const reply = await udpExchange(srv.port, withOpt);
    const h = assertQuestionReply(reply, withOpt, RCODE.NOERROR);
    assert.deepEqual(h.counts, [1, 3, 0, 1]);
    assert.equal(optOf(reply!)?.ednsVersion, 0);
  });

  await t.test('a label holding a "." byte under consul (we\\.b.service.consul) is ours: NXDOMAIN with the SOA', async () => {
    const packet = Buffer.concat([header(0x4602), wireName('we.b', 'service', 'consul'), u16(TYPE.A, CLASS_IN)]);
    const reply = await udpExchange(srv.port, packet);
    const h = assertQuestionReply(reply, packet, RCODE.NXDOMAIN);
    assert.equal(h.aa, true);
    assert.deepEqual(decode(reply!).authorities?.map((a) => `${a.name} ${a.type}`), ['consul SOA']);
  });

  await t.test('a 255-byte name (the limit) under consul is read, not FORMERR: NXDOMAIN with the SOA', async () => {
    const packet = Buffer.concat([header(0x4601), NAME_255, u16(TYPE.A, CLASS_IN)]);
    assert.equal(NAME_255.length, 255);
    assert.equal(NAME_256.length, 256);
    const reply = await udpExchange(srv.port, packet);
    const h = assertQuestionReply(reply, packet, RCODE.NXDOMAIN);
    assert.equal(h.aa, true);
    assert.deepEqual(h.counts, [1, 0, 1, 0]);
    assert.deepEqual(
      decode(reply!).authorities?.map((a) => `${a.name} ${a.type}`),
      ['consul SOA'],
    );
    await assertServesWeb(srv.port, 'udp', 'after a 255-byte name');
  });

  for (const version of [1, 255]) {
    await t.test(`EDNS version ${version}: BADVERS (header rcode 0, OPT extended rcode 1 = rcode 16), OPT version 0`, async () => {
      const packet = Buffer.concat([header(0x4700 + version, { ar: 1 }), WEB, opt({ version })]);
      const reply = await udpExchange(srv.port, packet);
      const h = assertQuestionReply(reply, packet, 0);
      assert.deepEqual(h.counts, [1, 0, 0, 1], 'no records, just the OPT');
      const o = optOf(reply!);
      assert.ok(o, 'the reply carries an OPT record');
      assert.equal(o.extendedRcode, 1, 'upper rcode bits in the OPT');
      assert.equal((o.extendedRcode << 4) | h.rcode, 16, 'full rcode is BADVERS');
      assert.equal(o.ednsVersion, 0, 'the server states the version it speaks');
      await assertServesWeb(srv.port, 'udp', `after EDNS version ${version}`);
    });
  }

  await t.test('EDNS version 1 in a CH question: BADVERS comes before the class check', async () => {
    const packet = Buffer.concat([header(0x4710, { ar: 1 }), question('version.bind', TYPE.TXT, 3), opt({ version: 1 })]);
    const reply = await udpExchange(srv.port, packet);
    const h = assertQuestionReply(reply, packet, 0);
    assert.equal(optOf(reply!)?.extendedRcode, 1);
    assert.deepEqual(h.counts, [1, 0, 0, 1]);
  });

  for (const name of ['version.bind', 'hostname.bind', 'web.service.consul']) {
    await t.test(`class CH (3) ${name} TXT: REFUSED, no records`, async () => {
      const packet = buildQuery(name, 'TXT', { id: 0x4801, class: 'CH' });
      const reply = await udpExchange(srv.port, packet);
      const h = assertQuestionReply(reply, packet, RCODE.REFUSED);
      assert.deepEqual(h.counts, [1, 0, 0, 0]);
      assert.equal(h.aa, false);
      await assertServesWeb(srv.port, 'udp', `after CH ${name}`);
    });
  }

  await t.test('class HS (4) web.service.consul A: REFUSED', async () => {
    const packet = Buffer.concat([header(0x4802), question('web.service.consul', TYPE.A, 4)]);
    const h = assertQuestionReply(await udpExchange(srv.port, packet), packet, RCODE.REFUSED);
    assert.deepEqual(h.counts, [1, 0, 0, 0]);
  });

  for (const [type, typeName] of [
    [TYPE.AXFR, 'AXFR (252)'],
    [TYPE.IXFR, 'IXFR (251)'],
  ] as const) {
    await t.test(`${typeName} for consul over UDP: REFUSED, no records`, async () => {
      const packet = Buffer.concat([header(0x4900 + type), question('consul', type)]);
      const h = assertQuestionReply(await udpExchange(srv.port, packet), packet, RCODE.REFUSED);
      assert.deepEqual(h.counts, [1, 0, 0, 0]);
      await assertServesWeb(srv.port, 'udp', `after ${typeName}`);
    });
  }

  await t.test('AXFR (252) for consul over TCP: REFUSED, connection still usable', async () => {
    const axfr = Buffer.concat([header(0x4a01), question('consul', TYPE.AXFR)]);
    const web = buildQuery('web.service.consul', 'A', { id: 0x4a02 });
    const { replies } = await tcpExchange(srv.port, frame(axfr, web), 2);
    assert.equal(replies.length, 2);
    const h = assertQuestionReply(replies[0]!, axfr, RCODE.REFUSED);
    assert.deepEqual(h.counts, [1, 0, 0, 0]);
    assert.deepEqual(zoneLines(decode(replies[1]!).answers).sort(), WEB_A);
  });

  await t.test('every FORMERR/NOTIMP case gets the same reply over TCP', async () => {
    const cases = [...NOTIMP_CASES, ...FORMERR_CASES];
    const { replies } = await tcpExchange(srv.port, frame(...cases.map((c) => c.packet)), cases.length, 3000);
    assert.equal(replies.length, cases.length, 'one reply per frame');
    cases.forEach((c, i) => assertErrorReply(replies[i]!, c.packet, c.rcode, c.edns));
  });

  await t.test('end: web.service.consul A is still answered over UDP and TCP', async () => {
    await assertServesWeb(srv.port, 'udp');
    await assertServesWeb(srv.port, 'tcp');
  });
});

// ---------------------------------------------------------------------------------------------
// TCP framing and connection handling.

// The error replies' headers as BIND's dig reads them, one case per error path; the first two are
// ISC genreport's `opcode` and `opcodeflg` tests, with the dig command genreport itself names.
const DIG_ERROR_CASES: { name: string; args: string[]; opcode: string; status: string; flags: string[]; questions: number }[] = [
  { name: "genreport opcode: unknown opcode 15, no flags", args: ['+noedns', '+noad', '+norec', '+header-only', '+opcode=15'], opcode: 'RESERVED15', status: 'NOTIMP', flags: ['qr'], questions: 0 },
  {
    name: 'genreport opcodeflg: unknown opcode 15 with TC, RD, RA, CD, AD, AA and Z set: none copied',
    args: ['+noedns', '+header-only', '+opcode=15', '+tcflag', '+rec', '+raflag', '+cd', '+ad', '+aaflag', '+zflag'],
    opcode: 'RESERVED15',
    status: 'NOTIMP',
    flags: ['qr'],
    questions: 0,
  },
  { name: 'opcode STATUS with RD and CD and a question: NOTIMP, neither copied', args: ['+noedns', '+opcode=2', '+rec', '+cd', 'consul', 'SOA'], opcode: 'STATUS', status: 'NOTIMP', flags: ['qr'], questions: 0 },
  { name: 'QUERY without a question: FORMERR, RD and CD copied', args: ['+noedns', '+header-only', '+rec', '+cd', '+ad', '+tcflag'], opcode: 'QUERY', status: 'FORMERR', flags: ['qr', 'rd', 'cd'], questions: 0 },
  { name: 'EDNS version 1: BADVERS, RD and CD copied', args: ['+edns=1', '+noednsneg', '+rec', '+cd', 'web.service.consul', 'A'], opcode: 'QUERY', status: 'BADVERS', flags: ['qr', 'rd', 'cd'], questions: 1 },
  { name: 'class CH: REFUSED, RD and CD copied', args: ['+noedns', '+rec', '+cd', 'web.service.consul', 'CH', 'TXT'], opcode: 'QUERY', status: 'REFUSED', flags: ['qr', 'rd', 'cd'], questions: 1 },
];

void test('dig: each error reply echoes the opcode, and RD and CD for QUERY only', async (t) => {
  const srv = await withServer(t);
  for (const c of DIG_ERROR_CASES) {
    await t.test(c.name, async () => {
      const r = await dig(srv.port, c.args);
      const header = /opcode: (\w+), status: (\w+), id: \d+\n;; flags: [^;]*; QUERY: (\d+), ANSWER: 0, AUTHORITY: 0/.exec(r.raw);
      assert.ok(header, r.raw);
      assert.deepEqual({ opcode: header[1], status: header[2], flags: r.flags, questions: Number(header[3]) }, { opcode: c.opcode, status: c.status, flags: c.flags, questions: c.questions }, r.raw);
    });
  }
});

void test('TCP: framing, pipelining and partial writes', async (t) => {
  const srv = await withServer(t);

  await t.test('six queries pipelined in one write are answered in order (IDs match)', async () => {
    const queries = [
      buildQuery('web.service.consul', 'A', { id: 101 }),
      buildQuery('web.service.consul', 'SRV', { id: 102, udpSize: 4096 }),
      buildQuery('web.service.consul', 'AAAA', { id: 103 }),
      buildQuery('consul', 'SOA', { id: 104 }),
      buildQuery('129.0.168.192.in-addr.arpa', 'PTR', { id: 105 }),
      buildQuery('example.com', 'A', { id: 106 }),
    ];
    const { replies } = await tcpExchange(srv.port, frame(...queries), queries.length);
    assert.deepEqual(
      replies.map((r) => readHeader(r).id),
      [101, 102, 103, 104, 105, 106],
    );
    assert.deepEqual(
      replies.map((r) => readHeader(r).rcode),
      [RCODE.NOERROR, RCODE.NOERROR, RCODE.NOERROR, RCODE.NOERROR, RCODE.NOERROR, RCODE.REFUSED],
    );
    assert.deepEqual(zoneLines(decode(replies[0]!).answers).sort(), WEB_A);
    assert.deepEqual(zoneLines(decode(replies[2]!).answers), ['web.service.consul. 0 IN AAAA 2001:db8::10']);
    assert.ok(zoneLines(decode(replies[4]!).answers).includes('129.0.168.192.in-addr.arpa. 0 IN PTR consul-1.node.dc1.consul.'));
  });

  await t.test('a pipeline with a response, a FORMERR query and an empty frame in the middle: the rest answered in order', async () => {
    const a = buildQuery('web.service.consul', 'A', { id: 201 });
    const response = Buffer.concat([header(202, { flags: QR }), WEB]);
    const formerr = header(203, { qd: 0 });
    const empty = Buffer.alloc(0);
    const b = buildQuery('web.service.consul', 'A', { id: 205 });
    const { replies } = await tcpExchange(srv.port, frame(a, response, formerr, empty, b), 3);
    assert.deepEqual(
      replies.map((r) => readHeader(r).id),
      [201, 203, 205],
    );
    assertErrorReply(replies[1]!, formerr, RCODE.FORMERR);
    assert.deepEqual(zoneLines(decode(replies[2]!).answers).sort(), WEB_A);
  });

  await t.test('a frame written one byte at a time is answered', async (st) => {
    const client = await TcpClient.open(srv.port, st);
    const bytes = frame(buildQuery('web.service.consul', 'A', { id: 301 }));
    for (const byte of bytes) {
      await client.write(Buffer.from([byte]));
      await sleep(1);
    }
    assert.ok(await client.until(() => client.replies.length >= 1, 2000), 'reply after 1-byte writes');
    assert.equal(readHeader(client.replies[0]!).id, 301);
    assert.deepEqual(zoneLines(decode(client.replies[0]!).answers).sort(), WEB_A);
    client.destroy();
  });

  await t.test('two frames split mid-length-prefix and mid-message across writes are both answered', async (st) => {
    const bytes = frame(buildQuery('web.service.consul', 'A', { id: 401 }), buildQuery('consul', 'SOA', { id: 402 }));
    const client = await TcpClient.open(srv.port, st);
    await client.write(bytes.subarray(0, 1));
    await sleep(5);
    await client.write(bytes.subarray(1, 40));
    await sleep(5);
    await client.write(bytes.subarray(40));
    assert.ok(await client.until(() => client.replies.length >= 2, 2000));
    assert.deepEqual(
      client.replies.map((r) => readHeader(r).id),
      [401, 402],
    );
    client.destroy();
  });

  await t.test('a 65,535-byte frame (a query followed by padding) is read and answered', async () => {
    const q = buildQuery('web.service.consul', 'A', { id: 501 });
    const big = Buffer.concat([q, Buffer.alloc(65535 - q.length)]);
    const { replies } = await tcpExchange(srv.port, frame(big), 1, 3000);
    assert.equal(replies.length, 1);
    assert.equal(readHeader(replies[0]!).id, 501);
    assert.equal(readHeader(replies[0]!).qr, true);
  });

  await t.test('end: web.service.consul A is still answered over UDP and TCP', async () => {
    await assertServesWeb(srv.port, 'udp');
    await assertServesWeb(srv.port, 'tcp');
  });
});

// The four connections go idle at the same time (their subtests overlap); 'end' runs after them.
void test('TCP: idle connections are closed by the server (tcp-idle-timeout 1 s)', { concurrency: true }, async (t) => {
  const srv = await withServer(t, { 'tcp-idle-timeout': '1' });

  async function assertClosedByServer(client: TcpClient, started: number): Promise<void> {
    const closed = await client.until(() => client.closed, 3000);
    const elapsed = Date.now() - started;
    assert.ok(closed, `connection still open after ${elapsed} ms`);
    assert.ok(client.closedByPeer || client.errors.length > 0, 'the server, not the client, closed it');
    assert.ok(elapsed >= 800, `closed after ${elapsed} ms, before the 1 s idle timeout`);
  }

  await Promise.all([
    t.test('a connection that never sends anything is closed within ~1 s', async (st) => {
      const started = Date.now();
      const client = await TcpClient.open(srv.port, st);
      await assertClosedByServer(client, started);
      assert.equal(client.replies.length, 0);
    }),

    t.test('a connection that sends half a frame and stops is closed, with no reply', async (st) => {
      const client = await TcpClient.open(srv.port, st);
      const bytes = frame(buildQuery('web.service.consul', 'A', { id: 601 }));
      await client.write(bytes.subarray(0, bytes.length >> 1));
      const started = Date.now();
      await assertClosedByServer(client, started);
      assert.equal(client.replies.length, 0);
    }),

    t.test('a connection that sent only a length prefix of 65535 is closed, with no reply', async (st) => {
      const client = await TcpClient.open(srv.port, st);
      await client.write(Buffer.from([0xff, 0xff, 0x00]));
      const started = Date.now();
      await assertClosedByServer(client, started);
      assert.equal(client.replies.length, 0);
    }),

    t.test('a connection that got its answer and then goes quiet is closed', async (st) => {
      const client = await TcpClient.open(srv.port, st);
      await client.write(frame(buildQuery('web.service.consul', 'A', { id: 602 })));
      assert.ok(await client.until(() => client.replies.length === 1, 1000), 'answered first');
      const started = Date.now();
      await assertClosedByServer(client, started);
    }),
  ]);

  await t.test('end: web.service.consul A is still answered over UDP and TCP', async () => {
    await assertServesWeb(srv.port, 'udp');
    await assertServesWeb(srv.port, 'tcp');
  });
});

// ---------------------------------------------------------------------------------------------
// Fuzzing.

const SEED = Number(process.env.SVCDNS_FUZZ_SEED ?? 0x5eed_d0c5) >>> 0;



void test(`fuzz: mutated and random packets over UDP and TCP never crash the server or get malformed replies (seed 0x${SEED.toString(16)})`, async (t) => {
  const srv = await withServer(t);
  const rng = new Rng(SEED);
  const tag = `[SVCDNS_FUZZ_SEED=0x${SEED.toString(16)}]`;

  await t.test('6,000 UDP packets (5,000 mutated queries, 1,000 random 0..600 bytes) in batches of 200', async (st) => {
    const packets = fuzzPackets(rng, 5000, 1000, 0);
    const byId = new Map(packets.filter((p) => p.id >= 0).map((p) => [p.id, p] as const));
    const replies = new Map<number, Buffer[]>();
    const problems: string[] = [];
    let strays = 0;
    let waiting = 0;
    let wake: (() => void) | null = null;

    const socket = createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
    st.after(() => {
      try {
        socket.close();
      } catch {
        // already closed
      }
    });
    socket.on('message', (msg) => {
      if (msg.length < 2) {
        strays++;
        problems.push(`reply of ${msg.length} bytes`);
        return;
      }
      const id = msg.readUInt16BE(0);
      const list = replies.get(id) ?? [];
      list.push(msg);
      replies.set(id, list);
      const p = byId.get(id);
      if (p?.mustReply && list.length === 1) waiting--;
      if (waiting <= 0) wake?.();
    });
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));

    const BATCH = 200;
    for (let start = 0; start < packets.length; start += BATCH) {
      const batch = packets.slice(start, start + BATCH);
      waiting += batch.filter((p) => p.mustReply).length;
      await Promise.all(
        batch.map(
          (p) => new Promise<void>((resolve, reject) => socket.send(p.bytes, srv.port, '127.0.0.1', (err) => (err ? reject(err) : resolve()))),
        ),
      );
      if (waiting > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 1000);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = null;
      }
    }
    await sleep(SILENCE_MS); // late replies, including any to packets that must get none

    // Datagrams can be lost under load even on loopback: ask once more for any reply that is missing.
    const missing = packets.filter((p) => p.mustReply && !replies.has(p.id));
    assert.ok(missing.length <= 100, `${tag} ${missing.length} of ${packets.length} UDP packets went unanswered; first: ${missing.slice(0, 3).map((p) => hex(p.bytes)).join(', ')}`);
    for (const p of missing) {
      const reply = await udpExchange(srv.port, p.bytes, 1000);
      if (reply) replies.set(p.id, [reply]);
      else problems.push(`no reply (even on retry) to udp packet ${hex(p.bytes)}`);
    }

    for (const [id, list] of replies) {
      const p = byId.get(id);
      if (!p) {
        problems.push(`reply with unknown ID ${id}: ${hex(list[0]!)}`);
        continue;
      }
      if (list.length > 1) problems.push(`${list.length} replies to udp packet ${hex(p.bytes)}`);
      const problem = checkReply(p, list[0]!, 'udp');
      if (problem) problems.push(problem);
    }
    const answered = packets.filter((p) => replies.has(p.id)).length;
    const rcodes = histogram([...replies.values()].map((list) => list[0]!));
    st.diagnostic(
      `${tag} udp: ${packets.length} sent, ${packets.filter((p) => p.mustReply).length} must be answered, ${answered} answered (rcodes ${rcodes}), ${missing.length} retried, ${strays} stray`,
    );
    assert.deepEqual(problems.slice(0, 10), [], `${tag} ${problems.length} problem(s) with UDP replies`);
    await assertServesWeb(srv.port, 'udp', `${tag} after UDP fuzz`);
  });

  await t.test('1,000 TCP frames (750 mutated, 250 random) over 4 connections, split at random points', async (st) => {
    const CONNECTIONS = 4;
    const packets = fuzzPackets(rng, 750, 250, 10_000);
    const problems: string[] = [];
    const all: Buffer[] = [];
    const per = packets.length / CONNECTIONS;
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async (_, c) => {
        const mine = packets.slice(c * per, (c + 1) * per);
        const expected = mine.filter((p) => p.mustReply);
        const client = await TcpClient.open(srv.port, st);
        const stream = frame(...mine.map((p) => p.bytes));
        for (let off = 0; off < stream.length; ) {
          const n = 1 + rng.int(1500);
          await client.write(stream.subarray(off, off + n));
          off += n;
        }
        const complete = await client.until(() => client.replies.length >= expected.length || client.closed, 5000);
        await sleep(50); // anything extra that should not be there
        client.destroy();
        all.push(...client.replies);
        if (!complete || client.replies.length !== expected.length) {
          problems.push(`tcp connection ${c}: ${client.replies.length} replies for ${expected.length} answerable frames (closed: ${client.closed})`);
        }
        client.replies.forEach((reply, i) => {
          const p = expected[i];
          if (!p) return;
          if (reply.length >= 2 && reply.readUInt16BE(0) !== p.id) {
            problems.push(`tcp connection ${c}: reply ${i} has ID ${reply.readUInt16BE(0)}, expected ${p.id} (out of order or extra)`);
            return;
          }
          const problem = checkReply(p, reply, 'tcp');
          if (problem) problems.push(problem);
        });
      }),
    );
    st.diagnostic(`${tag} tcp: ${packets.length} frames, ${packets.filter((p) => p.mustReply).length} must be answered, ${all.length} answered (rcodes ${histogram(all)})`);
    assert.deepEqual(problems.slice(0, 10), [], `${tag} ${problems.length} problem(s) with TCP replies`);
  });

  await t.test('a TCP connection that sends a 65535 length prefix and 4 KiB of garbage waits silently; others are served meanwhile', async (st) => {
    const client = await TcpClient.open(srv.port, st);
    await client.write(Buffer.concat([Buffer.from([0xff, 0xff]), rng.bytes(4096)]));
    await sleep(SILENCE_MS);
    assert.equal(client.replies.length, 0, `${tag} no reply to an incomplete frame`);
    assert.equal(client.closed, false, 'the connection stays open until the frame completes or the idle timeout');
    await assertServesWeb(srv.port, 'tcp', 'while a 64 KiB frame is pending');
    await assertServesWeb(srv.port, 'udp', 'while a 64 KiB frame is pending');
    client.destroy();
  });

  await t.test('a TCP connection that sends half a frame and stops gets no reply; others are served meanwhile', async (st) => {
    const client = await TcpClient.open(srv.port, st);
    const bytes = frame(buildQuery('web.service.consul', 'SRV', { id: 0x6666, udpSize: 4096 }));
    await client.write(bytes.subarray(0, bytes.length >> 1));
    await sleep(SILENCE_MS);
    assert.equal(client.replies.length, 0);
    assert.equal(client.closed, false);
    await assertServesWeb(srv.port, 'tcp', 'while half a frame is pending');
    client.destroy();
  });

  await t.test('end: web.service.consul A is still answered over UDP and TCP', async () => {
    await assertServesWeb(srv.port, 'udp', `${tag} after fuzzing`);
    await assertServesWeb(srv.port, 'tcp', `${tag} after fuzzing`);
  });
});
