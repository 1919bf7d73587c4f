/**
 * Detached Ed25519 signatures over protocol texts (hellos, welcomes, round messages).
 *
 * Keys are tweetnacl keys; the signing runs on Node's native Ed25519 (see native-keys.ts), which
 * produces the same RFC 8032 signatures byte for byte at a fraction of the cost: a round message
 * is signed once per round and verified by every client, so on a 2-core coordinator with many
 * clients the pure-JS version was a measurable share of round overhead.
 */
import { sign, verify } from 'node:crypto';
import { ed25519PrivateKey, ed25519PublicKey } from './native-keys.ts';

/** Signature (64 bytes) of `text` (UTF-8) with a 64-byte tweetnacl signing secret key. */
export function signText(text: string, secretKey: Uint8Array): Uint8Array {
  return new Uint8Array(sign(null, Buffer.from(text, 'utf8'), ed25519PrivateKey(secretKey)));
}

/** Whether `signature` is a valid Ed25519 signature of `text` by the 32-byte `publicKey`. */
export function verifyText(text: string, signature: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  try {
    return verify(null, Buffer.from(text, 'utf8'), ed25519PublicKey(publicKey), signature);
  } catch {
    // A malformed public key (not a curve point) is simply "does not verify".
    return false;
  }
}
