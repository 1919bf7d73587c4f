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
  /**
   * Hold only these rows of the table (sorted distinct ids, e.g. every id in a client's data):
   * the variable is `rows.length × outputDim` and other ids read as zero vectors. Rows a client's
   * data never uses get no gradient anyway, so training is the same; each step then costs the
   * client's vocabulary, not the whole table. @default the whole table
   */
  rows?: Int32Array;
}

/** Rows of S built per product, so a large evaluation batch stays a modest matrix. */
const ROWS_PER_PRODUCT = 128;

export class MeanEmbeddingBag extends tf.layers.Layer {
  static readonly className = 'FedtlMeanEmbeddingBag';
  readonly inputDim: number;
  readonly outputDim: number;
  /** The rows held, or null for the whole table. */
  readonly rows: Int32Array | null;
  /** id → row of the variable (−1: not held); only with `rows`. */
  readonly #local: Int32Array | null;
  #embeddings: tf.LayerVariable | null = null;

  constructor(args: MeanEmbeddingBagArgs) {
    super({ name: args.name, trainable: args.trainable });
    this.inputDim = args.inputDim;
    this.outputDim = args.outputDim;
    this.rows = args.rows ?? null;
    if (this.rows) {
      this.#local = new Int32Array(args.inputDim).fill(-1);
      this.rows.forEach((id, k) => {
        this.#local![id] = k;
      });
    } else {
      this.#local = null;
    }
  }

  override build(): void {
    const held = this.rows ? Math.max(1, this.rows.length) : this.inputDim;
    this.#embeddings = this.addWeight('embeddings', [held, this.outputDim], 'float32', tf.initializers.zeros());
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
        parts.push(this.#local ? this.#meanLocal(values, start, end, length, table, this.#local) : this.#meanRows(values, start, end, length, table));
      }
      return parts.length === 1 ? parts[0]! : tf.concat(parts, 0);
    });
  }

  /**
   * S·E over a held sub-table: S (batch × held rows) and its transpose are built on the host, so
   * the forward and backward passes are one plain matMul each, with no gather or scatter.
   */
  #meanLocal(values: ArrayLike<number>, start: number, end: number, length: number, table: tf.Tensor, local: Int32Array): tf.Tensor {
    const held = table.shape[0]!;
    const n = end - start;
    const s = new Float32Array(n * held);
    const sT = new Float32Array(held * n);
    for (let r = start; r < end; r++) {
      for (let t = 0; t < length; t++) {
        const id = values[r * length + t]!;
        const k = id !== PAD_ID && id >= 0 && id < local.length ? local[id]! : -1;
        if (k >= 0) {
          s[(r - start) * held + k]! += 1 / length;
          sT[k * n + (r - start)]! += 1 / length;
        }
      }
    }
    const sMatrix = tf.tensor2d(s, [n, held]);
    const sTransposed = tf.tensor2d(sT, [held, n]);
    const product = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
      const [e, save] = args as [tf.Tensor, tf.GradSaveFunc];
      save([sTransposed]);
      return {
        value: tf.matMul(sMatrix, e as tf.Tensor2D),
        gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => [tf.matMul(saved[0] as tf.Tensor2D, dy as tf.Tensor2D)],
      };
    });
    return product(table);
  }

  /**
   * S·E for rows [start, end), restricted to the words those rows use: S is rows × used words and
   * only the used rows of E are gathered. The gradient scatters Sᵀ·dY back into those rows, so a
   * step costs batch × used words, never batch × vocabulary, and needs neither a dense Sᵀ·dY
   * over the whole table nor the gather op's UnsortedSegmentSum gradient.
   */
  #meanRows(values: ArrayLike<number>, start: number, end: number, length: number, table: tf.Tensor): tf.Tensor {
    const column = new Map<number, number>();
    for (let i = start * length; i < end * length; i++) {
      const id = values[i]!;
      if (id !== PAD_ID && id >= 0 && id < this.inputDim && !column.has(id)) column.set(id, column.size);
    }
    const used = Int32Array.from(column.keys());
    const s = new Float32Array((end - start) * Math.max(1, used.length));
    for (let r = start; r < end; r++) {
      for (let t = 0; t < length; t++) {
        const c = column.get(values[r * length + t]!);
        if (c !== undefined) s[(r - start) * used.length + c]! += 1 / length;
      }
    }
    if (used.length === 0) return tf.zeros([end - start, this.outputDim]);
    const sMatrix = tf.tensor2d(s, [end - start, used.length]);
    const usedIds = tf.tensor1d(used, 'int32');
    const shape = table.shape as [number, number];
    // customGrad passes the inputs, then the save function, in one rest list.
    const product = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
      const [e, save] = args as [tf.Tensor, tf.GradSaveFunc];
      save([sMatrix, usedIds]);
      return {
        value: tf.matMul(sMatrix, tf.gather(e, usedIds)),
        gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
          const [sm, idx] = saved as [tf.Tensor2D, tf.Tensor1D];
          return [tf.scatterND(tf.expandDims(idx, 1), tf.matMul(sm, dy as tf.Tensor2D, true, false), shape)];
        },
      };
    });
    return product(table);
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
