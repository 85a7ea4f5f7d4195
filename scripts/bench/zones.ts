/**
 * The records every server in the DNS benchmark serves, written once and rendered for each: the
 * svcdns catalog file, dnsmasq's config, unbound's (as a server under test, and as the upstream
 * svcdns forwards to), plus the checks that a server answers them correctly before it is measured.
 *
 * Two services, all instances passing, port 8080, weights 1: `svc3` (3 instances on 3 nodes) and
 * `svc20` (20 on 20 nodes). svcdns answers `svcN.service.consul` A with the instances' addresses
 * and SRV with `1 1 8080 NODE.node.dc1.consul.` (the nodes' A records in the additional section);
 * dnsmasq and unbound get the same A and SRV records, and the nodes' A records, as local data.
 */

import { createSocket } from 'node:dgram';
import * as dnsPacket from 'dns-packet';

export const DOMAIN = 'consul';
export const DATACENTER = 'dc1';
export const SERVICE_PORT = 8080;

export interface Instance {
  node: string;
  address: string;
}

export interface Service {
  name: string;
  instances: Instance[];
}

function service(count: number): Service {
  return {
    name: `svc${count}`,
    instances: Array.from({ length: count }, (_, i) => ({ node: `svc${count}-node-${i + 1}`, address: `10.${count}.0.${i + 1}` })),
  };
}

export const SERVICES: readonly Service[] = [service(3), service(20)];

export const serviceName = (s: Service): string => `${s.name}.service.${DOMAIN}`;
export const nodeName = (i: Instance): string => `${i.node}.node.${DATACENTER}.${DOMAIN}`;

/** Forwarded names answered from svcdns's cache: a few dozen, each with its own address. */
export const HIT_ZONE = 'hit.bench';
export const HIT_NAMES = Array.from({ length: 40 }, (_, i) => ({ name: `h${i + 1}.${HIT_ZONE}`, address: `10.8.0.${i + 1}` }));
/** Long enough that no cached hit expires during a run. */
const HIT_TTL = 3600;

/** Forwarded names never asked before: `q<N>.miss.bench`, all answered by the upstream with one address. */
export const MISS_ZONE = 'miss.bench';
export const MISS_ADDRESS = '10.9.9.9';

// ---- renderings ----

/** The svcdns catalog file (YAML, the format of examples/catalog.yaml). */
export function catalogYaml(): string {
  const lines = [`datacenter: ${DATACENTER}`, 'nodes:'];
  for (const s of SERVICES) {
    for (const [n, i] of s.instances.entries()) {
      lines.push(`  - name: ${i.node}`, `    address: ${i.address}`, '    services:', `      - name: ${s.name}`, `        id: ${s.name}-${n + 1}`, `        port: ${SERVICE_PORT}`, '        health: passing');
    }
  }
  return `${lines.join('\n')}\n`;
}

/**
 * dnsmasq: each `host-record` line adds one A record to the name (several lines for one name give
 * several A records); `srv-host` adds an SRV record, and dnsmasq puts the target's A record (from
 * its host-record) in the additional section, as svcdns does. TTL of local data: `local-ttl`, 0.
 */
export function dnsmasqConf(port: number): string {
  const lines = [
    `port=${port}`,
    'listen-address=127.0.0.1',
    'bind-interfaces',
    'no-resolv',
    'no-hosts',
    'no-poll',
    'pid-file=',
    'log-facility=-',
    'local-ttl=0',
  ];
  for (const s of SERVICES) {
    for (const i of s.instances) {
      lines.push(`host-record=${serviceName(s)},${i.address}`, `host-record=${nodeName(i)},${i.address}`, `srv-host=${serviceName(s)},${nodeName(i)},${SERVICE_PORT},1,1`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The part of an unbound config both uses share: foreground, no privileges dropped, no files outside `dir`. */
function unboundServer(port: number, dir: string): string[] {
  return [
    'server:',
    '  interface: 127.0.0.1',
    `  port: ${port}`,
    '  do-ip6: no',
    '  username: ""',
    '  chroot: ""',
    `  directory: "${dir}"`,
    '  pidfile: ""',
    '  use-syslog: no',
    '  logfile: ""',
    '  verbosity: 0',
    '  access-control: 127.0.0.0/8 allow',
    '  num-threads: 1',
    // Local data only: no DNSSEC validator (it would want a trust anchor file).
    '  module-config: "iterator"',
  ];
}

/** unbound as a server under test: the same records as local data. It adds no additional section to SRV answers. */
export function unboundTargetConf(port: number, dir: string): string {
  const lines = [...unboundServer(port, dir), `  local-zone: "${DOMAIN}." static`];
  for (const s of SERVICES) {
    for (const i of s.instances) {
      lines.push(
        `  local-data: "${serviceName(s)}. 0 IN A ${i.address}"`,
        `  local-data: "${nodeName(i)}. 0 IN A ${i.address}"`,
        `  local-data: "${serviceName(s)}. 0 IN SRV 1 1 ${SERVICE_PORT} ${nodeName(i)}."`,
      );
    }
  }
  lines.push('remote-control:', '  control-enable: no');
  return `${lines.join('\n')}\n`;
}

/**
 * unbound as the upstream svcdns forwards to: every name under miss.bench answered from local data
 * (`redirect`: the zone's own data for every name below it), the hit names with a long TTL, and
 * remote control on a Unix socket in `dir`, so the benchmark can count the queries it received.
 */
export function unboundUpstreamConf(port: number, dir: string): string {
  const lines = [
    ...unboundServer(port, dir),
    `  local-zone: "${MISS_ZONE}." redirect`,
    `  local-data: "${MISS_ZONE}. 60 IN A ${MISS_ADDRESS}"`,
    `  local-zone: "${HIT_ZONE}." static`,
    ...HIT_NAMES.map((h) => `  local-data: "${h.name}. ${HIT_TTL} IN A ${h.address}"`),
    'remote-control:',
    '  control-enable: yes',
    `  control-interface: "${dir}/unbound-upstream.ctl"`,
    '  control-use-cert: no',
  ];
  return `${lines.join('\n')}\n`;
}

// ---- checks ----

/** One UDP query as dnsperf -e sends it (RD, EDNS 4096); the reply, or null after `timeoutMs`. */
export function query(port: number, name: string, type: 'A' | 'SRV', timeoutMs = 1000): Promise<Buffer | null> {
  const packet = dnsPacket.encode({
    type: 'query',
    id: 1 + Math.floor(Math.random() * 65534),
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type, class: 'IN' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
  });
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    const finish = (reply: Buffer | null): void => {
      clearTimeout(timer);
      socket.close();
      resolve(reply);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    socket.on('message', (msg) => {
      if (msg.length >= 2 && msg.readUInt16BE(0) === packet.readUInt16BE(0)) finish(msg);
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      socket.close();
      reject(err);
    });
    socket.send(packet, port, '127.0.0.1');
  });
}

/** Asks until the server answers at all (it may still be starting), up to `timeoutMs`. */
export async function waitForAnswer(port: number, name: string, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if ((await query(port, name, 'A', 200)) !== null) return;
  }
  throw new Error(`no answer from 127.0.0.1:${port} within ${timeoutMs} ms`);
}

export interface Expected {
  name: string;
  type: 'A' | 'SRV';
  /** A: the addresses; SRV: `priority weight port target`. Compared as sets. */
  answers: string[];
}

export function expectedFor(s: Service, type: 'A' | 'SRV'): Expected {
  return {
    name: serviceName(s),
    type,
    answers: s.instances.map((i) => (type === 'A' ? i.address : `1 1 ${SERVICE_PORT} ${nodeName(i)}`)),
  };
}

/**
 * Asks once and throws unless the reply is NOERROR, not truncated, and its answer section holds
 * exactly the expected records; returns a short description of the reply (its size, and how many
 * additional records it carries, which differs between servers for SRV).
 */
export async function check(server: string, port: number, expected: Expected): Promise<string> {
  const reply = await query(port, expected.name, expected.type);
  const what = `${server}: ${expected.name} ${expected.type}`;
  if (reply === null) throw new Error(`${what}: no reply`);
  const packet = dnsPacket.decode(reply);
  const rcode = reply.readUInt8(3) & 0x0f;
  if (rcode !== 0) throw new Error(`${what}: rcode ${rcode} (${['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'][rcode] ?? '?'})`);
  if (packet.flag_tc) throw new Error(`${what}: truncated (TC) at EDNS 4096`);
  const got = (packet.answers ?? []).map((a) => {
    if (a.type === 'A') return a.data;
    if (a.type === 'SRV') return `${a.data.priority ?? 0} ${a.data.weight ?? 0} ${a.data.port} ${a.data.target}`;
    return `${a.type}?`;
  });
  const sorted = (xs: string[]): string => [...xs].sort().join(', ');
  if (sorted(got) !== sorted(expected.answers)) throw new Error(`${what}: answer is [${sorted(got)}], expected [${sorted(expected.answers)}]`);
  const additional = (packet.additionals ?? []).filter((a) => a.type !== 'OPT').length;
  return `${got.length} ${expected.type}${additional ? ` + ${additional} addl` : ''}, ${reply.length} B`;
}
