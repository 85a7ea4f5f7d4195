/**
 * Raw DNS clients for tests: send exact bytes over UDP or TCP to the test server and get the
 * reply bytes back (or null on silence), plus dns-packet helpers to build queries and read replies.
 */

import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import * as dnsPacket from 'dns-packet';

export interface QueryOptions {
  id?: number;
  /** Add an EDNS OPT record advertising this UDP size. */
  udpSize?: number;
  dnssecOk?: boolean;
  recursionDesired?: boolean;
  class?: string;
}

/** Encodes a standard query with dns-packet. */
export function buildQuery(name: string, type: string, options: QueryOptions = {}): Buffer {
  const packet: dnsPacket.Packet = {
    type: 'query',
    id: options.id ?? 4242,
    flags: options.recursionDesired === false ? 0 : dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as dnsPacket.RecordType, class: (options.class ?? 'IN') as dnsPacket.RecordClass }],
    additionals:
      options.udpSize !== undefined
        ? [{ type: 'OPT', name: '.', udpPayloadSize: options.udpSize, extendedRcode: 0, ednsVersion: 0, flags: options.dnssecOk ? dnsPacket.DNSSEC_OK : 0, flag_do: options.dnssecOk === true, options: [] }]
        : [],
  };
  return dnsPacket.encode(packet);
}

/**
 * How long the helpers below wait for a reply the caller expects. Generous, so that a busy machine
 * (tests run in parallel, and other work shares the cores) is not mistaken for a missing reply;
 * tests that expect silence pass their own, shorter, timeout.
 */
const EXPECTED_REPLY_MS = 5000;

/**
 * Sends one UDP datagram (from the local address `from` when given, e.g. another loopback address
 * as a second client); resolves with the reply, or null if none came within `timeoutMs`.
 */
export function udpExchange(port: number, packet: Buffer, timeoutMs = EXPECTED_REPLY_MS, host = '127.0.0.1', from?: string): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const timer = setTimeout(() => finish(null), timeoutMs);
    function finish(reply: Buffer | null): void {
      clearTimeout(timer);
      socket.close();
      resolve(reply);
    }
    socket.on('message', (msg) => finish(msg));
    socket.on('error', (err) => {
      clearTimeout(timer);
      socket.close();
      reject(err);
    });
    if (from === undefined) socket.send(packet, port, host);
    else socket.bind({ address: from, port: 0 }, () => socket.send(packet, port, host));
  });
}

/**
 * Opens one TCP connection, writes `bytes` as given (callers frame them, or not, as the test
 * needs), and collects framed replies until `expect` have arrived, the server closes, or the
 * timeout passes.
 */
export function tcpExchange(port: number, bytes: Buffer, expect: number, timeoutMs = EXPECTED_REPLY_MS, host = '127.0.0.1'): Promise<{ replies: Buffer[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const replies: Buffer[] = [];
    let pending = Buffer.alloc(0);
    let closed = false;
    const socket = connect({ port, host });
    const timer = setTimeout(() => finish(), timeoutMs);
    function finish(): void {
      clearTimeout(timer);
      socket.destroy();
      resolve({ replies, closed });
    }
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      closed = true;
      finish();
    });
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const len = pending.readUInt16BE(0);
        replies.push(pending.subarray(2, 2 + len));
        pending = pending.subarray(2 + len);
      }
      if (replies.length >= expect) finish();
    });
    socket.write(bytes);
  });
}

/** Frames DNS messages for TCP with their 2-byte lengths. */
export function frame(...messages: Buffer[]): Buffer {
  return Buffer.concat(
    messages.flatMap((m) => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(m.length);
      return [len, m];
    }),
  );
}

export function decode(reply: Buffer): dnsPacket.DecodedPacket {
  return dnsPacket.decode(reply);
}

/** Records of a section as zone-file text, e.g. 'web.service.consul. 0 IN A 10.0.0.1'. */
export function zoneLines(answers: readonly dnsPacket.Answer[] | undefined): string[] {
  return (answers ?? [])
    .filter((a) => a.type !== 'OPT')
    .map((a) => {
      const data = (a as { data?: unknown }).data;
      let text: string;
      switch (a.type) {
        case 'SRV': {
          const d = data as dnsPacket.SrvAnswer['data'];
          text = `${d.priority ?? 0} ${d.weight ?? 0} ${d.port} ${d.target}.`;
          break;
        }
        case 'SOA': {
          const d = data as dnsPacket.SoaAnswer['data'];
          text = `${d.mname}. ${d.rname}. ${d.serial} ${d.refresh} ${d.retry} ${d.expire} ${d.minimum}`;
          break;
        }
        case 'PTR':
        case 'NS':
        case 'CNAME':
          text = `${String(data)}.`;
          break;
        case 'TXT':
          text = (data as Buffer[]).map((b) => JSON.stringify(b.toString())).join(' ');
          break;
        default:
          text = String(data);
      }
      return `${a.name}. ${a.ttl ?? 0} IN ${a.type} ${text}`;
    });
}
