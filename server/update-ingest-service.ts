/**
 * The update ingest's opening side (see {@link UpdateIngest}, update-ingest.ts), served on one
 * message port: opens each sealed update with the very `openUpdate` of the serial path and, for a
 * folding job, only once every check passed, adds `min(n, cap) · Δ` to this port's float64 partial
 * sum of the round. It runs in the ingest's own worker threads (update-ingest-worker.ts) or, in a
 * simulation, in the training pool's workers (`UpdateIngest.hosted`), so opening shares their
 * cores instead of adding threads. Not a public module.
 *
 * Least privilege: the service holds the coordinator's box (X25519) key pair, which it needs to
 * decrypt, and only the public half of the signing key.
 */
import { FedtlError, toFedtlError } from '../shared/core/errors.ts';
import { ownsWholeBuffer } from '../shared/core/transfer.ts';
import type { Identity } from '../shared/crypto/identity.ts';
import { type ExpectedUpdate, openUpdateRows } from '../shared/crypto/update-envelope.ts';
import { KernelMemory } from '../shared/math/delta-kernels.ts';
import { foldWeighted, foldWeightedPair, foldWeightedQuad } from '../shared/strategy/fed-avg.ts';
import { foldSparse, type SparseDelta } from '../shared/weights/sparse-rows.ts';
import type { IngestReply, IngestRequest, IngestWorkerSetup } from './update-ingest.ts';

/** Deltas folded per pass over a worker's float64 partial sum (foldWeightedQuad). */
const FOLD_WIDTH = 4;

interface Pending {
  delta: Float32Array;
  weight: number;
}

/** Where the service reads requests and posts replies: a worker's `parentPort` or a `MessagePort`. */
export interface IngestPort {
  on(event: 'message', listener: (request: IngestRequest) => void): unknown;
  postMessage(reply: IngestReply, transfer?: ArrayBuffer[]): void;
}

/** Serves ingest requests on `port` with the coordinator keys of `setup`, then posts `ready`. */
export function serveIngest(port: IngestPort, setup: IngestWorkerSetup): void {
  const identity: Identity = {
    // openUpdate never signs: an empty secret keeps the signing key out of this thread.
    signing: { publicKey: setup.signingPublicKey, secretKey: new Uint8Array(0) },
    box: { publicKey: setup.boxPublicKey, secretKey: setup.boxSecretKey },
  };

  let epoch = 0;
  let expected: ExpectedUpdate | null = null;
  let exampleCap = Number.POSITIVE_INFINITY;
  let sum: Float64Array | null = null;
  let exampleCount = 0;
  let count = 0;
  /**
   * Accepted deltas not yet in `sum`: deltas are folded four per pass over the float64 sum
   * (foldWeightedQuad), so up to three wait here for the next, or for the round's finish. Each
   * passed every check already; it is counted in `exampleCount` and `count` when it arrives.
   */
  const pending: Pending[] = [];

  /**
   * Where folding jobs decrypt (openUpdate's `into`) and where the round's partial sum lives: four
   * reused delta buffers (up to three hold pending deltas, a free one takes the next) and the
   * float64 sum, all in one WebAssembly memory, so that the sum of squares and the four-wide fold run
   * in SIMD (shared/math/delta-kernels.ts; bit for bit what plain arrays give). Fresh 4·P-byte
   * buffers per update would cost page faults and garbage collection. Plain arrays where
   * WebAssembly SIMD is missing, the head does not fit a kernel memory or the memory cannot grow
   * (`reserve` then returns false rather than throwing, so no update is refused for it).
   */
  const kernel = KernelMemory.create();
  let scratch: Float32Array[] = [];
  let sumBuffer: Float64Array | null = null;

  /** Lays out the buffers for heads of `parameterCount` values (at the first folding job of a size). */
  function layout(parameterCount: number): void {
    const bytes = 8 * parameterCount + 4 * parameterCount * FOLD_WIDTH;
    if (kernel?.reserve(bytes)) {
      const memory = kernel.buffer;
      sumBuffer = new Float64Array(memory, 0, parameterCount);
      scratch = Array.from({ length: FOLD_WIDTH }, (_, k) => new Float32Array(memory, 8 * parameterCount + 4 * parameterCount * k, parameterCount));
    } else {
      sumBuffer = new Float64Array(parameterCount);
      scratch = Array.from({ length: FOLD_WIDTH }, () => new Float32Array(parameterCount));
    }
  }

  function scratchFor(parameterCount: number): Float32Array {
    if (scratch[0]?.length !== parameterCount) layout(parameterCount);
    const free = scratch.find((buffer) => !pending.some((p) => p.delta === buffer));
    if (free === undefined) throw new FedtlError('INTERNAL', 'no free ingest buffer'); // pending holds at most FOLD_WIDTH - 1
    return free;
  }

  /** The round's partial sum, zeroed at its first fold. */
  function startSum(parameterCount: number): Float64Array {
    if (sumBuffer?.length !== parameterCount) layout(parameterCount);
    return sumBuffer!.fill(0);
  }

  /** Folds the waiting deltas, if any (at the round's finish): a pair per pass, then an odd one alone. */
  function flushPending(): void {
    if (sum !== null) {
      let k = 0;
      for (; k + 1 < pending.length; k += 2) foldWeightedPair(sum, pending[k]!.delta, pending[k]!.weight, pending[k + 1]!.delta, pending[k + 1]!.weight);
      if (k < pending.length) foldWeighted(sum, pending[k]!.delta, pending[k]!.weight);
    }
    pending.length = 0;
  }

  function handleJob(job: Extract<IngestRequest, { type: 'job' }>): { reply: IngestReply; transfer: ArrayBuffer[] } {
    if (job.epoch !== epoch || expected === null) throw new FedtlError('STALE_ROUND', 'the round closed before this update was processed');
    const into = job.fold ? scratchFor(expected.parameterCount) : undefined;
    const { header, delta } = openUpdateRows(job.bytes, { coordinatorIdentity: identity, expected, resolveClient: () => job.keys ?? undefined, ...(into ? { into } : {}) });
    // The same refusal, with the same code, as FitRound.accept on the serial path.
    if (header.clientId !== job.clientId) throw new FedtlError('BAD_SIGNATURE', `update names client ${header.clientId} but came from ${job.clientId}`);
    const weight = Math.min(header.exampleCount, exampleCap);
    if (!job.fold) {
      if (!(delta instanceof Float32Array)) {
        // A row-sparse upload goes back as its sent rows: the values' buffer (the decrypted payload) and the runs.
        const values = ownsWholeBuffer(delta.values) ? delta.values : Float32Array.from(delta.values);
        const sparse: SparseDelta = { length: delta.length, values, runs: delta.runs };
        return { reply: { type: 'job', id: job.id, ok: true, header, weight, delta: sparse }, transfer: [values.buffer as ArrayBuffer, delta.runs.buffer as ArrayBuffer] };
      }
      const owned = ownsWholeBuffer(delta) ? delta : Float32Array.from(delta);
      return { reply: { type: 'job', id: job.id, ok: true, header, weight, delta: owned }, transfer: [owned.buffer as ArrayBuffer] };
    }
    // Every check passed: only now does the update touch the partial sum.
    sum ??= startSum(expected.parameterCount);
    if (!(delta instanceof Float32Array)) foldSparse(sum, delta, weight); // the sent rows only (openUpdateRows did not use the scratch)
    else {
      pending.push({ delta, weight });
      if (pending.length === FOLD_WIDTH) {
        const [a, b, c, d] = pending as [Pending, Pending, Pending, Pending];
        foldWeightedQuad(sum, a.delta, a.weight, b.delta, b.weight, c.delta, c.weight, d.delta, d.weight);
        pending.length = 0;
      }
    }
    exampleCount += weight;
    count++;
    return { reply: { type: 'job', id: job.id, ok: true, header, weight, delta: null }, transfer: [] };
  }

  port.on('message', (request: IngestRequest) => {
    switch (request.type) {
      case 'begin':
        pending.length = 0;
        epoch = request.epoch;
        expected = request.expected;
        exampleCap = request.exampleCap;
        sum = null;
        exampleCount = 0;
        count = 0;
        return;
      case 'finish': {
        const mine = request.epoch === epoch;
        if (mine) flushPending();
        pending.length = 0;
        // The sum leaves as a copy of the reused buffer (8·P bytes once a round), moved to the main thread.
        const reply: IngestReply = { type: 'finish', id: request.id, epoch, sum: mine && sum !== null ? sum.slice() : null, exampleCount: mine ? exampleCount : 0, count: mine ? count : 0 };
        const transfer = reply.sum ? [reply.sum.buffer as ArrayBuffer] : [];
        expected = null;
        sum = null;
        exampleCount = 0;
        count = 0;
        port.postMessage(reply, transfer);
        return;
      }
      case 'job': {
        let out: { reply: IngestReply; transfer: ArrayBuffer[] };
        try {
          out = handleJob(request);
        } catch (thrown) {
          const error = toFedtlError(thrown, 'BAD_MESSAGE');
          out = { reply: { type: 'job', id: request.id, ok: false, code: error.code, message: error.message }, transfer: [] };
        }
        port.postMessage(out.reply, out.transfer);
        return;
      }
    }
  });

  port.postMessage({ type: 'ready' } satisfies IngestReply);
}
