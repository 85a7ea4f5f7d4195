/**
 * The pipeline's contract (src/pipeline/stage.ts, chain.ts) with stages written for the test, and
 * the diagnostics seam as a subscriber sees it from a real server: one event per answered query,
 * naming the stage that answered and whether the reply cache did.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { Diagnostics, type QueryEvent, type StateEvent } from '../../src/diagnostics/channels.js';
import { StateLog } from '../../src/diagnostics/state-log.js';
import { createPipeline } from '../../src/pipeline/chain.js';
import { InFlight } from '../../src/pipeline/in-flight.js';
import { NEXT, type Answer, type Request, type Stage } from '../../src/pipeline/stage.js';
import { CATALOG } from '../support/catalog.js';
import { buildQuery, udpExchange } from '../support/client.js';
import { startServer } from '../support/server.js';

const client = { address: '127.0.0.1', port: 5353 };
const silent = pino({ level: 'silent' });

function pipeline(stages: Stage[], diagnostics = new Diagnostics(), inFlight?: InFlight) {
  return createPipeline({ stages, context: { store: { current: () => null }, maxUdpSize: 4096, recursive: () => false }, diagnostics, log: silent, inFlight });
}

const reply = (tag: number): Answer => ({ bytes: Buffer.from([tag]) });

test('stages run in order until one answers; the earlier ones are told of the answer, the later ones never run', async () => {
  const seen: string[] = [];
  const passing = (name: string): Stage => ({
    name,
    handle: () => (seen.push(name), NEXT),
    answered: (_request: Request, answer: Answer) => void seen.push(`${name} told ${answer.by}`),
  });
  const handler = pipeline([
    passing('a'),
    passing('b'),
    { name: 'c', handle: () => (seen.push('c'), reply(7)) },
    { name: 'd', handle: () => (seen.push('d'), reply(8)) },
  ]);
  assert.deepEqual(handler(buildQuery('x.test', 'A'), 'udp', client), Buffer.from([7]));
  assert.deepEqual(seen, ['a', 'b', 'c', 'b told c', 'a told c']);

  // A pending reply: the earlier stages are told when it settles.
  seen.length = 0;
  const later = pipeline([passing('a'), { name: 'slow', handle: () => Promise.resolve(reply(9)) }]);
  const out = later(buildQuery('x.test', 'A'), 'udp', client);
  assert.ok(out instanceof Promise);
  assert.deepEqual(seen, ['a']);
  assert.deepEqual(await out, Buffer.from([9]));
  assert.deepEqual(seen, ['a', 'a told slow']);
});

test('answers in flight: counted while pending; after giveUp they and later ones are SERVFAIL (told, published once), late answers dropped', async () => {
  const inFlight = new InFlight();
  const diagnostics = new Diagnostics();
  const events: QueryEvent[] = [];
  const unsubscribe = diagnostics.query.subscribe((e) => events.push(e));
  const told: (number | undefined)[] = [];
  let release!: (answer: Answer) => void;
  const held = new Promise<Answer>((resolve) => (release = resolve));
  const handler = pipeline(
    [
      { name: 'watch', handle: () => NEXT, answered: (_request: Request, answer: Answer) => void told.push(answer.rcode) },
      { name: 'held', handle: (request) => (request.query.name === 'quick.test' ? Promise.resolve(reply(3)) : held) },
    ],
    diagnostics,
    inFlight,
  );
  const quick = handler(buildQuery('quick.test', 'A'), 'udp', client);
  const slow = handler(buildQuery('slow.test', 'TXT'), 'tcp', client);
  assert.equal(inFlight.size, 2);
  assert.deepEqual(await quick, Buffer.from([3]), 'an answer in time is the real one');
  assert.equal(inFlight.size, 1);

  inFlight.giveUp();
  const servfail = (await slow) as Buffer;
  assert.equal(servfail[3]! & 0xf, 2, 'SERVFAIL');
  assert.equal(servfail.readUInt16BE(4), 1, 'with the question');
  assert.equal(inFlight.size, 0);
  const after = (await handler(buildQuery('late.test', 'A'), 'udp', client)) as Buffer;
  assert.equal(after[3]! & 0xf, 2, 'work started after giving up is SERVFAIL at once');

  release(reply(4));
  await held;
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(told, [undefined, 2, 2], 'the late answer is neither told nor published');
  assert.equal(events.length, 3);
  unsubscribe();
});

test('every stage passing: REFUSED; a stage that throws (or rejects): SERVFAIL with the query ID, logged; no header or a response: no reply', async () => {
  const query = buildQuery('x.test', 'A');
  const refused = pipeline([{ name: 'pass', handle: () => NEXT }])(query, 'udp', client) as Buffer;
  assert.equal(refused[3]! & 0xf, 5, 'REFUSED');
  assert.equal(refused.readUInt16BE(0), query.readUInt16BE(0));

  const broken = pipeline([
    {
      name: 'bug',
      handle: () => {
        throw new Error('a bug');
      },
    },
  ]);
  const servfail = broken(query, 'tcp', client) as Buffer;
  assert.equal(servfail[3]! & 0xf, 2, 'SERVFAIL');
  assert.equal(servfail.readUInt16BE(0), query.readUInt16BE(0));
  assert.equal(broken(Buffer.from([1, 2, 3]), 'udp', client), null);
  // The header's flags word: a response (QR) gets nothing; RD and CD are copied for QUERY only.
  const withFlags = (flags: number): Buffer => {
    const b = Buffer.from(query);
    b.writeUInt16BE(flags, 2);
    return b;
  };
  assert.equal(broken(withFlags(0x8100), 'udp', client), null, 'no reply to a response');
  assert.equal((broken(withFlags(0x0110), 'udp', client) as Buffer).readUInt16BE(2), 0x8112, 'QUERY: QR, RD, CD, SERVFAIL');
  assert.equal((broken(withFlags(0x2fb0), 'udp', client) as Buffer).readUInt16BE(2), 0xa802, 'opcode 5: QR, the opcode, SERVFAIL; no other flag');

  const rejecting = pipeline([{ name: 'bug', handle: () => Promise.reject(new Error('a bug')) }]);
  assert.equal(((await rejecting(query, 'udp', client)) as Buffer)[3]! & 0xf, 2, 'SERVFAIL');
});

test('query events: published only while someone listens, with the answering stage and its duration', () => {
  const diagnostics = new Diagnostics();
  const handler = pipeline([{ name: 'only', handle: () => reply(1) }], diagnostics);
  const events: QueryEvent[] = [];
  void handler(buildQuery('x.test', 'A'), 'udp', client);
  const stop = diagnostics.query.subscribe((e) => events.push(e));
  void handler(buildQuery('y.test', 'A'), 'tcp', client);
  stop();
  void handler(buildQuery('z.test', 'A'), 'udp', client);
  assert.equal(events.length, 1);
  assert.equal(events[0]!.answer.by, 'only');
  assert.equal(events[0]!.request.transport, 'tcp');
  assert.equal(events[0]!.request.query.name, 'y.test');
  assert.ok(events[0]!.durationNs >= 0);
});

test('a real server: the query event names the stage that answered, and reply-cache hits as hits of it', async (t) => {
  const s = await startServer({ catalog: CATALOG });
  t.after(() => s.close());
  const events: QueryEvent[] = [];
  t.after(s.server.diagnostics.query.subscribe((e) => events.push(e)));
  const ask = async (name: string, type: string) => {
    await udpExchange(s.port, buildQuery(name, type));
    const e = events.at(-1)!;
    return [e.answer.by, e.answer.hit ?? false, e.answer.service?.service ?? null];
  };
  assert.deepEqual(await ask('db.service.consul', 'SRV'), ['answer', false, 'db']);
  assert.deepEqual(await ask('db.service.consul', 'SRV'), ['answer', false, 'db']); // the second rotation
  assert.deepEqual(await ask('db.service.consul', 'SRV'), ['answer', true, 'db']);
  assert.deepEqual(await ask('www.example.test', 'A'), ['recursion-acl', false, null]); // no upstream: REFUSED
  assert.deepEqual(await ask('db.service.consul', 'AXFR'), ['check-query', false, null]);
});

test('the state logger: a problem once however often reported, a new problem again, the recovery once when every part is fine', () => {
  const diagnostics = new Diagnostics();
  new StateLog(diagnostics);
  const lines: [string, string][] = [];
  const log = pino(
    { level: 'debug' },
    {
      write: (l: string) => {
        const line = JSON.parse(l) as { level: number; msg: string };
        lines.push([String(line.level), line.msg]);
      },
    },
  );
  const report = (subject: string, problem: string | null, extra: Partial<StateEvent> = {}) =>
    diagnostics.state.publish({ key: 'k', subject, problem, message: problem ? `failing: ${problem}` : 'recovered', repeat: 'still failing', log, ...extra });
  report('w1', 'unreachable');
  report('w2', 'unreachable');
  report('w1', 'unreachable');
  report('w1', '500');
  report('w1', null);
  report('w2', null);
  report('w2', null);
  report('w1', 'unreachable');
  diagnostics.state.publish({ key: 'k', subject: '', problem: null, forget: true, log });
  report('w1', 'unreachable');
  assert.deepEqual(lines, [
    ['40', 'failing: unreachable'],
    ['20', 'still failing'],
    ['20', 'still failing'],
    ['40', 'failing: 500'],
    ['30', 'recovered'],
    ['40', 'failing: unreachable'],
    ['40', 'failing: unreachable'],
  ]);
});
