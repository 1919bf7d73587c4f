/**
 * The predicted classes the report's confusion matrix and per-client view are built from: the
 * final federated model on the test set, and any head (a local-only client's) on feature rows.
 * Plain Int32Arrays come out; no tensor outlives a call.
 */
import * as tf from '@tensorflow/tfjs';
import type { LabeledDataset } from '../../client/data/dataset.ts';
import type { FeatureMatrix } from '../../shared/model/feature-matrix.ts';
import { initialModelWeights, TrainableTop } from '../../shared/model/fine-tune-model.ts';
import type { FrozenBase } from '../../shared/model/frozen-base.ts';
import { buildHead, setHeadWeights } from '../../shared/model/head.ts';
import { ModelSchedule } from '../../shared/model/model-schedule.ts';
import { trainableScheduleFromConfig } from '../../shared/model/trainable-set.ts';
import { initialHeadWeights } from '../../server/start-coordinator.ts';
import type { SimulationConfig } from './presets.ts';
import { featuresOf, simulationCache } from './simulation-data.ts';

/**
 * The most probable class of each feature row (argmax of the model's output), in batches.
 *
 * @param batchSize rows per forward pass, @default 1024
 */
export async function predictClasses(model: tf.LayersModel, features: FeatureMatrix, batchSize = 1024): Promise<Int32Array> {
  const out = new Int32Array(features.rows);
  for (let start = 0; start < features.rows; start += batchSize) {
    const end = Math.min(features.rows, start + batchSize);
    const classes = tf.tidy(() => {
      const x = tf.tensor2d(features.values.subarray(start * features.cols, end * features.cols), [end - start, features.cols]);
      return tf.argMax(model.apply(x, { training: false }) as tf.Tensor, 1);
    });
    try {
      out.set(await classes.data(), start);
    } finally {
      classes.dispose();
    }
  }
  return out;
}

export interface FinalPredictionsInput {
  config: SimulationConfig;
  base: FrozenBase;
  /** The federated run's final weights: the head's, or with fine-tuning the whole model's. */
  weights: Float32Array;
  /** The last round run (a privacy budget can end a run early); picks the fine-tuning stage. */
  round: number;
  /** The test set's features through the frozen base (what a head-only model reads). */
  testFeatures: FeatureMatrix;
  /** The raw test set: a fine-tuned model reads features at its own stage's boundary. */
  testDataset: LabeledDataset;
}

/**
 * The final federated model's predicted class for every test example: the head on the base's
 * features or, when the run fine-tuned (`config.trainable`), the trainable top of the last
 * round's stage on the features at that stage's boundary, as the run's own evaluation did.
 */
export async function finalModelPredictions(input: FinalPredictionsInput): Promise<Int32Array> {
  const { config, base, weights } = input;
  if (config.trainable === undefined || config.trainable === null) {
    const head = buildHead(base.embeddingSize, config.head);
    try {
      setHeadWeights(head, { manifest: initialHeadWeights(base.embeddingSize, config.head, config.seed).manifest, data: weights });
      return await predictClasses(head, input.testFeatures);
    } finally {
      head.dispose();
    }
  }
  const model = initialModelWeights(base, config.head, config.seed);
  const schedule = new ModelSchedule(base, config.head, trainableScheduleFromConfig(config.trainable, base.model, config.rounds, 'trainable'), model.manifest);
  const top = TrainableTop.build(base, config.head, schedule.stageFor(input.round), { manifest: model.manifest, data: weights });
  try {
    return await predictClasses(top.model, await featuresOf(top.featureBase, input.testDataset, simulationCache()));
  } finally {
    top.dispose();
  }
}
