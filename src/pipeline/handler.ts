/**
 * What the listeners see of the request pipeline: a function from query bytes to reply bytes.
 * Listeners (src/listen/) import this and nothing else of the pipeline.
 */

export type Transport = 'udp' | 'tcp';

/** Where a query came from. */
export interface Client {
  address: string;
  port: number;
}

/**
 * Returns the reply bytes, or null when the packet gets no reply at all; a promise only when the
 * answer waits (on an upstream, or on data being fetched). Never throws, and the promise never
 * rejects.
 */
export type DnsHandler = (packet: Buffer, transport: Transport, client: Client) => Buffer | null | Promise<Buffer | null>;
