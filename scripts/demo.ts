/**
 * `npm run demo`: svcdns watching a (simulated) Consul that changes under it.
 *
 * Starts the Consul HTTP API simulator on 127.0.0.1:8500, svcdns on 127.0.0.1:8600 with
 * `--consul http://127.0.0.1:8500`, then changes the catalog every few seconds (instances come
 * and go, checks flip) and prints what changed and a dig command to see it. Ctrl-C stops both;
 * the demo also ends by itself after 10 minutes. Loopback only.
 */

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConsulSim } from '../test/support/consul-sim.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CONSUL_PORT = Number(process.env.DEMO_CONSUL_PORT ?? 8500);
const DNS = process.env.DEMO_LISTEN ?? '127.0.0.1:8600';
const [dnsHost, dnsPort] = DNS.split(':') as [string, string];

const sim = new ConsulSim({ datacenters: ['dc1', 'dc2'] });
await sim.start(CONSUL_PORT);
sim.registerNode('dc1', { Node: 'consul-1', Address: '10.10.0.1' });
sim.registerService('dc1', 'consul-1', { ID: 'consul', Service: 'consul', Port: 8300 });
for (let i = 1; i <= 3; i++) {
  sim.registerNode('dc1', { Node: `app-${i}`, Address: `10.10.1.${i}`, Meta: { rack: `r${i}` } });
  sim.registerService('dc1', `app-${i}`, { ID: `web-${i}`, Service: 'web', Port: 8080, Tags: [i === 3 ? 'v2' : 'v1'], Weights: { Passing: 10, Warning: 1 } });
  sim.setCheck('dc1', `app-${i}`, { CheckID: 'serfHealth', Status: 'passing' });
  // The service mesh: a sidecar proxy beside each web instance (web.connect.consul SRV, web.virtual.consul).
  sim.registerMeshService('dc1', `app-${i}`, { ID: `web-${i}-sidecar-proxy`, Service: 'web-sidecar-proxy', Kind: 'connect-proxy', Port: 21000, Proxy: { DestinationServiceName: 'web' } }, { virtualIps: true });
}
sim.registerNode('dc1', { Node: 'db-1', Address: '10.10.2.1' });
sim.registerService('dc1', 'db-1', { ID: 'postgres-1', Service: 'postgres', Port: 5432, Tags: ['primary'] });
sim.registerNode('dc2', { Node: 'app-eu-1', Address: '10.20.1.1' });
sim.registerService('dc2', 'app-eu-1', { ID: 'web-eu-1', Service: 'web', Port: 8080 });

const svcdns = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', '--listen', DNS, '--consul', sim.url, '--log-format', 'pretty'], {
  cwd: ROOT,
  stdio: 'inherit',
});
let stopping = false;
async function stop(code: number): Promise<never> {
  stopping = true;
  svcdns.kill('SIGTERM');
  await sim.stop();
  process.exit(code);
}
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));
svcdns.on('exit', (code) => {
  if (!stopping) void stop(code ?? 1);
});

const dig = (name: string, type = 'A') => `dig @${dnsHost} -p ${dnsPort} ${name} ${type} +short`;
await sleep(2000);
console.log(`\nConsul simulator on ${sim.url}; svcdns on ${DNS}. Try:\n  ${dig('web.service.consul')}\n  ${dig('_web._tcp.service.consul', 'SRV')}\n  ${dig('web.service.dc2.consul')}\n`);

const events: [string, () => void, string][] = [
  ['app-2 web check goes critical', () => sim.setCheck('dc1', 'app-2', { CheckID: 'web-http', ServiceID: 'web-2', Status: 'critical' }), dig('web.service.consul')],
  ['app-2 web check passes again', () => sim.setCheck('dc1', 'app-2', { CheckID: 'web-http', ServiceID: 'web-2', Status: 'passing' }), dig('web.service.consul')],
  ['app-4 joins with web (tag v2)', () => {
    sim.registerNode('dc1', { Node: 'app-4', Address: '10.10.1.4' });
    sim.registerService('dc1', 'app-4', { ID: 'web-4', Service: 'web', Port: 8080, Tags: ['v2'] });
  }, dig('v2.web.service.consul')],
  ['app-3 web check warns (SRV weight 10 -> 1)', () => sim.setCheck('dc1', 'app-3', { CheckID: 'web-http', ServiceID: 'web-3', Status: 'warning' }), dig('web.service.consul', 'SRV')],
  ['app-1 node fails (serfHealth critical)', () => sim.setCheck('dc1', 'app-1', { CheckID: 'serfHealth', Status: 'critical' }), dig('web.service.consul')],
  ['app-4 leaves', () => sim.deregisterNode('dc1', 'app-4'), dig('v2.web.service.consul')],
  ['app-1 node recovers, app-3 passes', () => {
    sim.setCheck('dc1', 'app-1', { CheckID: 'serfHealth', Status: 'passing' });
    sim.setCheck('dc1', 'app-3', { CheckID: 'web-http', ServiceID: 'web-3', Status: 'passing' });
  }, dig('web.service.consul')],
];

const end = Date.now() + 10 * 60_000;
for (let i = 0; Date.now() < end && !stopping; i++) {
  await sleep(5000);
  const [what, change, hint] = events[i % events.length]!;
  change();
  console.log(`\n[consul] ${what}\n  ${hint}`);
}
await stop(0);
