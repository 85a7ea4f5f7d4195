/**
 * DNS numbers used across svcdns (RFC 1035, RFC 3596, RFC 2782, RFC 6891 and the RFCs named below):
 * record types, classes, rcodes, header bits, sizes and the limits of names and strings.
 * Plain objects rather than enums so every module, and tsx, sees the same values.
 */

export const RRType = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  DNAME: 39,
  OPT: 41,
  /** A meta-record signing one message (RFC 8945): never passed on. */
  TSIG: 250,
  /** Zone transfers, question types only (RFC 1995, RFC 5936). */
  IXFR: 251,
  AXFR: 252,
  ANY: 255,
} as const;

export const RRClass = {
  IN: 1,
  CH: 3,
  ANY: 255,
} as const;

export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  /** Extended rcode 16: carried as 1 in the OPT TTL's upper byte and 0 in the header. */
  BADVERS: 16,
} as const;

export const Opcode = {
  QUERY: 0,
} as const;

/** Header flag bits in the 16-bit flags word (RFC 1035 4.1.1, RFC 4035 for AD/CD). */
export const Flag = {
  QR: 0x8000,
  AA: 0x0400,
  TC: 0x0200,
  RD: 0x0100,
  RA: 0x0080,
  AD: 0x0020,
  CD: 0x0010,
} as const;

/** The opcode's four bits in the flags word (0 is QUERY). */
export const OPCODE_MASK = 0x7800;

export const HEADER_SIZE = 12;
/** A label holds at most 63 bytes; length bytes 0x40-0xbf are other label types, 0xc0-0xff pointers (RFC 1035 2.3.4, 4.1.4). */
export const MAX_LABEL_LENGTH = 63;
/** A name is at most 255 bytes on the wire, length bytes and the root label included (RFC 1035 2.3.4). */
export const MAX_NAME_LENGTH = 255;
/** A character-string (TXT) holds at most 255 bytes after its length byte (RFC 1035 3.3). */
export const MAX_CHARACTER_STRING_LENGTH = 255;
/** Our OPT record, and the only one the hot path reads: root owner, no options (RFC 6891 6.1.2). */
export const OPT_SIZE = 11;
/** The classic UDP payload limit for clients that send no EDNS OPT record (RFC 1035 4.2.1). */
export const MIN_UDP_SIZE = 512;
/** The largest UDP payload svcdns will send, whatever the client advertises. */
export const MAX_UDP_SIZE = 4096;
/** The largest message that fits a TCP frame's 2-byte length (RFC 1035 4.2.2). */
export const MAX_TCP_SIZE = 65535;
/** The UDP payload size svcdns advertises in its own OPT record. */
export const ADVERTISED_UDP_SIZE = 1232;

/** Types svcdns never builds but clients ask for often enough that logs and metrics should name them. */
const OTHER_TYPES = { HINFO: 13, NAPTR: 35, DS: 43, SSHFP: 44, RRSIG: 46, NSEC: 47, DNSKEY: 48, TLSA: 52, SVCB: 64, HTTPS: 65, CAA: 257 } as const;
const TYPE_NAMES = new Map<number, string>([...Object.entries(RRType), ...Object.entries(OTHER_TYPES)].map(([name, value]) => [value, name]));
const RCODE_NAMES = new Map<number, string>(Object.entries(Rcode).map(([name, value]) => [value, name]));

/** A record type as people write it: `A`, `SRV`; types without a name here as RFC 3597 writes them, `TYPE65`. */
export function typeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `TYPE${type}`;
}

/** Whether `typeName` knows the type by name (metrics label the rest `other`, so labels stay few). */
export function isNamedType(type: number): boolean {
  return TYPE_NAMES.has(type);
}

/** An rcode as people write it: `NOERROR`, `NXDOMAIN`; others as `RCODE11`. */
export function rcodeName(rcode: number): string {
  return RCODE_NAMES.get(rcode) ?? `RCODE${rcode}`;
}
