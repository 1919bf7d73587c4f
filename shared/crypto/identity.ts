/**
 * Participant identities: an Ed25519 signing key pair (authenticity) and an X25519 box key pair
 * (confidentiality), generated with tweetnacl.
 *
 * Two key pairs rather than one converted key: using one secret for both signing and key
 * agreement couples the two security properties; separate keys keep a leak of one from
 * breaking the other and are what NaCl recommends.
 *
 * @example
 * ```ts
 * const me = generateIdentity();
 * saveIdentity('client.key.json', me);               // mode 0o600, refuses to overwrite
 * const again = loadIdentity('client.key.json');      // validated, refuses 0o644
 * console.log(formatPublicIdentity(publicIdentity(me))); // fedtl1:<sign>:<box>
 * ```
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import nacl from 'tweetnacl';
import { FedtlError } from '../core/errors.ts';

/** Version of the identity file format written by {@link saveIdentity}. */
export const IDENTITY_FILE_VERSION = 1;
/** Value of the `kind` field of an identity file. */
export const IDENTITY_FILE_KIND = 'fedtl-identity';
/** Prefix of the printable one-line public form; the digit is the format version. */
export const PUBLIC_IDENTITY_PREFIX = 'fedtl1';

/** Ed25519 and X25519 public keys are both 32 bytes. */
export const PUBLIC_KEY_BYTES = 32;
const SIGN_SEED_BYTES = 32;
const SIGN_SECRET_BYTES = 64;
const BOX_SECRET_BYTES = 32;
/** Hex characters of the client id: 64 bits is plenty to name the clients of one federation. */
const CLIENT_ID_HEX = 16;

/** A full identity with secret keys. Never log or send it; send {@link publicIdentity} instead. */
export interface Identity {
  /** Ed25519: 32-byte public key, 64-byte tweetnacl secret key (seed ‖ public key). */
  readonly signing: { readonly publicKey: Uint8Array; readonly secretKey: Uint8Array };
  /** X25519: 32-byte public and secret keys. */
  readonly box: { readonly publicKey: Uint8Array; readonly secretKey: Uint8Array };
}

/** The public half of an identity, as sent over the wire and stored in allow lists. */
export interface PublicIdentity {
  /** Stable short id derived from the signing key ({@link clientIdFromSigningKey}). */
  readonly clientId: string;
  /** Ed25519 public key, standard base64 (44 characters). */
  readonly signingKey: string;
  /** X25519 public key, standard base64 (44 characters). */
  readonly boxKey: string;
}

/** Creates a fresh identity from the system CSPRNG (tweetnacl uses `crypto.randomBytes`). */
export function generateIdentity(): Identity {
  const signing = nacl.sign.keyPair();
  const box = nacl.box.keyPair();
  return { signing, box };
}

/** Rebuilds an identity from its two 32-byte secrets, recomputing both public keys. */
export function identityFromSecrets(signingSeed: Uint8Array, boxSecretKey: Uint8Array): Identity {
  if (signingSeed.length !== SIGN_SEED_BYTES) {
    throw new FedtlError('BAD_CONFIG', `signing seed must be ${SIGN_SEED_BYTES} bytes, got ${signingSeed.length}`);
  }
  if (boxSecretKey.length !== BOX_SECRET_BYTES) {
    throw new FedtlError('BAD_CONFIG', `box secret key must be ${BOX_SECRET_BYTES} bytes, got ${boxSecretKey.length}`);
  }
  return { signing: nacl.sign.keyPair.fromSeed(signingSeed), box: nacl.box.keyPair.fromSecretKey(boxSecretKey) };
}

/**
 * Short stable id of a participant: the first 16 hex characters of SHA-256(signing public key).
 * Derived from the signing key because that is the key that authenticates updates; the id is a
 * name for lookups, never a substitute for checking the key itself.
 */
export function clientIdFromSigningKey(signingKey: Uint8Array | string): string {
  const raw = typeof signingKey === 'string' ? decodeKey(signingKey, 'signingKey') : signingKey;
  if (raw.length !== PUBLIC_KEY_BYTES) {
    throw new FedtlError('BAD_CONFIG', `signing public key must be ${PUBLIC_KEY_BYTES} bytes, got ${raw.length}`);
  }
  return createHash('sha256').update(raw).digest('hex').slice(0, CLIENT_ID_HEX);
}

/** The public half of `identity`, base64 keys plus its client id. */
export function publicIdentity(identity: Identity): PublicIdentity {
  return {
    clientId: clientIdFromSigningKey(identity.signing.publicKey),
    signingKey: encodeKey(identity.signing.publicKey),
    boxKey: encodeKey(identity.box.publicKey),
  };
}

/** Printable one-line form, `fedtl1:<signing key b64>:<box key b64>` (base64 never contains `:`). */
export function formatPublicIdentity(identity: PublicIdentity): string {
  return `${PUBLIC_IDENTITY_PREFIX}:${identity.signingKey}:${identity.boxKey}`;
}

/**
 * Parses the form written by {@link formatPublicIdentity}. Strict: exact prefix, canonical
 * base64, 32-byte keys. Throws `BAD_CONFIG` naming what was wrong.
 */
export function parsePublicIdentity(text: string): PublicIdentity {
  const parts = text.trim().split(':');
  if (parts.length !== 3 || parts[0] !== PUBLIC_IDENTITY_PREFIX) {
    throw new FedtlError(
      'BAD_CONFIG',
      `public identity must look like '${PUBLIC_IDENTITY_PREFIX}:<signing key base64>:<box key base64>', got '${truncate(text)}'`,
    );
  }
  const signingKey = parts[1] ?? '';
  const boxKey = parts[2] ?? '';
  decodeKey(signingKey, 'signing key');
  decodeKey(boxKey, 'box key');
  return { clientId: clientIdFromSigningKey(signingKey), signingKey, boxKey };
}

/** Standard base64 of a key. */
export function encodeKey(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('base64');
}

/**
 * Decodes a base64 public key strictly. Node's decoder silently skips invalid characters, so the
 * input must re-encode to itself: otherwise two spellings of one key could pass an allow list.
 */
export function decodeKey(text: string, what: string, bytes: number = PUBLIC_KEY_BYTES): Uint8Array {
  const raw = Buffer.from(text, 'base64');
  if (raw.length !== bytes || raw.toString('base64') !== text) {
    throw new FedtlError('BAD_CONFIG', `${what} must be ${bytes} bytes of canonical base64, got '${truncate(text)}'`);
  }
  return new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
}

/** Options of {@link saveIdentity}. */
export interface SaveIdentityOptions {
  /**
   * Replace an existing file. The new content is written to a fresh 0o600 file and renamed over
   * the old one, so even a forced overwrite never inherits a looser mode.
   * @default false
   */
  force?: boolean;
}

/** On-disk JSON shape. Secrets are the two 32-byte seeds; public keys are kept to catch corruption. */
interface IdentityFile {
  kind: typeof IDENTITY_FILE_KIND;
  version: typeof IDENTITY_FILE_VERSION;
  clientId: string;
  signing: { publicKey: string; seed: string };
  box: { publicKey: string; secretKey: string };
}

/**
 * Writes `identity` as JSON with mode 0o600 (created with that mode, never chmod-ed afterwards,
 * so the secret is never readable by others even for an instant). Refuses to overwrite an
 * existing file unless `force` is set (`BAD_CONFIG`).
 */
export function saveIdentity(path: string, identity: Identity, options: SaveIdentityOptions = {}): void {
  const pub = publicIdentity(identity);
  const file: IdentityFile = {
    kind: IDENTITY_FILE_KIND,
    version: IDENTITY_FILE_VERSION,
    clientId: pub.clientId,
    signing: { publicKey: pub.signingKey, seed: encodeKey(identity.signing.secretKey.subarray(0, SIGN_SEED_BYTES)) },
    box: { publicKey: pub.boxKey, secretKey: encodeKey(identity.box.secretKey) },
  };
  const text = JSON.stringify(file, null, 2) + '\n';
  if (!options.force) {
    try {
      // 'wx' = O_CREAT|O_EXCL: fails if the file exists, and the mode applies because we create it.
      writeFileSync(path, text, { mode: 0o600, flag: 'wx' });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new FedtlError('BAD_CONFIG', `identity file ${path} already exists; replace it with fedtl keygen --force (saveIdentity option force), or choose another file`, {
          cause: error,
        });
      }
      throw error;
    }
    return;
  }
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    writeFileSync(temp, text, { mode: 0o600, flag: 'wx' });
    renameSync(temp, path);
  } catch (error) {
    try {
      unlinkSync(temp);
    } catch {
      // The temp file may not exist if the first write failed; nothing else to clean.
    }
    throw error;
  }
}

/**
 * Reads and fully validates an identity file: kind, version, key lengths, canonical base64, and
 * that each stored public key is the one its secret produces. Refuses a file readable or
 * writable by group or others (`BAD_CONFIG`, message says to `chmod 600`). The mode is checked
 * on the open descriptor so the file cannot be swapped between the check and the read.
 * Throws `CORRUPT_FILE` for malformed content.
 */
export function loadIdentity(path: string): Identity {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    throw new FedtlError('BAD_CONFIG', `cannot open identity file ${path}: ${(error as Error).message}`, { cause: error });
  }
  let text: string;
  try {
    const stat = fstatSync(fd);
    // POSIX permission bits mean nothing on Windows, where Node reports 0o666 for every file.
    if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
      throw new FedtlError(
        'BAD_CONFIG',
        `identity file ${path} has mode 0o${(stat.mode & 0o777).toString(8)} and is accessible by other users; ` +
          `its secret keys may be compromised. Run 'chmod 600 ${path}' (and consider generating a new identity).`,
      );
    }
    text = readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
  return parseIdentityFile(text, path);
}

function parseIdentityFile(text: string, path: string): Identity {
  const fail = (what: string, cause?: unknown): never => {
    throw new FedtlError('CORRUPT_FILE', `identity file ${path}: ${what}`, { cause });
  };
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    return fail('is not valid JSON', error);
  }
  if (!isRecord(data)) return fail('must contain a JSON object');
  if (data['kind'] !== IDENTITY_FILE_KIND) return fail(`'kind' must be '${IDENTITY_FILE_KIND}'`);
  if (data['version'] !== IDENTITY_FILE_VERSION) {
    return fail(`unsupported version ${JSON.stringify(data['version'])}, expected ${IDENTITY_FILE_VERSION}`);
  }
  const signing = data['signing'];
  const box = data['box'];
  if (!isRecord(signing) || !isRecord(box)) return fail("'signing' and 'box' must be objects");
  const field = (obj: Record<string, unknown>, name: string, bytes: number, label: string): Uint8Array => {
    const value = obj[name];
    if (typeof value !== 'string') return fail(`'${label}' must be a base64 string`);
    try {
      return decodeKey(value, label, bytes);
    } catch {
      // No cause: decodeKey's message quotes the text it could not decode, which here may be a
      // secret key (e.g. one pasted without its '=' padding), and causes are printed at debug level.
      return fail(`'${label}' must be ${bytes} bytes of canonical base64`);
    }
  };
  const seed = field(signing, 'seed', SIGN_SEED_BYTES, 'signing.seed');
  const signPub = field(signing, 'publicKey', PUBLIC_KEY_BYTES, 'signing.publicKey');
  const boxSecret = field(box, 'secretKey', BOX_SECRET_BYTES, 'box.secretKey');
  const boxPub = field(box, 'publicKey', PUBLIC_KEY_BYTES, 'box.publicKey');
  const identity = identityFromSecrets(seed, boxSecret);
  if (!bytesEqual(identity.signing.publicKey, signPub)) {
    return fail('signing.publicKey does not match signing.seed (the file was edited or corrupted)');
  }
  if (!bytesEqual(identity.box.publicKey, boxPub)) {
    return fail('box.publicKey does not match box.secretKey (the file was edited or corrupted)');
  }
  if (data['clientId'] !== undefined && data['clientId'] !== clientIdFromSigningKey(signPub)) {
    return fail('clientId does not match the signing key');
  }
  if (identity.signing.secretKey.length !== SIGN_SECRET_BYTES) return fail('internal: bad signing key length');
  return identity;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

function truncate(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
