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
import type { ClientTrainingOptions, LabeledFeatures, LocalFitResult } from '../../client/local-trainer.ts';
import type { Identity } from '../../shared/crypto/identity.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import type { HeadSpec } from '../../shared/model/head.ts';
import type { EvalResult } from '../../shared/model/head-training.ts';
import type { FitConfig } from '../../shared/strategy/strategy.ts';
import type { WeightManifest } from '../../shared/weights/flat-weights.ts';
import type { IngestWorkerSetup } from '../../server/update-ingest.ts';
import type { AugmentationSpec } from '../../shared/model/augmentation.ts';
import type { TrainableStage } from '../../shared/model/trainable-set.ts';
import type { FlatWeights } from '../../shared/weights/flat-weights.ts';
import type { BaseSkeleton } from './base-skeleton.ts';
import type { ClientShards } from './client-shards.ts';

/** What every worker receives once, at start. */
export interface TrainingWorkerSetup {
  inputSize: number;
  headSpec: HeadSpec;
  manifest: WeightManifest;
  /** The clients' own training options (logit adjustment), for head and stage jobs alike. */
  training: ClientTrainingOptions;
  /** Features, labels and offsets backed by SharedArrayBuffers; null when every job brings its rows. */
  shards: ClientShards | null;
}

/** What a worker needs to seal the delta it trained, so sealing does not wait for the main thread. */
export interface SealSpec {
  roundId: string;
  /** The client's keys, in arrays of their own (a view would post its whole buffer). */
  identity: Identity;
  coordinatorBoxKey: Uint8Array;
  /**
   * Seal a fine-tuning delta's embedding tables row-sparse where smaller, as `runFitRound` does
   * (off under secure aggregation: the row indices would tell which words). @default false
   */
  rowSparse?: boolean;
}

/**
 * What workers need to fine-tune, posted once ({@link TrainingPool.fineTune}): the base's graph and
 * the whole model's starting weights in shared memory. Each worker then builds a stage's top (the
 * layers above the boundary and the head) itself, as a `StageTrainer` in the main thread does.
 */
export interface StageWorkerSetup {
  base: BaseSkeleton;
  /** The whole model's starting weights; `data` backed by a SharedArrayBuffer (workers only read it). */
  model: FlatWeights;
  /** Augmentation, applied where a stage's features are the raw input. @default none */
  augmentation?: AugmentationSpec;
}

/** Starts fine-tuning in a worker (see {@link StageWorkerSetup}). */
export interface StageSetupMessage {
  type: 'stages';
  setup: StageWorkerSetup;
}

/**
 * The clients' features at one boundary (shared memory), under the boundary's feature key: posted
 * once per key to each worker, before the first job that trains a stage cut there.
 */
export interface StageFeaturesMessage {
  type: 'features';
  key: string;
  shards: ClientShards;
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
  /**
   * Fine-tuning: the stage to train; `weights` are its slice of the model, and `rows` must be a
   * client index into the features shared for the stage's boundary. @default none: the head alone
   */
  stage?: TrainableStage;
  /** Drift correction's control vector c for a corrected fit (shared memory where the weights are). @default none */
  control?: Float32Array;
}

/** Evaluates `weights` on `rows` (shared memory), as `LocalTrainer.evaluate` would in this thread. */
export interface EvaluationJob {
  id: number;
  type: 'evaluate';
  rows: LabeledFeatures;
  weights: Float32Array;
}

/** Answers with the worker's live tensor count once the jobs posted to it before have run. */
export interface MemoryJob {
  id: number;
  type: 'memory';
}

export type PoolJob = TrainingJob | EvaluationJob | MemoryJob;

/** Starts the coordinator's update-opening service (server/update-ingest-service.ts) on `port` in the worker. */
export interface IngestHosting {
  type: 'ingest';
  port: MessagePort;
  setup: IngestWorkerSetup;
}

/** What the pool posts to a worker. */
export type PoolMessage = PoolJob | IngestHosting | StageSetupMessage | StageFeaturesMessage;

type FitReply = { type: 'fit'; id: number; ok: true; delta: Float32Array; exampleCount: number; metrics: { loss: number; accuracy: number }; sealed?: Uint8Array };
type EvaluationReply = { type: 'evaluate'; id: number; ok: true; result: EvalResult };
type MemoryReply = { type: 'memory'; id: number; ok: true; numTensors: number };
type JobReply = FitReply | EvaluationReply | MemoryReply;

export type TrainingReply = { type: 'ready' } | JobReply | { type: PoolJob['type']; id: number; ok: false; message: string };

export interface TrainingPoolOptions {
  /** Worker threads. @default os.availableParallelism() */
  workers?: number;
  inputSize: number;
  headSpec: HeadSpec;
  manifest: WeightManifest;
  /** The clients' own training options, as a trainer in this thread would take them. @default none */
  training?: ClientTrainingOptions;
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
  resolve: (reply: JobReply) => void;
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
  /** Fine-tuning was set up ({@link fineTune}). */
  #fineTuning = false;
  /** Feature keys whose client features every worker has ({@link shareStageFeatures}). */
  readonly #sharedFeatures = new Set<string>();

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
    const setup: TrainingWorkerSetup = { inputSize: options.inputSize, headSpec: options.headSpec, manifest: options.manifest, training: options.training ?? {}, shards };
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
  fit(index: number, weights: Float32Array, config: FitConfig, seed: number, seal?: SealSpec, control?: Float32Array): Promise<LocalFitResult> {
    return this.#run(index, this.#shared(weights), config, seed, seal, undefined, control && this.#shared(control));
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
  fitRows(rows: LabeledFeatures, weights: Float32Array, config: FitConfig, seed: number, control?: Float32Array): Promise<LocalFitResult> {
    return this.#run(rows, weights, config, seed, undefined, undefined, control);
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

  /**
   * Makes every worker able to fine-tune: each rebuilds the base's graph from `setup` (after the
   * jobs posted to it before). Once per pool; the model's weights must be in shared memory.
   */
  fineTune(setup: StageWorkerSetup): void {
    if (this.#fineTuning) throw new FedtlError('BAD_CONFIG', 'this training pool was already set up for fine-tuning');
    if (!isShared(setup.model.data)) throw new FedtlError('BAD_CONFIG', 'the training pool reads the model\'s weights from a SharedArrayBuffer; copy them with sharedWeights');
    this.#fineTuning = true;
    this.#broadcast({ type: 'stages', setup } satisfies StageSetupMessage);
  }

  /**
   * Gives every worker the clients' features at the boundary named `key` (a stage's
   * `featureBase.hash`), once per key: later calls with the same key post nothing. Jobs for a stage
   * cut there ({@link fitStage}) may be queued right after.
   */
  shareStageFeatures(key: string, shards: ClientShards): void {
    if (this.#sharedFeatures.has(key)) return;
    if (!isShared(shards.features.values) || !isShared(shards.labels) || !isShared(shards.offsets)) {
      throw new FedtlError('BAD_CONFIG', 'the training pool reads client rows from SharedArrayBuffers; group them with groupByClient');
    }
    this.#sharedFeatures.add(key);
    this.#broadcast({ type: 'features', key, shards } satisfies StageFeaturesMessage);
  }

  /**
   * Trains client `index` on `stage` (fine-tuning) from `weights`, the stage's slice of the model,
   * in the next free worker, as a `StageTrainer` would in this thread; the client's features at the
   * stage's boundary must have been shared ({@link shareStageFeatures}). With `seal`, the worker
   * also seals the delta.
   */
  fitStage(index: number, stage: TrainableStage, weights: Float32Array, config: FitConfig, seed: number, seal?: SealSpec, control?: Float32Array): Promise<LocalFitResult> {
    if (!this.#fineTuning) return Promise.reject(new FedtlError('BAD_CONFIG', 'this training pool was not set up for fine-tuning (TrainingPool.fineTune)'));
    return this.#run(index, this.#shared(weights), config, seed, seal, stage, control && this.#shared(control));
  }

  /** Each live worker's `tf.memory().numTensors`, once the jobs posted to it before have run. */
  async numTensors(): Promise<number[]> {
    const replies = this.#slots
      .filter((slot) => !slot.dead)
      .map(
        (slot) =>
          new Promise<JobReply>((resolve, reject) => {
            // Straight to the worker, past the queue: the count is of this worker, whichever is free.
            const job: MemoryJob = { id: this.#nextId++, type: 'memory' };
            slot.busy++;
            slot.jobs.set(job.id, { resolve, reject });
            slot.worker.postMessage(job);
          }),
      );
    return (await Promise.all(replies)).map((reply) => (reply.type === 'memory' ? reply.numTensors : Number.NaN));
  }

  /** Posts `message` to every live worker now, ahead of any job posted after it. */
  #broadcast(message: PoolMessage): void {
    for (const slot of this.#slots) if (!slot.dead) slot.worker.postMessage(message);
  }

  async #run(rows: TrainingJob['rows'], weights: Float32Array, config: FitConfig, seed: number, seal?: SealSpec, stage?: TrainableStage, control?: Float32Array): Promise<LocalFitResult> {
    const reply = await this.#post({ id: this.#nextId++, type: 'fit', rows, weights, config, seed, ...(seal ? { seal } : {}), ...(stage ? { stage } : {}), ...(control ? { control } : {}) });
    if (reply.type !== 'fit') throw new FedtlError('INTERNAL', `training worker answered a fit with a ${reply.type} reply`);
    return { delta: reply.delta, exampleCount: reply.exampleCount, metrics: reply.metrics, ...(reply.sealed ? { sealed: reply.sealed } : {}) };
  }

  #post(job: PoolJob): Promise<JobReply> {
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

/** A copy of `weights` in a SharedArrayBuffer, for {@link StageWorkerSetup.model}. */
export function sharedWeights(weights: FlatWeights): FlatWeights {
  const data = new Float32Array(new SharedArrayBuffer(weights.data.byteLength));
  data.set(weights.data);
  return { manifest: weights.manifest, data };
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
