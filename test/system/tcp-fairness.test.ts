/**
 * TCP fairness under abuse, against the real process (--example catalog): the per-client cap
 * (--tcp-max-per-client), the oldest idle connection closed to make room when the table is full
 * (--tcp-max-connections, RFC 7766 6.2.3), the idle timeout shrinking for connections already open
 * as the table fills, and a client pipelining queries without reading: paused, not crashed, UDP
 * answered meanwhile, every reply delivered once it reads. The attackers connect from 127.0.0.2
 * (loopback holds all of 127/8), the legitimate client from 127.0.0.1.
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { bigCatalog } from '../support/catalog.js';
import { buildQuery, decode, frame, udpExchange, zoneLines } from '../support/client.js';
import { dig } from '../support/dig.js';
import { eventually, within } from '../support/eventually.js';
import { scrape } from '../support/metrics.js';
import { startCli, type Running } from '../support/spawn.js';

const WEB_A = ['web.service.consul. 0 IN A 192.168.0.129', 'web.service.consul. 0 IN A 192.168.0.130', 'web.service.consul. 0 IN A 192.168.0.131'];
const ATTACKER = '127.0.0.2';

interface Svcdns {
  dns: number;
  http: number;
  cli: Running;
}

/** The CLI with `args` (the example catalog unless they name one), its DNS and HTTP ports; stopped after the test. */
async function start(t: TestContext, args: string[]): Promise<Svcdns> {
  const catalog = args.includes('--catalog') ? [] : ['--example'];
  const cli = startCli([...catalog, '--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', ...args]);
  t.after(() => cli.stop());
  const portOf = (line: Record<string, unknown>): number => Number(String(line.address).split(':').pop());
  const http = await cli.waitForLog((l) => String(l.msg).startsWith('listening (http'));
  const dns = await cli.waitForLog((l) => l.msg === 'listening (udp, tcp)');
  return { dns: portOf(dns), http: portOf(http), cli };
}

/** One TCP connection from `from`, collecting framed replies; it notices the server's close. */
class Conn {
  readonly replies: Buffer[] = [];
  closed = false;
  private pending: Buffer = Buffer.alloc(0);
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
      while (this.pending.length >= 2 && this.pending.length >= 2 + this.pending.readUInt16BE(0)) {
        const len = this.pending.readUInt16BE(0);
        this.replies.push(this.pending.subarray(2, 2 + len));
        this.pending = this.pending.subarray(2 + len);
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {}); // a reset by the server is a close like any other here
  }

  static async open(t: TestContext, port: number, from: string): Promise<Conn> {
    const socket = connect({ host: '127.0.0.1', port, localAddress: from, noDelay: true });
    const conn = new Conn(socket);
    t.after(() => socket.destroy());
    await once(socket, 'connect');
    return conn;
  }

  /** Resolves once `done()` holds (checked on every reply and on close), or rejects after 10 s. */
  until(done: () => boolean, what: string): Promise<void> {
    if (done()) return Promise.resolve();
    return within(
      new Promise<void>((resolve) => {
        const check = (): void => {
          if (done()) resolve();
          else this.waiters.push(check);
        };
        this.waiters.push(check);
      }),
      10_000,
      what,
    );
  }

  /** One query for web.service.consul A; resolves with its reply's answer lines (checked: ID). */
  async ask(id: number): Promise<string[]> {
    const before = this.replies.length;
    this.socket.write(frame(buildQuery('web.service.consul', 'A', { id })));
    await this.until(() => this.replies.length > before || this.closed, `a reply to query ${id}`);
    const reply = this.replies[before];
    assert.ok(reply, `query ${id}: the connection closed without a reply`);
    const p = decode(reply);
    assert.equal(p.id, id);
    return zoneLines(p.answers).sort();
  }

  /** Resolves once the server has closed the connection. */
  closedByServer(what: string): Promise<void> {
    return this.until(() => this.closed, what);
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

async function assertDigTcp(port: number): Promise<void> {
  const r = await dig(port, ['+tcp', 'web.service.consul', 'A']);
  assert.equal(r.transport, 'TCP');
  assert.equal(r.status, 'NOERROR');
  assert.deepEqual([...r.answer].sort(), WEB_A);
}

async function assertUdp(port: number, id: number): Promise<void> {
  const reply = await udpExchange(port, buildQuery('web.service.consul', 'A', { id }));
  assert.ok(reply, `UDP query ${id}: no reply`);
  const p = decode(reply);
  assert.equal(p.id, id);
  assert.deepEqual(zoneLines(p.answers).sort(), WEB_A);
}

void test('--tcp-max-per-client: connections from one client beyond the cap are closed at once; other clients are served', async (t) => {
  const s = await start(t, ['--tcp-max-per-client', '4']);
  const held: Conn[] = [];
  for (let i = 0; i < 4; i++) {
    const c = await Conn.open(t, s.dns, ATTACKER);
    // Answered, so the server has taken it into its table before the next one comes.
    assert.deepEqual(await c.ask(100 + i), WEB_A);
    held.push(c);
  }
  const extra = await Conn.open(t, s.dns, ATTACKER);
  await extra.closedByServer('the fifth connection from 127.0.0.2 closed by the server');
  assert.equal(extra.replies.length, 0);

  // Another client is not counted with 127.0.0.2: dig over TCP from 127.0.0.1 gets its answer.
  await assertDigTcp(s.dns);
  await assertUdp(s.dns, 150);
  const other = await Conn.open(t, s.dns, '127.0.0.1');
  assert.deepEqual(await other.ask(200), WEB_A);
  // The four held are still served.
  for (const [i, c] of held.entries()) assert.deepEqual(await c.ask(300 + i), WEB_A);

  const m = await scrape(s.http);
  assert.equal(m.get('svcdns_tcp_connections_closed_total{reason="per-client-limit"}'), 1);
  assert.equal(m.get('svcdns_tcp_connections'), 5, 'the four held and the one from 127.0.0.1');

  // Room again once one of the four closes.
  held[0]!.socket.destroy();
  await eventually(async () => assert.equal((await scrape(s.http)).get('svcdns_tcp_connections'), 4, 'the closed one left the table'));
  const again = await Conn.open(t, s.dns, ATTACKER);
  assert.deepEqual(await again.ask(400), WEB_A);
});

void test('--client-limits-exempt: the host itself (127.0.0.1, by default) is not capped; other loopback addresses are', async (t) => {
  const s = await start(t, ['--tcp-max-per-client', '4']);
  // Six connections at once from the host's own address, as glibc opens one per query that fell
  // back to TCP: every one kept and answered.
  const host = await Promise.all(Array.from({ length: 6 }, () => Conn.open(t, s.dns, '127.0.0.1')));
  for (const [i, c] of host.entries()) assert.deepEqual(await c.ask(500 + i), WEB_A);
  assert.ok(host.every((c) => !c.closed));
  const m = await scrape(s.http);
  assert.equal(m.get('svcdns_tcp_connections_closed_total{reason="per-client-limit"}') ?? 0, 0);
  assert.equal(m.get('svcdns_tcp_connections'), 6);
});

void test('--tcp-max-connections: a new connection to a full table closes the one idle longest (not the oldest opened)', async (t) => {
  const s = await start(t, ['--tcp-max-connections', '3']);
  const a = await Conn.open(t, s.dns, ATTACKER);
  assert.deepEqual(await a.ask(1), WEB_A);
  const b = await Conn.open(t, s.dns, ATTACKER);
  assert.deepEqual(await b.ask(2), WEB_A);
  const c = await Conn.open(t, s.dns, ATTACKER);
  assert.deepEqual(await c.ask(3), WEB_A);
  // a asks again: b is now the one idle longest.
  assert.deepEqual(await a.ask(4), WEB_A);

  const d = await Conn.open(t, s.dns, '127.0.0.1');
  assert.deepEqual(await d.ask(5), WEB_A, 'the new connection is let in and answered');
  await b.closedByServer('b, idle longest, closed to make room');
  assert.equal(a.closed, false);
  assert.equal(c.closed, false);
  assert.deepEqual(await a.ask(6), WEB_A);
  assert.deepEqual(await c.ask(7), WEB_A);

  const m = await scrape(s.http);
  assert.equal(m.get('svcdns_tcp_connections_closed_total{reason="evicted"}'), 1);
  assert.equal(m.get('svcdns_tcp_connections'), 3);
  // Said once in the log (and in /status), and again once the table is half empty.
  const warned = await s.cli.waitForLog((l) => l.msg === 'tcp connection table full: closing the connections idle longest to make room');
  assert.equal(warned.level, 40);
  assert.equal(warned.maxConnections, 3);
  a.socket.destroy();
  c.socket.destroy();
  await s.cli.waitForLog((l) => l.msg === 'tcp connection table has room again');
  assert.equal(s.cli.logs.filter((l) => String(l.msg).startsWith('tcp connection table full')).length, 1);
});

void test('the idle timeout shrinks as the table fills, for the connections already open', async (t) => {
  // An hour's idle timeout: nothing here would close in the test's time unless it shrank.
  const s = await start(t, ['--tcp-idle-timeout', '3600', '--tcp-max-connections', '4']);
  const first = await Conn.open(t, s.dns, ATTACKER);
  assert.deepEqual(await first.ask(1), WEB_A);
  const others: Conn[] = [];
  for (let i = 0; i < 3; i++) {
    const c = await Conn.open(t, s.dns, ATTACKER);
    assert.deepEqual(await c.ask(10 + i), WEB_A);
    others.push(c);
  }
  // The table is full: the timeout is 1 s, and the first connection, idle longest, goes first.
  await first.closedByServer('the first connection closed once the table filled, under an hour-long idle timeout');
  const m = await scrape(s.http);
  assert.ok((m.get('svcdns_tcp_connections_closed_total{reason="idle-under-pressure"}') ?? 0) >= 1, 'counted as closed idle under pressure');
  assert.equal(m.get('svcdns_tcp_connections_closed_total{reason="idle"}'), undefined);
  // With room again, TCP is served as ever.
  await assertDigTcp(s.dns);
});

void test('a client pipelining without reading is paused, not crashed; UDP is answered meanwhile; every reply comes once it reads', async (t) => {
  // `big` has 200 instances: each reply over TCP is some 3 KB, so the kernel's buffers (a few MB
  // on loopback) hold the replies to a small part of the queries.
  const dir = await mkdtemp(join(tmpdir(), 'svcdns-tcp-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'catalog.yaml'), bigCatalog({ big: 200, web: 3 }));
  const s = await start(t, ['--catalog', join(dir, 'catalog.yaml')]);
  const webA = ['web.service.consul. 0 IN A 10.11.0.1', 'web.service.consul. 0 IN A 10.11.0.2', 'web.service.consul. 0 IN A 10.11.0.3'];
  const QUERIES = 8000;
  const pipeliner = await Conn.open(t, s.dns, ATTACKER);
  pipeliner.socket.pause(); // reads nothing: the server's replies pile up in the kernel's buffers
  const queries = frame(...Array.from({ length: QUERIES }, (_, i) => buildQuery('big.service.consul', 'A', { id: i })));
  pipeliner.socket.write(queries);
  // 50 UDP queries, one after another, each with its exact answer, while the pipeliner reads nothing.
  for (let i = 0; i < 50; i++) {
    const reply = await udpExchange(s.dns, buildQuery('web.service.consul', 'A', { id: 40_000 + i }));
    assert.ok(reply, `UDP query ${i}: no reply`);
    assert.equal(decode(reply).id, 40_000 + i);
    assert.deepEqual(zoneLines(decode(reply).answers).sort(), webA);
  }
  const r = await dig(s.dns, ['+tcp', 'web.service.consul', 'A']);
  assert.deepEqual([r.transport, r.status, [...r.answer].sort()], ['TCP', 'NOERROR', webA]);
  // Paused, not crashed: still open, and not answered ahead of its reading beyond what the kernel's
  // buffers hold (8,000 replies are some 26 MB; without back-pressure all would be made and queued).
  assert.equal(pipeliner.closed, false);
  // No event says the server stopped taking its queries: the count is read until it holds still
  // (what bounds it is the kernel's buffers, not time; without back-pressure it runs to 8,000).
  let taken = -1;
  for (let i = 0; i < 40; i++) {
    const now = (await scrape(s.http)).get('svcdns_dns_requests_total{proto="tcp",type="A"}') ?? 0;
    if (now === taken) break;
    taken = now;
    await sleep(250);
  }
  t.diagnostic(`${taken} of ${QUERIES} queries taken before the client read`);
  assert.ok(taken < QUERIES / 2, `${taken} of ${QUERIES} queries taken from a client that read nothing`);

  pipeliner.socket.resume();
  await pipeliner.until(() => pipeliner.replies.length >= QUERIES || pipeliner.closed, `all ${QUERIES} replies`);
  assert.equal(pipeliner.replies.length, QUERIES);
  for (let i = 0; i < QUERIES; i++) assert.equal(pipeliner.replies[i]!.readUInt16BE(0), i, `reply ${i} in order`);
  const last = decode(pipeliner.replies[QUERIES - 1]!);
  assert.equal(last.answers?.length, 200);
});
