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
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
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

/** PKCS#8 DER prefixes of a raw 32-byte private key (RFC 8410), Ed25519 then X25519. */
const PKCS8_PREFIX = { ed25519: Buffer.from('302e020100300506032b657004220420', 'hex'), x25519: Buffer.from('302e020100300506032b656e04220420', 'hex') };
/** Length of the SPKI DER header before the raw 32-byte public key (RFC 8410). */
const SPKI_HEADER_BYTES = 12;

/**
 * The raw public key of a random 32-byte private key. Keys are built from random bytes rather than
 * with `generateKeyPairSync` + JWK export: on Node 20, garbage-collecting a finished key-generation
 * job while a JWK export holds the key lock deadlocks the process (seen at 100,000 clients, where
 * the exports' garbage triggers collections mid-export).
 */
function publicKeyOf(kind: 'ed25519' | 'x25519', secret: Uint8Array): Uint8Array {
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX[kind], secret]), format: 'der', type: 'pkcs8' });
  return new Uint8Array(createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(SPKI_HEADER_BYTES));
}

/** A fresh random identity from Node's native key code (the coordinator's in a simulation). */
export function nativeIdentity(): Identity {
  const signingSeed = new Uint8Array(randomBytes(KEY_BYTES));
  const boxSecret = new Uint8Array(randomBytes(KEY_BYTES));
  const signingPublic = publicKeyOf('ed25519', signingSeed);
  const signingSecret = new Uint8Array(64);
  signingSecret.set(signingSeed, 0);
  signingSecret.set(signingPublic, 32);
  return {
    signing: { publicKey: signingPublic, secretKey: signingSecret },
    box: { publicKey: publicKeyOf('x25519', boxSecret), secretKey: boxSecret },
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
