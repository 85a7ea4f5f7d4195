import dnsPacket from 'dns-packet';
import { startServer } from '../test/support/server.js';
import { catalogYaml } from '../scripts/bench/zones.js';
const ts = await startServer({ catalog: catalogYaml() });
const h = ts.server.handler;
const rinfo = { address: '127.0.0.1', port: 5555, family: 'IPv4', size: 0 } as never;
const q = (name: string, type: string) => dnsPacket.encode({ id: 7, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: type as 'A' }], additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096 } as never] });
for (const [name, type] of [['svc3.service.consul', 'A'], ['svc3.service.consul', 'SRV'], ['svc20.service.consul', 'A'], ['svc20.service.consul', 'SRV']]) {
  const p = q(name!, type!);
  for (let i = 0; i < 50000; i++) h(p, 'udp', rinfo);
  const N = 1_000_000;
  const t0 = process.hrtime.bigint();
  let bytes = 0;
  for (let i = 0; i < N; i++) bytes += (h(p, 'udp', rinfo) as Buffer).length;
  const ns = Number(process.hrtime.bigint() - t0) / N;
  console.log(name, type, ns.toFixed(0), 'ns/query', (bytes / N).toFixed(0), 'B', JSON.stringify(ts.server.replyCache.stats()));
}
const N = 1_000_000; const reply = Buffer.alloc(1340); const t0 = process.hrtime.bigint();
for (let i = 0; i < N; i++) { const o = Buffer.from(reply); o[0] = 1; }
console.log('Buffer.from 1340 B', (Number(process.hrtime.bigint() - t0) / N).toFixed(0), 'ns');
await ts.close();
