/**
 * The identity base: embedding = input.
 *
 * Used for tabular/CSV data and for the "no frozen base" mode, where the whole MLP is the
 * trainable head. It has no weights, so its hash is derived from its name and size: two parties
 * agree on it exactly when they agree on the input layout.
 */
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../core/errors.ts';
import type { FrozenBase } from '../model/frozen-base.ts';

/** Options of {@link createIdentityBase}. */
export interface IdentityBaseOptions {
  /** Base name. @default `identity-${size}` */
  name?: string;
}

/** The hash of an identity base of this name and size. */
export function identityBaseHash(name: string, size: number): string {
  return createHash('sha256').update(`fedtl-identity/v1\n${name}\n${size}`).digest('hex');
}

/**
 * Creates a base whose embedding is its (flat, float32) input.
 *
 * @param size length of one input row, and so of the embedding
 * @example
 * const base = createIdentityBase(4);
 * const e = base.embed(tf.tensor2d([[1, 2, 3, 4]])); // same values, a new tensor the caller owns
 */
export function createIdentityBase(size: number, options: IdentityBaseOptions = {}): FrozenBase {
  if (!Number.isInteger(size) || size <= 0) throw new FedtlError('BAD_CONFIG', `identity base size must be a positive integer, got ${size}`);
  const name = options.name ?? `identity-${size}`;
  return {
    name,
    hash: identityBaseHash(name, size),
    input: { kind: 'tensor', size },
    embeddingSize: size,
    model: null,
    embed(batch: tf.Tensor): tf.Tensor2D {
      if (batch.rank !== 2 || batch.shape[1] !== size) {
        throw new FedtlError('BAD_SHAPE', `base "${name}" expects a batch of shape [?,${size}], got [${batch.shape.join(',')}]`);
      }
      // Always a new tensor (never `batch` itself): the caller owns and disposes the result.
      return batch.dtype === 'float32' ? (tf.clone(batch) as tf.Tensor2D) : (tf.cast(batch, 'float32') as tf.Tensor2D);
    },
    dispose(): void {
      // Nothing to free: the identity base holds no tensors.
    },
  };
}
