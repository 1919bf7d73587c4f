/**
 * A client's local work for one round, shared by real clients (client/client.ts) and virtual
 * clients in simulations: load the round's global head, train it on cached features, and return
 * the delta (trained − received) with the example count and local metrics.
 */
import type * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../shared/core/errors.ts';
import type { FeatureMatrix } from '../shared/model/feature-matrix.ts';
import { flattenByVariable, getHeadWeights, headTensorsByVariable, setHeadWeights } from '../shared/model/head.ts';
import { evaluateHead, trainHead, type EvalResult } from '../shared/model/head-training.ts';
import type { FitConfig } from '../shared/strategy/strategy.ts';
import { subtract, type WeightManifest } from '../shared/weights/flat-weights.ts';
import { fitWithDrift } from './drift.ts';

export interface LabeledFeatures {
  features: FeatureMatrix;
  labels: Int32Array;
}

export interface LocalFitResult {
  delta: Float32Array;
  exampleCount: number;
  metrics: { loss: number; accuracy: number };
  /**
   * The delta already sealed for the request, by a trainer that seals where it trains (a
   * simulation's worker thread, which keeps that work off the coordinator's thread). @default none:
   * the client round seals it
   */
  sealed?: Uint8Array;
  /**
   * The manifest the delta is laid out by, when the trainer knows it (a fine-tuning stage): the
   * client round then sends its embedding tables row-sparse where that is smaller. @default none (dense)
   */
  manifest?: WeightManifest;
}

/**
 * Trains a head model on behalf of any number of clients, one at a time. The head is the only
 * tensor state: virtual clients share one instance and differ only in their features.
 */
/** How a client trains, whatever the round's config: options that stay on the client. */
export interface ClientTrainingOptions {
  /** Logit adjustment τ by the client's own label prior (see `TrainOptions.logitAdjustment`). @default 0 (off) */
  logitAdjustment?: number;
}

export class LocalTrainer {
  readonly #head: tf.LayersModel;
  readonly #manifest: WeightManifest;
  readonly #training: ClientTrainingOptions;

  constructor(head: tf.LayersModel, manifest: WeightManifest, training: ClientTrainingOptions = {}) {
    this.#head = head;
    this.#manifest = manifest;
    this.#training = training;
  }

  get head(): tf.LayersModel {
    return this.#head;
  }

  /**
   * Trains from `globalWeights` and returns the delta; under drift correction, a gradient request
   * returns the mean gradient instead, and `control` (the verified c of a corrected fit) steers
   * every step (client/drift.ts).
   */
  async fit(globalWeights: Float32Array, data: LabeledFeatures, config: FitConfig, seed = 0, control?: Float32Array): Promise<LocalFitResult> {
    if (data.features.rows === 0) throw new FedtlError('BAD_DATA', 'this client has no training examples');
    setHeadWeights(this.#head, { manifest: this.#manifest, data: globalWeights });
    const head = this.#head;
    return fitWithDrift({
      model: head,
      rows: data,
      config,
      control,
      tensorsOf: (values) => headTensorsByVariable(head, values),
      flatten: (byName) => flattenByVariable(head, byName),
      ...(this.#training.logitAdjustment !== undefined ? { logitAdjustment: this.#training.logitAdjustment } : {}),
      train: async (gradientCorrection) => {
        const result = await trainHead(head, data.features, data.labels, {
          epochs: config.epochs,
          batchSize: config.batchSize,
          learningRate: config.learningRate,
          optimizer: config.optimizer,
          ...(config.proximalMu !== undefined ? { proximalMu: config.proximalMu } : {}),
          ...(gradientCorrection ? { gradientCorrection } : {}),
          ...this.#training,
          seed,
        });
        const trained = getHeadWeights(head).data;
        return { delta: subtract(trained, globalWeights), exampleCount: result.examples, metrics: { loss: result.loss, accuracy: result.accuracy } };
      },
    });
  }

  async evaluate(weights: Float32Array, data: LabeledFeatures): Promise<EvalResult> {
    setHeadWeights(this.#head, { manifest: this.#manifest, data: weights });
    return evaluateHead(this.#head, data.features, data.labels);
  }
}
