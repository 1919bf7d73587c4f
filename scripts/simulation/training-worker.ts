/**
 * One worker thread of the {@link TrainingPool}: its own TensorFlow.js backend and head, the
 * simulation's client features shared (read-only) through SharedArrayBuffers, and a queue of fit
 * jobs it runs one at a time with the same {@link LocalTrainer} an in-thread virtual client uses.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { LocalTrainer } from '../../client/local-trainer.ts';
import { sealUpdate } from '../../shared/crypto/update-envelope.ts';
import { buildHead } from '../../shared/model/head.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { clientRows } from './client-shards.ts';
import { serveIngest } from '../../server/update-ingest-service.ts';
import type { EvaluationJob, PoolJob, PoolMessage, TrainingJob, TrainingReply, TrainingWorkerSetup } from './training-pool.ts';

const setup = workerData as TrainingWorkerSetup;
const port = parentPort!;
await selectBackend({ log: false });
const trainer = new LocalTrainer(buildHead(setup.inputSize, setup.headSpec), setup.manifest);
let queue: Promise<void> = Promise.resolve();

function shardsOf(index: number): NonNullable<TrainingWorkerSetup['shards']> {
  if (!setup.shards) throw new Error(`job for client ${index} by index, but this pool was started without shards`);
  return setup.shards;
}

async function run(job: TrainingJob): Promise<void> {
  try {
    const rows = typeof job.rows === 'number' ? clientRows(shardsOf(job.rows), job.rows) : job.rows;
    const result = await trainer.fit(job.weights, rows, job.config, job.seed);
    const seal = job.seal;
    const sealed = seal ? sealUpdate({ header: { roundId: seal.roundId, exampleCount: result.exampleCount, metrics: result.metrics }, delta: result.delta }, { clientIdentity: seal.identity, coordinatorBoxKey: seal.coordinatorBoxKey }) : undefined;
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
  const job = message;
  // Between jobs the thread yields, so updates waiting on the hosted ingest's port are opened as
  // they come instead of after the worker's last queued job.
  queue = queue.then(yieldToMessages).then(() => (job.type === 'evaluate' ? evaluate(job) : run(job)));
});
port.postMessage({ type: 'ready' } satisfies TrainingReply);
