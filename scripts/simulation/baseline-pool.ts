/**
 * The baselines of a simulation run beside its federation: a few worker threads, each with its own
 * TensorFlow.js backend, that take {@link BaselineJob}s off one queue as they come free. A job
 * computes the same result in any thread (baseline-jobs.ts), so the report does not depend on how
 * many workers there are or which finished first; the pool only changes how long the run takes.
 * The client features reach every worker through SharedArrayBuffers (groupByClient allocates them
 * so); the raw data sets and the test features are copied once per worker, at start.
 */
import { Worker } from 'node:worker_threads';
import type { LabeledDataset } from '../../client/data/dataset.ts';
import { MODULE_EXTENSION } from '../../shared/core/package-root.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import type { Logger } from '../../shared/core/log.ts';
import type { FeatureMatrix } from '../../shared/model/feature-matrix.ts';
import type { BaselineJob, BaselineJobResult } from './baseline-jobs.ts';
import type { ClientOrder, ClientShards } from './client-shards.ts';
import type { SimulationConfig } from './presets.ts';
import { workerEntry } from './training-pool.ts';

/** What every baseline worker receives once, at start: the run's config, data and split. */
export interface BaselineWorkerSetup {
  config: SimulationConfig;
  /** The folder of the base the run opened (the worker opens the same files), null for an identity base. */
  baseDirectory: string | null;
  train: LabeledDataset;
  test: LabeledDataset;
  order: ClientOrder;
  shards: ClientShards;
  testFeatures: FeatureMatrix;
}

export type BaselineWorkerReply =
  | { type: 'ready' }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; message: string }
  | { type: 'done'; id: number; result: BaselineJobResult }
  | { type: 'failed'; id: number; message: string };

export interface BaselineWorkerJob {
  id: number;
  job: BaselineJob;
}

const WORKER_URL = new URL(`./baseline-worker${MODULE_EXTENSION}`, import.meta.url);

interface Queued {
  id: number;
  job: BaselineJob;
  resolve: (result: BaselineJobResult) => void;
  reject: (error: Error) => void;
}

interface Slot {
  worker: Worker;
  running: Queued | null;
  /** The worker crashed or exited: it gets no more jobs. */
  dead: boolean;
}

export interface BaselinePoolOptions {
  workers: number;
  setup: BaselineWorkerSetup;
  /** Where the workers' log lines go. */
  log: Logger;
  /** The worker module (a test starts one that dies, to check the pool survives it). @default the baseline worker */
  workerUrl?: URL;
}

export class BaselinePool {
  readonly #slots: Slot[] = [];
  readonly #queue: Queued[] = [];
  #nextId = 1;
  #closed = false;

  private constructor() {}

  /** Starts the workers; resolves once each has loaded its backend. */
  static async start(options: BaselinePoolOptions): Promise<BaselinePool> {
    const { workers, setup, log } = options;
    if (!Number.isSafeInteger(workers) || workers < 1) throw new FedtlError('BAD_CONFIG', `a baseline pool needs at least one worker, got ${workers}`);
    const pool = new BaselinePool();
    const entry = workerEntry(options.workerUrl ?? WORKER_URL);
    const ready: Promise<void>[] = [];
    for (let i = 0; i < workers; i++) {
      const worker = new Worker(entry, { workerData: setup });
      const slot: Slot = { worker, running: null, dead: false };
      pool.#slots.push(slot);
      ready.push(
        new Promise<void>((resolve, reject) => {
          worker.once('error', reject);
          worker.on('message', (reply: BaselineWorkerReply) => {
            if (reply.type === 'ready') return resolve();
            if (reply.type === 'log') return log[reply.level](reply.message);
            const running = slot.running;
            if (!running || running.id !== reply.id) return;
            slot.running = null;
            if (reply.type === 'done') running.resolve(reply.result);
            else running.reject(new FedtlError('INTERNAL', `baseline worker, ${running.job.kind}: ${reply.message}`));
            pool.#dispatch();
          });
        }),
      );
      // A worker that dies fails the job it held instead of leaving it waiting forever, and gets no more
      // jobs (a message posted to an exited worker is dropped); with no worker left the queue fails too.
      const retire = (error: FedtlError): void => {
        if (slot.dead || pool.#closed) return;
        slot.dead = true;
        slot.running?.reject(error);
        slot.running = null;
        if (pool.#slots.every((s) => s.dead)) {
          for (const queued of pool.#queue.splice(0)) queued.reject(new FedtlError('INTERNAL', 'every baseline worker has died', { cause: error }));
        } else {
          pool.#dispatch();
        }
      };
      worker.on('error', (error) => retire(new FedtlError('INTERNAL', `baseline worker crashed: ${error.message}`, { cause: error })));
      worker.on('exit', (code) => retire(new FedtlError('INTERNAL', `baseline worker exited with code ${code}`)));
    }
    try {
      await Promise.all(ready);
    } catch (error) {
      await pool.close();
      throw new FedtlError('INTERNAL', `a baseline worker failed to start: ${(error as Error).message}`, { cause: error });
    }
    return pool;
  }

  get size(): number {
    return this.#slots.length;
  }

  /** Queues `job`; it starts in the first worker that comes free, in the order jobs were queued. */
  run(job: BaselineJob): Promise<BaselineJobResult> {
    if (this.#closed) return Promise.reject(new FedtlError('INTERNAL', 'the baseline pool is closed'));
    if (this.#slots.every((slot) => slot.dead)) return Promise.reject(new FedtlError('INTERNAL', 'every baseline worker has died'));
    return new Promise<BaselineJobResult>((resolve, reject) => {
      this.#queue.push({ id: this.#nextId++, job, resolve, reject });
      this.#dispatch();
    });
  }

  #dispatch(): void {
    for (const slot of this.#slots) {
      if (slot.running || slot.dead) continue;
      const next = this.#queue.shift();
      if (!next) return;
      slot.running = next;
      slot.worker.postMessage({ id: next.id, job: next.job } satisfies BaselineWorkerJob);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    const error = new FedtlError('INTERNAL', 'the baseline pool was closed before the job ran');
    for (const queued of this.#queue.splice(0)) queued.reject(error);
    await Promise.all(this.#slots.map((slot) => slot.worker.terminate()));
    for (const slot of this.#slots) slot.running?.reject(error);
  }
}
