/**
 * Turns the input gradient of a strided, padded convolution into a stride-1 forward convolution
 * (Dumoulin & Visin, "A guide to convolution arithmetic for deep learning", 2016,
 * https://arxiv.org/abs/1603.07285, section 4: the transpose of a convolution is a convolution of
 * the spread-out output gradient with the flipped filter).
 *
 * `dy` is spread by the stride (zeros between its pixels) and padded so that a stride-1
 * convolution with the filter's effective (dilated) size returns the input's height and width.
 */
import type * as tf from '@tensorflow/tfjs';
import type { WasmKernelScope } from './kernel-scope.ts';

/** A convolution input and the padding to hand the stride-1 convolution. */
export interface SpreadInput {
  x: tf.TensorInfo;
  pad: 'valid' | tf.backend_util.ExplicitPadding;
}

/**
 * `dy` (`[N, outHeight, outWidth, channels]`) ready for a stride-1 convolution with the flipped
 * filter that yields `[N, inHeight, inWidth, channels']`. At stride 1 with non-negative padding
 * no copy is made: the padding goes to the convolution. Otherwise `dy` is copied into a zeroed
 * `[N, inHeight + fh − 1, inWidth + fw − 1, channels]` buffer (effective filter sizes), cropping
 * pixels that an explicit padding larger than the filter's reach puts outside.
 */
export function spreadAndPad(scope: WasmKernelScope, dy: tf.TensorInfo, info: tf.backend_util.Conv2DInfo): SpreadInput {
  const { batchSize, inHeight, inWidth, outHeight, outWidth, strideHeight, strideWidth } = info;
  const height = inHeight + info.effectiveFilterHeight - 1;
  const width = inWidth + info.effectiveFilterWidth - 1;
  const top = info.effectiveFilterHeight - 1 - info.padInfo.top;
  const left = info.effectiveFilterWidth - 1 - info.padInfo.left;
  const bottom = height - top - ((outHeight - 1) * strideHeight + 1);
  const right = width - left - ((outWidth - 1) * strideWidth + 1);
  if (strideHeight === 1 && strideWidth === 1 && Math.min(top, left, bottom, right) >= 0) {
    return { x: dy, pad: [[0, 0], [top, bottom], [left, right], [0, 0]] };
  }
  const channels = dy.shape[3]!;
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
  return { x: out, pad: 'valid' };
}

/**
 * A filter `[fh, fw, a, b]` flipped in both spatial axes and with its last two axes swapped,
 * `[fh, fw, b, a]`: the filter of the input-gradient convolution. For a depthwise filter
 * `[fh, fw, C, M]` pass `swap: false` to get `[fh, fw, C·M, 1]` (each `dy` channel on its own).
 */
export function flipFilter(scope: WasmKernelScope, filter: tf.TensorInfo, swap: boolean): tf.TensorInfo {
  const [fh, fw, a, b] = filter.shape as [number, number, number, number];
  const out = scope.alloc(swap ? [fh, fw, b, a] : [fh, fw, a * b, 1]);
  const src = scope.view(filter);
  const dst = scope.view(out);
  const tap = a * b;
  for (let kh = 0; kh < fh; kh++) {
    for (let kw = 0; kw < fw; kw++) {
      const s = ((fh - 1 - kh) * fw + (fw - 1 - kw)) * tap;
      const d = (kh * fw + kw) * tap;
      if (!swap) {
        dst.set(src.subarray(s, s + tap), d);
        continue;
      }
      for (let i = 0; i < a; i++) {
        for (let j = 0; j < b; j++) dst[d + j * a + i] = src[s + i * b + j]!;
      }
    }
  }
  return out;
}
