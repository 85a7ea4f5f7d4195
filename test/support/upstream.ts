/**
 * A small upstream resolver for forwarding tests, written with dns-packet: UDP and TCP on one
 * loopback port, answering from a zone of records given by the test, and misbehaving on request
 * (silence, SERVFAIL/REFUSED, FORMERR to EDNS, replies forged with a wrong ID or from another port,
 * a delay). Every question it receives is recorded, so tests can tell whether svcdns asked at all.
 *
 * Zone semantics (enough for a forwarder to be tested against):
 * - records whose name and type match are the answer; a CNAME at the name is followed (chains, in
 *   order) when the type asked is not CNAME;
 * - a name with records but none of the type: NODATA (NOERROR, no answers, the SOA in authority);
 * - a name with no records at all (and not a parent of one): NXDOMAIN with the SOA;
 * - over UDP, a reply bigger than the query's EDNS size (512 without) is sent empty with TC, as BIND does.
 */

import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { createServer, type Server, type Socket as TcpSocket } from 'node:net';
import * as dnsPacket from 'dns-packet';

export type Behaviour =
  | 'answer'
  | 'silent'
  | 'servfail'
  | 'refused'
  /** FORMERR to any query with an OPT record; answers the rest. */
  | 'formerr-edns'
  /** Sends a forged reply first (wrong ID, the answer `FORGED_ADDRESS`), then the real one. */
  | 'wrong-id-first'
  /** Sends a forged reply from another port first (right ID, `FORGED_ADDRESS`), then the real one. */
  | 'other-port-first'
  /** Over UDP, a reply too big for the client is cut at byte 512, mid-record, with TC (RFC 2181 allows it). */
  | 'cut-mid-record'
  /** A referral, as a server that does not recurse gives: no answer, NS records, RA clear. */
  | 'referral';

export const FORGED_ADDRESS = '203.0.113.66';

export interface Received {
  name: string;
  type: string;
  transport: 'udp' | 'tcp';
  id: number;
  flags: number;
  edns: boolean;
  dnssecOk: boolean;
}

export interface TestUpstream {
  host: string;
  port: number;
  /** `host:port`, as --upstream takes it. */
  address: string;
  received: Received[];
  behaviour: Behaviour;
  /** Milliseconds to wait before replying. */
  delayMs: number;
  /** Set AD (authenticated data) on answers, as a validating resolver does. */
  authenticData: boolean;
  records: dnsPacket.Answer[];
  /** The SOA of the zone, sent with NXDOMAIN and NODATA; null: none. */
  soa: dnsPacket.Answer | null;
  /** Answers a raw UDP query itself when it returns bytes (the ID is patched in); undefined: as usual. */
  override: ((query: Buffer) => Buffer | undefined) | null;
  /**
   * Black-holes the UDP questions whose name it accepts (others are answered as usual): they are
   * recorded, and their replies held until `releaseHeld()` sends them all (a test ends its flood so).
   */
  blackHole: ((name: string) => boolean) | null;
  /** Sends every reply the black hole holds, and stops holding them. */
  releaseHeld(): void;
  close(): Promise<void>;
}

export interface UpstreamOptions {
  records: dnsPacket.Answer[];
  /** Default: an SOA for `test` with TTL 300 and MINIMUM 30. */
  soa?: dnsPacket.Answer | null;
  host?: string;
}

export function soaRecord(zone: string, ttl: number, minimum: number): dnsPacket.Answer {
  return {
    name: zone,
    type: 'SOA',
    ttl,
    data: { mname: `ns.${zone}`, rname: `hostmaster.${zone}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum },
  };
}

export async function startUpstream(options: UpstreamOptions): Promise<TestUpstream> {
  const host = options.host ?? '127.0.0.1';
  for (let attempt = 0; ; attempt++) {
    const udp = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    udp.bind(0, host);
    await once(udp, 'listening');
    const port = udp.address().port;
    const tcp = createServer();
    try {
      tcp.listen(port, host);
      await once(tcp, 'listening');
    } catch (err) {
      udp.close();
      if (attempt < 10) continue;
      throw err;
    }
    return serve(udp, tcp, host, port, options);
  }
}

function serve(udp: Socket, tcp: Server, host: string, port: number, options: UpstreamOptions): TestUpstream {
  const forger = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  forger.bind(0, host);
  const connections = new Set<TcpSocket>();
  const held: (() => void)[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number, fn: () => void): void => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };

  const upstream: TestUpstream = {
    host,
    port,
    address: host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`,
    received: [],
    behaviour: 'answer',
    delayMs: 0,
    authenticData: false,
    override: null,
    blackHole: null,
    releaseHeld() {
      for (const send of held.splice(0)) send();
    },
    records: options.records,
    soa: options.soa === undefined ? soaRecord('test', 300, 30) : options.soa,
    async close() {
      for (const t of timers) clearTimeout(t);
      for (const c of connections) c.destroy();
      udp.close();
      forger.close();
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
    },
  };

  /** The reply packet for a query, or null for silence. */
  function respond(query: dnsPacket.DecodedPacket, transport: 'udp' | 'tcp'): dnsPacket.Packet | null {
    const question = query.questions?.[0];
    if (!question) return null;
    const opt = query.additionals?.find((a) => a.type === 'OPT');
    upstream.received.push({
      name: question.name,
      type: question.type,
      transport,
      id: query.id ?? 0,
      flags: query.flags ?? 0,
      edns: opt !== undefined,
      dnssecOk: opt !== undefined && ((opt.flags ?? 0) & dnsPacket.DNSSEC_OK) !== 0,
    });
    const base = { type: 'response' as const, id: query.id ?? 0, questions: [question] };
    const flags = (rcode: number) =>
      dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (upstream.authenticData ? dnsPacket.AUTHENTIC_DATA : 0) | rcode;
    switch (upstream.behaviour) {
      case 'silent':
        return null;
      case 'servfail':
        return { ...base, flags: flags(2) };
      case 'refused':
        return { ...base, flags: flags(5) };
      case 'formerr-edns':
        if (opt) return { ...base, flags: flags(1) };
        break;
      case 'referral':
        return {
          ...base,
          flags: dnsPacket.RECURSION_DESIRED,
          authorities: [{ name: 'test', type: 'NS', ttl: 300, data: 'ns.test' }],
          additionals: [{ name: 'ns.test', type: 'A', ttl: 300, data: '192.0.2.53' }],
        };
      default:
        break;
    }
    const answers: dnsPacket.Answer[] = [];
    let name = question.name.toLowerCase();
    for (let hops = 0; hops < 10; hops++) {
      const here = upstream.records.filter((r) => r.name.toLowerCase() === name);
      const matching = here.filter((r) => r.type === question.type);
      if (matching.length > 0 || question.type === 'CNAME') {
        answers.push(...matching);
        break;
      }
      const cname = here.find((r) => r.type === 'CNAME');
      if (!cname) break;
      answers.push(cname);
      name = (cname as { data: string }).data.toLowerCase();
    }
    const exists = upstream.records.some((r) => r.name.toLowerCase() === name || r.name.toLowerCase().endsWith(`.${name}`));
    const rcode = answers.length === 0 && !exists ? 3 : 0;
    const authority = answers.length === 0 && upstream.soa ? [upstream.soa] : [];
    const additionals: dnsPacket.Answer[] = opt ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] : [];
    return { ...base, flags: flags(rcode), answers, authorities: authority, additionals };
  }

  udp.on('message', (packet, rinfo) => {
    const own = upstream.override?.(packet);
    if (own) {
      const out = Buffer.from(own);
      packet.copy(out, 0, 0, 2);
      upstream.received.push({ name: '(override)', type: '', transport: 'udp', id: packet.readUInt16BE(0), flags: packet.readUInt16BE(2), edns: false, dnssecOk: false });
      udp.send(out, rinfo.port, rinfo.address);
      return;
    }
    let query: dnsPacket.DecodedPacket;
    try {
      query = dnsPacket.decode(packet);
    } catch {
      return;
    }
    const reply = respond(query, 'udp');
    if (!reply) return;
    const opt = query.additionals?.find((a) => a.type === 'OPT');
    const limit = opt ? Math.max(512, opt.udpPayloadSize ?? 512) : 512;
    let bytes = dnsPacket.encode(reply);
    if (bytes.length > limit && upstream.behaviour === 'cut-mid-record') {
      bytes = Buffer.from(bytes.subarray(0, 512));
      bytes.writeUInt16BE(bytes.readUInt16BE(2) | dnsPacket.TRUNCATED_RESPONSE, 2);
    } else if (bytes.length > limit) {
      bytes = dnsPacket.encode({ ...reply, flags: (reply.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE, answers: [], authorities: [], additionals: [] });
    }
    const forged = (id: number) =>
      dnsPacket.encode({
        ...reply,
        id,
        flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
        answers: [{ name: reply.questions![0]!.name, type: 'A', ttl: 300, data: FORGED_ADDRESS }],
        authorities: [],
        additionals: [],
      });
    const send = () => udp.send(bytes, rinfo.port, rinfo.address);
    if (upstream.blackHole?.(query.questions![0]!.name)) {
      held.push(send);
      return;
    }
    if (upstream.behaviour === 'wrong-id-first') {
      udp.send(forged((reply.id! + 1) & 0xffff), rinfo.port, rinfo.address);
      later(Math.max(upstream.delayMs, 30), send);
    } else if (upstream.behaviour === 'other-port-first') {
      forger.send(forged(reply.id!), rinfo.port, rinfo.address);
      later(Math.max(upstream.delayMs, 30), send);
    } else if (upstream.delayMs > 0) later(upstream.delayMs, send);
    else send();
  });

  tcp.on('connection', (socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
    socket.on('error', () => socket.destroy());
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const length = buffered.readUInt16BE(0);
        const packet = buffered.subarray(2, 2 + length);
        buffered = buffered.subarray(2 + length);
        let query: dnsPacket.DecodedPacket;
        try {
          query = dnsPacket.decode(packet);
        } catch {
          socket.destroy();
          return;
        }
        const reply = respond(query, 'tcp');
        if (!reply) continue;
        const bytes = dnsPacket.encode(reply);
        const framed = Buffer.alloc(2 + bytes.length);
        framed.writeUInt16BE(bytes.length, 0);
        bytes.copy(framed, 2);
        const send = () => socket.writable && socket.write(framed);
        if (upstream.delayMs > 0) later(upstream.delayMs, send);
        else send();
      }
    });
  });

  return upstream;
}
