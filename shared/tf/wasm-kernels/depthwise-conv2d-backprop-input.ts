/**
 * `DepthwiseConv2dNativeBackpropInput` for wasm: the input gradient of a depthwise convolution,
 * computed as a forward depthwise convolution on wasm's XNNPACK kernel. The gradient of a
 * correlation is a full correlation of `dy` with the spatially flipped filter (Dumoulin & Visin,
 * "A guide to convolution arithmetic for deep learning", 2016, https://arxiv.org/abs/1603.07285,
 * section 4): `dy` is spread out by the stride (zeros between its pixels), padded so the output
 * has the input's size, and convolved at stride 1 with the flipped filter. With channel multiplier
 * `M`, each of the `C·M` output channels of `dy` is convolved on its own and the `M` results of
 * each input channel are summed.
 */
import * as tf from '@tensorflow/tfjs';
import { requireFloat32, withKernelScope, type WasmKernelScope } from './kernel-scope.ts';
import type { PadAttr } from './patches.ts';

interface DepthwiseBackpropInputAttrs {
  strides: [number, number] | number;
  dilations: [number, number] | number;
  pad: PadAttr;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  inputShape: [number, number, number, number];
}

/**
 * `dy` spread by the stride and padded to `[N, H + (fh−1)·dh, W + (fw−1)·dw, C·M]`, so that a
 * valid stride-1 convolution returns `[N, H, W, C·M]`. Pixels that fall outside (explicit padding
 * larger than the filter reach) are cropped, as they never touch the input.
 */
function spreadAndPad(scope: WasmKernelScope, dy: tf.TensorInfo, info: tf.backend_util.Conv2DInfo): tf.TensorInfo {
  const { batchSize, inHeight, inWidth, outHeight, outWidth, strideHeight, strideWidth } = info;
  const channels = dy.shape[3]!;
  const height = inHeight + info.effectiveFilterHeight - 1;
  const width = inWidth + info.effectiveFilterWidth - 1;
  const top = info.effectiveFilterHeight - 1 - info.padInfo.top;
  const left = info.effectiveFilterWidth - 1 - info.padInfo.left;
  const out = scope.alloc([batchSize, height, width, channels]);
  const src = scope.view(dy);
  const dst = scope.view(out);
  dst.fill(0);
  for (let n = 0; n < batchSize; n++) {
    for (let oh = 0; oh < outHeight; oh++) {
      const row = oh * strideHeight + top;
      if (row < 0 || row >= height) continue;
      for (let ow = 0; ow < outWidth; ow++) {
        const col = ow * strideWidth + left;
        if (col < 0 || col >= width) continue;
        const s = ((n * outHeight + oh) * outWidth + ow) * channels;
        dst.set(src.subarray(s, s + channels), ((n * height + row) * width + col) * channels);
      }
    }
  }
  return out;
}

/** `[fh, fw, C, M]` → `[fh, fw, C·M, 1]` flipped in both spatial axes. */
function flippedFilter(scope: WasmKernelScope, filter: tf.TensorInfo): tf.TensorInfo {
  const [fh, fw, c, m] = filter.shape as [number, number, number, number];
  const depth = c * m;
  const out = scope.alloc([fh, fw, depth, 1]);
  const src = scope.view(filter);
  const dst = scope.view(out);
  for (let kh = 0; kh < fh; kh++) {
    for (let kw = 0; kw < fw; kw++) {
      const s = ((fh - 1 - kh) * fw + (fw - 1 - kw)) * depth;
      dst.set(src.subarray(s, s + depth), (kh * fw + kw) * depth);
    }
  }
  return out;
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
    const perChannel = scope.run(tf.DepthwiseConv2dNative, { x: spread, filter: flippedFilter(scope, filter) }, {
      strides: 1,
      pad: 'valid',
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
