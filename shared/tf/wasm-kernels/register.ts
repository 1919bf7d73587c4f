/**
 * Registers fedtl's kernels for the wasm backend:
 *
 * - the gradient kernels that backprop through fedtl's bases needs and
 *   `@tensorflow/tfjs-backend-wasm@4.22.0` does not have (found by comparing
 *   `tf.getKernelsForBackend('cpu')` with `'wasm'`): without them, training a convolution, a
 *   depthwise convolution or an embedding on wasm fails with "Kernel '…' not registered";
 * - faster replacements for kernels wasm has but runs as slow scalar loops in a training step
 *   (measured by `npm run bench:kernels`); each keeps tfjs's kernel for the cases it leaves alone.
 */
import * as tf from '@tensorflow/tfjs';
import { createMeanConfig, createSumConfig } from './axis-reduce.ts';
import { conv2dBackpropFilterConfig } from './conv2d-backprop-filter.ts';
import { conv2dBackpropInputConfig } from './conv2d-backprop-input.ts';
import { depthwiseConv2dBackpropFilterConfig } from './depthwise-conv2d-backprop-filter.ts';
import { depthwiseConv2dBackpropInputConfig } from './depthwise-conv2d-backprop-input.ts';
import { createSqrtConfig } from './sqrt.ts';
import { createTileConfig } from './tile.ts';
import { unsortedSegmentSumConfig } from './unsorted-segment-sum.ts';

/** The kernels fedtl adds to wasm, in registration order. */
export const WASM_GRADIENT_KERNELS: readonly tf.KernelConfig[] = [
  conv2dBackpropFilterConfig,
  depthwiseConv2dBackpropFilterConfig,
  depthwiseConv2dBackpropInputConfig,
  unsortedSegmentSumConfig,
];

/** A replacement for one of tfjs-backend-wasm's kernels, built around the kernel it replaces. */
export interface KernelReplacement {
  kernelName: string;
  create(original: tf.KernelConfig): tf.KernelConfig;
}

/** Kernels tfjs-backend-wasm has that fedtl replaces with faster ones. */
export const WASM_FASTER_KERNELS: readonly KernelReplacement[] = [
  // tfjs's is a scalar loop; fedtl's is a forward convolution on XNNPACK.
  { kernelName: tf.Conv2DBackpropInput, create: () => conv2dBackpropInputConfig },
  { kernelName: tf.Tile, create: createTileConfig },
  { kernelName: tf.Sum, create: createSumConfig },
  { kernelName: tf.Mean, create: createMeanConfig },
  // tfjs's float32 square root slows down ~25× on subnormal values, which Adam's second moments hold.
  { kernelName: tf.Sqrt, create: createSqrtConfig },
];

/** fedtl's kernel functions now registered for wasm, by kernel name. */
const installed = new Map<string, tf.KernelFunc>();

/** True when wasm's kernel `kernelName` is fedtl's. */
export function isFedtlWasmKernel(kernelName: string): boolean {
  const current = tf.getKernel(kernelName, 'wasm');
  return current !== undefined && current.kernelFunc === installed.get(kernelName);
}

/**
 * Registers {@link WASM_GRADIENT_KERNELS} and {@link WASM_FASTER_KERNELS} for `wasm`. Idempotent.
 * A missing kernel that a later tfjs-backend-wasm ships itself is left alone (its own is
 * preferred); a replacement wraps the kernel tfjs registered.
 *
 * @returns the names of the kernels registered by this call
 */
export function registerWasmGradientKernels(): string[] {
  const registered: string[] = [];
  for (const config of WASM_GRADIENT_KERNELS) {
    if (tf.getKernel(config.kernelName, 'wasm') !== undefined) continue;
    tf.registerKernel(config);
    installed.set(config.kernelName, config.kernelFunc);
    registered.push(config.kernelName);
  }
  for (const replacement of WASM_FASTER_KERNELS) {
    if (isFedtlWasmKernel(replacement.kernelName)) continue;
    const original = tf.getKernel(replacement.kernelName, 'wasm');
    if (original === undefined) continue;
    const config = replacement.create(original);
    tf.unregisterKernel(replacement.kernelName, 'wasm');
    tf.registerKernel(config);
    installed.set(config.kernelName, config.kernelFunc);
    registered.push(config.kernelName);
  }
  return registered;
}
