/**
 * `DepthwiseConv2dNativeBackpropFilter` for wasm: the filter gradient of a depthwise convolution
 * (channel multiplier `M`), `dW[kh, kw, c, m] = Σ_{n, oh, ow} patch[n, oh, ow, kh, kw, c] · dy[n, oh, ow, c·M + m]`.
 * Each filter tap is a sum over positions of an elementwise product of the shifted input with `dy`:
 * one broadcast multiply over the im2col patches, then the sum over positions as a product with a
 * row of ones (wasm's matrix kernel, which avoids the transpose its `Sum` would make first).
 */
import * as tf from '@tensorflow/tfjs';
import { requireFloat32, withKernelScope } from './kernel-scope.ts';
import { extractPatches, type PadAttr } from './patches.ts';

interface DepthwiseBackpropFilterAttrs {
  strides: [number, number] | number;
  dilations: [number, number] | number;
  pad: PadAttr;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  filterShape: [number, number, number, number];
}

function depthwiseConv2dBackpropFilter({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const { strides, dilations, pad, dimRoundingMode, filterShape } = attrs as unknown as DepthwiseBackpropFilterAttrs;
  requireFloat32(tf.DepthwiseConv2dNativeBackpropFilter, { x, dy });
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], filterShape, strides, dilations ?? 1, pad, dimRoundingMode, true, 'channelsLast');
  const [filterHeight, filterWidth, channels, multiplier] = filterShape;
  const taps = filterHeight * filterWidth;
  return withKernelScope(backend, (scope) => {
    const patches = extractPatches(scope, x, info);
    const rows = patches.shape[0]!;
    // [rows, taps, C(, 1)] × [rows, 1, C(, M)]: a multiplier of 1 (MobileNet's) keeps rank 3.
    const products = multiplier === 1
      ? scope.run(tf.Multiply, { a: scope.reshape(patches, [rows, taps, channels]), b: scope.reshape(dy, [rows, 1, channels]) })
      : scope.run(tf.Multiply, {
        a: scope.reshape(patches, [rows, taps, channels, 1]),
        b: scope.reshape(dy, [rows, 1, channels, multiplier]),
      });
    const ones = scope.run(tf.Fill, {}, { shape: [1, rows], value: 1, dtype: 'float32' });
    const summed = scope.run(tf.BatchMatMul, { a: ones, b: scope.reshape(products, [rows, taps * channels * multiplier]) }, { transposeA: false, transposeB: false });
    return scope.reshape(summed, [...filterShape]);
  });
}

export const depthwiseConv2dBackpropFilterConfig: tf.KernelConfig = {
  kernelName: tf.DepthwiseConv2dNativeBackpropFilter,
  backendName: 'wasm',
  kernelFunc: depthwiseConv2dBackpropFilter,
};
