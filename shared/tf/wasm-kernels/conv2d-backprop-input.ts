/**
 * `Conv2DBackpropInput` for wasm, replacing tfjs-backend-wasm's own: that one is a scalar loop,
 * while this one is a forward convolution on wasm's XNNPACK kernel, `dy` spread out by the stride
 * and padded, convolved at stride 1 with the filter flipped in space and with its channel axes
 * swapped (see `spread-and-pad.ts`). A 1×1 stride-1 unpadded convolution's input gradient is one
 * matrix product `dy · Wᵀ` (wasm's untransposed `BatchMatMul`, its XNNPACK path).
 */
import * as tf from '@tensorflow/tfjs';
import { requireChannelsLast, requireFloat32, withKernelScope } from './kernel-scope.ts';
import { windowsAreInput, type PadAttr } from './patches.ts';
import { flipFilter, spreadAndPad } from './spread-and-pad.ts';

interface Conv2DBackpropInputAttrs {
  strides: [number, number] | number;
  pad: PadAttr;
  dataFormat?: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  inputShape: [number, number, number, number];
}

function conv2dBackpropInput({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { dy, filter } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs as unknown as Conv2DBackpropInputAttrs;
  requireChannelsLast(tf.Conv2DBackpropInput, dataFormat);
  requireFloat32(tf.Conv2DBackpropInput, { dy, filter });
  const info = tf.backend_util.computeConv2DInfo(
    inputShape, filter.shape as [number, number, number, number], strides, 1, pad, dimRoundingMode, false, 'channelsLast');
  return withKernelScope(backend, (scope) => {
    if (windowsAreInput(info)) {
      const { batchSize, inHeight, inWidth, inChannels, outChannels } = info;
      const weightsT = scope.run(tf.Transpose, { x: scope.reshape(filter, [inChannels, outChannels]) }, { perm: [1, 0] });
      const dx = scope.run(tf.BatchMatMul, { a: scope.reshape(dy, [batchSize * inHeight * inWidth, outChannels]), b: weightsT }, { transposeA: false, transposeB: false });
      return scope.reshape(dx, inputShape);
    }
    const spread = spreadAndPad(scope, dy, info);
    return scope.run(tf.Conv2D, { x: spread.x, filter: flipFilter(scope, filter, true) }, {
      strides: 1, pad: spread.pad, dilations: 1, dataFormat: 'NHWC',
    });
  });
}

export const conv2dBackpropInputConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropInput,
  backendName: 'wasm',
  kernelFunc: conv2dBackpropInput,
};
