/**
 * Identities for thousands of virtual clients. tweetnacl derives a key pair in pure JS (a few ms
 * each: tens of seconds for 10,000 clients), so virtual clients get theirs from Node's native
 * Ed25519/X25519 generators, in the same raw form tweetnacl uses. The keys are as real as any
 * client's; only where they are generated differs.
 */
import { generateKeyPairSync } from 'node:crypto';
import type { Identity } from '../../shared/crypto/identity.ts';

function raw(jwkValue: string | undefined): Uint8Array {
  return new Uint8Array(Buffer.from(jwkValue ?? '', 'base64url'));
}

export function nativeIdentity(): Identity {
  const signing = generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
  const box = generateKeyPairSync('x25519').privateKey.export({ format: 'jwk' });
  const signingPublic = raw(signing.x);
  const signingSecret = new Uint8Array(64);
  signingSecret.set(raw(signing.d), 0);
  signingSecret.set(signingPublic, 32);
  return {
    signing: { publicKey: signingPublic, secretKey: signingSecret },
    box: { publicKey: raw(box.x), secretKey: raw(box.d) },
  };
}
