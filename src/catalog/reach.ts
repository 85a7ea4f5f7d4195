/**
 * Which address a node or a service instance answers with, for each kind of question: Consul's
 * address translation (agent/translate_addr.go: TranslateAddress, TranslateServiceAddress,
 * TranslateServicePort; agent/dns.go: nodeServiceRecords), worked out once per snapshot so an
 * answer only picks a field.
 *
 * Inputs are what the catalog holds: a default address (an IP, a hostname, or '' for a service that
 * uses its node's), and tagged addresses: `lan_ipv4`/`lan_ipv6` are the addresses for A and AAAA
 * questions; `wan`, `wan_ipv4`, `wan_ipv6` replace the default, IPv4 and IPv6 ones for questions
 * about another datacenter when --translate-wan-addrs is on (and a service's `wan` port its port).
 *
 * Per kind of question (Consul's TranslateAddressAccept):
 * - A: the IPv4 tagged address, else the default when it is IPv4 or a hostname;
 * - AAAA: the IPv6 tagged address, else the default when it is IPv6 or a hostname;
 * - SRV (and anything else): the IPv6 tagged address, else the IPv4 one, else the default.
 * An instance then uses its own address when it has one for that kind, else its node's.
 */

import { parseIp, type IpAddress } from '../net/address.js';

/** Where a question is sent: an IP address, or a hostname answered as a CNAME (external services). */
export type Endpoint =
  | {
      readonly ip: IpAddress;
      readonly host: null;
      /**
       * The instance has no address of its own for this kind and its node's is used as the node
       * holds it: an SRV target is then the node's name (`NODE.node.DC.DOMAIN`), else `.addr.`.
       */
      readonly viaNode: boolean;
    }
  | { readonly ip: null; readonly host: string; readonly viaNode: false };

/** What a node or an instance answers with, by kind of question; null: nothing for that kind. */
export interface Reach {
  readonly a: Endpoint | null;
  readonly aaaa: Endpoint | null;
  /** SRV and other kinds. */
  readonly any: Endpoint | null;
  /** The SRV port (a service's `wan` port in the WAN view). */
  readonly port: number;
}

/** Tagged addresses as sources deliver them: a node's are addresses, a service's have ports too. */
export type NodeTagged = Readonly<Record<string, string>>;
export type ServiceTagged = Readonly<Record<string, { readonly address: string; readonly port: number }>>;

/** The addresses of one view (LAN or WAN): the default and the per-family ones, as text. */
interface Candidates {
  def: string;
  v4: string;
  v6: string;
}

const enum Kind {
  A,
  AAAA,
  ANY,
}

/** A hostname as the catalog may hold it: a DNS name (LDH labels, underscores allowed), no trailing dot. */
export function parseHostname(text: string): string | null {
  const name = text.endsWith('.') ? text.slice(0, -1) : text;
  if (name === '' || name.length > 253 || parseIp(name) !== null) return null;
  for (const label of name.split('.')) {
    if (!/^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(label)) return null;
  }
  // All-numeric last label (`10.0.0.300`): a mistyped address, not a name.
  if (/^[0-9]+$/.test(name.slice(name.lastIndexOf('.') + 1))) return null;
  return name;
}

/** An IP address or a hostname; anything else is refused by the sources before it gets here. */
export function isAddressOrHostname(text: string): boolean {
  return parseIp(text) !== null || parseHostname(text) !== null;
}

function candidates(def: string, tagged: (name: string) => string | undefined, wan: boolean): Candidates {
  const c = { def, v4: tagged('lan_ipv4') ?? '', v6: tagged('lan_ipv6') ?? '' };
  if (wan) {
    c.def = tagged('wan') ?? c.def;
    c.v4 = tagged('wan_ipv4') ?? c.v4;
    c.v6 = tagged('wan_ipv6') ?? c.v6;
  }
  return c;
}

/** translateAddressAccept: the address text for a kind of question, or ''. */
function pick(c: Candidates, kind: Kind): string {
  if (kind !== Kind.A && c.v6 !== '') return c.v6;
  if (kind !== Kind.AAAA && c.v4 !== '') return c.v4;
  if (kind === Kind.ANY) return c.def;
  const ip = parseIp(c.def);
  if (ip === null) return parseHostname(c.def) !== null ? c.def : '';
  return (ip.family === 4) === (kind === Kind.A) ? c.def : '';
}

function endpoint(text: string, viaNode: boolean): Endpoint | null {
  if (text === '') return null;
  const ip = parseIp(text);
  if (ip !== null) return { ip, host: null, viaNode };
  const host = parseHostname(text);
  return host === null ? null : { ip: null, host, viaNode: false };
}

const KINDS = [Kind.A, Kind.AAAA, Kind.ANY] as const;

/** A node's reach in the LAN view, or the WAN view (`wan`). */
export function nodeReach(address: string, tagged: NodeTagged | undefined, wan: boolean): Reach {
  const c = candidates(address, (n) => tagged?.[n], wan);
  const [a, aaaa, any] = KINDS.map((k) => endpoint(pick(c, k), false));
  return { a: a!, aaaa: aaaa!, any: any!, port: 0 };
}

/**
 * An instance's reach (nodeServiceRecords): its own address for the kind when it has one (the SRV
 * target is then its `.addr.` name, or the node's name when that address is the node's own), else
 * its node's: the node's name as SRV target when the node's address is used as the node holds it,
 * `.addr.` when a tagged one was picked.
 */
export function instanceReach(
  service: { address: string; port: number; tagged: ServiceTagged | undefined },
  node: { address: string; tagged: NodeTagged | undefined },
  wan: boolean,
): Reach {
  const own = candidates(service.address, (n) => service.tagged?.[n]?.address, wan);
  const host = candidates(node.address, (n) => node.tagged?.[n], wan);
  const nodeIp = parseIp(node.address);
  const per = KINDS.map((k): Endpoint | null => {
    const mine = pick(own, k);
    if (mine !== '') return endpoint(mine, nodeIp !== null && parseIp(mine)?.text === nodeIp.text);
    const theirs = pick(host, k);
    return endpoint(theirs, theirs === node.address);
  });
  const wanPort = wan ? (service.tagged?.wan?.port ?? 0) : 0;
  return { a: per[0]!, aaaa: per[1]!, any: per[2]!, port: wanPort !== 0 ? wanPort : service.port };
}

/** Whether two reaches answer alike (a service keeps its generation only if every instance does). */
export function reachText(r: Reach): string {
  const e = (x: Endpoint | null) => (x === null ? '-' : x.ip !== null ? `${x.ip.text}${x.viaNode ? '@node' : ''}` : `host:${x.host}`);
  return `${e(r.a)} ${e(r.aaaa)} ${e(r.any)} ${r.port}`;
}
