/**
 * The default upstreams: the `nameserver` lines of resolv.conf, as glibc and musl read them, minus
 * any address svcdns itself listens on (forwarding to ourselves would loop forever).
 */

import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { formatHostPort, parseHostPort, parseIp, stripZone, type HostPort, type ListenAddress } from '../net/address.js';

/**
 * The nameservers of a resolv.conf text, in file order. Like the libc parsers: a line is a keyword
 * and its arguments, `#` and `;` start comments, unknown keywords are ignored, and a nameserver
 * that is not an IP address is skipped (libc skips it too). resolv.conf has no port syntax: 53.
 */
/** glibc and musl use the first 3 nameservers (MAXNS) and ignore the rest. */
export const MAXNS = 3;

export function parseResolvConf(text: string): { nameservers: HostPort[]; skipped: string[] } {
  const nameservers: HostPort[] = [];
  const skipped: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [keyword, value] = line.split(/\s+/);
    if (keyword !== 'nameserver' || value === undefined) continue;
    const host = stripZone(value);
    if (isIP(host) === 0) {
      skipped.push(`${value} (not an IP address)`);
      continue;
    }
    if (nameservers.length === MAXNS) {
      skipped.push(`${value} (beyond the ${MAXNS} nameservers libc uses)`);
      continue;
    }
    nameservers.push(parseHostPort(value, 53) ?? { host: value, port: 53 });
  }
  return { nameservers, skipped };
}

/**
 * True when a query sent to `upstream` would reach svcdns itself: same port, and the same address,
 * or svcdns listens on a wildcard address that covers it (any local address of that family).
 */
export function isSelf(upstream: HostPort, listen: readonly ListenAddress[], localAddresses: readonly string[] = localInterfaceAddresses()): boolean {
  // Sending to the unspecified address reaches this host (libc reads `nameserver 0.0.0.0` so).
  const given = normalize(upstream.host);
  const host = given === '0.0.0.0' ? '127.0.0.1' : given === '::' ? '::1' : given;
  return listen.some((l) => {
    if (l.port !== upstream.port) return false;
    const at = normalize(l.host);
    if (at === host) return true;
    const wildcard = at === '0.0.0.0' ? 4 : at === '::' ? 6 : 0;
    if (wildcard === 0 || isIP(host) !== wildcard) return false;
    return isLoopback(host) || host === at || localAddresses.some((a) => normalize(a) === host);
  });
}

function localInterfaceAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
}

function isLoopback(host: string): boolean {
  return host === '::1' || /^127\./.test(host);
}

/** The canonical text of an address, without an IPv6 zone. */
function normalize(host: string): string {
  const bare = stripZone(host);
  return parseIp(bare)?.text ?? bare.toLowerCase();
}

export interface UpstreamChoice {
  upstreams: HostPort[];
  /** Where they came from, for the startup log. */
  from: string;
  /** Nameservers left out and why (loops, unusable lines), for the startup log. */
  leftOut: string[];
  /** Set when there are none: why. */
  none?: string;
  /** There are none although the configuration meant some: unreadable file, or only svcdns itself. */
  unusable?: boolean;
}

/**
 * The upstreams for a configuration: --upstream as given (one that is svcdns itself is an error:
 * it would loop), else the nameservers of the resolv.conf file minus svcdns's own addresses.
 */
export async function chooseUpstreams(
  given: readonly HostPort[] | null,
  resolvConf: string,
  listen: readonly ListenAddress[],
  read: (path: string) => Promise<string>,
): Promise<UpstreamChoice> {
  if (given !== null) {
    const loops = given.filter((u) => isSelf(u, listen));
    if (loops.length > 0) throw new Error(`upstream ${loops.map(formatHostPort).join(', ')} is svcdns's own listen address: forwarding to it would loop`);
    return { upstreams: [...given], from: '--upstream', leftOut: [], ...(given.length === 0 && { none: '--upstream lists none' }) };
  }
  let text: string;
  try {
    text = await read(resolvConf);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? String(err);
    return { upstreams: [], from: resolvConf, leftOut: [], none: `cannot read ${resolvConf}: ${why}`, unusable: true };
  }
  const { nameservers, skipped } = parseResolvConf(text);
  const upstreams = nameservers.filter((u) => !isSelf(u, listen));
  const leftOut = [
    ...skipped,
    ...nameservers.filter((u) => isSelf(u, listen)).map((u) => `${formatHostPort(u)} (svcdns itself: a loop)`),
  ];
  const none =
    upstreams.length > 0 ? undefined : nameservers.length > 0 ? `every nameserver in ${resolvConf} is svcdns itself` : `${resolvConf} has no nameserver lines`;
  return { upstreams, from: resolvConf, leftOut, ...(none !== undefined && { none, unusable: nameservers.length > 0 }) };
}
