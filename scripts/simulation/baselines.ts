/**
 * Baselines computed in the same run, on the same split and from the same initial head, so a user
 * sees what federation buys (vs each client alone) and what it costs (vs pooling all data).
 */
import { LocalTrainer } from '../../client/local-trainer.ts';
import { initialHeadWeights } from '../../server/start-coordinator.ts';
import { createRandom } from '../../shared/math/random.ts';
import type { FeatureMatrix } from '../../shared/model/feature-matrix.ts';
import { buildHead } from '../../shared/model/head.ts';
import type { HeadSpec } from '../../shared/model/head.ts';
import type { OptimizerName } from '../../shared/model/head-training.ts';
import { clientRows, type ClientShards } from './client-shards.ts';

export interface BaselineInput {
  head: HeadSpec;
  trainFeatures: FeatureMatrix;
  trainLabels: Int32Array;
  testFeatures: FeatureMatrix;
  testLabels: Int32Array;
  batchSize: number;
  learningRate: number;
  optimizer: OptimizerName;
  seed: number;
}

/** All training data pooled in one place, the same head trained for `epochs`. */
export async function centralizedBaseline(input: BaselineInput, epochs: number): Promise<{ accuracy: number; loss: number }> {
  const initial = initialHeadWeights(input.trainFeatures.cols, input.head, input.seed);
  const trainer = new LocalTrainer(buildHead(input.trainFeatures.cols, input.head), initial.manifest);
  try {
    const fit = await trainer.fit(initial.data, { features: input.trainFeatures, labels: input.trainLabels }, { epochs, batchSize: input.batchSize, learningRate: input.learningRate, optimizer: input.optimizer }, input.seed);
    const trained = initial.data.map((value, i) => value + fit.delta[i]!);
    const result = await trainer.evaluate(trained, { features: input.testFeatures, labels: input.testLabels });
    return { accuracy: result.accuracy, loss: result.loss };
  } finally {
    trainer.head.dispose();
  }
}

export interface LocalOnlyResult {
  mean: number;
  std: number;
  min: number;
  max: number;
  clients: number;
}

/**
 * Each client trains alone on its own rows (`epochs` epochs) and is scored on the shared test set;
 * at most `maxClients` clients, a seeded sample, to bound the cost with thousands of clients.
 * `input.trainFeatures` is not used: each client's rows come from `clients`.
 */
export async function localOnlyBaseline(input: BaselineInput, clients: ClientShards, epochs: number, maxClients: number): Promise<LocalOnlyResult> {
  const cols = clients.features.cols;
  const initial = initialHeadWeights(cols, input.head, input.seed);
  const trainer = new LocalTrainer(buildHead(cols, input.head), initial.manifest);
  const chosen = clients.count <= maxClients ? Array.from({ length: clients.count }, (_, i) => i) : Array.from(createRandom(`${input.seed}-local-only`).sample(maxClients, clients.count)).sort((a, b) => a - b);
  const accuracies: number[] = [];
  try {
    for (const client of chosen) {
      const fit = await trainer.fit(initial.data, clientRows(clients, client), { epochs, batchSize: input.batchSize, learningRate: input.learningRate, optimizer: input.optimizer }, input.seed + client);
      const trained = initial.data.map((value, i) => value + fit.delta[i]!);
      accuracies.push((await trainer.evaluate(trained, { features: input.testFeatures, labels: input.testLabels })).accuracy);
    }
  } finally {
    trainer.head.dispose();
  }
  const mean = accuracies.reduce((a, b) => a + b, 0) / accuracies.length;
  const std = Math.sqrt(accuracies.reduce((a, b) => a + (b - mean) ** 2, 0) / accuracies.length);
  return { mean, std, min: Math.min(...accuracies), max: Math.max(...accuracies), clients: accuracies.length };
}
