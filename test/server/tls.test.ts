/**
 * Built-in TLS: a federation of real clients over HTTPS/WSS with a certificate made at test time.
 * The coordinator's pinned Ed25519 key is still checked inside the TLS channel, and a client that
 * does not trust the certificate does not connect.
 */
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FedtlClient } from '../../client/client.ts';
import { generateIdentity, publicIdentity } from '../../shared/crypto/identity.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { Federation } from '../support/federation.ts';
import { RawClient, within } from '../support/hostile.ts';
import { loopbackCertificate, type TestCertificate } from '../support/tls-cert.ts';

describe('coordinator over TLS', () => {
  let federation: Federation | undefined;
  let certificate: TestCertificate;

  beforeAll(async () => {
    await selectBackend({ log: false });
    certificate = await loopbackCertificate();
  });

  afterEach(async () => {
    await federation?.close();
    federation = undefined;
  });

  it('runs a federation over https:// with a test-time certificate; pinning still refuses an impostor key', async () => {
    federation = await Federation.start({ clients: 2, rounds: 1, tls: certificate, loop: { federatedEvaluation: true } });
    const f = federation;
    expect(f.coordinator.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);

    // Without the certificate: TLS verification fails before any hello is sent.
    const untrusted = await RawClient.refusal(f.coordinator.url, () => ({}));
    expect(untrusted.code).toBeUndefined();
    // Trusting the certificate but pinning another coordinator key: the welcome does not verify.
    const impostorPin = publicIdentity(generateIdentity());
    const pinned = new FedtlClient({
      url: f.coordinator.url,
      ca: certificate.cert,
      coordinator: { signingKey: impostorPin.signingKey, boxKey: impostorPin.boxKey },
      identity: f.identities[0]!,
      data: { train: f.parts[0]! },
      cacheDir: path.join(f.cacheDir, 'impostor-pin'),
      backoff: { min: 100, max: 500 },
    }).start();
    f.clients.push(pinned);
    await expect(within(pinned.done, 'the pinning refusal')).rejects.toMatchObject({ code: 'BAD_SIGNATURE' });

    // Honest clients trusting the certificate federate; evaluation reports are signed over TLS too.
    f.startClient(0);
    f.startClient(1);
    const history = await f.coordinator.run();
    expect(history).toHaveLength(1);
    expect(history[0]).toMatchObject({ accepted: 2, dropped: 0 });
    expect(history[0]!.evalExamples).toBe(200);
    await Promise.all(f.clients.slice(1).map((c) => within(c.done, 'finished')));
  });
});
