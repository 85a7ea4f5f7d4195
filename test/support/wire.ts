/**
 * DNS messages byte by byte, for tests that build what no well-behaved encoder would: the numbers
 * are written out here so the tests do not borrow the server's own constants.
 */

export const T = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, DNAME: 39, OPT: 41, RRSIG: 46, HTTPS: 65, TSIG: 250, ANY: 255, CAA: 257 } as const;
export const QR = 0x8000;
export const AA = 0x0400;
export const TC = 0x0200;
export const RD = 0x0100;
export const RA = 0x0080;
export const Z = 0x0040;
export const AD = 0x0020;
export const CD = 0x0010;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export function hex(b: Buffer, max = 160): string {
  return b.length > max ? `${b.subarray(0, max).toString('hex')}… (${b.length} bytes)` : `${b.toString('hex')} (${b.length} bytes)`;
}

export function u16(...values: number[]): Buffer {
  const b = Buffer.alloc(2 * values.length);
  values.forEach((v, i) => b.writeUInt16BE(v & 0xffff, 2 * i));
  return b;
}

export function header(id: number, flags: number, qd: number, an = 0, ns = 0, ar = 0): Buffer {
  return u16(id, flags, qd, an, ns, ar);
}

/** One resource record from its owner bytes (a name or a pointer) and rdata. */
export function rr(owner: Buffer, type: number, ttl: number, rdata: Buffer): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(type, 0);
  fixed.writeUInt16BE(1, 2);
  fixed.writeUInt32BE(ttl >>> 0, 4);
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([owner, fixed, rdata]);
}

export function wireName(name: string): Buffer {
  if (name === '' || name === '.') return Buffer.from([0]);
  return Buffer.concat([...name.split('.').flatMap((l) => [Buffer.from([l.length]), Buffer.from(l, 'latin1')]), Buffer.from([0])]);
}

export function pointer(to: number): Buffer {
  return u16(0xc000 | to);
}

/** A message's header, read. */
export interface Header {
  id: number;
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  rcode: number;
  counts: [number, number, number, number];
}

export function readHeader(b: Buffer): Header {
  const flags = b.readUInt16BE(2);
  return {
    id: b.readUInt16BE(0),
    qr: (flags & QR) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & RD) !== 0,
    rcode: flags & 0xf,
    counts: [b.readUInt16BE(4), b.readUInt16BE(6), b.readUInt16BE(8), b.readUInt16BE(10)],
  };
}

/** End of the (single, uncompressed) question of a well-formed query. */
export function questionEnd(query: Buffer): number {
  let off = 12;
  while (query[off] !== 0) off += 1 + query[off]!;
  return off + 5;
}
