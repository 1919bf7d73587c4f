/**
 * The signed hello a client presents at connection time (socket.io `auth`): its public keys, a
 * fresh nonce and timestamp, signed for one coordinator so it cannot be replayed elsewhere.
 */
import { randomBytes } from 'node:crypto';
import { PROTOCOL_VERSION, helloSignedText, type Hello } from '../protocol/protocol.ts';
import { encodeKey, type Identity } from './identity.ts';
import { signText } from './signatures.ts';

/** A new hello for `coordinatorSigningKey` (base64); every call has its own nonce and timestamp. */
export function createHello(identity: Identity, coordinatorSigningKey: string): Hello {
  const unsigned = {
    protocolVersion: PROTOCOL_VERSION,
    signingKey: encodeKey(identity.signing.publicKey),
    boxKey: encodeKey(identity.box.publicKey),
    timestamp: Date.now(),
    nonce: randomBytes(16).toString('base64'),
  };
  return { ...unsigned, signature: encodeKey(signText(helloSignedText(coordinatorSigningKey, unsigned), identity.signing.secretKey)) };
}
