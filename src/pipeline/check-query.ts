/**
 * Stage: what is not a question svcdns answers gets its verdict here, before any stage reads the
 * question (miekg/dns's order: header first, then the body).
 * - No readable header, or a response (QR set): dropped, no reply at all (a reply could be used to
 *   bounce or amplify traffic, or start a ping-pong between two servers).
 * - A readable header but not one well-formed standard query: FORMERR or NOTIMP, no question.
 * - EDNS version other than 0: BADVERS (RFC 6891 6.1.3). Class other than IN/ANY: REFUSED. Zone
 *   transfers (AXFR/IXFR): REFUSED; svcdns has no zone to transfer.
 * Everything else goes on.
 */

import { Rcode, RRClass, RRType } from '../dns/constants.js';
import { errorReply } from '../dns/wire.js';
import { NEXT, type Request, type Stage, type StageResult } from './stage.js';

export const checkQuery: Stage = {
  name: 'check-query',
  handle(request: Request): StageResult {
    const read = request.read;
    if (read.kind === 'drop') return { bytes: null };
    if (read.kind === 'error') return { bytes: errorReply(read.id, read.flags, read.rcode, read.edns), rcode: read.rcode };
    const query = read.query;
    if (query.edns && query.edns.version !== 0) return request.fail(Rcode.BADVERS);
    if (query.class !== RRClass.IN && query.class !== RRClass.ANY) return request.fail(Rcode.REFUSED);
    if (query.type === RRType.AXFR || query.type === RRType.IXFR) return request.fail(Rcode.REFUSED);
    return NEXT;
  },
};
