/**
 * `DepthwiseConv2dNativeBackpropInput` for wasm: the input gradient of a depthwise convolution,
 * computed as a forward depthwise convolution on wasm's XNNPACK kernel: `dy`, spread out by the
 * stride and padded, convolved at stride 1 with the spatially flipped filter (see
 * `spread-and-pad.ts`). With channel multiplier
 * `M`, each of the `C·M` output channels of `dy` is convolved on its own and the `M` results of
 * each input channel are summed.
 */
import * as tf from '@tensorflow/tfjs';
import { requireFloat32, withKernelScope } from './kernel-scope.ts';
import type { PadAttr } from './patches.ts';
import { flipFilter, spreadAndPad } from './spread-and-pad.ts';

interface DepthwiseBackpropInputAttrs {
  strides: [number, number] | number;
  dilations: [number, number] | number;
  pad: PadAttr;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  inputShape: [number, number, number, number];
}

function depthwiseConv2dBackpropInput({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { dy, filter } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const { strides, dilations, pad, dimRoundingMode, inputShape } = attrs as unknown as DepthwiseBackpropInputAttrs;
  requireFloat32(tf.DepthwiseConv2dNativeBackpropInput, { dy, filter });
  const filterShape = filter.shape as [number, number, number, number];
  const info = tf.backend_util.computeConv2DInfo(inputShape, filterShape, strides, dilations ?? 1, pad, dimRoundingMode, true, 'channelsLast');
  const multiplier = filterShape[3];
  return withKernelScope(backend, (scope) => {
    const spread = spreadAndPad(scope, dy, info);
    const perChannel = scope.run(tf.DepthwiseConv2dNative, { x: spread.x, filter: flipFilter(scope, filter, false) }, {
      strides: 1,
      pad: spread.pad,
      dilations: [info.dilationHeight, info.dilationWidth],
    });
    if (multiplier === 1) return perChannel;
    const [n, h, w, c] = inputShape;
    return scope.run(tf.Sum, { x: scope.reshape(perChannel, [n, h, w, c, multiplier]) }, { axis: [4], keepDims: false });
  });
}

export const depthwiseConv2dBackpropInputConfig: tf.KernelConfig = {
  kernelName: tf.DepthwiseConv2dNativeBackpropInput,
  backendName: 'wasm',
  kernelFunc: depthwiseConv2dBackpropInput,
};
