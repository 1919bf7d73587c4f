/**
 * Registers fedtl's gradient kernels for the wasm backend: the kernels that backprop through
 * fedtl's bases needs and `@tensorflow/tfjs-backend-wasm@4.22.0` does not have (found by comparing
 * `tf.getKernelsForBackend('cpu')` with `'wasm'`). Without them, training a convolution, a
 * depthwise convolution or an embedding on wasm fails with "Kernel '…' not registered".
 */
import * as tf from '@tensorflow/tfjs';
import { conv2dBackpropFilterConfig } from './conv2d-backprop-filter.ts';
import { depthwiseConv2dBackpropFilterConfig } from './depthwise-conv2d-backprop-filter.ts';
import { depthwiseConv2dBackpropInputConfig } from './depthwise-conv2d-backprop-input.ts';
import { unsortedSegmentSumConfig } from './unsorted-segment-sum.ts';

/** The kernels fedtl adds to wasm, in registration order. */
export const WASM_GRADIENT_KERNELS: readonly tf.KernelConfig[] = [
  conv2dBackpropFilterConfig,
  depthwiseConv2dBackpropFilterConfig,
  depthwiseConv2dBackpropInputConfig,
  unsortedSegmentSumConfig,
];

/**
 * Registers {@link WASM_GRADIENT_KERNELS} for `wasm`. Idempotent; a kernel that a later
 * tfjs-backend-wasm ships itself is left alone (its own is preferred).
 *
 * @returns the names of the kernels registered by this call
 */
export function registerWasmGradientKernels(): string[] {
  const registered: string[] = [];
  for (const config of WASM_GRADIENT_KERNELS) {
    if (tf.getKernel(config.kernelName, 'wasm') !== undefined) continue;
    tf.registerKernel(config);
    registered.push(config.kernelName);
  }
  return registered;
}
