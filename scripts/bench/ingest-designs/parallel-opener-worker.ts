/**
 * Worker side of {@link createParallelOpener} (scripts/bench/ingest-designs/parallel-opener.ts): opens one sealed update
 * per message with the very same `openUpdate` the synchronous path uses (SHA-256, Ed25519 verify,
 * X25519 + HKDF, ChaCha20-Poly1305, finiteness / range / L2 scan) and transfers the decrypted
 * delta back. Not a public module: only parallel-opener.ts starts it.
 *
 * Least privilege: the worker holds the coordinator's box (X25519) key pair, which it needs to
 * decrypt, and only the public half of the signing key; the signing secret never enters it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { FedtlError, toFedtlError } from '../../../shared/core/errors.ts';
import type { Identity } from '../../../shared/crypto/identity.ts';
import { openUpdate } from '../../../shared/crypto/update-envelope.ts';
import type { OpenJob, OpenReply, WorkerSetup } from './parallel-opener.ts';

const port = parentPort;
if (port === null) throw new Error('parallel-opener-worker.ts must run as a worker thread');
const setup = workerData as WorkerSetup;
const identity: Identity = {
  // openUpdate never signs: an empty secret keeps the signing key out of this thread.
  signing: { publicKey: setup.signingPublicKey, secretKey: new Uint8Array(0) },
  box: { publicKey: setup.boxPublicKey, secretKey: setup.boxSecretKey },
};

port.on('message', (job: OpenJob) => {
  const transfer: ArrayBuffer[] = [];
  // Hand the envelope's memory back so the caller can reuse it (it was transferred, not copied).
  if (job.returnInput) transfer.push(job.bytes.buffer as ArrayBuffer);
  let reply: OpenReply;
  try {
    const { header, delta, stats } = openUpdate(job.bytes, {
      coordinatorIdentity: identity,
      expected: job.expected,
      limits: job.limits,
      // The main thread resolved the keys of the connection's authenticated client; an envelope
      // naming anyone else is refused here, before any cryptography, like the round loop does.
      resolveClient: (clientId) => {
        if (clientId !== job.clientId) throw new FedtlError('BAD_SIGNATURE', `update names client ${clientId} but came from ${job.clientId}`);
        return job.keys ?? undefined;
      },
    });
    // Transfer only a buffer the delta owns entirely; otherwise copy (never detach shared memory).
    const own = delta.byteOffset === 0 && delta.byteLength === delta.buffer.byteLength && delta.buffer instanceof ArrayBuffer;
    const out = own ? delta : new Float32Array(delta);
    transfer.push(out.buffer as ArrayBuffer);
    reply = { id: job.id, ok: true, header, delta: out, l2Norm: stats.l2Norm, ...(job.returnInput ? { input: job.bytes } : {}) };
  } catch (thrown) {
    const error = toFedtlError(thrown, 'BAD_MESSAGE');
    reply = { id: job.id, ok: false, code: error.code, message: error.message, ...(job.returnInput ? { input: job.bytes } : {}) };
  }
  port.postMessage(reply, transfer);
});
