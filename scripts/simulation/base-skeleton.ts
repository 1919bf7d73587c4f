/**
 * A frozen base as a training worker needs it to fine-tune: its graph, without its weights.
 *
 * A stage's top (`TrainableTop.build`) reads only the base's graph — which layers, their configs,
 * how they connect, where the boundary cuts — and takes every weight value from the whole model's
 * flat buffer. So a worker thread rebuilds the graph from its topology JSON and gets the weights
 * once, in shared memory, instead of opening the base's files or receiving its weights per job. Its
 * features come from the main thread (computed once per boundary), so the skeleton never embeds.
 */
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../../shared/core/errors.ts';
import type { BaseInputSpec, FrozenBase } from '../../shared/model/frozen-base.ts';

/** What a base is, minus its weights: structured-cloneable, so it can be posted to a worker. */
export interface BaseSkeleton {
  name: string;
  hash: string;
  input: BaseInputSpec;
  embeddingSize: number;
  /** `model.toJSON(null, false)`: the Keras topology of the base's LayersModel; null without one. */
  topology: unknown;
}

export function baseSkeleton(base: FrozenBase): BaseSkeleton {
  return { name: base.name, hash: base.hash, input: base.input, embeddingSize: base.embeddingSize, topology: base.model ? base.model.toJSON(null, false) : null };
}

/**
 * The base rebuilt from its skeleton: same layers, names and hash, so the tops built from it and the
 * boundary keys match the main thread's. Its layers' own weights are freshly initialized and never
 * read (a top loads all of its values from the model's buffer); `embed` refuses.
 */
export async function openSkeleton(skeleton: BaseSkeleton): Promise<FrozenBase> {
  const model = skeleton.topology === null ? null : await tf.models.modelFromJSON({ modelTopology: skeleton.topology as tf.io.ModelJSON['modelTopology'] });
  return {
    name: skeleton.name,
    hash: skeleton.hash,
    input: skeleton.input,
    embeddingSize: skeleton.embeddingSize,
    model,
    embed(): tf.Tensor2D {
      throw new FedtlError('INTERNAL', `base ${skeleton.name} in a training worker has no weights: its features come from the main thread`);
    },
    dispose(): void {
      model?.dispose();
    },
  };
}
