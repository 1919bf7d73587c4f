/**
 * Sealed, signed protocol messages other than weight updates: the phases of secure aggregation
 * (key advertisement, encrypted shares, masked input, unmasking shares) in either direction.
 *
 * Same construction as the update envelope (`update-envelope.ts`), generalised to any payload
 * bytes and any sender/recipient pair: static X25519 between the sender's box secret and the
 * recipient's box public key, HKDF-SHA256 salted with a random 16-byte message id and bound to
 * the sender's two public keys and the recipient's box key, ChaCha20-Poly1305 with the frame
 * prefix and header as associated data, and an Ed25519 signature over prefix ‖ header ‖
 * SHA-256(ciphertext ‖ tag), checked before decrypting. The header names the message kind and
 * the round, so a message cannot be replayed into another phase or round: the recipient passes
 * the kind and round it expects and keeps the message ids it has seen.
 *
 * ## Frame (little-endian)
 * ```
 * 0   4  magic "FTLM"
 * 4   1  format version (1)
 * 5   3  reserved, 0
 * 8   4  header length H
 * 12  4  payload length C
 * 16  H  header, UTF-8 JSON ({@link MessageHeader})
 * +H  64 Ed25519 signature
 * +64 C  ciphertext
 * +C  16 Poly1305 tag
 * ```
 */
import { createCipheriv, createDecipheriv, createHash, generateKeyPairSync, hkdfSync, randomBytes, sign, verify } from 'node:crypto';
import { FedtlError } from '../core/errors.ts';
import { clientIdFromSigningKey, type Identity, PUBLIC_KEY_BYTES } from './identity.ts';
import { ed25519PrivateKey, ed25519PublicKey, x25519Shared } from './native-keys.ts';

export const MESSAGE_FORMAT_VERSION = 1;
const MAGIC = Buffer.from('FTLM', 'latin1');
const PREFIX_BYTES = 16;
const SIGNATURE_BYTES = 64;
const TAG_BYTES = 16;
const KDF_INFO = Buffer.from('fedtl/message-key/v1\0', 'latin1');
const SIGNATURE_DOMAIN = Buffer.from('fedtl/message-signature/v1\0', 'latin1');
const KIND_RE = /^[a-z][a-z0-9:-]{0,63}$/;
const ROUND_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;
const HEX16_RE = /^[0-9a-f]{16}$/;
const HEX32_RE = /^[0-9a-f]{32}$/;
const HEADER_KEYS = ['v', 'kind', 'roundId', 'senderId', 'recipientKeyId', 'messageId', 'timestamp'] as const;

/** The signed header of a sealed message. */
export interface MessageHeader {
  readonly v: number;
  /** What the payload is, e.g. `secagg:advertise`; the recipient refuses any kind it did not expect. */
  readonly kind: string;
  readonly roundId: string;
  /** Sender id: {@link clientIdFromSigningKey} of its signing key (the coordinator's too). */
  readonly senderId: string;
  /** First 16 hex of SHA-256 of the recipient's box public key. */
  readonly recipientKeyId: string;
  /** Random 16 bytes, hex; the recipient refuses an id it has seen (replay). */
  readonly messageId: string;
  readonly timestamp: number;
}

/** Public keys of a sender as the recipient knows them (raw bytes). */
export interface SenderKeys {
  readonly signingKey: Uint8Array;
  readonly boxKey: Uint8Array;
}

/** Options of {@link sealMessage}. */
export interface SealMessageOptions {
  readonly kind: string;
  readonly roundId: string;
  readonly sender: Identity;
  /** The recipient's X25519 box public key (raw 32 bytes). */
  readonly recipientBoxKey: Uint8Array;
  /** @default Date.now */
  readonly now?: () => number;
}

/** Options of {@link openMessage}. */
export interface OpenMessageOptions {
  readonly recipient: Identity;
  /** The only kind accepted; anything else is `STALE_ROUND` (a message of another phase). */
  readonly kind: string;
  /** The only round accepted; anything else is `STALE_ROUND`. */
  readonly roundId: string;
  /** Keys of an admitted sender, or undefined (`UNKNOWN_CLIENT`). */
  readonly resolveSender: (senderId: string) => SenderKeys | undefined;
  /** Largest payload accepted. @default 1 GiB */
  readonly maxPayloadBytes?: number;
}

export interface OpenedMessage {
  readonly header: MessageHeader;
  readonly payload: Uint8Array;
}

const MAX_HEADER_BYTES = 4096;
const DEFAULT_MAX_PAYLOAD = 1024 * 1024 * 1024;

function shortId(key: Uint8Array): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}

function messageKey(shared: Uint8Array, messageId: string, sender: SenderKeys, recipientBoxKey: Uint8Array): { key: Buffer; nonce: Buffer } {
  const info = Buffer.concat([KDF_INFO, sender.signingKey, sender.boxKey, recipientBoxKey]);
  const okm = Buffer.from(hkdfSync('sha256', shared, Buffer.from(messageId, 'hex'), info, 44));
  return { key: okm.subarray(0, 32), nonce: okm.subarray(32, 44) };
}

function signed(authenticated: Uint8Array, ctHash: Uint8Array): Buffer {
  return Buffer.concat([SIGNATURE_DOMAIN, authenticated, ctHash]);
}

/** Seals `payload` for one recipient, signed by the sender. */
export function sealMessage(payload: Uint8Array, options: SealMessageOptions): Uint8Array {
  const { sender, recipientBoxKey } = options;
  if (recipientBoxKey.length !== PUBLIC_KEY_BYTES) throw new FedtlError('BAD_CONFIG', `recipient box key must be ${PUBLIC_KEY_BYTES} bytes`);
  const header: MessageHeader = {
    v: MESSAGE_FORMAT_VERSION,
    kind: options.kind,
    roundId: options.roundId,
    senderId: clientIdFromSigningKey(sender.signing.publicKey),
    recipientKeyId: shortId(recipientBoxKey),
    messageId: randomBytes(16).toString('hex'),
    timestamp: Math.floor((options.now ?? Date.now)()),
  };
  validateHeader(header);
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const ctStart = PREFIX_BYTES + headerBytes.length + SIGNATURE_BYTES;
  const out = Buffer.alloc(ctStart + payload.length + TAG_BYTES);
  MAGIC.copy(out, 0);
  out[4] = MESSAGE_FORMAT_VERSION;
  out.writeUInt32LE(headerBytes.length, 8);
  out.writeUInt32LE(payload.length, 12);
  headerBytes.copy(out, PREFIX_BYTES);
  const authenticated = out.subarray(0, PREFIX_BYTES + headerBytes.length);
  const senderKeys = { signingKey: sender.signing.publicKey, boxKey: sender.box.publicKey };
  const { key, nonce } = messageKey(x25519Shared(sender.box.secretKey, recipientBoxKey, sender.box.publicKey), header.messageId, senderKeys, recipientBoxKey);
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(authenticated, { plaintextLength: payload.length });
  cipher.update(payload).copy(out, ctStart);
  cipher.final();
  cipher.getAuthTag().copy(out, ctStart + payload.length);
  const ctHash = createHash('sha256').update(out.subarray(ctStart)).digest();
  sign(null, signed(authenticated, ctHash), ed25519PrivateKey(sender.signing.secretKey)).copy(out, PREFIX_BYTES + headerBytes.length);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * Opens a sealed message. Checks framing (`BAD_MESSAGE`, `PROTOCOL_VERSION`, `TOO_LARGE`), the
 * sender (`UNKNOWN_CLIENT`), the signature (`BAD_SIGNATURE`), kind and round (`STALE_ROUND`), the
 * recipient and the AEAD tag (`DECRYPT_FAILED`). Replay (a repeated `messageId`) and duplicates
 * per sender are the caller's check: they need phase state.
 */
export function openMessage(bytes: Uint8Array, options: OpenMessageOptions): OpenedMessage {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < PREFIX_BYTES + SIGNATURE_BYTES + TAG_BYTES || !buf.subarray(0, 4).equals(MAGIC)) {
    throw new FedtlError('BAD_MESSAGE', 'not a sealed fedtl message (bad magic or too short)');
  }
  if (buf[4] !== MESSAGE_FORMAT_VERSION) throw new FedtlError('PROTOCOL_VERSION', `sealed message format ${buf[4]} is not ${MESSAGE_FORMAT_VERSION}`);
  if (buf[5] !== 0 || buf[6] !== 0 || buf[7] !== 0) throw new FedtlError('BAD_MESSAGE', 'sealed message reserved bytes must be 0');
  const headerLength = buf.readUInt32LE(8);
  const payloadLength = buf.readUInt32LE(12);
  if (headerLength > MAX_HEADER_BYTES) throw new FedtlError('TOO_LARGE', `sealed message header of ${headerLength} bytes exceeds ${MAX_HEADER_BYTES}`);
  if (payloadLength > (options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD)) throw new FedtlError('TOO_LARGE', `sealed message payload of ${payloadLength} bytes is over the limit`);
  const ctStart = PREFIX_BYTES + headerLength + SIGNATURE_BYTES;
  if (buf.length !== ctStart + payloadLength + TAG_BYTES) throw new FedtlError('BAD_MESSAGE', 'sealed message length does not match its prefix');
  let parsed: unknown;
  try {
    parsed = JSON.parse(buf.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength).toString('utf8'));
  } catch (error) {
    throw new FedtlError('BAD_MESSAGE', 'sealed message header is not JSON', { cause: error });
  }
  const header = parseHeader(parsed);
  const sender = options.resolveSender(header.senderId);
  if (sender === undefined) throw new FedtlError('UNKNOWN_CLIENT', `sealed message from unknown sender ${header.senderId}`);
  if (clientIdFromSigningKey(sender.signingKey) !== header.senderId) throw new FedtlError('BAD_SIGNATURE', 'sender keys do not match the sender id');
  const authenticated = buf.subarray(0, PREFIX_BYTES + headerLength);
  const ctAndTag = buf.subarray(ctStart);
  const ctHash = createHash('sha256').update(ctAndTag).digest();
  const signature = buf.subarray(PREFIX_BYTES + headerLength, ctStart);
  if (!verify(null, signed(authenticated, ctHash), ed25519PublicKey(sender.signingKey), signature)) {
    throw new FedtlError('BAD_SIGNATURE', `sealed ${header.kind} from ${header.senderId} has a bad signature`);
  }
  if (header.kind !== options.kind || header.roundId !== options.roundId) {
    throw new FedtlError(
      'STALE_ROUND',
      `expected a ${options.kind} message of round ${options.roundId}, got ${header.kind} of round ${header.roundId} (stale or out of phase)`,
    );
  }
  const { recipient } = options;
  if (header.recipientKeyId !== shortId(recipient.box.publicKey)) throw new FedtlError('DECRYPT_FAILED', `sealed ${header.kind} from ${header.senderId} was sealed for another recipient`);
  const { key, nonce } = messageKey(x25519Shared(recipient.box.secretKey, sender.boxKey, recipient.box.publicKey), header.messageId, sender, recipient.box.publicKey);
  try {
    const decipher = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(authenticated, { plaintextLength: payloadLength });
    decipher.setAuthTag(ctAndTag.subarray(payloadLength));
    const payload = decipher.update(ctAndTag.subarray(0, payloadLength));
    decipher.final();
    return { header, payload: new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength) };
  } catch (error) {
    throw new FedtlError('DECRYPT_FAILED', `sealed ${header.kind} from ${header.senderId} failed authentication`, { cause: error });
  }
}

function validateHeader(h: MessageHeader): void {
  if (!KIND_RE.test(h.kind)) throw new FedtlError('BAD_MESSAGE', `message kind ${JSON.stringify(h.kind)} is not [a-z][a-z0-9:-]{0,63}`);
  if (!ROUND_ID_RE.test(h.roundId)) throw new FedtlError('BAD_MESSAGE', 'message roundId must be 1-128 characters of [A-Za-z0-9._:-]');
  if (!HEX16_RE.test(h.senderId) || !HEX16_RE.test(h.recipientKeyId) || !HEX32_RE.test(h.messageId)) {
    throw new FedtlError('BAD_MESSAGE', 'message header ids are malformed');
  }
  if (!Number.isSafeInteger(h.timestamp) || h.timestamp < 0) throw new FedtlError('BAD_MESSAGE', 'message timestamp must be a non-negative integer');
}

function parseHeader(value: unknown): MessageHeader {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FedtlError('BAD_MESSAGE', 'sealed message header must be an object');
  const keys = Object.keys(value);
  if (keys.length !== HEADER_KEYS.length || !HEADER_KEYS.every((k) => Object.hasOwn(value, k))) {
    throw new FedtlError('BAD_MESSAGE', `sealed message header must have exactly the fields ${HEADER_KEYS.join(', ')}`);
  }
  const h = value as Record<string, unknown>;
  if (h['v'] !== MESSAGE_FORMAT_VERSION) throw new FedtlError('PROTOCOL_VERSION', `sealed message header version ${String(h['v'])} is not ${MESSAGE_FORMAT_VERSION}`);
  for (const k of ['kind', 'roundId', 'senderId', 'recipientKeyId', 'messageId'] as const) {
    if (typeof h[k] !== 'string') throw new FedtlError('BAD_MESSAGE', `sealed message header.${k} must be a string`);
  }
  if (typeof h['timestamp'] !== 'number') throw new FedtlError('BAD_MESSAGE', 'sealed message header.timestamp must be a number');
  const header = h as unknown as MessageHeader; // every field's type was checked just above
  validateHeader(header);
  return header;
}

/** A fresh X25519 key pair (native), raw 32-byte keys: the per-round keys of secure aggregation. */
export function ephemeralKeyPair(): { publicKey: Uint8Array; secretKey: Uint8Array } {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const pub = publicKey.export({ format: 'jwk' });
  const priv = privateKey.export({ format: 'jwk' });
  if (typeof pub.x !== 'string' || typeof priv.d !== 'string') throw new FedtlError('INTERNAL', 'X25519 key export failed');
  return { publicKey: new Uint8Array(Buffer.from(pub.x, 'base64url')), secretKey: new Uint8Array(Buffer.from(priv.d, 'base64url')) };
}

/** Raw X25519 agreement between our secret and a peer's public key (native; zero results refused). */
export function x25519Agree(secretKey: Uint8Array, peerPublicKey: Uint8Array): Uint8Array {
  if (peerPublicKey.length !== PUBLIC_KEY_BYTES || secretKey.length !== PUBLIC_KEY_BYTES) {
    throw new FedtlError('BAD_MESSAGE', `X25519 keys must be ${PUBLIC_KEY_BYTES} bytes`);
  }
  return x25519Shared(secretKey, peerPublicKey);
}
