/**
 * Defaults of local training, written once (tf-free, so strategies and config parsing can read
 * them without loading TensorFlow.js): the strategies' fit configs, the coordinator's config
 * schema and `trainHead` all take them from here.
 */
export const OPTIMIZERS = ['sgd', 'adam'] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];

export const TRAINING_DEFAULTS = { epochs: 1, batchSize: 32, learningRate: 0.01, optimizer: 'adam' } as const satisfies {
  epochs: number;
  batchSize: number;
  learningRate: number;
  optimizer: OptimizerName;
};
