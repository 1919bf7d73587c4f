/**
 * Opening sealed updates on worker threads: the round loop's parallel ingest (`ingestWorkers`).
 *
 * Each worker runs the very `openUpdate` of the serial path (SHA-256 of the ciphertext, Ed25519
 * verify, X25519 + HKDF, ChaCha20-Poly1305, finiteness / range / L2 scan) with the limits of
 * {@link expectedUpdate}, and then, per job, either
 * - **folds** `min(n_k, cap) · Δ_k` into its own float64 partial sum Σ n_k·Δ_k, which the main thread
 *   merges once at the round's end (W × P additions) — for aggregations whose result is a weighted
 *   mean of the deltas (`Aggregation.addPartial`: FedAvg, FedProx, FedAvgM, FedAdam/Yogi/Adagrad);
 *   the delta never leaves the worker; or
 * - **opens** only and hands the delta back (its memory is moved, not copied), for aggregations
 *   that need every update (median, trimmed mean, Krum, norm bounding, clipping and privacy
 *   wrappers, secure aggregation): the main thread then adds it as the serial path does.
 *
 * ## Why
 * On the serial path one thread hashes, decrypts, scans and accumulates every update: four passes
 * over the delta of about the same cost (scripts/bench/ingest.ts, profiled), so it runs at ~0.3×
 * plain accumulation. Folding on W workers spreads all four passes over the cores.
 *
 * ## Security
 * The same checks in the same order with the same error codes as the serial path: the main thread
 * reads the (still unauthenticated) header's client id only to look up that client's keys, as the
 * serial path's `resolveClient` does; the worker verifies everything with them. A delta is folded
 * only after every check passed, so a refused update leaves no trace. Workers hold the
 * coordinator's box key pair (they decrypt) and only the public half of its signing key.
 *
 * ## Determinism
 * Which worker folds which update depends on timing, so a folded round equals the serial sum only
 * up to float64 reassociation: relative differences of ~1e-16 per term, checked ≤ 1e-12 in the
 * tests and 1e-9 in the benchmark. Open-only rounds add the deltas on the main thread in arrival
 * order, so they equal the serial path bit for bit.
 *
 * One round at a time: {@link UpdateIngest.begin}, any number of {@link UpdateIngest.submit}s,
 * {@link UpdateIngest.finish}. The owner must {@link UpdateIngest.close} it.
 */
import { availableParallelism } from 'node:os';
import { Worker, type MessagePort } from 'node:worker_threads';
import { FedtlError, isErrorCode, type ErrorCode } from '../shared/core/errors.ts';
import { ownsWholeBuffer } from '../shared/core/transfer.ts';
import { MODULE_EXTENSION, RUNS_FROM_SOURCES } from '../shared/core/package-root.ts';
import type { Identity } from '../shared/crypto/identity.ts';
import type { ClientPublicKeys, ExpectedUpdate, UpdateHeader } from '../shared/crypto/update-envelope.ts';
import type { WeightManifest } from '../shared/weights/flat-weights.ts';
import type { SparseDelta } from '../shared/weights/sparse-rows.ts';
import { expectedUpdate, type UpdateOpenerOptions } from './update-opener.ts';

/**
 * Heads from this many parameters get worker ingest by default (startCoordinator). Measured with
 * `npm run bench:ingest`: on an idle 2-core machine 2 workers that open and sum ran at 0.44× plain
 * accumulation against one thread's 0.26× (1M parameters); on a loaded one (README) they were
 * ahead at 10k and 100k parameters and at 1M in one run of three. Below 100k an update opens in
 * well under a millisecond, so the threads (each holding a float64 partial sum) are not worth starting.
 */
export const INGEST_DEFAULTS = { minParameters: 100_000 } as const;

/** Worker threads of the coordinator's update ingest for a head of `parameterCount` values: one per core from {@link INGEST_DEFAULTS}.minParameters on, none below (or on one core). */
export function defaultIngestWorkers(parameterCount: number, cores = availableParallelism()): number {
  return parameterCount >= INGEST_DEFAULTS.minParameters && cores > 1 ? cores : 0;
}

/** Options of {@link UpdateIngest.start}. */
export interface UpdateIngestOptions {
  /** The coordinator's identity; updates must be sealed to its box key. */
  identity: Identity;
  /** Public keys of an admitted client, or `undefined` (→ `UNKNOWN_CLIENT`); called on the main thread. */
  resolveClient: (clientId: string) => ClientPublicKeys | undefined;
  /** Worker threads. @default os.availableParallelism() */
  workers?: number;
  /** The same limits as the serial opener's (server/update-opener.ts). @default its defaults */
  validation?: UpdateOpenerOptions;
}

/** Outcome of one {@link UpdateIngest.submit}: never a thrown error for a bad update. */
export type IngestOutcome =
  | {
      ok: true;
      /** The authenticated header. */
      header: UpdateHeader;
      /** The weight it was folded with (`min(exampleCount, exampleCap)`). */
      weight: number;
      /** The delta (the sent rows of a row-sparse upload), for open-only jobs; `null` when it was folded on the worker. */
      delta: Float32Array | SparseDelta | null;
    }
  | { ok: false; code: ErrorCode; message: string };

/** The merged partial sums of one round. */
export interface IngestPartial {
  /** Σ min(n_k, cap)·Δ_k over the folded updates, float64; `null` if none was folded. */
  sum: Float64Array | null;
  exampleCount: number;
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
  | { type: 'begin'; epoch: number; expected: ExpectedUpdate; exampleCap: number }
  | { type: 'job'; id: number; epoch: number; bytes: Uint8Array; clientId: string; keys: ClientPublicKeys | null; fold: boolean }
  | { type: 'finish'; id: number; epoch: number };

/** @internal */
export type IngestReply =
  | { type: 'ready' }
  | { type: 'job'; id: number; ok: true; header: UpdateHeader; weight: number; delta: Float32Array | SparseDelta | null }
  | { type: 'job'; id: number; ok: false; code: string; message: string }
  | { type: 'finish'; id: number; epoch: number; sum: Float64Array | null; exampleCount: number; count: number };

// ------------------------------------------------------------------------------------------------

const WORKER_URL = new URL(`./update-ingest-worker${MODULE_EXTENSION}`, import.meta.url);
/** Consecutive worker crashes, without one answered job in between, before the pool gives up. */
const MAX_CONSECUTIVE_CRASHES = 3;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Registers tsx inside the worker before importing its TypeScript entry (a worker does not inherit the loader). */
function workerEntry(): URL {
  if (!RUNS_FROM_SOURCES) return WORKER_URL;
  const register = import.meta.resolve('tsx/esm/api');
  const code = `import { register } from ${JSON.stringify(register)};\nregister();\nawait import(${JSON.stringify(WORKER_URL.href)});\n`;
  return new URL(`data:text/javascript,${encodeURIComponent(code)}`);
}

/**
 * The client id an envelope's header names, read without authenticating anything: only to look up
 * whose keys the worker verifies with (as the serial path's `resolveClient` does). `undefined` when
 * the frame is too malformed to say; the worker then refuses it with the serial path's code.
 */
function peekClientId(bytes: Uint8Array): string | undefined {
  if (bytes.byteLength < 16) return undefined;
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(8, true);
  if (headerLength === 0 || headerLength > 16 * 1024 || 16 + headerLength > bytes.byteLength) return undefined;
  try {
    const json: unknown = JSON.parse(utf8.decode(bytes.subarray(16, 16 + headerLength)));
    const id = typeof json === 'object' && json !== null ? (json as Record<string, unknown>)['clientId'] : undefined;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
}

type JobReply = Extract<IngestReply, { type: 'job' }>;
type FinishReply = Extract<IngestReply, { type: 'finish' }>;

/** The ingest's side of one opening service: its own worker thread, or a port into a thread that hosts it. */
interface Endpoint {
  postMessage(message: IngestRequest, transfer?: ArrayBuffer[]): void;
  ref(): void;
  unref(): void;
}

interface Slot {
  endpoint: Endpoint;
  /** Terminates the worker or closes the port. */
  close: () => Promise<unknown>;
  /** A hosted service whose thread went away: it gets no more jobs (own workers are respawned instead). */
  dead: boolean;
  jobs: Map<number, (reply: JobReply) => void>;
  finishes: Map<number, (reply: FinishReply | null) => void>;
  ready: Promise<void>;
  /** Epoch of the last round in which this slot was given a folding job (it then holds part of that round's sum). */
  foldedEpoch: number;
}

interface OpenRound {
  epoch: number;
  expected: ExpectedUpdate;
  exampleCap: number;
  /** Set when a worker died while the round was open: its partial sum is lost. */
  broken: FedtlError | null;
  /** Folding jobs submitted this round: with none, no worker holds anything to merge. */
  folds: number;
}

export class UpdateIngest {
  readonly #options: UpdateIngestOptions;
  readonly #entry: URL;
  readonly #setup: IngestWorkerSetup;
  readonly #slots: Slot[] = [];
  #nextId = 1;
  #epoch = 0;
  #crashes = 0;
  #closed = false;
  #fatal: FedtlError | null = null;
  #round: OpenRound | null = null;

  private constructor(options: UpdateIngestOptions, count: number, host?: (setup: IngestWorkerSetup) => MessagePort[]) {
    this.#options = options;
    this.#entry = workerEntry();
    this.#setup = { boxPublicKey: options.identity.box.publicKey, boxSecretKey: options.identity.box.secretKey, signingPublicKey: options.identity.signing.publicKey };
    if (host) host(this.#setup).forEach((port, i) => this.#attachPort(i, port));
    else for (let i = 0; i < count; i++) this.#spawn(i);
    if (this.#slots.length === 0) throw new FedtlError('BAD_CONFIG', 'an update ingest needs at least one opening service');
  }

  /**
   * An ingest whose opening services run in threads someone else owns: `host` starts one
   * ({@link serveIngest}) per thread on a port it returns the other end of. A simulation's training
   * pool hosts them, so opening shares the training workers' cores instead of adding threads. A
   * port that closes (its thread died) gets no more jobs; it breaks the open round, as a crashed
   * worker does, only if it held part of the round's sum or updates still being opened (an idle
   * service of an open-only round held nothing, and the round goes on). There is no respawn.
   * Requests posted before a service attached wait in its port.
   */
  static hosted(host: (setup: IngestWorkerSetup) => MessagePort[], options: Omit<UpdateIngestOptions, 'workers'>): UpdateIngest {
    return new UpdateIngest(options, 0, host);
  }

  /** Starts the workers; resolves once every one has loaded. */
  static async start(options: UpdateIngestOptions): Promise<UpdateIngest> {
    const count = options.workers ?? availableParallelism();
    if (!Number.isSafeInteger(count) || count < 1) throw new FedtlError('BAD_CONFIG', `ingest workers must be a positive integer, got ${count}`);
    const ingest = new UpdateIngest(options, count);
    try {
      await Promise.all(ingest.#slots.map((slot) => slot.ready));
    } catch (error) {
      await ingest.close();
      throw error;
    }
    return ingest;
  }

  get workers(): number {
    return this.#slots.length;
  }

  /** Opens a round: every worker starts a zero partial sum. A round still open is abandoned (its partial sums dropped). */
  begin(round: { roundId: string; parameterCount: number; exampleCap?: number; rowSparse?: WeightManifest }): void {
    this.#usable();
    const epoch = ++this.#epoch;
    const expected = expectedUpdate(round, this.#options.validation);
    const exampleCap = round.exampleCap ?? Number.POSITIVE_INFINITY;
    this.#round = { epoch, expected, exampleCap, broken: null, folds: 0 };
    for (const slot of this.#live()) slot.endpoint.postMessage({ type: 'begin', epoch, expected, exampleCap } satisfies IngestRequest);
  }

  /**
   * Opens `sealed` from the connection's authenticated `clientId` on a worker; with `fold` also
   * adds it to that worker's partial sum. `sealed` is moved to the worker when it spans its whole
   * ArrayBuffer (the caller's view is detached, and the worker drops the bytes once opened), and
   * copied otherwise.
   */
  async submit(sealed: Uint8Array, clientId: string, fold: boolean): Promise<IngestOutcome> {
    const refuse = (code: ErrorCode, message: string): IngestOutcome => ({ ok: false, code, message });
    if (this.#closed) return refuse('INTERNAL', 'the update ingest is closed');
    if (this.#fatal) return refuse(this.#fatal.code, this.#fatal.message);
    const round = this.#round;
    if (round === null) return refuse('STALE_ROUND', 'no round is collecting updates now');
    if (round.broken) return refuse('INTERNAL', round.broken.message);
    const named = peekClientId(sealed);
    let keys: ClientPublicKeys | undefined;
    try {
      keys = named === undefined ? undefined : this.#options.resolveClient(named);
    } catch (thrown) {
      if (thrown instanceof FedtlError) return refuse(thrown.code, thrown.message);
      throw thrown;
    }
    const bytes = ownsWholeBuffer(sealed) ? sealed : new Uint8Array(sealed); // never detach memory we do not own entirely
    // Least-loaded worker; ties go to the lowest index.
    const live = this.#live();
    if (live.length === 0) return refuse('INTERNAL', 'every update-ingest service has failed');
    let slot = live[0] as Slot;
    for (const candidate of live) if (candidate.jobs.size < slot.jobs.size) slot = candidate;
    const id = this.#nextId++;
    const request: IngestRequest = { type: 'job', id, epoch: round.epoch, bytes, clientId, keys: keys ?? null, fold };
    if (fold) {
      round.folds++;
      slot.foldedEpoch = round.epoch;
    }
    const reply = await new Promise<JobReply>((resolve) => {
      this.#owe(slot, +1);
      slot.jobs.set(id, resolve);
      slot.endpoint.postMessage(request, [bytes.buffer as ArrayBuffer]);
    });
    if (!reply.ok) return { ok: false, code: isErrorCode(reply.code) ? reply.code : 'INTERNAL', message: reply.message };
    return { ok: true, header: reply.header, weight: reply.weight, delta: reply.delta };
  }

  /**
   * Closes the round and merges the workers' partial sums. Call it after every submission of the
   * round was answered. Throws `INTERNAL` if a worker died during the round holding part of its
   * sum or updates it was opening (they are lost; the caller reruns the round).
   */
  async finish(): Promise<IngestPartial> {
    this.#usable();
    const round = this.#round;
    if (round === null) throw new FedtlError('INTERNAL', 'no ingest round is open');
    this.#round = null;
    // Open-only rounds leave nothing on the workers: no round trip (a worker busy with other work,
    // such as a hosting training thread, would hold the round's end up); the next begin resets them.
    if (round.folds === 0) {
      if (round.broken) throw round.broken;
      return { sum: null, exampleCount: 0, count: 0 };
    }
    const replies = await Promise.all(
      this.#live().map(
        (slot) =>
          new Promise<FinishReply | null>((resolve) => {
            const id = this.#nextId++;
            this.#owe(slot, +1);
            slot.finishes.set(id, resolve);
            slot.endpoint.postMessage({ type: 'finish', id, epoch: round.epoch } satisfies IngestRequest);
          }),
      ),
    );
    if (round.broken) throw round.broken;
    let sum: Float64Array | null = null;
    let exampleCount = 0;
    let count = 0;
    for (const reply of replies) {
      if (reply === null || reply.epoch !== round.epoch) throw new FedtlError('INTERNAL', 'an ingest worker lost its partial sum');
      exampleCount += reply.exampleCount;
      count += reply.count;
      const part = reply.sum;
      if (part === null) continue;
      if (sum === null) {
        sum = part; // the first partial is taken over: W − 1 merges, not W
        continue;
      }
      for (let i = 0; i < sum.length; i++) sum[i] = (sum[i] as number) + (part[i] as number);
    }
    return { sum, exampleCount, count };
  }

  /** Terminates the workers; jobs still pending are answered `INTERNAL`. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const slot of this.#slots) this.#failSlot(slot, 'the update ingest was closed');
    await Promise.all(this.#slots.map((slot) => slot.close()));
  }

  /** The slots that take jobs. */
  #live(): Slot[] {
    return this.#slots.filter((slot) => !slot.dead);
  }

  #usable(): void {
    if (this.#closed) throw new FedtlError('INTERNAL', 'the update ingest is closed');
    if (this.#fatal) throw this.#fatal;
  }

  /** Keeps a worker referenced only while it owes a reply, so an idle pool never holds the process open. */
  #owe(slot: Slot, change: 1 | -1): void {
    const owed = slot.jobs.size + slot.finishes.size;
    if (owed === 0) {
      if (change === 1) slot.endpoint.ref();
      else slot.endpoint.unref();
    }
  }

  #failSlot(slot: Slot, message: string): void {
    for (const resolve of slot.jobs.values()) resolve({ type: 'job', id: 0, ok: false, code: 'INTERNAL', message });
    for (const resolve of slot.finishes.values()) resolve(null);
    slot.jobs.clear();
    slot.finishes.clear();
  }

  #spawn(index: number): void {
    const worker = new Worker(this.#entry, { workerData: this.#setup });
    const fail = this.#attach(index, worker, async () => worker.terminate(), (slot, why, cause) => {
      if (++this.#crashes >= MAX_CONSECUTIVE_CRASHES) {
        this.#fatal = new FedtlError('INTERNAL', `update-ingest workers failed ${this.#crashes} times in a row; last: ${why}`, { cause });
        return;
      }
      this.#spawn(index);
      const round = this.#round;
      // The replacement joins the open round so finish() hears from every slot; the round is refused only
      // if the failed slot held part of it (#failSlot).
      if (round) this.#slots[index]!.endpoint.postMessage({ type: 'begin', epoch: round.epoch, expected: round.expected, exampleCap: round.exampleCap } satisfies IngestRequest);
    });
    worker.on('error', (error) => fail(`crashed: ${error.message}`, error));
    worker.on('exit', (code) => fail(`exited with code ${code}`));
  }

  #attachPort(index: number, port: MessagePort): void {
    const fail = this.#attach(index, port, async () => port.close(), (slot) => {
      slot.dead = true;
      if (this.#live().length === 0) this.#fatal = new FedtlError('INTERNAL', 'every update-ingest service has failed');
    });
    port.on('close', () => fail('closed its port'));
  }

  /**
   * Registers `endpoint` as slot `index` and listens to its replies; returns what to call when it
   * fails (once): its jobs are refused, the open round is broken, then `afterFailure` decides what
   * becomes of the slot.
   */
  #attach(index: number, endpoint: Endpoint & { on(event: 'message', listener: (reply: IngestReply) => void): unknown }, close: () => Promise<unknown>, afterFailure: (slot: Slot, why: string, cause?: unknown) => void): (why: string, cause?: unknown) => void {
    let markReady!: () => void;
    let failReady!: (error: FedtlError) => void;
    const ready = new Promise<void>((resolve, reject) => {
      markReady = resolve;
      failReady = reject;
    });
    ready.catch(() => {}); // observed by start(); a respawned worker's readiness is not awaited
    const slot: Slot = { endpoint, close, dead: false, jobs: new Map(), finishes: new Map(), ready, foldedEpoch: 0 };
    this.#slots[index] = slot;
    endpoint.on('message', (reply: IngestReply) => {
      if (reply.type === 'ready') {
        if (slot.jobs.size + slot.finishes.size === 0) endpoint.unref();
        markReady();
        return;
      }
      const pending = reply.type === 'job' ? slot.jobs : slot.finishes;
      const resolve = pending.get(reply.id) as ((reply: IngestReply) => void) | undefined;
      if (!resolve) return;
      pending.delete(reply.id);
      this.#owe(slot, -1);
      if (reply.type === 'job') this.#crashes = 0;
      resolve(reply);
    });
    return (why, cause) => {
      if (this.#slots[index] !== slot || slot.dead) return;
      const error = new FedtlError('INTERNAL', `update-ingest worker ${why}`, { cause });
      failReady(error);
      // The open round loses something only if this slot held part of its sum, or updates of it
      // still being opened (refused with INTERNAL below): then it is rerun. A slot that held
      // nothing of the round (always so for one that only opened and had answered everything)
      // leaves the round whole, and the round goes on without it.
      const round = this.#round;
      const opening = slot.jobs.size + slot.finishes.size > 0;
      const held = opening || (round !== null && slot.foldedEpoch === round.epoch);
      this.#failSlot(slot, error.message);
      if (this.#closed) return;
      if (round && !round.broken && held) round.broken = new FedtlError('INTERNAL', `the round lost ${opening ? 'updates being opened' : 'a partial sum'}: ${error.message}`, { cause });
      afterFailure(slot, why, cause);
    };
  }
}
