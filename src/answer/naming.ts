/**
 * The Consul DNS name grammar, as pure functions of a question's lower-cased labels.
 *
 * Grammar (after the domain suffix is removed; DOMAIN is --domain or --alt-domain):
 *
 *   name     = DOMAIN                                  ; apex: SOA, NS
 *            / service-name / node-name / addr-name / mesh-name / virtual-name
 *   service  = [TAG "."] SERVICE ".service" [dc] "." DOMAIN
 *            / "_" SERVICE "._" TAG ".service" [dc] "." DOMAIN   ; RFC 2782; _tcp/_udp: no tag
 *   srv      = "_" SERVICE "._" TAG [dc] "." DOMAIN    ; RFC 2782 without "service": SRV only
 *   node     = NODE ".node" [dc] "." DOMAIN
 *   addr     = HEX ".addr" [dc] "." DOMAIN             ; HEX: 8 (IPv4) or 32 (IPv6) hex digits
 *   query    = NAME ".query" [dc] "." DOMAIN            ; a prepared query; NAME may contain dots
 *            / "_" NAME "._" PROTO ".query" [dc] "." DOMAIN ; RFC 2782; PROTO is ignored
 *   mesh     = *(LABEL ".") SERVICE (".connect" / ".ingress") [dc] "." DOMAIN
 *   virtual  = *(LABEL ".") SERVICE ".virtual" [dc] "." DOMAIN
 *   dc       = "." DC / "." DC ".dc"                   ; one label; omitted: the local datacenter
 *
 * Empty non-terminals (`service.consul`, `service.dc1.consul`, `dc1.consul`, `_tcp.service.consul`,
 * `_tcp.consul`) are `structural`: they exist (names live below them) but hold no records, so they
 * get NODATA.
 *
 * The `srv` form is Consul's (agent/dns.go `dispatch`): reading from the right, a label starting
 * with `_` before any lookup kind makes the name a service lookup whose labels are those up to it
 * and whose datacenter is what follows it. Consul takes it for SRV questions only (other types get
 * NXDOMAIN there); the answerer serves it for SRV and gives other types NODATA where the SRV exists.
 *
 * As in Consul's parser, the labels are read from the right: the last is the lookup kind
 * ("service", "node", "addr", "connect", "ingress", "virtual") or else a datacenter, and only one
 * datacenter label may stand between the kind and the domain. A TAG may itself contain dots (everything left of SERVICE).
 * Anything else inside the domain is `invalid` (NXDOMAIN). Before `.connect`, `.ingress` and
 * `.virtual` only the last label counts (the service): Consul ignores the labels left of it and
 * filters no tag there. `.virtual`'s label after it is, in Consul, a peer or the datacenter.
 *
 * Reverse names (`d.c.b.a.in-addr.arpa`, 32 nibbles `.ip6.arpa`) are parsed by `parseReverseName`.
 */

import { ipFromBytes, type IpAddress } from '../net/address.js';

export type ConsulName =
  | { kind: 'apex' }
  | { kind: 'service'; service: string; tag: string | null; dc: string | null }
  /** `_NAME._TAG[.DC].DOMAIN`: the RFC 2782 form without the `service` label. Only SRV records live here. */
  | { kind: 'srv'; service: string; tag: string | null; dc: string | null }
  | { kind: 'node'; node: string; dc: string | null }
  | { kind: 'addr'; address: IpAddress; dc: string | null }
  /** A prepared query by name or ID; `dc`: the datacenter to execute it in (null: the local one). */
  | { kind: 'query'; name: string; dc: string | null }
  /** `NAME.connect` (sidecar proxies, Connect-native instances) and `NAME.ingress` (ingress gateways). */
  | { kind: 'mesh'; lookup: 'connect' | 'ingress'; service: string; dc: string | null }
  /** `NAME.virtual`: the service's virtual IP. */
  | { kind: 'virtual'; service: string; dc: string | null }
  /** An empty non-terminal: `service.consul`, `dc1.consul`, `_tcp.service.consul`. Exists, no records. */
  | { kind: 'structural'; dc: string | null }
  | { kind: 'invalid' };

export interface DomainMatch {
  /** Index into the configured domains: 0 = --domain, 1 = --alt-domain. */
  index: number;
  /** Labels left of the domain, lower-case. */
  rest: string[];
}

/** Splits a dotted domain setting into lower-case labels ('consul.' -> ['consul']). */
export function domainLabels(domain: string): string[] {
  return domain
    .toLowerCase()
    .split('.')
    .filter((l) => l !== '');
}

/** Finds which configured domain (label lists) `labels` falls under; the longest match wins. */
export function matchDomain(labels: readonly string[], domains: readonly (readonly string[])[]): DomainMatch | null {
  let best: DomainMatch | null = null;
  let bestLength = -1;
  domains.forEach((domain, index) => {
    if (domain.length > labels.length || domain.length <= bestLength) return;
    const offset = labels.length - domain.length;
    for (let i = 0; i < domain.length; i++) if (labels[offset + i] !== domain[i]) return;
    best = { index, rest: labels.slice(0, offset) };
    bestLength = domain.length;
  });
  return best;
}

/** Parses the labels left of the domain (lower-case) into a lookup. */
export function parseConsulName(rest: readonly string[]): ConsulName {
  let labels = rest;
  if (labels.length === 0) return { kind: 'apex' };
  const underscore = bareSrvLabel(labels);
  if (underscore >= 0) return parseBareSrv(labels.slice(0, underscore + 1), labels.slice(underscore + 1));
  let dc: string | null = null;
  const last = labels[labels.length - 1]!;
  if (last === 'dc' && labels.length >= 2 && (labels.length === 2 || isKind(labels[labels.length - 3]!))) {
    // Explicit form: ... .service.DC.dc.DOMAIN
    dc = labels[labels.length - 2]!;
    labels = labels.slice(0, -2);
  } else if (!isKind(last)) {
    dc = last;
    labels = labels.slice(0, -1);
  }
  const n = labels.length;
  if (n === 0) return { kind: 'structural', dc };
  if (n === 1) return isKind(labels[0]!) ? { kind: 'structural', dc } : { kind: 'invalid' };
  const kind = labels[n - 1]!;
  const parts = labels.slice(0, n - 1);
  switch (kind) {
    case 'service':
      return parseService(parts, dc);
    case 'node':
      return { kind: 'node', node: parts.join('.'), dc };
    case 'addr': {
      if (parts.length !== 1) return { kind: 'invalid' };
      const address = parseHexAddress(parts[0]!);
      return address ? { kind: 'addr', address, dc } : { kind: 'invalid' };
    }
    case 'query':
      return parseQuery(parts, dc);
    case 'connect':
    case 'ingress':
      return { kind: 'mesh', lookup: kind, service: parts[parts.length - 1]!, dc };
    case 'virtual':
      return { kind: 'virtual', service: parts[parts.length - 1]!, dc };
    default:
      return { kind: 'invalid' };
  }
}

/**
 * Where the RFC 2782 form without `service` ends: the index of the rightmost label starting with
 * `_`, when no lookup kind stands to its right; else -1.
 */
function bareSrvLabel(labels: readonly string[]): number {
  for (let i = labels.length - 1; i >= 0; i--) {
    if (isKind(labels[i]!)) return -1;
    if (labels[i]!.startsWith('_')) return i;
  }
  return -1;
}

/** `_NAME._TAG` (or `_TAG` alone, the empty non-terminal above it) and then at most a datacenter. */
function parseBareSrv(parts: readonly string[], suffix: readonly string[]): ConsulName {
  let dc: string | null;
  if (suffix.length === 0) dc = null;
  else if (suffix.length === 1) dc = suffix[0]!;
  else if (suffix.length === 2 && suffix[1] === 'dc') dc = suffix[0]!;
  else return { kind: 'invalid' };
  if (parts.length === 1) return { kind: 'structural', dc };
  if (parts.length !== 2 || !parts[0]!.startsWith('_')) return { kind: 'invalid' };
  const service = parts[0]!.slice(1);
  const tag = parts[1]!.slice(1);
  if (service === '' || tag === '') return { kind: 'invalid' };
  return { kind: 'srv', service, tag: tag === 'tcp' || tag === 'udp' ? null : tag, dc };
}

function isKind(label: string): boolean {
  return label === 'service' || label === 'node' || label === 'addr' || label === 'connect' || label === 'ingress' || label === 'virtual' || label === 'query';
}

/**
 * As Consul's dispatch: `_NAME._PROTO.query` (first and last labels starting with `_`) is the RFC
 * 2782 form, the query being every label but the last with the first `_` removed; otherwise all
 * the labels joined are the query's name or ID.
 */
function parseQuery(parts: readonly string[], dc: string | null): ConsulName {
  const n = parts.length;
  if (n >= 2 && parts[0]!.startsWith('_') && parts[n - 1]!.startsWith('_')) {
    const name = parts.slice(0, -1).join('.').slice(1);
    return name === '' ? { kind: 'invalid' } : { kind: 'query', name, dc };
  }
  return { kind: 'query', name: parts.join('.'), dc };
}

function parseService(parts: readonly string[], dc: string | null): ConsulName {
  // `_tcp.service.consul` lies above `_web._tcp.service.consul`; catalog names never start with '_'.
  if (parts.length === 1 && parts[0]!.startsWith('_')) return { kind: 'structural', dc };
  if (parts.length === 2 && parts[0]!.startsWith('_') && parts[1]!.startsWith('_')) {
    const service = parts[0]!.slice(1);
    const tag = parts[1]!.slice(1);
    if (service === '' || tag === '') return { kind: 'invalid' };
    return { kind: 'service', service, tag: tag === 'tcp' || tag === 'udp' ? null : tag, dc };
  }
  const service = parts[parts.length - 1]!;
  const tag = parts.length > 1 ? parts.slice(0, -1).join('.') : null;
  return { kind: 'service', service, tag, dc };
}

/** `c0a80001` -> 192.168.0.1; 32 hex digits -> an IPv6 address; anything else -> null. */
export function parseHexAddress(hex: string): IpAddress | null {
  if ((hex.length !== 8 && hex.length !== 32) || !/^[0-9a-f]+$/.test(hex)) return null;
  return ipFromBytes(Buffer.from(hex, 'hex'));
}

/** The `.addr.` label for an address: 192.168.0.1 -> `c0a80001`. */
export function hexAddress(address: IpAddress): string {
  return address.bytes.toString('hex');
}

/**
 * Parses a full reverse-lookup name (lower-case labels) into the address it names:
 * `1.0.168.192.in-addr.arpa` -> 192.168.0.1, 32 nibbles + `ip6.arpa` -> an IPv6 address.
 * Partial (network) names and anything malformed give null.
 */
export function parseReverseName(labels: readonly string[]): IpAddress | null {
  const n = labels.length;
  if (n === 6 && labels[4] === 'in-addr' && labels[5] === 'arpa') {
    const bytes = Buffer.alloc(4);
    for (let i = 0; i < 4; i++) {
      const l = labels[3 - i]!;
      if (!/^(0|[1-9][0-9]{0,2})$/.test(l) || Number(l) > 255) return null;
      bytes[i] = Number(l);
    }
    return ipFromBytes(bytes);
  }
  if (n === 34 && labels[32] === 'ip6' && labels[33] === 'arpa') {
    let hex = '';
    for (let i = 31; i >= 0; i--) {
      const l = labels[i]!;
      if (!/^[0-9a-f]$/.test(l)) return null;
      hex += l;
    }
    return ipFromBytes(Buffer.from(hex, 'hex'));
  }
  return null;
}

/** True for names under in-addr.arpa or ip6.arpa. */
export function isReverseName(labels: readonly string[]): boolean {
  const n = labels.length;
  return n >= 2 && labels[n - 1] === 'arpa' && (labels[n - 2] === 'in-addr' || labels[n - 2] === 'ip6');
}
