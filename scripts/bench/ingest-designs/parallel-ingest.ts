/**
 * Ingesting sealed updates on a pool of worker threads that open **and accumulate**: each worker
 * runs the unchanged `openUpdate` (SHA-256 of the ciphertext, Ed25519 verify, X25519 + HKDF,
 * ChaCha20-Poly1305, finiteness / range / L2 scan) and folds the accepted delta into its own
 * float64 partial sum Σ n_k·Δ_k. At the end of a round the main thread merges the W partials
 * (W × P additions, negligible next to N × P).
 *
 * ## Why
 * `parallel-opener.ts` opens on workers but accumulates on the main thread and transfers
 * every decrypted delta back: on a 2-core coordinator one core opens while the other mostly waits
 * for it, and ingest reached ~0.36× plain accumulation. Here both cores run open + accumulate on
 * data that is still in their caches, and no delta ever crosses threads. Measured side by side in
 * `scripts/bench/ingest.ts` (mode `ingest×W`).
 *
 * ## Security
 * Identical to `openUpdate`: same envelope, same checks in the same order, same error codes. A
 * delta is added to a partial sum only after every check passed, so a rejected update leaves no
 * trace. The envelope must name the client the caller authenticated (`BAD_SIGNATURE` otherwise).
 * Replays (an `updateId` already accepted this round) are refused with `REPLAY` **before** the
 * envelope is dispatched: the main thread reads the `updateId` from the (still unauthenticated)
 * header only to reserve it; the worker then refuses the envelope unless the authenticated header
 * carries exactly that id. Two submissions of one id in flight at once are serialised: the second
 * is decided after the first (so a tampered copy arriving first cannot shadow the genuine one).
 * Workers hold the coordinator's box key pair (they decrypt) and only the public signing key.
 *
 * ## Memory
 * As with the parallel opener, `sealed` is **moved** to the worker when it spans its whole
 * `ArrayBuffer` (the caller's view is detached; the same memory comes back as `result.sealed`), and
 * copied otherwise. Each worker holds one `Float64Array(parameterCount)` (8 B/parameter) while a
 * round is open; `finishRound` transfers it to the caller (no copy).
 *
 * ## Determinism
 * Which worker gets which update depends on timing, so the merged sum equals the sequential sum
 * only up to float64 reassociation (relative differences ~1e-16 per term, ~1e-13 for thousands of
 * updates), not bit for bit.
 *
 * @example
 * ```ts
 * const ingest = await ParallelIngest.start({ identity, resolveClientKeys: (id) => allowList.resolveClient(id), workers: 2 });
 * ingest.beginRound({ roundId, parameterCount });
 * const result = await ingest.submit(sealed, { clientId }); // { ok: true, header } | { ok: false, code, message }
 * const { sum, exampleCount, count } = await ingest.finishRound();
 * aggregation.addPartial(sum, exampleCount, count);
 * await ingest.close();
 * ```
 */
import { MODULE_EXTENSION, RUNS_FROM_SOURCES } from '../../../shared/core/package-root.ts';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { FedtlError, isErrorCode, type ErrorCode } from '../../../shared/core/errors.ts';
import type { Identity } from '../../../shared/crypto/identity.ts';
import type { ClientPublicKeys, EnvelopeLimits, ExpectedUpdate, UpdateHeader } from '../../../shared/crypto/update-envelope.ts';

/** Options of {@link ParallelIngest.start}. */
export interface ParallelIngestOptions {
  /** The coordinator's identity; updates must be sealed to its box key. */
  identity: Identity;
  /**
   * Public keys of an admitted client, or `undefined` (→ `UNKNOWN_CLIENT`). Called on the calling
   * thread with the connection's authenticated client id; a `FedtlError` it throws (e.g.
   * `REVOKED_CLIENT`) becomes a rejected result with that code.
   */
  resolveClientKeys: (clientId: string) => ClientPublicKeys | undefined;
  /** Worker threads. @default os.availableParallelism() */
  workers?: number;
  /** Framing limits. @default the envelope's (16 KiB header, 1 GiB payload) */
  limits?: EnvelopeLimits;
  /**
   * Refuse a second envelope with an `updateId` already accepted in the round (`REPLAY`).
   * Turn off only in benchmarks that cycle a fixed pool of envelopes. @default true
   */
  replayCheck?: boolean;
}

/** What the round expects of every update. */
export interface IngestRound {
  /** The open round; envelopes for any other round are `STALE_ROUND`. */
  roundId: string;
  /** Exact number of float32 parameters; anything else is `BAD_SHAPE`. */
  parameterCount: number;
  /** Largest accepted |value| of a delta element. @default 1e6 */
  maxAbs?: number;
  /** Largest accepted L2 norm of a delta. @default Infinity */
  maxL2Norm?: number;
  /** Largest accepted `exampleCount`. @default 1e9 */
  maxExampleCount?: number;
}

/** Outcome of one {@link ParallelIngest.submit}. Never a thrown error for a bad update. */
export type IngestResult =
  | {
      ok: true;
      /** The authenticated header (sender, example count, metrics, updateId). */
      header: UpdateHeader;
      /** L2 norm of the accepted delta. */
      l2Norm: number;
      /** Size of the envelope. */
      sealedBytes: number;
      /** The envelope's bytes (same memory if they were moved to the worker, else the caller's view). */
      sealed: Uint8Array;
    }
  | { ok: false; code: ErrorCode; message: string; sealedBytes: number; sealed: Uint8Array };

/** The merged partial sums of one round. */
export interface IngestPartial {
  roundId: string;
  /** Σ n_k·Δ_k over the accepted updates, float64; all zeros if none. Owned by the caller. */
  sum: Float64Array;
  /** Σ n_k. */
  exampleCount: number;
  /** Accepted updates. */
  count: number;
}

// ---- messages between the threads (internal; exported for the worker's `import type`) ---------

/** @internal */
export interface IngestWorkerSetup {
  boxPublicKey: Uint8Array;
  boxSecretKey: Uint8Array;
  signingPublicKey: Uint8Array;
}

/** @internal */
export type IngestRequest =
  | { type: 'begin'; epoch: number; expected: ExpectedUpdate; limits: EnvelopeLimits | undefined }
  | {
      type: 'job';
      id: number;
      epoch: number;
      bytes: Uint8Array;
      /** True when `bytes` was transferred and should be transferred back. */
      returnInput: boolean;
      clientId: string;
      keys: ClientPublicKeys | null;
      /** The updateId reserved on the main thread; null when replay checks are off. */
      updateId: string | null;
    }
  | { type: 'finish'; id: number; epoch: number };

/** @internal */
export type IngestReply =
  | { type: 'ready' }
  | { type: 'job'; id: number; ok: true; header: UpdateHeader; l2Norm: number; input?: Uint8Array }
  | { type: 'job'; id: number; ok: false; code: ErrorCode; message: string; input?: Uint8Array }
  | { type: 'finish'; id: number; epoch: number; sum: Float64Array | null; exampleCount: number; count: number };

// ------------------------------------------------------------------------------------------------

const WORKER_URL = new URL(`./parallel-ingest-worker${MODULE_EXTENSION}`, import.meta.url);
/** Consecutive worker crashes, without one successful reply in between, before the pool gives up. */
const MAX_CONSECUTIVE_CRASHES = 3;
const HEX32_RE = /^[0-9a-f]{32}$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Same bootstrap as the parallel opener: register tsx inside the worker, then import the TS entry. */
function workerEntry(): URL {
  // Built JavaScript loads as it is; only the TypeScript sources need tsx inside the worker.
  if (!RUNS_FROM_SOURCES) return WORKER_URL;
  const register = import.meta.resolve('tsx/esm/api');
  const code = `import { register } from ${JSON.stringify(register)};\nregister();\nawait import(${JSON.stringify(WORKER_URL.href)});\n`;
  return new URL(`data:text/javascript,${encodeURIComponent(code)}`);
}

/**
 * Reads `updateId` from an envelope's header without authenticating anything: used only to
 * reserve the id; the worker refuses the envelope unless the verified header carries the same id.
 * `undefined` when the frame is too malformed to say (the worker will reject it anyway).
 */
function peekUpdateId(bytes: Uint8Array, maxHeaderBytes: number): string | undefined {
  if (bytes.byteLength < 16) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getUint32(8, true);
  if (headerLength === 0 || headerLength > maxHeaderBytes || 16 + headerLength > bytes.byteLength) return undefined;
  try {
    const json: unknown = JSON.parse(utf8.decode(bytes.subarray(16, 16 + headerLength)));
    const id = typeof json === 'object' && json !== null ? (json as Record<string, unknown>)['updateId'] : undefined;
    return typeof id === 'string' && HEX32_RE.test(id) ? id : undefined;
  } catch {
    return undefined;
  }
}

type JobReply = Extract<IngestReply, { type: 'job' }>;
type FinishReply = Extract<IngestReply, { type: 'finish' }>;

interface Slot {
  worker: Worker;
  jobs: Map<number, (reply: JobReply) => void>;
  finishes: Map<number, { resolve: (reply: FinishReply) => void; reject: (error: FedtlError) => void }>;
  ready: Promise<void>;
}

interface RoundState {
  epoch: number;
  round: IngestRound;
  open: boolean;
  /** Set when a worker died mid-round: its partial sum is lost, so the round cannot be finished. */
  broken: FedtlError | null;
  seen: Set<string>;
  /** updateId → resolves true if the submission holding it was accepted. */
  reserved: Map<string, Promise<boolean>>;
}

/**
 * A pool of workers that open sealed updates addressed to one coordinator identity and keep
 * per-round partial sums. One round at a time: {@link beginRound}, any number of {@link submit}s,
 * {@link finishRound}. The caller owns the pool and must {@link close} it (or `await using` it).
 */
export class ParallelIngest {
  readonly #options: ParallelIngestOptions;
  readonly #entry: URL;
  readonly #setup: IngestWorkerSetup;
  readonly #slots: Slot[] = [];
  readonly #maxHeaderBytes: number;
  #nextId = 1;
  #epoch = 0;
  #pending = 0;
  #crashes = 0;
  #closed = false;
  #fatal: FedtlError | null = null;
  #round: RoundState | null = null;

  private constructor(options: ParallelIngestOptions, count: number) {
    this.#options = options;
    this.#entry = workerEntry();
    this.#maxHeaderBytes = options.limits?.maxHeaderBytes ?? 16 * 1024;
    this.#setup = {
      boxPublicKey: options.identity.box.publicKey,
      boxSecretKey: options.identity.box.secretKey,
      signingPublicKey: options.identity.signing.publicKey,
    };
    for (let i = 0; i < count; i++) this.#spawn(i);
  }

  /** Starts the workers and resolves once every one has loaded (~150 ms each under tsx). */
  static async start(options: ParallelIngestOptions): Promise<ParallelIngest> {
    const count = options.workers ?? availableParallelism();
    if (!Number.isSafeInteger(count) || count < 1) throw new FedtlError('BAD_CONFIG', `workers must be a positive integer, got ${count}`);
    const ingest = new ParallelIngest(options, count);
    try {
      await Promise.all(ingest.#slots.map((slot) => slot.ready));
    } catch (error) {
      await ingest.close();
      throw error;
    }
    return ingest;
  }

  /** Number of worker threads. */
  get workers(): number {
    return this.#slots.length;
  }

  /** Submissions not yet answered. */
  get pending(): number {
    return this.#pending;
  }

  /** The round being collected, or `null` between rounds. */
  get round(): Readonly<IngestRound> | null {
    return this.#round?.open ? this.#round.round : null;
  }

  /** Opens a round: every worker starts a zero partial sum. Throws if a round is already open. */
  beginRound(round: IngestRound): void {
    this.#usable();
    if (this.#round?.open) throw new FedtlError('INTERNAL', `round '${this.#round.round.roundId}' is still open; finishRound() it first`);
    if (!Number.isSafeInteger(round.parameterCount) || round.parameterCount < 1) {
      throw new FedtlError('BAD_CONFIG', `parameterCount must be a positive integer, got ${round.parameterCount}`);
    }
    const epoch = ++this.#epoch;
    this.#round = { epoch, round: { ...round }, open: true, broken: null, seen: new Set(), reserved: new Map() };
    const expected: ExpectedUpdate = {
      roundId: round.roundId,
      parameterCount: round.parameterCount,
      maxAbs: round.maxAbs ?? 1e6,
      maxL2Norm: round.maxL2Norm ?? Number.POSITIVE_INFINITY,
      maxExampleCount: round.maxExampleCount ?? 1e9,
    };
    for (const slot of this.#slots) slot.worker.postMessage({ type: 'begin', epoch, expected, limits: this.#options.limits } satisfies IngestRequest);
  }

  /**
   * Opens, validates and (if everything checks out) accumulates `sealed` on a worker.
   * `clientId` is the sender as authenticated by the connection. Resolves with the outcome; a bad
   * update is `{ ok: false, code }` (same codes as `openUpdate`, plus `REPLAY`, `STALE_ROUND` when
   * no round is open, and `INTERNAL` if a worker died). See the module doc about `sealed`'s memory.
   */
  async submit(sealed: Uint8Array, from: { clientId: string }): Promise<IngestResult> {
    const sealedBytes = sealed instanceof Uint8Array ? sealed.byteLength : 0;
    const reject = (code: ErrorCode, message: string): IngestResult => ({ ok: false, code, message, sealedBytes, sealed });
    if (this.#closed) return reject('INTERNAL', 'the parallel ingest is closed');
    if (this.#fatal) return reject(this.#fatal.code, this.#fatal.message);
    if (!(sealed instanceof Uint8Array)) return reject('BAD_MESSAGE', 'update envelope: expected bytes (Uint8Array)');
    const state = this.#round;
    if (!state?.open) return reject('STALE_ROUND', 'no round is collecting updates now');
    let keys: ClientPublicKeys | undefined;
    try {
      keys = this.#options.resolveClientKeys(from.clientId);
    } catch (thrown) {
      if (thrown instanceof FedtlError) return reject(thrown.code, thrown.message);
      return reject('INTERNAL', `resolveClientKeys failed: ${thrown instanceof Error ? thrown.message : String(thrown)}`);
    }
    const whole = sealed.buffer instanceof ArrayBuffer && sealed.byteOffset === 0 && sealed.byteLength === sealed.buffer.byteLength;
    const bytes = whole ? sealed : new Uint8Array(sealed); // never detach memory we do not own entirely

    if (this.#options.replayCheck === false) return this.#dispatch(state, bytes, whole, from.clientId, keys, null, sealed, sealedBytes);
    const updateId = peekUpdateId(bytes, this.#maxHeaderBytes);
    // No readable id: the worker will reject the frame; dispatch it so the caller gets the precise code.
    if (updateId === undefined) return this.#dispatch(state, bytes, whole, from.clientId, keys, null, sealed, sealedBytes);
    for (;;) {
      if (state.seen.has(updateId)) return reject('REPLAY', 'this update envelope was already received');
      const earlier = state.reserved.get(updateId);
      if (earlier === undefined) break;
      await earlier; // decided after the earlier holder of this id: accepted → REPLAY, rejected → try ours
    }
    let release!: (accepted: boolean) => void;
    state.reserved.set(updateId, new Promise<boolean>((resolve) => (release = resolve)));
    let result: IngestResult | undefined;
    try {
      result = await this.#dispatch(state, bytes, whole, from.clientId, keys, updateId, sealed, sealedBytes);
      if (result.ok) state.seen.add(updateId);
      return result;
    } finally {
      state.reserved.delete(updateId);
      release(result?.ok === true);
    }
  }

  /**
   * Closes the round and returns the merged partial sums. Resolves after every submission of the
   * round was answered. Rejects with `INTERNAL` if a worker died during the round (its partial sum
   * is lost); the pool itself stays usable for the next round.
   */
  async finishRound(): Promise<IngestPartial> {
    this.#usable();
    const state = this.#round;
    if (!state?.open) throw new FedtlError('INTERNAL', 'no round is open');
    state.open = false;
    const replies = await Promise.all(
      this.#slots.map(
        (slot) =>
          new Promise<FinishReply>((resolve, reject) => {
            const id = this.#nextId++;
            this.#track(slot, +1);
            slot.finishes.set(id, { resolve, reject });
            slot.worker.postMessage({ type: 'finish', id, epoch: state.epoch } satisfies IngestRequest);
          }),
      ),
    );
    if (state.broken) throw state.broken;
    let sum: Float64Array | null = null;
    let exampleCount = 0;
    let count = 0;
    for (const reply of replies) {
      if (reply.epoch !== state.epoch) throw new FedtlError('INTERNAL', `worker answered round ${reply.epoch}, expected ${state.epoch}`);
      exampleCount += reply.exampleCount;
      count += reply.count;
      const part = reply.sum;
      if (part === null) continue;
      if (sum === null) {
        sum = part; // take ownership of the first partial: W − 1 merges, not W
        continue;
      }
      for (let i = 0; i < sum.length; i++) sum[i] = (sum[i] as number) + (part[i] as number);
    }
    return { roundId: state.round.roundId, sum: sum ?? new Float64Array(state.round.parameterCount), exampleCount, count };
  }

  /** Terminates the workers. Pending submissions resolve `{ ok: false, code: 'INTERNAL' }`. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const error = new FedtlError('INTERNAL', 'the parallel ingest was closed');
    for (const slot of this.#slots) this.#failSlot(slot, error);
    await Promise.all(this.#slots.map((slot) => slot.worker.terminate()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---------------------------------------------------------------------------------------------

  #usable(): void {
    if (this.#closed) throw new FedtlError('INTERNAL', 'the parallel ingest is closed');
    if (this.#fatal) throw this.#fatal;
  }

  #dispatch(
    state: RoundState,
    bytes: Uint8Array,
    whole: boolean,
    clientId: string,
    keys: ClientPublicKeys | undefined,
    updateId: string | null,
    sealed: Uint8Array,
    sealedBytes: number,
  ): Promise<IngestResult> {
    // A submission that waited on a duplicate id may get here after finishRound or close.
    if (this.#closed || this.#fatal) {
      return Promise.resolve({ ok: false, code: 'INTERNAL', message: 'the parallel ingest is closed', sealedBytes, sealed });
    }
    if (this.#round !== state || !state.open) {
      return Promise.resolve({ ok: false, code: 'STALE_ROUND', message: 'the round closed before this update was processed', sealedBytes, sealed });
    }
    if (state.broken) return Promise.resolve({ ok: false, code: 'INTERNAL', message: state.broken.message, sealedBytes, sealed });
    // Least-loaded worker; ties go to the lowest index.
    let slot = this.#slots[0] as Slot;
    for (const candidate of this.#slots) if (candidate.jobs.size < slot.jobs.size) slot = candidate;
    const id = this.#nextId++;
    const request: IngestRequest = { type: 'job', id, epoch: state.epoch, bytes, returnInput: whole, clientId, keys: keys ?? null, updateId };
    this.#pending++;
    return new Promise<JobReply>((resolve) => {
      this.#track(slot, +1);
      slot.jobs.set(id, resolve);
      slot.worker.postMessage(request, [bytes.buffer as ArrayBuffer]);
    }).then((reply): IngestResult => {
      this.#pending--;
      const back = reply.input ?? sealed;
      if (!reply.ok) return { ok: false, code: isErrorCode(reply.code) ? reply.code : 'INTERNAL', message: reply.message, sealedBytes, sealed: back };
      return { ok: true, header: reply.header, l2Norm: reply.l2Norm, sealedBytes, sealed: back };
    });
  }

  /** Keeps a worker referenced only while it owes a reply, so an idle pool never holds the process. */
  #track(slot: Slot, change: 1 | -1): void {
    // Called before a reply is registered (+1) and after one was removed (−1).
    const owed = slot.jobs.size + slot.finishes.size;
    if (owed === 0) {
      if (change === 1) slot.worker.ref();
      else slot.worker.unref();
    }
  }

  #failSlot(slot: Slot, error: FedtlError): void {
    for (const resolve of slot.jobs.values()) resolve({ type: 'job', id: 0, ok: false, code: 'INTERNAL', message: error.message });
    for (const waiting of slot.finishes.values()) waiting.reject(error);
    slot.jobs.clear();
    slot.finishes.clear();
  }

  #spawn(index: number): void {
    const worker = new Worker(this.#entry, { workerData: this.#setup });
    let markReady!: () => void;
    let failReady!: (error: FedtlError) => void;
    const ready = new Promise<void>((resolve, reject) => {
      markReady = resolve;
      failReady = reject;
    });
    ready.catch(() => {}); // observed by start(); a respawned worker's readiness is not awaited
    const slot: Slot = { worker, jobs: new Map(), finishes: new Map(), ready };
    this.#slots[index] = slot;
    worker.on('message', (reply: IngestReply) => {
      if (reply.type === 'ready') {
        if (slot.jobs.size + slot.finishes.size === 0) worker.unref();
        markReady();
        return;
      }
      if (reply.type === 'job') {
        const resolve = slot.jobs.get(reply.id);
        if (!resolve) return;
        slot.jobs.delete(reply.id);
        this.#track(slot, -1);
        this.#crashes = 0;
        resolve(reply);
        return;
      }
      const waiting = slot.finishes.get(reply.id);
      if (!waiting) return;
      slot.finishes.delete(reply.id);
      this.#track(slot, -1);
      waiting.resolve(reply);
    });
    const fail = (why: string, cause?: unknown): void => {
      if (this.#slots[index] !== slot) return;
      const error = new FedtlError('INTERNAL', `update-ingest worker ${why}`, { cause });
      failReady(error);
      this.#pending -= slot.jobs.size;
      this.#failSlot(slot, error);
      if (this.#closed) return;
      // Its partial sum died with it: the open round can no longer be finished correctly.
      if (this.#round?.open && !this.#round.broken) this.#round.broken = new FedtlError('INTERNAL', `round lost its partial sum: ${error.message}`, { cause });
      this.#crashes++;
      if (this.#crashes >= MAX_CONSECUTIVE_CRASHES) {
        this.#fatal = new FedtlError('INTERNAL', `update-ingest workers failed ${this.#crashes} times in a row; last: ${why}`, { cause });
        return;
      }
      this.#spawn(index);
      const state = this.#round;
      if (state?.open) {
        // Keep the replacement in step with the round; its submissions are refused (round broken).
        const expected: ExpectedUpdate = { roundId: state.round.roundId, parameterCount: state.round.parameterCount };
        this.#slots[index]!.worker.postMessage({ type: 'begin', epoch: state.epoch, expected, limits: this.#options.limits } satisfies IngestRequest);
      }
    };
    worker.on('error', (error) => fail(`crashed: ${error.message}`, error));
    worker.on('exit', (code) => fail(`exited with code ${code}`));
  }
}
