/**
 * Bridges tweetnacl raw keys to Node's native (OpenSSL) Ed25519 and X25519.
 *
 * Why: tweetnacl is pure JS. Measured on the 2-core machines, an Ed25519 verify costs a few ms in
 * tweetnacl and tens of µs natively, and X25519 likewise; with hundreds of updates per round that
 * is seconds of coordinator time. The algorithms are the same standard ones (RFC 8032 Ed25519,
 * RFC 7748 X25519), so keys and signatures interoperate byte for byte: keys are still generated
 * and stored in tweetnacl form, only the hot path runs natively.
 *
 * Internal to `shared/crypto`; not exported from the folder's index.
 */
import { createPrivateKey, createPublicKey, diffieHellman, type KeyObject } from 'node:crypto';
import { FedtlError } from '../core/errors.ts';

// PKCS#8 DER prefix of an X25519 private key (RFC 8410); the raw 32-byte key follows. Only for a
// secret key given without its public half: keys are otherwise imported as JWK (RFC 8037), which
// measured 8–9× faster on Node 20 than OpenSSL's DER decoders (public keys 0.027 vs 0.21 ms,
// X25519 private keys 0.15 vs 1.2 ms), and virtual clients, rarely re-selected, import their
// keys once per update on the training workers and the coordinator alike.
const X25519_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** Bound on each public-key cache, so a stream of unknown keys cannot grow memory without limit. */
const MAX_CACHED_KEYS = 10_000;

const edPublicCache = new Map<string, KeyObject>();
const xPublicCache = new Map<string, KeyObject>();
const privateCache = new WeakMap<Uint8Array, KeyObject>();
const sharedCache = new WeakMap<Uint8Array, Map<string, Uint8Array>>();

function cacheGet(cache: Map<string, KeyObject>, raw: Uint8Array, make: () => KeyObject): KeyObject {
  const id = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64');
  let key = cache.get(id);
  if (key === undefined) {
    key = make();
    if (cache.size >= MAX_CACHED_KEYS) cache.clear();
    cache.set(id, key);
  }
  return key;
}

function checked(raw: Uint8Array): Uint8Array {
  if (raw.length !== 32) throw new FedtlError('BAD_CONFIG', `expected a 32-byte key, got ${raw.length} bytes`);
  return raw;
}

function base64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/** A raw 32-byte public key of `crv` as a native key (RFC 8037 JWK). */
function publicKeyOf(crv: 'Ed25519' | 'X25519', raw: Uint8Array): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv, x: base64url(checked(raw)) }, format: 'jwk' });
}

/** Native Ed25519 public key for a raw 32-byte tweetnacl public key (cached). */
export function ed25519PublicKey(raw: Uint8Array): KeyObject {
  return cacheGet(edPublicCache, raw, () => publicKeyOf('Ed25519', raw));
}

/** Native Ed25519 private key for a 64-byte tweetnacl secret key (seed ‖ public), cached per array. */
export function ed25519PrivateKey(secretKey: Uint8Array): KeyObject {
  let key = privateCache.get(secretKey);
  if (key === undefined) {
    if (secretKey.length !== 64) throw new FedtlError('BAD_CONFIG', `expected a 64-byte Ed25519 secret key, got ${secretKey.length} bytes`);
    // JWK with the public half supplied (tweetnacl keeps it in bytes 32..64): measured ~9x faster
    // than a PKCS#8 import, which re-derives the public key, and keys are often imported once per
    // update (virtual clients, rarely re-selected, miss this cache).
    key = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: base64url(secretKey.subarray(0, 32)), x: base64url(secretKey.subarray(32, 64)) }, format: 'jwk' });
    privateCache.set(secretKey, key);
  }
  return key;
}

/**
 * Raw X25519 shared secret between our box secret key and a peer's box public key, cached per
 * (secret key, peer). Rejects the all-zero result of a low-order peer key: such a key would make
 * the "shared" secret public. `ownPublicKey`, our box public key, lets the secret key be imported
 * as a JWK (much faster than PKCS#8; see above).
 */
export function x25519Shared(secretKey: Uint8Array, peerPublicKey: Uint8Array, ownPublicKey?: Uint8Array): Uint8Array {
  let perPeer = sharedCache.get(secretKey);
  if (perPeer === undefined) {
    perPeer = new Map();
    sharedCache.set(secretKey, perPeer);
  }
  const peerId = Buffer.from(peerPublicKey.buffer, peerPublicKey.byteOffset, peerPublicKey.byteLength).toString('base64');
  let shared = perPeer.get(peerId);
  if (shared === undefined) {
    let priv = privateCache.get(secretKey);
    if (priv === undefined) {
      priv = ownPublicKey
        ? createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: base64url(checked(secretKey)), x: base64url(checked(ownPublicKey)) }, format: 'jwk' })
        : createPrivateKey({ key: Buffer.concat([X25519_PKCS8, checked(secretKey)]), format: 'der', type: 'pkcs8' });
      privateCache.set(secretKey, priv);
    }
    const pub = cacheGet(xPublicCache, peerPublicKey, () => publicKeyOf('X25519', peerPublicKey));
    let out: Buffer;
    try {
      out = diffieHellman({ privateKey: priv, publicKey: pub });
    } catch (error) {
      // OpenSSL refuses low-order points itself; report it as the key problem it is.
      throw new FedtlError('DECRYPT_FAILED', 'X25519 key agreement failed (invalid peer box key)', { cause: error });
    }
    if (out.every((b) => b === 0)) throw new FedtlError('DECRYPT_FAILED', 'X25519 key agreement produced a zero secret');
    shared = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    if (perPeer.size >= MAX_CACHED_KEYS) perPeer.clear();
    perPeer.set(peerId, shared);
  }
  return shared;
}
