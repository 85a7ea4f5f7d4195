/**
 * The HTTP endpoint (--http-listen): what operators and orchestrators read, never on the DNS path.
 *
 *   GET /metrics  Prometheus text (src/diagnostics/metrics.ts lists every metric)
 *   GET /health   200 "ok" while the process can answer (it is running and not stopped)
 *   GET /ready    200 once the DNS listeners are bound and a catalog is served; 503 with a
 *                 one-line reason before that and from the first stop signal on (lameduck)
 *   GET /status   JSON (src/http/status.ts)
 *
 * HEAD works where GET does; other methods get 405, other paths 404. Small and closed: a scrape
 * has 10 s to send its request, and replies are never cached.
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { formatHostPort, type ListenAddress } from '../net/address.js';
import { listenError } from '../net/listen-error.js';
import type { Readiness, Status } from './status.js';

/** What the endpoint shows: one process, or the primary of --workers speaking for all. */
export interface Observed {
  metrics(): Promise<string>;
  readiness(): Readiness;
  /** Whether the process can still answer (false once it has stopped). */
  healthy(): boolean;
  status(): Promise<Status>;
}

export interface HttpEndpoint {
  readonly addresses: readonly { host: string; port: number }[];
  close(): Promise<void>;
}

const REQUEST_TIMEOUT_MS = 10_000;

/** Binds every address (port 0: any free port); rejects, closing what it bound, if one fails. */
export async function listenHttp(at: readonly ListenAddress[], observed: Observed, log: Logger): Promise<HttpEndpoint> {
  const httpLog = log.child({ component: 'http' });
  const servers: Server[] = [];
  const addresses: { host: string; port: number }[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
  };
  try {
    for (const address of at) {
      const server = createServer({ requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: REQUEST_TIMEOUT_MS }, (req, res) => {
        handle(req, res, observed).catch((err: unknown) => {
          httpLog.error({ err, path: req.url }, 'http request failed');
          if (!res.headersSent) send(res, req, 500, 'text/plain; charset=utf-8', 'internal error\n');
          else res.destroy();
        });
      });
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: address.host, port: address.port, exclusive: true }, () => {
          server.off('error', reject);
          resolve();
        });
      }).catch((err: unknown) => {
        throw listenError(address, 'http', err);
      });
      const bound = { host: address.host, port: (server.address() as AddressInfo).port };
      addresses.push(bound);
      httpLog.info({ address: formatHostPort(bound) }, 'listening (http: /metrics, /health, /ready, /status)');
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { addresses, close };
}

async function handle(req: IncomingMessage, res: ServerResponse, observed: Observed): Promise<void> {
  const path = (req.url ?? '/').split('?', 1)[0];
  const route = ROUTES[path ?? ''];
  if (route === undefined) return send(res, req, 404, TEXT, 'not found: try /metrics, /health, /ready or /status\n');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    return send(res, req, 405, TEXT, 'method not allowed\n');
  }
  await route(req, res, observed);
}

const TEXT = 'text/plain; charset=utf-8';

const ROUTES: Record<string, (req: IncomingMessage, res: ServerResponse, observed: Observed) => Promise<void> | void> = {
  '/metrics': async (req, res, o) => send(res, req, 200, Registry.PROMETHEUS_CONTENT_TYPE, await o.metrics()),
  '/health': (req, res, o) => (o.healthy() ? send(res, req, 200, TEXT, 'ok\n') : send(res, req, 503, TEXT, 'stopped\n')),
  '/ready': (req, res, o) => {
    const r = o.readiness();
    send(res, req, r.ready ? 200 : 503, TEXT, `${r.reason}\n`);
  },
  '/status': async (req, res, o) => send(res, req, 200, 'application/json; charset=utf-8', `${JSON.stringify(await o.status(), null, 2)}\n`),
};

function send(res: ServerResponse, req: IncomingMessage, code: number, type: string, body: string): void {
  res.writeHead(code, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : body);
}
