/**
 * Identities for thousands of virtual clients.
 *
 * tweetnacl derives a key pair in pure JS (a few ms each: tens of seconds for 10,000 clients), so
 * virtual clients get theirs from Node's native Ed25519/X25519 generators (about 0.1 ms per key
 * pair), in the same raw form tweetnacl uses. Holding 10,000 `Identity` objects would also cost
 * four typed arrays (and their ArrayBuffers) per client, so the keys live packed in one shared
 * buffer, 128 bytes per client, and {@link VirtualIdentities.identity} hands out views into it.
 * The keys are as real as any client's; only where they are generated and stored differs.
 */
import { generateKeyPairSync, type JsonWebKey } from 'node:crypto';
import { FedtlError } from '../../shared/core/errors.ts';
import { clientIdFromSigningKey, encodeKey, type Identity } from '../../shared/crypto/identity.ts';
import type { ClientPublicKeys } from '../../shared/crypto/update-envelope.ts';

const KEY_BYTES = 32;
/** Per client: Ed25519 secret key (seed ‖ public, 64 bytes), X25519 secret (32) and public (32) key. */
const SIGN_SECRET = 0;
const SIGN_PUBLIC = 32;
const BOX_SECRET = 64;
const BOX_PUBLIC = 96;
const STRIDE = 128;

/**
 * A fresh key pair of `kind` as raw bytes: the secret key (an Ed25519 seed or an X25519 scalar)
 * and the public key, each 32 bytes.
 *
 * Why JWK, and why encoded inside the generation call: importing a raw secret through PKCS#8 and
 * exporting its public half as SPKI cost about 1.2 ms a key on Node 20 (OpenSSL's DER decoders;
 * about 2 ms a client, 175 s for 100,000), while a key pair generated with JWK encodings costs
 * about 0.03 ms. Generating a `KeyObject` pair and calling `.export({ format: 'jwk' })` on it
 * instead deadlocks Node 20 (garbage-collecting a finished key-generation job while a JWK export
 * holds the key's lock; it hung at the first thousands of keys here), so the encoding is asked of
 * the generation job itself: no `KeyObject` is ever exported. 100,000 clients' keys (200,000
 * pairs) were generated this way in one process without a hang.
 */
/**
 * `generateKeyPairSync` with JWK encodings, which Node supports for these curves but @types/node
 * 20 declares only for the KeyObject and PEM/DER forms; the cast names the real signature.
 */
const generateJwkPair = generateKeyPairSync as unknown as (
  kind: 'ed25519' | 'x25519',
  options: { privateKeyEncoding: { format: 'jwk' }; publicKeyEncoding: { format: 'jwk' } },
) => { privateKey: JsonWebKey; publicKey: JsonWebKey };

function rawKeyPair(kind: 'ed25519' | 'x25519'): { secret: Uint8Array; publicKey: Uint8Array } {
  const { privateKey, publicKey } = generateJwkPair(kind, { privateKeyEncoding: { format: 'jwk' }, publicKeyEncoding: { format: 'jwk' } });
  const raw = (jwk: JsonWebKey, field: 'd' | 'x'): Uint8Array => {
    const value = jwk[field];
    const bytes = value === undefined ? null : Buffer.from(value, 'base64url');
    if (bytes === null || bytes.length !== KEY_BYTES) throw new FedtlError('INTERNAL', `${kind} key generation returned no 32-byte "${field}"`);
    return new Uint8Array(bytes);
  };
  return { secret: raw(privateKey, 'd'), publicKey: raw(publicKey, 'x') };
}

/** A fresh random identity from Node's native key code (the coordinator's in a simulation). */
export function nativeIdentity(): Identity {
  const signing = rawKeyPair('ed25519');
  const box = rawKeyPair('x25519');
  // tweetnacl's form of an Ed25519 secret key: seed ‖ public key.
  const signingSecret = new Uint8Array(2 * KEY_BYTES);
  signingSecret.set(signing.secret, 0);
  signingSecret.set(signing.publicKey, KEY_BYTES);
  return {
    signing: { publicKey: signing.publicKey, secretKey: signingSecret },
    box: { publicKey: box.publicKey, secretKey: box.secret },
  };
}

/**
 * The identities of `count` virtual clients: `clientIds[i]` and the keys of client `i`, packed in
 * one buffer (O(1) objects per client).
 *
 * @example
 * ```ts
 * const ids = new VirtualIdentities(10_000);
 * const sealed = sealUpdate(update, { clientIdentity: ids.identity(7), coordinatorBoxKey });
 * const opener = createUpdateOpener(coordinator, (clientId) => ids.resolve(clientId));
 * ```
 */
export class VirtualIdentities {
  readonly count: number;
  /** Client id of each client, by index. */
  readonly clientIds: readonly string[];
  readonly #keys: Uint8Array;
  readonly #indexById = new Map<string, number>();

  constructor(count: number) {
    if (!Number.isSafeInteger(count) || count < 0) throw new FedtlError('BAD_CONFIG', `virtual identity count must be a non-negative integer, got ${count}`);
    this.count = count;
    this.#keys = new Uint8Array(count * STRIDE);
    const ids = new Array<string>(count);
    for (let i = 0; i < count; i++) {
      const identity = nativeIdentity();
      const at = i * STRIDE;
      this.#keys.set(identity.signing.secretKey, at + SIGN_SECRET);
      this.#keys.set(identity.box.secretKey, at + BOX_SECRET);
      this.#keys.set(identity.box.publicKey, at + BOX_PUBLIC);
      const id = clientIdFromSigningKey(identity.signing.publicKey);
      // 64-bit ids collide with probability ~N²/2⁶⁵; a collision would merge two clients silently.
      if (this.#indexById.has(id)) throw new FedtlError('INTERNAL', `virtual clients ${this.#indexById.get(id)} and ${i} share client id ${id}`);
      ids[i] = id;
      this.#indexById.set(id, i);
    }
    this.clientIds = ids;
  }

  #view(index: number, offset: number, length: number): Uint8Array {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.count) throw new FedtlError('BAD_CONFIG', `virtual client index ${index} is outside [0, ${this.count})`);
    return this.#keys.subarray(index * STRIDE + offset, index * STRIDE + offset + length);
  }

  /** Index of a client id, or undefined for an unknown id. */
  indexOf(clientId: string): number | undefined {
    return this.#indexById.get(clientId);
  }

  /** Client `index`'s identity, secret keys included; its arrays are views into the shared buffer. */
  identity(index: number): Identity {
    return {
      signing: { publicKey: this.#view(index, SIGN_PUBLIC, KEY_BYTES), secretKey: this.#view(index, SIGN_SECRET, 2 * KEY_BYTES) },
      box: { publicKey: this.#view(index, BOX_PUBLIC, KEY_BYTES), secretKey: this.#view(index, BOX_SECRET, KEY_BYTES) },
    };
  }

  /** Client `index`'s identity in arrays of its own, to post to a worker thread (a view would post the whole buffer). */
  detachedIdentity(index: number): Identity {
    const { signing, box } = this.identity(index);
    return { signing: { publicKey: signing.publicKey.slice(), secretKey: signing.secretKey.slice() }, box: { publicKey: box.publicKey.slice(), secretKey: box.secretKey.slice() } };
  }

  /** The coordinator's view of a client: its public keys (base64), or undefined for an unknown id. */
  resolve(clientId: string): ClientPublicKeys | undefined {
    const index = this.#indexById.get(clientId);
    if (index === undefined) return undefined;
    return { signingKey: encodeKey(this.#view(index, SIGN_PUBLIC, KEY_BYTES)), boxKey: encodeKey(this.#view(index, BOX_PUBLIC, KEY_BYTES)) };
  }
}
