/** Catalogs used by the tests, written as users write them. */

export const CATALOG = `
datacenter: dc1
nodes:
  - name: node1
    address: 10.0.0.1
    meta: {rack: r1, rfc1035-note: raw value}
    services:
      - {name: web, id: web1, port: 80, tags: [v1, Primary]}
      - {name: db, id: db1, port: 5432, tags: [primary], weights: {passing: 10, warning: 2}}
      - {name: consul, port: 8300}
      - {name: rr, id: rr1, port: 1}
  - name: node2
    address: 10.0.0.2
    services:
      - {name: web, id: web2, port: 80, tags: [v2, canary.eu]}
      - {name: db, id: db2, port: 5432, tags: [replica], weights: {passing: 10, warning: 2}, health: warning}
      - {name: cache, id: cache1, port: 6379, address: 10.0.1.5}
      - {name: rr, id: rr2, port: 2}
  - name: node3
    address: 10.0.0.3
    services:
      - {name: web, id: web3, port: 8080, tags: [v2], health: critical}
      - {name: down, id: down1, port: 1, health: critical}
      - {name: rr, id: rr3, port: 3}
  - name: node6
    address: "2001:db8::6"
    services:
      - {name: v6only, port: 443}
      - {name: dual, id: dual6, port: 443}
  - name: node4
    address: 10.0.0.4
    services:
      - {name: dual, id: dual4, port: 443}
  - name: longmeta
    address: 10.0.0.9
    meta: {note: ${'x'.repeat(300)}}
  - name: far1
    datacenter: dc2
    address: 10.2.0.1
    services:
      - {name: web, id: web-dc2, port: 80}
`;

/** A catalog with `count` instances of each named service, each instance on its own node 10.x.y.z. */
export function bigCatalog(services: Record<string, number>): string {
  const nodes: string[] = [];
  Object.entries(services).forEach(([name, count], s) => {
    for (let i = 0; i < count; i++) {
      const address = `10.${10 + s}.${Math.floor(i / 250)}.${(i % 250) + 1}`;
      nodes.push(`  - {name: ${name}-n${i}, address: ${address}, services: [{name: ${name}, id: ${name}-${i}, port: ${8000 + i}}]}`);
    }
  });
  return `nodes:\n${nodes.join('\n')}\n`;
}
