/**
 * The signed messages a client sends about itself: the hello it presents at connection time
 * (socket.io `auth`), and its `ready` and `evaluation` reports on that connection.
 *
 * The hello is signed for one coordinator and one connection (the engine.io session id the
 * coordinator chose), so a recorded hello is useless elsewhere and after a restart. `ready` and
 * `evaluation` are signed over the hello's nonce, so they belong to that connection too.
 */
import { randomBytes } from 'node:crypto';
import { FedtlError } from '../core/errors.ts';
import {
  PROTOCOL_VERSION,
  evaluationSignedText,
  helloSignedText,
  readySignedText,
  type EvaluationReport,
  type EvaluationResult,
  type Hello,
  type ReadyReport,
} from '../protocol/protocol.ts';
import { decodeKey, encodeKey, type Identity } from './identity.ts';
import { signText, verifyText } from './signatures.ts';

/** A new hello for `coordinatorSigningKey` (base64) on connection `connectionId`; every call has its own nonce and timestamp. */
export function createHello(identity: Identity, coordinatorSigningKey: string, connectionId: string): Hello {
  const unsigned = {
    protocolVersion: PROTOCOL_VERSION,
    signingKey: encodeKey(identity.signing.publicKey),
    boxKey: encodeKey(identity.box.publicKey),
    timestamp: Date.now(),
    nonce: randomBytes(16).toString('base64'),
  };
  return { ...unsigned, signature: encodeKey(signText(helloSignedText(coordinatorSigningKey, connectionId, unsigned), identity.signing.secretKey)) };
}

/** Where a report is bound: the coordinator it is for and the nonce of the connection's hello. */
export interface ReportBinding {
  coordinatorSigningKey: string;
  helloNonce: string;
}

export function signReady(identity: Identity, binding: ReportBinding, ready: Omit<ReadyReport, 'signature'>): ReadyReport {
  const text = readySignedText(binding.coordinatorSigningKey, binding.helloNonce, ready);
  return { ...ready, signature: encodeKey(signText(text, identity.signing.secretKey)) };
}

export function signEvaluation(identity: Identity, binding: ReportBinding, report: EvaluationResult): EvaluationReport {
  const text = evaluationSignedText(binding.coordinatorSigningKey, binding.helloNonce, report);
  return { ...report, signature: encodeKey(signText(text, identity.signing.secretKey)) };
}

/** Throws BAD_SIGNATURE unless `signature` is `signingKey`'s (base64) signature of `text`. */
export function verifyClientSignature(text: string, signature: string, signingKey: string, what: string): void {
  let raw: Uint8Array;
  try {
    raw = decodeKey(signature, `${what}.signature`, 64);
  } catch {
    throw new FedtlError('BAD_SIGNATURE', `${what} signature is malformed`);
  }
  if (!verifyText(text, raw, decodeKey(signingKey, 'client signing key'))) {
    throw new FedtlError('BAD_SIGNATURE', `${what} is not signed by this connection's client key for this connection`);
  }
}
