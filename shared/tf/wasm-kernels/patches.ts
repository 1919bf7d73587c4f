/**
 * im2col: the input windows a 2-D convolution reads, laid out as a matrix, so that a convolution's
 * filter gradient becomes one matrix product (Chellapilla, Puri & Simard, "High Performance
 * Convolutional Neural Networks for Document Processing", 2006, https://inria.hal.science/inria-00112631).
 */
import * as tf from '@tensorflow/tfjs';
import type { WasmKernelScope } from './kernel-scope.ts';

type Conv2DInfo = tf.backend_util.Conv2DInfo;

/** True when the windows are exactly the input pixels (1×1 filter, stride 1, no padding). */
export function windowsAreInput(info: Conv2DInfo): boolean {
  const { filterHeight, filterWidth, strideHeight, strideWidth, padInfo } = info;
  return filterHeight === 1 && filterWidth === 1 && strideHeight === 1 && strideWidth === 1
    && padInfo.top === 0 && padInfo.left === 0 && info.outHeight === info.inHeight && info.outWidth === info.inWidth;
}

/**
 * The windows of `x` (`[batch, inHeight, inWidth, channels]`, channels-last) as a matrix
 * `[batch·outHeight·outWidth, filterHeight·filterWidth·channels]`: row `(n, oh, ow)` holds, for
 * each filter tap `(kh, kw)` in order, the `channels` values at
 * `(oh·strideHeight + kh·dilationHeight − padTop, ow·strideWidth + kw·dilationWidth − padLeft)`,
 * zeros where that falls in the padding. A 1×1, stride-1, unpadded convolution needs no copy.
 */
export function extractPatches(scope: WasmKernelScope, x: tf.TensorInfo, info: Conv2DInfo): tf.TensorInfo {
  const { batchSize, inHeight, inWidth, outHeight, outWidth, filterHeight, filterWidth } = info;
  const channels = x.shape[3]!;
  const rows = batchSize * outHeight * outWidth;
  if (windowsAreInput(info)) return scope.reshape(x, [rows, channels]);
  const out = scope.alloc([rows, filterHeight * filterWidth * channels], x.dtype);
  const src = scope.view(x);
  const dst = scope.view(out);
  const { strideHeight, strideWidth, dilationHeight, dilationWidth } = info;
  const { top, left } = info.padInfo;
  // Whole-row copies (`set`) pay off only for long rows; short ones copy element by element.
  const copyRows = channels >= 16;
  let o = 0;
  for (let n = 0; n < batchSize; n++) {
    const image = n * inHeight;
    for (let oh = 0; oh < outHeight; oh++) {
      for (let ow = 0; ow < outWidth; ow++) {
        for (let kh = 0; kh < filterHeight; kh++) {
          const ih = oh * strideHeight + kh * dilationHeight - top;
          const rowInside = ih >= 0 && ih < inHeight;
          for (let kw = 0; kw < filterWidth; kw++) {
            const iw = ow * strideWidth + kw * dilationWidth - left;
            if (rowInside && iw >= 0 && iw < inWidth) {
              const s = ((image + ih) * inWidth + iw) * channels;
              if (copyRows) dst.set(src.subarray(s, s + channels), o);
              else for (let c = 0; c < channels; c++) dst[o + c] = src[s + c]!;
            } else {
              dst.fill(0, o, o + channels);
            }
            o += channels;
          }
        }
      }
    }
  }
  return out;
}

/** Reads a kernel's `ExplicitPadding | 'same' | 'valid' | number` attribute as tfjs types it. */
export type PadAttr = 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
