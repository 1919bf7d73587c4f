/**
 * `UnsortedSegmentSum` for wasm: `out[segmentIds[i], …] += x[i, …]`, the gradient of `gather`
 * (an embedding lookup). One pass over the ids adds each row into its segment, so the cost is the
 * rows of `x` (the tokens in a batch) times the row length, plus zeroing the output; it does not
 * grow with the number of segments (the vocabulary) beyond that memset. Ids outside
 * `[0, numSegments)` are dropped, as TensorFlow does.
 */
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../../core/errors.ts';
import { withKernelScope } from './kernel-scope.ts';

function unsortedSegmentSum({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const { numSegments } = attrs as unknown as { numSegments: number };
  if (segmentIds.shape.length !== 1 || segmentIds.shape[0] !== x.shape[0]) {
    throw new FedtlError('BAD_SHAPE', `UnsortedSegmentSum: segmentIds must be 1-D with x.shape[0] = ${x.shape[0]} ids, got shape [${segmentIds.shape.join(', ')}]`);
  }
  if (segmentIds.dtype !== 'int32') throw new FedtlError('BAD_DATA', `UnsortedSegmentSum: segmentIds must be int32, got ${segmentIds.dtype}`);
  if (x.dtype !== 'float32' && x.dtype !== 'int32') throw new FedtlError('BAD_DATA', `UnsortedSegmentSum: x must be float32 or int32, got ${x.dtype}`);
  if (!Number.isSafeInteger(numSegments) || numSegments < 0) throw new FedtlError('BAD_CONFIG', `UnsortedSegmentSum: numSegments must be a non-negative integer, got ${numSegments}`);
  const rowLength = tf.util.sizeFromShape(x.shape.slice(1));
  return withKernelScope(backend, (scope) => {
    const out = scope.alloc([numSegments, ...x.shape.slice(1)], x.dtype);
    const src = scope.view(x);
    const ids = scope.view(segmentIds);
    const dst = scope.view(out);
    dst.fill(0);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (id < 0 || id >= numSegments) continue;
      const s = i * rowLength;
      const d = id * rowLength;
      for (let j = 0; j < rowLength; j++) dst[d + j] = dst[d + j]! + src[s + j]!;
    }
    return out;
  });
}

export const unsortedSegmentSumConfig: tf.KernelConfig = {
  kernelName: tf.UnsortedSegmentSum,
  backendName: 'wasm',
  kernelFunc: unsortedSegmentSum,
};
