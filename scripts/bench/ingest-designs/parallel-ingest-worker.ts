/**
 * Worker side of {@link ParallelIngest} (scripts/bench/ingest-designs/parallel-ingest.ts): opens each sealed update with
 * the very same `openUpdate` the synchronous path uses and, only if every check passed, folds
 * `exampleCount × delta` into this worker's float64 partial sum for the round. The delta never
 * leaves the thread; the partial sum is transferred to the main thread at `finish`.
 * Not a public module: only parallel-ingest.ts starts it.
 *
 * Least privilege: the worker holds the coordinator's box (X25519) key pair, which it needs to
 * decrypt, and only the public half of the signing key.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { FedtlError, toFedtlError } from '../../../shared/core/errors.ts';
import type { Identity } from '../../../shared/crypto/identity.ts';
import { type EnvelopeLimits, type ExpectedUpdate, openUpdate } from '../../../shared/crypto/update-envelope.ts';
import type { IngestReply, IngestRequest, IngestWorkerSetup } from './parallel-ingest.ts';

const port = parentPort;
if (port === null) throw new Error('parallel-ingest-worker.ts must run as a worker thread');
const setup = workerData as IngestWorkerSetup;
const identity: Identity = {
  // openUpdate never signs: an empty secret keeps the signing key out of this thread.
  signing: { publicKey: setup.signingPublicKey, secretKey: new Uint8Array(0) },
  box: { publicKey: setup.boxPublicKey, secretKey: setup.boxSecretKey },
};

/** The round this worker is accumulating, if any. */
let epoch = 0;
let open = false;
let expected: ExpectedUpdate | null = null;
let limits: EnvelopeLimits | undefined;
let sum: Float64Array | null = null;
let exampleCount = 0;
let count = 0;

/** `acc[i] += weight × delta[i]` in float64 (the same loop as `WeightedDeltaMean.add`). */
function accumulate(acc: Float64Array, delta: Float32Array, weight: number): void {
  const n = delta.length;
  for (let i = 0; i < n; i++) acc[i] = (acc[i] as number) + weight * (delta[i] as number);
}

function handleJob(job: Extract<IngestRequest, { type: 'job' }>): IngestReply {
  if (!open || job.epoch !== epoch || expected === null) {
    throw new FedtlError('STALE_ROUND', 'the round closed before this update was processed');
  }
  const { header, delta, stats } = openUpdate(job.bytes, {
    coordinatorIdentity: identity,
    expected,
    limits,
    // The main thread resolved the keys of the connection's authenticated client; an envelope
    // naming anyone else is refused here, before any cryptography, like the round loop does.
    resolveClient: (clientId) => {
      if (clientId !== job.clientId) throw new FedtlError('BAD_SIGNATURE', `update names client ${clientId} but came from ${job.clientId}`);
      return job.keys ?? undefined;
    },
  });
  // The main thread reserved the id it read from the unauthenticated header; accept only if the
  // verified header carries the same one (otherwise the replay check would not cover this update).
  if (job.updateId !== null && header.updateId !== job.updateId) {
    throw new FedtlError('INTERNAL', `verified updateId ${header.updateId} differs from the reserved ${job.updateId}`);
  }
  // Every check passed: only now does the update touch the partial sum.
  sum ??= new Float64Array(expected.parameterCount);
  accumulate(sum, delta, header.exampleCount);
  exampleCount += header.exampleCount;
  count++;
  return { type: 'job', id: job.id, ok: true, header, l2Norm: stats.l2Norm };
}

port.on('message', (request: IngestRequest) => {
  switch (request.type) {
    case 'begin':
      epoch = request.epoch;
      open = true;
      expected = request.expected;
      limits = request.limits;
      sum = null;
      exampleCount = 0;
      count = 0;
      return;
    case 'finish': {
      const reply: IngestReply = { type: 'finish', id: request.id, epoch, sum: request.epoch === epoch ? sum : null, exampleCount, count };
      const transfer = reply.sum ? [reply.sum.buffer as ArrayBuffer] : [];
      open = false;
      sum = null;
      exampleCount = 0;
      count = 0;
      port.postMessage(reply, transfer);
      return;
    }
    case 'job': {
      // Hand the envelope's memory back so the caller can reuse it (it was transferred, not copied).
      const transfer: ArrayBuffer[] = request.returnInput ? [request.bytes.buffer as ArrayBuffer] : [];
      const input = request.returnInput ? { input: request.bytes } : {};
      let reply: IngestReply;
      try {
        reply = { ...handleJob(request), ...input };
      } catch (thrown) {
        const error = toFedtlError(thrown, 'BAD_MESSAGE');
        reply = { type: 'job', id: request.id, ok: false, code: error.code, message: error.message, ...input };
      }
      port.postMessage(reply, transfer);
      return;
    }
  }
});

port.postMessage({ type: 'ready' } satisfies IngestReply);
