/**
 * The standard process_* and nodejs_* metrics, under the names prom-client's default metrics use
 * (what Node.js dashboards expect), every one read when /metrics is scraped and never in between.
 *
 * Why not prom-client's `collectDefaultMetrics`: it keeps a GC observer (a performance entry and a
 * JavaScript callback for every garbage collection) and an event-loop delay monitor running all the
 * time, which cost a DNS server answering 80,000 queries a second about 1 % of its CPU (measured:
 * BENCHMARKS.md, issue 13). Left out for that reason: `nodejs_gc_duration_seconds` and the
 * event-loop lag percentiles; `nodejs_eventloop_lag_seconds` is measured at the scrape, as
 * prom-client also does.
 */

import { readdir, readFile } from 'node:fs/promises';
import { getHeapSpaceStatistics } from 'node:v8';
import type { MetricDeclarer } from './metric-values.js';

const START_TIME_SECONDS = Math.round(Date.now() / 1000 - process.uptime());

/** Registers the process metrics on `m`. */
export function declareProcessMetrics(m: MetricDeclarer): void {
  m('process_cpu_user_seconds_total', 'User CPU time spent, in seconds.', 'counter', 'sum', () => [{ value: process.cpuUsage().user / 1e6, labels: {} }]);
  m('process_cpu_system_seconds_total', 'System CPU time spent, in seconds.', 'counter', 'sum', () => [{ value: process.cpuUsage().system / 1e6, labels: {} }]);
  m('process_cpu_seconds_total', 'User and system CPU time spent, in seconds.', 'counter', 'sum', () => {
    const { user, system } = process.cpuUsage();
    return [{ value: (user + system) / 1e6, labels: {} }];
  });
  m('process_start_time_seconds', 'When the process started, seconds since the epoch.', 'gauge', 'omit', () => [{ value: START_TIME_SECONDS, labels: {} }]);
  m('process_resident_memory_bytes', 'Resident memory size, in bytes.', 'gauge', 'sum', () => [{ value: process.memoryUsage.rss(), labels: {} }]);
  m('process_open_fds', 'Open file descriptors.', 'gauge', 'sum', async () => {
    const fds = await readdir('/proc/self/fd').catch(() => null);
    return fds === null ? [] : [{ value: fds.length - 1, labels: {} }]; // less the one readdir held
  });
  m('process_max_fds', 'The most file descriptors the process may open.', 'gauge', 'max', async () => {
    const limits = await readFile('/proc/self/limits', 'utf8').catch(() => '');
    const max = /^Max open files\s+(\d+)/m.exec(limits)?.[1];
    return max === undefined ? [] : [{ value: Number(max), labels: {} }];
  });
  m('nodejs_eventloop_lag_seconds', 'How late a callback queued at the scrape ran, in seconds.', 'gauge', 'average', async () => {
    const start = process.hrtime.bigint();
    await new Promise((resolve) => setImmediate(resolve));
    return [{ value: Number(process.hrtime.bigint() - start) / 1e9, labels: {} }];
  });
  m('nodejs_active_handles_total', 'Active libuv handles (sockets, timers, ...).', 'gauge', 'sum', () => [{ value: activeResources().filter((r) => r !== 'FSReqCallback').length, labels: {} }]);
  m('nodejs_active_requests_total', 'Active libuv requests.', 'gauge', 'sum', () => [{ value: activeResources().filter((r) => r === 'FSReqCallback').length, labels: {} }]);
  m('nodejs_heap_size_total_bytes', 'V8 heap size, in bytes.', 'gauge', 'sum', () => [{ value: process.memoryUsage().heapTotal, labels: {} }]);
  m('nodejs_heap_size_used_bytes', 'V8 heap used, in bytes.', 'gauge', 'sum', () => [{ value: process.memoryUsage().heapUsed, labels: {} }]);
  m('nodejs_external_memory_bytes', 'Memory of C++ objects bound to JavaScript objects (buffers), in bytes.', 'gauge', 'sum', () => [
    { value: process.memoryUsage().external, labels: {} },
  ]);
  m('nodejs_heap_space_size_used_bytes', 'V8 heap space used, in bytes.', 'gauge', 'sum', () =>
    getHeapSpaceStatistics().map((s) => ({ value: s.space_used_size, labels: { space: s.space_name.replace(/_space$/, '') } })),
  );
  m('nodejs_heap_space_size_total_bytes', 'V8 heap space size, in bytes.', 'gauge', 'sum', () =>
    getHeapSpaceStatistics().map((s) => ({ value: s.space_size, labels: { space: s.space_name.replace(/_space$/, '') } })),
  );
  m('nodejs_version_info', 'The Node.js version (always 1).', 'gauge', 'first', () => {
    const [major, minor, patch] = process.versions.node.split('.');
    return [{ value: 1, labels: { version: process.version, major: major ?? '', minor: minor ?? '', patch: patch ?? '' } }];
  });
}

function activeResources(): string[] {
  return process.getActiveResourcesInfo();
}

