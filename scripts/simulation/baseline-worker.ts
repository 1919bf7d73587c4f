/**
 * One worker thread of the {@link BaselinePool}: its own TensorFlow.js backend, the run's data and
 * split from its setup, and the baseline jobs it is given, run one at a time with
 * {@link runBaselineJob}, the same function the main thread calls when there is no pool.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { FrozenBase } from '../../shared/model/frozen-base.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { runBaselineJob, type BaselineContext } from './baseline-jobs.ts';
import type { BaselineWorkerJob, BaselineWorkerReply, BaselineWorkerSetup } from './baseline-pool.ts';
import { openSimulationBase, simulationCache } from './simulation-data.ts';

const setup = workerData as BaselineWorkerSetup;
const port = parentPort!;
const post = (reply: BaselineWorkerReply) => port.postMessage(reply);
await selectBackend({ log: false });

let base: Promise<FrozenBase> | null = null;
const context: BaselineContext = {
  // The from-scratch federations of this thread train in it: the pool's workers already fill the cores.
  config: { ...setup.config, trainingWorkers: 0 },
  train: setup.train,
  test: setup.test,
  order: setup.order,
  shards: setup.shards,
  testFeatures: setup.testFeatures,
  base: () => (base ??= openSimulationBase(setup.baseDirectory ?? setup.config.base).then((opened) => opened.base)),
  cache: simulationCache(),
  log: {
    debug: () => undefined,
    info: (message) => post({ type: 'log', level: 'info', message }),
    warn: (message) => post({ type: 'log', level: 'warn', message }),
    error: (message) => post({ type: 'log', level: 'error', message }),
  },
};

let queue: Promise<void> = Promise.resolve();
port.on('message', ({ id, job }: BaselineWorkerJob) => {
  queue = queue.then(async () => {
    try {
      post({ type: 'done', id, result: await runBaselineJob(job, context) });
    } catch (thrown) {
      post({ type: 'failed', id, message: (thrown as Error).message ?? String(thrown) });
    }
  });
});
post({ type: 'ready' });
