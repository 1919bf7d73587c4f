import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { createUpdateOpener } from '../../../server/update-opener.ts';
import { clientIdFromSigningKey, encodeKey } from '../../../shared/crypto/identity.ts';
import { sealUpdate } from '../../../shared/crypto/update-envelope.ts';
import { nativeIdentity, VirtualIdentities } from '../../../scripts/simulation/virtual-identities.ts';

describe('VirtualIdentities', () => {
  const ids = new VirtualIdentities(20);

  it('derives keys tweetnacl agrees with', () => {
    for (const index of [0, 7, 19]) {
      const identity = ids.identity(index);
      const signing = nacl.sign.keyPair.fromSeed(identity.signing.secretKey.slice(0, 32));
      expect(Array.from(signing.publicKey)).toEqual(Array.from(identity.signing.publicKey));
      expect(Array.from(signing.secretKey)).toEqual(Array.from(identity.signing.secretKey));
      expect(Array.from(nacl.box.keyPair.fromSecretKey(identity.box.secretKey.slice()).publicKey)).toEqual(Array.from(identity.box.publicKey));
      expect(ids.clientIds[index]).toBe(clientIdFromSigningKey(identity.signing.publicKey));
      expect(ids.indexOf(ids.clientIds[index]!)).toBe(index);
    }
    expect(new Set(ids.clientIds).size).toBe(20);
  });

  it('resolves public keys by client id, and nothing for an unknown id', () => {
    const identity = ids.identity(3);
    expect(ids.resolve(ids.clientIds[3]!)).toEqual({ signingKey: encodeKey(identity.signing.publicKey), boxKey: encodeKey(identity.box.publicKey) });
    expect(ids.resolve('0000000000000000')).toBeUndefined();
    expect(() => ids.identity(20)).toThrow(/outside \[0, 20\)/);
  });

  it('seals updates the coordinator’s opener accepts', () => {
    const coordinator = nativeIdentity();
    const open = createUpdateOpener(coordinator, (clientId) => ids.resolve(clientId));
    const delta = Float32Array.from([0.5, -0.25, 1]);
    const sealed = sealUpdate({ header: { roundId: 'run-r1-a1-fit', exampleCount: 12, metrics: { loss: 0.5, accuracy: 0.75 } }, delta }, { clientIdentity: ids.identity(5), coordinatorBoxKey: coordinator.box.publicKey });
    const opened = open(sealed, { roundId: 'run-r1-a1-fit', clientId: ids.clientIds[5]!, parameterCount: 3 });
    expect(opened.clientId).toBe(ids.clientIds[5]);
    expect(opened.exampleCount).toBe(12);
    expect(Array.from(opened.delta as Float32Array)).toEqual([0.5, -0.25, 1]);
  });
});
