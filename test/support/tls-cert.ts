/**
 * A self-signed certificate for 127.0.0.1/localhost made at test time (selfsigned, a maintained
 * generator on top of node:crypto keys): tests serve TLS without any file in the repository.
 */
import { generate } from 'selfsigned';

export interface TestCertificate {
  cert: string;
  key: string;
}

export async function loopbackCertificate(): Promise<TestCertificate> {
  const pems = await generate([{ name: 'commonName', value: 'fedtl test coordinator' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notAfterDate: new Date(Date.now() + 24 * 3600_000),
    extensions: [
      { name: 'basicConstraints', cA: true },
      { name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }, { type: 2, value: 'localhost' }] },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}
