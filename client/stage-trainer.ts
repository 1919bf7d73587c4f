/**
 * A client's fine-tuning: trains the stage a round names on features taken at that stage's
 * boundary (see shared/model/fine-tune-model.ts).
 *
 * Features are computed once per boundary and kept (a `FeatureCache` also keeps them on disk, keyed
 * by the boundary), so they are recomputed only when the boundary moves down. Each fit builds the
 * stage's top, loads the round's slice, trains, and returns the delta over exactly that slice;
 * an embedding table is held only for the rows the client's own texts use.
 */
import type { FeatureMatrix } from '../shared/model/feature-matrix.ts';
import { augmenterFor, type AugmentationSpec } from '../shared/model/augmentation.ts';
import { stageFeatureBase, tokenIdsOf, TrainableTop, trainsFromInput } from '../shared/model/fine-tune-model.ts';
import type { FrozenBase } from '../shared/model/frozen-base.ts';
import type { HeadSpec } from '../shared/model/head.ts';
import { evaluateHead, trainHead, type EvalResult } from '../shared/model/head-training.ts';
import type { TrainableStage } from '../shared/model/trainable-set.ts';
import type { FitConfig } from '../shared/strategy/strategy.ts';
import { subtract, type FlatWeights } from '../shared/weights/flat-weights.ts';
import { FedtlError } from '../shared/core/errors.ts';
import { fitWithDrift } from './drift.ts';
import type { ClientTrainingOptions, LabeledFeatures, LocalFitResult } from './local-trainer.ts';

/** A client's data as features of a stage's feature base (a `FrozenBase` cut at the boundary). */
export type StageFeatureSource = (featureBase: FrozenBase) => Promise<{ train: LabeledFeatures; validation: LabeledFeatures | null }>;

export interface StageTrainerOptions extends ClientTrainingOptions {
  base: FrozenBase;
  headSpec: HeadSpec;
  /**
   * The whole model's starting weights (`initialModelWeights`): the layers of a top that do not
   * train this round keep these pretrained values. Shared read-only by every trainer of a process.
   */
  model: FlatWeights;
  /** Turns the client's data into features at a boundary (with a cache where it has one). */
  features: StageFeatureSource;
  /** Augmentation, applied where the features are the raw input. @default none */
  augmentation?: AugmentationSpec;
}

export class StageTrainer {
  readonly #options: StageTrainerOptions;
  #prepared: { key: string; train: LabeledFeatures; validation: LabeledFeatures | null; rows: Int32Array | undefined; atInput: boolean } | null = null;

  constructor(options: StageTrainerOptions) {
    this.#options = options;
  }

  /** Features for a stage's boundary, computed only when the boundary moved since the last call. */
  async #prepare(stage: TrainableStage) {
    const featureBase = stageFeatureBase(this.#options.base, stage);
    if (this.#prepared?.key !== featureBase.hash) {
      const { train, validation } = await this.#options.features(featureBase);
      const atInput = trainsFromInput(this.#options.base.model, stage);
      const tokens = this.#options.base.input.kind === 'text' && atInput;
      const matrices: FeatureMatrix[] = [train.features, ...(validation ? [validation.features] : [])];
      this.#prepared = { key: featureBase.hash, train, validation, rows: tokens ? tokenIdsOf(matrices) : undefined, atInput };
    }
    return this.#prepared;
  }

  #top(stage: TrainableStage, rows: Int32Array | undefined): TrainableTop {
    return TrainableTop.build(this.#options.base, this.#options.headSpec, stage, this.#options.model, rows ? { embeddingRows: rows } : {});
  }

  /**
   * Trains `stage` from `weights` and returns the delta over exactly its slice; under drift
   * correction, a gradient request returns the mean gradient instead, and `control` (the verified c
   * of a corrected fit) steers every step (client/drift.ts).
   */
  async fit(stage: TrainableStage, weights: Float32Array, config: FitConfig, seed: number, control?: Float32Array): Promise<LocalFitResult> {
    const prepared = await this.#prepare(stage);
    if (prepared.train.features.rows === 0) throw new FedtlError('BAD_DATA', 'this client has no training examples');
    const top = this.#top(stage, prepared.rows);
    try {
      top.setWeights(weights);
      const augment = augmenterFor(this.#options.base.input, prepared.atInput, this.#options.augmentation ?? {});
      const result = await fitWithDrift({
        model: top.model,
        rows: prepared.train,
        config,
        control,
        tensorsOf: (values) => top.tensorsOf(values),
        flatten: (byName) => top.flatten(byName),
        ...(this.#options.logitAdjustment !== undefined ? { logitAdjustment: this.#options.logitAdjustment } : {}),
        train: async (gradientCorrection) => {
          const trainedWith = await trainHead(top.model, prepared.train.features, prepared.train.labels, {
            epochs: config.epochs,
            batchSize: config.batchSize,
            learningRate: config.learningRate,
            optimizer: config.optimizer,
            ...(config.proximalMu !== undefined ? { proximalMu: config.proximalMu } : {}),
            learningRateMultipliers: top.learningRateMultipliers,
            ...(augment ? { augment } : {}),
            ...(gradientCorrection ? { gradientCorrection } : {}),
            ...(this.#options.logitAdjustment !== undefined ? { logitAdjustment: this.#options.logitAdjustment } : {}),
            seed,
          });
          const trained = top.getWeights();
          return { delta: subtract(trained.data, weights), exampleCount: trainedWith.examples, metrics: { loss: trainedWith.loss, accuracy: trainedWith.accuracy } };
        },
      });
      // The manifest lets the client round send an embedding table row-sparse (a gradient too: it is zero outside the rows held).
      return { ...result, manifest: top.manifest };
    } finally {
      top.dispose();
    }
  }

  /** Loss and accuracy on the client's validation data, or null without any. */
  async evaluate(stage: TrainableStage, weights: Float32Array): Promise<EvalResult | null> {
    const prepared = await this.#prepare(stage);
    if (!prepared.validation || prepared.validation.features.rows === 0) return null;
    const top = this.#top(stage, prepared.rows);
    try {
      top.setWeights(weights);
      return await evaluateHead(top.model, prepared.validation.features, prepared.validation.labels);
    } finally {
      top.dispose();
    }
  }
}
