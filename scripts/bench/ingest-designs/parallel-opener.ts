/**
 * Opening sealed updates on a pool of worker threads, so a multi-core coordinator verifies and
 * decrypts update k+1, k+2, … while its main thread folds update k into the aggregate.
 *
 * ## Why
 * Opening a 1M-parameter update (4 MB) costs ~8 ms of CPU — SHA-256 of the ciphertext, ChaCha20-
 * Poly1305, the finiteness/range/L2 scan — against ~2 ms to accumulate it, so a coordinator that
 * opens on its main thread ingests at ~0.26× the speed of plain accumulation. The workers run the
 * unchanged `openUpdate` (same checks, same order, same error codes), so security is identical: no
 * delta reaches the caller unless its signature, recipient, round, AEAD tag and values all check
 * out. Measured in `scripts/bench/ingest.ts` (mode `parallel`), side by side with sync/async/plain.
 *
 * ## Threads and keys
 * Each worker receives the coordinator's X25519 box key pair (it must decrypt) and only the public
 * half of the signing key. Worker threads share the process, so this widens nothing an attacker
 * could reach; it just keeps the signing secret where it is used.
 *
 * ## Memory
 * `sealed` is **moved** to the worker when it spans its whole `ArrayBuffer` (the usual case for a
 * socket.io binary message of more than a few KB): the caller's view is detached (`byteLength`
 * becomes 0), and the same memory comes back as `result.sealed`. A view on part of a larger buffer
 * (a pooled or sliced Buffer) is copied instead, so memory owned by someone else is never detached.
 * Read `sealed.byteLength` before calling, or use `result.sealedBytes`.
 *
 * ## TypeScript in workers
 * Workers run `parallel-opener-worker.ts` through a two-line bootstrap that calls tsx's
 * `register()` inside the worker (see {@link workerEntry}); this works whether the coordinator was
 * started with `npx tsx`, with `node --import tsx`, or by bin/fedtl.js's in-process `register()`.
 * A worker costs ~120–160 ms to start (tsx compiles the imports once per worker).
 *
 * @example
 * ```ts
 * const opener = createParallelOpener({
 *   identity, resolveClientKeys: (id) => allowList.resolveClient(id), workers: 2,
 * });
 * const bytesUp = sealed.byteLength; // before: `sealed` may be detached by the call
 * const opened = await opener.open(sealed, { roundId, clientId, parameterCount });
 * aggregation.add({ clientId, delta: opened.delta, exampleCount: opened.exampleCount, metrics: opened.metrics });
 * await opener.close();
 * ```
 */
import { MODULE_EXTENSION, RUNS_FROM_SOURCES } from '../../../shared/core/package-root.ts';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { FedtlError, isErrorCode, type ErrorCode } from '../../../shared/core/errors.ts';
import type { Identity } from '../../../shared/crypto/identity.ts';
import type { ClientPublicKeys, EnvelopeLimits, ExpectedUpdate, UpdateHeader } from '../../../shared/crypto/update-envelope.ts';
import type { OpenedUpdate } from '../../../server/round-loop.ts';
import type { UpdateOpenerOptions } from '../../../server/update-opener.ts';

/** Options of {@link createParallelOpener}. */
export interface ParallelOpenerOptions {
  /** The coordinator's identity; updates must be sealed to its box key. */
  identity: Identity;
  /**
   * Public keys of an admitted client, or `undefined` (→ `UNKNOWN_CLIENT`). Called on the calling
   * thread with the connection's authenticated client id; may throw a `FedtlError` such as
   * `REVOKED_CLIENT` (see `AllowList.resolveClient`), which `open` rejects with unchanged.
   */
  resolveClientKeys: (clientId: string) => ClientPublicKeys | undefined;
  /** Worker threads. @default os.availableParallelism() */
  workers?: number;
  /** Value limits, as for `createUpdateOpener`. @default { maxAbs: 1e6, maxL2Norm: Infinity, maxExampleCount: 1e9 } */
  validation?: UpdateOpenerOptions;
  /** Framing limits. @default the envelope's (16 KiB header, 1 GiB payload) */
  limits?: EnvelopeLimits;
}

/** What the round loop's `UpdateOpener` returns, plus what the worker measured. */
export interface ParallelOpenedUpdate extends Omit<OpenedUpdate, 'delta'> {
  /** The dense delta (this design opens dense updates only). */
  delta: Float32Array;
  /** L2 norm of the delta, computed during validation. */
  l2Norm: number;
  /** Size of the envelope that was opened. */
  sealedBytes: number;
  /** The envelope's bytes, back from the worker (same memory if it was moved, else the caller's view). */
  sealed: Uint8Array;
}

/** Expected properties of one update; `clientId` is the sender as authenticated by the connection. */
export interface ParallelExpected {
  roundId: string;
  clientId: string;
  parameterCount: number;
}

export interface ParallelOpener {
  /**
   * Opens and validates `sealed` on a worker. Rejects with the same `FedtlError` codes as
   * `openUpdate`, plus `BAD_SIGNATURE` when the envelope names a client other than
   * `expected.clientId`, and `INTERNAL` if a worker died. See the module doc about `sealed`'s memory.
   */
  open(sealed: Uint8Array, expected: ParallelExpected): Promise<ParallelOpenedUpdate>;
  /** Number of worker threads. */
  readonly workers: number;
  /** Updates being opened right now. */
  readonly pending: number;
  /** Terminates the workers; opens still pending reject with `INTERNAL`. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

// ---- messages between the threads (internal; exported for the worker's `import type`) ---------

/** @internal */
export interface WorkerSetup {
  boxPublicKey: Uint8Array;
  boxSecretKey: Uint8Array;
  signingPublicKey: Uint8Array;
}

/** @internal */
export interface OpenJob {
  id: number;
  bytes: Uint8Array;
  /** True when `bytes` was transferred and should be transferred back. */
  returnInput: boolean;
  clientId: string;
  keys: ClientPublicKeys | null;
  expected: ExpectedUpdate;
  limits: EnvelopeLimits | undefined;
}

/** @internal */
export type OpenReply =
  | { id: number; ok: true; header: UpdateHeader; delta: Float32Array; l2Norm: number; input?: Uint8Array }
  | { id: number; ok: false; code: ErrorCode; message: string; input?: Uint8Array };

// ------------------------------------------------------------------------------------------------

const WORKER_URL = new URL(`./parallel-opener-worker${MODULE_EXTENSION}`, import.meta.url);
/** Consecutive worker crashes, without one successful reply in between, before the pool gives up. */
const MAX_CONSECUTIVE_CRASHES = 3;

/**
 * The worker's entry: a tiny ES module (as a data: URL) that registers tsx in the worker and then
 * imports the TypeScript worker. On Node 20 neither an inherited `--import tsx` nor one passed in
 * `execArgv` makes a `.ts` worker entry loadable (the entry is resolved before the hooks apply), and
 * an in-process `register()` (bin/fedtl.js) does not reach workers at all; registering inside the
 * worker works in every case (measured: `npx tsx`, `node` + `register()`).
 */
function workerEntry(): URL {
  // Built JavaScript loads as it is; only the TypeScript sources need tsx inside the worker.
  if (!RUNS_FROM_SOURCES) return WORKER_URL;
  const register = import.meta.resolve('tsx/esm/api');
  const code = `import { register } from ${JSON.stringify(register)};\nregister();\nawait import(${JSON.stringify(WORKER_URL.href)});\n`;
  return new URL(`data:text/javascript,${encodeURIComponent(code)}`);
}

interface Waiting {
  resolve: (reply: OpenReply) => void;
  reject: (error: FedtlError) => void;
}

interface Slot {
  worker: Worker;
  inFlight: Map<number, Waiting>;
}

/**
 * Starts a pool of worker threads that open sealed updates addressed to `identity`.
 * The caller owns the pool and must `close()` it (or `await using` it).
 */
export function createParallelOpener(options: ParallelOpenerOptions): ParallelOpener {
  const count = options.workers ?? availableParallelism();
  if (!Number.isSafeInteger(count) || count < 1) throw new FedtlError('BAD_CONFIG', `workers must be a positive integer, got ${count}`);
  const setup: WorkerSetup = {
    boxPublicKey: options.identity.box.publicKey,
    boxSecretKey: options.identity.box.secretKey,
    signingPublicKey: options.identity.signing.publicKey,
  };
  const validation = options.validation ?? {};
  const entry = workerEntry();
  const slots: Slot[] = [];
  let nextId = 1;
  let pending = 0;
  let crashes = 0;
  let closed = false;
  let fatal: FedtlError | null = null;

  const spawn = (index: number): void => {
    const worker = new Worker(entry, { workerData: setup });
    worker.unref(); // referenced only while it has work, so an idle pool never keeps the process alive
    const slot: Slot = { worker, inFlight: new Map() };
    slots[index] = slot;
    worker.on('message', (reply: OpenReply) => {
      const waiting = slot.inFlight.get(reply.id);
      if (!waiting) return;
      slot.inFlight.delete(reply.id);
      if (slot.inFlight.size === 0) worker.unref();
      crashes = 0;
      waiting.resolve(reply);
    });
    const fail = (why: string, cause?: unknown): void => {
      if (slots[index] !== slot) return;
      const error = new FedtlError('INTERNAL', `update-opening worker ${why}`, { cause });
      for (const waiting of slot.inFlight.values()) waiting.reject(error);
      pending -= slot.inFlight.size;
      slot.inFlight.clear();
      if (closed) return;
      crashes++;
      if (crashes >= MAX_CONSECUTIVE_CRASHES) {
        fatal = new FedtlError('INTERNAL', `update-opening workers failed ${crashes} times in a row; last: ${why}`, { cause });
        return;
      }
      spawn(index);
    };
    worker.on('error', (error) => fail(`crashed: ${error.message}`, error));
    worker.on('exit', (code) => fail(`exited with code ${code}`));
  };
  for (let i = 0; i < count; i++) spawn(i);

  const open = (sealed: Uint8Array, expected: ParallelExpected): Promise<ParallelOpenedUpdate> => {
    if (closed) return Promise.reject(new FedtlError('INTERNAL', 'the parallel opener is closed'));
    if (fatal) return Promise.reject(fatal);
    if (!(sealed instanceof Uint8Array)) return Promise.reject(new FedtlError('BAD_MESSAGE', 'update envelope: expected bytes (Uint8Array)'));
    let keys: ClientPublicKeys | undefined;
    try {
      keys = options.resolveClientKeys(expected.clientId);
    } catch (thrown) {
      return Promise.reject(thrown);
    }
    const sealedBytes = sealed.byteLength;
    const whole = sealed.buffer instanceof ArrayBuffer && sealed.byteOffset === 0 && sealed.byteLength === sealed.buffer.byteLength;
    const bytes = whole ? sealed : new Uint8Array(sealed); // never detach memory we do not own entirely
    const job: OpenJob = {
      id: nextId++,
      bytes,
      returnInput: whole,
      clientId: expected.clientId,
      keys: keys ?? null,
      expected: {
        roundId: expected.roundId,
        parameterCount: expected.parameterCount,
        maxAbs: validation.maxAbs ?? 1e6,
        maxL2Norm: validation.maxL2Norm ?? Number.POSITIVE_INFINITY,
        maxExampleCount: validation.maxExampleCount ?? 1e9,
      },
      limits: options.limits,
    };
    // Least-loaded worker; ties go to the lowest index.
    let slot = slots[0]!;
    for (const candidate of slots) if (candidate.inFlight.size < slot.inFlight.size) slot = candidate;
    return new Promise<OpenReply>((resolve, reject) => {
      if (slot.inFlight.size === 0) slot.worker.ref();
      slot.inFlight.set(job.id, { resolve, reject });
      pending++;
      slot.worker.postMessage(job, [bytes.buffer as ArrayBuffer]);
    }).then((reply) => {
      pending--;
      const back = reply.input ?? sealed;
      if (!reply.ok) throw new FedtlError(isErrorCode(reply.code) ? reply.code : 'INTERNAL', reply.message);
      const { header } = reply;
      return {
        roundId: header.roundId,
        clientId: header.clientId,
        exampleCount: header.exampleCount,
        metrics: { ...header.metrics },
        delta: reply.delta,
        nonce: header.updateId,
        l2Norm: reply.l2Norm,
        sealedBytes,
        sealed: back,
      };
    });
  };

  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    const error = new FedtlError('INTERNAL', 'the parallel opener was closed');
    for (const slot of slots) {
      for (const waiting of slot.inFlight.values()) waiting.reject(error);
      slot.inFlight.clear();
    }
    pending = 0;
    await Promise.all(slots.map((slot) => slot.worker.terminate()));
  };

  return {
    open,
    workers: count,
    get pending() {
      return pending;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
