/**
 * Hostile upstreams, part 2, end to end (part 1, the reply path at unit level, is
 * test/unit/forward-hostile.test.ts): a raw UDP+TCP "evil upstream" (node:dgram/node:net, below)
 * that answers with garbage, another question, pointer loops, no question, a TCP length prefix and
 * silence, TC then garbage over TCP, records for other names, forged floods. svcdns (in-process,
 * --upstream-timeout 300ms) is asked over UDP, TCP and with dig; each case states the exact outcome,
 * with and without a good second upstream, and afterwards web.service.consul must still answer.
 * Whether svcdns waited out the timeout or failed over at once is told by the time it took, so these
 * run in the serial system tier.
 */

import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer, type Socket as TcpSocket } from 'node:net';
import { test, type TestContext } from 'node:test';
import * as dnsPacket from 'dns-packet';
import { buildQuery, decode, frame, tcpExchange, udpExchange, zoneLines } from '../support/client.js';
import { dig } from '../support/dig.js';
import { startServer, type TestServer } from '../support/server.js';
import { QR, RA, RCODE, RD, T, TC, header, hex, pointer, rr, u16 } from '../support/wire.js';

// ---------------------------------------------------------------------------------------------
// End to end: an evil upstream, raw UDP and TCP on one loopback port.

type Behaviour =
  /** Answers like a resolver: www.example.test A has two addresses; other names NXDOMAIN, other types NODATA, both with the SOA. */
  | 'good'
  /** The right ID, QR, then 0xff bytes: the question cannot match. */
  | 'garbage'
  /** The right ID and question, then records that are garbage. */
  | 'garbage-after-question'
  /** A well-formed reply with the right ID, for www.attacker.test, with FORGED. */
  | 'other-question'
  /** An answer whose owner is a compression pointer to itself. */
  | 'self-pointer'
  /** Two answers whose owners loop through the rdata of the first (each pointer points backwards). */
  | 'pointer-loop'
  /** Header only, no question, rcode as named. */
  | 'no-question-noerror'
  | 'no-question-refused'
  | 'no-question-formerr'
  /** UDP: an empty reply with TC. TCP: a 65535 length prefix, 100 bytes, then silence. */
  | 'huge-tcp-prefix'
  /** UDP: an empty reply with TC. TCP: a framed reply with the right ID and garbage after it. */
  | 'tc-then-tcp-garbage'
  /** Good answers, plus records for other names (victim.example.test, an NS for the zone, glue): the cache must not use them. */
  | 'poison'
  /** 300 forged replies with other IDs and one with the right ID for another question, then the good answer. */
  | 'flood';

const FORGED = '203.0.113.66';
const GOOD_A = ['www.example.test. 100 IN A 192.0.2.10', 'www.example.test. 100 IN A 192.0.2.11'];
const SOA_LINE = 'test. 30 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 30';
const WEB_A = ['web.service.consul. 0 IN A 192.168.0.129', 'web.service.consul. 0 IN A 192.168.0.130', 'web.service.consul. 0 IN A 192.168.0.131'];
const TIMEOUT_MS = 300;
/** "At once": a failover that does not wait for the timeout. */
const FAST_MS = 250;
/** What waiting out one timeout takes at least. */
const WAITED_MS = 280;
/** Any answer at all: two tries of 300 ms and slack for a busy machine. */
const BOUNDED_MS = 2000;

interface Seen {
  transport: 'udp' | 'tcp';
  id: number;
  name: string;
  type: number;
  edns: boolean;
}

interface EvilUpstream {
  address: string;
  behaviour: Behaviour;
  seen: Seen[];
  close(): Promise<void>;
}

interface Incoming {
  bytes: Buffer;
  id: number;
  /** The question section's bytes. */
  question: Buffer;
  name: string;
  type: number;
  edns: boolean;
}

function parseIncoming(bytes: Buffer): Incoming | null {
  if (bytes.length < 17) return null;
  let off = 12;
  const labels: string[] = [];
  while (off < bytes.length && bytes[off] !== 0) {
    if (bytes[off]! > 63) return null;
    labels.push(bytes.toString('latin1', off + 1, off + 1 + bytes[off]!));
    off += 1 + bytes[off]!;
  }
  if (off + 5 > bytes.length) return null;
  return {
    bytes,
    id: bytes.readUInt16BE(0),
    question: bytes.subarray(12, off + 5),
    name: labels.join('.').toLowerCase(),
    type: bytes.readUInt16BE(off + 1),
    edns: bytes.readUInt16BE(10) > 0,
  };
}

function soaAnswer(): dnsPacket.Answer {
  return { name: 'test', type: 'SOA', ttl: 300, data: { mname: 'ns.test', rname: 'hostmaster.test', serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: 30 } };
}

function goodReply(q: Incoming, extra: Partial<dnsPacket.Packet> = {}): Buffer {
  const asked = dnsPacket.decode(q.bytes);
  const isWww = q.name === 'www.example.test';
  const answers: dnsPacket.Answer[] =
    isWww && q.type === T.A
      ? [
          { name: 'www.example.test', type: 'A', ttl: 100, data: '192.0.2.10' },
          { name: 'www.example.test', type: 'A', ttl: 100, data: '192.0.2.11' },
        ]
      : [];
  return dnsPacket.encode({
    type: 'response',
    id: q.id,
    flags: RD | RA | (isWww ? 0 : RCODE.NXDOMAIN),
    questions: asked.questions,
    answers,
    authorities: answers.length ? [] : [soaAnswer()],
    additionals: q.edns ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] : [],
    ...extra,
  });
}

function truncatedEmpty(q: Incoming): Buffer {
  return Buffer.concat([header(q.id, QR | TC | RD | RA, 1), q.question]);
}

/** What the evil upstream sends over UDP: datagrams, each after its delay. */
function udpReplies(behaviour: Behaviour, q: Incoming): { bytes: Buffer; delayMs: number }[] {
  const now = (bytes: Buffer) => [{ bytes, delayMs: 0 }];
  const qEnd = 12 + q.question.length;
  switch (behaviour) {
    case 'good':
      return now(goodReply(q));
    case 'garbage':
      return now(Buffer.concat([header(q.id, QR | RD | RA, 1, 0xffff, 0xffff, 0xffff), Buffer.alloc(300, 0xff)]));
    case 'garbage-after-question':
      return now(Buffer.concat([header(q.id, QR | RD | RA, 1, 3), q.question, Buffer.alloc(100, 0xff)]));
    case 'other-question':
      return now(
        dnsPacket.encode({
          type: 'response',
          id: q.id,
          flags: RD | RA,
          questions: [{ name: 'www.attacker.test', type: 'A', class: 'IN' }],
          answers: [{ name: 'www.attacker.test', type: 'A', ttl: 3600, data: FORGED }],
        }),
      );
    case 'self-pointer':
      return now(Buffer.concat([header(q.id, QR | RD | RA, 1, 1), q.question, rr(pointer(qEnd), T.A, 3600, Buffer.from(FORGED.split('.').map(Number)))]));
    case 'pointer-loop': {
      const rdataAt = qEnd + 12;
      const second = rdataAt + 4;
      return now(
        Buffer.concat([
          header(q.id, QR | RD | RA, 1, 2),
          q.question,
          rr(pointer(12), T.A, 3600, Buffer.concat([pointer(second), Buffer.from([0, 1])])),
          rr(pointer(rdataAt), T.A, 3600, Buffer.from(FORGED.split('.').map(Number))),
        ]),
      );
    }
    case 'no-question-noerror':
      return now(header(q.id, QR | RD | RA | RCODE.NOERROR, 0));
    case 'no-question-refused':
      return now(header(q.id, QR | RD | RA | RCODE.REFUSED, 0));
    case 'no-question-formerr':
      return now(header(q.id, QR | RD | RA | RCODE.FORMERR, 0));
    case 'huge-tcp-prefix':
    case 'tc-then-tcp-garbage':
      return now(truncatedEmpty(q));
    case 'poison':
      if (q.name !== 'www.example.test') {
        return now(Buffer.concat([header(q.id, QR | RD | RA | RCODE.NXDOMAIN, 1), q.question]));
      }
      return now(
        goodReply(q, {
          answers: [
            { name: 'www.example.test', type: 'A', ttl: 100, data: '192.0.2.10' },
            { name: 'www.example.test', type: 'A', ttl: 100, data: '192.0.2.11' },
            { name: 'victim.example.test', type: 'A', ttl: 86400, data: FORGED },
          ],
          authorities: [{ name: 'example.test', type: 'NS', ttl: 86400, data: 'ns.evil.test' }],
          additionals: [
            { name: 'ns.evil.test', type: 'A', ttl: 86400, data: FORGED },
            { name: 'victim.example.test', type: 'A', ttl: 86400, data: FORGED },
          ],
        }),
      );
    case 'flood': {
      const forged = (id: number, name: string) =>
        dnsPacket.encode({
          type: 'response',
          id,
          flags: RD | RA,
          questions: [{ name, type: 'A', class: 'IN' }],
          answers: [{ name, type: 'A', ttl: 3600, data: FORGED }],
        });
      const out = Array.from({ length: 300 }, (_, i) => ({ bytes: forged((q.id + 1 + i) & 0xffff, q.name), delayMs: 0 }));
      out.push({ bytes: forged(q.id, 'www.attacker.test'), delayMs: 0 });
      out.push({ bytes: goodReply(q), delayMs: 20 });
      return out;
    }
  }
}

/** What the evil upstream writes to a TCP connection for one framed query: bytes as they go on the wire. */
function tcpBytes(behaviour: Behaviour, q: Incoming): Buffer | null {
  switch (behaviour) {
    case 'huge-tcp-prefix':
      return Buffer.concat([Buffer.from([0xff, 0xff]), goodReply(q).subarray(0, 100)]);
    case 'tc-then-tcp-garbage':
      return frame(Buffer.concat([u16(q.id), Buffer.alloc(60, 0xff)]));
    case 'flood':
    case 'poison':
    case 'good':
      return frame(goodReply(q));
    default: {
      // The UDP behaviour over TCP: the last datagram, framed.
      const replies = udpReplies(behaviour, q);
      return frame(replies.at(-1)!.bytes);
    }
  }
}

async function startEvilUpstream(t: TestContext, behaviour: Behaviour): Promise<EvilUpstream> {
  for (let attempt = 0; ; attempt++) {
    const udp = createSocket('udp4');
    udp.bind(0, '127.0.0.1');
    await once(udp, 'listening');
    const port = udp.address().port;
    const tcp = createServer();
    try {
      tcp.listen(port, '127.0.0.1');
      await once(tcp, 'listening');
    } catch (err) {
      udp.close();
      if (attempt < 10) continue;
      throw err;
    }
    const connections = new Set<TcpSocket>();
    const timers = new Set<NodeJS.Timeout>();
    const upstream: EvilUpstream = {
      address: `127.0.0.1:${port}`,
      behaviour,
      seen: [],
      async close() {
        for (const timer of timers) clearTimeout(timer);
        for (const c of connections) c.destroy();
        udp.close();
        await new Promise<void>((resolve) => tcp.close(() => resolve()));
      },
    };
    const note = (q: Incoming, transport: 'udp' | 'tcp') => upstream.seen.push({ transport, id: q.id, name: q.name, type: q.type, edns: q.edns });
    udp.on('message', (bytes, from) => {
      const q = parseIncoming(bytes);
      if (!q) return;
      note(q, 'udp');
      for (const { bytes: out, delayMs } of udpReplies(upstream.behaviour, q)) {
        if (delayMs === 0) udp.send(out, from.port, from.address);
        else {
          const timer = setTimeout(() => {
            timers.delete(timer);
            udp.send(out, from.port, from.address);
          }, delayMs);
          timers.add(timer);
        }
      }
    });
    tcp.on('connection', (socket) => {
      connections.add(socket);
      socket.on('close', () => connections.delete(socket));
      socket.on('error', () => socket.destroy());
      let pending = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
          const q = parseIncoming(pending.subarray(2, 2 + pending.readUInt16BE(0)));
          pending = pending.subarray(2 + pending.readUInt16BE(0));
          if (!q) continue;
          note(q, 'tcp');
          const out = tcpBytes(upstream.behaviour, q);
          if (out && socket.writable) socket.write(out);
        }
      });
    });
    t.after(() => upstream.close());
    return upstream;
  }
}

interface Env {
  server: TestServer;
  evil: EvilUpstream;
  good: EvilUpstream | null;
  logs: Record<string, unknown>[];
}

/** svcdns forwarding to the evil upstream first and, with `withGood`, a good one after it. */
async function evilSetup(t: TestContext, behaviour: Behaviour, withGood: boolean): Promise<Env> {
  const evil = await startEvilUpstream(t, behaviour);
  const good = withGood ? await startEvilUpstream(t, 'good') : null;
  const logs: Record<string, unknown>[] = [];
  const server = await startServer({ logs, flags: { upstream: [evil.address, ...(good ? [good.address] : [])], 'upstream-timeout': `${TIMEOUT_MS}ms` } });
  t.after(() => server.close());
  return { server, evil, good, logs };
}

let nextId = 0x3000;

interface Asked {
  query: Buffer;
  reply: Buffer | null;
  ms: number;
}

async function askUdp(env: Env, name = 'www.example.test', type = 'A'): Promise<Asked> {
  const query = buildQuery(name, type, { id: nextId++ & 0xffff, udpSize: 1232 });
  const started = performance.now();
  const reply = await udpExchange(env.server.port, query, 3000);
  return { query, reply, ms: performance.now() - started };
}

async function askTcp(env: Env, name = 'www.example.test', type = 'A'): Promise<Asked> {
  const query = buildQuery(name, type, { id: nextId++ & 0xffff });
  const started = performance.now();
  const { replies } = await tcpExchange(env.server.port, frame(query), 1, 3000);
  return { query, reply: replies[0] ?? null, ms: performance.now() - started };
}

function parse(reply: Buffer, ctx: string): dnsPacket.DecodedPacket {
  try {
    return decode(reply);
  } catch (err) {
    assert.fail(`${ctx}: the reply does not parse (${(err as Error).message}): ${hex(reply, 400)}`);
  }
}

/** A reply to `asked` with its ID and question, QR and RA set, and `rcode`. */
function assertReply(asked: Asked, rcode: number, ctx: string): dnsPacket.DecodedPacket {
  const { query, reply } = asked;
  assert.ok(reply, `${ctx}: no reply within 3 s`);
  assert.ok(asked.ms < BOUNDED_MS, `${ctx}: took ${asked.ms.toFixed(0)} ms`);
  assert.equal(reply.readUInt16BE(0), query.readUInt16BE(0), `${ctx}: ID`);
  assert.equal(reply[3]! & 0xf, rcode, `${ctx}: rcode (reply ${hex(reply, 400)})`);
  const p = parse(reply, ctx);
  assert.equal(p.flag_qr, true, `${ctx}: QR`);
  assert.equal(p.flag_ra, true, `${ctx}: RA`);
  assert.equal(p.questions?.length, 1, `${ctx}: one question`);
  const qEnd = 12 + (decode(query).questions![0]!.name.length + 2) + 4;
  assert.deepEqual(reply.subarray(12, qEnd), query.subarray(12, qEnd), `${ctx}: the question, byte for byte`);
  return p;
}

function assertGoodAnswer(asked: Asked, ctx: string): void {
  const p = assertReply(asked, RCODE.NOERROR, ctx);
  assert.equal(p.flag_tc, false, `${ctx}: TC`);
  assert.deepEqual(zoneLines(p.answers), GOOD_A, `${ctx}: the good upstream's answer`);
}

function assertServfail(asked: Asked, ctx: string): void {
  const p = assertReply(asked, RCODE.SERVFAIL, ctx);
  assert.deepEqual([p.answers?.length ?? 0, p.authorities?.length ?? 0], [0, 0], `${ctx}: no records`);
}

function assertTruncatedEmpty(asked: Asked, ctx: string): void {
  const p = assertReply(asked, RCODE.NOERROR, ctx);
  assert.equal(p.flag_tc, true, `${ctx}: TC, so the client asks again over TCP`);
  assert.deepEqual(zoneLines(p.answers), [], `${ctx}: no records`);
}

function assertWaited(asked: Asked, ctx: string): void {
  assert.ok(asked.ms >= WAITED_MS, `${ctx}: answered after ${asked.ms.toFixed(0)} ms; a reply that may be forged is ignored and the real one waited for, until the ${TIMEOUT_MS} ms timeout`);
}

function assertFast(asked: Asked, ctx: string): void {
  assert.ok(asked.ms < FAST_MS, `${ctx}: answered after ${asked.ms.toFixed(0)} ms; a reply that answers our question but is broken fails over at once`);
}

/** After any of it: svcdns still answers its own domain over UDP and TCP, and logged no error. */
async function assertStillServing(env: Env, ctx: string): Promise<void> {
  for (const via of ['udp', 'tcp'] as const) {
    const asked = via === 'udp' ? await askUdp(env, 'web.service.consul', 'A') : await askTcp(env, 'web.service.consul', 'A');
    const p = assertReply(asked, RCODE.NOERROR, `${ctx}: web.service.consul A over ${via} afterwards`);
    assert.equal(p.flag_aa, true, `${ctx}: web.service.consul over ${via}: AA`);
    assert.deepEqual(zoneLines(p.answers).sort(), WEB_A, `${ctx}: web.service.consul over ${via}: answers`);
  }
  const errors = env.logs.filter((l) => typeof l.level === 'number' && l.level >= 50);
  assert.deepEqual(errors, [], `${ctx}: errors logged`);
}

function seenBy(upstream: EvilUpstream | null): string[] {
  return (upstream?.seen ?? []).map((s) => `${s.name} ${s.type} ${s.transport}${s.edns ? ' edns' : ''}`);
}

const WWW_UDP = 'www.example.test 1 udp edns';
const WWW_TCP = 'www.example.test 1 tcp edns';

/**
 * One behaviour, both setups. `ignored`: the reply is not taken as an answer to our question (it may
 * be forged), so svcdns waits out the timeout; otherwise it fails over at once.
 */
async function failoverCase(t: TestContext, behaviour: Behaviour, ignored: boolean, evilSeen: string[] = [WWW_UDP]): Promise<void> {
  await t.test('with a good second upstream: its answer', async (st) => {
    const env = await evilSetup(st, behaviour, true);
    const asked = await askUdp(env);
    st.diagnostic(`${behaviour}: replied in ${asked.ms.toFixed(0)} ms`);
    assertGoodAnswer(asked, behaviour);
    if (ignored) assertWaited(asked, behaviour);
    else assertFast(asked, behaviour);
    assert.deepEqual(seenBy(env.evil), evilSeen, `${behaviour}: what the evil upstream was asked`);
    assert.deepEqual(seenBy(env.good), [WWW_UDP], `${behaviour}: what the good upstream was asked`);
    await assertStillServing(env, behaviour);
  });
  await t.test('alone: SERVFAIL', async (st) => {
    const env = await evilSetup(st, behaviour, false);
    const asked = await askUdp(env);
    st.diagnostic(`${behaviour} alone: replied in ${asked.ms.toFixed(0)} ms`);
    assertServfail(asked, `${behaviour} alone`);
    if (ignored) assertWaited(asked, `${behaviour} alone`);
    else assertFast(asked, `${behaviour} alone`);
    const overTcp = await askTcp(env);
    assertServfail(overTcp, `${behaviour} alone, over TCP`);
    await assertStillServing(env, `${behaviour} alone`);
  });
}

test('(a) garbage with the right ID: ignored as not an answer to our question; the good upstream answers after the timeout', (t) => failoverCase(t, 'garbage', true));

test('(a) the right ID and question, then garbage records: malformed, failed over at once', (t) => failoverCase(t, 'garbage-after-question', false));

test('(b) the right ID but another question: ignored (it may be forged); the good upstream answers after the timeout', (t) => failoverCase(t, 'other-question', true));

test('(c) a compression pointer to itself: malformed, failed over at once', (t) => failoverCase(t, 'self-pointer', false));

test('(c) a compression loop through earlier rdata, every pointer backwards on its own: malformed, failed over at once', (t) => failoverCase(t, 'pointer-loop', false));

test('(d) no question and NOERROR: ignored (only a failure may leave the question out); the good upstream answers after the timeout', (t) =>
  failoverCase(t, 'no-question-noerror', true));

test('(d) no question and REFUSED: a failure, failed over at once', (t) => failoverCase(t, 'no-question-refused', false));

test('(d) no question and FORMERR: asked again without EDNS, then failed over', (t) =>
  failoverCase(t, 'no-question-formerr', false, [WWW_UDP, 'www.example.test 1 udp']));

/**
 * TC over UDP, then a TCP exchange that fails. That try fails (forwarder.ts `ask`), so the next
 * upstream is asked and its whole answer wins; only when no upstream gives a whole answer does the
 * client get the truncated one (empty here, with TC), so that a client that then asks over TCP (dig,
 * glibc, c-ares) tries again. A truncated reply is never cached.
 */
async function truncatedCase(t: TestContext, behaviour: Behaviour, tcpWaits: boolean): Promise<void> {
  await t.test('with a good second upstream: the good answer, over UDP and TCP alike', async (st) => {
    const env = await evilSetup(st, behaviour, true);
    const asked = await askUdp(env);
    st.diagnostic(`${behaviour}: replied in ${asked.ms.toFixed(0)} ms`);
    assertGoodAnswer(asked, `${behaviour}, over UDP`);
    if (tcpWaits) assertWaited(asked, `${behaviour}: the TCP exchange waits out the timeout`);
    else assertFast(asked, `${behaviour}: the TCP garbage ends the try at once`);
    assert.deepEqual(seenBy(env.evil), [WWW_UDP, WWW_TCP], `${behaviour}: UDP, then TCP`);
    assert.deepEqual(seenBy(env.good), [WWW_UDP], `${behaviour}: then the good upstream`);
    const again = await askUdp(env);
    assertGoodAnswer(again, `${behaviour}, again`);
    assertFast(again, `${behaviour}, again: from the cache`);
    assert.equal(env.evil.seen.length, 2, `${behaviour}: the good answer was cached`);
    const overTcp = await askTcp(env);
    assertGoodAnswer(overTcp, `${behaviour}, over TCP`);
    assertFast(overTcp, `${behaviour}, over TCP: from the cache`);
    await assertStillServing(env, behaviour);
  });
  await t.test('alone: UDP gets the empty TC reply; TCP (and dig) SERVFAIL', async (st) => {
    const env = await evilSetup(st, behaviour, false);
    assertTruncatedEmpty(await askUdp(env), `${behaviour} alone`);
    assertServfail(await askTcp(env), `${behaviour} alone, over TCP`);
    const d = await dig(env.server.port, ['www.example.test', 'A']);
    assert.deepEqual([d.transport, d.status, d.answer.length], ['TCP', 'SERVFAIL', 0], `${behaviour} alone: dig`);
    await assertStillServing(env, `${behaviour} alone`);
  });
}

test('(e) TC over UDP, then a 65535-byte TCP length prefix and silence: the TCP wait ends at the timeout', (t) => truncatedCase(t, 'huge-tcp-prefix', true));

test('(f) TC over UDP, then garbage over TCP: the TCP exchange fails at once', (t) => truncatedCase(t, 'tc-then-tcp-garbage', false));

test('records for other names in an answer are passed on as sent, but never answer another question', async (t) => {
  const env = await evilSetup(t, 'poison', false);
  const first = assertReply(await askUdp(env), RCODE.NOERROR, 'poison');
  // TTLs capped by the default --cache-max-ttl of 3600.
  assert.deepEqual(zoneLines(first.answers), [...GOOD_A, `victim.example.test. 3600 IN A ${FORGED}`], 'the reply is the upstream\'s, extra record and all');
  for (const name of ['victim.example.test', 'ns.evil.test']) {
    const p = assertReply(await askUdp(env, name, 'A'), RCODE.NXDOMAIN, name);
    assert.equal(JSON.stringify(p).includes(FORGED), false, `${name}: not answered from the other question's extra records`);
  }
  assert.deepEqual(seenBy(env.evil), [WWW_UDP, 'victim.example.test 1 udp edns', 'ns.evil.test 1 udp edns'], 'each name was asked upstream');
  await assertStillServing(env, 'poison');
});

test('a flood of forged replies (300 other IDs, the right ID for another question) before the real one: only the real one is used', async (t) => {
  const env = await evilSetup(t, 'flood', false);
  const asked = await askUdp(env);
  assertGoodAnswer(asked, 'flood');
  assert.ok(asked.ms < FAST_MS, `flood: answered after ${asked.ms.toFixed(0)} ms`);
  await assertStillServing(env, 'flood');
});

test('an HTTPS (type 65) question forwarded to a good upstream gets its NODATA answer', async (t) => {
  const env = await evilSetup(t, 'good', false);
  const d = await dig(env.server.port, ['www.example.test', 'HTTPS']);
  assert.equal(d.status, 'NOERROR', `dig www.example.test HTTPS: ${d.raw}`);
  assert.deepEqual(d.authority, [SOA_LINE], 'the SOA, its TTL lowered to the negative TTL');
  await assertStillServing(env, 'HTTPS');
});
