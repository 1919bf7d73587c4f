/**
 * Layers that stand in for base layers inside a training model (never serialized: exports rebuild
 * the base's own layers with the trained weights).
 *
 * {@link MeanEmbeddingBag}: Embedding → GlobalAveragePooling1D as one matrix product, for training
 * an embedding table.
 *
 * Mean pooling of looked-up rows equals S·E, where S[b, w] = (count of word w in text b) / L and E
 * is the table. Written this way the table's gradient is Sᵀ·dY, a plain matMul that every backend
 * has and whose cost follows the batch, while the gather op's gradient (UnsortedSegmentSum) is
 * missing on wasm and loops over every vocabulary row on cpu (minutes per epoch at 20k words).
 *
 * Padding (id 0) is left out of S, so its row never receives a gradient and stays the zero vector
 * the base gave it: the trained table then gives exactly the same output in the stock
 * Embedding + GlobalAveragePooling1D layers the export is made of.
 *
 * {@link ParameterFreeLayerNorm}: LayerNormalization without gamma and beta. tfjs's own layer
 * passes null scale and offset to batchNormalization, whose gradient then fails ("Cannot read
 * properties of undefined"), so no layer below such a normalization could train.
 */
import * as tf from '@tensorflow/tfjs';
import { PAD_ID } from '../bases/tokenizer.ts';

export interface MeanEmbeddingBagArgs {
  /** The Embedding layer's name, so the table's weight keeps its name `<name>/embeddings`. */
  name: string;
  inputDim: number;
  outputDim: number;
  trainable: boolean;
}

/** Rows of S built per product, so a large evaluation batch never allocates batch × vocabulary at once. */
const ROWS_PER_PRODUCT = 128;

export class MeanEmbeddingBag extends tf.layers.Layer {
  static readonly className = 'FedtlMeanEmbeddingBag';
  readonly inputDim: number;
  readonly outputDim: number;
  #embeddings: tf.LayerVariable | null = null;

  constructor(args: MeanEmbeddingBagArgs) {
    super({ name: args.name, trainable: args.trainable });
    this.inputDim = args.inputDim;
    this.outputDim = args.outputDim;
  }

  override build(): void {
    this.#embeddings = this.addWeight('embeddings', [this.inputDim, this.outputDim], 'float32', tf.initializers.zeros());
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    return [shape[0] ?? null, this.outputDim];
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const ids = Array.isArray(inputs) ? inputs[0]! : inputs;
      const [rows, length] = [ids.shape[0]!, ids.shape[1]!];
      // Token ids are data, not something to differentiate: read them and build S on the host.
      const values = ids.dataSync();
      const table = this.#embeddings!.read();
      const parts: tf.Tensor[] = [];
      for (let start = 0; start < rows; start += ROWS_PER_PRODUCT) {
        const end = Math.min(rows, start + ROWS_PER_PRODUCT);
        const s = new Float32Array((end - start) * this.inputDim);
        for (let r = start; r < end; r++) {
          const base = (r - start) * this.inputDim;
          for (let t = 0; t < length; t++) {
            const id = values[r * length + t]!;
            if (id !== PAD_ID && id >= 0 && id < this.inputDim) s[base + id]! += 1 / length;
          }
        }
        parts.push(tf.matMul(tf.tensor2d(s, [end - start, this.inputDim]), table));
      }
      return parts.length === 1 ? parts[0]! : tf.concat(parts, 0);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), inputDim: this.inputDim, outputDim: this.outputDim };
  }
}

export interface ParameterFreeLayerNormArgs {
  name: string;
  epsilon: number;
}

/** (x − mean) / sqrt(variance + ε) over the last axis, as LayerNormalization({ center: false, scale: false }). */
export class ParameterFreeLayerNorm extends tf.layers.Layer {
  static readonly className = 'FedtlParameterFreeLayerNorm';
  readonly epsilon: number;

  constructor(args: ParameterFreeLayerNormArgs) {
    super({ name: args.name, trainable: false });
    this.epsilon = args.epsilon;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = Array.isArray(inputs) ? inputs[0]! : inputs;
      const { mean, variance } = tf.moments(x, -1, true);
      return tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.epsilon)));
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), epsilon: this.epsilon };
  }
}
