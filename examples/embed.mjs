// svcdns inside a Node program: serve a catalog object, query it, replace it, stop.
// Run from this package: node examples/embed.mjs (elsewhere, after npm install svcdns).
import { Resolver } from 'node:dns/promises';
import { createServer } from 'svcdns';

/** A catalog in the catalog file's shape: one node, one instance of `web` on it. */
const catalog = (address) => ({
  nodes: [{ name: 'node-1', address, services: [{ name: 'web', port: 8080 }] }],
});

// Port 0: any free port; `addresses` says which one it got.
const server = await createServer({ listen: ['127.0.0.1:0'], serviceTtl: 5, catalog: catalog('10.0.0.1') });
const { host, port } = server.addresses[0];

const resolver = new Resolver();
resolver.setServers([`${host}:${port}`]);
const show = async (when) => {
  const [srv] = await resolver.resolveSrv('web.service.consul');
  console.log(`${when}: web at ${(await resolver.resolve4('web.service.consul')).join(', ')} port ${srv.port}`);
};
await show('first');

await server.setCatalog(catalog('10.0.0.2'));
await show('replaced');

// A bad catalog is rejected with every problem, and the last good one keeps serving.
await server.setCatalog({ nodes: [{ name: 'node 2', services: [{ name: 'web' }] }] }).catch((err) => console.log(err.message));
await show('kept');
await server.close();
