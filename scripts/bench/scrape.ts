/**
 * Scraping a server's Prometheus /metrics at a fixed interval while it is measured, as Prometheus
 * would (scripts/bench-dns.ts, the metrics-on rows): so that what a scrape costs the server (the
 * text built, the HTTP exchange) is in its figures, and so that the endpoint is seen to work under
 * load (every scrape 200 and carrying the metric asked for).
 *
 * Each scrape is its own connection (`Connection: close`): a kept-alive one would outlive the
 * server's keep-alive timeout while the server is paused (SIGSTOP) between its rows, and the next
 * scrape would then fail on a socket the server had closed. A new connection per scrape costs the
 * server an accept more than Prometheus's: the figures err on the side of more cost, not less.
 */

import { get } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

/** What the scrapes of one or more runs saw. */
export interface ScrapeStats {
  /** Scrapes answered 200 with the metric asked for. */
  ok: number;
  /** Every other scrape: why it failed (status, missing metric, error, timeout). */
  failures: string[];
  /** Time each good scrape took, request to last byte, ms. */
  durationsMs: number[];
  /** Size of each good scrape's body, bytes. */
  bytes: number[];
}

export const emptyScrapeStats = (): ScrapeStats => ({ ok: 0, failures: [], durationsMs: [], bytes: [] });

/** One GET of http://127.0.0.1:PORT/metrics, checked; adds to `stats`, and returns the body of a good scrape (else null). */
export async function scrapeOnce(port: number, mustHave: string, timeoutMs: number, stats: ScrapeStats): Promise<string | null> {
  const started = performance.now();
  try {
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = get({ host: '127.0.0.1', port, path: '/metrics', agent: false, headers: { connection: 'close' }, timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`no reply within ${timeoutMs} ms`)));
      req.on('error', reject);
    });
    if (status !== 200) stats.failures.push(`status ${status}`);
    else if (!body.includes(mustHave)) stats.failures.push(`200 without ${mustHave}`);
    else {
      stats.ok++;
      stats.durationsMs.push(performance.now() - started);
      stats.bytes.push(Buffer.byteLength(body));
      return body;
    }
  } catch (err) {
    stats.failures.push((err as Error).message);
  }
  return null;
}

/** The sum of every sample of metric `name` in Prometheus text (all its label sets). */
export function sumOf(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/**
 * Scrapes at once, then every `intervalMs` (measured from the start of the previous scrape; one
 * that takes longer delays the next, never overlaps it) until the returned function is called; that
 * function resolves when the scrape in flight, if any, has ended, so that the server can be paused
 * right after without a scrape half done.
 */
export function scrapeEvery(port: number, intervalMs: number, mustHave: string, timeoutMs: number, stats: ScrapeStats): () => Promise<void> {
  const stop = new AbortController();
  const loop = (async () => {
    while (!stop.signal.aborted) {
      const started = performance.now();
      await scrapeOnce(port, mustHave, timeoutMs, stats);
      const wait = intervalMs - (performance.now() - started);
      if (wait > 0) await sleep(wait, undefined, { signal: stop.signal }).catch(() => undefined);
    }
  })();
  return async () => {
    stop.abort();
    await loop;
  };
}
