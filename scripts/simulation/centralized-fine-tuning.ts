/**
 * The centralized baseline of a fine-tuning federation: one model trained on the pooled training
 * data through the same trainable schedule (the same stages, layers and learning-rate
 * multipliers, in the same order), so "federated vs centralized" compares like with like — a
 * federation that fine-tunes a convolution is judged against centralized training that fine-tunes
 * that convolution, not against a head on frozen features.
 *
 * The centralized epochs are shared out over the stages in proportion to the rounds each stage
 * lasts in the federation (at least one epoch each). Each stage starts from the weights the
 * previous one ended with, in a fresh optimizer, as each round's clients do, and ends with the mean
 * of its second half's epoch-end weights (as the feature-extraction baseline, see baselines.ts).
 */
import type { LabeledDataset } from '../../client/data/dataset.ts';
import { augmenterFor, type AugmentationSpec } from '../../shared/model/augmentation.ts';
import type { FeatureCache } from '../../shared/model/feature-cache.ts';
import { initialModelWeights, scatterWeights, stageFeatureBase, tokenIdsOf, TrainableTop, trainsFromInput } from '../../shared/model/fine-tune-model.ts';
import type { FlatWeights } from '../../shared/weights/flat-weights.ts';
import type { FrozenBase } from '../../shared/model/frozen-base.ts';
import type { HeadSpec } from '../../shared/model/head.ts';
import { evaluateHead, trainHead, type OptimizerName } from '../../shared/model/head-training.ts';
import type { TrainableSchedule, TrainableStage } from '../../shared/model/trainable-set.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import { centralizedAverageFrom } from './baselines.ts';
import { groupByClient, type ClientOrder } from './client-shards.ts';
import { featuresOf } from './simulation-data.ts';

/** How report.json, report.html and the CLI summary name the two centralized baselines of a fine-tuning run. */
export const CENTRALIZED_FINE_TUNING_LABEL = 'centralized fine-tuning (pooled data)';
export const CENTRALIZED_FEATURE_EXTRACTION_LABEL = 'centralized feature extraction';

export interface CentralizedFineTuningInput {
  base: FrozenBase;
  head: HeadSpec;
  /** The federation's resolved schedule. */
  schedule: TrainableSchedule;
  /** The federation's rounds: how long the last stage lasts. */
  rounds: number;
  /** The raw training set; `order` picks the rows the federation trains on. */
  train: LabeledDataset;
  /** The training rows of the federation (every client's, pooled). */
  order: ClientOrder;
  test: LabeledDataset;
  cache: FeatureCache;
  /** Epochs over the pooled data in all, shared out over the stages. */
  epochs: number;
  batchSize: number;
  learningRate: number;
  optimizer: OptimizerName;
  seed: number;
  /** The federation's augmentation (applied where a stage's features are the raw input). @default none */
  augmentation?: AugmentationSpec;
}

export interface CentralizedFineTuningResult {
  accuracy: number;
  loss: number;
  /** Epochs each stage trained, in schedule order. */
  stageEpochs: number[];
  /** Each stage in words, e.g. `from round 3: head + base_conv_1 ×1`. */
  stages: string[];
  /** The whole model at the end (every base weight, then the head). */
  model: FlatWeights;
}

/** A stage in words for the report: its first round, then what trains and at which rate multiplier. */
export function stageDescription(stage: TrainableStage): string {
  return `from round ${stage.fromRound}: head${stage.headLrMultiplier !== 1 ? ` ×${stage.headLrMultiplier}` : ''}${stage.layers.map((layer) => ` + ${layer.name} ×${layer.lrMultiplier}`).join('')}`;
}

/**
 * Epochs per stage: `epochs` shared out in proportion to the rounds each stage lasts (largest
 * remainders), at least one each.
 */
export function stageEpochs(schedule: TrainableSchedule, rounds: number, epochs: number): number[] {
  const stages = schedule.stages;
  if (!Number.isSafeInteger(epochs) || epochs < stages.length) throw new FedtlError('BAD_CONFIG', `${epochs} centralized epochs cannot cover ${stages.length} trainable stages (at least one each)`);
  const spans = stages.map((stage, i) => (stages[i + 1]?.fromRound ?? rounds + 1) - stage.fromRound);
  const exact = spans.map((span) => (epochs * span) / rounds);
  const out = exact.map((value) => Math.max(1, Math.floor(value)));
  let left = epochs - out.reduce((a, b) => a + b, 0);
  const byRemainder = exact.map((value, i) => ({ i, remainder: value - Math.floor(value) })).sort((a, b) => b.remainder - a.remainder || a.i - b.i);
  for (let k = 0; left > 0; k = (k + 1) % byRemainder.length, left--) out[byRemainder[k]!.i]! += 1;
  // Stages floored up to one epoch may overshoot: take it back from the longest.
  while (left < 0) {
    const longest = out.indexOf(Math.max(...out));
    out[longest]! -= 1;
    left++;
  }
  return out;
}

/** Features of `dataset` at a stage's boundary, in the federation's row order. */
async function stageRows(top: TrainableTop, dataset: LabeledDataset, cache: FeatureCache, order: ClientOrder | null) {
  const features = await featuresOf(top.featureBase, dataset, cache);
  if (!order) return { features, labels: dataset.labels };
  const shards = groupByClient(order, features, dataset.labels);
  return { features: shards.features, labels: shards.labels };
}

/** Trains the pooled model through the schedule and scores the final (averaged) model on the test set. */
export async function centralizedFineTuning(input: CentralizedFineTuningInput): Promise<CentralizedFineTuningResult> {
  const model = initialModelWeights(input.base, input.head, input.seed);
  const epochs = stageEpochs(input.schedule, input.rounds, input.epochs);
  let last: TrainableStage | null = null;
  for (const [i, stage] of input.schedule.stages.entries()) {
    await withTop(input, stage, model, async (top) => {
      const rows = await stageRows(top, input.train, input.cache, input.order);
      const augment = augmenterFor(input.base.input, trainsFromInput(input.base.model, stage), input.augmentation ?? {});
      await trainHead(top.model, rows.features, rows.labels, {
        epochs: epochs[i]!,
        batchSize: input.batchSize,
        learningRate: input.learningRate,
        optimizer: input.optimizer,
        learningRateMultipliers: top.learningRateMultipliers,
        ...(augment ? { augment } : {}),
        seed: input.seed + i,
        averageFromEpoch: centralizedAverageFrom(epochs[i]!),
      });
      scatterWeights(model, top.getWeights());
    });
    last = stage;
  }
  if (!last) throw new FedtlError('BAD_CONFIG', 'the trainable schedule has no stages');
  const result = await withTop(input, last, model, async (top) => {
    const rows = await stageRows(top, input.test, input.cache, null);
    return evaluateHead(top.model, rows.features, rows.labels);
  });
  return { accuracy: result.accuracy, loss: result.loss, stageEpochs: epochs, stages: input.schedule.stages.map(stageDescription), model };
}

/**
 * Builds a stage's top over the whole model (holding every embedding row the pooled texts use when
 * the table trains, as each client holds its own), runs `use`, and disposes the top.
 */
async function withTop<T>(input: CentralizedFineTuningInput, stage: TrainableStage, model: FlatWeights, use: (top: TrainableTop) => Promise<T>): Promise<T> {
  let options = {};
  if (input.base.input.kind === 'text' && trainsFromInput(input.base.model, stage)) {
    const featureBase = stageFeatureBase(input.base, stage);
    options = { embeddingRows: tokenIdsOf([await featuresOf(featureBase, input.train, input.cache), await featuresOf(featureBase, input.test, input.cache)]) };
  }
  const top = TrainableTop.build(input.base, input.head, stage, model, options);
  try {
    return await use(top);
  } finally {
    top.dispose();
  }
}

