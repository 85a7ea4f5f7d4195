/**
 * The ceiling for a DNS server written in Node: a bare UDP socket that answers every datagram with
 * one fixed, pre-encoded reply, only its 2-byte ID patched. No parsing, no lookup, no logging;
 * the socket options are svcdns's own (docs/udp-facts.md): `lookup` returning the
 * address as given (no dns.lookup and nextTick per send) and a 1 MiB receive buffer.
 *
 * Usage: node bare-udp.js PORT REPLY_HEX [reuseport]   (listens on 127.0.0.1:PORT)
 * With `reuseport`, the socket is bound with dgram's reusePort (Node 22.12+): several of these
 * processes on one port, the kernel spreading the flows, are the ceiling for --workers reusePort.
 *
 * bench-dns.ts transpiles this file and runs the JavaScript with plain node (no tsx in the process).
 */

import { createSocket, type SocketOptions } from 'node:dgram';

const [portArg, replyHex, mode] = process.argv.slice(2);
const reply = Buffer.from(replyHex ?? '', 'hex');
if (!portArg || reply.length < 12) {
  process.stderr.write('usage: bare-udp PORT REPLY_HEX\n');
  process.exit(2);
}

const reusePort = mode === 'reuseport';
// `reusePort` is not in the @types/node this tree builds with (Node 20's).
const options = { type: 'udp4', recvBufferSize: 1 << 20, lookup: (address, _options, callback) => callback(null, address, 4), reusePort } as SocketOptions;
const socket = createSocket(options);
socket.on('message', (query, rinfo) => {
  if (query.length < 12 || rinfo.port === 0) return;
  // A copy per reply: send() may still hold the buffer after it returns.
  const out = Buffer.from(reply);
  out[0] = query[0]!;
  out[1] = query[1]!;
  socket.send(out, rinfo.port, rinfo.address);
});
socket.bind({ port: Number(portArg), address: '127.0.0.1', exclusive: true });
socket.on('error', (err) => {
  process.stderr.write(`bare-udp: ${err.message}\n`);
  process.exit(1);
});
process.on('SIGTERM', () => socket.close(() => process.exit(0)));
