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
  /**
   * `model.toJSON(null, false)`: the Keras topology of the base's LayersModel, null without one;
   * its Embedding layers cut to one row (see {@link embeddingRows}).
   */
  topology: unknown;
  /**
   * Rows of each Embedding layer, by name. The topology declares one row, so rebuilding the graph
   * does not allocate (and randomly fill) a table nobody reads — for the GloVe base's 20,002 × 100
   * floats, 8 MB a worker (more with a larger vocabulary); the rebuilt layers get their true row
   * count back before any top is built.
   */
  embeddingRows: Record<string, number>;
}

/** A Keras topology layer entry (`toJSON` spells configs in snake case). */
interface TopologyLayer {
  class_name: string;
  config: { name: string; input_dim?: number };
}

export function baseSkeleton(base: FrozenBase): BaseSkeleton {
  const embeddingRows: Record<string, number> = {};
  let topology: unknown = null;
  if (base.model) {
    // A copy of the base's own topology, whose layer list this edits (tfjs types it as a loose
    // JSON dict; a functional or sequential model's topology has this shape).
    const json = structuredClone(base.model.toJSON(null, false)) as unknown as { config: { layers: TopologyLayer[] } };
    for (const layer of json.config.layers) {
      if (layer.class_name !== 'Embedding' || layer.config.input_dim === undefined) continue;
      embeddingRows[layer.config.name] = layer.config.input_dim;
      layer.config.input_dim = 1;
    }
    topology = json;
  }
  return { name: base.name, hash: base.hash, input: base.input, embeddingSize: base.embeddingSize, topology, embeddingRows };
}

/**
 * The base rebuilt from its skeleton: same layers, names and hash, so the tops built from it and the
 * boundary keys match the main thread's. Its layers' own weights are freshly initialized and never
 * read (a top loads all of its values from the model's buffer; an Embedding's is one row); `embed`
 * refuses.
 */
export async function openSkeleton(skeleton: BaseSkeleton): Promise<FrozenBase> {
  const model = skeleton.topology === null ? null : await tf.models.modelFromJSON({ modelTopology: skeleton.topology as tf.io.ModelJSON['modelTopology'] });
  for (const [name, rows] of Object.entries(skeleton.embeddingRows)) {
    // The row count a top's copy of the layer (its config) must have; tfjs keeps it in a field the
    // public API does not set after construction.
    (model!.getLayer(name) as unknown as { inputDim: number }).inputDim = rows;
  }
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
