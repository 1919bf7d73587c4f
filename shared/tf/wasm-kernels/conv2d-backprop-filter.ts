/**
 * `Conv2DBackpropFilter` for wasm: the gradient of a 2-D convolution with respect to its filter,
 * `dW[kh, kw, ci, co] = Σ_{n, oh, ow} x[n, oh·s + kh − pad, ow·s + kw − pad, ci] · dy[n, oh, ow, co]`,
 * computed as `patches(x)ᵀ · dy`: one matrix product on wasm's XNNPACK kernel. For a 1×1 convolution
 * the patches are the input itself. The patches are transposed explicitly: wasm's `BatchMatMul`
 * takes its XNNPACK path only for untransposed operands and is ~10× slower otherwise.
 */
import * as tf from '@tensorflow/tfjs';
import { requireChannelsLast, requireFloat32, withKernelScope } from './kernel-scope.ts';
import { extractPatches, type PadAttr } from './patches.ts';

interface Conv2DBackpropFilterAttrs {
  strides: [number, number] | number;
  pad: PadAttr;
  dataFormat?: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  filterShape: [number, number, number, number];
}

function conv2dBackpropFilter({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as Conv2DBackpropFilterAttrs;
  requireChannelsLast(tf.Conv2DBackpropFilter, dataFormat);
  requireFloat32(tf.Conv2DBackpropFilter, { x, dy });
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], filterShape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
  return withKernelScope(backend, (scope) => {
    const patches = extractPatches(scope, x, info);
    const rows = patches.shape[0]!;
    const patchesT = scope.run(tf.Transpose, { x: patches }, { perm: [1, 0] });
    const grads = scope.run(tf.BatchMatMul, { a: patchesT, b: scope.reshape(dy, [rows, info.outChannels]) }, { transposeA: false, transposeB: false });
    return scope.reshape(grads, [...filterShape]);
  });
}

export const conv2dBackpropFilterConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropFilter,
  backendName: 'wasm',
  kernelFunc: conv2dBackpropFilter,
};
