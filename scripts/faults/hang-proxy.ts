/**
 * A TCP proxy in front of the Consul simulator that can hang the way the Consul did
 * ("accepts, never answers"): from `hang()` on, every connection, open or new, carries no more
 * bytes in either direction, and those connections stay dead after `recover()` (their client
 * sees neither a reply nor a close, as behind a frozen server or a black-holing path); connections
 * opened after `recover()` pass again. The simulator's own 'hang' mode differs on purpose: it
 * releases hung requests at recovery, and blocking queries parked before the hang stay answerable.
 */

import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';

export class HangProxy {
  private server: Server | null = null;
  private readonly pairs = new Set<{ client: Socket; upstream: Socket; dead: boolean }>();
  private hanging = false;

  constructor(private readonly targetPort: number) {}

  port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const server = createServer((client) => this.accept(client));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    this.server = server;
    this.port = (server.address() as { port: number }).port;
  }

  private accept(client: Socket): void {
    const upstream = connect({ port: this.targetPort, host: '127.0.0.1' });
    const pair = { client, upstream, dead: this.hanging };
    this.pairs.add(pair);
    const end = (): void => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('data', (d: Buffer) => void (pair.dead || upstream.write(d)));
    upstream.on('data', (d: Buffer) => void (pair.dead || client.write(d)));
    // A dead pair's ends are not passed on: the client must not learn that anything closed.
    client.on('close', end);
    upstream.on('close', () => (pair.dead ? upstream.destroy() : end()));
  }

  hang(): void {
    this.hanging = true;
    for (const p of this.pairs) p.dead = true;
  }

  recover(): void {
    this.hanging = false;
  }

  async stop(): Promise<void> {
    for (const p of this.pairs) {
      p.client.destroy();
      p.upstream.destroy();
    }
    this.pairs.clear();
    if (this.server) await new Promise<void>((r) => this.server!.close(() => r()));
  }
}
