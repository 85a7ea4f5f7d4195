/**
 * SIGHUP's configuration half (src/lifecycle/reload.ts): the --config file read again, compared key
 * by key with what runs; live keys applied, others named as needing a restart, bad files rejected
 * with every problem; flags and env still win over the file. The outcome line's wording.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { resolveLayers, type ConfigInputs } from '../../src/config.js';
import { ConfigReloader, catalogReload, logReloadOutcome } from '../../src/lifecycle/reload.js';

function reloaderOf(file: { text: string }, flags: ConfigInputs['flags'] = {}, env: NodeJS.ProcessEnv = {}): ConfigReloader {
  const inputs: ConfigInputs = { flags, env, configFile: 'svcdns.yaml', readFile: () => file.text };
  return new ConfigReloader(inputs, resolveLayers(inputs).raw);
}

test('unchanged, changed (live keys applied), restart needed (running value kept), rejected (every problem)', () => {
  const file = { text: 'log-level: info\nlisten: [127.0.0.1:53]\n' };
  const reloader = reloaderOf(file);
  assert.deepEqual(reloader.reload(), { ok: true, changed: [], restart: [], settings: { logLevel: 'info', queryLog: false, lameduckMs: 0 } });

  file.text = 'log-level: debug\nquery-log: true\nlameduck: 5s\nlisten: [127.0.0.1:54]\nservice-ttl: 30\n';
  assert.deepEqual(reloader.reload(), {
    ok: true,
    changed: ['log-level', 'query-log', 'lameduck'],
    restart: ['listen', 'service-ttl'],
    settings: { logLevel: 'debug', queryLog: true, lameduckMs: 5000 },
  });
  // The live keys now run with the new values; the others still with the old, so they are named again.
  assert.deepEqual(reloader.reload(), { ok: true, changed: [], restart: ['listen', 'service-ttl'], settings: { logLevel: 'debug', queryLog: true, lameduckMs: 5000 } });

  file.text = 'log-level: loud\nlameduck: soon\nrecursors: [1.1.1.1]\n';
  assert.deepEqual(reloader.reload(), {
    ok: false,
    problems: [
      'config file svcdns.yaml: unknown key "recursors"',
      'log-level (config file): must be one of fatal, error, warn, info, debug, trace, silent (got "loud")',
      'lameduck (config file): must be a duration such as 10s, 5m or 87600h (got "soon")',
    ],
  });
  file.text = 'log-level: debug\nquery-log: true\nlameduck: 5s\nlisten: [127.0.0.1:53]\nservice-ttl: 30\n';
  assert.deepEqual(reloader.reload(), { ok: true, changed: [], restart: ['service-ttl'], settings: { logLevel: 'debug', queryLog: true, lameduckMs: 5000 } }, 'a rejection changes nothing');
});

test('flags and env still win over the file on reload', () => {
  const file = { text: 'log-level: info\n' };
  const reloader = reloaderOf(file, { 'log-level': 'warn' }, { SVCDNS_QUERY_LOG: 'true' });
  file.text = 'log-level: debug\nquery-log: false\n';
  assert.deepEqual(reloader.reload(), { ok: true, changed: [], restart: [], settings: { logLevel: 'warn', queryLog: true, lameduckMs: 0 } });
});

test('the one outcome line: a rejection names every problem, and what the other half changed', () => {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const settings = { logLevel: 'info' as const, queryLog: false, lameduckMs: 0 };
  logReloadOutcome(log, { ok: true, changed: [], restart: [], settings }, catalogReload({ ok: true, changed: false }));
  logReloadOutcome(log, { ok: true, changed: ['log-level'], restart: ['listen'], settings }, catalogReload({ ok: true, changed: true }));
  logReloadOutcome(log, { ok: false, problems: ['log-level: bad'] }, catalogReload({ ok: false, error: new Error('catalog.yaml: nodes: bad') }));
  logReloadOutcome(log, { ok: true, changed: ['query-log'], restart: [], settings }, catalogReload({ ok: false, error: new Error('catalog.yaml: nodes: bad') }));
  logReloadOutcome(log, { ok: true, changed: [], restart: [], settings }, catalogReload(undefined));
  assert.deepEqual(
    lines.map(({ msg, changed, restartNeeded, problems }) => ({ msg, changed, restartNeeded, problems })),
    [
      { msg: 'SIGHUP: reloaded: unchanged', changed: undefined, restartNeeded: undefined, problems: undefined },
      { msg: 'SIGHUP: reloaded: changed; some changes need a restart (running values kept)', changed: ['log-level', 'catalog'], restartNeeded: ['listen'], problems: undefined },
      { msg: 'SIGHUP: reload rejected; the last good state keeps serving', changed: undefined, restartNeeded: undefined, problems: ['log-level: bad', 'catalog.yaml: nodes: bad'] },
      { msg: 'SIGHUP: reload rejected; the last good state keeps serving', changed: ['query-log'], restartNeeded: undefined, problems: ['catalog.yaml: nodes: bad'] },
      { msg: 'SIGHUP: reloaded: unchanged', changed: undefined, restartNeeded: undefined, problems: undefined },
    ],
  );
});
