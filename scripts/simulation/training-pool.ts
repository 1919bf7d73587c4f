/**
 * Virtual clients trained on every core: a pool of worker threads, each with its own TensorFlow.js
 * backend and head, reading the clients' features from the simulation's grouped matrix through
 * SharedArrayBuffers (no copy per worker). Socket clients that share a process with their
 * coordinator train here too ({@link TrainingPool.fitRows}), so training does not block the
 * coordinator's event loop.
 *
 * The pool only trains. What a job computes depends on the client, the weights, the config and
 * the seed it is given — never on which worker runs it or when — so the same seed gives the same
 * deltas whatever the pool size; callers that need a deterministic aggregate hand the results to
 * the round loop in the order they queued them (see VirtualFederation).
 *
 * Scheduling: jobs wait in one queue, in the order they were asked for, and each goes to a worker
 * as it frees up, with at most {@link IN_FLIGHT_PER_WORKER} jobs per worker. Handing every job out
 * at once (round-robin) left one worker training a round's largest clients while the other sat
 * idle; a caller that queues its longest jobs first (VirtualFederation) gets longest-processing-
 * time-first list scheduling (Graham 1969), whose workers finish within one short job of each other.
 */
import { MODULE_EXTENSION, RUNS_FROM_SOURCES } from '../../shared/core/package-root.ts';
import os from 'node:os';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { LabeledFeatures, LocalFitResult } from '../../client/local-trainer.ts';
import type { Identity } from '../../shared/crypto/identity.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import type { HeadSpec } from '../../shared/model/head.ts';
import type { EvalResult } from '../../shared/model/head-training.ts';
import type { FitConfig } from '../../shared/strategy/strategy.ts';
import type { WeightManifest } from '../../shared/weights/flat-weights.ts';
import type { IngestWorkerSetup } from '../../server/update-ingest.ts';
import type { ClientShards } from './client-shards.ts';

/** What every worker receives once, at start. */
export interface TrainingWorkerSetup {
  inputSize: number;
  headSpec: HeadSpec;
  manifest: WeightManifest;
  /** Features, labels and offsets backed by SharedArrayBuffers; null when every job brings its rows. */
  shards: ClientShards | null;
}

/** What a worker needs to seal the delta it trained, so sealing does not wait for the main thread. */
export interface SealSpec {
  roundId: string;
  /** The client's keys, in arrays of their own (a view would post its whole buffer). */
  identity: Identity;
  coordinatorBoxKey: Uint8Array;
}

export interface TrainingJob {
  id: number;
  type: 'fit';
  /** Seal the delta in the worker. @default none: the caller seals */
  seal?: SealSpec;
  /** The client's rows: an index into the setup's shards, or the rows themselves (shared memory). */
  rows: number | LabeledFeatures;
  weights: Float32Array;
  config: FitConfig;
  seed: number;
}

/** Evaluates `weights` on `rows` (shared memory), as `LocalTrainer.evaluate` would in this thread. */
export interface EvaluationJob {
  id: number;
  type: 'evaluate';
  rows: LabeledFeatures;
  weights: Float32Array;
}

export type PoolJob = TrainingJob | EvaluationJob;

/** Starts the coordinator's update-opening service (server/update-ingest-service.ts) on `port` in the worker. */
export interface IngestHosting {
  type: 'ingest';
  port: MessagePort;
  setup: IngestWorkerSetup;
}

/** What the pool posts to a worker. */
export type PoolMessage = PoolJob | IngestHosting;

type FitReply = { type: 'fit'; id: number; ok: true; delta: Float32Array; exampleCount: number; metrics: { loss: number; accuracy: number }; sealed?: Uint8Array };
type EvaluationReply = { type: 'evaluate'; id: number; ok: true; result: EvalResult };

export type TrainingReply = { type: 'ready' } | FitReply | EvaluationReply | { type: 'fit' | 'evaluate'; id: number; ok: false; message: string };

export interface TrainingPoolOptions {
  /** Worker threads. @default os.availableParallelism() */
  workers?: number;
  inputSize: number;
  headSpec: HeadSpec;
  manifest: WeightManifest;
  /**
   * The clients' rows; must be backed by SharedArrayBuffers (groupByClient allocates them so).
   * @default none: jobs bring their rows ({@link TrainingPool.fitRows})
   */
  shards?: ClientShards;
}

const WORKER_URL = new URL(`./training-worker${MODULE_EXTENSION}`, import.meta.url);

/**
 * The URL to start a worker thread from for the module at `url`: registers tsx inside the worker
 * before importing its TypeScript entry (a worker does not inherit the loader).
 */
export function workerEntry(url: URL = WORKER_URL): URL {
  // Built JavaScript (an installed package) loads as it is; only the TypeScript sources need tsx.
  if (!RUNS_FROM_SOURCES) return url;
  const register = import.meta.resolve('tsx/esm/api');
  const code = `import { register } from ${JSON.stringify(register)};\nregister();\nawait import(${JSON.stringify(url.href)});\n`;
  return new URL(`data:text/javascript,${encodeURIComponent(code)}`);
}

/**
 * Jobs posted to one worker ahead of its replies: two, so a worker that finishes a job starts its
 * next one at once instead of waiting for this thread (busy opening updates) to hand it one.
 */
export const IN_FLIGHT_PER_WORKER = 2;

interface Waiting {
  resolve: (reply: FitReply | EvaluationReply) => void;
  reject: (error: Error) => void;
}

interface Slot {
  worker: Worker;
  busy: number;
  /** The worker failed; it gets no more jobs. */
  dead: boolean;
  jobs: Map<number, Waiting>;
}

/** A job not yet posted. */
interface Queued extends Waiting {
  job: PoolJob;
}

function isShared(array: ArrayBufferView): boolean {
  return typeof SharedArrayBuffer !== 'undefined' && array.buffer instanceof SharedArrayBuffer;
}

export class TrainingPool {
  readonly #slots: Slot[];
  /** Jobs waiting for a worker, first asked first posted: those from `#next` on. */
  #queued: Queued[] = [];
  #next = 0;
  #nextId = 1;
  #closed = false;
  /** Shared-memory copies of the weights jobs were asked to train from, by the caller's array. */
  readonly #sharedWeights = new WeakMap<Float32Array, Float32Array>();

  private constructor(slots: Slot[]) {
    this.#slots = slots;
  }

  /** Starts the workers; resolves once each has loaded its backend and built its head. */
  static async start(options: TrainingPoolOptions): Promise<TrainingPool> {
    const count = options.workers ?? os.availableParallelism();
    if (!Number.isSafeInteger(count) || count < 1) throw new FedtlError('BAD_CONFIG', `a training pool needs at least one worker, got ${count}`);
    const shards = options.shards ?? null;
    if (shards && (!isShared(shards.features.values) || !isShared(shards.labels) || !isShared(shards.offsets))) {
      throw new FedtlError('BAD_CONFIG', 'the training pool reads client rows from SharedArrayBuffers; group them with groupByClient');
    }
    const setup: TrainingWorkerSetup = { inputSize: options.inputSize, headSpec: options.headSpec, manifest: options.manifest, shards };
    const entry = workerEntry();
    const slots: Slot[] = [];
    const ready: Promise<void>[] = [];
    // Replies reach the pool through this, set once the pool exists (no job is posted before).
    let onReply: (slot: Slot) => void = () => undefined;
    for (let i = 0; i < count; i++) {
      const worker = new Worker(entry, { workerData: setup });
      const slot: Slot = { worker, busy: 0, dead: false, jobs: new Map() };
      slots.push(slot);
      ready.push(
        new Promise<void>((resolve, reject) => {
          worker.once('error', reject);
          worker.on('message', (reply: TrainingReply) => {
            if (reply.type === 'ready') return resolve();
            const job = slot.jobs.get(reply.id);
            if (!job) return;
            slot.jobs.delete(reply.id);
            slot.busy--;
            onReply(slot);
            if (reply.ok) job.resolve(reply);
            else job.reject(new FedtlError('INTERNAL', `training worker: ${reply.message}`));
          });
        }),
      );
      // A worker that dies fails its pending jobs instead of leaving them waiting forever.
      worker.on('error', (error) => {
        slot.dead = true;
        for (const job of slot.jobs.values()) job.reject(new FedtlError('INTERNAL', `training worker crashed: ${error.message}`, { cause: error }));
        slot.jobs.clear();
        onReply(slot);
      });
    }
    const pool = new TrainingPool(slots);
    onReply = () => pool.#dispatch();
    try {
      await Promise.all(ready);
    } catch (error) {
      await pool.close();
      throw new FedtlError('INTERNAL', `a training worker failed to start: ${(error as Error).message}`, { cause: error });
    }
    return pool;
  }

  get size(): number {
    return this.#slots.length;
  }

  /**
   * Trains client `index` of the pool's shards from `weights` in the next free worker, after the
   * jobs queued before it; with `seal`, the worker also seals the delta (`LocalFitResult.sealed`).
   */
  fit(index: number, weights: Float32Array, config: FitConfig, seed: number, seal?: SealSpec): Promise<LocalFitResult> {
    return this.#run(index, this.#shared(weights), config, seed, seal);
  }

  /**
   * `weights` in shared memory, copied once per array: a round's clients all train from the same
   * global weights (one array per round), so each job then posts a view instead of a copy of them
   * (0.8 MB a job for mnist-mlp's head). Workers only read them.
   */
  #shared(weights: Float32Array): Float32Array {
    if (isShared(weights)) return weights;
    let shared = this.#sharedWeights.get(weights);
    if (!shared) {
      shared = new Float32Array(new SharedArrayBuffer(weights.byteLength));
      shared.set(weights);
      this.#sharedWeights.set(weights, shared);
    }
    return shared;
  }

  /**
   * Trains on `rows` from `weights` in the next free worker, as `LocalTrainer.fit` would in this
   * thread. Rows backed by SharedArrayBuffers ({@link sharedRows}) reach the worker without a copy.
   */
  fitRows(rows: LabeledFeatures, weights: Float32Array, config: FitConfig, seed: number): Promise<LocalFitResult> {
    return this.#run(rows, weights, config, seed);
  }

  /**
   * Evaluates `weights` on `rows` in the next free worker, after the jobs queued before it, as
   * `LocalTrainer.evaluate` would in this thread (a simulation's server-side evaluation, off the
   * coordinator's thread). Rows must be in shared memory ({@link sharedRows}).
   */
  async evaluateRows(rows: LabeledFeatures, weights: Float32Array): Promise<EvalResult> {
    const reply = await this.#post({ id: this.#nextId++, type: 'evaluate', rows, weights });
    if (reply.type !== 'evaluate') throw new FedtlError('INTERNAL', `training worker answered an evaluation with a ${reply.type} reply`);
    return reply.result;
  }

  /**
   * Hosts the coordinator's update-opening service in every live worker (`UpdateIngest.hosted`):
   * returns one port per worker. Opening then shares the training workers' cores, between their
   * training jobs, instead of queuing on the coordinator's thread or adding threads.
   */
  hostIngest(setup: IngestWorkerSetup): MessagePort[] {
    return this.#slots
      .filter((slot) => !slot.dead)
      .map((slot) => {
        const { port1, port2 } = new MessageChannel();
        slot.worker.postMessage({ type: 'ingest', port: port2, setup } satisfies IngestHosting, [port2]);
        return port1;
      });
  }

  async #run(rows: TrainingJob['rows'], weights: Float32Array, config: FitConfig, seed: number, seal?: SealSpec): Promise<LocalFitResult> {
    const reply = await this.#post({ id: this.#nextId++, type: 'fit', rows, weights, config, seed, ...(seal ? { seal } : {}) });
    if (reply.type !== 'fit') throw new FedtlError('INTERNAL', `training worker answered a fit with a ${reply.type} reply`);
    return { delta: reply.delta, exampleCount: reply.exampleCount, metrics: reply.metrics, ...(reply.sealed ? { sealed: reply.sealed } : {}) };
  }

  #post(job: PoolJob): Promise<FitReply | EvaluationReply> {
    if (this.#closed) return Promise.reject(new FedtlError('INTERNAL', 'the training pool is closed'));
    return new Promise((resolve, reject) => {
      this.#queued.push({ job, resolve, reject });
      this.#dispatch();
    });
  }

  /** Posts queued jobs to the workers with the fewest in flight, up to {@link IN_FLIGHT_PER_WORKER} each. */
  #dispatch(): void {
    while (this.#next < this.#queued.length) {
      const open = this.#slots.filter((slot) => !slot.dead);
      if (open.length === 0) return this.#rejectQueued('every training worker has crashed');
      const slot = open.reduce((a, b) => (b.busy < a.busy ? b : a));
      if (slot.busy >= IN_FLIGHT_PER_WORKER) return;
      const { job, resolve, reject } = this.#queued[this.#next++]!;
      // Drop the posted prefix once the queue drains (a round queues thousands at a time).
      if (this.#next === this.#queued.length) {
        this.#queued = [];
        this.#next = 0;
      }
      slot.busy++;
      slot.jobs.set(job.id, { resolve, reject });
      slot.worker.postMessage(job);
    }
  }

  #rejectQueued(message: string): void {
    const waiting = this.#queued.slice(this.#next);
    this.#queued = [];
    this.#next = 0;
    for (const queued of waiting) queued.reject(new FedtlError('INTERNAL', message));
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#rejectQueued('the training pool is closed');
    await Promise.all(this.#slots.map((slot) => slot.worker.terminate()));
  }
}

/** A copy of `rows` in SharedArrayBuffers, so every job that trains on them shares instead of copying them. */
export function sharedRows(rows: LabeledFeatures): LabeledFeatures {
  const { values, rows: count, cols } = rows.features;
  const shared = new Float32Array(new SharedArrayBuffer(values.byteLength));
  shared.set(values);
  const labels = new Int32Array(new SharedArrayBuffer(rows.labels.byteLength));
  labels.set(rows.labels);
  return { features: { values: shared, rows: count, cols }, labels };
}
