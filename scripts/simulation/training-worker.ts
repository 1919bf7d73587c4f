/**
 * One worker thread of the {@link TrainingPool}: its own TensorFlow.js backend and head, the
 * simulation's client features shared (read-only) through SharedArrayBuffers, and a queue of fit
 * jobs it runs one at a time with the same {@link LocalTrainer} an in-thread virtual client uses —
 * or, when fine-tuning, with one {@link StageTrainer} per client, as the main thread would, on the
 * base's graph rebuilt from its skeleton and the features the main thread shared per boundary.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { LocalTrainer } from '../../client/local-trainer.ts';
import { sealUpdate } from '../../shared/crypto/update-envelope.ts';
import { buildHead } from '../../shared/model/head.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import * as tf from '@tensorflow/tfjs';
import { StageTrainer } from '../../client/stage-trainer.ts';
import type { FrozenBase } from '../../shared/model/frozen-base.ts';
import { clientRows, type ClientShards } from './client-shards.ts';
import { serveIngest } from '../../server/update-ingest-service.ts';
import { openSkeleton } from './base-skeleton.ts';
import type { EvaluationJob, MemoryJob, PoolJob, PoolMessage, StageWorkerSetup, TrainingJob, TrainingReply, TrainingWorkerSetup } from './training-pool.ts';

const setup = workerData as TrainingWorkerSetup;
const port = parentPort!;
await selectBackend({ log: false });
const trainer = new LocalTrainer(buildHead(setup.inputSize, setup.headSpec), setup.manifest, setup.training);
let queue: Promise<void> = Promise.resolve();

/** Fine-tuning, once set up: the base's graph, and one stage trainer per client (each keeps its features' view). */
let stages: { setup: StageWorkerSetup; base: FrozenBase; trainers: Map<number, StageTrainer> } | null = null;
/** The clients' features at each boundary the main thread shared, by feature key. */
const stageFeatures = new Map<string, ClientShards>();

function stageTrainer(index: number): StageTrainer {
  if (!stages) throw new Error(`fine-tuning job for client ${index}, but ${stagesFailed ? `the base's graph could not be rebuilt: ${stagesFailed}` : 'this pool was not set up for fine-tuning'}`);
  let trainer = stages.trainers.get(index);
  if (!trainer) {
    const { setup: stageSetup, base } = stages;
    trainer = new StageTrainer({
      base,
      headSpec: setup.headSpec,
      model: stageSetup.model,
      features: async (featureBase) => {
        const shards = stageFeatures.get(featureBase.hash);
        if (!shards) throw new Error(`client ${index}: no features were shared for boundary ${featureBase.name}`);
        return { train: clientRows(shards, index), validation: null };
      },
      ...(stageSetup.augmentation ? { augmentation: stageSetup.augmentation } : {}),
      ...setup.training,
    });
    stages.trainers.set(index, trainer);
  }
  return trainer;
}

function shardsOf(index: number): NonNullable<TrainingWorkerSetup['shards']> {
  if (!setup.shards) throw new Error(`job for client ${index} by index, but this pool was started without shards`);
  return setup.shards;
}

async function run(job: TrainingJob): Promise<void> {
  try {
    let result;
    if (job.stage) {
      if (typeof job.rows !== 'number') throw new Error('a fine-tuning job names its client by index');
      result = await stageTrainer(job.rows).fit(job.stage, job.weights, job.config, job.seed, job.control);
    } else {
      const rows = typeof job.rows === 'number' ? clientRows(shardsOf(job.rows), job.rows) : job.rows;
      result = await trainer.fit(job.weights, rows, job.config, job.seed, job.control);
    }
    const seal = job.seal;
    const rowSparse = seal?.rowSparse && result.manifest ? { rowSparse: result.manifest } : {};
    const sealed = seal ? sealUpdate({ header: { roundId: seal.roundId, exampleCount: result.exampleCount, metrics: result.metrics }, delta: result.delta }, { clientIdentity: seal.identity, coordinatorBoxKey: seal.coordinatorBoxKey, ...rowSparse }) : undefined;
    const reply: TrainingReply = { type: 'fit', id: job.id, ok: true, delta: result.delta, exampleCount: result.exampleCount, metrics: result.metrics, ...(sealed ? { sealed } : {}) };
    port.postMessage(reply, [result.delta.buffer as ArrayBuffer, ...(sealed ? [sealed.buffer as ArrayBuffer] : [])]);
  } catch (thrown) {
    fail(job, thrown);
  }
}

async function evaluate(job: EvaluationJob): Promise<void> {
  try {
    const reply: TrainingReply = { type: 'evaluate', id: job.id, ok: true, result: await trainer.evaluate(job.weights, job.rows) };
    port.postMessage(reply);
  } catch (thrown) {
    fail(job, thrown);
  }
}

function memory(job: MemoryJob): void {
  port.postMessage({ type: 'memory', id: job.id, ok: true, numTensors: tf.memory().numTensors } satisfies TrainingReply);
}

/** Why fine-tuning could not be set up in this thread, if it could not. */
let stagesFailed: string | null = null;

async function startStages(stageSetup: StageWorkerSetup): Promise<void> {
  try {
    stages = { setup: stageSetup, base: await openSkeleton(stageSetup.base), trainers: new Map() };
  } catch (thrown) {
    // Each fine-tuning job then fails with this, and the main thread reports it per client.
    stagesFailed = (thrown as Error).message ?? String(thrown);
  }
}

function fail(job: PoolJob, thrown: unknown): void {
  const reply: TrainingReply = { type: job.type, id: job.id, ok: false, message: (thrown as Error).message ?? String(thrown) };
  port.postMessage(reply);
}

/** Resolves after the event loop's pending messages (the hosted ingest's requests) were handled. */
function yieldToMessages(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

port.on('message', (message: PoolMessage) => {
  if (message.type === 'ingest') return serveIngest(message.port, message.setup);
  if (message.type === 'features') return void stageFeatures.set(message.key, message.shards);
  // Queued like a job, so the jobs posted after it find the base's graph built. A failure leaves
  // `stages` unset, and each fine-tuning job then fails with a message saying so.
  if (message.type === 'stages') return void (queue = queue.then(() => startStages(message.setup)));
  const job = message;
  // Between jobs the thread yields, so updates waiting on the hosted ingest's port are opened as
  // they come instead of after the worker's last queued job.
  queue = queue.then(yieldToMessages).then(() => (job.type === 'evaluate' ? evaluate(job) : job.type === 'memory' ? memory(job) : run(job)));
});
port.postMessage({ type: 'ready' } satisfies TrainingReply);
