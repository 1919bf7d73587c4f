/**
 * The frozen pretrained part of a transfer model.
 *
 * A base turns prepared inputs (token ids, image pixels, numeric rows) into a fixed-size embedding.
 * It is never trained and never leaves the coordinator except as the content-addressed model
 * directory it was loaded from; its SHA-256 `hash` names it everywhere (feature caches, protocol,
 * checkpoints, exports).
 */
import type * as tf from '@tensorflow/tfjs';

/** What a base expects as input. Closed set: loaders and `predict` switch on it. */
export type BaseInputKind = 'text' | 'image' | 'tensor';

export interface TextInputSpec {
  kind: 'text';
  /** Token ids per example; shorter texts are padded with id 0, longer ones truncated. */
  sequenceLength: number;
  /** Vocabulary, index = token id; index 0 is padding and index 1 is out-of-vocabulary. */
  vocabulary: readonly string[];
}

export interface ImageInputSpec {
  kind: 'image';
  /** Height and width the base expects; images are resized to it. */
  size: number;
  /** Channels the base expects (3 = RGB). Grayscale inputs are repeated to fill them. */
  channels: number;
  /** Pixel scale the base expects: pixels/255 mapped into [low, high]. */
  range: readonly [number, number];
}

export interface TensorInputSpec {
  kind: 'tensor';
  /** Length of one flat numeric input row. */
  size: number;
}

export type BaseInputSpec = TextInputSpec | ImageInputSpec | TensorInputSpec;

export interface FrozenBase {
  /** Human-readable name, e.g. `glove-100d`, `mobilenet-v2-96`, `identity-784`. */
  readonly name: string;
  /** SHA-256 (hex) over the base's topology and weight bytes. */
  readonly hash: string;
  readonly input: BaseInputSpec;
  /** Size of the embedding the head is built on. */
  readonly embeddingSize: number;
  /**
   * The cut LayersModel (inputs → embedding), frozen. `null` for the identity base, whose
   * embedding is the input itself, and for GraphModel bases (see `LoadedBase.graphModel` in
   * `base-loader.ts`).
   */
  readonly model: import('@tensorflow/tfjs').LayersModel | null;
  /** Embeds a batch of prepared inputs. The caller owns the returned tensor. */
  embed(batch: tf.Tensor): tf.Tensor2D;
  dispose(): void;
}
