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
import { evaluateHead, trainHead, type OptimizerName } from '../../shared/model/head-training.ts';
import { setHeadWeights } from '../../shared/model/head.ts';
import { clientRows, clientSize, type ClientShards } from './client-shards.ts';
import { classMetrics, confusionMatrix } from './report-metrics.ts';
import { predictClasses } from './report-predictions.ts';

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

/**
 * Epoch (0-based) from which the centralized baselines average their epoch-end weights: the second
 * half of training. Their reported model is that mean, not the last iterate (see `averageFromEpoch`
 * in head-training.ts): at the presets' constant learning rates the last iterate of a pooled run
 * swings with the order of the rows, which understated centralized training.
 */
export function centralizedAverageFrom(epochs: number): number {
  return Math.floor(epochs / 2);
}

/** All training data pooled in one place, the same head trained for `epochs` (the mean of the second half's epoch-end weights). */
export async function centralizedBaseline(input: BaselineInput, epochs: number): Promise<{ accuracy: number; loss: number }> {
  const initial = initialHeadWeights(input.trainFeatures.cols, input.head, input.seed);
  const head = buildHead(input.trainFeatures.cols, input.head);
  try {
    setHeadWeights(head, initial);
    await trainHead(head, input.trainFeatures, input.trainLabels, { epochs, batchSize: input.batchSize, learningRate: input.learningRate, optimizer: input.optimizer, seed: input.seed, averageFromEpoch: centralizedAverageFrom(epochs) });
    const result = await evaluateHead(head, input.testFeatures, input.testLabels);
    return { accuracy: result.accuracy, loss: result.loss };
  } finally {
    head.dispose();
  }
}

/** One client's model trained on its own rows alone, scored on the shared test set. */
export interface LocalOnlyClient {
  /** The client's index in the partition (the numbering of the report's partition section). */
  client: number;
  /** Rows it trained on. */
  examples: number;
  /** Accuracy on the whole test set. */
  accuracy: number;
  /** Recall of each class on the test set (null for a class the test set lacks): what the report's per-client view weights by the client's label mix. */
  recall: (number | null)[];
}

export interface LocalOnlyResult {
  mean: number;
  /** Population standard deviation over the clients. */
  std: number;
  min: number;
  max: number;
  clients: number;
  /** Each client's result, by ascending client index. */
  perClient?: LocalOnlyClient[];
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
  const perClient: LocalOnlyClient[] = [];
  const numClasses = input.head.classes;
  try {
    for (const client of chosen) {
      const fit = await trainer.fit(initial.data, clientRows(clients, client), { epochs, batchSize: input.batchSize, learningRate: input.learningRate, optimizer: input.optimizer }, input.seed + client);
      const trained = initial.data.map((value, i) => value + fit.delta[i]!);
      setHeadWeights(trainer.head, { manifest: initial.manifest, data: trained });
      // Predicted classes rather than accuracy alone: the per-class recalls feed the per-client view.
      const metrics = classMetrics(confusionMatrix(input.testLabels, await predictClasses(trainer.head, input.testFeatures), numClasses));
      perClient.push({ client, examples: clientSize(clients, client), accuracy: metrics.accuracy ?? Number.NaN, recall: metrics.recall });
    }
  } finally {
    trainer.head.dispose();
  }
  const accuracies = perClient.map((c) => c.accuracy);
  const mean = accuracies.reduce((a, b) => a + b, 0) / accuracies.length;
  const std = Math.sqrt(accuracies.reduce((a, b) => a + (b - mean) ** 2, 0) / accuracies.length);
  return { mean, std, min: Math.min(...accuracies), max: Math.max(...accuracies), clients: accuracies.length, perClient };
}
