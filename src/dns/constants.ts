/**
 * DNS numbers used across svcdns (RFC 1035, RFC 3596, RFC 2782, RFC 6891).
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
  OPT: 41,
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

export const HEADER_SIZE = 12;
/** The classic UDP payload limit for clients that send no EDNS OPT record (RFC 1035 4.2.1). */
export const MIN_UDP_SIZE = 512;
/** The largest UDP payload svcdns will send, whatever the client advertises. */
export const MAX_UDP_SIZE = 4096;
/** The largest message that fits a TCP frame's 2-byte length (RFC 1035 4.2.2). */
export const MAX_TCP_SIZE = 65535;
/** The UDP payload size svcdns advertises in its own OPT record. */
export const ADVERTISED_UDP_SIZE = 1232;
