/**
 * TLS to Consul, as CONSUL_CACERT / CONSUL_TLS_SERVER_NAME / CONSUL_HTTP_SSL_VERIFY /
 * CONSUL_CLIENT_CERT / CONSUL_CLIENT_KEY users expect: the simulator serves HTTPS with certificates
 * made here by openssl, and svcdns's answers show whether it trusted the server.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConsulSim } from '../support/consul-sim.js';
import { dig } from '../support/dig.js';
import { startServer } from '../support/server.js';

const run = promisify(execFile);

interface Pki {
  dir: string;
  ca: string;
  serverKey: string;
  serverCert: string;
  clientKey: string;
  clientCert: string;
}

/** A CA, a server certificate for server.dc1.consul only (not 127.0.0.1), and a client certificate. */
async function makePki(): Promise<Pki> {
  const dir = await mkdtemp(join(tmpdir(), 'svcdns-pki-'));
  const ossl = (...args: string[]) => run('openssl', args, { cwd: dir, timeout: 20_000 });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await ossl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=svcdns test CA');
  await writeFile(join(dir, 'server.ext'), 'subjectAltName=DNS:server.dc1.consul\n');
  await ossl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=server.dc1.consul');
  await ossl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext');
  await ossl('req', ...ec, '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=svcdns');
  await ossl('x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.pem', '-days', '2');
  const file = (name: string) => join(dir, name);
  return { dir, ca: file('ca.pem'), serverKey: file('server.key'), serverCert: file('server.pem'), clientKey: file('client.key'), clientCert: file('client.pem') };
}

function seed(sim: ConsulSim): void {
  sim.registerNode('dc1', { Node: 'n1', Address: '10.0.0.1' });
  sim.registerService('dc1', 'n1', { ID: 'web1', Service: 'web', Port: 80 });
}

/** Starts svcdns against `sim` with `flags`; resolves with the web answer once settled (bounded) and the logs. */
async function webAnswer(sim: ConsulSim, flags: Record<string, string>, expectServed: boolean): Promise<{ status: string; logs: Record<string, unknown>[] }> {
  const logs: Record<string, unknown>[] = [];
  const s = await startServer({ flags: { 'consul-wait': '2s', consul: sim.url, ...flags }, logs });
  try {
    const deadline = Date.now() + 5000;
    for (;;) {
      const r = await dig(s.port, ['web.service.consul']);
      if (r.status === 'NOERROR' || Date.now() > deadline) return { status: r.status, logs };
      if (!expectServed && logs.some((l) => l.msg === 'consul failing')) return { status: r.status, logs };
      await sleep(50);
    }
  } finally {
    await s.close();
  }
}

describe('HTTPS to Consul', () => {
  let pki: Pki;
  let sim: ConsulSim;
  before(async () => {
    pki = await makePki();
    sim = new ConsulSim({ tls: { key: await readFile(pki.serverKey, 'utf8'), cert: await readFile(pki.serverCert, 'utf8') } });
    await sim.start();
    seed(sim);
  });
  after(async () => {
    await sim.stop();
    await rm(pki.dir, { recursive: true, force: true });
  });

  test('with the CA and the name on the certificate (--consul-tls-server-name), answers are served', async () => {
    const r = await webAnswer(sim, { 'consul-cacert': pki.ca, 'consul-tls-server-name': 'server.dc1.consul' }, true);
    assert.equal(r.status, 'NOERROR');
  });

  test('without the CA the server is not trusted: SERVFAIL, and the log says why', async () => {
    const r = await webAnswer(sim, {}, false);
    assert.equal(r.status, 'SERVFAIL');
    const warn = r.logs.find((l) => l.msg === 'consul failing');
    assert.ok(warn, 'a failure is logged');
    assert.match(String(warn.error), /certificate/i);
  });

  test('with the CA but the wrong name (127.0.0.1 is not on the certificate): not trusted', async () => {
    const r = await webAnswer(sim, { 'consul-cacert': pki.ca }, false);
    assert.equal(r.status, 'SERVFAIL');
    assert.match(String(r.logs.find((l) => l.msg === 'consul failing')?.error), /altnames|does not match/i);
  });

  test('--no-consul-ssl-verify (CONSUL_HTTP_SSL_VERIFY=false) accepts any certificate', async () => {
    const r = await webAnswer(sim, { 'consul-ssl-verify': 'false' }, true);
    assert.equal(r.status, 'NOERROR');
  });
});

describe('Consul requiring client certificates (verify_incoming)', () => {
  let pki: Pki;
  let sim: ConsulSim;
  before(async () => {
    pki = await makePki();
    sim = new ConsulSim({
      tls: { key: await readFile(pki.serverKey, 'utf8'), cert: await readFile(pki.serverCert, 'utf8'), ca: await readFile(pki.ca, 'utf8') },
    });
    await sim.start();
    seed(sim);
  });
  after(async () => {
    await sim.stop();
    await rm(pki.dir, { recursive: true, force: true });
  });

  test('with a client certificate and key, answers are served', async () => {
    const flags = { 'consul-cacert': pki.ca, 'consul-tls-server-name': 'server.dc1.consul', 'consul-client-cert': pki.clientCert, 'consul-client-key': pki.clientKey };
    assert.equal((await webAnswer(sim, flags, true)).status, 'NOERROR');
  });

  test('without one, Consul refuses the connection: SERVFAIL', async () => {
    const r = await webAnswer(sim, { 'consul-cacert': pki.ca, 'consul-tls-server-name': 'server.dc1.consul' }, false);
    assert.equal(r.status, 'SERVFAIL');
  });
});
