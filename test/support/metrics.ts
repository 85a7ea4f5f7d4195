/** Reading what svcdns's HTTP endpoint says: Prometheus text into numbers, and plain GETs. */

import assert from 'node:assert/strict';
import { request } from 'node:http';

export interface HttpReply {
  status: number;
  type: string;
  body: string;
}

/** One request to the endpoint (loopback), bounded. */
export function get(port: number, path: string, method = 'GET', host = '127.0.0.1'): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, method, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: no reply in 10 s`)));
    req.on('error', reject);
    req.end();
  });
}

/** Samples by `name{label="value",...}` exactly as written (labels in the order svcdns writes them). */
export type Samples = Map<string, number>;

export function parseMetrics(text: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

export async function scrape(port: number, host?: string): Promise<Samples> {
  const reply = await get(port, '/metrics', 'GET', host);
  assert.equal(reply.status, 200, reply.body);
  assert.equal(reply.type, 'text/plain; version=0.0.4; charset=utf-8');
  return parseMetrics(reply.body);
}

/** How much each of `keys` grew from `before` to `after` (absent counts as 0). */
export function deltas(before: Samples, after: Samples, keys: readonly string[]): Record<string, number> {
  return Object.fromEntries(keys.map((k) => [k, (after.get(k) ?? 0) - (before.get(k) ?? 0)]));
}
