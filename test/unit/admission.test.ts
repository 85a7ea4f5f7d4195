/**
 * Load isolation's parts on their own: the admission of forwarded questions (per client, IPv6 per
 * /64, and the global bound), the open-file budget's arithmetic and the reading of
 * /proc/self/limits, and the upstream socket budget with its one state line when descriptors run out.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { Diagnostics } from '../../src/diagnostics/channels.js';
import { StateLog } from '../../src/diagnostics/state-log.js';
import { Admission, type Ticket } from '../../src/forward/admission.js';
import { clientKey } from '../../src/net/clients.js';
import { fitBudget, OTHER_FILES_RESERVE, openFileLimit } from '../../src/forward/open-files.js';
import { SocketBudget } from '../../src/forward/socket-budget.js';

function ticket(t: Ticket | 'client' | 'global'): Ticket {
  if (typeof t === 'string') assert.fail(`refused (${t})`);
  return t;
}

test('admission: a client gets at most maxPerClient places; others are unaffected; a release gives one back, once', () => {
  const admission = new Admission({ maxInflight: 100, maxPerClient: 2 });
  const a1 = ticket(admission.admit('192.0.2.1', true, 0));
  ticket(admission.admit('192.0.2.1', true, 1));
  assert.equal(admission.admit('192.0.2.1', true, 2), 'client');
  assert.equal(admission.admit('192.0.2.1', false, 2), 'client', 'joining a question in flight counts too');
  ticket(admission.admit('192.0.2.2', true, 2));
  a1.release();
  a1.release();
  ticket(admission.admit('192.0.2.1', true, 2));
  assert.equal(admission.admit('192.0.2.1', true, 3), 'client', 'a second release gave nothing back');
  assert.deepEqual(admission.refused(), { client: 3, global: 0 });
  assert.equal(admission.clients, 2);
});

test('admission: the global bound holds new questions, not joins; svcdns itself (no client) has only the global bound', () => {
  const admission = new Admission({ maxInflight: 3, maxPerClient: 10 });
  assert.equal(admission.admit('192.0.2.1', true, 3), 'global');
  ticket(admission.admit('192.0.2.1', false, 3));
  for (let i = 0; i < 20; i++) ticket(admission.admit(null, false, 2));
  assert.equal(admission.admit(null, true, 3), 'global');
  assert.deepEqual(admission.refused(), { client: 0, global: 2 });
  assert.equal(admission.clients, 1);
});

test('admission: IPv6 clients count per /64, IPv4-mapped ones as their IPv4 address', () => {
  assert.equal(clientKey('192.0.2.7'), '192.0.2.7');
  assert.equal(clientKey('::ffff:192.0.2.7'), '192.0.2.7');
  assert.equal(clientKey('2001:db8:1:2::1'), '20010db800010002/64');
  assert.equal(clientKey('2001:db8:1:2:ffff:ffff:ffff:ffff'), '20010db800010002/64');
  assert.equal(clientKey('fe80::1%eth0'), 'fe80000000000000/64');
  const admission = new Admission({ maxInflight: 100, maxPerClient: 1 });
  ticket(admission.admit('2001:db8:1:2::1', true, 0));
  assert.equal(admission.admit('2001:db8:1:2::99', true, 1), 'client', 'same /64');
  ticket(admission.admit('2001:db8:1:3::1', true, 1));
});

test('open-file budget: a bound that fits is kept, and the sockets are whatever room is left', () => {
  const b = fitBudget({ limit: 20_000, open: 30, listening: 3, tcpConnections: 1000, maxInflight: 1000 });
  assert.deepEqual(b, { maxInflight: 1000, sockets: 20_000 - 30 - 3 - OTHER_FILES_RESERVE - 1000, reserve: 30 + 3 + OTHER_FILES_RESERVE + 1000, tcpReserved: 1000, fits: true, tcpFits: true });
});

test('open-file budget: at 1,024 the default 1,000 does not fit beside 1,000 TCP connections; each gets half of the room', () => {
  const b = fitBudget({ limit: 1024, open: 25, listening: 2, tcpConnections: 1000, maxInflight: 1000 });
  const room = 1024 - 25 - 2 - OTHER_FILES_RESERVE;
  assert.deepEqual(b, { maxInflight: room - Math.floor(room / 2), sockets: room - Math.floor(room / 2), reserve: 1024 - (room - Math.floor(room / 2)), tcpReserved: Math.floor(room / 2), fits: false, tcpFits: false });
  // Few TCP connections: they keep theirs, forwarding gets the rest.
  assert.deepEqual(fitBudget({ limit: 1024, open: 25, listening: 2, tcpConnections: 100, maxInflight: 1000 }), {
    maxInflight: room - 100,
    sockets: room - 100,
    reserve: 25 + 2 + OTHER_FILES_RESERVE + 100,
    tcpReserved: 100,
    fits: false,
    tcpFits: true,
  });
  // A bound that fits beside half the room: kept; the TCP connections do not all fit (warned of, not lowered here).
  assert.deepEqual(fitBudget({ limit: 1024, open: 25, listening: 2, tcpConnections: 1000, maxInflight: 100 }), {
    maxInflight: 100,
    sockets: room - Math.floor(room / 2),
    reserve: 1024 - (room - Math.floor(room / 2)),
    tcpReserved: Math.floor(room / 2),
    fits: true,
    tcpFits: false,
  });
  // No room at all: one socket, never zero or less.
  assert.deepEqual(fitBudget({ limit: 50, open: 40, listening: 2, tcpConnections: 1000, maxInflight: 1000 }), {
    maxInflight: 1,
    sockets: 1,
    reserve: 40 + 2 + OTHER_FILES_RESERVE,
    tcpReserved: 0,
    fits: false,
    tcpFits: false,
  });
});

test('open-file limit: the soft limit from /proc/self/limits; unlimited or unreadable is null', () => {
  const limits = (soft: string, hard: string): string =>
    [
      'Limit                     Soft Limit           Hard Limit           Units     ',
      'Max processes             63704                63704                processes ',
      `Max open files            ${soft.padEnd(21)}${hard.padEnd(21)}files     `,
    ].join('\n');
  assert.equal(openFileLimit(() => limits('1024', '4096')), 1024);
  assert.equal(openFileLimit(() => limits('unlimited', 'unlimited')), null);
  assert.equal(
    openFileLimit(() => {
      throw new Error('ENOENT');
    }),
    null,
  );
  const own = openFileLimit();
  assert.ok(own === null || own > 0);
});

test('socket budget: at most max sockets at once; out of descriptors is one state line, and one when a socket opens again', () => {
  const diagnostics = new Diagnostics();
  const lines: { level: number; msg: string; code?: string }[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as { level: number; msg: string }) });
  const stateLog = new StateLog(diagnostics);
  const budget = new SocketBudget(2, diagnostics, log);
  assert.equal(budget.take(), true);
  assert.equal(budget.take(), true);
  assert.equal(budget.take(), false);
  budget.release();
  assert.equal(budget.take(), true);
  assert.deepEqual(budget.stats(), { inUse: 2, max: 2, refusals: 1 });
  budget.opened();
  assert.equal(lines.length, 0, 'nothing to say while all is well');
  budget.outOfFiles('EMFILE');
  budget.outOfFiles('EMFILE');
  budget.opened();
  budget.opened();
  assert.deepEqual(
    lines.map((l) => [l.level, l.msg, l.code]),
    [
      [50, 'out of file descriptors: upstream sockets cannot be opened, forwarded questions get SERVFAIL (raise the open-file limit, or lower --upstream-max-inflight)', 'EMFILE'],
      [20, 'still out of file descriptors', 'EMFILE'],
      [30, 'upstream sockets open again', undefined],
    ],
  );
  stateLog.stop();
});
