/** Our EDNS OPT record (RFC 6891 6.1.2), as every reply svcdns builds carries it. */

import { ADVERTISED_UDP_SIZE, OPT_SIZE, RRType } from './constants.js';

/**
 * Our OPT record at `off` (RFC 6891 6.1.2): root owner, the size svcdns advertises, the upper bits of
 * the rcode, version 0 (the only one svcdns speaks), the client's DO bit, no options. Returns the end.
 */
export function writeOpt(buf: Buffer, off: number, extendedRcode: number, dnssecOk: boolean): number {
  buf[off] = 0;
  buf.writeUInt16BE(RRType.OPT, off + 1);
  buf.writeUInt16BE(ADVERTISED_UDP_SIZE, off + 3);
  buf[off + 5] = extendedRcode & 0xff;
  buf[off + 6] = 0;
  buf.writeUInt16BE(dnssecOk ? 0x8000 : 0, off + 7);
  buf.writeUInt16BE(0, off + 9);
  return off + OPT_SIZE;
}
